//! Optimizers with Keras's update rules and defaults. Each step touches every parameter once, in one loop.
//! On a backend that keeps the parameters in its own memory (a GPU), each takes its step there instead
//! (`Optimizer::step_on_backend`, the same formulas as kernels), with its slots kept there.

use kiln_core::backend::{DeviceSlots, Update};
use kiln_core::{Error, Graph, Param, Result};
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OptimizerConfig {
    Sgd(Sgd),
    Adam(Adam),
    Adamw(AdamW),
    Rmsprop(RmsProp),
    Adagrad(Adagrad),
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
    /// In f64, as Keras keeps it: 1 − β₂ from an f32 β₂ = 0.999 is 0.00099998713, which shifts the second
    /// moment by 1.3e-5 relative (tests/suite/optimizers.rs compares with Keras over six steps).
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f32,
    /// Rows of a matrix (an embedding table, a kernel) whose gradient is zero in a step keep their weights
    /// and moments, as TensorFlow's LazyAdam and PyTorch's SparseAdam leave the rows a batch did not use.
    /// Much faster with large embedding tables (a batch touches a few of their rows), but not Adam's
    /// numbers: Adam moves every row each step, by its decaying moments. Off by default.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lazy: bool,
}

/// Adam with decoupled weight decay (Loshchilov & Hutter; Keras's AdamW): before each Adam step,
/// p −= lr·weight_decay·p.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamW {
    pub learning_rate: f32,
    pub weight_decay: f32,
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f32,
}

/// a += g²; p −= lr·g/√(a + ε), with a starting at `initial_accumulator_value` (Keras's Adagrad).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Adagrad {
    pub learning_rate: f32,
    pub initial_accumulator_value: f32,
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
        Sgd { learning_rate: 0.01, momentum: 0.0, nesterov: false }
    }
}
impl Default for Adam {
    fn default() -> Self {
        Adam { learning_rate: 0.001, beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, lazy: false }
    }
}
impl Default for AdamW {
    fn default() -> Self {
        AdamW { learning_rate: 0.001, weight_decay: 0.004, beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 }
    }
}
impl Default for Adagrad {
    fn default() -> Self {
        Adagrad { learning_rate: 0.001, initial_accumulator_value: 0.1, epsilon: 1e-7 }
    }
}
impl Default for RmsProp {
    fn default() -> Self {
        RmsProp { learning_rate: 0.001, rho: 0.9, momentum: 0.0, epsilon: 1e-7 }
    }
}

impl Sgd {
    pub fn new(learning_rate: f32) -> Self {
        Sgd { learning_rate, ..Default::default() }
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
        Adam { learning_rate, ..Default::default() }
    }
    /// See `lazy`.
    pub fn lazy(mut self, on: bool) -> Self {
        self.lazy = on;
        self
    }
}
impl RmsProp {
    pub fn new(learning_rate: f32) -> Self {
        RmsProp { learning_rate, ..Default::default() }
    }
}
impl AdamW {
    pub fn new(learning_rate: f32, weight_decay: f32) -> Self {
        AdamW { learning_rate, weight_decay, ..Default::default() }
    }
    /// Adam with these rates: AdamW's step after its weight decay.
    fn as_adam(&self) -> Adam {
        Adam {
            learning_rate: self.learning_rate,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            lazy: false,
        }
    }
}
impl Adagrad {
    pub fn new(learning_rate: f32) -> Self {
        Adagrad { learning_rate, ..Default::default() }
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
impl From<AdamW> for OptimizerConfig {
    fn from(o: AdamW) -> Self {
        OptimizerConfig::Adamw(o)
    }
}
impl From<Adagrad> for OptimizerConfig {
    fn from(o: Adagrad) -> Self {
        OptimizerConfig::Adagrad(o)
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
            Adamw(AdamW),
            Rmsprop(RmsProp),
            Adagrad(Adagrad),
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OptimizerConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an optimizer name (sgd, adam, adamw, rmsprop, adagrad) or a table with `type`")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<OptimizerConfig, E> {
                match s {
                    "sgd" => Ok(Sgd::default().into()),
                    "adam" => Ok(Adam::default().into()),
                    "adamw" => Ok(AdamW::default().into()),
                    "rmsprop" => Ok(RmsProp::default().into()),
                    "adagrad" => Ok(Adagrad::default().into()),
                    _ => Err(E::unknown_variant(s, &["sgd", "adam", "adamw", "rmsprop", "adagrad"])),
                }
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, m: M) -> std::result::Result<OptimizerConfig, M::Error> {
                Ok(match Full::deserialize(serde::de::value::MapAccessDeserializer::new(m))? {
                    Full::Sgd(o) => o.into(),
                    Full::Adam(o) => o.into(),
                    Full::Adamw(o) => o.into(),
                    Full::Rmsprop(o) => o.into(),
                    Full::Adagrad(o) => o.into(),
                })
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
            OptimizerConfig::Adamw(o) => o.learning_rate,
            OptimizerConfig::Rmsprop(o) => o.learning_rate,
            OptimizerConfig::Adagrad(o) => o.learning_rate,
        }
    }

    pub fn set_learning_rate(&mut self, lr: f32) {
        match self {
            OptimizerConfig::Sgd(o) => o.learning_rate = lr,
            OptimizerConfig::Adam(o) => o.learning_rate = lr,
            OptimizerConfig::Adamw(o) => o.learning_rate = lr,
            OptimizerConfig::Rmsprop(o) => o.learning_rate = lr,
            OptimizerConfig::Adagrad(o) => o.learning_rate = lr,
        }
    }

    /// The value each parameter's first state slot starts from.
    fn slot_start(&self) -> f32 {
        match self {
            OptimizerConfig::Adagrad(o) => o.initial_accumulator_value,
            _ => 0.0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let lr = self.learning_rate();
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::Config(format!("optimizer learning_rate must be zero or positive, got {lr}")));
        }
        Ok(())
    }
}

/// An optimizer with its per-parameter state (created at the first step, reused after).
pub struct Optimizer {
    pub config: OptimizerConfig,
    slot1: Vec<Vec<f32>>,
    slot2: Vec<Vec<f32>>,
    /// The slots in a backend's memory while steps are taken there (`step_on_backend`); when not empty, they
    /// hold the state and `slot1`/`slot2` are what they were before. With the memory's id (`memory_id`).
    device: DeviceSlots<f32>,
    device_memory: Option<usize>,
    t: u64,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig) -> Self {
        Optimizer { config, slot1: Vec::new(), slot2: Vec::new(), device: Vec::new(), device_memory: None, t: 0 }
    }

    /// Steps taken so far.
    pub fn iterations(&self) -> u64 {
        self.t
    }

    /// The per-parameter state (two slots per parameter, empty before the first step) and the step count,
    /// for checkpoints. Copied from the backend's memory when steps are taken there.
    #[allow(clippy::type_complexity)]
    pub fn state(&self) -> (Cow<'_, [Vec<f32>]>, Cow<'_, [Vec<f32>]>, u64) {
        if self.device.is_empty() {
            return (Cow::Borrowed(&self.slot1), Cow::Borrowed(&self.slot2), self.t);
        }
        // Slot k of each parameter: from the device where it is kept there, else the host's.
        let slot = |host: &[Vec<f32>], k: usize| -> Vec<Vec<f32>> {
            let on_device = |i: usize| self.device.get(i).and_then(|d| d.as_ref()).map(|d| d[k].to_vec());
            host.iter().enumerate().map(|(i, h)| on_device(i).unwrap_or_else(|| h.clone())).collect()
        };
        (Cow::Owned(slot(&self.slot1, 0)), Cow::Owned(slot(&self.slot2, 1)), self.t)
    }

    /// Restores what `state` returned.
    pub fn set_state(&mut self, slot1: Vec<Vec<f32>>, slot2: Vec<Vec<f32>>, t: u64) {
        (self.slot1, self.slot2, self.t) = (slot1, slot2, t);
        self.device.clear();
    }

    /// Brings slots kept in a backend's memory back to `slot1`/`slot2` (and lets go of them there).
    fn slots_to_host(&mut self) {
        if !self.device.is_empty() {
            let (s1, s2, _) = self.state();
            (self.slot1, self.slot2) = (s1.into_owned(), s2.into_owned());
            self.device.clear();
        }
        self.device_memory = None;
    }

    /// Host slots for every parameter, made at the first step (zeros, or Adagrad's starting value).
    fn make_slots(&mut self, params: &[Param<f32>]) {
        if self.slot1.len() != params.len() {
            let start = self.config.slot_start();
            self.slot1 = params.iter().map(|p| vec![start; if p.trainable { p.value.len() } else { 0 }]).collect();
            self.slot2 = params.iter().map(|p| vec![0.0; if p.trainable { p.value.len() } else { 0 }]).collect();
        }
    }

    /// The step on the backend of `g`, where it keeps the parameters in its own memory
    /// (`Graph::update_on_backend`, every optimizer has its kernel): no gradient comes down and no parameter
    /// goes up. The gradients are zero afterwards. False, with nothing changed, where the step is the host's
    /// (`step`): the CPU.
    pub fn step_on_backend(&mut self, g: &mut Graph<f32>) -> bool {
        let Some(memory) = g.backend().memory_id() else {
            return false;
        };
        self.make_slots(g.params());
        if self.device_memory != Some(memory) {
            // Slots in another backend's memory (the model moved) come back to the host first.
            self.slots_to_host();
            self.device_memory = Some(memory);
        }
        let t = self.t + 1;
        // Adam's (α_t, 1 − β₁, 1 − β₂, ε) at this step.
        let rates = |o: &Adam| {
            let (alpha, c1, c2) = adam_rates(o, t);
            (alpha as f64, c1 as f64, c2 as f64, o.epsilon as f64)
        };
        let config = &self.config;
        let u = |p: &Param<f32>| match config {
            OptimizerConfig::Sgd(o) => {
                Update::Sgd { lr: o.learning_rate as f64, momentum: o.momentum as f64, nesterov: o.nesterov }
            }
            OptimizerConfig::Adam(o) if o.lazy && p.shape.rank() == 2 => {
                let (alpha, c1, c2, eps) = rates(o);
                Update::AdamRows { alpha, c1, c2, eps, cols: p.shape.dim(1).max(1) }
            }
            OptimizerConfig::Adam(o) => {
                let (alpha, c1, c2, eps) = rates(o);
                Update::Adam { alpha, c1, c2, eps, decay: 1.0 }
            }
            OptimizerConfig::Adamw(o) => {
                let (alpha, c1, c2, eps) = rates(&o.as_adam());
                Update::Adam { alpha, c1, c2, eps, decay: (1.0 - o.learning_rate * o.weight_decay) as f64 }
            }
            OptimizerConfig::Rmsprop(o) => Update::RmsProp {
                lr: o.learning_rate as f64,
                rho: o.rho as f64,
                one_minus_rho: (1.0 - o.rho) as f64,
                momentum: o.momentum as f64,
                eps: o.epsilon as f64,
            },
            OptimizerConfig::Adagrad(o) => Update::Adagrad { lr: o.learning_rate as f64, eps: o.epsilon as f64 },
        };
        if !g.update_on_backend(&u, &mut self.device, (&self.slot1, &self.slot2)) {
            return false;
        }
        self.t = t;
        true
    }

    /// Updates every trainable parameter from its gradient.
    pub fn step(&mut self, params: &mut [Param<f32>], grads: &mut [Vec<f32>]) {
        self.make_slots(params);
        // The state comes back from the backend's memory first when steps were taken there until now.
        self.slots_to_host();
        self.t += 1;
        let t = self.t;
        let config = &self.config;
        for (i, p) in params.iter_mut().enumerate() {
            if !p.trainable {
                continue;
            }
            let update = |w: &mut [f32], g: &mut [f32], s1: &mut [f32], s2: &mut [f32]| match config {
                OptimizerConfig::Sgd(o) => sgd(o, w, g, s1),
                OptimizerConfig::Adam(o) => adam(o, t, w, g, s1, s2),
                OptimizerConfig::Adamw(o) => {
                    let decay = 1.0 - o.learning_rate * o.weight_decay;
                    w.iter_mut().for_each(|w| *w *= decay);
                    adam(&o.as_adam(), t, w, g, s1, s2)
                }
                OptimizerConfig::Rmsprop(o) => rmsprop(o, w, g, s1, s2),
                OptimizerConfig::Adagrad(o) => adagrad(o, w, g, s1),
            };
            let parts = kiln_core::par::parts_for(p.value.len(), 8);
            let (w, g, s1, s2) = (&mut p.value, &mut grads[i], &mut self.slot1[i], &mut self.slot2[i]);
            match config {
                // Row by row, skipping the rows no gradient reached; parts cut between rows.
                OptimizerConfig::Adam(o) if o.lazy && p.shape.rank() == 2 => {
                    let cols = p.shape.dim(1).max(1);
                    split4(w, g, s1, s2, parts, cols, &|w, g, m, v| adam_rows(o, t, cols, w, g, m, v))
                }
                _ => split4(w, g, s1, s2, parts, 1, &update),
            }
        }
    }
}

/// One optimizer update over (weights, gradients, first slot, second slot).
type HostUpdate<'a> = dyn Fn(&mut [f32], &mut [f32], &mut [f32], &mut [f32]) + Sync + 'a;

/// Runs `f` on `parts` aligned pieces of four equally long buffers, in parallel, cut at multiples of `align`.
fn split4(w: &mut [f32], g: &mut [f32], s1: &mut [f32], s2: &mut [f32], parts: usize, align: usize, f: &HostUpdate) {
    let mid = w.len() * (parts / 2) / parts.max(1) / align * align;
    if parts <= 1 || mid == 0 {
        f(w, g, s1, s2);
        return;
    }
    let (w1, w2) = w.split_at_mut(mid);
    let (g1, g2) = g.split_at_mut(mid);
    let (s1a, s1b) = s1.split_at_mut(mid);
    let (s2a, s2b) = s2.split_at_mut(mid);
    rayon::join(
        || split4(w1, g1, s1a, s2a, parts / 2, align, f),
        || split4(w2, g2, s1b, s2b, parts - parts / 2, align, f),
    );
}

/// Zero for subnormal values. A moment whose gradient stays zero decays geometrically into the subnormal
/// range within about a thousand steps, where x86 arithmetic is many times slower. TensorFlow sets
/// flush-to-zero for the same reason.
#[inline(always)]
fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x }
}

fn sgd(o: &Sgd, w: &mut [f32], g: &[f32], v: &mut [f32]) {
    let (lr, mu, nesterov) = (o.learning_rate, o.momentum, o.nesterov);
    kiln_core::simd::vectorized(
        #[inline(always)]
        || {
            if mu == 0.0 {
                w.iter_mut().zip(g).for_each(|(w, &g)| *w -= lr * g);
                return;
            }
            for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                *v = flush(mu * *v - lr * g);
                *w += if nesterov { mu * *v - lr * g } else { *v };
            }
        },
    )
}

/// Adam's step size and moment rates at step t: (α_t, 1 − β₁, 1 − β₂).
fn adam_rates(o: &Adam, t: u64) -> (f32, f32, f32) {
    let (b1, b2) = (o.beta_1, o.beta_2);
    let alpha = (o.learning_rate as f64 * (1.0 - b2.powi(t as i32)).sqrt() / (1.0 - b1.powi(t as i32))) as f32;
    (alpha, (1.0 - b1) as f32, (1.0 - b2) as f32)
}

#[inline(always)]
fn adam_update(rates: (f32, f32, f32), eps: f32, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let (alpha, c1, c2) = rates;
    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m = flush(*m + (g - *m) * c1);
        *v = flush(*v + (g * g - *v) * c2);
        *w -= alpha * *m / (v.sqrt() + eps);
    }
}

fn adam(o: &Adam, t: u64, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let rates = adam_rates(o, t);
    kiln_core::simd::vectorized(
        #[inline(always)]
        || adam_update(rates, o.epsilon, w, g, m, v),
    )
}

/// Lazy Adam (`Adam::lazy`) over rows of `cols`: the rows whose gradient is all zero are left as they are.
fn adam_rows(o: &Adam, t: u64, cols: usize, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let rates = adam_rates(o, t);
    kiln_core::simd::vectorized(
        #[inline(always)]
        || {
            let rows = w.chunks_mut(cols).zip(g.chunks(cols)).zip(m.chunks_mut(cols).zip(v.chunks_mut(cols)));
            for ((w, g), (m, v)) in rows {
                // Any non-zero (−0 counts as zero) by OR-ing the bits: a loop that vectorizes, unlike `any`.
                if g.iter().fold(0u32, |acc, &x| acc | (x.to_bits() << 1)) != 0 {
                    adam_update(rates, o.epsilon, w, g, m, v);
                }
            }
        },
    )
}

fn rmsprop(o: &RmsProp, w: &mut [f32], g: &[f32], v: &mut [f32], m: &mut [f32]) {
    let (lr, rho, mu, eps) = (o.learning_rate, o.rho, o.momentum, o.epsilon);
    kiln_core::simd::vectorized(
        #[inline(always)]
        || {
            for (((w, &g), v), m) in w.iter_mut().zip(g).zip(v.iter_mut()).zip(m.iter_mut()) {
                *v = flush(rho * *v + (1.0 - rho) * g * g);
                let step = lr * g / (*v + eps).sqrt();
                if mu > 0.0 {
                    *m = flush(mu * *m + step);
                    *w -= *m;
                } else {
                    *w -= step;
                }
            }
        },
    )
}

fn adagrad(o: &Adagrad, w: &mut [f32], g: &[f32], acc: &mut [f32]) {
    let (lr, eps) = (o.learning_rate, o.epsilon);
    kiln_core::simd::vectorized(
        #[inline(always)]
        || {
            for ((w, &g), a) in w.iter_mut().zip(g).zip(acc.iter_mut()) {
                *a += g * g;
                *w -= lr * g / (*a + eps).sqrt();
            }
        },
    )
}
