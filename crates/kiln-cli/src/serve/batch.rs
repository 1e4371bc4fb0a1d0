//! Dynamic batching: the prediction requests for one model go to its batcher, which takes the first waiting
//! request, gathers the ones that arrive within `wait` (up to `max` instances), runs them as one batch on a
//! blocking thread and hands each request its own rows of the answer. While a batch runs, the next one
//! gathers, so under load batches grow by themselves and an idle server answers after `wait` at most.
//!
//! A batch fails as a whole when one request's instances are wrong (a missing column, a bad image), so a
//! failed batch of several requests is run again one request at a time: each request gets its own answer or
//! its own error, never another's.

use super::metrics::Metrics;
use super::{Served, instances};
use kiln::Result;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

/// One request waiting for its predictions; `_slot` holds its place in the bound on predictions in
/// progress until the answer is made (also when the client has stopped waiting).
pub struct Job {
    pub instances: Vec<Value>,
    pub reply: oneshot::Sender<Result<Vec<Value>>>,
    pub slot: (OwnedSemaphorePermit, super::InProgress),
}

impl Job {
    /// Gives the place back, then the answer: a client that sends its next request as soon as it has the
    /// answer finds the place free (the other order refused it with 503 under full load).
    fn finish(self, answer: Result<Vec<Value>>) {
        let Job { reply, slot, .. } = self;
        drop(slot);
        let _ = reply.send(answer);
    }
}

/// A lone request of at most this many instances runs on the batcher's own worker, while such requests take
/// under `INLINE_UNDER`.
const INLINE: usize = 8;
const INLINE_UNDER: Duration = Duration::from_millis(1);

#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Instances per batch at most (a single request with more runs alone, whole).
    pub max: usize,
    /// How long the first request of a batch waits for others.
    pub wait: Duration,
}

/// Starts `served`'s batcher on the runtime; requests go in through the returned sender.
pub fn spawn(served: Arc<Served>, batching: Batching, metrics: Arc<Metrics>) -> mpsc::UnboundedSender<Job> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(served, batching, metrics, rx));
    tx
}

async fn run(served: Arc<Served>, batching: Batching, metrics: Arc<Metrics>, mut rx: mpsc::UnboundedReceiver<Job>) {
    // Whether a lone small request took under INLINE_UNDER the last time one ran.
    let mut cheap = true;
    while let Some(first) = rx.recv().await {
        let mut n = first.instances.len();
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + batching.wait;
        while n < batching.max {
            // What is already waiting first: tokio's timers tick in milliseconds, so even a deadline already
            // past costs up to one tick (measured: 1.2 ms per request at one connection).
            let job = match rx.try_recv() {
                Ok(job) => job,
                Err(_) if tokio::time::Instant::now() >= deadline => break,
                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => job,
                    _ => break,
                },
            };
            n += job.instances.len();
            jobs.push(job);
        }
        // Requests whose client has gone (a closed connection, a 504) are not computed; their places free.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let n: usize = jobs.iter().map(|j| j.instances.len()).sum();
        metrics.executed(n);
        let model = served.current();
        // A panic inside drops the jobs' reply senders: their requests answer 500, the batcher goes on.
        let lone = jobs.len() == 1 && n <= INLINE;
        let started = std::time::Instant::now();
        if lone && cheap {
            // One small request of a model that answers one in well under a millisecond: computed right here,
            // on this worker. Handing it to a blocking thread and back cost more than the forward itself
            // (MNIST CNN at one connection: 7,400 requests/s that way, 9,000 here; with block_in_place 7,500).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || answer(&model, jobs)));
        } else {
            let _ = tokio::task::spawn_blocking(move || answer(&model, jobs)).await;
        }
        if lone {
            // A model slower than that (a large encoder) would hold the worker from other connections.
            cheap = started.elapsed() < INLINE_UNDER;
        }
    }
}

fn answer(model: &kiln::model::Sequential, jobs: Vec<Job>) {
    if jobs.len() == 1 {
        let job = jobs.into_iter().next().expect("one job");
        let answer = instances::predict(model, &job.instances);
        job.finish(answer);
        return;
    }
    let all: Vec<Value> = jobs.iter().flat_map(|j| j.instances.iter().cloned()).collect();
    match instances::predict(model, &all) {
        Ok(predictions) => {
            let mut rest = predictions.into_iter();
            for job in jobs {
                let mine: Vec<Value> = rest.by_ref().take(job.instances.len()).collect();
                job.finish(Ok(mine));
            }
        }
        Err(_) => {
            for job in jobs {
                let answer = instances::predict(model, &job.instances);
                job.finish(answer);
            }
        }
    }
}
