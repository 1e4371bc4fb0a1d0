//! Gradient attributions of one point: saliency (the gradient) and integrated gradients (Sundararajan et
//! al. 2017), the path integral of the gradient from a baseline b to the point x:
//!
//!   IG_i(x) = (x_i − b_i) · ∫₀¹ ∂f(b + α(x − b))/∂x_i dα  ≈  (x_i − b_i) · Σ_k w_k ∂f(b + α_k(x − b))/∂x_i
//!
//! with Captum's nodes α_k and weights w_k: Gauss-Legendre by default (exact for polynomials of degree
//! 2n − 1, so 50 steps land within Captum's own numbers), or its Riemann rules. By completeness
//! Σ_i IG_i = f(x) − f(b) up to the quadrature's error, which `Attribution::delta` reports.

use super::{Attribution, probe::Probe};
use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The most path points integrated gradients take: Captum's examples use 50 to 300; Gauss-Legendre nodes
/// cost O(n²) to find.
pub const MAX_STEPS: usize = 10_000;

/// How the path integral is approximated (Captum's `method`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Gauss-Legendre nodes and weights on [0, 1] (Captum's default, `gausslegendre`).
    #[default]
    GaussLegendre,
    RiemannLeft,
    RiemannRight,
    RiemannMiddle,
    RiemannTrapezoid,
}

impl Rule {
    pub fn parse(s: &str) -> Result<Rule> {
        Ok(match s {
            "gausslegendre" | "gauss_legendre" => Rule::GaussLegendre,
            "riemann_left" => Rule::RiemannLeft,
            "riemann_right" => Rule::RiemannRight,
            "riemann_middle" => Rule::RiemannMiddle,
            "riemann_trapezoid" => Rule::RiemannTrapezoid,
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown integration rule `{s}`: gausslegendre, riemann_left, riemann_right, riemann_middle \
                     or riemann_trapezoid"
                )));
            }
        })
    }

    /// The path's points α_k in [0, 1] and their weights w_k (summing to 1, but for Captum's trapezoid), for
    /// `steps` points.
    pub fn nodes(self, steps: usize) -> (Vec<f64>, Vec<f64>) {
        let n = steps as f64;
        match self {
            Rule::GaussLegendre => {
                let (x, w) = gauss_legendre(steps);
                (x.iter().map(|x| 0.5 * (1.0 + x)).collect(), w.iter().map(|w| 0.5 * w).collect())
            }
            Rule::RiemannLeft => ((0..steps).map(|k| k as f64 / n).collect(), vec![1.0 / n; steps]),
            Rule::RiemannRight => ((1..=steps).map(|k| k as f64 / n).collect(), vec![1.0 / n; steps]),
            Rule::RiemannMiddle => ((0..steps).map(|k| (k as f64 + 0.5) / n).collect(), vec![1.0 / n; steps]),
            // As Captum has it: points 1/(n − 1) apart but each weighed 1/n, the ends half that, so the
            // weights sum to 1 − 1/n (attributions come out short by about 1/n of f(x) − f(b)).
            Rule::RiemannTrapezoid => {
                let m = (steps - 1) as f64;
                let alphas = (0..steps).map(|k| k as f64 / m).collect();
                let mut w = vec![1.0 / n; steps];
                w[0] = 0.5 / n;
                w[steps - 1] = 0.5 / n;
                (alphas, w)
            }
        }
    }
}

/// The n-point Gauss-Legendre nodes on [−1, 1] (ascending) and their weights: the roots of the Legendre
/// polynomial P_n found by Newton's method from Chebyshev guesses, w = 2 / ((1 − x²) P_n'(x)²).
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut xs, mut ws) = (vec![0.0; n], vec![0.0; n]);
    for i in 0..n.div_ceil(2) {
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            // P_n(x) and P_n'(x) by the three-term recurrence.
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let k = k as f64;
                (p0, p1) = (p1, ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k);
            }
            let p = if n == 0 {
                1.0
            } else if n == 1 {
                x
            } else {
                p1
            };
            let prev = if n == 1 { 1.0 } else { p0 };
            dp = n as f64 * (x * p - prev) / (x * x - 1.0);
            let dx = p / dp;
            x -= dx;
            if dx.abs() < 1e-15 {
                break;
            }
        }
        let w = 2.0 / ((1.0 - x * x) * dp * dp);
        (xs[i], ws[i]) = (-x, w);
        (xs[n - 1 - i], ws[n - 1 - i]) = (x, w);
    }
    (xs, ws)
}

/// Integrated gradients of the probe's point from `baseline` (as wide as the point), at `steps` points of
/// `rule`: the attributions, f(x), f(b).
pub fn integrated_gradients(probe: &Probe, baseline: &[f32], steps: usize, rule: Rule) -> Result<Attribution> {
    let (g, (fx, fb)) = path_gradient(probe, baseline, steps, rule)?;
    let x = probe.point()?;
    let values = g.iter().zip(x.iter().zip(baseline)).map(|(g, (&x, &b))| (g * (x as f64 - b as f64)) as f32);
    Ok(Attribution { values: values.collect(), output: fx, baseline_output: Some(fb) })
}

/// The gradient averaged along the straight path from `baseline` to the probe's point, Σ_k w_k ∇f(b + α_k(x −
/// b)), and (f(x), f(b)): integrated gradients are (x − b) times it, and a linear part of the model (a text
/// bag) can share it out further.
pub(crate) fn path_gradient(
    probe: &Probe,
    baseline: &[f32],
    steps: usize,
    rule: Rule,
) -> Result<(Vec<f64>, (f32, f32))> {
    let x = probe.point()?;
    if baseline.len() != x.len() {
        return Err(Error::Shape(format!(
            "integrated gradients: the baseline has {} values, the point {}",
            baseline.len(),
            x.len()
        )));
    }
    if !(2..=MAX_STEPS).contains(&steps) {
        return Err(Error::Invalid(format!("integrated gradients: steps must be 2 to {MAX_STEPS}, got {steps}")));
    }
    if baseline.iter().any(|b| !b.is_finite()) {
        return Err(Error::Invalid(
            "integrated gradients: the baseline holds a value that is not a finite number".into(),
        ));
    }
    let (alphas, weights) = rule.nodes(steps);
    // The path a few points at a time, so its memory stays that of one pass whatever the steps.
    let mut total = vec![0f64; x.len()];
    for (alphas, weights) in alphas.chunks(16).zip(weights.chunks(16)) {
        let mut path = Vec::with_capacity(alphas.len() * x.len());
        for &a in alphas {
            path.extend(x.iter().zip(baseline).map(|(&x, &b)| (b as f64 + a * (x as f64 - b as f64)) as f32));
        }
        let (_, grads) = probe.gradients(&path)?;
        for (g, &w) in grads.chunks_exact(x.len()).zip(weights) {
            for (t, &g) in total.iter_mut().zip(g) {
                *t += w * g as f64;
            }
        }
    }
    let ends = probe.outputs(&[x.as_slice(), baseline].concat())?;
    Ok((total, (ends[0], ends[1])))
}

/// The gradient of the explained output at the point (Simonyan et al. 2014), its absolute value with `abs`
/// (Captum's `Saliency` default).
pub fn saliency(probe: &Probe, abs: bool) -> Result<Attribution> {
    let x = probe.point()?;
    let (out, grads) = probe.gradients(&x)?;
    let values = if abs { grads.iter().map(|g| g.abs()).collect() } else { grads };
    Ok(Attribution { values, output: out[0], baseline_output: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_matches_known_nodes_and_integrates_polynomials() {
        // n = 3: ±sqrt(3/5) with weight 5/9, and 0 with 8/9.
        let (x, w) = gauss_legendre(3);
        assert!((x[0] + (0.6f64).sqrt()).abs() < 1e-14 && x[1].abs() < 1e-14 && (x[2] - 0.6f64.sqrt()).abs() < 1e-14);
        assert!((w[0] - 5.0 / 9.0).abs() < 1e-14 && (w[1] - 8.0 / 9.0).abs() < 1e-14);
        for n in [1, 2, 7, 50, 51] {
            let (a, w) = Rule::GaussLegendre.nodes(n);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "weights of {n}");
            // ∫₀¹ t^(2n−1) dt = 1/(2n), exact for n nodes.
            let d = 2 * n - 1;
            let q: f64 = a.iter().zip(&w).map(|(a, w)| w * a.powi(d as i32)).sum();
            assert!((q - 1.0 / (2 * n) as f64).abs() < 1e-12, "degree {d} with {n} nodes: {q}");
            assert!(a.windows(2).all(|p| p[0] < p[1]) && a[0] > 0.0 && a[n - 1] < 1.0);
        }
    }

    #[test]
    fn riemann_rules_weigh_as_captums() {
        for rule in [Rule::RiemannLeft, Rule::RiemannRight, Rule::RiemannMiddle, Rule::RiemannTrapezoid] {
            let (a, w) = rule.nodes(4);
            assert_eq!(a.len(), 4);
            let want = if rule == Rule::RiemannTrapezoid { 0.75 } else { 1.0 };
            assert!((w.iter().sum::<f64>() - want).abs() < 1e-12, "{rule:?}");
        }
        assert_eq!(Rule::RiemannTrapezoid.nodes(3).0, vec![0.0, 0.5, 1.0]);
        assert_eq!(Rule::RiemannMiddle.nodes(2).0, vec![0.25, 0.75]);
        assert!(Rule::parse("simpson").unwrap_err().to_string().contains("riemann_trapezoid"));
    }
}
