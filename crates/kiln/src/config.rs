//! The TOML file `kiln train` reads. Every table rejects unknown keys, and the error names the nearest valid
//! key. Relative paths are taken from the config file's folder, so a config runs from anywhere.

use crate::callbacks::CallbackConfig;
use crate::data::augment::Augment;
use crate::loss::Loss;
use crate::metrics::Metric;
use crate::model::{CompileConfig, InputSpec, NodeSpec, Sequential};
use crate::nn::LayerConfig;
use crate::optim::OptimizerConfig;
use crate::schedule::{Clip, Schedule};
use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    #[serde(default)]
    pub output: OutputConfig,
    /// Callbacks, in the order they run (`[[callbacks]]` tables with a `type`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callbacks: Vec<CallbackConfig>,
    /// The file this config was read from, for error messages.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// A folder with the four MNIST IDX files (raw or .gz).
    Mnist,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub format: DataFormat,
    pub path: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default = "default_name")]
    pub name: String,
    /// One sample's shape, without the batch axis.
    pub input_shape: Vec<usize>,
    /// Seeds the weight initializers.
    #[serde(default)]
    pub seed: u64,
    /// Layers in a line, each reading the one before (a Sequential model).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerConfig>,
    /// Or a graph: layers that name what they read (`inputs = ["input"]`, earlier layers' names), for
    /// residual connections and merges (`add`, `multiply`, `concatenate`, `dot`). The data's input is
    /// called `input`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeSpec>,
}

fn default_name() -> String {
    "sequential".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    pub loss: Loss,
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default = "one")]
    pub epochs: usize,
    #[serde(default = "thirty_two")]
    pub batch_size: usize,
    #[serde(default)]
    pub validation_split: f64,
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Seeds shuffling, dropout and augmentation.
    #[serde(default)]
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(default)]
    pub clip: Clip,
    /// Random changes to each training image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augment>,
    /// Weights of the classes in the loss: `"balanced"`, or by class index, e.g. `{ 0 = 1.0, 1 = 5.0 }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weight: Option<crate::train::ClassWeight>,
}

fn one() -> usize {
    1
}
fn thirty_two() -> usize {
    32
}
fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Where the trained model is saved (safetensors), besides the run folder.
    pub model: Option<PathBuf>,
    /// The folder that holds run folders (`NAME-YYYYMMDD-HHMMSS`), relative to the working directory.
    #[serde(default = "runs")]
    pub runs_dir: PathBuf,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { model: None, runs_dir: runs() }
    }
}

fn runs() -> PathBuf {
    "runs".into()
}

impl RunConfig {
    /// Reads and checks a config file; relative paths in it become relative to its folder.
    pub fn from_file(path: impl AsRef<Path>) -> Result<RunConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, &e))?;
        let mut c = RunConfig::parse(&text).map_err(|m| Error::Config(format!("{}: {m}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new(""));
        c.data.path = base.join(&c.data.path);
        if let Some(m) = &c.output.model {
            c.output.model = Some(base.join(m));
        }
        c.source = Some(path.to_path_buf());
        Ok(c)
    }

    /// Parses config text; the error is one line naming the line, the key and the nearest valid key.
    pub fn parse(text: &str) -> std::result::Result<RunConfig, String> {
        parse_toml(text)
    }

    /// This config with each `KEY=VALUE` of `sets` applied (`--set train.epochs=3`), checked as a file is.
    pub fn with_settings(self, sets: &[String]) -> Result<RunConfig> {
        let source = self.source.clone();
        let mut c = with_settings(self, sets)?;
        c.source = source;
        Ok(c)
    }

    pub fn compile_config(&self) -> CompileConfig {
        CompileConfig {
            optimizer: self.train.optimizer.clone(),
            loss: self.train.loss,
            metrics: self.train.metrics.clone(),
            schedule: self.train.schedule.clone(),
            clip: self.train.clip.clone(),
        }
    }

    /// A split's targets as the loss wants them: class indices for the sparse loss, one-hot rows otherwise.
    pub fn targets(&self, s: &crate::data::mnist::Split) -> Result<kiln_core::Tensor> {
        if self.train.loss.sparse() {
            kiln_core::Tensor::new(&[s.labels.len()], s.labels.iter().map(|&l| l as f32).collect())
        } else {
            Ok(s.y.clone())
        }
    }

    /// The model the config describes, built and compiled.
    pub fn build_model(&self) -> Result<Sequential> {
        let file = self.source.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default();
        let (layers, nodes) = (&self.model.layers, &self.model.nodes);
        if layers.is_empty() == nodes.is_empty() {
            return Err(Error::Config(format!(
                "{file}[model] needs `layers` (a line of layers) or `nodes` (a graph), {}",
                if layers.is_empty() { "and has neither" } else { "not both" }
            )));
        }
        let input = InputSpec { name: "input".into(), shape: self.model.input_shape.clone() };
        let mut m = Sequential::from_spec(&[input], &[], self.model.seed)?.named(&self.model.name);
        let (what, specs): (&str, Vec<NodeSpec>) = if nodes.is_empty() {
            ("layers", layers.iter().map(|l| NodeSpec { inputs: Vec::new(), layer: l.clone() }).collect())
        } else {
            ("nodes", nodes.clone())
        };
        for (i, n) in specs.into_iter().enumerate() {
            let from: Vec<&str> = n.inputs.iter().map(String::as_str).collect();
            m.apply(n.layer, &from).map_err(|e| match e {
                Error::Shape(msg) | Error::Config(msg) => Error::Config(format!("{file}model.{what}[{i}]: {msg}")),
                other => other,
            })?;
        }
        m.compile_with(self.compile_config())?;
        if let Some(a) = &self.train.augment {
            a.validate()?;
        }
        Ok(m)
    }

    /// The config as a run folder keeps it: every default filled in and every path absolute, so that
    /// `kiln train --resume` reads the same data from anywhere.
    pub fn resolved(&self) -> RunConfig {
        let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let mut c = self.clone();
        c.data.path = abs(&c.data.path);
        c.output.model = c.output.model.as_deref().map(|m| match (m.parent(), m.file_name()) {
            (Some(d), Some(f)) if !d.as_os_str().is_empty() => abs(d).join(f),
            (_, Some(f)) => abs(Path::new(".")).join(f),
            _ => m.to_path_buf(),
        });
        c
    }

    /// The config with every default filled in, as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print config: {e}"))
    }
}

/// Any config type from TOML text, with errors as `explain_toml_error` words them: every config reader of
/// kiln (runs, tables) goes through here, so every TOML mistake reads the same.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    toml::from_str(text).map_err(|e| explain_toml_error(&e, text))
}

/// `cfg` with the dotted `key` set to `value`; an unknown key or a value of the wrong kind is an error naming
/// the key (and the nearest valid one).
pub fn with_setting<T: Serialize + serde::de::DeserializeOwned>(cfg: &T, key: &str, value: &toml::Value) -> Result<T> {
    let mut doc = toml::Value::try_from(cfg).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut at = &mut doc;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let table = at.as_table_mut().ok_or_else(|| Error::Config(format!("`{key}`: `{p}` is not a table")))?;
        if i + 1 == parts.len() {
            table.insert(p.to_string(), value.clone());
            break;
        }
        at = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
    }
    doc.try_into().map_err(|e: toml::de::Error| {
        let msg = e.message().to_string();
        Error::Config(format!("`{key} = {value}`: {}", explain_unknown(&msg).unwrap_or(msg)))
    })
}

/// One setting a search varies: a dotted config key (`model.hidden`, `train.optimizer.learning_rate`) and the values
/// to try.
#[derive(Clone, Debug)]
pub struct Axis {
    pub key: String,
    pub values: Vec<toml::Value>,
}

/// Parses `KEY=V1,V2,...` (values in TOML syntax; commas inside brackets belong to the value).
pub fn parse_axis(s: &str) -> Result<Axis> {
    let (key, vals) =
        s.split_once('=').ok_or_else(|| Error::Invalid(format!("`{s}`: expected KEY=VALUE,VALUE,...")))?;
    let (mut parts, mut depth, mut cur) = (Vec::new(), 0i32, String::new());
    for c in vals.chars() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    let values = parts
        .iter()
        .map(|p| {
            let t: toml::Table = toml::from_str(&format!("v = {}", p.trim()))
                .or_else(|_| toml::from_str(&format!("v = \"{}\"", p.trim())))
                .map_err(|e| Error::Invalid(format!("`{p}` is not a value for {key} ({})", e.message())))?;
            Ok(t["v"].clone())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Axis { key: key.trim().to_string(), values })
}

/// `cfg` with each `KEY=VALUE` of `sets` applied in turn (`--set`); a list of values is for `kiln search`.
pub fn with_settings<T: Serialize + serde::de::DeserializeOwned>(cfg: T, sets: &[String]) -> Result<T> {
    let mut cfg = cfg;
    for s in sets {
        let axis = parse_axis(s)?;
        let [value] = axis.values.as_slice() else {
            return Err(Error::Invalid(format!("--set {s}: one value (a list of settings is for `kiln search`)")));
        };
        cfg = with_setting(&cfg, &axis.key, value)?;
    }
    Ok(cfg)
}

/// "line 12: unknown key `epohcs`; did you mean `epochs`?": the line from the error's span, the message with
/// serde's list of expected keys turned into the nearest one.
pub fn explain_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().replace('\n', " ");
    // Inside `[[model.layers]]` the span covers the whole array of tables: point at the key or value named.
    let start = e.span().map(|s| {
        let at = within(text, s.start);
        named_in_table(text, at, s.end, &msg).unwrap_or(at)
    });
    let line = start.map(|at| text[..at].matches('\n').count() + 1);
    let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
    let explained = explain_unknown(&msg).unwrap_or(msg);
    format!("{at}{explained}")
}

/// The nearest char boundary at or before `at`.
fn within(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Where the key (`x = ...`) or value (`"x"`) that an "unknown field `x`" or "unknown variant `x`" message
/// names is written, in the array of tables whose first header is at `from`..`to` (the span toml gives). Of the tables
/// there that hold it, the one whose other keys are all in the message's list of valid keys (the table that
/// failed, not an earlier one of another type where the key is valid).
fn named_in_table(text: &str, from: usize, to: usize, msg: &str) -> Option<usize> {
    let (is_key, rest) = match (msg.strip_prefix("unknown field `"), msg.strip_prefix("unknown variant `")) {
        (Some(r), _) => (true, r),
        (_, Some(r)) => (false, r),
        _ => return None,
    };
    let (name, after) = rest.split_once('`')?;
    let valid: Vec<&str> = after.split('`').skip(1).step_by(2).collect();
    let key_of = |t: &str| t.split_once('=').map(|(k, _)| k.trim().to_string());
    // The span is the array's first header (`[[model.layers]]`): its tables run until another header.
    let header = text[from..within(text, to.max(from))].trim();
    let mut offset = from;
    let mut table: Vec<(usize, &str)> = Vec::new();
    let mut tables: Vec<Vec<(usize, &str)>> = Vec::new();
    for line in text[from..].split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') && !table.is_empty() {
            if t.trim_end() != header {
                break;
            }
            tables.push(std::mem::take(&mut table));
        }
        table.push((offset + (line.len() - t.len()), t));
        offset += line.len();
    }
    tables.push(table);
    for t in &tables {
        let hit = t.iter().find(|(_, l)| {
            if is_key {
                l.strip_prefix(name).is_some_and(|r| r.trim_start().starts_with('='))
            } else {
                l.contains(&format!("\"{name}\"")) || l.contains(&format!("'{name}'"))
            }
        });
        let fits = !is_key
            || t.iter()
                .filter_map(|(_, l)| key_of(l))
                .all(|k| k == name || k == "type" || k == "inputs" || valid.contains(&k.as_str()));
        if let (Some(&(at, _)), true) = (hit, fits) {
            return Some(at);
        }
    }
    None
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant") with a suggestion.
pub fn explain_unknown(msg: &str) -> Option<String> {
    let (what, rest) = if let Some(r) = msg.strip_prefix("unknown field `") {
        ("key", r)
    } else if let Some(r) = msg.strip_prefix("unknown variant `") {
        ("value", r)
    } else {
        return None;
    };
    let (given, rest) = rest.split_once('`')?;
    let valid: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    if valid.is_empty() {
        return Some(format!("unknown {what} `{given}`: {}", rest.trim_start_matches([',', ' '])));
    }
    // Keys that moved: one spelling for a setting in every config.
    let moved = match given {
        "learning_rate" | "weight_decay" if valid.contains(&"optimizer") => Some(
            "; it is set with the optimizer: optimizer = { type = \"adam\", learning_rate = 0.001 }, or \
             { type = \"adamw\", learning_rate = 0.001, weight_decay = 0.004 }",
        ),
        "regression_loss" if valid.contains(&"loss") => Some("; write loss = \"huber\" (or mean_absolute_error)"),
        _ => None,
    };
    if let Some(m) = moved {
        return Some(format!("unknown {what} `{given}`{m}"));
    }
    // `inputs` is a key of graph nodes only (it sits beside the layer's own keys).
    if what == "key" && !valid.contains(&"inputs") && edit_distance(given, "inputs") <= 2 {
        let hint = if given == "inputs" { "" } else { "did you mean `inputs`? " };
        return Some(format!(
            "unknown key `{given}`; {hint}`inputs` names what a layer reads in [[model.nodes]] (a graph); in \
             [[model.layers]] each layer reads the one before"
        ));
    }
    let best = valid.iter().min_by_key(|v| edit_distance(given, v)).expect("non-empty");
    let hint = if edit_distance(given, best) <= given.len().max(best.len()) / 2 + 1 {
        format!("; did you mean `{best}`?")
    } else {
        String::new()
    };
    Some(format!("unknown {what} `{given}`{hint} (valid: {})", valid.join(", ")))
}

pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let sub = prev[j - 1] + (a[i - 1] != b[j - 1]) as usize;
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
