//! The subcommands. Each returns the library's error; `main` prints it as one line.

use kiln::config::Config;
use kiln::data::mnist;
use kiln::prelude::*;
use kiln::{Error, Result};
use std::path::{Path, PathBuf};

pub fn evaluate(model_path: &Path, data: &Path, split: &str, batch_size: usize) -> Result<()> {
    let prefix = match split {
        "test" => "t10k",
        "train" => "train",
        other => {
            return Err(Error::Invalid(format!("--split must be `test` or `train`, got `{other}`")));
        }
    };
    let model = Sequential::load(model_path)?;
    if model.preparation().is_some() {
        return crate::table::evaluate(model, data);
    }
    let Some(compiled) = model.compile_config().cloned() else {
        return Err(Error::Config(format!(
            "{}: the model was saved without a loss; cannot evaluate",
            model_path.display()
        )));
    };
    let s = mnist::load_split(data, prefix)?;
    let y = if compiled.loss.sparse() {
        Tensor::new(&[s.labels.len()], s.labels.iter().map(|&l| l as f32).collect())?
    } else {
        s.y.clone()
    };
    let scores = model.evaluate(&s.x, &y, batch_size)?;
    println!("{split} {scores} ({} samples)", s.x.rows());
    Ok(())
}

/// An image model's prediction for a PNG, or for image `index` of an IDX file.
pub fn predict(model: Sequential, input: &Path, index: Option<usize>) -> Result<()> {
    let want = model.input_shape().to_vec();
    let x = if is_png(input)? {
        if index.is_some() {
            return Err(Error::Invalid("--index applies to IDX files, not to a PNG image".into()));
        }
        read_png(input, &want)?
    } else {
        let images = mnist::load_images(input)?;
        let Some(i) = index else {
            return Err(Error::Invalid(format!(
                "{} holds {} images: choose one with --index N",
                input.display(),
                images.rows()
            )));
        };
        if i >= images.rows() {
            return Err(Error::Invalid(format!(
                "--index {i} is out of range: {} has {} images",
                input.display(),
                images.rows()
            )));
        }
        images.slice_rows(i, i + 1)
    };
    if x.shape()[1..] != want[..] {
        return Err(Error::Shape(format!(
            "{} is {:?} but the model takes {:?} (height, width, channels)",
            input.display(),
            &x.shape()[1..],
            want
        )));
    }
    let probs = model.predict(&x, 1)?;
    let p = probs.data();
    let best = kiln::core::argmax(p);
    println!("predicted class: {best} (probability {:.4})", p[best]);
    let all: Vec<String> = p.iter().enumerate().map(|(i, v)| format!("{i}: {v:.4}")).collect();
    println!("probabilities: {}", all.join(", "));
    Ok(())
}

fn is_png(path: &Path) -> Result<bool> {
    let mut head = [0u8; 8];
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, &e))?;
    let n = f.read(&mut head).map_err(|e| Error::io(path, &e))?;
    Ok(n == 8 && head == [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a])
}

/// A PNG as one sample (1, height, width, channels) with values in [0, 1]; color is averaged to gray
/// for one-channel models.
fn read_png(path: &Path, want: &[usize]) -> Result<Tensor> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, &e))?;
    let bad = |m: String| Error::format(path, m);
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| bad(format!("not a readable PNG: {e}")))?;
    let size = reader.output_buffer_size().ok_or_else(|| bad("PNG too large".into()))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| bad(format!("corrupt PNG data: {e}")))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let ch = info.color_type.samples();
    let channels = *want.last().unwrap_or(&1);
    let mut data = Vec::with_capacity(w * h * channels);
    for px in buf[..info.buffer_size()].chunks(ch) {
        let color = &px[..ch.min(3)];
        match channels {
            1 => data.push(color.iter().map(|&v| v as f32).sum::<f32>() / color.len() as f32 / 255.0),
            3 if color.len() == 3 => data.extend(color.iter().map(|&v| v as f32 / 255.0)),
            3 => data.extend([color[0] as f32 / 255.0; 3]),
            c => return Err(bad(format!("the model takes {c} channels; PNG input gives 1 or 3"))),
        }
    }
    Tensor::new(&[1, h, w, channels], data)
}

/// `kiln cv`: k folds of any config (a table's rows, or the training images), each scored by a model
/// trained on the others; each fold's line printed (and with `output`, written) as it finishes. Ctrl-C or
/// SIGTERM stops after the current step, with the finished folds' summary.
pub fn cv(
    config: Option<&Path>,
    data: Option<&Path>,
    target: Option<&str>,
    folds: usize,
    set: &[String],
    output: Option<&Path>,
) -> Result<()> {
    let cfg = crate::train::config_of(config, None, data, target, set)?;
    check_folds(folds)?;
    if let Some(o) = output {
        crate::train::check_writable(o)?;
        kiln::io::write_atomic(o, b"")?;
    }
    for n in &cfg.notes {
        println!("note: {n}");
    }
    crate::run_dir::on_signal_stop();
    let start = std::time::Instant::now();
    let mut finished: Option<kiln::search::Folds> = None;
    let mut written = Ok(());
    let r = cfg.cross_validate_with(folds, &mut |i, f| {
        println!("fold {}/{folds}: {}", i + 1, f.line(i));
        if let Some(o) = output {
            let scores: serde_json::Map<String, serde_json::Value> =
                f.fold(i).into_iter().map(|(n, v)| (n, serde_json::json!(v))).collect();
            let line = serde_json::json!({ "fold": i + 1, "of": folds, "scores": scores });
            if written.is_ok() {
                written = append_line(o, &line.to_string());
            }
        }
        finished = Some(f.clone());
    });
    written?;
    let scores = match r {
        Ok(s) => s,
        Err(Error::Stopped(m)) => {
            let kept = match &finished {
                Some(f) => format!("; {} of {folds} folds had finished: {}", f.len(), f.summary()),
                None => "; no fold had finished".to_string(),
            };
            let file = output.map(|o| format!(" (in {})", o.display())).unwrap_or_default();
            return Err(Error::Stopped(format!("{m}{kept}{file}")));
        }
        Err(e) => return Err(e),
    };
    let secs = start.elapsed().as_secs_f64();
    println!("{folds}-fold cross-validation: {} ({secs:.1} s)", scores.summary());
    if let Some(o) = output {
        append_line(o, &serde_json::json!({ "summary": scores.summary(), "seconds": secs }).to_string())?;
        println!("wrote each fold's scores to {}", o.display());
    }
    Ok(())
}

/// Adds a line to a file, flushed before returning (a JSON-lines log that survives an interrupted run).
fn append_line(path: &Path, line: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).map_err(|e| Error::io(path, &e))?;
    writeln!(f, "{line}").and_then(|_| f.sync_data()).map_err(|e| Error::io(path, &e))
}

fn check_folds(folds: usize) -> Result<()> {
    if !(2..=1000).contains(&folds) {
        return Err(Error::Invalid(format!(
            "--folds {folds}: cross-validation needs at least 2 folds, and at most 1000"
        )));
    }
    Ok(())
}

/// `kiln search`: every combination of the settings (or `random` of them), each cross-validated; the best
/// config is written (default: best.toml beside the config).
pub fn search(
    config: &Path,
    set: &[String],
    random: Option<usize>,
    folds: usize,
    output: Option<PathBuf>,
) -> Result<()> {
    let cfg = Config::from_file_unfilled(config)?;
    check_folds(folds)?;
    let out = output.unwrap_or_else(|| config.with_file_name("best.toml"));
    crate::train::check_writable(&out)?;
    // Every finished config's scores, as each finishes: nothing is lost to an interrupted search.
    let trials = out.with_extension("trials.jsonl");
    crate::run_dir::on_signal_stop();
    let axes = set.iter().map(|s| kiln::config::parse_axis(s)).collect::<Result<Vec<_>>>()?;
    let start = std::time::Instant::now();
    let mut n = 0;
    let show = |settings: &[(String, toml::Value)]| -> String {
        settings.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
    };
    let mut best_so_far: Option<(f64, String, Config)> = None;
    let mut written = Ok(());
    let r = kiln::search::search(&cfg, &axes, folds, random, &mut |(settings, conf, scores), of| {
        n += 1;
        println!("config {n}/{of}: {} | {}", scores.summary(), show(settings));
        let set: serde_json::Map<String, serde_json::Value> =
            settings.iter().map(|(k, v)| (k.clone(), serde_json::json!(v.to_string()))).collect();
        let line = serde_json::json!({ "config": n, "of": of, "settings": set, "summary": scores.summary(),
            "rank": scores.rank() });
        if written.is_ok() {
            // Started afresh by the first finished config (a search refused before that writes nothing).
            let fresh = if n == 1 { kiln::io::write_atomic(&trials, b"") } else { Ok(()) };
            written = fresh.and_then(|_| append_line(&trials, &line.to_string()));
        }
        if best_so_far.as_ref().is_none_or(|b| scores.rank() > b.0) {
            best_so_far = Some((scores.rank(), show(settings), conf.clone()));
        }
    });
    written?;
    let results = match r {
        Ok(r) => r,
        Err(Error::Stopped(m)) => {
            let kept = match &best_so_far {
                Some((_, settings, conf)) => {
                    let text = format!(
                        "# The best of the {n} configs kiln search finished before it was interrupted ({folds}-fold \
                         cross-validation)\n{}",
                        conf.resolved().to_toml()
                    );
                    kiln::io::write_atomic(&out, text.as_bytes())?;
                    format!("; the best of the {n} finished configs ({settings}) is in {}", out.display())
                }
                None => "; no config had finished".to_string(),
            };
            return Err(Error::Stopped(format!(
                "{m}{kept}; every finished config's scores are in {}",
                trials.display()
            )));
        }
        Err(e) => return Err(e),
    };
    println!("{} configs, {folds}-fold cross-validation each, best first:", results.len());
    for (settings, _, scores) in &results {
        println!("  {} | {}", scores.summary(), show(settings));
    }
    let (_, best, _) = &results[0];
    let text = format!(
        "# The best of {} configs found by kiln search ({folds}-fold cross-validation, {:.1} s)\n{}",
        results.len(),
        start.elapsed().as_secs_f64(),
        best.resolved().to_toml()
    );
    kiln::io::write_atomic(&out, text.as_bytes())?;
    println!("wrote the best config to {}", out.display());
    Ok(())
}

/// The layer table of a saved model, or of the model a config builds (a table's is sized by its data).
pub fn summary(path: &Path) -> Result<()> {
    let model = if path.extension().is_some_and(|e| e == "toml") {
        Config::from_file(path)?.build_model()?
    } else {
        Sequential::load(path)?
    };
    print!("{}", model.summary());
    Ok(())
}
