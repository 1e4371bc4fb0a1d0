//! `kiln explain`: why a model predicted what it did. An image: a heatmap of integrated gradients,
//! saliency or occlusion over it. A text: each term shaded by its integrated gradient (HTML) and the top
//! terms printed. A table row: each column's share (Markdown and a bar chart). A table file (`--data`):
//! permutation importance with 95% intervals (Markdown, JSON and a bar chart). The numbers come from
//! `kiln::explain`; this file reads the inputs, names classes and writes the files.

use crate::chart::{self, Bar};
use kiln::data::csv::{CsvOptions, read_table};
use kiln::data::prepare::{FeatureKind, Preparation, Task};
use kiln::data::table::{Column, Table};
use kiln::explain::{self, At, Probe, RowExplanation, Rule, Scoring, Target};
use kiln::prelude::*;
use kiln::{Error, Result};
use std::path::{Path, PathBuf};

pub struct Args<'a> {
    pub model: &'a Path,
    pub input: Option<&'a Path>,
    pub index: Option<usize>,
    pub rows: Option<&'a Path>,
    pub row: Option<usize>,
    pub data: Option<&'a Path>,
    pub method: &'a str,
    pub class: Option<&'a str>,
    pub steps: usize,
    pub rule: &'a str,
    pub baseline: f32,
    pub window: usize,
    pub stride: Option<usize>,
    pub logits: bool,
    pub repeats: usize,
    pub scoring: Option<&'a str>,
    pub seed: u64,
    pub output_dir: &'a Path,
}

/// The attribution methods by name.
#[derive(Clone, Copy, PartialEq)]
enum Method {
    IntegratedGradients,
    Saliency,
    Occlusion,
}

fn method(name: &str) -> Result<Method> {
    Ok(match name {
        "integrated_gradients" | "ig" => Method::IntegratedGradients,
        "saliency" => Method::Saliency,
        "occlusion" => Method::Occlusion,
        _ => {
            return Err(Error::Invalid(format!(
                "--method {name}: expected integrated_gradients (ig), saliency or occlusion"
            )));
        }
    })
}

pub fn explain(a: &Args) -> Result<()> {
    if kiln::recommend::is_recommender(a.model).unwrap_or(false) {
        return Err(Error::Invalid(format!(
            "{} is a recommender: `kiln explain` takes image, text and table models",
            a.model.display()
        )));
    }
    let m = method(a.method)?;
    if !a.baseline.is_finite() {
        return Err(Error::Invalid(format!("--baseline {}: expected a finite number", a.baseline)));
    }
    if a.steps > explain::integrated::MAX_STEPS {
        return Err(Error::Invalid(format!("--steps {}: at most {}", a.steps, explain::integrated::MAX_STEPS)));
    }
    if a.output_dir.exists() && !a.output_dir.is_dir() {
        return Err(Error::Invalid(format!("--output-dir {} is a file, not a folder", a.output_dir.display())));
    }
    let rule = Rule::parse(a.rule)?;
    if a.steps < 2 {
        return Err(Error::Invalid(format!("--steps {}: integrated gradients need at least 2", a.steps)));
    }
    let model = Sequential::load(a.model)?;
    if let Some(data) = a.data {
        if a.input.is_some() || a.rows.is_some() {
            return Err(Error::Invalid(
                "--data measures importance over a whole file: give it without an input or --input".into(),
            ));
        }
        return importance(&model, a, data);
    }
    match model.preparation().cloned() {
        Some(prep) => {
            if m != Method::IntegratedGradients {
                return Err(Error::Invalid(format!(
                    "--method {}: tables and texts are explained by integrated_gradients (saliency and occlusion \
                     are for images)",
                    a.method
                )));
            }
            let (table, row, stem) = row_to_explain(&prep, a)?;
            explain_row(&model, &prep, &table, row, &stem, rule, a)
        }
        None => {
            if a.rows.is_some() || a.row.is_some() {
                return Err(Error::Invalid(format!(
                    "{} takes images: give a PNG, or an IDX file with --index (--input/--row are for tables)",
                    a.model.display()
                )));
            }
            let Some(input) = a.input else {
                return Err(Error::Invalid("give an image: a PNG, or an IDX file with --index N".into()));
            };
            explain_image(&model, input, m, rule, a)
        }
    }
}

/// The table holding the row to explain, its index, and a stem for the files written.
fn row_to_explain(prep: &Preparation, a: &Args) -> Result<(Table, usize, String)> {
    let text_model = prep.features.len() == 1
        && matches!(prep.features[0].kind, FeatureKind::Text { .. } | FeatureKind::Tokens { .. });
    match (a.input, a.rows, a.row) {
        (_, Some(file), Some(row)) => {
            let table = read_table(file, &CsvOptions::default())?;
            if table.rows() == 0 {
                return Err(Error::Data(format!("{}: no rows (only a header)", file.display())));
            }
            if row == 0 || row > table.rows() {
                return Err(Error::Invalid(format!(
                    "--row {row} is out of range: {} has {} rows (1 to {})",
                    file.display(),
                    table.rows(),
                    table.rows()
                )));
            }
            let name = file.file_name().map_or(String::new(), |n| n.to_string_lossy().to_string());
            let stem = name.split('.').next().unwrap_or("rows");
            Ok((table, row - 1, format!("{}_row{row}", file_safe(stem))))
        }
        (_, Some(file), None) => {
            Err(Error::Invalid(format!("say which row of {} to explain with --row N (1 is the first)", file.display())))
        }
        (Some(path), None, _) if text_model && !path.exists() && looks_like_a_file(path) => {
            Err(Error::Invalid(format!(
                "{} does not exist (to explain a text, give the text itself in quotes; for rows of a file, --input \
                 FILE --row N)",
                path.display()
            )))
        }
        (Some(path), None, _) if text_model && path.exists() => Err(Error::Invalid(format!(
            "{} is a file: give its rows with --input {} --row N, or one text in quotes",
            path.display(),
            path.display()
        ))),
        (Some(text), None, _) if text_model => {
            let column = Column {
                name: prep.features[0].name.clone(),
                cells: vec![Some(text.to_string_lossy().into())],
                declared: None,
            };
            // Named by its first words, so explaining another text does not write over this one's files.
            let words: Vec<String> = text.to_string_lossy().split_whitespace().take(4).map(file_safe).collect();
            Ok((Table { source: "the text".into(), columns: vec![column] }, 0, format!("text_{}", words.join("_"))))
        }
        _ => Err(Error::Invalid(format!(
            "{} was trained on a table: give a row with --input FILE --row N{}",
            a.model.display(),
            if text_model { " (or one text, in quotes, as the argument)" } else { "" }
        ))),
    }
}

/// The class asked for (a name of the model's classes, or an index), else the predicted one, as the number
/// explained; and its name.
fn target_of(task: &Task, output: &[f32], asked: Option<&str>, logits: bool) -> Result<(Target, String)> {
    let named = |classes: &[String], s: &str| -> Result<usize> {
        classes
            .iter()
            .position(|c| c == s)
            .or_else(|| s.parse::<usize>().ok().filter(|&i| i < classes.len()))
            .ok_or_else(|| Error::Invalid(format!("--class {s}: the model's classes are {}", classes.join(", "))))
    };
    let t = |column, negate| Target { column, negate, logits, ..Default::default() };
    Ok(match task {
        Task::Binary { classes } => {
            let k = match asked {
                Some(s) => named(classes, s)?,
                None => (output[0] > 0.5) as usize,
            };
            // One sigmoid output: the negative class is 1 − p, whose attributions are p's negated.
            (t(0, k == 0), classes[k].clone())
        }
        Task::Multiclass { classes } => {
            let k = match asked {
                Some(s) => named(classes, s)?,
                None => kiln::core::argmax(output),
            };
            (t(k, false), classes[k].clone())
        }
        Task::Regression => {
            if let Some(s) = asked {
                return Err(Error::Invalid(format!("--class {s}: the model predicts a number, not classes")));
            }
            (t(0, false), "value".into())
        }
    })
}

fn explain_row(
    model: &Sequential,
    prep: &Preparation,
    table: &Table,
    row: usize,
    stem: &str,
    rule: Rule,
    a: &Args,
) -> Result<()> {
    let x = prep.transform_inputs(table, &[row])?;
    let xs: Vec<&Tensor> = x.iter().collect();
    let out = model.predict_outputs(&xs, 1)?;
    let task = &prep.targets[0].task;
    let (target, class) = target_of(task, out[0].data(), a.class, a.logits)?;
    let e = explain::explain_row(model, table, row, target, a.steps, rule)?;
    let what = if a.logits {
        format!("the logit of `{class}`")
    } else if matches!(task, Task::Regression) {
        "the prediction".into()
    } else {
        format!("p({class})")
    };
    let stem = format!("{stem}_{}{}", file_safe(&class), if a.logits { "_logits" } else { "" });
    std::fs::create_dir_all(a.output_dir).map_err(|err| Error::io(a.output_dir, &err))?;
    let mut md = format!(
        "# Why {what} is {:.4}\n\nIntegrated gradients ({} steps) from a baseline where {what} is {:.4}; the columns' \
         shares sum to the difference (completeness error {:.1e}).\n\n| column | value | attribution |\n|---|---|---:|\n",
        e.output,
        a.steps,
        e.baseline_output,
        e.delta()
    );
    let mut columns = e.columns.clone();
    columns.sort_by(|p, q| q.attribution.abs().total_cmp(&p.attribution.abs()));
    for c in &columns {
        md += &format!("| {} | {} | {:+.4} |\n", c.column, md_cell(&chart::short(&c.value, 60)), c.attribution);
    }
    for (col, terms) in &e.terms {
        md += &format!("\n## Terms of `{col}`\n\n{}\n", top_terms(terms, 8));
    }
    print!("{md}");
    let mut written = vec![write(a.output_dir, &format!("{stem}.md"), md.as_bytes())?];
    let bars: Vec<Bar> = columns
        .iter()
        .take(20)
        .map(|c| Bar {
            label: format!("{} = {}", c.column, chart::short(&c.value, 24)),
            value: c.attribution as f64,
            interval: None,
        })
        .collect();
    let title = format!("{what} = {:.3} (baseline {:.3})", e.output, e.baseline_output);
    let png = chart::png((760, 90 + 26 * bars.len() as u32), |area| chart::bars(area, &title, "attribution", &bars))?;
    written.push(write(a.output_dir, &format!("{stem}.png"), &png)?);
    // The first text column's words shaded, as a page and as a picture.
    if let Some((col, words)) = e.words.first() {
        written.push(write(a.output_dir, &format!("{stem}.html"), shaded_html(&what, col, &e, words).as_bytes())?);
        let top = words.iter().fold(0f32, |m, t| m.max(t.attribution.abs())).max(1e-12);
        let shaded: Vec<(String, f32)> = words.iter().map(|t| (t.term.clone(), t.attribution / top)).collect();
        let title = format!("{what} = {:.3}: red words push toward it, blue ones against", e.output);
        written.push(write(a.output_dir, &format!("{stem}_words.png"), &chart::shaded_words(&title, &shaded, 760)?)?);
    }
    let json = serde_json::to_string_pretty(&e).map_err(|err| Error::Invalid(err.to_string()))?;
    written.push(write(a.output_dir, &format!("{stem}.json"), json.as_bytes())?);
    say_written(&written);
    Ok(())
}

/// The strongest terms toward and against the output, as text.
fn top_terms(terms: &[explain::TermAttribution], k: usize) -> String {
    let mut sorted: Vec<&explain::TermAttribution> = terms.iter().collect();
    sorted.sort_by(|p, q| q.attribution.total_cmp(&p.attribution));
    let fmt = |t: &&explain::TermAttribution| format!("{} ({:+.3})", t.term, t.attribution);
    let toward: Vec<String> = sorted.iter().filter(|t| t.attribution > 0.0).take(k).map(fmt).collect();
    let against: Vec<String> = sorted.iter().rev().filter(|t| t.attribution < 0.0).take(k).map(fmt).collect();
    format!("- toward: {}\n- against: {}\n", list_or_none(&toward), list_or_none(&against))
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() { "(none)".into() } else { v.join(", ") }
}

/// An HTML page with the text's words in reading order, each shaded by its share of the attributions (red
/// toward the output, blue against it, the strongest fully coloured).
fn shaded_html(what: &str, column: &str, e: &RowExplanation, terms: &[explain::TermAttribution]) -> String {
    let top = terms.iter().fold(0f32, |m, t| m.max(t.attribution.abs())).max(1e-12);
    let mut words = String::new();
    for t in terms {
        let s = (t.attribution / top).clamp(-1.0, 1.0);
        let (r, g, b) = if s >= 0.0 { (214, 39, 40) } else { (31, 119, 180) };
        words += &format!(
            "<span title=\"{:+.4}\" style=\"background: rgba({r},{g},{b},{:.2}); padding: 2px 3px; margin: 1px; \
             border-radius: 3px\">{}</span> ",
            t.attribution,
            s.abs() * 0.85,
            html_escape(&t.term)
        );
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>kiln explain</title></head>\n<body style=\"font-family: \
         sans-serif; max-width: 52em; margin: 2em auto; line-height: 2\">\n<h2>Why {} is {:.4}</h2>\n<p>Integrated \
         gradients through the term vectors of <code>{}</code>, from a text of padding where it is {:.4}, each \
         term's share split among its words. Red words push toward it, blue ones against; hover a word for its \
         number.</p>\n<p style=\"font-size: 1.2em\">{words}</p>\n\
         </body></html>\n",
        html_escape(what),
        e.output,
        html_escape(column),
        e.baseline_output
    )
}

fn explain_image(model: &Sequential, input: &Path, m: Method, rule: Rule, a: &Args) -> Result<()> {
    let x = crate::commands::read_image(model, input, a.index)?;
    let shape = model.input_shape().to_vec();
    let (h, w, c) = match shape[..] {
        [h, w, c] => (h, w, c),
        [h, w] => (h, w, 1),
        _ => {
            return Err(Error::Invalid(format!(
                "explain: an image model takes (height, width, channels), this one {shape:?}"
            )));
        }
    };
    let p = model.predict(&x, 1)?;
    let classes = p.data().len();
    let best = kiln::core::argmax(p.data());
    println!("predicted class: {best} (probability {:.4})", p.data()[best]);
    let mut asked = vec![best];
    if let Some(s) = a.class {
        let k = s
            .parse::<usize>()
            .ok()
            .filter(|&k| k < classes)
            .ok_or_else(|| Error::Invalid(format!("--class {s}: the model has classes 0 to {}", classes - 1)))?;
        if k != best {
            asked.push(k);
        }
    }
    std::fs::create_dir_all(a.output_dir).map_err(|err| Error::io(a.output_dir, &err))?;
    let stem = input.file_stem().map_or("image".into(), |s| s.to_string_lossy().to_string());
    let stem = match a.index {
        Some(i) => format!("{stem}_{i}"),
        None => stem,
    };
    let mut written = Vec::new();
    for k in asked {
        let target = Target { column: k, logits: a.logits, ..Default::default() };
        let probe = Probe::new(model, &[&x], At::Inputs, target)?;
        let (attr, name) = match m {
            Method::IntegratedGradients => {
                let baseline = vec![a.baseline; probe.point()?.len()];
                let r = explain::integrated_gradients(&probe, &baseline, a.steps, rule)?;
                println!(
                    "class {k}: integrated gradients ({} steps) sum to {:.4} = f(image) {:.4} − f(baseline) {:.4} {:+.1e}",
                    a.steps,
                    r.values.iter().sum::<f32>(),
                    r.output,
                    r.baseline_output.unwrap_or(0.0),
                    r.delta().unwrap_or(0.0)
                );
                (r, "integrated_gradients")
            }
            Method::Saliency => (explain::saliency(&probe, true)?, "saliency"),
            Method::Occlusion => {
                let win = a.window;
                let stride = a.stride.unwrap_or(win.div_ceil(2));
                let (window, strides) = if shape.len() == 2 {
                    (vec![win, win], vec![stride, stride])
                } else {
                    (vec![win, win, c], vec![stride, stride, c])
                };
                (explain::occlusion(&probe, &window, &strides, a.baseline)?, "occlusion")
            }
        };
        // Per pixel: the channels' attributions summed.
        let per_pixel: Vec<f32> = attr.values.chunks_exact(c).map(|v| v.iter().sum()).collect();
        let title = format!(
            "{name} of class {k} (p = {:.3}), {}",
            p.data()[k],
            input.file_name().map_or(String::new(), |n| n.to_string_lossy().to_string())
        );
        let png = chart::heatmap(x.data(), (h, w, c), &per_pixel, &title)?;
        let file = format!("{stem}_{name}_class{k}{}", if a.logits { "_logits" } else { "" });
        written.push(write(a.output_dir, &format!("{file}.png"), &png)?);
        let json = serde_json::json!({
            "class": k, "method": name, "shape": [h, w, c], "output": attr.output,
            "baseline_output": attr.baseline_output, "attributions": attr.values,
        });
        written.push(write(a.output_dir, &format!("{file}.json"), json.to_string().as_bytes())?);
    }
    say_written(&written);
    Ok(())
}

/// Permutation importance of every column over `data` (which holds the target column).
fn importance(model: &Sequential, a: &Args, data: &Path) -> Result<()> {
    let prep = model.preparation().cloned().ok_or_else(|| {
        Error::Invalid(format!(
            "--data: {} was not trained on a table; permutation importance is for table models",
            a.model.display()
        ))
    })?;
    if a.repeats == 0 || a.repeats > 1000 {
        return Err(Error::Invalid(format!("--repeats {}: expected 1 to 1000", a.repeats)));
    }
    let table = read_table(data, &CsvOptions::default())?;
    let (table, _) = kiln::tabular::map_classes(table, &prep.targets[0].name, &prep.classes)?;
    if table.rows() < 2 {
        return Err(Error::Data(format!("{}: permutation importance needs at least 2 rows", data.display())));
    }
    let task = &prep.targets[0].task;
    let scoring = match a.scoring {
        Some(s) => Scoring::parse(s)?,
        None => Scoring::default_for(task),
    };
    let orders = explain::permutation::shuffles(table.rows(), a.repeats, a.seed);
    let (base, mut imp) = explain::table_importance(model, &table, scoring, &orders)?;
    imp.sort_by(|p, q| q.mean.total_cmp(&p.mean));
    let mut md = format!(
        "# Permutation importance\n\n{} on {} rows of `{}`: {:.4}. Each column shuffled {} times (seed {}); the \
         importance is the drop in {}, with a 95% interval for its mean.\n\n| column | importance | std | 95% \
         interval |\n|---|---:|---:|---|\n",
        scoring.name(),
        table.rows(),
        data.display(),
        base,
        a.repeats,
        a.seed,
        scoring.name()
    );
    for i in &imp {
        md += &format!("| {} | {:.4} | {:.4} | [{:.4}, {:.4}] |\n", i.column, i.mean, i.std, i.low, i.high);
    }
    print!("{md}");
    std::fs::create_dir_all(a.output_dir).map_err(|err| Error::io(a.output_dir, &err))?;
    let mut written = vec![write(a.output_dir, "importance.md", md.as_bytes())?];
    let json = serde_json::json!({ "scoring": scoring.name(), "baseline": base, "repeats": a.repeats, "seed": a.seed, "columns": imp });
    written.push(write(
        a.output_dir,
        "importance.json",
        serde_json::to_string_pretty(&json).unwrap_or_default().as_bytes(),
    )?);
    let bars: Vec<Bar> =
        imp.iter().map(|i| Bar { label: i.column.clone(), value: i.mean, interval: Some((i.low, i.high)) }).collect();
    let title = format!("permutation importance (drop in {})", scoring.name());
    let png = chart::png((760, 90 + 26 * bars.len() as u32), |area| chart::bars(area, &title, scoring.name(), &bars))?;
    written.push(write(a.output_dir, "importance.png", &png)?);
    say_written(&written);
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let path = dir.join(name);
    kiln::io::write_atomic(&path, bytes)?;
    Ok(path)
}

fn say_written(files: &[PathBuf]) {
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    println!("wrote {}", names.join(", "));
}

/// A missing argument with a file's extension and no spaces was meant as a file, not as a text.
fn looks_like_a_file(p: &Path) -> bool {
    let s = p.to_string_lossy();
    let ext = p.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    !s.contains(' ') && ["csv", "tsv", "txt", "gz", "arff", "json", "jsonl", "png", "parquet"].contains(&ext.as_str())
}

fn file_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_alphanumeric() || c == '-' { c } else { '_' }).take(40).collect()
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
