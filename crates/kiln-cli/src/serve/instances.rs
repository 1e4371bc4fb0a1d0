//! What `POST /v1/models/{name}/predict` reads and answers: instances as people write kiln's inputs, and
//! predictions with the class names the model was trained on.
//!
//! - A table model takes rows by column name, `{"age": 39, "workclass": "Private", ...}`; the saved
//!   preparation turns them into the model's inputs, as `kiln predict --input rows.csv` does. A missing
//!   column is an error naming it (write `null` for a missing value) and the nearest key the model does not
//!   read; other keys are let be, as a CSV's other columns are (rows copied whole from the training file).
//! - A text model (one text column) takes the text itself, `"Love this dress!"`, or `{"Review Text": "..."}`.
//! - An image model takes `{"b64": "<base64 PNG>"}` (TensorFlow Serving's spelling; decoded as `kiln predict
//!   image.png` decodes a file) or nested arrays of the model's input shape (height, width, channels; a one-channel
//!   image may leave out its channel level), values as the model was trained on (MNIST: 0 to 1).
//!
//! Answers: for a class, `{"class": "yes", "probabilities": {"no": 0.2, "yes": 0.8}}` (an image model's
//! classes are their indices, its probabilities a list); for a number, `{"value": 41.5}`; with several targets,
//! one such object per target name.

use base64::Engine;
use kiln::data::prepare::Task;
use kiln::data::prepare::{FeatureKind, Preparation};
use kiln::data::table::{Column, Table};
use kiln::model::Sequential;
use kiln::{Error, Result, Tensor};
use serde_json::{Map, Value, json};

/// The kind of input a saved model takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Rows of named columns.
    Table,
    /// One text column, named.
    Text(String),
    /// An image of this shape (height, width, channels).
    Image(Vec<usize>),
}

impl Kind {
    pub fn of(model: &Sequential) -> Kind {
        match model.preparation() {
            Some(p) if p.features.len() == 1 && is_text(&p.features[0].kind) => Kind::Text(p.features[0].name.clone()),
            Some(_) => Kind::Table,
            None => Kind::Image(model.input_shape().to_vec()),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Table => "table",
            Kind::Text(_) => "text",
            Kind::Image(_) => "image",
        }
    }
}

fn is_text(k: &FeatureKind) -> bool {
    matches!(k, FeatureKind::Text { .. } | FeatureKind::Tokens { .. })
}

/// What `GET /v1/models/{name}` says about a model's inputs and outputs (besides its name and file).
pub fn describe(model: &Sequential) -> Value {
    let kind = Kind::of(model);
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind.name()));
    match (&kind, model.preparation()) {
        (Kind::Image(shape), _) => {
            out.insert("input".into(), json!({"shape": shape, "accepts": ["{\"b64\": PNG}", "nested arrays"]}));
            out.insert("classes".into(), json!(model.output_shape().last().copied().unwrap_or(1)));
        }
        (_, Some(p)) => {
            let cols: Vec<Value> =
                p.features.iter().map(|f| json!({"name": f.name, "kind": feature_kind(&f.kind)})).collect();
            out.insert("inputs".into(), Value::Array(cols));
            out.insert("outputs".into(), Value::Array(p.targets.iter().map(|t| output_of(&t.name, &t.task)).collect()));
            out.insert("preparation".into(), serde_json::to_value(p).unwrap_or(Value::Null));
        }
        (_, None) => {}
    }
    Value::Object(out)
}

fn feature_kind(k: &FeatureKind) -> &'static str {
    match k {
        FeatureKind::Number { .. } => "number",
        FeatureKind::Category { .. } => "category",
        FeatureKind::Boolean => "boolean",
        _ if is_text(k) => "text",
        _ => "other",
    }
}

fn output_of(name: &str, task: &Task) -> Value {
    match task {
        Task::Binary { classes } | Task::Multiclass { classes } => json!({"name": name, "classes": classes}),
        Task::Regression => json!({"name": name, "kind": "number"}),
    }
}

/// The predictions for `instances`, one answer each, in order. Errors are the caller's (400): they name
/// the instance and what was expected.
pub fn predict(model: &Sequential, instances: &[Value]) -> Result<Vec<Value>> {
    match Kind::of(model) {
        Kind::Image(shape) => predict_images(model, &shape, instances),
        kind => {
            let prep = model.preparation().expect("a table or text model has a preparation");
            let table = rows_to_table(prep, &kind, instances)?;
            let rows: Vec<usize> = (0..table.rows()).collect();
            let x = prep.transform_inputs(&table, &rows)?;
            let x: Vec<&Tensor> = x.iter().collect();
            let outputs = model.predict_outputs(&x, 1024)?;
            Ok((0..instances.len()).map(|r| answer(prep, &outputs, r)).collect())
        }
    }
}

/// One row's answer: each target's class and probabilities, or value.
fn answer(prep: &Preparation, outputs: &[Tensor], r: usize) -> Value {
    let one = |task: &Task, p: &Tensor| -> Value {
        match task {
            Task::Binary { classes } => {
                let q = p.data()[r];
                let probs: Map<String, Value> =
                    [(classes[0].clone(), json!(1.0 - q)), (classes[1].clone(), json!(q))].into_iter().collect();
                json!({"class": classes[(q > 0.5) as usize], "probabilities": probs})
            }
            Task::Multiclass { classes } => {
                let row = &p.data()[r * classes.len()..(r + 1) * classes.len()];
                let probs: Map<String, Value> = classes.iter().cloned().zip(row.iter().map(|&v| json!(v))).collect();
                json!({"class": classes[kiln::core::argmax(row)], "probabilities": probs})
            }
            Task::Regression => json!({"value": p.data()[r]}),
        }
    };
    if let [t] = &prep.targets[..] {
        return one(&t.task, &outputs[0]);
    }
    Value::Object(prep.targets.iter().zip(outputs).map(|(t, p)| (t.name.clone(), one(&t.task, p))).collect())
}

/// Instances as a table with the columns the preparation reads.
fn rows_to_table(prep: &Preparation, kind: &Kind, instances: &[Value]) -> Result<Table> {
    let names: Vec<&str> = prep.features.iter().map(|f| f.name.as_str()).collect();
    let mut columns: Vec<Column> =
        names.iter().map(|n| Column { name: n.to_string(), cells: Vec::new(), declared: None }).collect();
    for (i, inst) in instances.iter().enumerate() {
        let i = i + 1; // as people count, and as the preparation's errors count rows
        let obj = match (inst, kind) {
            (Value::String(s), Kind::Text(_)) => {
                columns[0].cells.push(Some(s.clone()));
                continue;
            }
            (Value::Object(o), _) => o,
            _ => {
                let want = match kind {
                    Kind::Text(c) => format!("a text, or an object {{\"{c}\": text}}"),
                    _ => format!("an object of the columns {}", names.join(", ")),
                };
                return Err(Error::Invalid(format!("instance {i}: {} where the model takes {want}", type_of(inst))));
            }
        };
        for col in columns.iter_mut() {
            let cell = match obj.get(&col.name) {
                None => {
                    // Keys the model does not read are let be (rows copied whole, ignored columns), but the
                    // nearest of them is named here: a misspelt column is the likely cause.
                    let unknown = obj.keys().filter(|k| !names.contains(&k.as_str()));
                    let near = unknown.min_by_key(|k| kiln::config::edit_distance(k, &col.name));
                    let hint = match near {
                        Some(k) if kiln::config::edit_distance(k, &col.name) <= k.len().max(col.name.len()) / 2 => {
                            format!("; `{k}` is not a column the model reads: did you mean `{}`?", col.name)
                        }
                        _ => String::new(),
                    };
                    return Err(Error::Invalid(format!(
                        "instance {i}: no `{}`{hint} (write null for a missing value; the model reads {})",
                        col.name,
                        names.join(", ")
                    )));
                }
                Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                Some(v) => {
                    return Err(Error::Invalid(format!(
                        "instance {i}: `{}` is {}; want a number, a string, true/false or null",
                        col.name,
                        type_of(v)
                    )));
                }
            };
            col.cells.push(cell);
        }
    }
    Ok(Table { source: "the instances".into(), columns })
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn predict_images(model: &Sequential, shape: &[usize], instances: &[Value]) -> Result<Vec<Value>> {
    let per: usize = shape.iter().product();
    let mut data = Vec::with_capacity(instances.len() * per);
    for (i, inst) in instances.iter().enumerate() {
        let i = i + 1; // as people count, and as the preparation's errors count rows
        let image = match inst {
            Value::Object(o) if o.len() == 1 && o.contains_key("b64") => {
                let Some(text) = o["b64"].as_str() else {
                    return Err(Error::Invalid(format!("instance {i}: `b64` must be a string of base64 PNG bytes")));
                };
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| Error::Invalid(format!("instance {i}: `b64` is not base64 ({e})")))?;
                let x = crate::commands::decode_png(&bytes, &format!("instance {i}"), shape)?;
                if x.shape()[1..] != shape[..] {
                    return Err(Error::Shape(format!(
                        "instance {i}: the PNG is {:?} but the model takes {shape:?} (height, width, channels)",
                        &x.shape()[1..]
                    )));
                }
                x.data().to_vec()
            }
            Value::Array(_) => nested(inst, shape).map_err(|m| Error::Shape(format!("instance {i}: {m}")))?,
            _ => {
                return Err(Error::Invalid(format!(
                    "instance {i}: {} where the model takes an image: {{\"b64\": base64 PNG}} or nested arrays of \
                     shape {shape:?}",
                    type_of(inst)
                )));
            }
        };
        data.extend(image);
    }
    let mut dims = vec![instances.len()];
    dims.extend(shape);
    let probs = model.predict(&Tensor::new(&dims, data)?, 256)?;
    let classes = probs.data().len() / instances.len().max(1);
    Ok(probs
        .data()
        .chunks(classes.max(1))
        .map(|p| json!({"class": kiln::core::argmax(p), "probabilities": p}))
        .collect())
}

/// Nested arrays of `shape` (or of shape without its last level when that level is 1), flattened.
fn nested(v: &Value, shape: &[usize]) -> std::result::Result<Vec<f32>, String> {
    let mut out = Vec::new();
    let depth = if shape.last() == Some(&1) && depth_of(v) + 1 == shape.len() { shape.len() - 1 } else { shape.len() };
    flatten(v, &shape[..depth], &mut out, &mut Vec::new())?;
    Ok(out)
}

fn depth_of(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.first().map_or(0, depth_of),
        _ => 0,
    }
}

fn flatten(v: &Value, shape: &[usize], out: &mut Vec<f32>, at: &mut Vec<usize>) -> std::result::Result<(), String> {
    match (v, shape.split_first()) {
        (Value::Array(a), Some((&n, rest))) => {
            if a.len() != n {
                return Err(format!("level {} at {at:?} has {} values, want {n} (shape {shape:?})", at.len(), a.len()));
            }
            for (j, x) in a.iter().enumerate() {
                at.push(j);
                flatten(x, rest, out, at)?;
                at.pop();
            }
            Ok(())
        }
        (Value::Number(x), None) => {
            let x = x.as_f64().unwrap_or(f64::NAN) as f32;
            if !x.is_finite() {
                return Err(format!("the value at {at:?} is not a finite f32"));
            }
            out.push(x);
            Ok(())
        }
        (_, Some(_)) => Err(format!("{} at {at:?} where an array was expected", type_of(v))),
        (_, None) => Err(format!("{} at {at:?} where a number was expected", type_of(v))),
    }
}
