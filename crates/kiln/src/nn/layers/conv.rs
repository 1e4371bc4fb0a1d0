//! Convolutions: Conv2D over (height, width, channels) with kernel [kh, kw, in, filters], and Conv1D over
//! (steps, channels), which runs as a Conv2D of height 1. A Conv2D followed by a non-overlapping
//! MaxPooling2D runs as the engine's fused `conv2d_max_pool` (the convolution's full output is never stored).

use crate::nn::spec::{BuildCx, Fwd, LayerSpec, PaddingConfig, Pair, glorot, one_one, window_out, yes, zeros};
use crate::nn::{Activation, Initializer, Layer, LayerConfig, Regularizer};
use crate::onnx::{Attr, OnnxGraph, pads};
use kiln_core::{Graph, Padding, Result, Var};
use serde::{Deserialize, Serialize};

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

impl LayerSpec for Conv2D {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        // Keras's kernel [kh, kw, c, f] as ONNX's [f, c, kh, kw].
        let (dims, k) = o.values(l, "kernel")?;
        let &[kh, kw, c, f] = &dims[..] else { unreachable!("a Conv2D kernel has 4 axes") };
        let mut w = vec![0f32; k.len()];
        for (i, &v) in k.iter().enumerate() {
            let (fi, ci, kj, ki) = (i % f, i / f % c, i / (f * c) % kw, i / (f * c * kw));
            w[((fi * c + ci) * kh + ki) * kw + kj] = v;
        }
        let w = o.floats(&[f, c, kh, kw], &w);
        let mut ins = vec![w];
        if l.param("bias").is_some() {
            ins.push(o.param(l, "bias")?);
        }
        let (s, input) = ([self.strides.0, self.strides.1], l.input_shape());
        let attrs = || {
            vec![
                Attr::ints("kernel_shape", &[kh as i64, kw as i64]),
                Attr::ints("strides", &[s[0] as i64, s[1] as i64]),
                Attr::ints("pads", &pads(&input[..2], &[kh, kw], &s, self.padding.into())),
            ]
        };
        let y = o.channels_first(
            &xs[0],
            |o, x| {
                let ins: Vec<&str> = std::iter::once(x).chain(ins.iter().map(|s| s.as_str())).collect();
                o.op("Conv", &ins, attrs())
            },
            4,
        );
        Ok(o.activation(&y, self.activation))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        cx.positive(self.filters, "filters")?;
        for (what, p) in [("kernel_size", self.kernel_size), ("strides", self.strides)] {
            cx.positive(p.0.min(p.1), what)?;
        }
        let &[h, w, ch] = cx.input() else {
            return Err(cx.misfit("an image input (height, width, channels)"));
        };
        let Pair(kh, kw) = self.kernel_size;
        let (Some(oh), Some(ow)) =
            (window_out(h, kh, self.strides.0, self.padding), window_out(w, kw, self.strides.1, self.padding))
        else {
            return Err(cx.misfit(&format!("an input of at least {kh}x{kw} pixels with valid padding")));
        };
        let bias = self.use_bias.then_some(self.bias_initializer);
        cx.kernel_and_bias(&[kh, kw, ch, self.filters], self.kernel_initializer, bias, self.kernel_regularizer)?;
        Ok(vec![oh, ow, self.filters])
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let w = f.g.use_param(l.must("kernel"));
        let b = l.param("bias").map(|b| f.g.use_param(b));
        let s = (self.strides.0, self.strides.1);
        let act = f.fused(self.activation);
        let y = f.g.conv2d(xs[0], w, b, s, self.padding.into(), act)?;
        f.finish(y, self.activation, 3)
    }

    fn activation(&self) -> Activation {
        self.activation
    }

    /// With a MaxPooling2D whose windows do not overlap (strides = pool size, valid padding).
    fn fuse_next(&self, l: &Layer, next: &Layer, g: &mut Graph<f32>, x: Var) -> Option<Result<Var>> {
        let LayerConfig::MaxPooling2d(p) = next.config() else { return None };
        let strides = p.strides.unwrap_or(p.pool_size);
        if self.activation == Activation::Softmax || strides != p.pool_size || p.padding != PaddingConfig::Valid {
            return None;
        }
        let w = g.use_param(l.must("kernel"));
        let b = l.param("bias").map(|b| g.use_param(b));
        let (s, size) = ((self.strides.0, self.strides.1), (p.pool_size.0, p.pool_size.1));
        Some(g.conv2d_max_pool(x, w, b, s, self.padding.into(), self.activation.unary(), size))
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

impl LayerSpec for Conv1D {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        // The kernel [1, k, c, f] as ONNX's [f, c, k].
        let (dims, kv) = o.values(l, "kernel")?;
        let &[_, k, c, f] = &dims[..] else { unreachable!("a Conv1D kernel has 4 axes") };
        let mut w = vec![0f32; kv.len()];
        for (i, &v) in kv.iter().enumerate() {
            let (fi, ci, ki) = (i % f, i / f % c, i / (f * c));
            w[(fi * c + ci) * k + ki] = v;
        }
        let w = o.floats(&[f, c, k], &w);
        let b = o.param(l, "bias")?;
        let y = o.channels_first(
            &xs[0],
            |o, x| o.op("Conv", &[x, &w, &b], vec![Attr::ints("kernel_shape", &[k as i64])]),
            3,
        );
        Ok(o.activation(&y, self.activation))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        cx.positive(self.filters.min(self.kernel_size), "filters and kernel_size")?;
        let &[steps, ch] = cx.input() else {
            return Err(cx.misfit("a sequence (steps, channels)"));
        };
        if steps < self.kernel_size {
            return Err(cx.misfit(&format!("at least {} steps", self.kernel_size)));
        }
        let ks = [1, self.kernel_size, ch, self.filters];
        cx.kernel_and_bias(&ks, Initializer::GlorotUniform, Some(Initializer::Zeros), None)?;
        Ok(vec![steps - self.kernel_size + 1, self.filters])
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let x = xs[0];
        let (n, steps, ch) = (f.g.shape(x).dim(0), f.g.shape(x).dim(1), f.g.shape(x).dim(2));
        let x4 = f.g.reshape(x, &[n, 1, steps, ch])?;
        let (w, b) = (f.g.use_param(l.must("kernel")), f.g.use_param(l.must("bias")));
        let act = f.fused(self.activation);
        let y = f.g.conv2d(x4, w, Some(b), (1, 1), Padding::Valid, act)?;
        let y = f.g.reshape(y, &[n, steps - self.kernel_size + 1, self.filters])?;
        f.finish(y, self.activation, 2)
    }

    fn activation(&self) -> Activation {
        self.activation
    }
}
