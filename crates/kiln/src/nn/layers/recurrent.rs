//! Recurrent layers: LSTM, GRU and SimpleRNN over a sequence, and Bidirectional (one of them run both
//! ways). Each runs as one op of the engine over the whole sequence (`Graph::rnn`, forward and backward
//! through time fused); a padding mask makes a padded step keep the state.

use crate::nn::Initializer;
use crate::nn::Layer;
use crate::nn::spec::{BuildCx, Fwd, LayerSpec};
use kiln_core::ops::RnnCell;
use kiln_core::{Graph, ParamId, Result, Var};
use serde::{Deserialize, Serialize};

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

macro_rules! rnn_builders {
    ($($t:ident => $kind:ident),*) => {$(
        impl $t {
            pub fn new(units: usize) -> Self {
                $t { name: None, units, return_sequences: false }
            }
            pub fn return_sequences(mut self, yes: bool) -> Self {
                self.return_sequences = yes;
                self
            }
        }

        impl LayerSpec for $t {
            fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
                one_way(cx, RnnKind::$kind, self.units, self.return_sequences)
            }

            fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
                let p = l.rnn_params(RNN_NAMES[0]);
                recurrent(RnnKind::$kind, f.g, xs[0], p, f.mask, false, self.return_sequences)
            }

            fn returns_sequences(&self) -> bool {
                self.return_sequences
            }

            fn reads_mask(&self) -> bool {
                true
            }
        }
    )*};
}
rnn_builders!(Lstm => Lstm, Gru => Gru, SimpleRnn => SimpleRnn);

impl Bidirectional {
    pub fn new(rnn: RnnKind, units: usize) -> Self {
        Bidirectional { name: None, rnn, units, return_sequences: false }
    }
    pub fn return_sequences(mut self, yes: bool) -> Self {
        self.return_sequences = yes;
        self
    }
}

impl LayerSpec for Bidirectional {
    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        cx.positive(self.units, "units")?;
        let &[steps, features] = cx.input() else {
            return Err(cx.misfit("a sequence (steps, features)"));
        };
        rnn_params(cx, "forward_", self.rnn, features, self.units)?;
        rnn_params(cx, "backward_", self.rnn, features, self.units)?;
        Ok(if self.return_sequences { vec![steps, 2 * self.units] } else { vec![2 * self.units] })
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let seq = self.return_sequences;
        let (fp, bp) = (l.rnn_params(RNN_NAMES[1]), l.rnn_params(RNN_NAMES[2]));
        let fwd = recurrent(self.rnn, f.g, xs[0], fp, f.mask, false, seq)?;
        let bwd = recurrent(self.rnn, f.g, xs[0], bp, f.mask, true, seq)?;
        f.g.concat(&[fwd, bwd], if seq { 2 } else { 1 })
    }

    fn returns_sequences(&self) -> bool {
        self.return_sequences
    }

    fn reads_mask(&self) -> bool {
        true
    }
}

/// The build of a one-way recurrent layer: its cell's parameters, and its output shape.
fn one_way(cx: &mut BuildCx, kind: RnnKind, units: usize, seq: bool) -> Result<Vec<usize>> {
    cx.positive(units, "units")?;
    let &[steps, features] = cx.input() else {
        return Err(cx.misfit("a sequence (steps, features)"));
    };
    rnn_params(cx, "", kind, features, units)?;
    Ok(if seq { vec![steps, units] } else { vec![units] })
}

/// The parameter names of a recurrent cell: alone, and as a Bidirectional's forward and backward halves.
pub(crate) const RNN_NAMES: [[&str; 3]; 3] = [
    ["kernel", "recurrent_kernel", "bias"],
    ["forward_kernel", "forward_recurrent_kernel", "forward_bias"],
    ["backward_kernel", "backward_recurrent_kernel", "backward_bias"],
];

impl Layer {
    /// The kernel, recurrent kernel and bias of a recurrent cell, by their names (`names`, from RNN_NAMES).
    fn rnn_params(&self, names: [&str; 3]) -> [ParamId; 3] {
        names.map(|n| self.must(n))
    }
}

/// The parameters of one recurrent cell, named `{prefix}kernel`, `{prefix}recurrent_kernel`, `{prefix}bias`,
/// in Keras's layouts: LSTM 4 gates (forget bias 1), GRU 3 gates with a [2, 3·units] bias, SimpleRNN 1.
fn rnn_params(cx: &mut BuildCx, prefix: &str, kind: RnnKind, f: usize, u: usize) -> Result<()> {
    let gates = match kind {
        RnnKind::Lstm => 4,
        RnnKind::Gru => 3,
        RnnKind::SimpleRnn => 1,
    };
    let glorot = Initializer::GlorotUniform;
    let kernel = glorot.fill(&[f, gates * u], cx.rng)?;
    cx.param(&format!("{prefix}kernel"), &[f, gates * u], kernel, true)?;
    let recurrent = glorot.fill(&[u, gates * u], cx.rng)?;
    cx.param(&format!("{prefix}recurrent_kernel"), &[u, gates * u], recurrent, true)?;
    match kind {
        RnnKind::Lstm => {
            let bias: Vec<f32> = (0..4 * u).map(|k| if (u..2 * u).contains(&k) { 1.0 } else { 0.0 }).collect();
            cx.param(&format!("{prefix}bias"), &[4 * u], bias, true)
        }
        RnnKind::Gru => cx.param(&format!("{prefix}bias"), &[2, 3 * u], vec![0.0; 6 * u], true),
        RnnKind::SimpleRnn => cx.param(&format!("{prefix}bias"), &[u], vec![0.0; u], true),
    }
}

impl RnnKind {
    /// The engine's cell for this layer kind.
    fn cell(self) -> RnnCell {
        match self {
            RnnKind::Lstm => RnnCell::Lstm,
            RnnKind::Gru => RnnCell::Gru,
            RnnKind::SimpleRnn => RnnCell::Simple,
        }
    }
}

/// One recurrent layer of `kind` over x [n, steps, features], forwards or (`reverse`) backwards, as the
/// engine's fused op (`Graph::rnn`; `Graph::rnn_unrolled` is the same layer op by op, its tested
/// reference): the last state, or with `seq` the state after every step. A step masked by `mask`
/// ([n, steps], 0 for padding) keeps the state.
fn recurrent(
    kind: RnnKind,
    g: &mut Graph<f32>,
    x: Var,
    params: [ParamId; 3],
    mask: Option<&[f32]>,
    reverse: bool,
    seq: bool,
) -> Result<Var> {
    let (n, steps) = (g.shape(x).dim(0), g.shape(x).dim(1));
    let (w, r, b) = (g.use_param(params[0]), g.use_param(params[1]), g.use_param(params[2]));
    let mask = match mask {
        Some(m) => Some(g.input(&[n, steps], m)?),
        None => None,
    };
    g.rnn(kind.cell(), x, w, r, b, mask, reverse, seq)
}
