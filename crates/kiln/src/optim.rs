//! Optimizers with Keras's update rules and defaults. Each step touches every parameter once, in one loop.

use kiln_core::{Error, Param, Result};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OptimizerConfig {
    Sgd(Sgd),
    Adam(Adam),
    Rmsprop(RmsProp),
}

/// v = momentum·v − lr·g; p += v (Nesterov: p += momentum·v − lr·g). Without momentum, p −= lr·g.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sgd {
    pub learning_rate: f32,
    pub momentum: f32,
    pub nesterov: bool,
}

/// m += (g − m)(1 − β₁); v += (g² − v)(1 − β₂); p −= lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m/(√v + ε)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Adam {
    pub learning_rate: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
}

/// v = ρ·v + (1 − ρ)·g²; p −= lr·g/√(v + ε) (with momentum: m = μ·m + lr·g/√(v + ε); p −= m)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RmsProp {
    pub learning_rate: f32,
    pub rho: f32,
    pub momentum: f32,
    pub epsilon: f32,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            learning_rate: 0.01,
            momentum: 0.0,
            nesterov: false,
        }
    }
}
impl Default for Adam {
    fn default() -> Self {
        Adam {
            learning_rate: 0.001,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}
impl Default for RmsProp {
    fn default() -> Self {
        RmsProp {
            learning_rate: 0.001,
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
        }
    }
}

impl Sgd {
    pub fn new(learning_rate: f32) -> Self {
        Sgd {
            learning_rate,
            ..Default::default()
        }
    }
    pub fn momentum(mut self, m: f32) -> Self {
        self.momentum = m;
        self
    }
    pub fn nesterov(mut self, on: bool) -> Self {
        self.nesterov = on;
        self
    }
}
impl Adam {
    pub fn new(learning_rate: f32) -> Self {
        Adam {
            learning_rate,
            ..Default::default()
        }
    }
}
impl RmsProp {
    pub fn new(learning_rate: f32) -> Self {
        RmsProp {
            learning_rate,
            ..Default::default()
        }
    }
}

impl From<Sgd> for OptimizerConfig {
    fn from(o: Sgd) -> Self {
        OptimizerConfig::Sgd(o)
    }
}
impl From<Adam> for OptimizerConfig {
    fn from(o: Adam) -> Self {
        OptimizerConfig::Adam(o)
    }
}
impl From<RmsProp> for OptimizerConfig {
    fn from(o: RmsProp) -> Self {
        OptimizerConfig::Rmsprop(o)
    }
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Adam(Adam::default())
    }
}

/// A config may say `optimizer = "adam"` (all defaults) or give a table with `type = "adam"` and settings.
impl<'de> Deserialize<'de> for OptimizerConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Full {
            Sgd(Sgd),
            Adam(Adam),
            Rmsprop(RmsProp),
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OptimizerConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "an optimizer name (\"sgd\", \"adam\", \"rmsprop\") or a table with `type`",
                )
            }
            fn visit_str<E: serde::de::Error>(
                self,
                s: &str,
            ) -> std::result::Result<OptimizerConfig, E> {
                match s {
                    "sgd" => Ok(Sgd::default().into()),
                    "adam" => Ok(Adam::default().into()),
                    "rmsprop" => Ok(RmsProp::default().into()),
                    _ => Err(E::unknown_variant(s, &["sgd", "adam", "rmsprop"])),
                }
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                m: M,
            ) -> std::result::Result<OptimizerConfig, M::Error> {
                Ok(
                    match Full::deserialize(serde::de::value::MapAccessDeserializer::new(m))? {
                        Full::Sgd(o) => o.into(),
                        Full::Adam(o) => o.into(),
                        Full::Rmsprop(o) => o.into(),
                    },
                )
            }
        }
        d.deserialize_any(V)
    }
}

impl OptimizerConfig {
    pub fn learning_rate(&self) -> f32 {
        match self {
            OptimizerConfig::Sgd(o) => o.learning_rate,
            OptimizerConfig::Adam(o) => o.learning_rate,
            OptimizerConfig::Rmsprop(o) => o.learning_rate,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let lr = self.learning_rate();
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::Config(format!(
                "optimizer learning_rate must be positive, got {lr}"
            )));
        }
        Ok(())
    }
}

/// An optimizer with its per-parameter state (created at the first step, reused after).
pub struct Optimizer {
    pub config: OptimizerConfig,
    slot1: Vec<Vec<f32>>,
    slot2: Vec<Vec<f32>>,
    t: u64,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig) -> Self {
        Optimizer {
            config,
            slot1: Vec::new(),
            slot2: Vec::new(),
            t: 0,
        }
    }

    /// Steps taken so far.
    pub fn iterations(&self) -> u64 {
        self.t
    }

    /// Updates every trainable parameter from its gradient.
    pub fn step(&mut self, params: &mut [Param<f32>], grads: &[Vec<f32>]) {
        if self.slot1.len() != params.len() {
            self.slot1 = params
                .iter()
                .map(|p| vec![0.0; if p.trainable { p.value.len() } else { 0 }])
                .collect();
            self.slot2 = self.slot1.clone();
        }
        self.t += 1;
        for (i, p) in params.iter_mut().enumerate() {
            if !p.trainable {
                continue;
            }
            let (w, g) = (&mut p.value[..], &grads[i][..]);
            let (s1, s2) = (&mut self.slot1[i][..], &mut self.slot2[i][..]);
            match &self.config {
                OptimizerConfig::Sgd(o) => sgd(o, w, g, s1),
                OptimizerConfig::Adam(o) => adam(o, self.t, w, g, s1, s2),
                OptimizerConfig::Rmsprop(o) => rmsprop(o, w, g, s1, s2),
            }
        }
    }
}

fn sgd(o: &Sgd, w: &mut [f32], g: &[f32], v: &mut [f32]) {
    let (lr, mu) = (o.learning_rate, o.momentum);
    if mu == 0.0 {
        w.iter_mut().zip(g).for_each(|(w, &g)| *w -= lr * g);
        return;
    }
    for i in 0..w.len() {
        v[i] = mu * v[i] - lr * g[i];
        w[i] += if o.nesterov {
            mu * v[i] - lr * g[i]
        } else {
            v[i]
        };
    }
}

fn adam(o: &Adam, t: u64, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let (b1, b2) = (o.beta_1 as f64, o.beta_2 as f64);
    let alpha = (o.learning_rate as f64 * (1.0 - b2.powi(t as i32)).sqrt()
        / (1.0 - b1.powi(t as i32))) as f32;
    let (c1, c2, eps) = (1.0 - o.beta_1, 1.0 - o.beta_2, o.epsilon);
    for i in 0..w.len() {
        let gi = g[i];
        m[i] += (gi - m[i]) * c1;
        v[i] += (gi * gi - v[i]) * c2;
        w[i] -= alpha * m[i] / (v[i].sqrt() + eps);
    }
}

fn rmsprop(o: &RmsProp, w: &mut [f32], g: &[f32], v: &mut [f32], m: &mut [f32]) {
    let (lr, rho, mu, eps) = (o.learning_rate, o.rho, o.momentum, o.epsilon);
    for i in 0..w.len() {
        v[i] = rho * v[i] + (1.0 - rho) * g[i] * g[i];
        let step = lr * g[i] / (v[i] + eps).sqrt();
        if mu > 0.0 {
            m[i] = mu * m[i] + step;
            w[i] -= m[i];
        } else {
            w[i] -= step;
        }
    }
}
