//! Learning-rate schedules, as Keras's `LearningRateSchedule`s: the rate for a step is a function of the
//! optimizer's step count (0 for the first step) and the optimizer's configured rate.

use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// lr · factor^⌊step / every⌋: the rate drops by `factor` every `every` steps.
    Step { every: u64, factor: f32 },
    /// lr · decay_rate^(step / decay_steps), the exponent rounded down when `staircase` (ExponentialDecay).
    Exponential {
        decay_steps: u64,
        decay_rate: f32,
        #[serde(default)]
        staircase: bool,
    },
    /// A linear warmup from 0 to lr over `warmup_steps`, then half a cosine from lr down to alpha·lr over
    /// `decay_steps`, then alpha·lr (CosineDecay with initial rate 0 and warmup_target = lr).
    Cosine {
        decay_steps: u64,
        #[serde(default)]
        warmup_steps: u64,
        #[serde(default)]
        alpha: f32,
    },
    /// values[i] while step < boundaries[i], and the last value after the last boundary
    /// (PiecewiseConstantDecay; the configured rate is not used).
    Piecewise { boundaries: Vec<u64>, values: Vec<f32> },
}

impl Schedule {
    /// The rate for step `step` (0-based) when the optimizer is configured with `lr`.
    pub fn at(&self, lr: f32, step: u64) -> f32 {
        let (lr, s) = (lr as f64, step as f64);
        let r = match self {
            Schedule::Step { every, factor } => lr * (*factor as f64).powi((step / (*every).max(1)) as i32),
            Schedule::Exponential { decay_steps, decay_rate, staircase } => {
                let mut p = s / (*decay_steps).max(1) as f64;
                if *staircase {
                    p = p.floor();
                }
                lr * (*decay_rate as f64).powf(p)
            }
            Schedule::Cosine { decay_steps, warmup_steps, alpha } => {
                if step < *warmup_steps {
                    lr * s / *warmup_steps as f64
                } else {
                    let done = ((step - warmup_steps) as f64 / (*decay_steps).max(1) as f64).min(1.0);
                    let cos = 0.5 * (1.0 + (std::f64::consts::PI * done).cos());
                    lr * ((1.0 - *alpha as f64) * cos + *alpha as f64)
                }
            }
            Schedule::Piecewise { boundaries, values } => {
                let i = boundaries.iter().take_while(|&&b| step >= b).count();
                values[i.min(values.len() - 1)] as f64
            }
        };
        r as f32
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("schedule: {m}")));
        match self {
            Schedule::Step { every: 0, .. } => bad("`every` must be at least 1".into()),
            Schedule::Exponential { decay_steps: 0, .. } | Schedule::Cosine { decay_steps: 0, .. } => {
                bad("`decay_steps` must be at least 1".into())
            }
            Schedule::Piecewise { boundaries, values } if values.len() != boundaries.len() + 1 => bad(format!(
                "piecewise needs one more value than boundaries, got {} boundaries and {} values",
                boundaries.len(),
                values.len()
            )),
            Schedule::Piecewise { boundaries, .. } if boundaries.windows(2).any(|w| w[0] >= w[1]) => {
                bad("piecewise boundaries must increase".into())
            }
            _ => Ok(()),
        }
    }
}

/// Gradient clipping, as Keras's optimizer arguments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Clip {
    /// Each parameter's gradient is scaled down to at most this norm (Keras `clipnorm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub norm: Option<f32>,
    /// All gradients together are scaled down to at most this norm (Keras `global_clipnorm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_norm: Option<f32>,
    /// Each gradient value is clipped to [−value, value] (Keras `clipvalue`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f32>,
}

impl Clip {
    pub fn is_none(&self) -> bool {
        self.norm.is_none() && self.global_norm.is_none() && self.value.is_none()
    }

    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("norm", self.norm), ("global_norm", self.global_norm), ("value", self.value)] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(Error::Config(format!("clip.{name} must be positive, got {v}")));
            }
        }
        Ok(())
    }

    /// Clips the gradients of the trainable parameters in place.
    pub fn apply(&self, grads: &mut [Vec<f32>], trainable: &[bool]) {
        let norm = |g: &[f32]| g.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        if let Some(c) = self.value {
            for (g, _) in grads.iter_mut().zip(trainable).filter(|(_, t)| **t) {
                g.iter_mut().for_each(|v| *v = v.clamp(-c, c));
            }
        }
        if let Some(c) = self.norm {
            for (g, _) in grads.iter_mut().zip(trainable).filter(|(_, t)| **t) {
                let n = norm(g);
                if n > c as f64 {
                    let s = (c as f64 / n) as f32;
                    g.iter_mut().for_each(|v| *v *= s);
                }
            }
        }
        if let Some(c) = self.global_norm {
            let total = grads.iter().zip(trainable).filter(|(_, t)| **t).map(|(g, _)| norm(g).powi(2)).sum::<f64>();
            let n = total.sqrt();
            if n > c as f64 {
                let s = (c as f64 / n) as f32;
                for (g, _) in grads.iter_mut().zip(trainable).filter(|(_, t)| **t) {
                    g.iter_mut().for_each(|v| *v *= s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_keras_formulas() {
        let close = |a: f32, b: f64| assert!((a as f64 - b).abs() < 1e-7, "{a} vs {b}");
        let s = Schedule::Step { every: 10, factor: 0.5 };
        close(s.at(0.1, 9), 0.1);
        close(s.at(0.1, 10), 0.05);
        let e = Schedule::Exponential { decay_steps: 100, decay_rate: 0.96, staircase: false };
        close(e.at(0.1, 50), 0.1 * 0.96f64.powf(0.5));
        let c = Schedule::Cosine { decay_steps: 100, warmup_steps: 10, alpha: 0.1 };
        close(c.at(0.1, 5), 0.05);
        close(c.at(0.1, 10), 0.1);
        close(c.at(0.1, 60), 0.1 * (0.9 * 0.5 * (1.0 + (std::f64::consts::PI * 0.5).cos()) + 0.1));
        close(c.at(0.1, 500), 0.01);
        let p = Schedule::Piecewise { boundaries: vec![100, 200], values: vec![1.0, 0.5, 0.1] };
        assert_eq!((p.at(0.0, 99), p.at(0.0, 100), p.at(0.0, 250)), (1.0, 0.5, 0.1));
        assert!(Schedule::Piecewise { boundaries: vec![1], values: vec![1.0] }.validate().is_err());
    }

    #[test]
    fn clipping_by_value_norm_and_global_norm() {
        let mut g = vec![vec![3.0, 4.0], vec![10.0], vec![100.0]];
        Clip { norm: Some(1.0), ..Default::default() }.apply(&mut g, &[true, true, false]);
        assert_eq!(g, vec![vec![0.6, 0.8], vec![1.0], vec![100.0]]);
        let mut g = vec![vec![3.0, 4.0], vec![0.0]];
        Clip { global_norm: Some(2.5), ..Default::default() }.apply(&mut g, &[true, true]);
        assert_eq!(g, vec![vec![1.5, 2.0], vec![0.0]]);
        let mut g = vec![vec![-3.0, 0.5]];
        Clip { value: Some(1.0), ..Default::default() }.apply(&mut g, &[true]);
        assert_eq!(g, vec![vec![-1.0, 0.5]]);
    }
}
