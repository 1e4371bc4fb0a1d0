//! A steady-state training step makes no heap allocation: every buffer comes back from the graph's pool and
//! kiln's matrix-product kernel reuses its packing buffers. On a processor without AVX-512, products go to
//! the `gemm` crate, which allocates its packing buffers inside each call; those are counted apart (kiln
//! marks those calls) and reported, not hidden, and are only allowed there.

use kiln::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static OURS: AtomicUsize = AtomicUsize::new(0);
static KERNEL: AtomicUsize = AtomicUsize::new(0);
/// Sizes of the first allocations of kiln's own, for the failure message.
static SIZES: [AtomicUsize; 16] = [const { AtomicUsize::new(0) }; 16];

fn count(l: Layout) {
    if !COUNTING.load(Ordering::Relaxed) {
        return;
    }
    if kiln::core::ops::in_matmul_kernel() {
        KERNEL.fetch_add(1, Ordering::Relaxed);
    } else {
        let i = OURS.fetch_add(1, Ordering::Relaxed);
        if i < SIZES.len() {
            SIZES[i].store(l.size(), Ordering::Relaxed);
        }
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count(l);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn training_steps_after_the_first_do_not_allocate() {
    let mut m = Sequential::new(&[28, 28, 1]);
    m.add(Conv2D::new(32, 3).activation(Activation::Relu)).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(128).activation(Activation::Relu)).unwrap();
    m.add(Dropout::new(0.5)).unwrap();
    m.add(Dense::new(10).activation(Activation::Softmax)).unwrap();
    m.compile(Adam::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    let mut rng = kiln::core::Rng::new(0);
    let x = Tensor::new(&[64, 28, 28, 1], (0..64 * 784).map(|_| rng.uniform() as f32).collect()).unwrap();
    let y = kiln::data::one_hot(&(0..64).map(|i| (i % 10) as u8).collect::<Vec<_>>(), 10).unwrap();
    for _ in 0..3 {
        m.train_on_batch(&x, &y).unwrap();
    }
    COUNTING.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        m.train_on_batch(&x, &y).unwrap();
    }
    COUNTING.store(false, Ordering::SeqCst);
    let (ours, kernel) = (OURS.load(Ordering::SeqCst), KERNEL.load(Ordering::SeqCst));
    let sizes: Vec<usize> = SIZES.iter().map(|s| s.load(Ordering::SeqCst)).take(ours).collect();
    println!("5 steady-state steps: {ours} allocations by kiln, {kernel} inside the gemm crate's calls");
    assert_eq!(ours, 0, "kiln allocated {ours} times in 5 steady-state steps (first sizes {sizes:?})");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::env::var_os("KILN_GEMM_CRATE").is_none() {
        assert_eq!(kernel, 0, "kiln's own kernel runs every f32 product here, so nothing may reach the gemm crate");
    } else {
        // Straight to the terminal (the harness captures print!): this part was not checked here.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: products go to the gemm crate here (no AVX-512, or KILN_GEMM_CRATE set): its own allocations \
             were counted apart, not required to be zero"
        );
    }
}
