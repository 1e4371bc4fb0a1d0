//! The one config every run reads (`kiln train`, `cv`, `search`, `summary`), for images, tables and text
//! alike: `[data]` (what to read), `[model]` (a built-in recipe by `kind`, or `[[model.layers]]`, or a graph of
//! `[[model.nodes]]`), `[train]` (the same keys for every kind of data), `[output]` and `[[callbacks]]`.
//! Every table rejects unknown keys naming the nearest valid one, and a key that does not apply to the
//! config's kind of data (`data.target` for MNIST, `train.augment` for a table) is an error naming it.
//! Relative paths are taken from the config file's folder, so a config runs from anywhere.
//!
//! Where a key is left out, a table or text run gets a recipe that works as it is (30 epochs of batches of
//! 64, a tenth of the training rows held out, early stopping after 4 epochs without progress), an image run
//! Keras's `fit` defaults (1 epoch, batches of 32, no validation); `--print-config` and the run folder's
//! config.toml show every value used.

mod check;
mod data;
use check::recipe_uses;
pub use data::{DataConfig, DataFormat, DataKind};
mod settings;

pub use settings::{
    Axis, edit_distance, explain_toml_error, explain_unknown, parse_axis, parse_toml, with_setting, with_settings,
};

use crate::callbacks::CallbackConfig;
use crate::data::augment::Augment;
use crate::data::prepare::InputColumns;
use crate::loss::Loss;
use crate::metrics::Metric;
use crate::model::{CompileConfig, NodeSpec};
use crate::nn::LayerConfig;
use crate::optim::OptimizerConfig;
use crate::schedule::{Clip, Schedule};
use crate::train::ClassWeight;
use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data: DataConfig,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub output: OutputConfig,
    /// Callbacks, in the order they run (`[[callbacks]]` tables with a `type`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callbacks: Vec<CallbackConfig>,
    /// The file this config was read from, for error messages.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// What was decided for the user when the config was inferred from the data (`--data`), to say once the
    /// run starts.
    #[serde(skip)]
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The model's name (summary, saved file); the run folder's name too (default: the data file's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Seeds the weight initializers.
    pub seed: u64,
    /// One sample's shape, without the batch axis (images; left out, the data's). A table's input is its
    /// prepared row, sized by the preparation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub input_shape: Vec<usize>,
    /// A built-in recipe: `mlp` (tables: embeddings and numbers into Dense layers; images: flattened
    /// pixels), `cnn` (images: Conv2D of `units` filters and max pooling; text: Conv1D over the terms),
    /// `lstm`, `gru` or `simple_rnn` (one text column, its terms in order through Embedding(mask_zero) and a
    /// recurrent layer of `units`), `transformer` (the terms with learned positions through `blocks`
    /// TransformerEncoder blocks of `heads` heads, as wide as the term vectors); then the Dense layers of
    /// `hidden` and the output the task needs. Left out: `mlp` for tables; images need it or
    /// `layers`/`nodes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<ModelKind>,
    /// Layers in a line, each reading the one before (a Sequential model); the last gives the output.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerConfig>,
    /// Or a graph: layers that name what they read (`inputs = ["input"]`, earlier layers' names), for
    /// residual connections and merges (`add`, `multiply`, `concatenate`, `dot`). The data's input is
    /// called `input`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeSpec>,
    /// A table graph's named inputs, each reading its own columns (`[[model.inputs]]` with `name` and
    /// `columns`; nodes read them by name): two towers, or one branch per group of columns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputColumns>,
    /// The layers whose outputs are the model's, one per target in `data.target`'s order (Keras's
    /// `Model(inputs, outputs)`); left out, the last layer. A recipe (`kind`) makes one output per target.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Start from these weights instead of the initializers: a safetensors file with kiln's parameter names
    /// (a model kiln saved), which must hold every parameter of this model with its shape (it may hold
    /// more). Fine-tuning, or training on from a saved model with other settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// Fine-tune a pretrained text encoder: a Hugging Face BERT-family folder (config.json,
    /// model.safetensors, tokenizer.json), e.g. models/all-MiniLM-L6-v2. The table's one text column is read
    /// by the folder's tokenizer (up to data.prepare.text.length tokens, or the folder's limit), the encoder
    /// starts from the folder's weights, and the Dense layers of `hidden` and the output follow. The saved
    /// model holds the tokenizer: it predicts raw text without the folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<PathBuf>,
    /// With `pretrained`: keep the lowest parts of the encoder fixed while training (1: the embeddings; 2:
    /// they and the first encoder layer; ...). 0 trains it all.
    #[serde(skip_serializing_if = "is_zero")]
    pub freeze: usize,
    // The recipes' settings (with `kind`; an error beside `layers` or `nodes`):
    /// Recurrent width (per direction), Conv1D/Conv2D filters, or a transformer block's feed-forward width.
    pub units: usize,
    /// Transformer blocks (kind = "transformer").
    pub blocks: usize,
    /// Attention heads per transformer block; they split the term vectors (data.prepare.text.dim), or the
    /// column tokens (`dim`), evenly.
    pub heads: usize,
    /// The width of every column's token (kind = "ft_transformer").
    pub dim: usize,
    /// How kind = "ft_transformer" makes a number's token: `linear` (its scaled value, missing indicator
    /// and bins times the column's kernel) or `periodic` (sin and cos of `frequencies` trained frequencies
    /// of the value first, then the kernel and a ReLU: PLR, Gorishniy et al. 2022).
    pub numeric_embedding: NumericEmbedding,
    /// The frequencies of `numeric_embedding = "periodic"`, per number.
    pub frequencies: usize,
    /// The standard deviation the periodic frequencies start from (the paper tunes it per dataset).
    pub sigma: f64,
    /// Run the recurrent layer both ways (Bidirectional), concatenating the two.
    pub bidirectional: bool,
    /// What the Dense layers get from the sequence: `last` (the recurrent layer's last state; the default
    /// for recurrent kinds), `max` or `average` over the steps (the states at every step, padding left out
    /// of the average; `max` is the default for cnn).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
    /// Dropout on the term vectors before the sequence layer (sequence kinds): against the early
    /// overfitting of models whose embedding table holds most of the weights.
    pub embedding_dropout: f64,
    /// Conv1D window in terms, or Conv2D window in pixels (kind = "cnn").
    pub kernel_size: usize,
    /// Widths of the hidden Dense layers (ReLU).
    pub hidden: Vec<usize>,
    /// Dropout after each hidden layer.
    pub dropout: f64,
    /// L2 penalty on every kernel (Keras's kernel_regularizer=l2(...)); helps on small tables. Recommenders:
    /// on each embedding row a batch uses, per use (BPR's regularization).
    pub l2: f32,
    /// kind = "two_tower" with data.users: the share of training rows whose user id is hidden, so the tower
    /// learns to place a new user from features alone.
    pub id_dropout: f64,
    /// kind = "two_tower": the user tower also reads the user's last `history` items (their embeddings
    /// averaged), each training row's items before it; 0 leaves it out.
    pub history: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Dense layers over the prepared row; a text column there is an embedding bag (its terms' vectors
    /// averaged, fastText's model), so `bag` names the same recipe.
    #[default]
    #[serde(alias = "bag")]
    Mlp,
    Lstm,
    Gru,
    SimpleRnn,
    /// Text: Embedding → Conv1D(units filters of `kernel_size` terms, ReLU) → GlobalMaxPooling1D. Images:
    /// Conv2D(units filters, kernel_size², ReLU) → MaxPooling2D(2) → Flatten.
    Cnn,
    /// Text: Embedding(mask_zero) → PositionEmbedding (learned) → `blocks` × TransformerEncoder (pre-norm,
    /// GELU, `heads` heads, feed-forward `units`, dropout 0.1) → LayerNormalization → pooled over the real
    /// steps (average by default, or max).
    Transformer,
    /// Tables (FT-Transformer, Gorishniy et al. 2021): every column a token `dim` wide (ColumnTokens) and
    /// a [CLS] token → `blocks` × TransformerEncoder (pre-norm, ReLU, `heads` heads, feed-forward `units`,
    /// `dropout`) → LayerNormalization → the [CLS] token → ReLU → `hidden` → the output.
    FtTransformer,
    /// Interactions: matrix factorization trained with BPR (`dim` factors).
    Bpr,
    /// Interactions: NeuMF (GMF beside an MLP of `hidden` over `dim`-wide embeddings), binary cross-entropy
    /// on sampled negatives.
    Ncf,
    /// Interactions: a user tower and an item tower (id embeddings of `dim`, side-table features, `hidden`
    /// Dense layers, a `dim`-wide output), scored by their dot product, trained with an in-batch softmax.
    TwoTower,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumericEmbedding {
    #[default]
    Linear,
    Periodic,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Lstm => "lstm",
            ModelKind::Gru => "gru",
            ModelKind::SimpleRnn => "simple_rnn",
            ModelKind::Cnn => "cnn",
            ModelKind::Transformer => "transformer",
            ModelKind::FtTransformer => "ft_transformer",
            ModelKind::Bpr => "bpr",
            ModelKind::Ncf => "ncf",
            ModelKind::TwoTower => "two_tower",
        }
    }

    /// How the sequence kinds pool their steps when model.pooling is left out.
    pub fn default_pooling(self) -> Pooling {
        match self {
            ModelKind::Cnn => Pooling::Max,
            ModelKind::Transformer => Pooling::Average,
            _ => Pooling::Last,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    Last,
    Max,
    Average,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            name: None,
            seed: 0,
            input_shape: Vec::new(),
            kind: None,
            layers: Vec::new(),
            nodes: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            weights: None,
            pretrained: None,
            freeze: 0,
            units: 64,
            blocks: 2,
            heads: 4,
            dim: 64,
            numeric_embedding: NumericEmbedding::Linear,
            frequencies: 16,
            sigma: 0.1,
            bidirectional: false,
            pooling: None,
            embedding_dropout: 0.0,
            kernel_size: 3,
            hidden: vec![64, 32],
            dropout: 0.1,
            l2: 0.0,
            id_dropout: 0.1,
            history: 0,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl ModelConfig {
    /// The model's name: the configured one, or Keras's default (`functional` for a graph).
    pub fn model_name(&self) -> &str {
        self.name.as_deref().unwrap_or(if self.nodes.is_empty() { "sequential" } else { "functional" })
    }

    /// Whether the model is written out (`layers` or `nodes`) rather than a recipe.
    pub fn explicit(&self) -> bool {
        !self.layers.is_empty() || !self.nodes.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The optimizer and its learning rate (default Adam at 0.001).
    pub optimizer: OptimizerConfig,
    /// Left out: what the task needs (sparse categorical cross-entropy for classes, binary for two classes
    /// of a table, mean squared error for a number; a number may take mean_absolute_error or huber).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<Loss>,
    /// Logged each epoch (default: accuracy, and macro F1 for table classes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    /// Default 30 for tables, 1 for images (Keras's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// Default 64 for tables, 32 for images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Fraction of the training rows held out to pick the epoch (tables: stratified by class; images: the
    /// last ones, as Keras). Default 0.1 for tables, 0 for images. Interactions hold out no fraction: any
    /// value above 0 (the default) holds out each user's second-latest item, 0 none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
    /// Stop after this many epochs without a lower validation loss, and keep the best epoch's weights
    /// (needs validation rows). Default 4 for tables, none for images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    pub shuffle: bool,
    /// Seeds shuffling, dropout, augmentation and the table's splits.
    pub seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    pub clip: Clip,
    /// Random changes to each training image (images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augment>,
    /// Repeat training rows of the smaller classes (drawn at random) until every class has as many rows as
    /// the largest, against imbalanced labels (tables). The validation rows are set aside first.
    pub oversample: bool,
    /// Weights of the classes in the loss: `"balanced"` (rows / (classes × rows of the class)) or by class,
    /// e.g. `{ negative = 3.0 }` (a table's class names; an image's class index, `{ 7 = 2.0 }`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_weight: Option<ClassWeight>,
    /// With several targets, each output's loss is multiplied by its weight before they are added
    /// (Keras's `loss_weights`), in `data.target`'s order. Empty: all 1.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub loss_weights: Vec<f32>,
    /// Recommenders: sampled negatives per positive (bpr 1, ncf 4), or sampled items added to the batch's
    /// as shared negatives (two_tower, 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negatives: Option<usize>,
    /// Where to train: "cpu" (the default) or "cuda" (a kiln built with the `cuda` feature, on an NVIDIA
    /// GPU). The command line's `--device` overrides it; the saved model is the same either way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            optimizer: OptimizerConfig::default(),
            loss: None,
            metrics: Vec::new(),
            epochs: None,
            batch_size: None,
            validation_split: None,
            patience: None,
            shuffle: true,
            seed: 0,
            schedule: None,
            clip: Clip::default(),
            augment: None,
            oversample: false,
            class_weight: None,
            loss_weights: Vec::new(),
            negatives: None,
            device: None,
        }
    }
}

impl TrainConfig {
    // Unfilled keys read as images' defaults (Keras's); `Config::fill_defaults` fills a table's.
    pub fn epochs(&self) -> usize {
        self.epochs.unwrap_or(TrainDefaults::of(DataKind::Images).epochs)
    }
    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(TrainDefaults::of(DataKind::Images).batch_size)
    }
    pub fn validation_split(&self) -> f64 {
        self.validation_split.unwrap_or(TrainDefaults::of(DataKind::Images).validation_split)
    }
}

/// The `[train]` values a kind of data gets where the config leaves them out (see the header).
struct TrainDefaults {
    epochs: usize,
    batch_size: usize,
    validation_split: f64,
    /// Early stopping's patience, when there are validation rows.
    patience: Option<usize>,
}

impl TrainDefaults {
    fn of(kind: DataKind) -> TrainDefaults {
        match kind {
            DataKind::Table => TrainDefaults { epochs: 30, batch_size: 64, validation_split: 0.1, patience: Some(4) },
            DataKind::Images => TrainDefaults { epochs: 1, batch_size: 32, validation_split: 0.0, patience: None },
            DataKind::Interactions => {
                TrainDefaults { epochs: 20, batch_size: 256, validation_split: 0.1, patience: Some(5) }
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Where the trained model is saved (safetensors), besides the run folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// Numbers that are f32 settings (learning rates) printed as written (0.001), not as their f64 widening
/// (0.0010000000474974513); they read back as the same f32.
fn short_floats(v: &mut toml::Value) {
    match v {
        toml::Value::Float(f) if (*f as f32) as f64 == *f => {
            if let Ok(short) = (*f as f32).to_string().parse::<f64>() {
                *f = short;
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(short_floats),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| short_floats(v)),
        _ => {}
    }
}

fn runs() -> PathBuf {
    "runs".into()
}
impl Config {
    /// The defaults for a table file and a target (what `kiln train --data FILE --target COL` uses).
    pub fn for_table(path: impl Into<PathBuf>, target: &str) -> Config {
        let mut c = Config::for_table_unfilled(path, target);
        c.fill_defaults();
        c
    }

    /// `for_table` before the table defaults are filled in (`--data` with `--set`: the settings first, as
    /// for a file).
    pub fn for_table_unfilled(path: impl Into<PathBuf>, target: &str) -> Config {
        Config {
            data: DataConfig::table(path, target),
            model: ModelConfig::default(),
            train: TrainConfig::default(),
            output: OutputConfig::default(),
            callbacks: Vec::new(),
            source: None,
            notes: Vec::new(),
        }
    }

    /// Reads and checks a config file; relative paths in it become relative to its folder.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config> {
        Config::from_file_with(path, &[])
    }

    /// `from_file` with `--set KEY=VALUE` settings applied before the defaults of the config's kind of
    /// data are filled in (so `--set train.validation_split=0` leaves no default patience behind).
    pub fn from_file_with(path: impl AsRef<Path>, sets: &[String]) -> Result<Config> {
        let mut c = Config::from_file_unfilled(path)?.with_settings(sets)?;
        c.fill_defaults();
        Ok(c)
    }

    /// A config file read and checked as written, the defaults of its kind of data not filled in yet (what
    /// `kiln search` varies, so that a setting it tries gets the defaults a file with it would get).
    pub fn from_file_unfilled(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, &e))?;
        let in_file = |m: String| Error::Config(format!("{}: {m}", path.display()));
        let mut c = Config::parse_unfilled(&text).map_err(in_file)?;
        let base = path.parent().unwrap_or(Path::new(""));
        c.data.path = base.join(&c.data.path);
        if let Some(g) = &c.data.prepare.text.glove {
            c.data.prepare.text.glove = Some(base.join(g));
        }
        for p in [&mut c.data.users, &mut c.data.items].into_iter().flatten() {
            *p = base.join(&*p);
        }
        if let Some(m) = &c.output.model {
            if m.as_os_str().is_empty() {
                return Err(in_file("[output] model is empty: name the file to write, or leave the key out".into()));
            }
            c.output.model = Some(base.join(m));
        }
        if let Some(w) = &c.model.weights {
            c.model.weights = Some(base.join(w));
        }
        if let Some(p) = &c.model.pretrained {
            c.model.pretrained = Some(base.join(p));
        }
        c.source = Some(path.to_path_buf());
        Ok(c)
    }

    /// Parses and checks config text (paths as written); the error is one line naming the line, the key
    /// and the nearest valid key.
    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        let mut c = Config::parse_unfilled(text)?;
        c.fill_defaults();
        Ok(c)
    }

    /// Parses and checks config text, every key written checked against the config's kind of data and
    /// model; no defaults filled in.
    fn parse_unfilled(text: &str) -> std::result::Result<Config, String> {
        let c: Config = parse_toml(text)?;
        let msg = |e: Error| match e {
            Error::Config(m) => m,
            e => e.to_string(),
        };
        c.check().map_err(msg)?;
        let raw: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
        for section in ["data", "model", "train"] {
            if let Some(t) = raw.get(section).and_then(|v| v.as_table()) {
                for key in t.keys() {
                    c.check_key(&format!("{section}.{key}")).map_err(msg)?;
                }
            }
        }
        Ok(c)
    }

    /// This config with each `KEY=VALUE` of `sets` applied (`--set train.epochs=3`), checked as a file is:
    /// a key that does not apply to the config is an error even at its default value.
    pub fn with_settings(self, sets: &[String]) -> Result<Config> {
        let source = self.source.clone();
        let mut c = with_settings(self, sets)?;
        c.source = source;
        c.check().map_err(|e| c.in_file(e))?;
        for s in sets {
            let key = s.split_once('=').map_or(s.as_str(), |(k, _)| k).trim();
            c.check_key(key).map_err(|e| c.in_file(e))?;
        }
        Ok(c)
    }

    /// `e` with the config file's name in front (config errors; once).
    pub fn in_file(&self, e: Error) -> Error {
        match (e, &self.source) {
            (Error::Config(m), Some(p)) if !m.starts_with(&format!("{}: ", p.display())) => {
                Error::Config(format!("{}: {m}", p.display()))
            }
            (e, _) => e,
        }
    }

    pub fn kind(&self) -> Result<DataKind> {
        self.data.kind()
    }

    /// Fills the training keys left out with the defaults of the config's kind of data (see the header).
    pub fn fill_defaults(&mut self) {
        let kind = self.data.kind().unwrap_or(DataKind::Images);
        let (t, d) = (&mut self.train, TrainDefaults::of(kind));
        t.epochs.get_or_insert(d.epochs);
        t.batch_size.get_or_insert(d.batch_size);
        if *t.validation_split.get_or_insert(d.validation_split) > 0.0 {
            t.patience = t.patience.or(d.patience);
        }
        match kind {
            DataKind::Table => {
                self.model.kind = self.model.kind.or((!self.model.explicit()).then_some(ModelKind::Mlp));
                if let Some(k) = self.model.kind
                    && recipe_uses(DataKind::Table, k, "pooling")
                {
                    self.model.pooling.get_or_insert(k.default_pooling());
                }
                self.data.format.get_or_insert(DataFormat::Table);
            }
            DataKind::Images => {}
            DataKind::Interactions => {
                self.data.format.get_or_insert(DataFormat::Interactions);
                if let Some(k) =
                    self.model.kind.filter(|k| matches!(k, ModelKind::Bpr | ModelKind::Ncf | ModelKind::TwoTower))
                {
                    let kind = self.recommender(k).kind;
                    self.train.negatives.get_or_insert(crate::recommend::RecommenderConfig::new(kind).negatives);
                }
            }
        }
    }

    /// A copy with the defaults filled in (`fill_defaults`): what the fit loops read, so a config made in
    /// code or by serde alone trains as the same file read by `from_file` does.
    pub fn filled(&self) -> Config {
        let mut c = self.clone();
        c.fill_defaults();
        c
    }

    /// The loss: the configured one, or what the task needs (images: sparse categorical cross-entropy).
    pub fn image_loss(&self) -> Loss {
        self.train.loss.unwrap_or(Loss::SparseCategoricalCrossentropy)
    }

    /// The metrics logged each epoch: the configured ones, or accuracy.
    pub fn metrics_or(&self, default: Vec<Metric>) -> Vec<Metric> {
        if self.train.metrics.is_empty() { default } else { self.train.metrics.clone() }
    }

    /// How the model is compiled, with the loss given (it depends on the task).
    pub fn compile_config(&self, loss: Loss, metrics: Vec<Metric>) -> CompileConfig {
        CompileConfig {
            optimizer: self.train.optimizer.clone(),
            loss,
            losses: Vec::new(),
            loss_weights: self.train.loss_weights.clone(),
            metrics,
            output_metrics: Vec::new(),
            schedule: self.train.schedule.clone(),
            clip: self.train.clip.clone(),
        }
    }

    /// The run folder's name when none is given: the model's name, or the data file's.
    pub fn run_name(&self) -> String {
        if let Some(n) = &self.model.name {
            return n.clone();
        }
        let stem = self.data.path.file_name().map(|n| n.to_string_lossy().split('.').next().unwrap_or("").to_string());
        stem.filter(|s| !s.is_empty()).unwrap_or_else(|| "run".into())
    }

    /// The config as a run folder keeps it: every default filled in and every path absolute, so that
    /// `kiln train --resume` reads the same data from anywhere.
    pub fn resolved(&self) -> Config {
        let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let mut c = self.clone();
        c.fill_defaults();
        c.data.path = abs(&c.data.path);
        c.data.prepare.text.glove = c.data.prepare.text.glove.as_deref().map(abs);
        c.model.weights = c.model.weights.as_deref().map(abs);
        c.model.pretrained = c.model.pretrained.as_deref().map(abs);
        c.data.users = c.data.users.as_deref().map(abs);
        c.data.items = c.data.items.as_deref().map(abs);
        c.output.model = c.output.model.as_deref().map(|m| match (m.parent(), m.file_name()) {
            (Some(d), Some(f)) if !d.as_os_str().is_empty() => abs(d).join(f),
            (_, Some(f)) => abs(Path::new(".")).join(f),
            _ => m.to_path_buf(),
        });
        c
    }

    /// The config as TOML, without the keys its kind of data or model does not use (`check_key`).
    pub fn to_toml(&self) -> String {
        let mut doc = match toml::Value::try_from(self) {
            Ok(d) => d,
            Err(e) => return format!("# cannot print config: {e}"),
        };
        for section in ["data", "model", "train"] {
            if let Some(t) = doc.get_mut(section).and_then(|s| s.as_table_mut()) {
                t.retain(|k, _| self.check_key(&format!("{section}.{k}")).is_ok());
            }
        }
        short_floats(&mut doc);
        toml::to_string_pretty(&doc).unwrap_or_else(|e| format!("# cannot print config: {e}"))
    }

    /// The `[train]` settings that `fit` would reject, checked before a run folder is made or a fold trained.
    pub fn check_train(&self) -> Result<()> {
        let t = &self.train;
        if t.epochs() == 0 {
            return Err(Error::Config("train.epochs must be at least 1 (with --epochs too)".into()));
        }
        if t.batch_size() == 0 {
            return Err(Error::Config("train.batch_size must be at least 1".into()));
        }
        let vs = t.validation_split();
        if !(0.0..1.0).contains(&vs) {
            return Err(Error::Config(format!("train.validation_split must be in [0, 1), got {vs}")));
        }
        Ok(())
    }

    /// A split's targets as the loss wants them: class indices for the sparse loss, one-hot rows otherwise.
    pub fn targets(&self, s: &crate::data::mnist::Split) -> Result<kiln_core::Tensor> {
        if self.image_loss().sparse() {
            kiln_core::Tensor::new(&[s.labels.len()], s.labels.iter().map(|&l| l as f32).collect())
        } else {
            Ok(s.y.clone())
        }
    }
}
