//! Recurrent layers: LSTM, GRU and SimpleRNN over a sequence, and Bidirectional (one of them run both
//! ways). The cells are written with the engine's ops, so their gradients come from the ops' own backward;
//! a padding mask makes a padded step keep the state.

use crate::nn::Initializer;
use crate::nn::Layer;
use crate::nn::spec::{BuildCx, Fwd, LayerSpec};
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
                recurrent(RnnKind::$kind, f.g, xs[0], p, self.units, f.mask, false, self.return_sequences)
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
        let fwd = recurrent(self.rnn, f.g, xs[0], fp, self.units, f.mask, false, seq)?;
        let bwd = recurrent(self.rnn, f.g, xs[0], bp, self.units, f.mask, true, seq)?;
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
    mut cell: impl FnMut(&mut Graph<f32>, Var, Var, usize) -> Result<Var>,
) -> Result<Var> {
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
fn lstm_cell(g: &mut Graph<f32>, xt: Var, h: Var, c: Var, w: Var, r: Var, b: Var, u: usize) -> Result<(Var, Var)> {
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
fn gru_cell(g: &mut Graph<f32>, xt: Var, h: Var, w: Var, r: Var, b_in: Var, b_rec: Var, u: usize) -> Result<Var> {
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
fn simple_rnn_cell(g: &mut Graph<f32>, xt: Var, h: Var, w: Var, r: Var, b: Var) -> Result<Var> {
    let zx = g.linear(xt, w, Some(b), None)?;
    let zh = g.matmul(h, r)?;
    let z = g.add(zx, zh)?;
    g.tanh(z)
}

/// new·m + old·(1 − m) per row, with m the mask of step t ([batch, steps]): a padded step keeps the state.
fn keep_masked(g: &mut Graph<f32>, new: Var, old: Var, mask: &[f32], steps: usize, t: usize) -> Result<Var> {
    let n = mask.len() / steps;
    let m: Vec<f32> = (0..n).map(|row| mask[row * steps + t]).collect();
    let inv: Vec<f32> = m.iter().map(|v| 1.0 - v).collect();
    let (mv, iv) = (g.input(&[n, 1], &m)?, g.input(&[n, 1], &inv)?);
    let (a, b) = (g.mul(new, mv)?, g.mul(old, iv)?);
    g.add(a, b)
}

/// One recurrent layer of `kind` over x, forwards or (`reverse`) backwards; the last state, or with `seq`
/// the state after every step.
#[allow(clippy::too_many_arguments)]
fn recurrent(
    kind: RnnKind,
    g: &mut Graph<f32>,
    x: Var,
    params: [ParamId; 3],
    units: usize,
    mask: Option<&[f32]>,
    reverse: bool,
    seq: bool,
) -> Result<Var> {
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
    let cols: Vec<Var> = states.iter().map(|&h| g.reshape(h, &[n, 1, units])).collect::<Result<_>>()?;
    g.concat(&cols, 1)
}
