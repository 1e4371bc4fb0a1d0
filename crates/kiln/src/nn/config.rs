//! A layer is its config plus its parameters. These configs are what a TOML file's `[[model.layers]]`
//! tables deserialize into, and what the Rust builders (`Dense::new(128).activation(...)`) produce, so the
//! CLI and the library cannot drift apart. Every field has Keras's name and default.

use super::{Activation, Initializer, Regularizer};
use kiln_core::Padding;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerConfig {
    Dense(Dense),
    #[serde(alias = "conv2D")]
    Conv2d(Conv2D),
    #[serde(rename = "max_pooling2d", alias = "max_pool2d")]
    MaxPooling2d(MaxPooling2D),
    #[serde(rename = "average_pooling2d", alias = "avg_pool2d")]
    AveragePooling2d(AveragePooling2D),
    Flatten(Flatten),
    Dropout(Dropout),
    Activation(ActivationLayer),
    BatchNormalization(BatchNormalization),
    CategoryEmbedding(CategoryEmbedding),
    Embedding(Embedding),
    Lstm(Lstm),
    Gru(Gru),
    #[serde(rename = "conv1d", alias = "conv1D")]
    Conv1d(Conv1D),
    #[serde(rename = "global_max_pooling1d")]
    GlobalMaxPooling1d(GlobalMaxPooling1D),
    #[serde(rename = "global_average_pooling1d")]
    GlobalAveragePooling1d(GlobalAveragePooling1D),
    SimpleRnn(SimpleRnn),
    Bidirectional(Bidirectional),
}

impl LayerConfig {
    /// The Keras class name, for summaries.
    pub fn class_name(&self) -> &'static str {
        match self {
            LayerConfig::Dense(_) => "Dense",
            LayerConfig::Conv2d(_) => "Conv2D",
            LayerConfig::MaxPooling2d(_) => "MaxPooling2D",
            LayerConfig::AveragePooling2d(_) => "AveragePooling2D",
            LayerConfig::Flatten(_) => "Flatten",
            LayerConfig::Dropout(_) => "Dropout",
            LayerConfig::Activation(_) => "Activation",
            LayerConfig::BatchNormalization(_) => "BatchNormalization",
            LayerConfig::CategoryEmbedding(_) => "CategoryEmbedding",
            LayerConfig::Embedding(_) => "Embedding",
            LayerConfig::Lstm(_) => "LSTM",
            LayerConfig::Gru(_) => "GRU",
            LayerConfig::Conv1d(_) => "Conv1D",
            LayerConfig::GlobalMaxPooling1d(_) => "GlobalMaxPooling1D",
            LayerConfig::GlobalAveragePooling1d(_) => "GlobalAveragePooling1D",
            LayerConfig::SimpleRnn(_) => "SimpleRNN",
            LayerConfig::Bidirectional(_) => "Bidirectional",
        }
    }

    /// The prefix of automatic names ("dense", "dense_1", ...), as Keras.
    pub fn base_name(&self) -> &'static str {
        match self {
            LayerConfig::Dense(_) => "dense",
            LayerConfig::Conv2d(_) => "conv2d",
            LayerConfig::MaxPooling2d(_) => "max_pooling2d",
            LayerConfig::AveragePooling2d(_) => "average_pooling2d",
            LayerConfig::Flatten(_) => "flatten",
            LayerConfig::Dropout(_) => "dropout",
            LayerConfig::Activation(_) => "activation",
            LayerConfig::BatchNormalization(_) => "batch_normalization",
            LayerConfig::CategoryEmbedding(_) => "category_embedding",
            LayerConfig::Embedding(_) => "embedding",
            LayerConfig::Lstm(_) => "lstm",
            LayerConfig::Gru(_) => "gru",
            LayerConfig::Conv1d(_) => "conv1d",
            LayerConfig::GlobalMaxPooling1d(_) => "global_max_pooling1d",
            LayerConfig::GlobalAveragePooling1d(_) => "global_average_pooling1d",
            LayerConfig::SimpleRnn(_) => "simple_rnn",
            LayerConfig::Bidirectional(_) => "bidirectional",
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            LayerConfig::Dense(c) => c.name.as_deref(),
            LayerConfig::Conv2d(c) => c.name.as_deref(),
            LayerConfig::MaxPooling2d(c) => c.name.as_deref(),
            LayerConfig::AveragePooling2d(c) => c.name.as_deref(),
            LayerConfig::Flatten(c) => c.name.as_deref(),
            LayerConfig::Dropout(c) => c.name.as_deref(),
            LayerConfig::Activation(c) => c.name.as_deref(),
            LayerConfig::BatchNormalization(c) => c.name.as_deref(),
            LayerConfig::CategoryEmbedding(c) => c.name.as_deref(),
            LayerConfig::Embedding(c) => c.name.as_deref(),
            LayerConfig::Lstm(c) => c.name.as_deref(),
            LayerConfig::Gru(c) => c.name.as_deref(),
            LayerConfig::Conv1d(c) => c.name.as_deref(),
            LayerConfig::GlobalMaxPooling1d(c) => c.name.as_deref(),
            LayerConfig::GlobalAveragePooling1d(c) => c.name.as_deref(),
            LayerConfig::SimpleRnn(c) => c.name.as_deref(),
            LayerConfig::Bidirectional(c) => c.name.as_deref(),
        }
    }

    /// The cell of a recurrent layer (LSTM, GRU, SimpleRNN).
    /// Whether a recurrent layer outputs every step (so a padding mask still applies after it).
    pub fn returns_sequences(&self) -> bool {
        match self {
            LayerConfig::Lstm(c) => c.return_sequences,
            LayerConfig::Gru(c) => c.return_sequences,
            LayerConfig::SimpleRnn(c) => c.return_sequences,
            LayerConfig::Bidirectional(c) => c.return_sequences,
            _ => false,
        }
    }

    pub(crate) fn rnn_kind(&self) -> Option<RnnKind> {
        match self {
            LayerConfig::Lstm(_) => Some(RnnKind::Lstm),
            LayerConfig::Gru(_) => Some(RnnKind::Gru),
            LayerConfig::SimpleRnn(_) => Some(RnnKind::SimpleRnn),
            _ => None,
        }
    }

    pub(crate) fn set_name(&mut self, name: String) {
        let slot = match self {
            LayerConfig::Dense(c) => &mut c.name,
            LayerConfig::Conv2d(c) => &mut c.name,
            LayerConfig::MaxPooling2d(c) => &mut c.name,
            LayerConfig::AveragePooling2d(c) => &mut c.name,
            LayerConfig::Flatten(c) => &mut c.name,
            LayerConfig::Dropout(c) => &mut c.name,
            LayerConfig::Activation(c) => &mut c.name,
            LayerConfig::BatchNormalization(c) => &mut c.name,
            LayerConfig::CategoryEmbedding(c) => &mut c.name,
            LayerConfig::Embedding(c) => &mut c.name,
            LayerConfig::Lstm(c) => &mut c.name,
            LayerConfig::Gru(c) => &mut c.name,
            LayerConfig::Conv1d(c) => &mut c.name,
            LayerConfig::GlobalMaxPooling1d(c) => &mut c.name,
            LayerConfig::GlobalAveragePooling1d(c) => &mut c.name,
            LayerConfig::SimpleRnn(c) => &mut c.name,
            LayerConfig::Bidirectional(c) => &mut c.name,
        };
        *slot = Some(name);
    }

    /// The activation applied last, if the layer ends with one.
    pub fn activation(&self) -> Activation {
        match self {
            LayerConfig::Dense(c) => c.activation,
            LayerConfig::Conv2d(c) => c.activation,
            LayerConfig::Conv1d(c) => c.activation,
            LayerConfig::Activation(c) => c.activation,
            _ => Activation::Linear,
        }
    }
}

/// Two sizes (height, width); a single number in a config means the same for both, as in Keras.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair(pub usize, pub usize);

impl From<usize> for Pair {
    fn from(n: usize) -> Self {
        Pair(n, n)
    }
}

impl From<(usize, usize)> for Pair {
    fn from(p: (usize, usize)) -> Self {
        Pair(p.0, p.1)
    }
}

impl Serialize for Pair {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        [self.0, self.1].serialize(s)
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            One(usize),
            Two([usize; 2]),
        }
        match Repr::deserialize(d) {
            Ok(Repr::One(n)) => Ok(Pair(n, n)),
            Ok(Repr::Two([a, b])) => Ok(Pair(a, b)),
            Err(_) => Err(serde::de::Error::custom("expected a positive integer or a pair like [3, 3]")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingConfig {
    #[default]
    Valid,
    Same,
}

impl From<PaddingConfig> for Padding {
    fn from(p: PaddingConfig) -> Padding {
        match p {
            PaddingConfig::Valid => Padding::Valid,
            PaddingConfig::Same => Padding::Same,
        }
    }
}

fn yes() -> bool {
    true
}
fn glorot() -> Initializer {
    Initializer::GlorotUniform
}
fn zeros() -> Initializer {
    Initializer::Zeros
}
fn one_one() -> Pair {
    Pair(1, 1)
}
fn two_two() -> Pair {
    Pair(2, 2)
}

/// Fully connected: y = activation(x · kernel + bias). Input must be flat: (batch, features).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dense {
    pub units: usize,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default = "yes")]
    pub use_bias: bool,
    #[serde(default = "glorot")]
    pub kernel_initializer: Initializer,
    #[serde(default = "zeros")]
    pub bias_initializer: Initializer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_regularizer: Option<Regularizer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// 2-D convolution over (batch, height, width, channels); kernel [kh, kw, in, filters].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2D {
    pub filters: usize,
    pub kernel_size: Pair,
    #[serde(default = "one_one")]
    pub strides: Pair,
    #[serde(default)]
    pub padding: PaddingConfig,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default = "yes")]
    pub use_bias: bool,
    #[serde(default = "glorot")]
    pub kernel_initializer: Initializer,
    #[serde(default = "zeros")]
    pub bias_initializer: Initializer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_regularizer: Option<Regularizer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Pooling windows; strides default to the pool size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxPooling2D {
    #[serde(default = "two_two")]
    pub pool_size: Pair,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strides: Option<Pair>,
    #[serde(default)]
    pub padding: PaddingConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AveragePooling2D {
    #[serde(default = "two_two")]
    pub pool_size: Pair,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strides: Option<Pair>,
    #[serde(default)]
    pub padding: PaddingConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flatten {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Learned embeddings of categorical columns (Keras: one Embedding per column, then Concatenate). Its input
/// rows hold `numeric` numbers followed by one category index per column (0..vocab); its output is the
/// numbers followed by each column's embedding vector. Tables with `categories = "embedding"` start with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryEmbedding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub numeric: usize,
    /// (vocabulary size, embedding width) per column.
    pub columns: Vec<(usize, usize)>,
    /// Ids per column (1 for a category; more for a text, whose output is the mean of the vectors of its
    /// non-zero ids: 0 is padding). Empty means 1 for every column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lengths: Vec<usize>,
    /// Per column: its ids are followed by as many weights, and the output is the weighted sum of the
    /// vectors (a vocabulary-wide multi-hot, count or TF-IDF vector times the table, computed sparsely).
    /// Empty means none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weighted: Vec<bool>,
}

impl CategoryEmbedding {
    pub fn new(numeric: usize, columns: &[(usize, usize)]) -> Self {
        CategoryEmbedding { name: None, numeric, columns: columns.to_vec(), lengths: Vec::new(), weighted: Vec::new() }
    }

    /// Columns of several ids each (texts as bags of terms).
    pub fn lengths(mut self, lengths: &[usize]) -> Self {
        self.lengths = lengths.to_vec();
        self
    }

    /// Columns whose ids come with weights (see `weighted`).
    pub fn weighted(mut self, weighted: &[bool]) -> Self {
        self.weighted = weighted.to_vec();
        self
    }

    pub(crate) fn is_weighted(&self, j: usize) -> bool {
        self.weighted.get(j).copied().unwrap_or(false)
    }

    pub(crate) fn length(&self, j: usize) -> usize {
        self.lengths.get(j).copied().unwrap_or(1)
    }

    /// Values the layer reads per row after the numbers: ids, and weights where weighted.
    pub(crate) fn ids(&self) -> usize {
        (0..self.columns.len()).map(|j| self.length(j) * (1 + self.is_weighted(j) as usize)).sum()
    }
}

/// Ids (0..input_dim) to learned vectors (Keras's Embedding): input (length,), output (length, output_dim).
/// With `mask_zero`, id 0 is padding: the recurrent layer after it skips those steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Embedding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub input_dim: usize,
    pub output_dim: usize,
    #[serde(default)]
    pub mask_zero: bool,
}

impl Embedding {
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Embedding { name: None, input_dim, output_dim, mask_zero: false }
    }
    pub fn mask_zero(mut self, on: bool) -> Self {
        self.mask_zero = on;
        self
    }
}

/// Long short-term memory over a sequence (Keras's LSTM, gates in Keras's and PyTorch's order i, f, c, o;
/// tanh and sigmoid; one bias, the forget gate's starting at 1 as Keras's unit_forget_bias): input (steps,
/// features), output the last state (units,), or with `return_sequences` the state after every step (steps,
/// units). Steps masked by a preceding `Embedding(mask_zero)` keep the state unchanged, so padding does not
/// change the result (a masked step's output repeats the state, as Keras's does).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lstm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub units: usize,
    /// Output the state after every step, (steps, units), instead of the last one (see `Lstm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub return_sequences: bool,
}

impl Lstm {
    pub fn new(units: usize) -> Self {
        Lstm { name: None, units, return_sequences: false }
    }
    pub fn return_sequences(mut self, yes: bool) -> Self {
        self.return_sequences = yes;
        self
    }
}

/// Gated recurrent unit over a sequence (Keras's GRU with reset_after = true, the same equations as
/// PyTorch's GRU): kernel [features, 3·units] and recurrent kernel [units, 3·units] with gates in Keras's order
/// z, r, h; bias [2, 3·units] (input and recurrent). Output the last state; masked steps keep it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gru {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub units: usize,
    /// Output the state after every step, (steps, units), instead of the last one (see `Lstm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub return_sequences: bool,
}

impl Gru {
    pub fn new(units: usize) -> Self {
        Gru { name: None, units, return_sequences: false }
    }
    pub fn return_sequences(mut self, yes: bool) -> Self {
        self.return_sequences = yes;
        self
    }
}

/// A 1-D convolution over a sequence (Keras's Conv1D, valid padding, stride 1): input (steps, channels),
/// kernel [kernel_size, channels, filters], output (steps − kernel_size + 1, filters). Runs as a conv2d of
/// height 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv1D {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub filters: usize,
    pub kernel_size: usize,
    #[serde(default)]
    pub activation: Activation,
}

impl Conv1D {
    pub fn new(filters: usize, kernel_size: usize) -> Self {
        Conv1D { name: None, filters, kernel_size, activation: Activation::Linear }
    }
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
}

/// The largest value of each channel over the steps (Keras's GlobalMaxPooling1D): (steps, channels) →
/// (channels,); over the real steps only when a padding mask reaches it (an `Embedding(mask_zero)` and
/// recurrent layers with `return_sequences`).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalMaxPooling1D {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl GlobalMaxPooling1D {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The mean of each channel over the steps (Keras's GlobalAveragePooling1D), over the real steps only after an
/// `Embedding(mask_zero)`: (steps, channels) → (channels,).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalAveragePooling1D {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl GlobalAveragePooling1D {
    pub fn new() -> Self {
        Self::default()
    }
}

/// h = tanh(x·W + h·U + b) over a sequence (Keras's SimpleRNN); output the last state; masked steps keep it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleRnn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub units: usize,
    /// Output the state after every step, (steps, units), instead of the last one (see `Lstm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub return_sequences: bool,
}

impl SimpleRnn {
    pub fn new(units: usize) -> Self {
        SimpleRnn { name: None, units, return_sequences: false }
    }
    pub fn return_sequences(mut self, yes: bool) -> Self {
        self.return_sequences = yes;
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RnnKind {
    Lstm,
    Gru,
    SimpleRnn,
}

/// A recurrent layer run forwards and, with weights of its own, backwards over the sequence (Keras's
/// Bidirectional, merge_mode "concat"): output the two last states side by side (2·units,). With a mask, the
/// backward pass reads the real steps from last to first, as PyTorch's packed bidirectional RNNs do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bidirectional {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub rnn: RnnKind,
    pub units: usize,
    /// Output both directions' states at every step, (steps, 2·units).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub return_sequences: bool,
}

impl Bidirectional {
    pub fn new(rnn: RnnKind, units: usize) -> Self {
        Bidirectional { name: None, rnn, units, return_sequences: false }
    }
    pub fn return_sequences(mut self, yes: bool) -> Self {
        self.return_sequences = yes;
        self
    }
}

/// Zeroes a fraction `rate` of its inputs while training (scaling the rest by 1/(1 − rate)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    pub rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationLayer {
    pub activation: Activation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn bn_momentum() -> f64 {
    0.99
}
fn bn_epsilon() -> f64 {
    1e-3
}

/// Normalizes each channel (last axis) with the batch's statistics while training and with moving averages
/// (momentum 0.99) at inference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormalization {
    #[serde(default = "bn_momentum")]
    pub momentum: f64,
    #[serde(default = "bn_epsilon")]
    pub epsilon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

// ---- Rust builders: `Dense::new(128).activation(Activation::Relu)` ----

macro_rules! into_config {
    ($($t:ident => $v:ident),*) => {$(
        impl From<$t> for LayerConfig {
            fn from(c: $t) -> LayerConfig {
                LayerConfig::$v(c)
            }
        }
        impl $t {
            pub fn name(mut self, name: &str) -> Self {
                self.name = Some(name.to_string());
                self
            }
        }
    )*};
}
into_config!(Dense => Dense, Conv2D => Conv2d, MaxPooling2D => MaxPooling2d, AveragePooling2D => AveragePooling2d,
    Flatten => Flatten, Dropout => Dropout, ActivationLayer => Activation, BatchNormalization => BatchNormalization,
    CategoryEmbedding => CategoryEmbedding, Embedding => Embedding, Lstm => Lstm, Gru => Gru,
    Conv1D => Conv1d, GlobalMaxPooling1D => GlobalMaxPooling1d, GlobalAveragePooling1D => GlobalAveragePooling1d,
    SimpleRnn => SimpleRnn, Bidirectional => Bidirectional);

impl Dense {
    pub fn new(units: usize) -> Self {
        Dense {
            units,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: glorot(),
            bias_initializer: zeros(),
            kernel_regularizer: None,
            name: None,
        }
    }
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
    pub fn use_bias(mut self, on: bool) -> Self {
        self.use_bias = on;
        self
    }
    pub fn kernel_initializer(mut self, i: Initializer) -> Self {
        self.kernel_initializer = i;
        self
    }
    pub fn kernel_regularizer(mut self, r: Regularizer) -> Self {
        self.kernel_regularizer = Some(r);
        self
    }
}

impl Conv2D {
    pub fn new(filters: usize, kernel_size: impl Into<Pair>) -> Self {
        Conv2D {
            filters,
            kernel_size: kernel_size.into(),
            strides: one_one(),
            padding: PaddingConfig::Valid,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: glorot(),
            bias_initializer: zeros(),
            kernel_regularizer: None,
            name: None,
        }
    }
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
    pub fn strides(mut self, s: impl Into<Pair>) -> Self {
        self.strides = s.into();
        self
    }
    pub fn padding(mut self, p: PaddingConfig) -> Self {
        self.padding = p;
        self
    }
    pub fn use_bias(mut self, on: bool) -> Self {
        self.use_bias = on;
        self
    }
    pub fn kernel_initializer(mut self, i: Initializer) -> Self {
        self.kernel_initializer = i;
        self
    }
    pub fn kernel_regularizer(mut self, r: Regularizer) -> Self {
        self.kernel_regularizer = Some(r);
        self
    }
}

impl MaxPooling2D {
    pub fn new(pool_size: impl Into<Pair>) -> Self {
        MaxPooling2D { pool_size: pool_size.into(), strides: None, padding: PaddingConfig::Valid, name: None }
    }
    pub fn strides(mut self, s: impl Into<Pair>) -> Self {
        self.strides = Some(s.into());
        self
    }
    pub fn padding(mut self, p: PaddingConfig) -> Self {
        self.padding = p;
        self
    }
}

impl AveragePooling2D {
    pub fn new(pool_size: impl Into<Pair>) -> Self {
        AveragePooling2D { pool_size: pool_size.into(), strides: None, padding: PaddingConfig::Valid, name: None }
    }
    pub fn strides(mut self, s: impl Into<Pair>) -> Self {
        self.strides = Some(s.into());
        self
    }
    pub fn padding(mut self, p: PaddingConfig) -> Self {
        self.padding = p;
        self
    }
}

impl Flatten {
    pub fn new() -> Self {
        Flatten { name: None }
    }
}

impl Dropout {
    pub fn new(rate: f64) -> Self {
        Dropout { rate, name: None }
    }
}

impl ActivationLayer {
    pub fn new(activation: Activation) -> Self {
        ActivationLayer { activation, name: None }
    }
}

impl BatchNormalization {
    pub fn new() -> Self {
        BatchNormalization { momentum: bn_momentum(), epsilon: bn_epsilon(), name: None }
    }
    pub fn momentum(mut self, m: f64) -> Self {
        self.momentum = m;
        self
    }
}

impl Default for BatchNormalization {
    fn default() -> Self {
        Self::new()
    }
}
