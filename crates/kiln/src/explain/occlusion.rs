//! Occlusion (Zeiler and Fergus 2014), as Captum's `Occlusion` does it: a window slides over the input by
//! `strides` (ceil((dim − window) / stride) + 1 positions per axis, the last cut at the edge), each position
//! replaced by the baseline value; every value under the window is credited f(x) − f(occluded), and each
//! value's credits are averaged over the windows that covered it. Needs no gradient, so it also explains what
//! gradients see poorly (saturated units, max pooling's ties).

use super::{At, Attribution, probe::Probe};
use kiln_core::{Error, Result};

/// Occlusion attributions of the probe's single input (shape `shape`), windows `window` moved by `strides`
/// (both one per axis of the input), occluded with `baseline`.
pub fn occlusion(probe: &Probe, window: &[usize], strides: &[usize], baseline: f32) -> Result<Attribution> {
    let inputs = probe.model.inputs();
    if probe.at != At::Inputs || inputs.len() != 1 {
        return Err(Error::Invalid("occlusion: explains a model of one input, at the input".into()));
    }
    let shape = &inputs[0].shape;
    if window.len() != shape.len() || strides.len() != shape.len() {
        return Err(Error::Shape(format!(
            "occlusion: the input is {shape:?}, so the window and strides take {} sizes each, got {window:?} and \
             {strides:?}",
            shape.len()
        )));
    }
    let mut counts = Vec::with_capacity(shape.len());
    for ((&d, &w), &s) in shape.iter().zip(window).zip(strides) {
        if w == 0 || w > d || s == 0 || (s > w && w < d) {
            return Err(Error::Invalid(format!(
                "occlusion: a window of {window:?} moved by {strides:?} does not fit the input {shape:?} (each \
                 window size 1 to the input's, each stride 1 to the window's)"
            )));
        }
        counts.push((d - w).div_ceil(s) + 1);
    }
    let x = probe.point()?;
    let positions: usize = counts.iter().product();
    // Row-major strides of the input's axes.
    let mut step = vec![1usize; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        step[a] = step[a + 1] * shape[a + 1];
    }
    let covered = |p: usize| -> Vec<usize> {
        // Position p's window start on each axis (the first axis slowest), cut at the input's edge.
        let (mut rest, mut ranges) = (p, vec![(0, 0); shape.len()]);
        for a in (0..shape.len()).rev() {
            let start = (rest % counts[a]) * strides[a];
            rest /= counts[a];
            ranges[a] = (start, (start + window[a]).min(shape[a]));
        }
        let mut idx = vec![0usize];
        for (a, &(lo, hi)) in ranges.iter().enumerate() {
            let s = step[a];
            idx = idx.iter().flat_map(|&i| (lo..hi).map(move |j| i + j * s)).collect();
        }
        idx
    };
    let mut points = Vec::with_capacity(positions * x.len());
    for p in 0..positions {
        let mut o = x.clone();
        for i in covered(p) {
            o[i] = baseline;
        }
        points.extend(o);
    }
    let fx = probe.outputs(&x)?[0];
    let occluded = probe.outputs(&points)?;
    let (mut total, mut n) = (vec![0f64; x.len()], vec![0u32; x.len()]);
    for (p, &f) in occluded.iter().enumerate() {
        for i in covered(p) {
            total[i] += (fx - f) as f64;
            n[i] += 1;
        }
    }
    let values = total.iter().zip(&n).map(|(&t, &n)| if n == 0 { 0.0 } else { (t / n as f64) as f32 }).collect();
    Ok(Attribution { values, output: fx, baseline_output: None })
}
