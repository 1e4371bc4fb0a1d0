//! Gradient checking: the analytic gradient of every op against central finite differences, in f64.

use crate::{Backend, Graph, Result, Rng, Var};
use std::sync::Arc;

/// An input of a checked function: its shape and values.
pub struct Input {
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

impl Input {
    /// Values uniform in [lo, hi), drawn from `rng`.
    pub fn uniform(shape: &[usize], lo: f64, hi: f64, rng: &mut Rng) -> Input {
        let n = shape.iter().product();
        Input { shape: shape.to_vec(), values: (0..n).map(|_| rng.uniform_range(lo, hi)).collect() }
    }

    /// Values uniform in ±[lo, hi): bounded away from zero, where relu, abs and max have kinks.
    pub fn away_from_zero(shape: &[usize], lo: f64, hi: f64, rng: &mut Rng) -> Input {
        let mut i = Input::uniform(shape, lo, hi, rng);
        for v in &mut i.values {
            if rng.uniform() < 0.5 {
                *v = -*v;
            }
        }
        i
    }
}

/// Largest disagreement found, for the failure message.
#[derive(Debug)]
pub struct Mismatch {
    pub input: usize,
    pub index: usize,
    pub analytic: f64,
    pub numeric: f64,
}

/// Checks the gradient of L = Σ f(inputs) ⊙ R (R fixed and random, so every output element matters) with
/// respect to every element of every input. The graph is reseeded before each evaluation, so random ops
/// (dropout) draw the same mask every time.
pub fn check_gradients(
    inputs: &[Input],
    f: impl Fn(&mut Graph<f64>, &[Var]) -> Result<Var>,
) -> std::result::Result<(), Mismatch> {
    check_gradients_on(Arc::new(crate::Cpu), inputs, f)
}

/// [`check_gradients`] with the ops behind the device seam running on `backend`.
pub fn check_gradients_on(
    backend: Arc<dyn Backend<f64>>,
    inputs: &[Input],
    f: impl Fn(&mut Graph<f64>, &[Var]) -> Result<Var>,
) -> std::result::Result<(), Mismatch> {
    const EPS: f64 = 1e-6;
    const RTOL: f64 = 1e-5;
    const ATOL: f64 = 1e-7;
    let mut g = Graph::<f64>::new();
    g.set_backend(backend);
    let params: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, inp)| g.add_param(&format!("in{i}"), &inp.shape, inp.values.clone(), true).expect("valid input"))
        .collect();
    let mut weights: Vec<f64> = Vec::new();
    let mut eval = |g: &mut Graph<f64>, backward: bool| -> f64 {
        g.reset();
        g.seed(1234);
        let vars: Vec<Var> = params.iter().map(|&p| g.use_param(p)).collect();
        let out = f(g, &vars).expect("checked function runs");
        let n = g.shape(out).numel();
        if weights.len() != n {
            let mut rng = Rng::new(99);
            weights = (0..n).map(|_| rng.uniform_range(0.5, 1.5)).collect();
        }
        let shape = g.shape(out);
        let r = g.input(shape.dims(), &weights).expect("weights fit");
        let prod = g.mul(out, r).expect("same shape");
        let loss = g.sum(prod, None, false).expect("sum");
        if backward {
            g.zero_grads();
            g.backward(loss).expect("backward");
        }
        g.scalar(loss)
    };
    eval(&mut g, true);
    let analytic: Vec<Vec<f64>> = params.iter().map(|&p| g.param_grad(p).to_vec()).collect();
    let mut worst: Option<(f64, Mismatch)> = None;
    for (pi, &p) in params.iter().enumerate() {
        for (j, &a) in analytic[pi].iter().enumerate() {
            let orig = g.param(p).value[j];
            g.param_mut(p).value[j] = orig + EPS;
            let lp = eval(&mut g, false);
            g.param_mut(p).value[j] = orig - EPS;
            let lm = eval(&mut g, false);
            g.param_mut(p).value[j] = orig;
            let numeric = (lp - lm) / (2.0 * EPS);
            let excess = (a - numeric).abs() - (ATOL + RTOL * a.abs().max(numeric.abs()));
            if excess > 0.0 && worst.as_ref().is_none_or(|(e, _)| excess > *e) {
                worst = Some((excess, Mismatch { input: pi, index: j, analytic: a, numeric }));
            }
        }
    }
    match worst {
        Some((_, m)) => Err(m),
        None => Ok(()),
    }
}
