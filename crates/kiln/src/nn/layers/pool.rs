//! Pooling: MaxPooling2D and AveragePooling2D over windows of an image, GlobalMaxPooling1D and
//! GlobalAveragePooling1D over the steps of a sequence (over the real steps only under a padding mask).

use crate::nn::Layer;
use crate::nn::spec::{BuildCx, Fwd, LayerSpec, PaddingConfig, Pair, two_two, window_out};
use crate::onnx::{Attr, OnnxGraph, pads};
use kiln_core::{Result, Var};
use serde::{Deserialize, Serialize};

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

/// The output shape of a 2-D pooling window over the input.
fn pooled(cx: &BuildCx, pool_size: Pair, strides: Option<Pair>, padding: PaddingConfig) -> Result<Vec<usize>> {
    let s = strides.unwrap_or(pool_size);
    cx.positive(pool_size.0.min(pool_size.1), "pool_size")?;
    cx.positive(s.0.min(s.1), "strides")?;
    let &[h, w, ch] = cx.input() else {
        return Err(cx.misfit("an image input (height, width, channels)"));
    };
    let (Some(oh), Some(ow)) = (window_out(h, pool_size.0, s.0, padding), window_out(w, pool_size.1, s.1, padding))
    else {
        return Err(cx.misfit(&format!("an input of at least {}x{} pixels", pool_size.0, pool_size.1)));
    };
    Ok(vec![oh, ow, ch])
}

/// ONNX's pooling `op` over x in kiln's layout: the window (pool size, strides, padding) as its attributes,
/// after `attrs`.
fn pool_onnx(
    o: &mut OnnxGraph,
    l: &Layer,
    x: &str,
    op: &str,
    (k, strides, padding): (Pair, Option<Pair>, PaddingConfig),
    mut attrs: Vec<Attr>,
) -> String {
    let s = strides.unwrap_or(k);
    attrs.extend([
        Attr::ints("kernel_shape", &[k.0 as i64, k.1 as i64]),
        Attr::ints("strides", &[s.0 as i64, s.1 as i64]),
        Attr::ints("pads", &pads(&l.input_shape()[..2], &[k.0, k.1], &[s.0, s.1], padding.into())),
    ]);
    o.channels_first(x, |o, x| o.op(op, &[x], attrs), 4)
}

impl LayerSpec for MaxPooling2D {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        Ok(pool_onnx(o, l, &xs[0], "MaxPool", (self.pool_size, self.strides, self.padding), vec![]))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        pooled(cx, self.pool_size, self.strides, self.padding)
    }

    fn forward(&self, _l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let s = self.strides.unwrap_or(self.pool_size);
        f.g.max_pool2d(xs[0], (self.pool_size.0, self.pool_size.1), (s.0, s.1), self.padding.into())
    }
}

impl LayerSpec for AveragePooling2D {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        // Only the positions inside the input count, as the engine (and TensorFlow) average.
        let attrs = vec![Attr::i("count_include_pad", 0)];
        Ok(pool_onnx(o, l, &xs[0], "AveragePool", (self.pool_size, self.strides, self.padding), attrs))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        pooled(cx, self.pool_size, self.strides, self.padding)
    }

    fn forward(&self, _l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let s = self.strides.unwrap_or(self.pool_size);
        f.g.avg_pool2d(xs[0], (self.pool_size.0, self.pool_size.1), (s.0, s.1), self.padding.into())
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

fn over_steps(cx: &BuildCx) -> Result<Vec<usize>> {
    let &[_, ch] = cx.input() else {
        return Err(cx.misfit("a sequence (steps, channels)"));
    };
    Ok(vec![ch])
}

impl LayerSpec for GlobalMaxPooling1D {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let mut x = xs[0].clone();
        if let Some(m) = o.mask.clone() {
            // Padded steps shifted by -1e30 (none in a text with no real step), as `forward`.
            let any = o.op("ReduceMax", &[&m], vec![Attr::ints("axes", &[1]), Attr::i("keepdims", 1)]);
            let one = o.floats(&[], &[1.0]);
            let off = o.op("Sub", &[&one, &m], vec![]);
            let off = o.op("Mul", &[&off, &any], vec![]);
            let big = o.floats(&[], &[-1e30]);
            let shift = o.op("Mul", &[&off, &big], vec![]);
            let steps = l.input_shape()[0];
            let shift = o.reshape(&shift, &[steps, 1]);
            x = o.op("Add", &[&x, &shift], vec![]);
        }
        Ok(o.op("ReduceMax", &[&x], vec![Attr::ints("axes", &[1]), Attr::i("keepdims", 0)]))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        over_steps(cx)
    }

    fn forward(&self, _l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let (g, x) = (&mut *f.g, xs[0]);
        match f.mask {
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
        }
    }

    fn reads_mask(&self) -> bool {
        true
    }
}

impl LayerSpec for GlobalAveragePooling1D {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let Some(m) = o.mask.clone() else {
            return Ok(o.op("ReduceMean", &[&xs[0]], vec![Attr::ints("axes", &[1]), Attr::i("keepdims", 0)]));
        };
        // The mean over real steps: Σ x·m / max(Σ m, 1).
        let steps = l.input_shape()[0];
        let m3 = o.reshape(&m, &[steps, 1]);
        let masked = o.op("Mul", &[&xs[0], &m3], vec![]);
        let sum = o.sum(&masked, 1, false);
        let n = o.sum(&m, 1, true);
        let one = o.floats(&[], &[1.0]);
        let n = o.op("Max", &[&n, &one], vec![]);
        Ok(o.op("Div", &[&sum, &n], vec![]))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        over_steps(cx)
    }

    fn forward(&self, _l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let (g, x) = (&mut *f.g, xs[0]);
        match f.mask {
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
        }
    }

    fn reads_mask(&self) -> bool {
        true
    }
}
