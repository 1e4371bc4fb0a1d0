//! evaluate and predict: inference on a tape lent from the model's pool (`Model::with_tape`), so `&self`
//! suffices and several threads can answer at once; batches cut into pieces that keep activations in cache.

use crate::inputs::Inputs;
use crate::model::{Model, Sequential};
use crate::step::{Scratch, Totals, gather};
use crate::train::{Evaluation, Targets};
use kiln_core::{Error, MAX_RANK, Result, Tensor};

impl Sequential {
    /// Loss and metrics over the samples `idx`, on a lent tape (training's tape and state stay as they are).
    /// With `peers`, each rank scores its shard of `idx` and the sums are shared: every rank gets the scores
    /// of all of `idx`.
    pub(crate) fn evaluate_indices(
        &self,
        x: &Inputs,
        y: &[Targets],
        idx: &[usize],
        batch: usize,
        scratch: &mut Scratch,
        peers: Option<&dyn crate::dist::Collective>,
    ) -> Result<Evaluation> {
        let idx = match peers {
            Some(p) => &idx[crate::dist::shard(idx.len(), p.rank(), p.size())],
            None => idx,
        };
        let (_, metrics) = self.compiled_parts("evaluate")?;
        let config = &self.compiled.as_ref().expect("checked by compiled_parts").0;
        let mut totals = Totals::new(self.state_len());
        self.with_tape(|tape| {
            std::mem::swap(&mut scratch.flows, &mut tape.flows);
            let mut run = || {
                for chunk in idx.chunks(inference_chunk(batch)) {
                    Model::run_batch(
                        &self.net,
                        &mut tape.graph,
                        config,
                        None,
                        x,
                        y,
                        chunk,
                        &mut totals,
                        scratch,
                        None,
                        None,
                        None,
                    )?;
                }
                Ok::<_, Error>(())
            };
            let r = run();
            std::mem::swap(&mut scratch.flows, &mut tape.flows);
            r
        })?;
        if let Some(p) = peers {
            totals.sum_over(p)?;
        }
        Ok(Evaluation { loss: totals.loss(), metrics: totals.named(&metrics, &self.output_widths()) })
    }

    pub(crate) fn evaluate_inner(&self, x: Inputs, y: Inputs, batch_size: usize) -> Result<Evaluation> {
        self.compiled_parts("evaluate")?;
        self.check_x(&x, "evaluate")?;
        let targets = self.check_targets(&x, &y, "evaluate")?;
        let idx: Vec<usize> = (0..x.rows()).collect();
        self.evaluate_indices(&x, &targets, &idx, batch_size, &mut Scratch::default(), None)
    }

    pub(crate) fn predict_inner(&self, x: Inputs, batch_size: usize) -> Result<Vec<Tensor>> {
        self.check_x(&x, "predict")?;
        let shapes = self.output_shapes();
        let mut outs: Vec<Vec<f32>> =
            shapes.iter().map(|s| Vec::with_capacity(x.rows() * s.iter().product::<usize>())).collect();
        let idx: Vec<usize> = (0..x.rows()).collect();
        self.with_tape(|tape| {
            let g = &mut tape.graph;
            // On a GPU each piece costs a round trip (the output comes back to the host), so none are cut.
            let piece = if g.backend().has_own_memory() { batch_size.max(1) } else { inference_chunk(batch_size) };
            for chunk in idx.chunks(piece) {
                g.reset();
                tape.flows.outs.clear();
                for (t, input) in x.all().iter().zip(&self.net.inputs) {
                    let mut dims = [0usize; MAX_RANK];
                    dims[0] = chunk.len();
                    dims[1..=input.shape.len()].copy_from_slice(&input.shape);
                    let w = t.row_len();
                    let xv = g.input_with(&dims[..=input.shape.len()], |buf| gather(t.data(), w, chunk, buf))?;
                    tape.flows.outs.push((xv, None));
                }
                self.net.forward(g, &mut tape.flows, false, &[])?;
                for (k, out) in outs.iter_mut().enumerate() {
                    out.extend_from_slice(g.value(self.net.output(&tape.flows, k)));
                }
            }
            Ok::<_, Error>(())
        })?;
        outs.into_iter()
            .zip(shapes)
            .map(|(out, s)| {
                let mut shape = vec![x.rows()];
                shape.extend_from_slice(s);
                Tensor::new(&shape, out)
            })
            .collect()
    }
}

/// Samples per forward pass at inference. Without dropout and with batch norm's moving statistics, the
/// result does not depend on how a batch is cut, so large batches run in pieces whose activations stay in
/// cache while the dense layers' products stay large enough to run at full speed. Measured on the MNIST CNN
/// at batch 1000 (kiln-bench, medians): 58-64k images/s in pieces of 128, 66-67k at 256, 68-73k in one piece
/// of 1000, which costs 35 MiB more peak memory.
fn inference_chunk(batch_size: usize) -> usize {
    batch_size.clamp(1, INFERENCE_CHUNK)
}

const INFERENCE_CHUNK: usize = 256;
