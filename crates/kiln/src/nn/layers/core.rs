//! Layers without parameters that reshape or regularize: Flatten, Dropout, Activation.

use crate::nn::spec::{BuildCx, Fwd, LayerSpec, MaskRule};
use crate::nn::{Activation, Layer};
use crate::onnx::{Attr, OnnxGraph};
use kiln_core::{Error, Result, Var};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flatten {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Flatten {
    pub fn new() -> Self {
        Flatten { name: None }
    }
}

impl LayerSpec for Flatten {
    fn onnx(&self, _l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        Ok(o.op("Flatten", &[&xs[0]], vec![Attr::i("axis", 1)]))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        if cx.input().is_empty() {
            return Err(cx.misfit("an input with at least one axis"));
        }
        Ok(vec![cx.input().iter().product()])
    }

    fn forward(&self, _l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        f.g.flatten(xs[0])
    }
}

/// Zeroes a fraction `rate` of its inputs while training (scaling the rest by 1/(1 − rate)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    pub rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Dropout {
    pub fn new(rate: f64) -> Self {
        Dropout { rate, name: None }
    }
}

impl LayerSpec for Dropout {
    fn onnx(&self, _l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        Ok(o.op("Identity", &[&xs[0]], vec![]))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(Error::Config(format!("layer `{}`: rate {} must be in [0, 1)", cx.name, self.rate)));
        }
        Ok(cx.input().to_vec())
    }

    fn forward(&self, _l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        if f.training && self.rate > 0.0 { f.g.dropout(xs[0], self.rate) } else { Ok(xs[0]) }
    }

    fn mask_rule(&self) -> MaskRule {
        MaskRule::Keeps
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationLayer {
    pub activation: Activation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ActivationLayer {
    pub fn new(activation: Activation) -> Self {
        ActivationLayer { activation, name: None }
    }
}

impl LayerSpec for ActivationLayer {
    fn onnx(&self, _l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        Ok(o.activation(&xs[0], self.activation))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        Ok(cx.input().to_vec())
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let y = match f.fused(self.activation) {
            Some(op) => f.g.unary(xs[0], op)?,
            None => xs[0],
        };
        f.finish(y, self.activation, l.output_shape().len())
    }

    fn activation(&self) -> Activation {
        self.activation
    }
}
