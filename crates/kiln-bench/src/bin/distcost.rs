//! When does data-parallel training stop paying? A cost model for `mpirun -np N kiln train`, from figures
//! measured on this machine and a network the table states.
//!
//!     cargo run --release -p kiln-bench --bin distcost [-- --steps 12 --json]
//!
//! kiln's `batch_size` is the global batch: N ranks each take 64/N of its samples, run forward and backward,
//! sum the gradients (one `MPI_Allreduce` per step, not overlapped with the backward pass), and each takes the
//! whole optimizer step. So one step on N machines takes
//!
//!     T(N) = step(64/N) + C(N),   C(N) = 2(N-1)·α + 2(N-1)/N · S/β   (ring all-reduce of S bytes)
//!
//! where step(b) is `train_on_batch` on b samples measured here (its optimizer step over every parameter
//! included: that part does not shrink with N), S = 4 bytes per trainable parameter, α the latency of one
//! message and β the bandwidth of one link. Speedup(N) = step(64) / T(N). An example "stops scaling" at the
//! last N (powers of two, at most the batch) where the efficiency Speedup/N is still at least 1/2.
//!
//! For a model whose first layer embeds token ids (the reviews bag), a step touches few rows of the table.
//! Gathering those rows (ids and values, an all-gather) instead of summing the dense table is what the
//! issue asks to weigh; its bytes come from the real batches here: (N-1)·α + (N-1)/N · Σ_r rows_r·(4·dim+4)/β
//! for the table, beside the dense sum of the other parameters. kiln sends the rows when they are fewer values
//! than the table, and the speedups count what it sends.

use kiln::config::{Config, DataKind};
use kiln::optim::Optimizer;
use kiln::prelude::*;
use std::time::Instant;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const BATCH: usize = 64;

/// A network between machines: the latency of one message (s) and one link's bandwidth (bytes/s), as
/// vendors state them; an all-reduce reaches 70-90% of the line rate, so these are the optimistic side.
const NETWORKS: [(&str, f64, f64); 3] =
    [("10 GbE (TCP)", 30e-6, 1.25e9), ("25 GbE (TCP)", 20e-6, 3.125e9), ("100 Gb/s InfiniBand", 2e-6, 12.5e9)];

const EXAMPLES: [(&str, &str); 7] = [
    ("mnist cnn", "examples/mnist/mnist.toml"),
    ("adult mlp", "examples/adult/adult.toml"),
    ("adult ft-transformer", "examples/adult/ft_transformer.toml"),
    ("german-credit mlp", "examples/german-credit/credit.toml"),
    ("reviews bag", "examples/reviews/sentiment.toml"),
    ("reviews gru", "examples/reviews/sentiment_gru.toml"),
    ("reviews transformer", "examples/reviews/sentiment_transformer.toml"),
];

/// One example's training batches: x and y for any rows of its training set.
enum Data {
    Images { x: Tensor, y: Tensor },
    Table { table: kiln::data::table::Table, prep: Box<kiln::data::prepare::Preparation> },
}

impl Data {
    fn batch(&self, rows: &[usize]) -> kiln::Result<(Vec<Tensor>, Vec<Tensor>)> {
        match self {
            Data::Images { x, y } => Ok((vec![x.select_rows(rows)], vec![y.select_rows(rows)])),
            Data::Table { table, prep } => {
                // A single output's targets come as (n,); the loss wants them shaped like the output, (n, 1).
                let y = prep.target_values(table, rows)?.into_iter().map(|t| match t.shape() {
                    [n] if !matches!(prep.task(), kiln::data::prepare::Task::Multiclass { .. }) => {
                        Tensor::new(&[*n, 1], t.into_data())
                    }
                    _ => Ok(t),
                });
                Ok((prep.transform_inputs(table, rows)?, y.collect::<kiln::Result<_>>()?))
            }
        }
    }
}

/// What was measured for one example.
struct Measured {
    name: &'static str,
    params: usize,
    /// Median seconds of one `train_on_batch` at each per-rank batch 64, 32, ..., 1.
    step: Vec<(usize, f64)>,
    optimizer: f64,
    sparse: Option<Sparse>,
}

/// For an id-embedding model: its table, and for each N the mean over batches of Σ over the N shards of the
/// distinct ids each shard uses.
struct Sparse {
    rows: usize,
    dim: usize,
    per_n: Vec<(usize, f64)>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A fixed shuffle of 0..n (a linear congruential walk: the figures need no statistical quality).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut s = seed;
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        v.swap(i, (s >> 33) as usize % (i + 1));
    }
    v
}

fn measure(name: &'static str, config: &str, steps: usize) -> kiln::Result<Measured> {
    let cfg = Config::from_file(format!("{ROOT}/{config}"))?;
    let (mut model, data, train_rows) = match cfg.kind()? {
        DataKind::Images => {
            let train = kiln::data::mnist::load_split(&cfg.data.path, "train")?;
            let y = cfg.targets(&train)?;
            let n = train.x.rows();
            (cfg.build_model()?, Data::Images { x: train.x, y }, (0..n).collect::<Vec<_>>())
        }
        DataKind::Table => {
            let table = cfg.read_table()?;
            let types = cfg.types(&table)?;
            let (_, train) = kiln::tabular::split(&cfg, &table, &types)?;
            let model = kiln::tabular::untrained_model(&cfg)?;
            let prep = Box::new(model.preparation().cloned().expect("a table model has its preparation"));
            (model, Data::Table { table, prep }, train)
        }
        DataKind::Interactions => unreachable!("recommendation configs train in one process"),
    };
    let order = shuffled(train_rows.len(), 7);
    let rows_at = |i: usize, b: usize| -> Vec<usize> {
        (0..b).map(|j| train_rows[order[(i * BATCH + j) % order.len()]]).collect()
    };
    let params = model.param_counts().0;

    // One `train_on_batch` per per-rank batch size; the batches themselves made beforehand.
    let mut step = Vec::new();
    let mut b = BATCH;
    while b >= 1 {
        let batches: Vec<(Vec<Tensor>, Vec<Tensor>)> =
            (0..steps + 3).map(|i| data.batch(&rows_at(i, b))).collect::<kiln::Result<_>>()?;
        let mut secs = Vec::new();
        for (i, (x, y)) in batches.iter().enumerate() {
            let (x, y): (Vec<&Tensor>, Vec<&Tensor>) = (x.iter().collect(), y.iter().collect());
            let start = Instant::now();
            model.train_on_batch(&x, &y)?;
            if i >= 3 {
                secs.push(start.elapsed().as_secs_f64());
            }
        }
        step.push((b, median(secs)));
        b /= 2;
    }

    // The optimizer's step alone, over a copy of the parameters with gradients of a plausible size.
    let mut ps: Vec<_> = model.graph().params().to_vec();
    let mut grads: Vec<Vec<f32>> =
        ps.iter().map(|p| (0..p.value.len()).map(|i| ((i % 17) as f32 - 8.0) * 1e-3).collect()).collect();
    let mut opt = Optimizer::new(model.compile_config().expect("compiled").optimizer.clone());
    let mut secs = Vec::new();
    for i in 0..steps + 3 {
        let start = Instant::now();
        opt.step(&mut ps, &mut grads);
        if i >= 3 {
            secs.push(start.elapsed().as_secs_f64());
        }
    }
    let optimizer = median(secs);

    // Distinct ids per shard, where the model's one input is a text's ids into its first (embedding) table.
    let sparse = match (&data, model.graph().params().first()) {
        (Data::Table { prep, .. }, Some(p))
            if prep.features.len() == 1
                && prep.inputs.is_empty()
                && p.shape.rank() == 2
                && matches!(&prep.features[0].kind,
                    kiln::data::prepare::FeatureKind::Text { opts, .. }
                        if opts.output == kiln::data::text::TextOutput::Ids) =>
        {
            let dims = p.shape.dims();
            let batches = 20;
            let mut per_n = Vec::new();
            let mut n = 1;
            while n <= BATCH {
                let mut total = 0usize;
                for i in 0..batches {
                    let (x, _) = data.batch(&rows_at(i, BATCH))?;
                    for r in 0..n {
                        let part = kiln::dist::shard(BATCH, r, n);
                        let w = x[0].row_len();
                        let mut ids: Vec<u32> = x[0].data()[part.start * w..part.end * w]
                            .iter()
                            .map(|&v| v as u32)
                            .filter(|&v| v != 0)
                            .collect();
                        ids.sort_unstable();
                        ids.dedup();
                        total += ids.len();
                    }
                }
                per_n.push((n, total as f64 / batches as f64));
                n *= 2;
            }
            Some(Sparse { rows: dims[0], dim: dims[1], per_n })
        }
        _ => None,
    };
    Ok(Measured { name, params, step, optimizer, sparse })
}

/// Seconds of a ring all-reduce of `bytes` over `n` machines.
fn allreduce(n: usize, bytes: f64, (alpha, beta): (f64, f64)) -> f64 {
    if n == 1 {
        return 0.0;
    }
    let n = n as f64;
    2.0 * (n - 1.0) * alpha + 2.0 * (n - 1.0) / n * bytes / beta
}

/// Seconds of one step's sums over `n` machines as kiln makes them: dense, and an id-embedding table as its
/// used rows when they are fewer values than the table (`dist::GradSums`).
fn comm(m: &Measured, n: usize, net: (f64, f64)) -> f64 {
    let dense = allreduce(n, m.params as f64 * 4.0, net);
    let Some(Sparse { rows, dim, per_n }) = &m.sparse else { return dense };
    let ids = per_n.iter().find(|(k, _)| *k == n).map_or(f64::MAX, |x| x.1);
    if ids * (*dim as f64 + 1.0) >= (rows * dim) as f64 {
        return dense;
    }
    allgather(n, ids * (4.0 * *dim as f64 + 4.0), net) + allreduce(n, (m.params - rows * dim) as f64 * 4.0, net)
}

/// Seconds of a ring all-gather where the n machines together contribute `bytes`.
fn allgather(n: usize, bytes: f64, (alpha, beta): (f64, f64)) -> f64 {
    if n == 1 {
        return 0.0;
    }
    let n = n as f64;
    (n - 1.0) * alpha + (n - 1.0) / n * bytes / beta
}

fn main() -> kiln::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = args.iter().skip_while(|a| *a != "--steps").nth(1).map_or(12, |v| v.parse().expect("--steps N"));
    let only: Option<&String> = args.iter().skip_while(|a| *a != "--only").nth(1);
    let threads = kiln::threads::current();
    println!(
        "# data-parallel cost model: global batch {BATCH}, per-step times measured here ({threads} threads per \
         machine), ring all-reduce over a stated network\n"
    );
    let mut all = Vec::new();
    for (name, config) in EXAMPLES {
        if only.is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let m = measure(name, config, steps)?;
        let steps: Vec<String> = m.step.iter().map(|(b, s)| format!("{b}: {:.2}", s * 1e3)).collect();
        println!(
            "{name} ({config}): {} trainable parameters ({:.2} MB per sum), optimizer step {:.2} ms; step ms by \
             per-rank batch {}",
            group(m.params),
            m.params as f64 * 4e-6,
            m.optimizer * 1e3,
            steps.join(", ")
        );
        all.push(m);
    }
    let ns: Vec<usize> = (0..).map(|k| 1usize << k).take_while(|&n| n <= BATCH).collect();
    for &(net, alpha, beta) in &NETWORKS {
        println!(
            "\n## {net}: α {:.0} µs, β {:.2} GB/s\n\n| example | speedup at N = {} | efficient (≥ 0.5) up to \
             | fastest at |\n|---|---|---|---|",
            alpha * 1e6,
            beta * 1e-9,
            ns[1..].iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" / ")
        );
        for m in &all {
            let t1 = m.step[0].1;
            let speed: Vec<(usize, f64)> =
                ns.iter().zip(&m.step).map(|(&n, &(_, s))| (n, t1 / (s + comm(m, n, (alpha, beta))))).collect();
            let last_ok = speed.iter().take_while(|(n, s)| s / *n as f64 >= 0.5).last().map_or(1, |x| x.0);
            let best = speed.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)).expect("N = 1");
            let cells: Vec<String> = speed[1..].iter().map(|(_, s)| format!("{s:.2}x")).collect();
            println!("| {} | {} | N = {} | N = {} ({:.2}x) |", m.name, cells.join(" / "), last_ok, best.0, best.1);
        }
    }
    for m in &all {
        let Some(Sparse { rows, dim, per_n }) = &m.sparse else { continue };
        let table = rows * dim;
        let rest = (m.params - table) as f64 * 4.0;
        println!(
            "\n## {}: the embedding table ({rows} x {dim}, {:.1} MB) summed dense or its used rows gathered\n\n| \
             network | N | distinct ids, all shards | dense all-reduce ms | gathered rows ms (+ dense rest) | \
             gathered / dense |\n|---|---|---|---|---|---|",
            m.name,
            table as f64 * 4e-6
        );
        for &(net, alpha, beta) in &NETWORKS {
            for &(n, ids) in per_n.iter().filter(|(n, _)| [2, 8, 32].contains(n)) {
                let dense = allreduce(n, m.params as f64 * 4.0, (alpha, beta));
                let gathered =
                    allgather(n, ids * (4.0 * *dim as f64 + 4.0), (alpha, beta)) + allreduce(n, rest, (alpha, beta));
                println!(
                    "| {net} | {n} | {ids:.0} | {:.2} | {:.2} | {:.2}x |",
                    dense * 1e3,
                    gathered * 1e3,
                    gathered / dense
                );
            }
        }
    }
    Ok(())
}

fn group(n: usize) -> String {
    kiln::model::group(n)
}
