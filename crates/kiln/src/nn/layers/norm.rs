//! BatchNormalization over the last axis: the batch's statistics while training (and a moving average of
//! them, Keras's momentum update), the moving averages at inference; LayerNormalization over each sample's
//! last axis (`Graph::layer_norm`), the same in both.

use crate::nn::Layer;
use crate::nn::spec::{BuildCx, Fwd, LayerSpec, MaskRule};
use crate::onnx::OnnxGraph;
use kiln_core::{Error, Graph, Result, Var};
use serde::{Deserialize, Serialize};

fn bn_momentum() -> f64 {
    0.99
}
fn bn_epsilon() -> f64 {
    1e-3
}

/// Normalizes each channel (last axis) with the batch's statistics while training and with moving averages
/// (momentum 0.99) at inference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormalization {
    #[serde(default = "bn_momentum")]
    pub momentum: f64,
    #[serde(default = "bn_epsilon")]
    pub epsilon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl BatchNormalization {
    pub fn new() -> Self {
        BatchNormalization { momentum: bn_momentum(), epsilon: bn_epsilon(), name: None }
    }
    pub fn momentum(mut self, m: f64) -> Self {
        self.momentum = m;
        self
    }
    pub fn epsilon(mut self, e: f64) -> Self {
        self.epsilon = e;
        self
    }
}

impl Default for BatchNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerSpec for BatchNormalization {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        // The moving statistics folded into one scale and shift per channel (computed in f64).
        let get = |n: &str| o.values(l, n).map(|(_, v)| v.to_vec());
        let (gamma, beta, mean, var) = (get("gamma")?, get("beta")?, get("moving_mean")?, get("moving_variance")?);
        let scale: Vec<f64> =
            gamma.iter().zip(&var).map(|(&g, &v)| g as f64 / (v as f64 + self.epsilon).sqrt()).collect();
        let shift: Vec<f32> =
            beta.iter().zip(&mean).zip(&scale).map(|((&b, &m), &s)| (b as f64 - m as f64 * s) as f32).collect();
        let scale: Vec<f32> = scale.iter().map(|&s| s as f32).collect();
        let (sc, sh) = (o.floats(&[scale.len()], &scale), o.floats(&[shift.len()], &shift));
        let y = o.op("Mul", &[&xs[0], &sc], vec![]);
        Ok(o.op("Add", &[&y, &sh], vec![]))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        let Some(&ch) = cx.input().last() else {
            return Err(cx.misfit("an input with at least one axis"));
        };
        if !(0.0..=1.0).contains(&self.momentum) || self.epsilon <= 0.0 {
            return Err(Error::Config(format!("layer `{}`: momentum must be in [0, 1] and epsilon positive", cx.name)));
        }
        cx.param("gamma", &[ch], vec![1.0; ch], true)?;
        cx.param("beta", &[ch], vec![0.0; ch], true)?;
        cx.param("moving_mean", &[ch], vec![0.0; ch], false)?;
        cx.param("moving_variance", &[ch], vec![1.0; ch], false)?;
        Ok(cx.input().to_vec())
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let g = &mut *f.g;
        let (gamma, beta) = (g.use_param(l.must("gamma")), g.use_param(l.must("beta")));
        if f.training {
            let y = g.batch_norm(xs[0], gamma, beta, None, self.epsilon)?;
            update_moving_stats(l, g, y, self.momentum);
            Ok(y)
        } else {
            let (mm, mv) = (g.use_param(l.must("moving_mean")), g.use_param(l.must("moving_variance")));
            g.batch_norm(xs[0], gamma, beta, Some((mm, mv)), self.epsilon)
        }
    }
}

/// moving = momentum·moving + (1 − momentum)·batch, for mean and variance (Keras's update).
fn update_moving_stats(l: &Layer, g: &mut Graph<f32>, y: Var, momentum: f64) {
    let c = *l.output_shape().last().expect("checked at build");
    let m = momentum as f32;
    for (k, pid) in [(0, l.must("moving_mean")), (1, l.must("moving_variance"))] {
        for j in 0..c {
            let batch = g.saved(y)[k * c + j];
            let v = &mut g.param_mut(pid).value[j];
            *v = m * *v + (1.0 - m) * batch;
        }
    }
}

fn ln_epsilon() -> f64 {
    1e-3
}

/// Normalizes each sample's last axis to mean 0 and variance 1, then scales by `gamma` and shifts by `beta`
/// (Keras's LayerNormalization, epsilon 1e-3 by default; PyTorch's `nn.LayerNorm` uses 1e-5). The same in
/// training and inference; a sequence's padding mask passes through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerNormalization {
    #[serde(default = "ln_epsilon")]
    pub epsilon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl LayerNormalization {
    pub fn new() -> Self {
        LayerNormalization { epsilon: ln_epsilon(), name: None }
    }
    pub fn epsilon(mut self, e: f64) -> Self {
        self.epsilon = e;
        self
    }
}

impl Default for LayerNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerSpec for LayerNormalization {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let (gamma, beta) = (o.param(l, "gamma")?, o.param(l, "beta")?);
        Ok(o.layer_norm(&xs[0], &gamma, &beta, self.epsilon))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        let Some(&d) = cx.input().last() else {
            return Err(cx.misfit("an input with at least one axis"));
        };
        if self.epsilon.is_nan() || self.epsilon <= 0.0 {
            return Err(Error::Config(format!("layer `{}`: epsilon must be positive", cx.name)));
        }
        cx.param("gamma", &[d], vec![1.0; d], true)?;
        cx.param("beta", &[d], vec![0.0; d], true)?;
        Ok(cx.input().to_vec())
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let g = &mut *f.g;
        let (gamma, beta) = (g.use_param(l.must("gamma")), g.use_param(l.must("beta")));
        g.layer_norm(xs[0], gamma, beta, self.epsilon)
    }

    fn mask_rule(&self) -> MaskRule {
        MaskRule::Keeps
    }
}
