//! The device seam, exercised by a second backend: `Naive` (backend/naive.rs) implements `Backend` and counts
//! its calls. Products, elementwise ops, softmax, movement and reductions are its own plain loops, nothing
//! from kiln's CPU kernels; losses, pooling and batch norm (whose formulas are the kernels) it hands to `Cpu`.
//! Every op behind the seam is gradient-checked on it with its backward formula unchanged, must actually call
//! it (the counts), and must agree with the `Cpu` backend.

mod naive;

use kiln_core::backend::Backend;
use kiln_core::ops::RnnCell;
use kiln_core::testing::{Input, check_gradients_on};
use kiln_core::{Graph, LossKind, Result, Rng, UnaryOp, Var};
use naive::Naive;
use std::sync::Arc;

pub(crate) type Case =
    (&'static str, Vec<Vec<usize>>, &'static [&'static str], fn(&mut Graph<f64>, &[Var]) -> Result<Var>);

/// Each op behind the seam, the kernels it must call on the way forward and back.
pub(crate) fn cases() -> Vec<Case> {
    vec![
        (
            "linear+tanh",
            vec![vec![3, 4], vec![4, 5], vec![5]],
            &["gemm", "bias_act", "unary_backward", "col_sum_add"],
            |g, v| g.linear(v[0], v[1], Some(v[2]), Some(UnaryOp::Tanh)),
        ),
        (
            "linear+gelu (keeps z)",
            vec![vec![2, 3], vec![3, 2], vec![2]],
            &["gemm", "bias_act", "unary_backward"],
            |g, v| g.linear(v[0], v[1], Some(v[2]), Some(UnaryOp::Gelu)),
        ),
        ("linear", vec![vec![3, 4], vec![4, 2]], &["gemm", "bias_act"], |g, v| g.linear(v[0], v[1], None, None)),
        ("batched matmul", vec![vec![2, 3, 4], vec![2, 4, 2]], &["gemm"], |g, v| g.matmul(v[0], v[1])),
        ("shared matmul", vec![vec![2, 3, 4], vec![4, 2]], &["gemm"], |g, v| g.matmul(v[0], v[1])),
        ("sigmoid", vec![vec![3, 4]], &["unary", "unary_backward"], |g, v| g.sigmoid(v[0])),
        ("mul broadcast", vec![vec![2, 1, 3], vec![4, 1]], &["binary", "binary_backward"], |g, v| g.mul(v[0], v[1])),
        ("div", vec![vec![2, 3], vec![3]], &["binary", "binary_backward"], |g, v| {
            let d = g.exp(v[1])?;
            g.div(v[0], d)
        }),
        ("softmax axis 1", vec![vec![2, 3, 4]], &["softmax", "softmax_backward"], |g, v| g.softmax(v[0], 1)),
        ("log_softmax", vec![vec![3, 5]], &["softmax", "softmax_backward"], |g, v| g.log_softmax(v[0], 1)),
        ("permute", vec![vec![2, 3, 4]], &["permute", "permute_backward"], |g, v| g.permute(v[0], &[2, 0, 1])),
        ("concat", vec![vec![2, 3], vec![2, 2]], &["copy_blocks"], |g, v| g.concat(&[v[0], v[1]], 1)),
        ("slice + reshape", vec![vec![3, 4, 2]], &["copy_blocks"], |g, v| {
            let s = g.slice(v[0], 1, 1, 3)?;
            let r = g.reshape(s, &[3, 4])?;
            g.tanh(r)
        }),
        ("index_select", vec![vec![4, 3]], &["gather", "scatter_add"], |g, v| g.index_select(v[0], 0, &[2, 0, 2, 3])),
        ("mean axis 1", vec![vec![2, 3, 4]], &["reduce", "reduce_backward"], |g, v| g.mean(v[0], Some(1), false)),
        ("max axis 0", vec![vec![3, 4]], &["reduce", "reduce_backward"], |g, v| g.max(v[0], Some(0), true)),
        ("dropout", vec![vec![4, 5]], &["binary", "binary_backward"], |g, v| g.dropout(v[0], 0.3)),
        ("softmax cross-entropy", vec![vec![3, 4]], &["loss", "loss_backward"], |g, v| {
            // Targets get no gradient: a fixed distribution per row.
            let t = g.input(&[3, 4], &[0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.1, 0.2, 0.3, 0.4])?;
            g.loss(LossKind::SoftmaxCrossEntropy, v[0], t)
        }),
        ("sparse cross-entropy", vec![vec![3, 4]], &["loss", "loss_backward"], |g, v| {
            g.sparse_softmax_cross_entropy(v[0], &[1, 3, 0])
        }),
        ("max pool", vec![vec![1, 4, 4, 2]], &["max_pool2d", "max_pool2d_backward"], |g, v| {
            g.max_pool2d(v[0], (2, 2), (2, 2), kiln_core::Padding::Valid)
        }),
        ("avg pool", vec![vec![1, 3, 3, 2]], &["avg_pool2d", "avg_pool2d_backward"], |g, v| {
            g.avg_pool2d(v[0], (2, 2), (1, 1), kiln_core::Padding::Same)
        }),
        ("conv2d + gelu", vec![vec![2, 5, 5, 2], vec![3, 3, 2, 3], vec![3]], &["conv2d", "conv2d_backward"], |g, v| {
            g.conv2d(v[0], v[1], Some(v[2]), (1, 1), kiln_core::Padding::Same, Some(UnaryOp::Gelu))
        }),
        (
            "conv2d + relu + max pool",
            vec![vec![2, 6, 6, 2], vec![3, 3, 2, 3], vec![3]],
            &["conv2d_max_pool", "conv2d_max_pool_backward"],
            |g, v| {
                g.conv2d_max_pool(
                    v[0],
                    v[1],
                    Some(v[2]),
                    (1, 1),
                    kiln_core::Padding::Valid,
                    Some(UnaryOp::Tanh),
                    (2, 2),
                )
            },
        ),
        (
            "lstm, masked, reversed",
            vec![vec![2, 3, 2], vec![2, 12], vec![3, 12], vec![12]],
            &["gemm", "bias_act", "rnn_step", "rnn_step_backward", "col_sum_add"],
            |g, v| {
                let m = g.input(&[2, 3], &[1.0, 1.0, 0.0, 1.0, 1.0, 1.0])?;
                g.rnn(RnnCell::Lstm, v[0], v[1], v[2], v[3], Some(m), true, false)
            },
        ),
        (
            "gru, every state",
            vec![vec![2, 3, 2], vec![2, 9], vec![3, 9], vec![2, 9]],
            &["gemm", "bias_act", "rnn_step", "rnn_step_backward", "col_sum_add"],
            |g, v| g.rnn(RnnCell::Gru, v[0], v[1], v[2], v[3], None, false, true),
        ),
        ("embedding bag", vec![vec![5, 3]], &["embedding_bag", "embedding_bag_backward"], |g, v| {
            g.embedding_bag(v[0], &[3, 1, 3, 0, 2, 2], &[0.5, 1.5, 2.0, 0.0, 1.0, -0.7], 3)
        }),
        ("one input read twice", vec![vec![3, 4]], &["unary_backward"], |g, v| {
            // Its gradient gets two contributions: the second must add to the first, not overwrite it.
            let (a, b) = (g.tanh(v[0])?, g.sigmoid(v[0])?);
            g.mul(a, b)
        }),
        (
            "batch norm, given statistics",
            vec![vec![4, 3], vec![3], vec![3], vec![3], vec![3]],
            &["batch_norm_backward_stat"],
            |g, v| {
                // The variance must stay positive: square it (plus a floor) before use.
                let var = g.mul(v[4], v[4])?;
                let floor = g.input(&[1], &[0.5])?;
                let var = g.add(var, floor)?;
                g.batch_norm(v[0], v[1], v[2], Some((v[3], var)), 1e-3)
            },
        ),
        (
            "batch norm",
            vec![vec![4, 3], vec![3], vec![3]],
            &["batch_norm", "batch_norm_sums", "batch_norm_backward_x"],
            |g, v| g.batch_norm(v[0], v[1], v[2], None, 1e-3),
        ),
        (
            "layer norm",
            vec![vec![2, 3, 5], vec![5], vec![5]],
            &["layer_norm", "layer_norm_sums", "layer_norm_backward_x"],
            |g, v| g.layer_norm(v[0], v[1], v[2], 1e-5),
        ),
        ("attention", vec![vec![6, 4], vec![6, 4], vec![6, 4]], &["attention", "attention_backward"], |g, v| {
            g.attention(v[0], v[1], v[2], 2, 3, 2, Some(&[1.0, 1.0, 0.0, 1.0, 1.0, 1.0]), false)
        }),
    ]
}

pub(crate) fn inputs(shapes: &[Vec<usize>], seed: u64) -> Vec<Input> {
    let mut r = Rng::new(seed);
    shapes.iter().map(|s| Input::uniform(s, -1.5, 1.5, &mut r)).collect()
}

#[test]
fn every_op_behind_the_seam_is_gradient_checked_on_a_second_backend_and_calls_it() {
    for (i, (name, shapes, kernels, f)) in cases().into_iter().enumerate() {
        let naive = Arc::new(Naive::default());
        let result = check_gradients_on(naive.clone(), &inputs(&shapes, i as u64), f);
        assert!(result.is_ok(), "{name} on the naive backend: {result:?}");
        for k in kernels {
            assert!(naive.count(k) > 0, "{name} did not call the backend's `{k}`: it bypasses the seam");
        }
    }
}

/// Forward values and every input's gradient on one backend.
pub(crate) fn run(
    backend: Arc<dyn Backend<f64>>,
    shapes: &[Vec<usize>],
    seed: u64,
    f: fn(&mut Graph<f64>, &[Var]) -> Result<Var>,
) -> Vec<Vec<f64>> {
    let mut g = Graph::<f64>::new();
    g.set_backend(backend);
    let ps: Vec<_> = inputs(shapes, seed)
        .into_iter()
        .enumerate()
        .map(|(i, inp)| g.add_param(&format!("in{i}"), &inp.shape, inp.values, true).unwrap())
        .collect();
    let vars: Vec<Var> = ps.iter().map(|&p| g.use_param(p)).collect();
    let y = f(&mut g, &vars).unwrap();
    let sq = g.mul(y, y).unwrap();
    let loss = g.sum(sq, None, false).unwrap();
    g.zero_grads();
    g.backward(loss).unwrap();
    let mut out = vec![g.value(y).to_vec()];
    out.extend(ps.iter().map(|&p| g.param_grad(p).to_vec()));
    out
}

/// The backward pass goes through the backend too: the listed kernels are called again by `backward`
/// (after the forward pass's calls), so an op whose backward bypassed the seam would fail here.
#[test]
fn backward_passes_call_the_backend() {
    let backward: [(&str, &[&str]); 11] = [
        ("linear+tanh", &["gemm", "unary_backward", "col_sum_add"]),
        ("batched matmul", &["gemm"]),
        ("sigmoid", &["unary_backward"]),
        ("mul broadcast", &["binary_backward"]),
        ("softmax axis 1", &["softmax_backward"]),
        ("permute", &["permute_backward"]),
        ("concat", &["copy_blocks"]),
        ("index_select", &["scatter_add"]),
        ("mean axis 1", &["reduce_backward"]),
        ("conv2d + gelu", &["conv2d_backward", "copy_blocks"]),
        ("batch norm", &["batch_norm_sums", "batch_norm_backward_x", "copy_blocks"]),
    ];
    let all = cases();
    for (name, kernels) in backward {
        let (_, shapes, _, f) = all.iter().find(|c| c.0 == name).unwrap_or_else(|| panic!("no case {name}"));
        let naive = Arc::new(Naive::default());
        let mut g = Graph::<f64>::new();
        g.set_backend(naive.clone());
        let ps: Vec<_> = inputs(shapes, 1)
            .into_iter()
            .enumerate()
            .map(|(i, inp)| g.add_param(&format!("in{i}"), &inp.shape, inp.values, true).unwrap())
            .collect();
        let vars: Vec<Var> = ps.iter().map(|&p| g.use_param(p)).collect();
        let y = f(&mut g, &vars).unwrap();
        let loss = g.sum(y, None, false).unwrap();
        let before: Vec<usize> = kernels.iter().map(|k| naive.count(k)).collect();
        g.zero_grads();
        g.backward(loss).unwrap();
        for (k, b) in kernels.iter().zip(before) {
            assert!(naive.count(k) > b, "{name}: backward did not call the backend's `{k}`");
        }
    }
}

#[test]
fn the_naive_backend_and_the_cpu_backend_agree() {
    for (i, (name, shapes, _, f)) in cases().into_iter().enumerate() {
        let cpu = run(Arc::new(kiln_core::Cpu), &shapes, i as u64, f);
        let naive = run(Arc::new(Naive::default()), &shapes, i as u64, f);
        for (j, (c, n)) in cpu.iter().zip(&naive).enumerate() {
            let worst = c.iter().zip(n).map(|(a, b)| (a - b).abs() / a.abs().max(1.0)).fold(0.0, f64::max);
            assert!(
                worst < 1e-12,
                "{name}: {} differs by {worst:e}",
                if j == 0 { "output".to_string() } else { format!("gradient {}", j - 1) }
            );
        }
    }
}

#[test]
fn a_new_graph_runs_on_the_cpu() {
    assert_eq!(Graph::<f32>::new().backend().name(), "cpu");
}
