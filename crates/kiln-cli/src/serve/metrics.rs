//! `GET /metrics` in Prometheus' text format (version 0.0.4), written by hand: requests and errors by route
//! and status, a latency histogram, a histogram of instances per prediction request, and the predictions in
//! progress (the queue's depth). Counters are atomics and one small map under a mutex; a request touches each
//! once.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Upper bounds of the latency buckets, in seconds.
const LATENCY: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0];
/// Upper bounds of the batch-size buckets, in instances.
const SIZES: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 256.0];

struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum of observations in millionths, to stay an integer atomic.
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
    fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micro.fetch_add((v * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

pub struct Metrics {
    /// (route, status) → requests.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Histogram,
    batch: Histogram,
    /// Instances per batch run (several requests gathered by the batcher).
    executed: Histogram,
    /// Predictions accepted and not yet answered.
    pub in_progress: AtomicUsize,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(&LATENCY),
            batch: Histogram::new(&SIZES),
            executed: Histogram::new(&SIZES),
            in_progress: AtomicUsize::new(0),
        }
    }

    /// One answered request: its route pattern (`/v1/models/{name}/predict`), status and seconds.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((route.to_string(), status)).or_insert(0) += 1;
        self.latency.observe(seconds);
    }

    /// One prediction request of `n` instances.
    pub fn batch(&self, n: usize) {
        self.batch.observe(n as f64);
    }

    /// One batch of `n` instances run by a batcher.
    pub fn executed(&self, n: usize) {
        self.executed.observe(n as f64);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone();
        out +=
            "# HELP kiln_requests_total Requests answered, by route and status.\n# TYPE kiln_requests_total counter\n";
        for ((route, status), n) in &requests {
            let _ = writeln!(out, "kiln_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out += "# HELP kiln_errors_total Requests answered with a status of 400 or more.\n# TYPE kiln_errors_total counter\n";
        let errors: u64 = requests.iter().filter(|((_, s), _)| *s >= 400).map(|(_, n)| n).sum();
        let _ = writeln!(out, "kiln_errors_total {errors}");
        self.latency.write(&mut out, "kiln_request_seconds", "Time from request to answer.");
        self.batch.write(&mut out, "kiln_predict_instances", "Instances per prediction request.");
        self.executed.write(&mut out, "kiln_batch_instances", "Instances per batch run (requests gathered).");
        let _ = writeln!(
            out,
            "# HELP kiln_queue_depth Predictions accepted and not yet answered.\n# TYPE kiln_queue_depth gauge\n\
             kiln_queue_depth {}",
            self.in_progress.load(Ordering::Relaxed)
        );
        out
    }
}
