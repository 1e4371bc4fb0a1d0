//! Times single ops of the reference CNN at batch 64, forward and forward+backward, so a change to one
//! kernel can be measured alone: `cargo run --release -p kiln-bench --bin opbench [NAME-PART]`.

use kiln_core::{Graph, Padding, ParamId, Result, Rng, UnaryOp, Var};
use std::time::Instant;

fn param(g: &mut Graph<f32>, shape: &[usize], rng: &mut Rng, trainable: bool) -> ParamId {
    let n = shape.iter().product();
    // Names must be unique in a graph's store.
    let name = format!("p{}", g.params().len());
    g.add_param(&name, shape, (0..n).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect(), trainable).unwrap()
}

/// Median milliseconds of `f` over repeated runs (after warm-up).
fn time(mut f: impl FnMut() -> Result<()>) -> f64 {
    for _ in 0..5 {
        f().unwrap();
    }
    let mut t: Vec<f64> = (0..50)
        .map(|_| {
            let s = Instant::now();
            f().unwrap();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

type Build = fn(&mut Graph<f32>, &[ParamId]) -> Result<Var>;

fn main() {
    let mut rng = Rng::new(1);
    let cases: Vec<(&str, Vec<Vec<usize>>, Build)> = vec![
        ("conv2d 3x3x1x32 + relu (no input grad)", vec![vec![64, 28, 28, 1], vec![3, 3, 1, 32], vec![32]], |g, p| {
            let x = g.use_param(p[0]);
            let (w, b) = (g.use_param(p[1]), g.use_param(p[2]));
            g.conv2d(x, w, Some(b), (1, 1), Padding::Valid, Some(UnaryOp::Relu))
        }),
        (
            "conv2d 3x3x1x32 + relu + max_pool 2x2 fused (no input grad)",
            vec![vec![64, 28, 28, 1], vec![3, 3, 1, 32], vec![32]],
            |g, p| {
                let x = g.use_param(p[0]);
                let (w, b) = (g.use_param(p[1]), g.use_param(p[2]));
                g.conv2d_max_pool(x, w, Some(b), (1, 1), Padding::Valid, Some(UnaryOp::Relu), (2, 2))
            },
        ),
        ("max_pool2d 2x2 on 26x26x32", vec![vec![64, 26, 26, 32]], |g, p| {
            let x = g.use_param(p[0]);
            g.max_pool2d(x, (2, 2), (2, 2), Padding::Valid)
        }),
        ("linear 5408->128 + relu", vec![vec![64, 5408], vec![5408, 128], vec![128]], |g, p| {
            let (x, w, b) = (g.use_param(p[0]), g.use_param(p[1]), g.use_param(p[2]));
            g.linear(x, w, Some(b), Some(UnaryOp::Relu))
        }),
        ("attention 32 texts x 128 tokens, 12 heads of 32", vec![vec![4096, 384]; 3], |g, p| {
            let (q, k, v) = (g.use_param(p[0]), g.use_param(p[1]), g.use_param(p[2]));
            g.attention(q, k, v, 32, 128, 12, None, false)
        }),
        ("linear 384->384 on 32 texts x 128 tokens", vec![vec![4096, 384], vec![384, 384], vec![384]], |g, p| {
            let (x, w, b) = (g.use_param(p[0]), g.use_param(p[1]), g.use_param(p[2]));
            g.linear(x, w, Some(b), None)
        }),
        ("relu on 64x26x26x32", vec![vec![64, 26, 26, 32]], |g, p| {
            let x = g.use_param(p[0]);
            g.relu(x)
        }),
    ];
    println!("| op (batch 64) | forward ms | forward+backward ms |");
    println!("|---|---|---|");
    // An argument keeps only the cases whose name contains it (for profiling one op).
    let only = std::env::args().nth(1).unwrap_or_default();
    for (name, shapes, build) in cases.into_iter().filter(|c| c.0.contains(only.as_str())) {
        let mut g = Graph::<f32>::new();
        // The reference model's first layer reads the images, which need no gradient.
        let frozen = name.contains("no input grad");
        let ps: Vec<ParamId> =
            shapes.iter().enumerate().map(|(i, s)| param(&mut g, s, &mut rng, !(frozen && i == 0))).collect();
        let fwd = time(|| {
            g.reset();
            g.set_recording(false);
            build(&mut g, &ps).map(|_| ())
        });
        g.set_recording(true);
        let both = time(|| {
            g.reset();
            let y = build(&mut g, &ps)?;
            let s = g.sum(y, None, false)?;
            g.backward(s)
        });
        println!("| {name} | {fwd:.3} | {both:.3} |");
    }

    // The matrix products of the dense layer's step (forward; weight gradient; input gradient), alone; then
    // a MiniLM layer's at 640 tokens (32 texts of 20: attention projections, feed-forward in and out) and at
    // 16 (one text).
    if !"matrix products".contains(only.as_str()) && !only.is_empty() {
        return;
    }
    println!("\n| matrix product m x k x n | threads | ms | GFLOP/s |");
    println!("|---|---|---|---|");
    let encoder =
        [(640, 384, 384), (640, 384, 1536), (640, 1536, 384), (16, 384, 384), (16, 384, 1536), (16, 1536, 384)];
    for (m, k, n) in [(64, 5408, 128), (5408, 64, 128), (64, 128, 5408), (256, 5408, 128)].into_iter().chain(encoder) {
        for threads in [1, 2] {
            kiln_core::ops::set_num_threads(threads);
            let mut g = Graph::<f32>::new();
            let (pa, pb) = (param(&mut g, &[m, k], &mut rng, false), param(&mut g, &[k, n], &mut rng, false));
            g.set_recording(false);
            let ms = time(|| {
                g.reset();
                let (a, b) = (g.use_param(pa), g.use_param(pb));
                g.matmul(a, b).map(|_| ())
            });
            println!("| {m} x {k} x {n} | {threads} | {ms:.3} | {:.0} |", 2.0 * (m * k * n) as f64 / ms / 1e6);
        }
    }
    kiln_core::ops::set_num_threads(0);
}
