//! `cargo run --release -p kiln-bench [-- --epochs N --profile --models cnn,mlp --data DIR]`
//!
//! Trains the reference MNIST CNN (and an MLP) on the 60,000 MNIST training images and prints one table row
//! per model: seconds per epoch, inference images/s at batch 1 and 1000 (medians of 3 and 5 passes), peak RSS,
//! achieved GFLOP/s, and that rate as a share of the peak product rate measured in the same run.
//! Each model runs in a child process of its own, so its peak RSS is its own.

use kiln::prelude::*;
use kiln_bench::{median, peak_rss_mib};
use std::process::Command;
use std::time::Instant;

const DEFAULT_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist");

struct Args {
    epochs: usize,
    profile: bool,
    no_fusion: bool,
    models: Vec<String>,
    data: String,
    child: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        epochs: 1,
        profile: false,
        no_fusion: false,
        models: vec!["cnn".into(), "mlp".into()],
        data: DEFAULT_DATA.into(),
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--epochs" => a.epochs = val("--epochs")?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--profile" => a.profile = true,
            "--no-fusion" => a.no_fusion = true,
            "--models" => a.models = val("--models")?.split(',').map(str::to_string).collect(),
            "--data" => a.data = val("--data")?,
            "--child" => a.child = Some(val("--child")?),
            "--bench" => {} // passed by `cargo bench`
            other => {
                return Err(format!(
                    "unknown argument `{other}` (valid: --epochs N, --profile, --no-fusion, --models cnn,mlp, --data DIR)"
                ));
            }
        }
    }
    Ok(a)
}

/// FLOPs of one training step per sample: forward, and the backward matrix products (weight gradients,
/// and input gradients where the input needs one). The first layer with weights reads the data, which needs
/// no gradient, whatever layers without weights (Flatten) come before it: forward + weight gradient, ×2; the
/// others ×3. For the MLP (Flatten, Dense 784→128, ...) that first layer is at index 1.
fn train_flops_per_sample(model: &Sequential) -> f64 {
    let mut f = 0.0;
    let mut first = true;
    for l in model.layers() {
        let out: usize = l.output_shape().iter().product();
        let fan_in = match l.config() {
            kiln::nn::LayerConfig::Dense(_) => l.input_shape()[0],
            kiln::nn::LayerConfig::Conv2d(c) => c.kernel_size.0 * c.kernel_size.1 * l.input_shape()[2],
            _ => continue,
        };
        let fwd = 2.0 * (out * fan_in) as f64;
        f += fwd * if first { 2.0 } else { 3.0 };
        first = false;
    }
    f
}

/// Runs one model in this process and prints its results as one JSON line.
fn child(name: &str, args: &Args) -> kiln::Result<()> {
    let (train, test) = kiln::data::mnist::load(&args.data)?;
    let mut model = kiln_bench::mnist_model(name)?;
    model.graph_mut().set_profiling(args.profile);
    model.set_fusion(!args.no_fusion);
    let mut epoch_secs = Vec::new();
    let mut acc = 0.0;
    for e in 0..args.epochs {
        let opts = FitOptions { epochs: 1, batch_size: 64, seed: e as u64, ..Default::default() };
        let h = model.fit(&train.x, &train.y, opts)?;
        let log = h.last().expect("one epoch");
        epoch_secs.push(log.seconds);
        acc = log.metrics[0].1;
    }
    let profile = model.graph().profile().map(|p| p.rows()).unwrap_or_default();
    model.graph_mut().set_profiling(false);
    if std::env::var("KILN_PROFILE_PREDICT").is_ok() {
        model.graph_mut().set_profiling(true);
        model.predict(&test.x, 1000)?;
        for r in model.graph().profile().map(|p| p.rows()).unwrap_or_default() {
            eprintln!("predict {:?}", r);
        }
        model.graph_mut().set_profiling(false);
    }
    // One pass over the test set takes a fraction of a second, so a single timing is at the mercy of the
    // machine; the median of five is not.
    let mut rates = Vec::new();
    let mut probs = None;
    for _ in 0..5 {
        let t = Instant::now();
        probs = Some(model.predict(&test.x, 1000)?);
        rates.push(test.x.rows() as f64 / t.elapsed().as_secs_f64());
    }
    let (probs, batch1000) = (probs.expect("five passes"), median(&mut rates));
    let test_acc = probs.argmax_rows().iter().zip(&test.labels).filter(|(p, l)| **p == **l as usize).count() as f64
        / test.labels.len() as f64;
    // Batch 1 likewise: the median of three passes of 500 single images (the first pass after the large
    // batches also warms what the single-image path uses).
    let single = test.x.slice_rows(0, 500);
    let mut rates1 = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        for i in 0..single.rows() {
            model.predict(&single.slice_rows(i, i + 1), 1)?;
        }
        rates1.push(single.rows() as f64 / t.elapsed().as_secs_f64());
    }
    if std::env::var("KILN_BENCH_PASSES").is_ok() {
        eprintln!("batch-1 passes (img/s): {rates1:?}");
    }
    let batch1 = median(&mut rates1);
    let secs = median(&mut epoch_secs);
    let gflops = train_flops_per_sample(&model) * train.x.rows() as f64 / 1e9;
    let out = serde_json::json!({
        "model": name, "epoch_s": secs, "train_acc": acc, "test_acc": test_acc, "batch1": batch1, "batch1000": batch1000,
        "rss": peak_rss_mib(), "gflop": gflops,
        "profile": profile.iter().map(|(n, f, b, c)| serde_json::json!([n, f, b, c])).collect::<Vec<_>>(),
    });
    println!("{out}");
    Ok(())
}

/// The machine's f32 product rate as kiln reaches it: the median GFLOP/s of a large product (1024 x 1024 x
/// 1024) on all cores. The goal for training is a share of this, taken in the same run.
fn peak_gflops() -> f64 {
    let n = 1024;
    let mut g = kiln_core::Graph::<f32>::new();
    let mut rng = kiln_core::Rng::new(3);
    let mut p = |g: &mut kiln_core::Graph<f32>, name: &str| {
        let v = (0..n * n).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
        g.add_param(name, &[n, n], v, false).expect("fresh name")
    };
    let (pa, pb) = (p(&mut g, "a"), p(&mut g, "b"));
    g.set_recording(false);
    let mut rates: Vec<f64> = (0..9)
        .map(|_| {
            g.reset();
            let t = Instant::now();
            let (a, b) = (g.use_param(pa), g.use_param(pb));
            g.matmul(a, b).expect("square product");
            2.0 * (n * n * n) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    median(&mut rates)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Some(name) = &args.child {
        if let Err(e) = child(name, &args) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("kiln benchmark: {} ({cores} cores), AVX2+FMA kernels: {}", cpu_model(), kiln_core::simd::has_avx2());
    println!("MNIST, 60,000 training images, batch 64, Adam; median of {} epoch(s)", args.epochs);
    // The peak is taken before and after the models, and the higher kept: a share of it is the goal, so a
    // slow moment of the machine must not lower the bar.
    let peak_before = peak_gflops();
    println!(
        "\n| model | s/epoch | train GFLOP/epoch | GFLOP/s | share of peak | infer img/s (batch 1) | infer img/s (batch 1000) | peak RSS MiB | test acc |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    let me = std::env::current_exe().expect("own path");
    let mut failed = false;
    for name in &args.models {
        let mut cmd = Command::new(&me);
        cmd.args(["--child", name, "--epochs", &args.epochs.to_string(), "--data", &args.data]);
        if args.profile {
            cmd.arg("--profile");
        }
        if args.no_fusion {
            cmd.arg("--no-fusion");
        }
        let out = match cmd.output() {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                eprintln!("error: {name}: {}", String::from_utf8_lossy(&o.stderr).trim());
                failed = true;
                continue;
            }
            Err(e) => {
                eprintln!("error: cannot run {}: {e}", me.display());
                std::process::exit(1);
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(r) = text.lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) else {
            eprintln!("error: {name}: no result line");
            failed = true;
            continue;
        };
        rows.push((name.clone(), r));
    }
    let peak = peak_before.max(peak_gflops());
    for (name, r) in &rows {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {name} | {:.2} | {:.0} | {:.0} | {:.2}x | {:.0} | {:.0} | {:.0} | {:.4} |",
            f("epoch_s"),
            f("gflop"),
            f("gflop") / f("epoch_s"),
            f("gflop") / f("epoch_s") / peak,
            f("batch1"),
            f("batch1000"),
            f("rss"),
            f("test_acc")
        );
        if let Some(rows) = r["profile"].as_array().filter(|p| !p.is_empty()) {
            let total: f64 = rows.iter().map(|x| x[1].as_f64().unwrap_or(0.0) + x[2].as_f64().unwrap_or(0.0)).sum();
            println!("|   {name} profile (all epochs) | op | forward s | backward s | share | | | | |");
            for x in rows {
                let (fw, bw) = (x[1].as_f64().unwrap_or(0.0), x[2].as_f64().unwrap_or(0.0));
                println!(
                    "|  | {} | {fw:.2} | {bw:.2} | {:.0}% | | | | |",
                    x[0].as_str().unwrap_or("?"),
                    100.0 * (fw + bw) / total
                );
            }
        }
    }
    println!(
        "\npeak f32 product rate: {peak:.0} GFLOP/s (1024 x 1024 x 1024 on {cores} cores, median of 9, best of before and after)"
    );
    if failed {
        std::process::exit(1);
    }
}
