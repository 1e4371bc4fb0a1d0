//! The recommenders' losses, each a value and its gradient with respect to the model's outputs, in f64;
//! the training step hands the gradient back to the tape (`train.rs`), so the engine's backward carries it
//! into the weights. Gradient-checked against central differences in the tests below.

/// log(1 + e^x) without overflow.
fn softplus(x: f64) -> f64 {
    if x > 0.0 { x + (-x).exp().ln_1p() } else { x.exp().ln_1p() }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// BPR (Rendle et al. 2009): L = mean over pairs of −log σ(s⁺ − s⁻) = softplus(s⁻ − s⁺), with `neg`
/// holding `neg.len() / pos.len()` negatives per positive (row-major). dL/ds⁺ = −σ(s⁻ − s⁺)/P,
/// dL/ds⁻ = σ(s⁻ − s⁺)/P over P pairs.
pub fn bpr(pos: &[f64], neg: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
    let per = neg.len() / pos.len().max(1);
    let pairs = (pos.len() * per).max(1) as f64;
    let (mut loss, mut gp, mut gn) = (0.0, vec![0.0; pos.len()], vec![0.0; neg.len()]);
    for (b, &p) in pos.iter().enumerate() {
        for k in 0..per {
            let d = neg[b * per + k] - p;
            loss += softplus(d);
            let s = sigmoid(d) / pairs;
            gp[b] -= s;
            gn[b * per + k] += s;
        }
    }
    (loss / pairs, gp, gn)
}

/// Binary cross-entropy on logits (NCF's pointwise loss): L = mean softplus(s) − y·s; dL/ds = (σ(s) − y)/N.
pub fn bce_logits(s: &[f64], y: &[f64]) -> (f64, Vec<f64>) {
    let n = s.len().max(1) as f64;
    let loss = s.iter().zip(y).map(|(&s, &y)| softplus(s) - y * s).sum::<f64>() / n;
    (loss, s.iter().zip(y).map(|(&s, &y)| (sigmoid(s) - y) / n).collect())
}

/// Softmax over candidates (a two-tower model's in-batch and sampled softmax): query b's logits are
/// z[b][c] = u_b·v_c − correction[c] over the C candidates (B×d queries `u`, C×d candidates `v`), its
/// positive is candidate b, and candidates where `masked(b, c)` (another of the user's positives) are left
/// out. L = mean_b logsumexp_c z[b][c] − z[b][b]; with p = softmax(z), dz = (p − 1[c = b])/B,
/// du_b = Σ_c dz[b][c]·v_c and dv_c = Σ_b dz[b][c]·u_b.
pub fn softmax_candidates(
    u: &[f64],
    v: &[f64],
    d: usize,
    correction: &[f64],
    masked: impl Fn(usize, usize) -> bool + Sync,
) -> (f64, Vec<f64>, Vec<f64>) {
    use rayon::prelude::*;
    let (b_n, c_n) = (u.len() / d, v.len() / d);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    // dz, row by row (B×C), and each row's loss.
    let mut dz = vec![0.0; b_n * c_n];
    let losses: Vec<f64> = dz
        .par_chunks_mut(c_n.max(1))
        .zip(u.par_chunks(d))
        .enumerate()
        .map(|(b, (z, ub))| {
            for (c, (zc, vc)) in z.iter_mut().zip(v.chunks_exact(d)).enumerate() {
                *zc = if c != b && masked(b, c) { f64::NEG_INFINITY } else { dot(ub, vc) - correction[c] };
            }
            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = z.iter().map(|&x| (x - max).exp()).sum();
            let loss = max + sum.ln() - z[b];
            for (c, zc) in z.iter_mut().enumerate() {
                *zc = ((*zc - max).exp() / sum - (c == b) as u8 as f64) / b_n as f64;
            }
            loss
        })
        .collect();
    // du_b = Σ_c dz[b][c]·v_c ; dv_c = Σ_b dz[b][c]·u_b.
    let mut du = vec![0.0; u.len()];
    du.par_chunks_mut(d).zip(dz.par_chunks(c_n.max(1))).for_each(|(dub, z)| {
        for (&w, vc) in z.iter().zip(v.chunks_exact(d)) {
            if w != 0.0 {
                dub.iter_mut().zip(vc).for_each(|(a, x)| *a += w * x);
            }
        }
    });
    let mut dv = vec![0.0; v.len()];
    dv.par_chunks_mut(d).enumerate().for_each(|(c, dvc)| {
        for (b, ub) in u.chunks_exact(d).enumerate() {
            let w = dz[b * c_n + c];
            if w != 0.0 {
                dvc.iter_mut().zip(ub).for_each(|(a, x)| *a += w * x);
            }
        }
    });
    (losses.iter().sum::<f64>() / b_n.max(1) as f64, du, dv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central differences of `f` at `x` against `grad`, in f64.
    fn check(x: &[f64], grad: &[f64], f: impl Fn(&[f64]) -> f64) {
        for i in 0..x.len() {
            let (mut a, mut b) = (x.to_vec(), x.to_vec());
            a[i] += 1e-6;
            b[i] -= 1e-6;
            let num = (f(&a) - f(&b)) / 2e-6;
            assert!((num - grad[i]).abs() < 1e-7 * (1.0 + num.abs()), "slot {i}: numeric {num}, analytic {}", grad[i]);
        }
    }

    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut r = kiln_core::Rng::new(seed);
        (0..n).map(|_| r.normal() * 2.0).collect()
    }

    #[test]
    fn bpr_gradient_and_value() {
        let (pos, neg) = (values(3, 1), values(6, 2));
        let (l, gp, gn) = bpr(&pos, &neg);
        let by_hand = (0..6).map(|k| (1.0 + (neg[k] - pos[k / 2]).exp()).ln()).sum::<f64>() / 6.0;
        assert!((l - by_hand).abs() < 1e-12);
        check(&pos, &gp, |p| bpr(p, &neg).0);
        check(&neg, &gn, |n| bpr(&pos, n).0);
        // Extreme scores stay finite.
        assert!(bpr(&[1000.0], &[-1000.0]).0.is_finite() && bpr(&[-1000.0], &[1000.0]).0 == 2000.0);
    }

    #[test]
    fn bce_gradient_and_value() {
        let (s, y) = (values(5, 3), vec![1.0, 0.0, 0.0, 1.0, 0.0]);
        let (l, g) = bce_logits(&s, &y);
        let by_hand =
            s.iter().zip(&y).map(|(&s, &y)| -(y * sigmoid(s).ln() + (1.0 - y) * (1.0 - sigmoid(s)).ln())).sum::<f64>()
                / 5.0;
        assert!((l - by_hand).abs() < 1e-12);
        check(&s, &g, |s| bce_logits(s, &y).0);
    }

    #[test]
    fn softmax_gradient_masks_and_value() {
        let d = 4;
        let (u, v, corr) = (values(3 * d, 4), values(5 * d, 5), values(5, 6));
        let masked = |b: usize, c: usize| b == 1 && c == 3;
        let (l, du, dv) = softmax_candidates(&u, &v, d, &corr, masked);
        check(&u, &du, |u| softmax_candidates(u, &v, d, &corr, masked).0);
        check(&v, &dv, |v| softmax_candidates(&u, v, d, &corr, masked).0);
        // The value by hand, the masked candidate left out of row 1's sum.
        let z = |b: usize, c: usize| (0..d).map(|k| u[b * d + k] * v[c * d + k]).sum::<f64>() - corr[c];
        let mut by_hand = 0.0;
        for b in 0..3 {
            let sum: f64 = (0..5).filter(|&c| !masked(b, c)).map(|c| z(b, c).exp()).sum();
            by_hand += sum.ln() - z(b, b);
        }
        assert!((l - by_hand / 3.0).abs() < 1e-10, "{l} vs {}", by_hand / 3.0);
        // A mask that also claims the positive itself leaves it in: the same loss and gradients.
        let with_diagonal = |b: usize, c: usize| b == c || masked(b, c);
        let (l2, du2, dv2) = softmax_candidates(&u, &v, d, &corr, with_diagonal);
        assert_eq!((l2, &du2, &dv2), (l, &du, &dv));
        // Masking every other candidate leaves nothing to learn: loss 0, no gradient.
        let (l3, du3, _) = softmax_candidates(&u, &v, d, &corr, |_, _| true);
        assert!(l3.abs() < 1e-12 && du3.iter().all(|g| g.abs() < 1e-12), "{l3}");
    }
}
