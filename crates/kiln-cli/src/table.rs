//! The table commands: `kiln data audit`, and `kiln predict`/`evaluate` on raw rows and texts (a table run
//! itself is in train.rs, beside the image run).

use kiln::data::audit::audit;
use kiln::data::csv::{CsvOptions, read_table};
use kiln::data::prepare::Task;
use kiln::prelude::*;
use kiln::tabular;
use kiln::{Error, Result};
use std::path::Path;

pub fn audit_cmd(file: &Path, target: Option<&str>, json: Option<&Path>, html: Option<&Path>) -> Result<()> {
    let table = read_table(file, &CsvOptions::default())?;
    if table.rows() == 0 {
        return Err(Error::Data(format!("{}: no rows", file.display())));
    }
    let mut types = Vec::new();
    let mut problems = Vec::new();
    for c in &table.columns {
        // A column that will not parse as its likely type is reported, not fatal, in an audit: its note says
        // what `kiln train` will refuse.
        let t = c.infer(&table.source);
        problems.push(t.as_ref().err().map(|e| {
            let m = e.to_string();
            let m = m.split_once(&format!("{}: ", table.source)).map_or(m.clone(), |(_, r)| r.to_string());
            format!("TRAINING REFUSES IT: {m}")
        }));
        types.push(t.unwrap_or(kiln::data::table::ColumnType::Category));
    }
    let mut report = audit(&table, &types, target)?;
    for (c, p) in report.columns.iter_mut().zip(problems) {
        c.notes.extend(p);
    }
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

/// `kiln predict MODEL ...`, the model loaded once: rows (`--input FILE`) for a table or text model, one text
/// in quotes for a text model, or an image (a PNG, or an IDX file with `--index`).
pub fn predict(
    model_path: &Path,
    input: Option<&Path>,
    index: Option<usize>,
    rows: Option<&Path>,
    output: Option<&Path>,
) -> Result<()> {
    if kiln::recommend::is_recommender(model_path).unwrap_or(false) {
        return Err(Error::Invalid(format!(
            "{} is a recommender: ask it with `kiln recommend {} --user ID` (or --similar-items ID)",
            model_path.display(),
            model_path.display()
        )));
    }
    let model = Sequential::load(model_path)?;
    // A model trained on a table whose only input is one text column takes a text as its argument.
    let text = model.preparation().is_some_and(|p| {
        p.features.len() == 1
            && matches!(
                p.features[0].kind,
                kiln::data::prepare::FeatureKind::Text { .. } | kiln::data::prepare::FeatureKind::Tokens { .. }
            )
    });
    match (input, rows) {
        (_, Some(rows)) => predict_rows(model, model_path, rows, output),
        (Some(input), None) if !input.exists() && text => predict_text(model, &input.to_string_lossy(), output),
        (Some(input), None) if !input.exists() && model.preparation().is_some() => {
            let cols: Vec<&str> =
                model.preparation().map(|p| p.features.iter().map(|f| f.name.as_str()).collect()).unwrap_or_default();
            Err(Error::Invalid(format!(
                "`{}` is not a file, and {} reads the columns {}, not one text: give its rows with --input FILE",
                input.display(),
                model_path.display(),
                cols.join(", ")
            )))
        }
        (Some(input), None) if input.is_file() && model.preparation().is_some() => Err(Error::Invalid(format!(
            "{} is a file, and {} was trained on a table: give its rows with --input {}{}",
            input.display(),
            model_path.display(),
            input.display(),
            if text { " (or one text, in quotes, as the argument)" } else { "" }
        ))),
        (Some(input), None) => crate::commands::predict(model, input, index),
        (None, None) => {
            Err(Error::Invalid("give an input: a PNG, an IDX file with --index, or --input ROWS.csv".into()))
        }
    }
}

/// Predictions for every row of a CSV/ARFF file, written as CSV: row, prediction, and the probability of
/// each class (classification) or the predicted value (regression).
fn predict_rows(model: Sequential, model_path: &Path, input: &Path, output: Option<&Path>) -> Result<()> {
    if model.preparation().is_none() {
        return Err(Error::Invalid(format!(
            "{} was not trained on a table; --input takes table rows",
            model_path.display()
        )));
    }
    let table = read_table(input, &CsvOptions::default())?;
    if table.rows() == 0 {
        return Err(Error::Data(format!("{}: no rows to predict (only a header)", input.display())));
    }
    write_predictions(model, &table, output)
}

/// Writes the predictions for every row of `table` as CSV (to `output`, or standard output). With several
/// targets, each target's columns in turn, named after it (`churn`, `churn_p_yes`, `spend`).
fn write_predictions(model: Sequential, table: &kiln::data::table::Table, output: Option<&Path>) -> Result<()> {
    let prep = model.preparation().cloned().expect("checked by the callers");
    let rows: Vec<usize> = (0..table.rows()).collect();
    let x = prep.transform_inputs(table, &rows)?;
    let x: Vec<&Tensor> = x.iter().collect();
    let p = model.predict_outputs(&x, 1024)?;
    for (col, n) in prep.rows_without_known_terms(table, &rows)? {
        let so = if prep.features.len() == 1 {
            "their predictions tell nothing about them"
        } else {
            "their predictions rest on the other columns"
        };
        eprintln!(
            "warning: {n} of {} rows have no word the model knows in `{col}` (empty, or every word unseen in \
             training): {so}",
            rows.len()
        );
    }
    let several = prep.targets.len() > 1;
    // Each target's header cells and, per row, its cells.
    let mut header = vec!["row".to_string()];
    let mut cells: Vec<Vec<String>> = (1..=rows.len()).map(|r| vec![r.to_string()]).collect();
    for (t, p) in prep.targets.iter().zip(&p) {
        let (pred, prob) = if several {
            (t.name.clone(), format!("{}_p_", t.name))
        } else {
            ("prediction".to_string(), "p_".to_string())
        };
        match &t.task {
            Task::Binary { classes } => {
                header.extend([pred, format!("{prob}{}", classes[1])]);
                for (row, &q) in cells.iter_mut().zip(p.data()) {
                    row.extend([classes[(q > 0.5) as usize].clone(), format!("{q:.6}")]);
                }
            }
            Task::Multiclass { classes } => {
                header.push(pred);
                header.extend(classes.iter().map(|c| format!("{prob}{c}")));
                for (row, probs) in cells.iter_mut().zip(p.data().chunks(classes.len())) {
                    row.push(classes[kiln::core::argmax(probs)].clone());
                    row.extend(probs.iter().map(|v| format!("{v:.6}")));
                }
            }
            Task::Regression => {
                header.push(t.name.clone());
                for (row, v) in cells.iter_mut().zip(p.data()) {
                    row.push(v.to_string());
                }
            }
        }
    }
    let mut out = header.join(",") + "\n";
    for row in cells {
        out += &(row.join(",") + "\n");
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

/// Predictions for one raw text, for a model trained on a single text column.
fn predict_text(model: Sequential, text: &str, output: Option<&Path>) -> Result<()> {
    let prep = model.preparation().cloned().ok_or_else(|| Error::Invalid("not a text model".into()))?;
    let column = kiln::data::table::Column {
        name: prep.features[0].name.clone(),
        cells: vec![Some(text.to_string())],
        declared: None,
    };
    let table = kiln::data::table::Table { source: "the text".into(), columns: vec![column] };
    write_predictions(model, &table, output)
}

/// Scores a table or text model on every row of `data` (with the target column; the training config's
/// class mapping applied), or with `split` on the rows that split.csv beside the model marks so: the test
/// line and the per-class report `kiln train` prints.
pub fn evaluate(model: Sequential, model_path: &Path, data: &Path, split: Option<&str>) -> Result<()> {
    let prep = model.preparation().cloned().expect("checked by the caller");
    let table = read_table(data, &CsvOptions::default())?;
    let (table, file_rows) = tabular::map_classes(table, &prep.targets[0].name, &prep.classes)?;
    if table.rows() == 0 {
        return Err(Error::Data(format!(
            "{}: no rows to score ({})",
            data.display(),
            if prep.classes.is_empty() { "only a header" } else { "none has a class data.classes maps" }
        )));
    }
    let mut rows: Vec<usize> = (0..table.rows()).collect();
    if let Some(part) = split {
        let marked = split_rows(model_path, part)?;
        if let Some(&last) = marked.iter().max()
            && last >= file_rows.last().map_or(0, |r| r + 1)
        {
            return Err(Error::Data(format!(
                "{}: split.csv marks row {last}, but the file has {} data rows: is it the file the run trained on?",
                data.display(),
                file_rows.last().map_or(0, |r| r + 1)
            )));
        }
        rows.retain(|&r| marked.contains(&file_rows[r]));
        if rows.is_empty() {
            let why = if part == "validation" { " (a run with train.validation_split = 0 has none)" } else { "" };
            return Err(Error::Data(format!("{}: split.csv marks none of its rows `{part}`{why}", data.display())));
        }
    }
    print!("{}", tabular::render_scores(&tabular::scores(&model, &table, &rows)?, "", true));
    Ok(())
}

/// The file rows that the run's split.csv (in the folder of `model_path`) marks `part`.
fn split_rows(model_path: &Path, part: &str) -> Result<std::collections::HashSet<usize>> {
    const PARTS: [&str; 3] = ["test", "train", "validation"];
    if !PARTS.contains(&part) {
        return Err(Error::Invalid(format!("--split must be one of {}, got `{part}`", PARTS.join(", "))));
    }
    let path = model_path.parent().unwrap_or(Path::new(".")).join("split.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::Invalid(format!(
            "--split {part} reads the run's split.csv beside the model, but {} cannot be read ({e}); leave \
             --split out to score every row of --data",
            path.display()
        ))
    })?;
    let mut rows = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let row = line.split_once(',').and_then(|(r, p)| r.parse::<usize>().ok().map(|r| (r, p)));
        match row {
            Some((r, p)) if p == part => {
                rows.insert(r);
            }
            Some(_) => {}
            None => {
                return Err(Error::Data(format!(
                    "{} line {}: expected `row,part`, got `{line}`",
                    path.display(),
                    i + 1
                )));
            }
        }
    }
    Ok(rows)
}

/// Writes the term vectors of a text model (see `tabular::term_vectors`) as GloVe text: a word, then its numbers.
pub fn export_vectors(model: &Path, output: &Path) -> Result<()> {
    let vectors = tabular::term_vectors(&Sequential::load(model)?).map_err(|e| match e {
        Error::Config(m) => Error::Config(format!("{}: {m}", model.display())),
        e => e,
    })?;
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
