//! Weight initializers, with Keras's definitions and defaults (Glorot uniform kernels, zero biases).

use kiln_core::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initializer {
    /// U(±√(6 / (fan_in + fan_out)))
    GlorotUniform,
    /// Truncated normal, σ = √(2 / (fan_in + fan_out))
    GlorotNormal,
    /// U(±√(6 / fan_in))
    HeUniform,
    /// Truncated normal, σ = √(2 / fan_in)
    HeNormal,
    /// N(0, 0.05²), Keras's RandomNormal default
    RandomNormal,
    Zeros,
    Ones,
}

/// (fan_in, fan_out) of a kernel: dense [in, out], conv [kh, kw, in, out].
pub fn fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [i, o] => (*i, *o),
        [rest @ .., i, o] => {
            let r: usize = rest.iter().product();
            (r * i, r * o)
        }
        [n] => (*n, *n),
        [] => (1, 1),
    }
}

impl Initializer {
    /// `shape`'s values drawn as this initializer draws them; an error, before allocating, when they would
    /// not fit in the memory available.
    pub fn fill(self, shape: &[usize], rng: &mut Rng) -> kiln_core::Result<Vec<f32>> {
        let count = shape.iter().fold(1u128, |n, &d| n.saturating_mul(d as u128));
        kiln_core::mem::check(count, 4, &format!("a weight of shape {shape:?}"))?;
        Ok(self.fill_unchecked(shape, count as usize, rng))
    }

    fn fill_unchecked(self, shape: &[usize], n: usize, rng: &mut Rng) -> Vec<f32> {
        let (fi, fo) = fans(shape);
        let (fi, fo) = (fi as f64, fo as f64);
        // Keras divides by this so the truncated normal keeps the intended standard deviation.
        const TRUNC: f64 = 0.879_625_661_034_239_8;
        let uniform = |limit: f64, rng: &mut Rng| (0..n).map(|_| rng.uniform_range(-limit, limit) as f32).collect();
        let truncated = |std: f64, rng: &mut Rng| {
            (0..n)
                .map(|_| {
                    loop {
                        let z = rng.normal();
                        if z.abs() <= 2.0 {
                            break (z * std / TRUNC) as f32;
                        }
                    }
                })
                .collect()
        };
        match self {
            Initializer::GlorotUniform => uniform((6.0 / (fi + fo)).sqrt(), rng),
            Initializer::GlorotNormal => truncated((2.0 / (fi + fo)).sqrt(), rng),
            Initializer::HeUniform => uniform((6.0 / fi).sqrt(), rng),
            Initializer::HeNormal => truncated((2.0 / fi).sqrt(), rng),
            Initializer::RandomNormal => (0..n).map(|_| (rng.normal() * 0.05) as f32).collect(),
            Initializer::Zeros => vec![0.0; n],
            Initializer::Ones => vec![1.0; n],
        }
    }
}

/// Penalties added to the loss for a kernel: l1·Σ|w| + l2·Σw² (Keras's L1L2).
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Regularizer {
    pub l1: f32,
    pub l2: f32,
}

impl Regularizer {
    pub fn l1(l1: f32) -> Self {
        Regularizer { l1, l2: 0.0 }
    }
    pub fn l2(l2: f32) -> Self {
        Regularizer { l1: 0.0, l2 }
    }

    pub fn penalty(&self, w: &[f32]) -> f64 {
        w.iter().map(|&v| (self.l1 * v.abs() + self.l2 * v * v) as f64).sum()
    }

    /// grad += d(penalty)/dw
    pub fn add_gradient(&self, w: &[f32], grad: &mut [f32]) {
        for (g, &v) in grad.iter_mut().zip(w) {
            *g += self.l1 * v.signum() * (v != 0.0) as u8 as f32 + 2.0 * self.l2 * v;
        }
    }
}
