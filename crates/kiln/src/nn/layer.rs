//! A built layer: its config (name filled in), the per-sample shapes it maps between, and its parameters
//! in the model's graph. Building checks that the input fits, naming both layers and shapes when not.

use super::config::*;
use super::{Activation, Regularizer};
use kiln_core::{Error, Graph, ParamId, Rng, Shape, Var};

pub struct Layer {
    pub(crate) config: LayerConfig,
    pub(crate) input_shape: Vec<usize>,
    pub(crate) output_shape: Vec<usize>,
    /// kernel, bias (dense, conv); gamma, beta, moving mean, moving variance (batch norm).
    pub(crate) params: Vec<ParamId>,
    pub(crate) regularizer: Option<Regularizer>,
}

/// "`conv2d` (Conv2D) outputs (26, 26, 32)" or "the model input is (28, 28, 1)", for error messages.
pub(crate) fn describe_source(prev: Option<&Layer>, shape: &[usize]) -> String {
    let s = fmt_shape(shape);
    match prev {
        Some(p) => format!("`{}` ({}) outputs {s}", p.name(), p.config.class_name()),
        None => format!("the model input is {s}"),
    }
}

pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    Shape::new(shape).map(|s| s.to_string()).unwrap_or_else(|_| format!("{shape:?}"))
}

fn positive(n: usize, what: &str, layer: &str) -> kiln_core::Result<()> {
    if n == 0 {
        return Err(Error::Config(format!("layer `{layer}`: {what} must be positive")));
    }
    Ok(())
}

fn window_out(input: usize, k: usize, s: usize, p: PaddingConfig) -> Option<usize> {
    match p {
        PaddingConfig::Valid => (input >= k).then(|| (input - k) / s + 1),
        PaddingConfig::Same => Some(input.div_ceil(s)),
    }
}

impl Layer {
    pub fn name(&self) -> &str {
        self.config.name().unwrap_or("")
    }

    pub fn config(&self) -> &LayerConfig {
        &self.config
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    pub fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    pub fn params(&self) -> &[ParamId] {
        &self.params
    }

    /// Builds `config` (already named) on input of per-sample shape `input`, coming from `prev`.
    pub(crate) fn build(
        config: LayerConfig,
        input: &[usize],
        prev: Option<&Layer>,
        g: &mut Graph<f32>,
        rng: &mut Rng,
    ) -> kiln_core::Result<Layer> {
        let name = config.name().unwrap_or("").to_string();
        let class = config.class_name();
        let misfit = |want: &str| {
            Error::Shape(format!(
                "layer `{name}` ({class}) expects {want}, but {}{}",
                describe_source(prev, input),
                if class == "Dense" && input.len() > 1 { "; add a Flatten layer before it" } else { "" }
            ))
        };
        let mut params = Vec::new();
        let mut regularizer = None;
        let mut add = |g: &mut Graph<f32>, suffix: &str, shape: &[usize], value: Vec<f32>, trainable: bool| {
            g.add_param(&format!("{name}.{suffix}"), shape, value, trainable).map(|p| params.push(p))
        };
        let output: Vec<usize> = match &config {
            LayerConfig::Dense(c) => {
                positive(c.units, "units", &name)?;
                let [features] = input else {
                    return Err(misfit("a flat input (features,)"));
                };
                let ks = [*features, c.units];
                add(g, "kernel", &ks, c.kernel_initializer.fill(&ks, rng), true)?;
                if c.use_bias {
                    add(g, "bias", &[c.units], c.bias_initializer.fill(&[c.units], rng), true)?;
                }
                regularizer = c.kernel_regularizer;
                vec![c.units]
            }
            LayerConfig::Conv2d(c) => {
                positive(c.filters, "filters", &name)?;
                for (what, p) in [("kernel_size", c.kernel_size), ("strides", c.strides)] {
                    positive(p.0.min(p.1), what, &name)?;
                }
                let [h, w, ch] = input else {
                    return Err(misfit("an image input (height, width, channels)"));
                };
                let Pair(kh, kw) = c.kernel_size;
                let (Some(oh), Some(ow)) =
                    (window_out(*h, kh, c.strides.0, c.padding), window_out(*w, kw, c.strides.1, c.padding))
                else {
                    return Err(misfit(&format!("an input of at least {kh}x{kw} pixels with valid padding")));
                };
                let ks = [kh, kw, *ch, c.filters];
                add(g, "kernel", &ks, c.kernel_initializer.fill(&ks, rng), true)?;
                if c.use_bias {
                    add(g, "bias", &[c.filters], c.bias_initializer.fill(&[c.filters], rng), true)?;
                }
                regularizer = c.kernel_regularizer;
                vec![oh, ow, c.filters]
            }
            LayerConfig::MaxPooling2d(MaxPooling2D { pool_size, strides, padding, .. })
            | LayerConfig::AveragePooling2d(AveragePooling2D { pool_size, strides, padding, .. }) => {
                let s = strides.unwrap_or(*pool_size);
                positive(pool_size.0.min(pool_size.1), "pool_size", &name)?;
                positive(s.0.min(s.1), "strides", &name)?;
                let [h, w, ch] = input else {
                    return Err(misfit("an image input (height, width, channels)"));
                };
                let (Some(oh), Some(ow)) =
                    (window_out(*h, pool_size.0, s.0, *padding), window_out(*w, pool_size.1, s.1, *padding))
                else {
                    return Err(misfit(&format!("an input of at least {}x{} pixels", pool_size.0, pool_size.1)));
                };
                vec![oh, ow, *ch]
            }
            LayerConfig::Flatten(_) => {
                if input.is_empty() {
                    return Err(misfit("an input with at least one axis"));
                }
                vec![input.iter().product()]
            }
            LayerConfig::Dropout(c) => {
                if !(0.0..1.0).contains(&c.rate) {
                    return Err(Error::Config(format!("layer `{name}`: rate {} must be in [0, 1)", c.rate)));
                }
                input.to_vec()
            }
            LayerConfig::Activation(_) => input.to_vec(),
            LayerConfig::BatchNormalization(c) => {
                let Some(&ch) = input.last() else {
                    return Err(misfit("an input with at least one axis"));
                };
                if !(0.0..=1.0).contains(&c.momentum) || c.epsilon <= 0.0 {
                    return Err(Error::Config(format!(
                        "layer `{name}`: momentum must be in [0, 1] and epsilon positive"
                    )));
                }
                add(g, "gamma", &[ch], vec![1.0; ch], true)?;
                add(g, "beta", &[ch], vec![0.0; ch], true)?;
                add(g, "moving_mean", &[ch], vec![0.0; ch], false)?;
                add(g, "moving_variance", &[ch], vec![1.0; ch], false)?;
                input.to_vec()
            }
            LayerConfig::Embedding(c) => {
                positive(c.input_dim.min(c.output_dim), "input_dim and output_dim", &name)?;
                let [steps] = input else {
                    return Err(misfit("a sequence of ids (length,)"));
                };
                add(
                    g,
                    "embeddings",
                    &[c.input_dim, c.output_dim],
                    embedding_init(c.input_dim * c.output_dim, rng),
                    true,
                )?;
                vec![*steps, c.output_dim]
            }
            LayerConfig::Lstm(Lstm { units, .. })
            | LayerConfig::Gru(Gru { units, .. })
            | LayerConfig::SimpleRnn(SimpleRnn { units, .. }) => {
                positive(*units, "units", &name)?;
                let [_, features] = input else {
                    return Err(misfit("a sequence (steps, features)"));
                };
                let kind = config.rnn_kind().expect("a recurrent layer");
                rnn_params(&mut add, g, rng, "", kind, *features, *units)?;
                if config.returns_sequences() { vec![input[0], *units] } else { vec![*units] }
            }
            LayerConfig::Conv1d(c) => {
                positive(c.filters.min(c.kernel_size), "filters and kernel_size", &name)?;
                let [steps, ch] = input else {
                    return Err(misfit("a sequence (steps, channels)"));
                };
                if *steps < c.kernel_size {
                    return Err(misfit(&format!("at least {} steps", c.kernel_size)));
                }
                let ks = [1, c.kernel_size, *ch, c.filters];
                add(g, "kernel", &ks, crate::nn::Initializer::GlorotUniform.fill(&ks, rng), true)?;
                add(g, "bias", &[c.filters], vec![0.0; c.filters], true)?;
                vec![steps - c.kernel_size + 1, c.filters]
            }
            LayerConfig::GlobalMaxPooling1d(_) | LayerConfig::GlobalAveragePooling1d(_) => {
                let [_, ch] = input else {
                    return Err(misfit("a sequence (steps, channels)"));
                };
                vec![*ch]
            }
            LayerConfig::Bidirectional(c) => {
                positive(c.units, "units", &name)?;
                let [_, features] = input else {
                    return Err(misfit("a sequence (steps, features)"));
                };
                rnn_params(&mut add, g, rng, "forward_", c.rnn, *features, c.units)?;
                rnn_params(&mut add, g, rng, "backward_", c.rnn, *features, c.units)?;
                if c.return_sequences { vec![input[0], 2 * c.units] } else { vec![2 * c.units] }
            }
            LayerConfig::CategoryEmbedding(c) => {
                let [width] = input else {
                    return Err(misfit("a flat input (features,)"));
                };
                let per_column = |v: usize| v == 0 || v == c.columns.len();
                if *width != c.numeric + c.ids() || !per_column(c.lengths.len()) || !per_column(c.weighted.len()) {
                    return Err(misfit(&format!("{} numbers and {} category indices", c.numeric, c.ids())));
                }
                let mut out = c.numeric;
                for (i, &(vocab, dim)) in c.columns.iter().enumerate() {
                    positive(vocab.min(dim), "vocabulary and width", &name)?;
                    add(g, &format!("embeddings_{i}"), &[vocab, dim], embedding_init(vocab * dim, rng), true)?;
                    out += dim;
                }
                vec![out]
            }
        };
        Ok(Layer { config, input_shape: input.to_vec(), output_shape: output, params, regularizer })
    }

    /// Runs the layer on a batch. `logits`: leave out a final softmax/sigmoid, because the loss applies it
    /// (fused, from logits).
    /// `mask`: the padding mask of a sequence ([batch, steps], 1 for real steps), for recurrent layers.
    pub(crate) fn forward(
        &self,
        g: &mut Graph<f32>,
        x: Var,
        training: bool,
        logits: bool,
        mask: Option<&[f32]>,
    ) -> kiln_core::Result<Var> {
        let p = |i: usize| self.params.get(i).copied();
        let last_axis = self.output_shape.len();
        let finish = |g: &mut Graph<f32>, y: Var, act: Activation| match act {
            Activation::Softmax if !logits => g.softmax(y, last_axis),
            _ => Ok(y),
        };
        // The elementwise activation fused into the layer's op, unless it is the sigmoid the loss will apply.
        let fused = |act: Activation| {
            if logits && act == Activation::Sigmoid { None } else { act.unary() }
        };
        match &self.config {
            LayerConfig::Dense(c) => {
                let w = g.use_param(self.params[0]);
                let b = p(1).map(|b| g.use_param(b));
                let y = g.linear(x, w, b, fused(c.activation))?;
                finish(g, y, c.activation)
            }
            LayerConfig::Conv2d(c) => {
                let w = g.use_param(self.params[0]);
                let b = p(1).map(|b| g.use_param(b));
                let s = (c.strides.0, c.strides.1);
                let y = g.conv2d(x, w, b, s, c.padding.into(), fused(c.activation))?;
                finish(g, y, c.activation)
            }
            LayerConfig::MaxPooling2d(c) => {
                let s = c.strides.unwrap_or(c.pool_size);
                g.max_pool2d(x, (c.pool_size.0, c.pool_size.1), (s.0, s.1), c.padding.into())
            }
            LayerConfig::AveragePooling2d(c) => {
                let s = c.strides.unwrap_or(c.pool_size);
                g.avg_pool2d(x, (c.pool_size.0, c.pool_size.1), (s.0, s.1), c.padding.into())
            }
            LayerConfig::Flatten(_) => g.flatten(x),
            LayerConfig::Embedding(c) => {
                let (n, steps) = (g.shape(x).dim(0), g.shape(x).dim(1));
                let ids: Vec<u32> = g.value(x).iter().map(|&v| v as u32).collect();
                if let Some(bad) = ids.iter().find(|&&i| i as usize >= c.input_dim) {
                    return Err(kiln_core::Error::Data(format!(
                        "layer `{}`: id {bad} is outside its vocabulary of {}",
                        self.name(),
                        c.input_dim
                    )));
                }
                let w = g.use_param(self.params[0]);
                let e = g.index_select(w, 0, &ids)?;
                g.reshape(e, &[n, steps, c.output_dim])
            }
            LayerConfig::Lstm(Lstm { units, .. })
            | LayerConfig::Gru(Gru { units, .. })
            | LayerConfig::SimpleRnn(SimpleRnn { units, .. }) => {
                let kind = self.config.rnn_kind().expect("a recurrent layer");
                let seq = self.config.returns_sequences();
                recurrent(kind, g, x, &self.params, *units, mask, false, seq)
            }
            LayerConfig::Bidirectional(c) => {
                let half = self.params.len() / 2;
                let seq = c.return_sequences;
                let fwd = recurrent(c.rnn, g, x, &self.params[..half], c.units, mask, false, seq)?;
                let bwd = recurrent(c.rnn, g, x, &self.params[half..], c.units, mask, true, seq)?;
                g.concat(&[fwd, bwd], if seq { 2 } else { 1 })
            }
            LayerConfig::GlobalAveragePooling1d(_) => match mask {
                // The mean over real steps only.
                Some(m) => {
                    let (n, steps) = (g.shape(x).dim(0), g.shape(x).dim(1));
                    let inv: Vec<f32> = m.chunks(steps).map(|r| 1.0 / r.iter().sum::<f32>().max(1.0)).collect();
                    let mv = g.input(&[n, steps, 1], m)?;
                    let masked = g.mul(x, mv)?;
                    let sum = g.sum(masked, Some(1), false)?;
                    let iv = g.input(&[n, 1], &inv)?;
                    g.mul(sum, iv)
                }
                None => g.mean(x, Some(1), false),
            },
            LayerConfig::Conv1d(c) => {
                let (n, steps, ch) = (g.shape(x).dim(0), g.shape(x).dim(1), g.shape(x).dim(2));
                let x4 = g.reshape(x, &[n, 1, steps, ch])?;
                let (w, b) = (g.use_param(self.params[0]), g.use_param(self.params[1]));
                let y = g.conv2d(x4, w, Some(b), (1, 1), kiln_core::Padding::Valid, fused(c.activation))?;
                let y = g.reshape(y, &[n, steps - c.kernel_size + 1, c.filters])?;
                finish(g, y, c.activation)
            }
            LayerConfig::GlobalMaxPooling1d(_) => match mask {
                // Padded steps pushed far below any real value, so the max is over real steps only (a text
                // with no real step keeps its states: the recurrent layers' zero start).
                Some(m) => {
                    let (n, steps) = (g.shape(x).dim(0), g.shape(x).dim(1));
                    let shift: Vec<f32> = m
                        .chunks(steps)
                        .flat_map(|row| {
                            let empty = row.iter().all(|&v| v == 0.0);
                            row.iter().map(move |&v| if v > 0.0 || empty { 0.0 } else { -1e30 })
                        })
                        .collect();
                    let sv = g.input(&[n, steps, 1], &shift)?;
                    let shifted = g.add(x, sv)?;
                    g.max(shifted, Some(1), false)
                }
                None => g.max(x, Some(1), false),
            },
            LayerConfig::CategoryEmbedding(c) => {
                // The indices are data (the batch's input), read from the graph; the embeddings take the gradient.
                let width = c.numeric + c.ids();
                let n = g.shape(x).dim(0);
                let mut cols: Vec<Vec<u32>> = Vec::with_capacity(c.columns.len());
                let mut weights: Vec<Vec<f32>> = Vec::with_capacity(c.columns.len());
                {
                    let v = g.value(x);
                    let mut off = c.numeric;
                    for j in 0..c.columns.len() {
                        let len = c.length(j);
                        cols.push(v.chunks(width).flat_map(|r| r[off..off + len].iter().map(|&i| i as u32)).collect());
                        off += len;
                        if c.is_weighted(j) {
                            weights.push(v.chunks(width).flat_map(|r| r[off..off + len].iter().copied()).collect());
                            off += len;
                        } else {
                            weights.push(Vec::new());
                        }
                    }
                }
                let mut parts = Vec::with_capacity(c.columns.len() + 1);
                if c.numeric > 0 {
                    parts.push(g.slice(x, 1, 0, c.numeric)?);
                }
                for (j, idx) in cols.iter().enumerate() {
                    let (vocab, dim) = c.columns[j];
                    if let Some(bad) = idx.iter().find(|&&i| i as usize >= vocab) {
                        return Err(kiln_core::Error::Data(format!(
                            "layer `{}`: index {bad} of column {j} is outside its vocabulary of {vocab}",
                            self.name()
                        )));
                    }
                    let w = g.use_param(self.params[j]);
                    let e = g.index_select(w, 0, idx)?;
                    let len = c.length(j);
                    if len == 1 {
                        parts.push(e);
                        continue;
                    }
                    let e = g.reshape(e, &[n, len, dim])?;
                    if c.is_weighted(j) {
                        // The weighted sum: padding has weight 0.
                        let wv = g.input(&[n, len, 1], &weights[j])?;
                        let weighted = g.mul(e, wv)?;
                        parts.push(g.sum(weighted, Some(1), false)?);
                        continue;
                    }
                    // A bag: the mean of the vectors of the non-padding ids.
                    let mask: Vec<f32> = idx.iter().map(|&i| (i != 0) as u8 as f32).collect();
                    let counts: Vec<f32> = mask.chunks(len).map(|m| 1.0 / m.iter().sum::<f32>().max(1.0)).collect();
                    let m = g.input(&[n, len, 1], &mask)?;
                    let masked = g.mul(e, m)?;
                    let sum = g.sum(masked, Some(1), false)?;
                    let inv = g.input(&[n, 1], &counts)?;
                    parts.push(g.mul(sum, inv)?);
                }
                g.concat(&parts, 1)
            }
            LayerConfig::Dropout(c) if training && c.rate > 0.0 => g.dropout(x, c.rate),
            LayerConfig::Dropout(_) => Ok(x),
            LayerConfig::Activation(c) => {
                let y = match fused(c.activation) {
                    Some(op) => g.unary(x, op)?,
                    None => x,
                };
                finish(g, y, c.activation)
            }
            LayerConfig::BatchNormalization(c) => {
                let (gamma, beta) = (g.use_param(self.params[0]), g.use_param(self.params[1]));
                if training {
                    let y = g.batch_norm(x, gamma, beta, None, c.epsilon)?;
                    self.update_moving_stats(g, y, c.momentum);
                    Ok(y)
                } else {
                    let (mm, mv) = (g.use_param(self.params[2]), g.use_param(self.params[3]));
                    g.batch_norm(x, gamma, beta, Some((mm, mv)), c.epsilon)
                }
            }
        }
    }

    /// moving = momentum·moving + (1 − momentum)·batch, for mean and variance (Keras's update).
    fn update_moving_stats(&self, g: &mut Graph<f32>, y: Var, momentum: f64) {
        let c = *self.output_shape.last().expect("checked at build");
        let m = momentum as f32;
        for (k, pid) in [(0, self.params[2]), (1, self.params[3])] {
            for j in 0..c {
                let batch = g.saved(y)[k * c + j];
                let v = &mut g.param_mut(pid).value[j];
                *v = m * *v + (1.0 - m) * batch;
            }
        }
    }
}

/// Conv2D directly followed by MaxPooling2D with non-overlapping windows (strides = pool size, valid) runs as
/// the engine's fused `conv2d_max_pool`: the convolution's full output is never stored. None when the pair
/// does not qualify.
pub(crate) fn conv_pool_forward(
    conv: &Layer,
    pool: &Layer,
    g: &mut Graph<f32>,
    x: Var,
) -> Option<kiln_core::Result<Var>> {
    let (LayerConfig::Conv2d(c), LayerConfig::MaxPooling2d(p)) = (&conv.config, &pool.config) else { return None };
    let strides = p.strides.unwrap_or(p.pool_size);
    if c.activation == Activation::Softmax || strides != p.pool_size || p.padding != PaddingConfig::Valid {
        return None;
    }
    let w = g.use_param(conv.params[0]);
    let b = conv.params.get(1).map(|&b| g.use_param(b));
    let (s, size) = ((c.strides.0, c.strides.1), (p.pool_size.0, p.pool_size.1));
    Some(g.conv2d_max_pool(x, w, b, s, c.padding.into(), c.activation.unary(), size))
}

/// Runs `cell` over the steps of x [n, steps, features], last to first when `reverse`, from a zero state:
/// `cell` gets the step's input [n, features], the state h [n, units] and the step's index, and returns the
/// new h; a step masked by `mask` keeps h. With `states`, h after every step is pushed there. Returns the last h.
#[allow(clippy::too_many_arguments)]
fn unroll(
    g: &mut Graph<f32>,
    x: Var,
    u: usize,
    mask: Option<&[f32]>,
    reverse: bool,
    mut states: Option<&mut Vec<Var>>,
    mut cell: impl FnMut(&mut Graph<f32>, Var, Var, usize) -> kiln_core::Result<Var>,
) -> kiln_core::Result<Var> {
    let (n, steps, f) = (g.shape(x).dim(0), g.shape(x).dim(1), g.shape(x).dim(2));
    let mut h = g.input(&[n, u], &vec![0.0f32; n * u])?;
    for k in 0..steps {
        let t = if reverse { steps - 1 - k } else { k };
        let xt = g.slice(x, 1, t, t + 1)?;
        let xt = g.reshape(xt, &[n, f])?;
        let h_new = cell(g, xt, h, t)?;
        h = match mask {
            Some(m) => keep_masked(g, h_new, h, m, steps, t)?,
            None => h_new,
        };
        if let Some(s) = states.as_mut() {
            s.push(h);
        }
    }
    Ok(h)
}

/// One LSTM step (Keras's gate order i, f, c, o; one bias): the new (h, c).
#[allow(clippy::too_many_arguments)]
fn lstm_cell(
    g: &mut Graph<f32>,
    xt: Var,
    h: Var,
    c: Var,
    w: Var,
    r: Var,
    b: Var,
    u: usize,
) -> kiln_core::Result<(Var, Var)> {
    let zx = g.linear(xt, w, Some(b), None)?;
    let zh = g.matmul(h, r)?;
    let z = g.add(zx, zh)?;
    let gate = |g: &mut Graph<f32>, k: usize| g.slice(z, 1, k * u, (k + 1) * u);
    let (i, fg, cc, o) = (gate(g, 0)?, gate(g, 1)?, gate(g, 2)?, gate(g, 3)?);
    let (i, fg, cc, o) = (g.sigmoid(i)?, g.sigmoid(fg)?, g.tanh(cc)?, g.sigmoid(o)?);
    let keep = g.mul(fg, c)?;
    let add = g.mul(i, cc)?;
    let c_new = g.add(keep, add)?;
    let tc = g.tanh(c_new)?;
    Ok((g.mul(o, tc)?, c_new))
}

/// One GRU step (Keras's reset_after = true, gates z, r, h; input and recurrent biases): the new h.
#[allow(clippy::too_many_arguments)]
fn gru_cell(
    g: &mut Graph<f32>,
    xt: Var,
    h: Var,
    w: Var,
    r: Var,
    b_in: Var,
    b_rec: Var,
    u: usize,
) -> kiln_core::Result<Var> {
    let zx = g.linear(xt, w, Some(b_in), None)?;
    let zh = g.linear(h, r, Some(b_rec), None)?;
    let part = |g: &mut Graph<f32>, v: Var, k: usize| g.slice(v, 1, k * u, (k + 1) * u);
    let (zx0, zx1, zx2) = (part(g, zx, 0)?, part(g, zx, 1)?, part(g, zx, 2)?);
    let (zh0, zh1, zh2) = (part(g, zh, 0)?, part(g, zh, 1)?, part(g, zh, 2)?);
    let z = g.add(zx0, zh0)?;
    let z = g.sigmoid(z)?;
    let rr = g.add(zx1, zh1)?;
    let rr = g.sigmoid(rr)?;
    let gated = g.mul(rr, zh2)?;
    let cand = g.add(zx2, gated)?;
    let cand = g.tanh(cand)?;
    // h' = z·h + (1 − z)·cand = cand + z·(h − cand)
    let d = g.sub(h, cand)?;
    let zd = g.mul(z, d)?;
    g.add(cand, zd)
}

/// One SimpleRNN step, h' = tanh(x·W + h·U + b) (PyTorch's RNN with tanh).
fn simple_rnn_cell(g: &mut Graph<f32>, xt: Var, h: Var, w: Var, r: Var, b: Var) -> kiln_core::Result<Var> {
    let zx = g.linear(xt, w, Some(b), None)?;
    let zh = g.matmul(h, r)?;
    let z = g.add(zx, zh)?;
    g.tanh(z)
}

/// new·m + old·(1 − m) per row, with m the mask of step t ([batch, steps]): a padded step keeps the state.
fn keep_masked(g: &mut Graph<f32>, new: Var, old: Var, mask: &[f32], steps: usize, t: usize) -> kiln_core::Result<Var> {
    let n = mask.len() / steps;
    let m: Vec<f32> = (0..n).map(|row| mask[row * steps + t]).collect();
    let inv: Vec<f32> = m.iter().map(|v| 1.0 - v).collect();
    let (mv, iv) = (g.input(&[n, 1], &m)?, g.input(&[n, 1], &inv)?);
    let (a, b) = (g.mul(new, mv)?, g.mul(old, iv)?);
    g.add(a, b)
}

/// The parameters of one recurrent cell, named `{prefix}kernel`, `{prefix}recurrent_kernel`, `{prefix}bias`,
/// in Keras's layouts: LSTM 4 gates (forget bias 1), GRU 3 gates with a [2, 3·units] bias, SimpleRNN 1.
fn rnn_params(
    add: &mut impl FnMut(&mut Graph<f32>, &str, &[usize], Vec<f32>, bool) -> kiln_core::Result<()>,
    g: &mut Graph<f32>,
    rng: &mut Rng,
    prefix: &str,
    kind: RnnKind,
    f: usize,
    u: usize,
) -> kiln_core::Result<()> {
    let gates = match kind {
        RnnKind::Lstm => 4,
        RnnKind::Gru => 3,
        RnnKind::SimpleRnn => 1,
    };
    let glorot = crate::nn::Initializer::GlorotUniform;
    add(g, &format!("{prefix}kernel"), &[f, gates * u], glorot.fill(&[f, gates * u], rng), true)?;
    add(g, &format!("{prefix}recurrent_kernel"), &[u, gates * u], glorot.fill(&[u, gates * u], rng), true)?;
    match kind {
        RnnKind::Lstm => {
            let bias: Vec<f32> = (0..4 * u).map(|k| if (u..2 * u).contains(&k) { 1.0 } else { 0.0 }).collect();
            add(g, &format!("{prefix}bias"), &[4 * u], bias, true)
        }
        RnnKind::Gru => add(g, &format!("{prefix}bias"), &[2, 3 * u], vec![0.0; 6 * u], true),
        RnnKind::SimpleRnn => add(g, &format!("{prefix}bias"), &[u], vec![0.0; u], true),
    }
}

/// Keras's Embedding default start: uniform in [−0.05, 0.05].
fn embedding_init(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.uniform_range(-0.05, 0.05) as f32).collect()
}

/// One recurrent layer of `kind` over x, forwards or (`reverse`) backwards; the last state, or with `seq`
/// the state after every step.
#[allow(clippy::too_many_arguments)]
fn recurrent(
    kind: RnnKind,
    g: &mut Graph<f32>,
    x: Var,
    params: &[ParamId],
    units: usize,
    mask: Option<&[f32]>,
    reverse: bool,
    seq: bool,
) -> kiln_core::Result<Var> {
    let (n, steps) = (g.shape(x).dim(0), g.shape(x).dim(1));
    let (w, r, b) = (g.use_param(params[0]), g.use_param(params[1]), g.use_param(params[2]));
    let mut states = Vec::new();
    let st = seq.then_some(&mut states);
    let last = match kind {
        RnnKind::Lstm => {
            // c is the LSTM's second state: kept through masked steps as h is.
            let mut c = g.input(&[n, units], &vec![0.0f32; n * units])?;
            unroll(g, x, units, mask, reverse, st, |g, xt, h, t| {
                let (h_new, c_new) = lstm_cell(g, xt, h, c, w, r, b, units)?;
                c = match mask {
                    Some(m) => keep_masked(g, c_new, c, m, steps, t)?,
                    None => c_new,
                };
                Ok(h_new)
            })
        }
        RnnKind::Gru => {
            let b_in = g.slice(b, 0, 0, 1)?;
            let b_in = g.reshape(b_in, &[3 * units])?;
            let b_rec = g.slice(b, 0, 1, 2)?;
            let b_rec = g.reshape(b_rec, &[3 * units])?;
            unroll(g, x, units, mask, reverse, st, |g, xt, h, _| gru_cell(g, xt, h, w, r, b_in, b_rec, units))
        }
        RnnKind::SimpleRnn => unroll(g, x, units, mask, reverse, st, |g, xt, h, _| simple_rnn_cell(g, xt, h, w, r, b)),
    }?;
    if !seq {
        return Ok(last);
    }
    // The states in step order (a backward pass made them last step first), as (n, steps, units).
    if reverse {
        states.reverse();
    }
    let cols: Vec<Var> = states.iter().map(|&h| g.reshape(h, &[n, 1, units])).collect::<kiln_core::Result<_>>()?;
    g.concat(&cols, 1)
}
