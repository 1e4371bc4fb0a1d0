//! `fit`'s steady state makes no heap allocation per step. A callback reads a counting allocator's total
//! after every step, so the allocations of each step are known. What holds, and is asserted:
//!
//! - after the first epoch, every step but an epoch's first allocates nothing of kiln's own;
//! - an epoch's first step carries the work between epochs (the previous epoch's validation pass, its log
//!   and history entry, the new epoch's sums), a count per epoch that does not depend on the number of
//!   steps: two runs whose epochs have 8 and 32 steps allocate exactly as often in each epoch from the
//!   second on, and few times (a small constant).
//!
//! Allocations inside the `gemm` crate's calls (on processors without AVX-512) are counted apart, as in
//! no_alloc.rs, and must be zero where kiln's own kernel runs every product.

mod counting;

use counting::*;
use kiln::callbacks::Callback;
use kiln::prelude::*;
use std::sync::atomic::Ordering;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocation count after each step, into room reserved beforehand (pushing does not allocate).
struct Marks(Vec<usize>);

impl Callback for Marks {
    fn name(&self) -> String {
        "marks".into()
    }
    fn on_batch_end(&mut self, _model: &mut Sequential, _step: u64, _loss: f64) -> kiln::Result<()> {
        assert!(self.0.len() < self.0.capacity(), "room reserved for every step");
        self.0.push(OURS.load(Ordering::SeqCst));
        Ok(())
    }
}

const EPOCHS: usize = 4;
const BATCH: usize = 16;

/// Fits a small CNN with dropout, Adam, accuracy and validation data for `EPOCHS` epochs of `steps` steps
/// (the last batch short); returns each epoch's allocations per step.
fn allocations_per_step(steps: usize) -> Vec<Vec<usize>> {
    let n = steps * BATCH - 5;
    let mut rng = kiln::core::Rng::new(steps as u64);
    let mut images = |n: usize| Tensor::new(&[n, 10, 10, 1], (0..n * 100).map(|_| rng.uniform() as f32).collect());
    let (x, vx) = (images(n).unwrap(), images(40).unwrap());
    let labels = |n: usize| kiln::data::one_hot(&(0..n).map(|i| (i % 3) as u8).collect::<Vec<_>>(), 3).unwrap();
    let (y, vy) = (labels(n), labels(40));
    let mut m = Sequential::new(&[10, 10, 1]);
    m.add(Conv2D::new(4, 3).activation(Activation::Relu)).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(16).activation(Activation::Relu)).unwrap();
    m.add(Dropout::new(0.3)).unwrap();
    m.add(Dense::new(3).activation(Activation::Softmax)).unwrap();
    m.compile(Adam::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    let mut marks = Marks(Vec::with_capacity(EPOCHS * steps + 1));
    let opts = FitOptions {
        epochs: EPOCHS,
        batch_size: BATCH,
        validation_data: Some(((&vx).into(), (&vy).into())),
        ..Default::default()
    };
    OURS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let h = m.fit_with(&x, &y, opts, &mut [&mut marks]);
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(h.unwrap().epochs.len(), EPOCHS);
    let marks = marks.0;
    assert_eq!(marks.len(), EPOCHS * steps);
    // Allocations of each step: since the previous step's end (the first step: since the fit started).
    let per_step: Vec<usize> =
        marks.iter().enumerate().map(|(i, &c)| c - if i == 0 { 0 } else { marks[i - 1] }).collect();
    per_step.chunks(steps).map(|c| c.to_vec()).collect()
}

#[test]
fn fit_allocates_nothing_per_step_after_the_first_epoch() {
    let short = allocations_per_step(8);
    let long = allocations_per_step(32);
    for (steps, run) in [(8, &short), (32, &long)] {
        println!("{steps} steps per epoch: allocations per step, by epoch: {run:?}");
        for (e, epoch) in run.iter().enumerate().skip(1) {
            let busy: Vec<(usize, usize)> =
                epoch.iter().enumerate().skip(1).filter(|&(_, &a)| a > 0).map(|(s, &a)| (s + 1, a)).collect();
            assert!(busy.is_empty(), "{steps} steps: epoch {} allocates at (step, times) {busy:?}", e + 1);
        }
    }
    // What the epochs' first steps carry does not grow with the steps, and stays small. The second epoch's
    // also carries the first validation pass, which warms the inference tape it borrows (its buffers are
    // reused by every later pass): from the third epoch on, each boundary costs the same.
    for e in 1..EPOCHS {
        let (a, b) = (short[e][0], long[e][0]);
        assert_eq!(a, b, "epoch {}: {a} allocations at the boundary with 8 steps, {b} with 32", e + 1);
        assert!(a < if e == 1 { 80 } else { 40 }, "epoch {}: {a} allocations at the epoch boundary", e + 1);
        if e > 1 {
            assert_eq!(a, short[2][0], "epoch {}: boundaries from the third epoch on cost the same", e + 1);
        }
    }
    let kernel = KERNEL.load(Ordering::SeqCst);
    println!("{kernel} allocations inside the gemm crate's calls in all");
    assert_no_kernel_allocations(kernel);
}
