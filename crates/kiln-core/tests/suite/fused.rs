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
    // that needs no gradient: AVX-512 for blocks of 32, AVX2 otherwise); the others the tiled path.
    for (xs, c_out, act, pad, pool, x_grad) in [
        ([5, 28, 28, 1], 8, Some(UnaryOp::Relu), Padding::Valid, (2, 2), true),
        ([3, 13, 11, 3], 5, Some(UnaryOp::Gelu), Padding::Same, (2, 2), true),
        ([4, 9, 9, 2], 4, None, Padding::Valid, (2, 2), true),
        ([5, 28, 28, 1], 32, Some(UnaryOp::Relu), Padding::Valid, (2, 2), false),
        ([3, 11, 12, 1], 16, Some(UnaryOp::Gelu), Padding::Valid, (1, 2), false),
        ([2, 12, 9, 1], 16, Some(UnaryOp::Tanh), Padding::Valid, (3, 1), false),
        ([2, 10, 10, 1], 48, None, Padding::Valid, (1, 1), false),
        ([4, 9, 9, 1], 32, Some(UnaryOp::Sigmoid), Padding::Valid, (2, 2), true),
        // Channels in blocks of 32 take the AVX-512 kernels where the processor has them: every pool size.
        ([2, 10, 10, 1], 64, Some(UnaryOp::Tanh), Padding::Valid, (1, 2), false),
        ([2, 12, 9, 1], 32, Some(UnaryOp::Relu), Padding::Valid, (3, 1), false),
        ([2, 8, 8, 1], 32, None, Padding::Valid, (1, 1), false),
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

/// The fused recurrent op against the same cells written with the engine's small ops (`rnn_unrolled`, the
/// code the layers ran before): values and every gradient, in f32 with its fast sigmoid and tanh, over
/// masks, both directions and both outputs.
#[test]
fn recurrent_op_equals_the_cells_written_op_by_op() {
    use kiln_core::ops::RnnCell;
    let mut rng = Rng::new(11);
    let (n, steps, f, u) = (5, 7, 6, 8);
    // Row k has 7 - k real steps, then padding (as an Embedding's mask_zero gives).
    let mask: Vec<f32> = (0..n * steps).map(|i| if i % steps < steps - i / steps { 1.0 } else { 0.0 }).collect();
    for cell in [RnnCell::Lstm, RnnCell::Gru, RnnCell::Simple] {
        let gu = cell.gates() * u;
        let bias_shape = if cell == RnnCell::Gru { vec![2, gu] } else { vec![gu] };
        let x = rand(n * steps * f, &mut rng);
        let w = rand(f * gu, &mut rng);
        let rk = rand(u * gu, &mut rng);
        let b = rand(bias_shape.iter().product(), &mut rng);
        for (masked, reverse, seq) in
            [(false, false, false), (true, false, false), (true, true, true), (false, true, true)]
        {
            let run = |fused: bool| {
                let mut g = Graph::<f32>::new();
                let px = g.add_param("x", &[n, steps, f], x.clone(), true).unwrap();
                let pw = g.add_param("w", &[f, gu], w.clone(), true).unwrap();
                let pr = g.add_param("r", &[u, gu], rk.clone(), true).unwrap();
                let pb = g.add_param("b", &bias_shape, b.clone(), true).unwrap();
                let (xv, wv, rv, bv) = (g.use_param(px), g.use_param(pw), g.use_param(pr), g.use_param(pb));
                let y = if fused {
                    let m = masked.then(|| g.input(&[n, steps], &mask).unwrap());
                    g.rnn(cell, xv, wv, rv, bv, m, reverse, seq).unwrap()
                } else {
                    g.rnn_unrolled(cell, xv, wv, rv, bv, masked.then_some(&mask[..]), reverse, seq).unwrap()
                };
                let out = g.value(y).to_vec();
                let shape = g.shape(y);
                let weights: Vec<f32> = (0..shape.numel()).map(|i| (i % 7) as f32 - 3.0).collect();
                let r = g.input(shape.dims(), &weights).unwrap();
                let p = g.mul(y, r).unwrap();
                let l = g.sum(p, None, false).unwrap();
                g.backward(l).unwrap();
                [
                    out,
                    g.param_grad(px).to_vec(),
                    g.param_grad(pw).to_vec(),
                    g.param_grad(pr).to_vec(),
                    g.param_grad(pb).to_vec(),
                ]
            };
            // The fused op with the rows in one part, and cut into one part per thread (the products of
            // fewer rows may round differently in the last bit).
            let _turn = crate::settings();
            let one_part = run(true);
            kiln_core::par::set_min_parallel_work(1);
            let parts = run(true);
            kiln_core::par::set_min_parallel_work(kiln_core::par::MIN_PARALLEL_WORK);
            let reference = run(false);
            for (how, a) in [("one part", &one_part), ("parts", &parts)] {
                for (name, p, q) in
                    ["y", "dx", "dw", "dr", "db"].iter().zip(a).zip(&reference).map(|((n, p), q)| (n, p, q))
                {
                    assert_eq!(p.len(), q.len(), "{cell:?} {name}");
                    for (i, (p, q)) in p.iter().zip(q).enumerate() {
                        assert!(
                            (p - q).abs() <= 1e-4 * p.abs().max(q.abs()) + 2e-5,
                            "{cell:?} ({how}) masked {masked} reverse {reverse} seq {seq}: {name}[{i}]: fused {p} vs \
                             op by op {q}"
                        );
                    }
                }
            }
        }
    }
}

/// The embedding bag against the ops it replaced (gather the rows, multiply by the weights, sum the bag):
/// values and the table's gradient, padding (weight 0) and repeated ids included.
#[test]
fn embedding_bag_equals_gather_multiply_sum() {
    let mut rng = Rng::new(5);
    let (vocab, d, n, len) = (30, 7, 6, 9);
    let table = rand(vocab * d, &mut rng);
    let ids: Vec<u32> = (0..n * len).map(|i| if i % len > 6 { 0 } else { (i * 7 % vocab) as u32 }).collect();
    let weights: Vec<f32> =
        ids.iter().enumerate().map(|(i, &id)| if id == 0 { 0.0 } else { 0.5 + (i % 3) as f32 }).collect();
    let run = |fused: bool| {
        let mut g = Graph::<f32>::new();
        let p = g.add_param("table", &[vocab, d], table.clone(), true).unwrap();
        let t = g.use_param(p);
        let y = if fused {
            g.embedding_bag(t, &ids, &weights, len).unwrap()
        } else {
            let e = g.index_select(t, 0, &ids).unwrap();
            let e = g.reshape(e, &[n, len, d]).unwrap();
            let w = g.input(&[n, len, 1], &weights).unwrap();
            let m = g.mul(e, w).unwrap();
            g.sum(m, Some(1), false).unwrap()
        };
        let out = g.value(y).to_vec();
        let r = g.input(&[n, d], &(0..n * d).map(|i| (i % 5) as f32 - 2.0).collect::<Vec<_>>()).unwrap();
        let p2 = g.mul(y, r).unwrap();
        let l = g.sum(p2, None, false).unwrap();
        g.backward(l).unwrap();
        (out, g.param_grad(p).to_vec())
    };
    let (a, b) = (run(true), run(false));
    for (name, p, q) in [("y", &a.0, &b.0), ("dtable", &a.1, &b.1)] {
        for (i, (p, q)) in p.iter().zip(q).enumerate() {
            assert!((p - q).abs() <= 1e-5 * p.abs().max(q.abs()) + 1e-6, "{name}[{i}]: fused {p} vs unfused {q}");
        }
    }
}

/// The dropout mask drops its rate of the weights, scales the rest by 1/(1 − rate), and differs by seed.
#[test]
fn attention_dropout_drops_its_rate_of_weights() {
    use kiln_core::ops::{AttentionDims, AttentionDropout};
    for rate in [0.1, 0.5] {
        let dims = |seed| AttentionDims {
            b: 1,
            t: 1,
            heads: 1,
            dh: 1,
            causal: false,
            drop: AttentionDropout::threshold(rate),
            seed,
        };
        let (a, b) = (dims(1), dims(2));
        let n = 200_000;
        let zeros = (0..n).filter(|&i| a.mask::<f64>(i) == 0.0).count() as f64 / n as f64;
        assert!((zeros - rate).abs() < 0.005, "rate {rate}: dropped {zeros}");
        let mean = (0..n).map(|i| a.mask::<f64>(i)).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.01, "rate {rate}: mean {mean}");
        let same = (0..n).filter(|&i| a.mask::<f64>(i) == b.mask::<f64>(i)).count() as f64 / n as f64;
        assert!(same < 1.0 - rate * (1.0 - rate), "seeds 1 and 2 agree on {same} of the weights");
    }
}

#[test]
fn attention_equals_the_op_by_op_version() {
    let mut rng = Rng::new(11);
    // MiniLM's heads (12 of 32) over padded texts; a causal case; one head; more pairs than threads; dropout
    // on the weights (the same mask both ways, from its seed).
    for (b, t, heads, dh, causal, rate) in [
        (3, 7, 12, 32, false, 0.0),
        (2, 9, 4, 8, true, 0.0),
        (1, 5, 1, 16, false, 0.0),
        (5, 4, 3, 4, true, 0.0),
        (3, 7, 4, 8, false, 0.3),
        (2, 9, 2, 4, true, 0.5),
    ] {
        let dropout = (rate > 0.0).then_some(kiln_core::ops::AttentionDropout { rate, seed: 99 });
        let w = heads * dh;
        let keep: Vec<f32> = (0..b * t).map(|i| if i % t < t - (i / t) % 3 { 1.0 } else { 0.0 }).collect();
        let (q, k, v) = (rand(b * t * w, &mut rng), rand(b * t * w, &mut rng), rand(b * t * w, &mut rng));
        let r = rand(b * t * w, &mut rng);
        let run = |fused: bool| {
            let mut g = Graph::<f32>::new();
            // Profiled, so the op's kind has its row in the profile's table.
            g.set_profiling(true);
            let ps: Vec<_> = [("q", &q), ("k", &k), ("v", &v)]
                .iter()
                .map(|(n, x)| g.add_param(n, &[b * t, w], x.to_vec(), true).unwrap())
                .collect();
            let vars = (g.use_param(ps[0]), g.use_param(ps[1]), g.use_param(ps[2]));
            let y = if fused {
                g.attention_dropout(vars.0, vars.1, vars.2, b, t, heads, Some(&keep), causal, dropout).unwrap()
            } else {
                g.attention_unfused(vars.0, vars.1, vars.2, b, t, heads, Some(&keep), causal, dropout).unwrap()
            };
            let out = g.value(y).to_vec();
            let rv = g.input(&[b * t, w], &r).unwrap();
            let l = g.mul(y, rv).unwrap();
            let l = g.sum(l, None, false).unwrap();
            g.backward(l).unwrap();
            let grads: Vec<Vec<f32>> = ps.iter().map(|&p| g.param_grad(p).to_vec()).collect();
            (out, grads)
        };
        let (a, bb) = (run(true), run(false));
        let pairs =
            [("y", &a.0, &bb.0), ("dq", &a.1[0], &bb.1[0]), ("dk", &a.1[1], &bb.1[1]), ("dv", &a.1[2], &bb.1[2])];
        for (name, u, v) in pairs {
            assert_eq!(u.len(), v.len());
            for (i, (x, y)) in u.iter().zip(v.iter()).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-4 * x.abs().max(y.abs()) + 1e-5,
                    "{name}[{i}] ({b},{t},{heads},{dh},{causal}): fused {x} vs {y}"
                );
            }
        }
    }
}
