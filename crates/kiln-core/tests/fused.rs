//! Fused ops against the unfused ops they replace: same values, same gradients.

use kiln_core::{Graph, Padding, Rng, UnaryOp};

fn rand(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect()
}

#[test]
fn conv2d_max_pool_equals_conv2d_then_max_pool2d() {
    let mut rng = Rng::new(3);
    // Sizes chosen so tiles span several pooled rows and images split across threads.
    for (xs, c_out, act, pad) in [
        ([5, 28, 28, 1], 8, Some(UnaryOp::Relu), Padding::Valid),
        ([3, 13, 11, 3], 5, Some(UnaryOp::Gelu), Padding::Same),
        ([4, 9, 9, 2], 4, None, Padding::Valid),
    ] {
        let n: usize = xs.iter().product();
        let (x, w, b) = (rand(n, &mut rng), rand(9 * xs[3] * c_out, &mut rng), rand(c_out, &mut rng));
        let run = |fused: bool| {
            let mut g = Graph::<f32>::new();
            let px = g.add_param("x", &xs, x.clone(), true).unwrap();
            let pw = g.add_param("w", &[3, 3, xs[3], c_out], w.clone(), true).unwrap();
            let pb = g.add_param("b", &[c_out], b.clone(), true).unwrap();
            let (xv, wv, bv) = (g.use_param(px), g.use_param(pw), g.use_param(pb));
            let y = if fused {
                g.conv2d_max_pool(xv, wv, Some(bv), (1, 1), pad, act, (2, 2)).unwrap()
            } else {
                let c = g.conv2d(xv, wv, Some(bv), (1, 1), pad, act).unwrap();
                g.max_pool2d(c, (2, 2), (2, 2), Padding::Valid).unwrap()
            };
            let out = g.value(y).to_vec();
            let shape = g.shape(y);
            let r =
                g.input(shape.dims(), &(0..shape.numel()).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>()).unwrap();
            let p = g.mul(y, r).unwrap();
            let l = g.sum(p, None, false).unwrap();
            g.backward(l).unwrap();
            (out, g.param_grad(px).to_vec(), g.param_grad(pw).to_vec(), g.param_grad(pb).to_vec())
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
