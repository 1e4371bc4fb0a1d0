//! A steady-state training step makes no heap allocation: every buffer comes back from the graph's pool and
//! kiln's matrix-product kernel reuses its packing buffers. On a processor without AVX-512, products go to
//! the `gemm` crate, which allocates its packing buffers inside each call; those are counted apart (kiln
//! marks those calls) and reported, not hidden, and are only allowed there.

mod counting;

use counting::*;
use kiln::prelude::*;
use std::sync::atomic::Ordering;

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn training_steps_after_the_first_do_not_allocate() {
    let mut m = Sequential::new(&[28, 28, 1]);
    m.add(Conv2D::new(32, 3).activation(Activation::Relu)).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    // Convolutions whose input needs a gradient too: alone, and fused with the pooling after it.
    m.add(Conv2D::new(16, 3).activation(Activation::Relu)).unwrap();
    m.add(Conv2D::new(16, 3).activation(Activation::Relu)).unwrap();
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
    assert_no_kernel_allocations(kernel);
}
