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
    let x = prep.transform_inputs(table, &rows)?;
    let x: Vec<&Tensor> = x.iter().collect();
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
