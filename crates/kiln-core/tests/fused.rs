//! Fused ops against the unfused ops they replace: same values, same gradients.

use kiln_core::{Graph, Padding, Rng, UnaryOp};

fn rand(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect()
}

#[test]
fn conv2d_max_pool_equals_conv2d_then_max_pool2d() {
    #[cfg(target_arch = "x86_64")]
    let direct = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let direct = false;
    if !direct {
        // Straight to the terminal: the harness captures print!, and a skipped fast path must not pass silently.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "NOTICE: no AVX2+FMA here; the direct conv+pool kernels were not tested");
    }
    let mut rng = Rng::new(3);
    // Sizes chosen so tiles span several pooled rows and images split across threads.
    // The last rows take the direct kernels (no padding, a small patch, channels in blocks of 16, an input
    // that needs no gradient); the others the tiled path.
    for (xs, c_out, act, pad, pool, x_grad) in [
        ([5, 28, 28, 1], 8, Some(UnaryOp::Relu), Padding::Valid, (2, 2), true),
        ([3, 13, 11, 3], 5, Some(UnaryOp::Gelu), Padding::Same, (2, 2), true),
        ([4, 9, 9, 2], 4, None, Padding::Valid, (2, 2), true),
        ([5, 28, 28, 1], 32, Some(UnaryOp::Relu), Padding::Valid, (2, 2), false),
        ([3, 11, 12, 1], 16, Some(UnaryOp::Gelu), Padding::Valid, (1, 2), false),
        ([2, 12, 9, 1], 16, Some(UnaryOp::Tanh), Padding::Valid, (3, 1), false),
        ([2, 10, 10, 1], 48, None, Padding::Valid, (1, 1), false),
        ([4, 9, 9, 1], 32, Some(UnaryOp::Sigmoid), Padding::Valid, (2, 2), true),
    ] {
        let n: usize = xs.iter().product();
        let (x, w, b) = (rand(n, &mut rng), rand(9 * xs[3] * c_out, &mut rng), rand(c_out, &mut rng));
        let run = |fused: bool| {
            let mut g = Graph::<f32>::new();
            let px = g.add_param("x", &xs, x.clone(), x_grad).unwrap();
            let pw = g.add_param("w", &[3, 3, xs[3], c_out], w.clone(), true).unwrap();
            let pb = g.add_param("b", &[c_out], b.clone(), true).unwrap();
            let (xv, wv, bv) = (g.use_param(px), g.use_param(pw), g.use_param(pb));
            let y = if fused {
                g.conv2d_max_pool(xv, wv, Some(bv), (1, 1), pad, act, pool).unwrap()
            } else {
                let c = g.conv2d(xv, wv, Some(bv), (1, 1), pad, act).unwrap();
                g.max_pool2d(c, pool, pool, Padding::Valid).unwrap()
            };
            let out = g.value(y).to_vec();
            let shape = g.shape(y);
            let r =
                g.input(shape.dims(), &(0..shape.numel()).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>()).unwrap();
            let p = g.mul(y, r).unwrap();
            let l = g.sum(p, None, false).unwrap();
            g.backward(l).unwrap();
            (
                out,
                if x_grad { g.param_grad(px).to_vec() } else { Vec::new() },
                g.param_grad(pw).to_vec(),
                g.param_grad(pb).to_vec(),
            )
        };
        let (a, b2) = (run(true), run(false));
        for (name, u, v) in [("y", &a.0, &b2.0), ("dx", &a.1, &b2.1), ("dw", &a.2, &b2.2), ("db", &a.3, &b2.3)] {
            assert_eq!(u.len(), v.len(), "{name}");
            for (i, (p, q)) in u.iter().zip(v).enumerate() {
                assert!((p - q).abs() <= 1e-4 * p.abs().max(q.abs()) + 1e-5, "{name}[{i}]: fused {p} vs unfused {q}");
            }
        }
    }
}
