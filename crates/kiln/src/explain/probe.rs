//! The model seen as a function of one point, for attributions: the point is the model's inputs (an image,
//! a prepared table row) or one layer's output put in its place (a text's term vectors), every other input
//! held at the sample being explained. `outputs` runs it forward on many points in one batch, `gradients`
//! also differentiates the explained output with respect to each point (a lent inference tape with
//! recording on: the parameters get no gradient, only the points).

use super::{At, Target};
use crate::model::Model;
use kiln_core::{Error, MAX_RANK, Result, Var};

/// Points per forward pass: integrated gradients' 50 steps of an MNIST image run as one batch, longer
/// inputs in pieces whose activations stay small.
const POINTS_PER_PASS: usize = 64;

/// The model around one sample, as a function of the point at `at`.
pub struct Probe<'a> {
    pub(crate) model: &'a Model,
    /// The sample's model inputs, one row each.
    sample: Vec<Vec<f32>>,
    pub(crate) at: At,
    pub(crate) target: Target,
    /// Values per point.
    pub(crate) width: usize,
}

impl<'a> Probe<'a> {
    /// The model around `sample` (one row per model input, as `predict` takes them), explained at `at` for
    /// `target`. Errors name what does not fit: an input's width, a layer or class out of range.
    pub fn new(model: &'a Model, sample: &[&kiln_core::Tensor], at: At, target: Target) -> Result<Self> {
        let inputs = model.inputs();
        if sample.len() != inputs.len() {
            return Err(Error::Shape(format!(
                "explain: the model takes {} inputs ({}), {} given",
                inputs.len(),
                inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "),
                sample.len()
            )));
        }
        let mut rows = Vec::with_capacity(sample.len());
        for (t, spec) in sample.iter().zip(inputs) {
            let want: usize = spec.shape.iter().product();
            if t.data().len() != want {
                return Err(Error::Shape(format!(
                    "explain: input `{}` takes one sample of shape {:?} ({want} values), got shape {:?}",
                    spec.name,
                    spec.shape,
                    t.shape()
                )));
            }
            rows.push(t.data().to_vec());
        }
        let outputs = model.output_shapes();
        let Some(shape) = outputs.get(target.output) else {
            return Err(Error::Invalid(format!(
                "explain: output {} asked for, the model has {}",
                target.output,
                outputs.len()
            )));
        };
        let columns: usize = shape.iter().product();
        if target.column >= columns {
            return Err(Error::Invalid(format!(
                "explain: class {} asked for, the model's output has {columns} (0 to {})",
                target.column,
                columns - 1
            )));
        }
        let width = match at {
            At::Inputs => inputs.iter().map(|i| i.shape.iter().product::<usize>()).sum(),
            At::Layer(l) => match model.layers().get(l) {
                Some(layer) => layer.output_shape.iter().product(),
                None => {
                    return Err(Error::Invalid(format!(
                        "explain: layer {l} asked for, the model has {}",
                        model.layers().len()
                    )));
                }
            },
        };
        Ok(Probe { model, sample: rows, at, target, width })
    }

    /// The sample itself as a point: its inputs side by side, or the layer's output on it.
    pub fn point(&self) -> Result<Vec<f32>> {
        match self.at {
            At::Inputs => Ok(self.sample.concat()),
            At::Layer(l) => self.layer_output(&self.sample, l),
        }
    }

    /// Layer `l`'s output on other model inputs (one row per input): a baseline at a layer is the layer's
    /// output on baseline inputs (a text of padding).
    pub fn layer_output(&self, sample: &[Vec<f32>], l: usize) -> Result<Vec<f32>> {
        let net = &self.model.net;
        self.model.with_tape(|tape| {
            let g = &mut tape.graph;
            g.reset();
            tape.flows.outs.clear();
            for (row, spec) in sample.iter().zip(&net.inputs) {
                let v = g.input(&dims(1, &spec.shape), row)?;
                tape.flows.outs.push((v, None));
            }
            net.forward_with(g, &mut tape.flows, false, &[], Some(l), None)?;
            Ok(g.value(tape.flows.outs[net.inputs.len() + l].0).to_vec())
        })
    }

    /// The explained output at each of `points` (`width` values each, side by side).
    pub fn outputs(&self, points: &[f32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(points.len() / self.width.max(1));
        for chunk in points.chunks(self.width * POINTS_PER_PASS) {
            out.extend(self.pass(chunk, false)?.0);
        }
        Ok(out)
    }

    /// The explained output at each of `points` and its gradient with respect to each point.
    pub fn gradients(&self, points: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let (mut out, mut grads) = (Vec::new(), Vec::with_capacity(points.len()));
        for chunk in points.chunks(self.width * POINTS_PER_PASS) {
            let (o, g) = self.pass(chunk, true)?;
            out.extend(o);
            grads.extend(g);
        }
        Ok((out, grads))
    }

    /// One batch of points through the model: the explained output of each, and with `grad` the gradient of
    /// their sum (each output depends only on its own point) with respect to the points.
    fn pass(&self, points: &[f32], grad: bool) -> Result<(Vec<f32>, Vec<f32>)> {
        let n = points.len() / self.width;
        let net = &self.model.net;
        let Target { output, column, negate, logits } = self.target;
        // The explained output layer leaves out its softmax or sigmoid when explaining logits.
        let logit_layers = if logits { vec![net.outputs[output]] } else { Vec::new() };
        self.model.with_tape(|tape| {
            let g = &mut tape.graph;
            g.reset();
            g.set_recording(grad);
            tape.flows.outs.clear();
            let leaf = |g: &mut kiln_core::Graph<f32>, shape: &[usize], data: &[f32]| {
                if grad { g.input_needing_grad(shape, data) } else { g.input(shape, data) }
            };
            let mut leaves: Vec<Var> = Vec::new();
            let (mut at, mut value) = (None, None);
            match self.at {
                At::Inputs => {
                    // Each point holds every input's values side by side; input k's part of each point.
                    let mut off = 0;
                    for spec in &net.inputs {
                        let w: usize = spec.shape.iter().product();
                        let mut data = Vec::with_capacity(n * w);
                        for p in points.chunks_exact(self.width) {
                            data.extend_from_slice(&p[off..off + w]);
                        }
                        let v = leaf(g, &dims(n, &spec.shape), &data)?;
                        leaves.push(v);
                        tape.flows.outs.push((v, None));
                        off += w;
                    }
                }
                At::Layer(l) => {
                    for (row, spec) in self.sample.iter().zip(&net.inputs) {
                        let v = g.input(&dims(n, &spec.shape), &row.repeat(n))?;
                        tape.flows.outs.push((v, None));
                    }
                    let v = leaf(g, &dims(n, &net.layers[l].output_shape), points)?;
                    leaves.push(v);
                    (at, value) = (Some(l), Some(v));
                }
            }
            net.forward_with(g, &mut tape.flows, false, &logit_layers, at, value)?;
            let y = net.output(&tape.flows, output);
            let columns = g.value(y).len() / n.max(1);
            // The negated class of a sigmoid: 1 − p (or the logit −z), its gradient p's negated.
            let sign = if negate { -1.0 } else { 1.0 };
            let shift = if negate && !logits { 1.0 } else { 0.0 };
            let values: Vec<f32> = g.value(y).chunks_exact(columns).map(|r| shift + sign * r[column]).collect();
            if !grad {
                return Ok((values, Vec::new()));
            }
            // d(Σ_rows sign·y[row, column]) / d point: a one-hot of the column, times the output, summed.
            let mut pick = vec![0f32; n * columns];
            pick.iter_mut().skip(column).step_by(columns).for_each(|v| *v = sign);
            let shape = g.shape(y);
            let pick = g.input(shape.dims(), &pick)?;
            let picked = g.mul(y, pick)?;
            let total = g.sum(picked, None, false)?;
            g.backward(total)?;
            // Back to points: every leaf's rows side by side.
            let parts: Vec<Vec<f32>> = leaves.iter().map(|&v| g.input_grad(v)).collect();
            let mut grads = Vec::with_capacity(points.len());
            for i in 0..n {
                for p in &parts {
                    let w = p.len() / n;
                    grads.extend_from_slice(&p[i * w..(i + 1) * w]);
                }
            }
            Ok((values, grads))
        })
    }
}

/// [n, shape...] as a dims array.
fn dims(n: usize, shape: &[usize]) -> Vec<usize> {
    debug_assert!(shape.len() < MAX_RANK);
    let mut d = Vec::with_capacity(shape.len() + 1);
    d.push(n);
    d.extend_from_slice(shape);
    d
}
