//! Every differentiable op, checked against central finite differences in f64 on random inputs.

use kiln_core::testing::{Input, check_gradients};
use kiln_core::{Graph, LossKind, Padding, Result, Rng, UnaryOp, Var};

fn check(inputs: Vec<Input>, f: impl Fn(&mut Graph<f64>, &[Var]) -> Result<Var>) {
    if let Err(m) = check_gradients(&inputs, f) {
        panic!("gradient mismatch: {m:?}");
    }
}

fn rng() -> Rng {
    Rng::new(7)
}

fn u(shape: &[usize], r: &mut Rng) -> Input {
    Input::uniform(shape, -2.0, 2.0, r)
}

fn nz(shape: &[usize], r: &mut Rng) -> Input {
    Input::away_from_zero(shape, 0.1, 2.0, r)
}

fn pos(shape: &[usize], r: &mut Rng) -> Input {
    Input::uniform(shape, 0.2, 2.0, r)
}

#[test]
fn unary_ops() {
    let mut r = rng();
    type Case = (UnaryOp, fn(&[usize], &mut Rng) -> Input);
    let cases: [Case; 13] = [
        (UnaryOp::Neg, u),
        (UnaryOp::Exp, u),
        (UnaryOp::Log, pos),
        (UnaryOp::Sqrt, pos),
        (UnaryOp::Pow(3.0), u),
        (UnaryOp::Pow(-1.5), pos),
        (UnaryOp::Abs, nz),
        (UnaryOp::Relu, nz),
        (UnaryOp::LeakyRelu(0.2), nz),
        (UnaryOp::Sigmoid, u),
        (UnaryOp::Tanh, u),
        (UnaryOp::Sin, u),
        (UnaryOp::Cos, u),
    ];
    for (op, make) in cases {
        check(vec![make(&[3, 4], &mut r)], |g, v| g.unary(v[0], op));
    }
    check(vec![u(&[3, 4], &mut r)], |g, v| g.gelu(v[0]));
}

#[test]
fn binary_ops_with_broadcasting() {
    let mut r = rng();
    let shapes: [(&[usize], &[usize]); 5] =
        [(&[2, 3], &[2, 3]), (&[2, 3], &[3]), (&[4, 1, 3], &[2, 1]), (&[1], &[2, 3]), (&[2, 1, 3], &[1, 4, 1])];
    for (sa, sb) in shapes {
        check(vec![u(sa, &mut r), u(sb, &mut r)], |g, v| g.add(v[0], v[1]));
        check(vec![u(sa, &mut r), u(sb, &mut r)], |g, v| g.sub(v[0], v[1]));
        check(vec![u(sa, &mut r), u(sb, &mut r)], |g, v| g.mul(v[0], v[1]));
        check(vec![u(sa, &mut r), nz(sb, &mut r)], |g, v| g.div(v[0], v[1]));
    }
    // The same var on both sides: gradients from both paths add up.
    check(vec![u(&[5], &mut r)], |g, v| g.mul(v[0], v[0]));
}

#[test]
fn reductions() {
    let mut r = rng();
    for axis in [None, Some(0), Some(1), Some(2)] {
        for keep in [false, true] {
            check(vec![u(&[2, 3, 4], &mut r)], |g, v| g.sum(v[0], axis, keep));
            check(vec![u(&[2, 3, 4], &mut r)], |g, v| g.mean(v[0], axis, keep));
            check(vec![u(&[2, 3, 4], &mut r)], |g, v| g.max(v[0], axis, keep));
        }
    }
}

#[test]
fn matmul_plain_batched_and_shared() {
    let mut r = rng();
    check(vec![u(&[3, 4], &mut r), u(&[4, 5], &mut r)], |g, v| g.matmul(v[0], v[1]));
    check(vec![u(&[2, 3, 4], &mut r), u(&[2, 4, 2], &mut r)], |g, v| g.matmul(v[0], v[1]));
    check(vec![u(&[2, 3, 4], &mut r), u(&[4, 2], &mut r)], |g, v| g.matmul(v[0], v[1]));
}

#[test]
fn movement_ops() {
    let mut r = rng();
    check(vec![u(&[2, 3, 4], &mut r)], |g, v| {
        let y = g.reshape(v[0], &[4, usize::MAX])?;
        g.mul(y, y)
    });
    check(vec![u(&[2, 3, 4], &mut r)], |g, v| g.flatten(v[0]));
    check(vec![u(&[2, 3, 4], &mut r)], |g, v| g.permute(v[0], &[2, 0, 1]));
    check(vec![u(&[2, 3, 4], &mut r)], |g, v| g.transpose(v[0], 0, 2));
    check(vec![u(&[2, 3], &mut r), u(&[2, 2], &mut r)], |g, v| g.concat(&[v[0], v[1], v[0]], 1));
    check(vec![u(&[2, 5, 3], &mut r)], |g, v| g.slice(v[0], 1, 1, 4));
    check(vec![u(&[5, 3], &mut r)], |g, v| g.index_select(v[0], 0, &[4, 0, 4, 2]));
    check(vec![u(&[2, 5, 3], &mut r)], |g, v| g.index_select(v[0], 1, &[1, 1, 3]));
}

#[test]
fn softmax_and_log_softmax() {
    let mut r = rng();
    for axis in [0, 1, 2] {
        check(vec![u(&[2, 3, 4], &mut r)], |g, v| g.softmax(v[0], axis));
        check(vec![u(&[2, 3, 4], &mut r)], |g, v| g.log_softmax(v[0], axis));
    }
}

#[test]
fn linear_with_bias_and_each_activation() {
    let mut r = rng();
    for act in [None, Some(UnaryOp::Relu), Some(UnaryOp::Sigmoid), Some(UnaryOp::Tanh), Some(UnaryOp::Gelu)] {
        let x = nz(&[4, 5], &mut r);
        check(vec![x, u(&[5, 3], &mut r), u(&[3], &mut r)], |g, v| g.linear(v[0], v[1], Some(v[2]), act));
    }
    check(vec![u(&[4, 5], &mut r), u(&[5, 3], &mut r)], |g, v| g.linear(v[0], v[1], None, None));
}

#[test]
fn conv2d_valid_same_strided() {
    let mut r = rng();
    let cases = [
        ((1, 1), Padding::Valid, [2, 5, 5, 1]),
        ((1, 1), Padding::Same, [2, 4, 5, 2]),
        ((2, 2), Padding::Same, [1, 5, 6, 3]),
        ((2, 1), Padding::Valid, [2, 6, 5, 2]),
    ];
    for (stride, pad, xs) in cases {
        let c = xs[3];
        check(vec![u(&xs, &mut r), u(&[3, 3, c, 4], &mut r), u(&[4], &mut r)], |g, v| {
            g.conv2d(v[0], v[1], Some(v[2]), stride, pad, None)
        });
    }
    check(vec![u(&[2, 5, 5, 2], &mut r), u(&[3, 2, 2, 3], &mut r), u(&[3], &mut r)], |g, v| {
        g.conv2d(v[0], v[1], Some(v[2]), (1, 1), Padding::Same, Some(UnaryOp::Tanh))
    });
    check(vec![u(&[1, 4, 4, 2], &mut r), u(&[3, 3, 2, 2], &mut r)], |g, v| {
        g.conv2d(v[0], v[1], None, (1, 1), Padding::Valid, Some(UnaryOp::Gelu))
    });
}

#[test]
fn pooling() {
    let mut r = rng();
    // Distinct values keep the max away from ties.
    for (size, stride, pad, xs) in [
        ((2, 2), (2, 2), Padding::Valid, [2, 4, 4, 3]),
        ((2, 2), (2, 2), Padding::Valid, [1, 5, 5, 2]),
        ((3, 3), (2, 2), Padding::Same, [1, 5, 6, 2]),
        ((2, 3), (1, 2), Padding::Valid, [2, 4, 5, 1]),
    ] {
        check(vec![u(&xs, &mut r)], |g, v| g.max_pool2d(v[0], size, stride, pad));
        check(vec![u(&xs, &mut r)], |g, v| g.avg_pool2d(v[0], size, stride, pad));
    }
}

#[test]
fn dropout_is_a_fixed_mask_given_the_seed() {
    let mut r = rng();
    check(vec![u(&[4, 6], &mut r)], |g, v| g.dropout(v[0], 0.4));
}

#[test]
fn batch_norm_training_and_inference() {
    let mut r = rng();
    check(vec![u(&[6, 3], &mut r), u(&[3], &mut r), u(&[3], &mut r)], |g, v| {
        g.batch_norm(v[0], v[1], v[2], None, 1e-3)
    });
    check(vec![u(&[2, 3, 2, 4], &mut r), u(&[4], &mut r), u(&[4], &mut r)], |g, v| {
        g.batch_norm(v[0], v[1], v[2], None, 1e-3)
    });
    let stats = vec![u(&[3], &mut r), pos(&[3], &mut r)];
    let mut inputs = vec![u(&[5, 3], &mut r), u(&[3], &mut r), u(&[3], &mut r)];
    inputs.extend(stats);
    check(inputs, |g, v| g.batch_norm(v[0], v[1], v[2], Some((v[3], v[4])), 1e-3));
}

#[test]
fn layer_norm() {
    let mut r = rng();
    check(vec![u(&[4, 6], &mut r), u(&[6], &mut r), u(&[6], &mut r)], |g, v| g.layer_norm(v[0], v[1], v[2], 1e-5));
    check(vec![u(&[2, 3, 5], &mut r), u(&[5], &mut r), u(&[5], &mut r)], |g, v| g.layer_norm(v[0], v[1], v[2], 1e-3));
    // One value per row: x̂ is 0 whatever x is, so only β reaches y and x gets no gradient.
    check(vec![u(&[3, 1], &mut r), u(&[1], &mut r), u(&[1], &mut r)], |g, v| g.layer_norm(v[0], v[1], v[2], 1e-3));
}

#[test]
fn attention() {
    let mut r = rng();
    // Two sequences of 3 steps, 2 heads of 2; the first sequence's last step is padding.
    let keep = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0];
    for causal in [false, true] {
        let inputs = vec![u(&[6, 4], &mut r), u(&[6, 4], &mut r), u(&[6, 4], &mut r)];
        check(inputs, |g, v| g.attention(v[0], v[1], v[2], 2, 3, 2, Some(&keep), causal));
    }
    // One head, no mask, a longer sequence.
    check(vec![u(&[5, 3], &mut r), u(&[5, 3], &mut r), u(&[5, 3], &mut r)], |g, v| {
        g.attention(v[0], v[1], v[2], 1, 5, 1, None, false)
    });
    // Dropout on the weights: the mask is fixed by its seed, so the function is smooth in q, k, v.
    let drop = Some(kiln_core::ops::AttentionDropout { rate: 0.4, seed: 3 });
    check(vec![u(&[6, 4], &mut r), u(&[6, 4], &mut r), u(&[6, 4], &mut r)], |g, v| {
        g.attention_dropout(v[0], v[1], v[2], 2, 3, 2, Some(&keep), true, drop)
    });
}

/// Enough rows that the kernel splits them across threads: every row still gets its own statistics.
#[test]
fn layer_norm_of_many_rows_is_each_rows_formula() {
    let (rows, d) = (300, 384);
    let mut r = rng();
    let x: Vec<f64> = (0..rows * d).map(|i| r.uniform_range(-2.0, 2.0) + (i / d) as f64 * 0.01).collect();
    let (gm, bt): (Vec<f64>, Vec<f64>) = (0..d).map(|j| (1.0 + j as f64 * 1e-3, j as f64 * -1e-3)).unzip();
    let mut g = Graph::<f64>::new();
    // Profiled, so the op's kind has its row in the profile's table.
    g.set_profiling(true);
    let (xv, gv, bv) = (g.input(&[rows, d], &x).unwrap(), g.input(&[d], &gm).unwrap(), g.input(&[d], &bt).unwrap());
    let y = g.layer_norm(xv, gv, bv, 1e-12).unwrap();
    let y = g.value(y).to_vec();
    for (row, (xr, yr)) in x.chunks(d).zip(y.chunks(d)).enumerate() {
        let mu = xr.iter().sum::<f64>() / d as f64;
        let sd = (xr.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d as f64 + 1e-12).sqrt();
        for j in 0..d {
            let want = (xr[j] - mu) / sd * gm[j] + bt[j];
            assert!((yr[j] - want).abs() < 1e-12, "row {row}, {j}: {} vs {want}", yr[j]);
        }
    }
}

fn one_hot_rows(n: usize, c: usize, r: &mut Rng) -> Vec<f64> {
    let mut t = vec![0.0; n * c];
    for i in 0..n {
        t[i * c + r.below(c)] = 1.0;
    }
    t
}

#[test]
fn losses() {
    let mut r = rng();
    let t = one_hot_rows(4, 5, &mut r);
    check(vec![u(&[4, 5], &mut r)], |g, v| {
        let tv = g.input(&[4, 5], &t)?;
        g.loss(LossKind::SoftmaxCrossEntropy, v[0], tv)
    });
    check(vec![u(&[4, 5], &mut r)], |g, v| g.sparse_softmax_cross_entropy(v[0], &[0, 4, 2, 2]));
    let tb: Vec<f64> = (0..6).map(|i| (i % 2) as f64).collect();
    check(vec![u(&[3, 2], &mut r)], |g, v| {
        let tv = g.input(&[3, 2], &tb)?;
        g.loss(LossKind::SigmoidBinaryCrossEntropy, v[0], tv)
    });
    check(vec![Input::uniform(&[3, 2], 0.05, 0.95, &mut r)], |g, v| {
        let tv = g.input(&[3, 2], &tb)?;
        g.loss(LossKind::BinaryCrossEntropy, v[0], tv)
    });
    check(vec![Input::uniform(&[4, 5], 0.1, 1.0, &mut r)], |g, v| {
        let tv = g.input(&[4, 5], &t)?;
        g.loss(LossKind::CategoricalCrossEntropy, v[0], tv)
    });
    let tm: Vec<f64> = (0..12).map(|i| i as f64 / 6.0 - 1.0).collect();
    check(vec![u(&[3, 4], &mut r)], |g, v| {
        let tv = g.input(&[3, 4], &tm)?;
        g.loss(LossKind::MeanSquaredError, v[0], tv)
    });
}

#[test]
fn weighted_losses() {
    let mut r = rng();
    let (w4, w3) = ([0.5, 2.0, 1.0, 3.0], [2.5, 0.2, 1.0]);
    let t = one_hot_rows(4, 5, &mut r);
    check(vec![u(&[4, 5], &mut r)], |g, v| g.weighted_sparse_softmax_cross_entropy(v[0], &[0, 4, 2, 2], &w4));
    check(vec![u(&[4, 5], &mut r)], |g, v| {
        let tv = g.input(&[4, 5], &t)?;
        g.weighted_loss(LossKind::SoftmaxCrossEntropy, v[0], tv, &w4)
    });
    check(vec![Input::uniform(&[4, 5], 0.1, 1.0, &mut r)], |g, v| {
        let tv = g.input(&[4, 5], &t)?;
        g.weighted_loss(LossKind::CategoricalCrossEntropy, v[0], tv, &w4)
    });
    let tb: Vec<f64> = (0..6).map(|i| (i % 2) as f64).collect();
    check(vec![u(&[3, 2], &mut r)], |g, v| {
        let tv = g.input(&[3, 2], &tb)?;
        g.weighted_loss(LossKind::SigmoidBinaryCrossEntropy, v[0], tv, &w3)
    });
    check(vec![Input::uniform(&[3, 2], 0.05, 0.95, &mut r)], |g, v| {
        let tv = g.input(&[3, 2], &tb)?;
        g.weighted_loss(LossKind::BinaryCrossEntropy, v[0], tv, &w3)
    });
    check(vec![u(&[3, 2], &mut r)], |g, v| {
        let tv = g.input(&[3, 2], &tb)?;
        g.weighted_loss(LossKind::MeanSquaredError, v[0], tv, &w3)
    });
    // The value: each row's loss times its weight, over the row count (Keras's sum_over_batch_size).
    let mut g = kiln_core::Graph::<f64>::new();
    let z = g.input(&[2, 2], &[1.0, -1.0, 0.5, 2.0]).unwrap();
    let plain: Vec<f64> = (0..2)
        .map(|row| {
            let mut h = kiln_core::Graph::<f64>::new();
            let zr = h.input(&[1, 2], &[[1.0, -1.0], [0.5, 2.0]][row]).unwrap();
            let l = h.sparse_softmax_cross_entropy(zr, &[[0], [0]][row]).unwrap();
            h.scalar(l)
        })
        .collect();
    let l = g.weighted_sparse_softmax_cross_entropy(z, &[0, 0], &[3.0, 0.5]).unwrap();
    assert!((g.scalar(l) - (3.0 * plain[0] + 0.5 * plain[1]) / 2.0).abs() < 1e-12);
    assert!(g.weighted_sparse_softmax_cross_entropy(z, &[0, 0], &[1.0]).is_err());
}

#[test]
fn a_small_network_end_to_end() {
    let mut r = rng();
    check(
        vec![u(&[2, 6, 6, 1], &mut r), u(&[3, 3, 1, 2], &mut r), u(&[2], &mut r), u(&[8, 3], &mut r), u(&[3], &mut r)],
        |g, v| {
            let c = g.conv2d(v[0], v[1], Some(v[2]), (1, 1), Padding::Valid, Some(UnaryOp::Tanh))?;
            let p = g.max_pool2d(c, (2, 2), (2, 2), Padding::Valid)?;
            let f = g.flatten(p)?;
            let y = g.linear(f, v[3], Some(v[4]), None)?;
            g.sparse_softmax_cross_entropy(y, &[1, 2])
        },
    );
}

#[test]
fn conv2d_max_pool_fused() {
    let mut r = rng();
    let cases = [
        ([2, 6, 6, 1], (1, 1), Padding::Valid, Some(UnaryOp::Relu), (2, 2)),
        ([1, 7, 6, 2], (1, 1), Padding::Same, Some(UnaryOp::Tanh), (2, 2)),
        ([2, 7, 7, 2], (1, 1), Padding::Valid, Some(UnaryOp::Gelu), (2, 2)),
        ([1, 8, 7, 1], (2, 1), Padding::Same, None, (2, 3)),
    ];
    for (xs, stride, pad, act, pool) in cases {
        let c = xs[3];
        check(vec![u(&xs, &mut r), u(&[3, 3, c, 3], &mut r), u(&[3], &mut r)], |g, v| {
            g.conv2d_max_pool(v[0], v[1], Some(v[2]), stride, pad, act, pool)
        });
    }
}

/// The fused recurrent op, each cell forwards and backwards, with and without a mask (a padded step keeps
/// the state) and with every state as output.
#[test]
fn recurrent_cells_fused() {
    use kiln_core::ops::RnnCell;
    let _turn = crate::settings();
    let mut r = rng();
    // Rows of 4 steps: all real; the last two padding; the first padding (a reversed layer's view).
    let mask = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0];
    // Rows in one part, then cut into one part per thread (each runs its rows through every step).
    for (cell, min_work) in [RnnCell::Lstm, RnnCell::Gru, RnnCell::Simple]
        .into_iter()
        .flat_map(|c| [(c, kiln_core::par::MIN_PARALLEL_WORK), (c, 1)])
    {
        kiln_core::par::set_min_parallel_work(min_work);
        let (f, units) = (2, 3);
        let gu = cell.gates() * units;
        let bias = if cell == RnnCell::Gru { vec![2, gu] } else { vec![gu] };
        for (masked, reverse, seq) in
            [(false, false, false), (true, false, true), (true, true, false), (false, true, true)]
        {
            let inputs = vec![
                u(&[3, 4, f], &mut r),
                Input::uniform(&[f, gu], -0.8, 0.8, &mut r),
                Input::uniform(&[units, gu], -0.8, 0.8, &mut r),
                Input::uniform(&bias, -0.5, 0.5, &mut r),
            ];
            check(inputs, |g, v| {
                let m = if masked { Some(g.input(&[3, 4], &mask)?) } else { None };
                g.rnn(cell, v[0], v[1], v[2], v[3], m, reverse, seq)
            });
        }
    }
    kiln_core::par::set_min_parallel_work(kiln_core::par::MIN_PARALLEL_WORK);
}

/// The embedding bag's gradient with respect to its table (ids repeat; weight 0 is padding).
#[test]
fn embedding_bag() {
    let mut r = rng();
    let ids = [3u32, 1, 3, 0, 2, 2, 4, 0];
    let weights = [0.5, 1.5, 2.0, 0.0, 1.0, -0.7, 0.3, 0.0];
    check(vec![u(&[5, 3], &mut r)], |g, v| g.embedding_bag(v[0], &ids, &weights, 4));
}
