//! The table commands: `kiln data audit`, training on a CSV or ARFF file (`kiln train TABLE.toml`, or with
//! no config at all: `kiln train --data FILE --target COL`), `kiln cv`, and `kiln predict` on raw rows.

use crate::run_dir::{CHECKPOINT, CONFIG, MODEL};
use kiln::data::audit::audit;
use kiln::data::csv::{CsvOptions, read_table};
use kiln::data::prepare::Task;
use kiln::prelude::*;
use kiln::tabular::{self, TableConfig};
use kiln::{Error, Result};
use std::path::{Path, PathBuf};

/// Whether a config file describes a table run (its `[data]` names a `target`).
pub fn is_table_config(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("data")?.as_table()?.get("target").cloned())
        .is_some()
}

pub fn read_config(path: &Path) -> Result<TableConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, &e))?;
    let mut cfg: TableConfig =
        kiln::config::parse_toml(&text).map_err(|m| Error::Config(format!("{}: {m}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new(""));
    cfg.data.path = base.join(&cfg.data.path);
    if let Some(g) = &cfg.data.prepare.text.glove {
        cfg.data.prepare.text.glove = Some(base.join(g));
    }
    Ok(cfg)
}

pub struct TableArgs {
    pub config: Option<PathBuf>,
    /// Continue the table run in this folder from its checkpoint.
    pub resume: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub target: Option<String>,
    pub test_rows: Option<usize>,
    pub epochs: Option<usize>,
    pub run_dir: Option<PathBuf>,
    pub output: Option<PathBuf>,
    /// KEY=VALUE overrides of config values.
    pub set: Vec<String>,
    pub print_config: bool,
    pub quiet: bool,
}

fn config_of(a: &TableArgs) -> Result<TableConfig> {
    let mut cfg = match (&a.config, &a.data, &a.target) {
        (None, None, None) if a.resume.is_some() => {
            let dir = a.resume.as_deref().expect("checked");
            read_config(&dir.join(CONFIG))?
        }
        (Some(c), None, None) => read_config(c)?,
        (None, Some(d), Some(t)) => TableConfig::new(d, t),
        (None, Some(_), None) => {
            return Err(Error::Invalid("--data needs --target COLUMN (the column to predict)".into()));
        }
        _ => return Err(Error::Invalid("give a config file, or --data FILE --target COLUMN".into())),
    };
    if let Some(t) = a.test_rows {
        cfg.data.test_rows = Some(t);
    }
    if let Some(e) = a.epochs {
        cfg.train.epochs = e;
    }
    kiln::config::with_settings(cfg, &a.set)
}

pub fn train(a: TableArgs) -> Result<()> {
    let cfg = config_of(&a)?;
    let text = toml::to_string_pretty(&cfg).unwrap_or_default();
    if a.print_config {
        print!("{text}");
        return Ok(());
    }
    crate::run_dir::check_train(cfg.train.epochs, cfg.train.batch_size, cfg.train.validation_split)?;
    let (table, file_rows) = cfg.read_table_rows()?;
    let types = cfg.types(&table)?;
    let (test, train) = tabular::split(&cfg, &table, &types)?;
    if a.config.is_none() && a.resume.is_none() && !a.quiet {
        println!("config used (save it and edit it to change anything):\n\n{text}");
    }
    let (run_dir, named) = match (&a.resume, &a.run_dir) {
        (Some(d), _) | (None, Some(d)) => (d.clone(), true),
        (None, None) => {
            let stem =
                cfg.data.path.file_name().map(|n| n.to_string_lossy().split('.').next().unwrap_or("table").to_string());
            (crate::run_dir::default_for(Path::new("runs"), &stem.unwrap_or_default()), false)
        }
    };
    let run_dir = if a.resume.is_some() { run_dir } else { crate::run_dir::create(run_dir, named)? };
    let resume = match &a.resume {
        Some(_) => {
            let (m, p) = crate::run_dir::checkpoint_to_resume(&run_dir, cfg.train.epochs)?;
            if !a.quiet {
                println!("resuming {} after epoch {} of {}", run_dir.display(), p.epoch, cfg.train.epochs);
            }
            Some((m, p))
        }
        None => {
            let mut resolved = cfg.clone();
            resolved.data.path = absolute(&cfg.data.path);
            resolved.data.prepare.text.glove = cfg.data.prepare.text.glove.as_deref().map(absolute);
            kiln::io::write_atomic(
                &run_dir.join(CONFIG),
                toml::to_string_pretty(&resolved).unwrap_or_default().as_bytes(),
            )?;
            // Which rows of the file were test rows, so that other tools (examples' baselines) can use the same
            // split.
            let mut part = vec![""; table.rows()];
            train.iter().for_each(|&r| part[r] = "train");
            test.iter().for_each(|&r| part[r] = "test");
            let split: String = std::iter::once("row,part\n".to_string())
                .chain(file_rows.iter().zip(&part).map(|(r, p)| format!("{r},{p}\n")))
                .collect();
            kiln::io::write_atomic(&run_dir.join("split.csv"), split.as_bytes())?;
            None
        }
    };
    crate::run_dir::write_run_info(&run_dir)?;
    let files = tabular::RunFiles {
        callbacks: crate::run_dir::loggers(&run_dir),
        checkpoint: Some(run_dir.join(CHECKPOINT)),
        resume,
    };
    crate::run_dir::on_signal_stop();
    let start = std::time::Instant::now();
    let model = tabular::fit_rows_in(&cfg, &table, &types, &train, !a.quiet, files).map_err(|e| match e {
        Error::Stopped(m) => Error::Stopped(format!("{m}; continue with: kiln train --resume {}", run_dir.display())),
        e => e,
    })?;
    let secs = start.elapsed().as_secs_f64();
    let prep = model.preparation().cloned().expect("set by fit_rows");
    if !a.quiet {
        println!("{} training rows, {} inputs after preparation, {:.1} s", train.len(), prep.width(), secs);
    }
    if !test.is_empty() {
        let s = tabular::score(&model, &table, &test)?;
        println!("test {s} ({} rows)", s.rows);
        if let (Some(r), false) = (&s.report, a.quiet) {
            print!("\n{}\n", r.render());
        }
    }
    model.save(run_dir.join(MODEL))?;
    if let Some(o) = &a.output {
        model.save(o)?;
    }
    println!("saved model to {}", a.output.clone().unwrap_or(run_dir.join(MODEL)).display());
    Ok(())
}

/// `p` as an absolute path where it exists (a run folder's config then reads the same data from anywhere).
fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or(p.to_path_buf())
}

pub fn cv(a: TableArgs, folds: usize) -> Result<()> {
    let cfg = config_of(&a)?;
    let start = std::time::Instant::now();
    let scores = tabular::cross_validate(&cfg, folds)?;
    for (i, s) in scores.iter().enumerate() {
        println!("fold {}: {s} ({} rows)", i + 1, s.rows);
    }
    println!("{folds}-fold cross-validation: {} ({:.1} s)", tabular::summarize(&scores), start.elapsed().as_secs_f64());
    Ok(())
}

pub fn audit_cmd(file: &Path, target: Option<&str>, json: Option<&Path>, html: Option<&Path>) -> Result<()> {
    let table = read_table(file, &CsvOptions::default())?;
    if table.rows() == 0 {
        return Err(Error::Data(format!("{}: no rows", file.display())));
    }
    let mut types = Vec::new();
    for c in &table.columns {
        // A column that will not parse as its likely type is reported, not fatal, in an audit.
        types.push(c.infer(&table.source).unwrap_or(kiln::data::table::ColumnType::Category));
    }
    let report = audit(&table, &types, target)?;
    print!("{}", report.render());
    if let Some(j) = json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| Error::Invalid(e.to_string()))?;
        kiln::io::write_atomic(j, text.as_bytes())?;
    }
    if let Some(h) = html {
        kiln::io::write_atomic(h, report.html().as_bytes())?;
    }
    Ok(())
}

/// Predictions for every row of a CSV/ARFF file, written as CSV: row, prediction, and the probability of
/// each class (classification) or the predicted value (regression).
pub fn predict_rows(model_path: &Path, input: &Path, output: Option<&Path>) -> Result<()> {
    let model = Sequential::load(model_path)?;
    if model.preparation().is_none() {
        return Err(Error::Invalid(format!(
            "{} was not trained on a table; --input takes table rows",
            model_path.display()
        )));
    }
    let table = read_table(input, &CsvOptions::default())?;
    write_predictions(model, &table, output)
}

/// Writes the predictions for every row of `table` as CSV (to `output`, or standard output).
fn write_predictions(model: Sequential, table: &kiln::data::table::Table, output: Option<&Path>) -> Result<()> {
    let prep = model.preparation().cloned().expect("checked by the callers");
    let rows: Vec<usize> = (0..table.rows()).collect();
    let x = prep.transform(table, &rows)?;
    let p = model.predict(&x, 1024)?;
    let mut out = String::new();
    match &prep.task {
        Task::Binary { classes } => {
            out += &format!("row,prediction,p_{}\n", classes[1]);
            for (i, &q) in p.data().iter().enumerate() {
                out += &format!("{},{},{q:.6}\n", i + 1, classes[(q > 0.5) as usize]);
            }
        }
        Task::Multiclass { classes } => {
            out +=
                &format!("row,prediction,{}\n", classes.iter().map(|c| format!("p_{c}")).collect::<Vec<_>>().join(","));
            for (i, row) in p.data().chunks(classes.len()).enumerate() {
                let best = kiln::core::argmax(row);
                let probs: Vec<String> = row.iter().map(|v| format!("{v:.6}")).collect();
                out += &format!("{},{},{}\n", i + 1, classes[best], probs.join(","));
            }
        }
        Task::Regression => {
            out += &format!("row,{}\n", prep.target);
            for (i, v) in p.data().iter().enumerate() {
                out += &format!("{},{v}\n", i + 1);
            }
        }
    }
    match output {
        Some(o) => {
            kiln::io::write_atomic(o, out.as_bytes())?;
            println!("wrote {} predictions to {}", rows.len(), o.display());
        }
        None => print!("{out}"),
    }
    Ok(())
}

pub fn search(
    config: &Path,
    set: &[String],
    random: Option<usize>,
    folds: usize,
    output: Option<PathBuf>,
) -> Result<()> {
    let cfg = read_config(config)?;
    let axes = set.iter().map(|s| tabular::parse_axis(s)).collect::<Result<Vec<_>>>()?;
    let start = std::time::Instant::now();
    let results = tabular::search(&cfg, &axes, folds, random)?;
    println!("{} configs, {folds}-fold cross-validation each, best first:", results.len());
    for (settings, _, scores) in &results {
        let s: Vec<String> = settings.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        println!("  {} | {}", tabular::summarize(scores), s.join(", "));
    }
    let (_, best, _) = &results[0];
    let mut best = best.clone();
    best.data.path = std::fs::canonicalize(&best.data.path).unwrap_or(best.data.path.clone());
    let out = output.unwrap_or_else(|| config.with_file_name("best.toml"));
    let text = format!(
        "# The best of {} configs found by kiln search ({folds}-fold cross-validation, {:.1} s)\n{}",
        results.len(),
        start.elapsed().as_secs_f64(),
        toml::to_string_pretty(&best).map_err(|e| Error::Invalid(e.to_string()))?
    );
    kiln::io::write_atomic(&out, text.as_bytes())?;
    println!("wrote the best config to {}", out.display());
    Ok(())
}

/// Whether the model at `path` was trained on a table whose only input is one text column.
pub fn text_model(path: &Path) -> bool {
    Sequential::load(path).ok().and_then(|m| m.preparation().cloned()).is_some_and(|p| {
        p.features.len() == 1 && matches!(p.features[0].kind, kiln::data::prepare::FeatureKind::Text { .. })
    })
}

/// Predictions for one raw text, for a model trained on a single text column.
pub fn predict_text(model_path: &Path, text: &str, output: Option<&Path>) -> Result<()> {
    let model = Sequential::load(model_path)?;
    let prep = model.preparation().cloned().expect("checked by text_model");
    let column = kiln::data::table::Column {
        name: prep.features[0].name.clone(),
        cells: vec![Some(text.to_string())],
        declared: None,
    };
    let table = kiln::data::table::Table { source: "the text".into(), columns: vec![column] };
    write_predictions(model, &table, output)
}

/// Scores a table or text model on every row of `data` (with the target column; the training config's
/// class mapping applied): the test line and the per-class report `kiln train` prints.
pub fn evaluate(model: Sequential, data: &Path) -> Result<()> {
    let prep = model.preparation().cloned().expect("checked by the caller");
    let table = read_table(data, &CsvOptions::default())?;
    let (table, _) = tabular::map_classes(table, &prep.target, &prep.classes)?;
    let rows: Vec<usize> = (0..table.rows()).collect();
    let s = tabular::score(&model, &table, &rows)?;
    println!("{s} ({} rows)", s.rows);
    if let Some(r) = &s.report {
        print!("\n{}", r.render());
    }
    Ok(())
}

/// Writes the term vectors of a text model (see `tabular::term_vectors`) as GloVe text: a word, then its numbers.
pub fn export_vectors(model: &Path, output: &Path) -> Result<()> {
    let vectors = tabular::term_vectors(&Sequential::load(model)?)
        .map_err(|e| Error::Config(format!("{}: {e}", model.display())))?;
    let mut text = String::new();
    for (word, v) in &vectors {
        text += word;
        for x in v {
            text += &format!(" {x}");
        }
        text.push('\n');
    }
    kiln::io::write_atomic(output, text.as_bytes())?;
    println!(
        "wrote {} word vectors of {} numbers to {}",
        vectors.len(),
        vectors.first().map_or(0, |p| p.1.len()),
        output.display()
    );
    Ok(())
}
