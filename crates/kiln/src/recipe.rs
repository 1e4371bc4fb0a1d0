//! The model a config describes, for any kind of data: its written-out layers (`[[model.layers]]`) or graph
//! (`[[model.nodes]]`) over the data's input, or a built-in recipe (`[model] kind`): mlp, cnn, lstm, gru,
//! simple_rnn. A recipe ends in the output the task needs (softmax over the classes, sigmoid for a table's
//! two classes, linear for a number); a written-out model gives its own, and a table's is checked against
//! the task before training. A table's written-out layers read its prepared row, after the embeddings of
//! its text and embedded category columns when it has them (their sizes come from the data); a table's
//! graph may instead name several inputs, each reading its own columns (`[[model.inputs]]`).

use crate::config::{Config, DataKind, ModelKind, NumericEmbedding, Pooling};
use crate::data::prepare::{Feature, FeatureKind, Preparation, Target, Task};
use crate::data::text::TextOutput;
use crate::loss::Loss;
use crate::metrics::{Average, Metric};
use crate::model::{InputSpec, NodeSpec, Sequential};
use crate::nn::{
    Activation, ActivationLayer, Bidirectional, ColumnTokens, Conv1D, Conv2D, Dense, Dropout, Embedding, Flatten,
    GlobalAveragePooling1D, GlobalMaxPooling1D, Gru, LayerConfig, LayerNormalization, Lstm, MaxPooling2D,
    PositionEmbedding, Regularizer, RnnKind, SelectToken, SimpleRnn, Src, TransformerEncoder,
};
use crate::pretrained::Folder;
use crate::weights::{NameMap, TermVectors, WeightFile};
use kiln_core::{Error, Result};

/// MNIST's images and classes (the only image format so far): known without reading the files.
const MNIST_SHAPE: [usize; 3] = [28, 28, 1];
const MNIST_CLASSES: usize = 10;

impl Config {
    /// The model the config describes, built and compiled. A table's input width comes from the preparation
    /// fitted on its training rows, so this reads the table (`kiln summary`, `--print-config`).
    pub fn build_model(&self) -> Result<Sequential> {
        match self.kind()? {
            DataKind::Images => self.image_model(),
            DataKind::Table => crate::tabular::untrained_model(self),
            DataKind::Interactions => self.untrained_recommender().map(|r| r.model),
        }
        .map_err(|e| self.in_file(e))
    }

    /// The recommender the config describes, untrained: it reads the interactions for their users, items
    /// and features.
    pub fn untrained_recommender(&self) -> Result<crate::recommend::Recommender> {
        use crate::recommend::{Interactions, Recommender, Split};
        let data = Interactions::read(&self.data.interactions())?;
        let split = Split::leave_last_out(&data, false, 0, self.train.seed);
        let config = self.recommender(self.model.kind.unwrap_or(crate::config::ModelKind::Bpr));
        Recommender::new(config, &data, &split, self.model.seed)
    }

    /// An image model (`build_model` for images).
    pub fn image_model(&self) -> Result<Sequential> {
        let m = &self.model;
        let shape = if m.input_shape.is_empty() { MNIST_SHAPE.to_vec() } else { m.input_shape.clone() };
        if shape != MNIST_SHAPE {
            return Err(Error::Config(format!(
                "model.input_shape is {shape:?}, but MNIST images are {MNIST_SHAPE:?} (leave it out to take the \
                 data's)"
            )));
        }
        let mut net = if m.explicit() {
            self.written_out(&[InputSpec { name: "input".into(), shape: shape.clone() }], None, None)?
        } else {
            let mut net = Sequential::new(&shape).seed(m.seed).named(m.model_name());
            self.start_weights(&mut net, None)?;
            match m.kind.unwrap_or_default() {
                ModelKind::Mlp => {}
                ModelKind::Cnn => {
                    net.add(Conv2D::new(m.units, m.kernel_size).activation(Activation::Relu))?;
                    net.add(MaxPooling2D::new(2))?;
                }
                k => {
                    let reads = if k == ModelKind::FtTransformer { "a table's columns" } else { "a text column" };
                    return Err(Error::Config(format!(
                        "model.kind = \"{}\" reads {reads}; images take \"mlp\" or \"cnn\"",
                        k.name()
                    )));
                }
            }
            net.add(Flatten::new())?;
            self.head(&mut net, Dense::new(MNIST_CLASSES).activation(Activation::Softmax))?;
            self.end_weights(&mut net)?;
            net
        };
        if net.output_shape() != [MNIST_CLASSES] {
            return Err(Error::Config(format!(
                "the model's output is {:?} per image, but MNIST has {MNIST_CLASSES} classes: end [[model.{}]] \
                 with a Dense of {MNIST_CLASSES} units and softmax",
                net.output_shape(),
                if m.nodes.is_empty() { "layers" } else { "nodes" }
            )));
        }
        net.compile_with(self.compile_config(self.image_loss(), self.metrics_or(vec![Metric::Accuracy])))?;
        if let Some(a) = &self.train.augment {
            a.validate()?;
        }
        Ok(net)
    }

    /// `[[model.layers]]` or `[[model.nodes]]` over the inputs (one called `input`, or a table's named
    /// inputs), after `first` (a table's category embeddings) when given; a layer's error names it.
    fn written_out(
        &self,
        inputs: &[InputSpec],
        first: Option<LayerConfig>,
        vectors: Option<TermVectors>,
    ) -> Result<Sequential> {
        let m = &self.model;
        let mut net = Sequential::from_spec(inputs, &[], m.seed)?.named(m.model_name());
        self.start_weights(&mut net, vectors)?;
        if let Some(first) = first {
            if !m.nodes.is_empty() {
                return Err(Error::Config(
                    "[[model.nodes]] read the prepared row as it is, but this table has embedded columns (text, \
                     or data.prepare.categories = \"embedding\"): write [[model.layers]], which read the \
                     embeddings, or use one-hot categories"
                        .into(),
                ));
            }
            net.add(first)?;
        }
        let (what, specs): (&str, Vec<NodeSpec>) = if m.nodes.is_empty() {
            ("layers", m.layers.iter().map(|l| NodeSpec { inputs: Vec::new(), layer: l.clone() }).collect())
        } else {
            ("nodes", m.nodes.clone())
        };
        for (i, n) in specs.into_iter().enumerate() {
            let from: Vec<&str> = n.inputs.iter().map(String::as_str).collect();
            net.apply(n.layer, &from).map_err(|e| match e {
                Error::Shape(msg) | Error::Config(msg) => Error::Config(format!("model.{what}[{i}]: {msg}")),
                other => other,
            })?;
        }
        self.end_weights(&mut net)?;
        Ok(net)
    }

    /// With `model.weights`: the layers built from here take their parameters from that file; else text
    /// embedding tables start from `vectors` (GloVe or skip-gram) where given. One path: `BuildCx::param`.
    fn start_weights(&self, net: &mut Sequential, vectors: Option<TermVectors>) -> Result<()> {
        if let Some(path) = &self.model.weights {
            net.set_weights_source(Box::new(WeightFile::open(path, NameMap::new())?));
        } else if let Some(v) = vectors {
            net.set_weights_source(Box::new(v));
        }
        Ok(())
    }

    /// Every parameter must have come from `model.weights` (no half-loaded model).
    fn end_weights(&self, net: &mut Sequential) -> Result<()> {
        if let (Some(src), Some(path)) = (net.take_weights_source(), &self.model.weights) {
            let missing = src.missing();
            if !missing.is_empty() {
                return Err(Error::Config(format!(
                    "model.weights: {} lacks {} of this model's parameters: {} (it must hold all of them, by \
                     kiln's names)",
                    path.display(),
                    missing.len(),
                    missing.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The recipes' hidden Dense layers (ReLU, dropout, L2) and then `out`.
    fn head(&self, net: &mut Sequential, out: Dense) -> Result<()> {
        self.hidden(net)?;
        net.add(self.regularized(out))?;
        Ok(())
    }

    /// The recipes' hidden Dense layers (ReLU, dropout after each, L2).
    fn hidden(&self, net: &mut Sequential) -> Result<()> {
        let m = &self.model;
        for &h in &m.hidden {
            net.add(self.regularized(Dense::new(h).activation(Activation::Relu)))?;
            if m.dropout > 0.0 {
                net.add(Dropout::new(m.dropout))?;
            }
        }
        Ok(())
    }

    /// `d` with the recipe's L2 penalty on its kernel (`model.l2`).
    fn regularized(&self, d: Dense) -> Dense {
        if self.model.l2 > 0.0 { d.kernel_regularizer(Regularizer::l2(self.model.l2)) } else { d }
    }

    /// A network for the prepared table, compiled with the loss its task needs (`train.loss` may choose among
    /// the losses of a number): the recipe (embeddings and numbers into Dense layers, or one text column
    /// through a sequence layer), or the written-out layers over the prepared row.
    pub fn table_model(&self, prep: &Preparation) -> Result<Sequential> {
        self.table_model_with(prep, None)
    }

    /// `table_model` with the text embedding tables started from word vectors (ignored when `model.weights`
    /// gives every parameter). One output per target: a recipe's hidden layers are shared and each target
    /// gets its own output layer (named after it, when there are several); a written-out model names its
    /// outputs (`model.outputs`), each checked against its target.
    pub fn table_model_with(&self, prep: &Preparation, vectors: Option<TermVectors>) -> Result<Sequential> {
        let m = &self.model;
        let heads = prep.targets.iter().map(|t| self.task_head(t)).collect::<Result<Vec<_>>>()?;
        let several = heads.len() > 1;
        let mut net = if m.explicit() {
            let first = prep.embedding_layer().map(LayerConfig::from);
            let inputs: Vec<InputSpec> =
                prep.input_widths().into_iter().map(|(name, w)| InputSpec { name, shape: vec![w] }).collect();
            let mut net = self.written_out(&inputs, first, vectors)?;
            if !m.outputs.is_empty() {
                let names: Vec<&str> = m.outputs.iter().map(String::as_str).collect();
                net.set_outputs(&names).map_err(|e| match e {
                    Error::Config(msg) => Error::Config(format!("model.outputs: {}", msg.replace("set_outputs: ", ""))),
                    e => e,
                })?;
            }
            for ((t, (out, _, _)), (name, shape)) in
                prep.targets.iter().zip(&heads).zip(net.outputs().iter().zip(net.output_shapes()))
            {
                let want = out.units;
                if shape != [want] {
                    let task = match &t.task {
                        Task::Binary { .. } => "two classes: one sigmoid unit".to_string(),
                        Task::Multiclass { classes } => format!("{} classes: a softmax of {}", classes.len(), want),
                        Task::Regression => "a number: one linear unit".to_string(),
                    };
                    let which = if several { format!("output `{name}`") } else { "the model's output".into() };
                    return Err(Error::Config(format!(
                        "{which} is {shape:?} per row, but the target `{}` needs [{want}] ({task})",
                        t.name
                    )));
                }
                // The loss of classes reads probabilities: a sigmoid for two, a softmax for more.
                // The layer whose activation makes the output (through trailing Dropout layers).
                let (layer, act) = match output_activation(&net, name) {
                    Some((l, a)) => (l, Some(a)),
                    None => (name.to_string(), None),
                };
                let needs = match &t.task {
                    Task::Binary { .. } => Some(("sigmoid", Activation::Sigmoid)),
                    Task::Multiclass { .. } => Some(("softmax", Activation::Softmax)),
                    Task::Regression => None,
                };
                // A number: a softmax of one unit is always 1, and a sigmoid or tanh bounds what it can reach.
                if let (Some(act), Task::Regression) = (act, &t.task) {
                    let bound = match act {
                        Activation::Softmax => {
                            return Err(Error::Config(format!(
                                "layer `{layer}` ends in softmax, which over one unit is always 1, but the target \
                                 `{}` is a number: give it activation = \"linear\" (or leave activation out)",
                                t.name
                            )));
                        }
                        Activation::Sigmoid => Some("(0, 1)"),
                        Activation::Tanh => Some("(-1, 1)"),
                        _ => None,
                    };
                    if let Some(range) = bound {
                        eprintln!(
                            "warning: layer `{layer}` ends in {}, whose outputs lie in {range}, and the target `{}` \
                             is a number: if its values fall outside that, use activation = \"linear\"",
                            format!("{act:?}").to_lowercase(),
                            t.name
                        );
                    }
                }
                if let (Some(act), Some((word, want))) = (act, needs)
                    && act != want
                {
                    return Err(Error::Config(format!(
                        "layer `{layer}` ends in {}, but the target `{}` is classes, whose loss reads \
                         probabilities: give it activation = \"{word}\"",
                        format!("{act:?}").to_lowercase(),
                        t.name
                    )));
                }
            }
            net
        } else {
            let mut net = Sequential::new(&[prep.width()]).seed(m.seed).named(m.model_name());
            self.start_weights(&mut net, vectors)?;
            self.sequence_layers(&mut net, prep)?;
            if several {
                self.hidden(&mut net)?;
                // Every output reads the last shared layer (the input itself when there is none).
                let body = match net.layers().last() {
                    Some(l) => l.name().to_string(),
                    None => net.inputs()[0].name.clone(),
                };
                let mut names = Vec::new();
                for (t, (out, _, _)) in prep.targets.iter().zip(&heads) {
                    // Unique among the layers, the inputs and the other heads: `dense` → `dense_output`,
                    // `a_b` after `a.b` → `a_b_output`, then `_output_2`...
                    let base = output_name(&t.name);
                    let taken = |n: &str| {
                        net.layers().iter().any(|l| l.name() == n) || net.inputs().iter().any(|i| i.name == n)
                    };
                    let mut name = base.clone();
                    let mut k = 1;
                    while taken(&name) {
                        name = if k == 1 { format!("{base}_output") } else { format!("{base}_output_{k}") };
                        k += 1;
                    }
                    names.push(net.apply(self.regularized(out.clone().name(&name)), &[&body])?);
                }
                net.set_outputs(&names.iter().map(String::as_str).collect::<Vec<_>>())?;
            } else {
                self.head(&mut net, heads[0].0.clone())?;
            }
            self.end_weights(&mut net)?;
            net
        };
        let first = &heads[0];
        let mut compile = self.compile_config(first.1, self.metrics_or(first.2.clone()));
        if several {
            compile = compile.losses(&heads.iter().map(|h| h.1).collect::<Vec<_>>());
            if self.train.metrics.is_empty() {
                compile.output_metrics = heads.iter().map(|h| h.2.clone()).collect();
            }
        }
        net.compile_with(compile)?;
        net.set_preparation(prep.clone());
        Ok(net)
    }

    /// The output layer, loss and default metrics of a table's task; a `train.loss` that does not fit it is
    /// an error.
    fn task_head(&self, target: &Target) -> Result<(Dense, Loss, Vec<Metric>)> {
        let classification = || vec![Metric::Accuracy, Metric::F1(Average::Macro)];
        let (out, loss, metrics) = match &target.task {
            Task::Binary { .. } => {
                (Dense::new(1).activation(Activation::Sigmoid), Loss::BinaryCrossentropy, classification())
            }
            Task::Multiclass { classes } => (
                Dense::new(classes.len()).activation(Activation::Softmax),
                Loss::SparseCategoricalCrossentropy,
                classification(),
            ),
            Task::Regression => {
                let loss = self.train.loss.unwrap_or(Loss::MeanSquaredError);
                if !matches!(loss, Loss::MeanSquaredError | Loss::MeanAbsoluteError | Loss::Huber) {
                    return Err(Error::Config(format!(
                        "train.loss: {} is not a loss for the numeric target `{}` (mean_squared_error, \
                         mean_absolute_error or huber)",
                        loss.name(),
                        target.name
                    )));
                }
                // Classes' metrics on a number would score its values as labels.
                if let Some(m) = self
                    .train
                    .metrics
                    .iter()
                    .find(|m| !matches!(m, Metric::MeanAbsoluteError | Metric::MeanSquaredError))
                {
                    return Err(Error::Config(format!(
                        "train.metrics: {} scores classes, but the target `{}` is a number: use mae or mse (or \
                         leave train.metrics out)",
                        m.name(),
                        target.name
                    )));
                }
                (Dense::new(1), loss, vec![Metric::MeanAbsoluteError])
            }
        };
        if let Some(given) = self.train.loss
            && given != loss
        {
            return Err(Error::Config(format!(
                "train.loss: {} does not fit the target `{}`; its classes take {} (leave train.loss out)",
                given.name(),
                target.name,
                loss.name()
            )));
        }
        Ok((out, loss, metrics))
    }

    /// model.pretrained: the folder's encoder as a `BertEncoder` layer (its lowest `freeze` parts fixed),
    /// filled from the folder's weights unless model.weights gives every parameter; each of its tensors must
    /// be there.
    fn pretrained_encoder(&self, net: &mut Sequential, length: usize) -> Result<()> {
        let m = &self.model;
        let Some(dir) = &m.pretrained else {
            return Err(Error::Config(
                "the data holds token ids of a pretrained tokenizer, but model.pretrained is not set".into(),
            ));
        };
        let folder = Folder::read(dir)?;
        // The head reads the pooled vector as it is: scaled to unit length (the folder's Normalize module, for
        // cosine similarity), its logits would start tiny and learn at fine-tuning's small rates.
        let mut layer = folder.layer().freeze(m.freeze);
        layer.normalize = false;
        if length > layer.max_position_embeddings {
            return Err(Error::Config(format!(
                "data.prepare.text.length = {length} tokens, but {} has {} positions",
                dir.display(),
                layer.max_position_embeddings
            )));
        }
        if m.weights.is_some() {
            net.add(layer)?;
            return Ok(());
        }
        let kept = net.take_weights_source();
        net.set_weights_source(Box::new(folder.weights()?));
        let added = net.add(layer).map(|_| ());
        let source = net.take_weights_source();
        if let Some(k) = kept {
            net.set_weights_source(k);
        }
        added?;
        let missing = source.map(|s| s.missing()).unwrap_or_default();
        if !missing.is_empty() {
            return Err(Error::Config(format!(
                "model.pretrained: {} lacks {} of the encoder's tensors: {}",
                dir.join("model.safetensors").display(),
                missing.len(),
                missing.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    /// kind = "transformer": `blocks` pre-norm encoder blocks over term vectors `dim` wide, and the final
    /// LayerNormalization that pre-norm stacks end with (PyTorch's `TransformerEncoder(norm=...)`).
    fn transformer_blocks<'n>(&self, net: &'n mut Sequential, dim: usize) -> Result<&'n mut Sequential> {
        let m = &self.model;
        if m.blocks == 0 || m.heads == 0 || !dim.is_multiple_of(m.heads) {
            return Err(Error::Config(format!(
                "model.heads = {} must divide the term vectors' width data.prepare.text.dim = {dim} (and \
                 model.blocks = {} be at least 1)",
                m.heads, m.blocks
            )));
        }
        for _ in 0..m.blocks {
            net.add(TransformerEncoder::new(m.heads, m.units).norm_first(true).activation(Activation::Gelu))?;
        }
        net.add(LayerNormalization::new().epsilon(1e-5))
    }

    /// kind = "ft_transformer": every column of the prepared row a token (numbers linear or periodic,
    /// one-hot categories and booleans linear), `blocks` pre-norm blocks over them and the [CLS] token, then
    /// the final LayerNormalization and a ReLU (the FT-Transformer's head before its output layer).
    fn ft_transformer(&self, net: &mut Sequential, features: &[Feature]) -> Result<()> {
        let m = &self.model;
        if let Some(f) = features.iter().find(|f| {
            matches!(
                f.kind,
                FeatureKind::Text { .. } | FeatureKind::Tokens { .. } | FeatureKind::Category { embed: Some(_), .. }
            )
        }) {
            let what = if matches!(f.kind, FeatureKind::Category { .. }) {
                "an embedded category (data.prepare.categories = \"embedding\"; its one-hot is already a \
                 token's embedding here: leave categories out)"
            } else {
                "a text column (ignore it under data.ignore, or use kind = \"transformer\" for text)"
            };
            return Err(Error::Config(format!(
                "model.kind = \"ft_transformer\" makes a token of each number, category and boolean column, but \
                 `{}` is {what}",
                f.name
            )));
        }
        if m.blocks == 0 || m.heads == 0 || m.dim == 0 || !m.dim.is_multiple_of(m.heads) {
            return Err(Error::Config(format!(
                "model.heads = {} must divide the token width model.dim = {} (and model.blocks = {} be at least 1)",
                m.heads, m.dim, m.blocks
            )));
        }
        let widths: Vec<usize> = features.iter().map(Feature::width).collect();
        let mut tokens = ColumnTokens::new(m.dim, &widths);
        if m.numeric_embedding == NumericEmbedding::Periodic {
            let numbers: Vec<bool> = features.iter().map(|f| matches!(f.kind, FeatureKind::Number { .. })).collect();
            tokens = tokens.periodic(&numbers).frequencies(m.frequencies, m.sigma);
        }
        net.add(tokens)?;
        for _ in 0..m.blocks {
            net.add(TransformerEncoder::new(m.heads, m.units).norm_first(true).dropout(m.dropout))?;
        }
        net.add(LayerNormalization::new().epsilon(1e-5))?;
        net.add(SelectToken::new(0))?;
        net.add(ActivationLayer::new(Activation::Relu))?;
        Ok(())
    }

    /// The recipe's layers before the Dense ones: the category embeddings (mlp), or one text column's
    /// terms through Embedding and a recurrent or convolutional layer, pooled.
    fn sequence_layers(&self, net: &mut Sequential, prep: &Preparation) -> Result<()> {
        let m = &self.model;
        let kind = m.kind.unwrap_or_default();
        match (kind, prep.features.as_slice()) {
            (_, [Feature { kind: FeatureKind::Tokens { length, .. }, .. }]) => self.pretrained_encoder(net, *length)?,
            (ModelKind::FtTransformer, features) => self.ft_transformer(net, features)?,
            (ModelKind::Mlp, _) => {
                if let Some(layer) = prep.embedding_layer() {
                    net.add(layer)?;
                }
            }
            (_, [Feature { kind: FeatureKind::Text { vocab, opts, .. }, .. }]) if opts.output == TextOutput::Ids => {
                net.add(Embedding::new(vocab.len() + 2, opts.dim).mask_zero(kind != ModelKind::Cnn))?;
                if kind == ModelKind::Transformer {
                    net.add(PositionEmbedding::new())?;
                }
                if m.embedding_dropout > 0.0 {
                    net.add(Dropout::new(m.embedding_dropout))?;
                }
                let pooling = m.pooling.unwrap_or(kind.default_pooling());
                let rnn = match kind {
                    ModelKind::Lstm => Some(RnnKind::Lstm),
                    ModelKind::Gru => Some(RnnKind::Gru),
                    ModelKind::SimpleRnn => Some(RnnKind::SimpleRnn),
                    _ => None,
                };
                let seq = pooling != Pooling::Last;
                match rnn {
                    Some(kind) if m.bidirectional => {
                        net.add(Bidirectional::new(kind, m.units).return_sequences(seq))?
                    }
                    Some(RnnKind::Lstm) => net.add(Lstm::new(m.units).return_sequences(seq))?,
                    Some(RnnKind::Gru) => net.add(Gru::new(m.units).return_sequences(seq))?,
                    Some(RnnKind::SimpleRnn) => net.add(SimpleRnn::new(m.units).return_sequences(seq))?,
                    None if pooling == Pooling::Last => {
                        return Err(Error::Config(format!(
                            "model.pooling = \"last\" is for recurrent kinds, not {}: use \"max\" or \"average\"",
                            kind.name()
                        )));
                    }
                    None if kind == ModelKind::Transformer => self.transformer_blocks(net, opts.dim)?,
                    None => net.add(Conv1D::new(m.units, m.kernel_size).activation(Activation::Relu))?,
                };
                match pooling {
                    Pooling::Max => {
                        net.add(GlobalMaxPooling1D::new())?;
                    }
                    Pooling::Average => {
                        net.add(GlobalAveragePooling1D::new())?;
                    }
                    Pooling::Last => {}
                }
            }
            (_, features) if !features.iter().any(|f| matches!(f.kind, FeatureKind::Text { .. })) => {
                let names: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
                return Err(Error::Config(format!(
                    "model.kind = \"{}\" reads a text column's words in order, and this table has no text column \
                     (its columns: {}; a column of free text can be declared under [data.columns]); for numbers \
                     and categories use kind = \"mlp\"",
                    kind.name(),
                    names.join(", ")
                )));
            }
            _ => {
                return Err(Error::Config(format!(
                    "model.kind = \"{}\" reads one text column as term ids: ignore the other columns \
                     (data.ignore) and keep data.prepare.text.output = \"ids\"",
                    kind.name()
                )));
            }
        }
        Ok(())
    }
}

/// The output layer of a target when a recipe has several: the column's name in lower case, each run of
/// other characters than letters and digits one `_` ("Monthly Spend" → `monthly_spend`), so that its scores
/// read `monthly_spend_loss`.
fn output_name(target: &str) -> String {
    let mut out = String::new();
    for c in target.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_');
    if out.is_empty() { "output".to_string() } else { out.to_string() }
}

/// The layer whose activation makes the model output `name`, and that activation: the output layer's own,
/// or, through Dropout layers (which keep the values' range), that of the layer before them.
fn output_activation(net: &Sequential, name: &str) -> Option<(String, Activation)> {
    let layers = net.layers();
    let mut l = layers.iter().find(|l| l.name() == name)?;
    while let (LayerConfig::Dropout(_), [Src::Layer(i)]) = (l.config(), l.inputs()) {
        l = layers.get(*i)?;
    }
    Some((l.name().to_string(), l.config().activation()))
}
