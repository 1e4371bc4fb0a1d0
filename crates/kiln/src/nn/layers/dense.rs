//! Dense (fully connected): y = activation(x · kernel + bias), kernel [features, units]. The product, bias
//! and elementwise activation run as the engine's one fused `linear` op.

use crate::nn::spec::{BuildCx, Fwd, LayerSpec, glorot, yes, zeros};
use crate::nn::{Activation, Initializer, Layer, Regularizer};
use crate::onnx::OnnxGraph;
use kiln_core::{Result, Var};
use serde::{Deserialize, Serialize};

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

impl LayerSpec for Dense {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        o.dense(l, &xs[0], "", self.activation)
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        cx.positive(self.units, "units")?;
        let &[features] = cx.input() else {
            return Err(cx.misfit("a flat input (features,)"));
        };
        let bias = self.use_bias.then_some(self.bias_initializer);
        cx.kernel_and_bias(&[features, self.units], self.kernel_initializer, bias, self.kernel_regularizer)?;
        Ok(vec![self.units])
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let kernel = l.must("kernel");
        let b = l.param("bias").map(|b| f.g.use_param(b));
        let act = f.fused(self.activation);
        // A kernel quantized for inference (`Model::quantize`) takes the block-quantized product.
        let y = if f.g.param(kernel).quant.is_some() {
            f.g.linear_q(xs[0], kernel, b, act)?
        } else {
            let w = f.g.use_param(kernel);
            f.g.linear(xs[0], w, b, act)?
        };
        f.finish(y, self.activation, 1)
    }

    fn activation(&self) -> Activation {
        self.activation
    }
}
