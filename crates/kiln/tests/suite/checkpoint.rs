//! Crash-safe training: checkpoints resume bit-identically (at an epoch boundary and mid-epoch after an
//! interrupt), a NaN loss stops training with the last good checkpoint intact, NaN in the data is refused.

use kiln::callbacks::{Callback, EarlyStopping};
use kiln::data::augment::Augment;
use kiln::prelude::*;
use kiln::train::stop_flag;
use std::sync::atomic::Ordering;

/// Small images, so augmentation and the convolution path take part.
fn images(n: usize) -> (Tensor, Tensor) {
    let mut rng = kiln::core::Rng::new(11);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = i % 2;
        for r in 0..8 {
            for col in 0..8 {
                let on = if c == 0 { r < 4 } else { col < 4 };
                x.push(if on { 0.8 } else { 0.1 } + 0.2 * rng.uniform() as f32);
            }
        }
        y.push(c as f32);
    }
    (Tensor::new(&[n, 8, 8, 1], x).unwrap(), Tensor::new(&[n], y).unwrap())
}

fn model() -> Sequential {
    let mut m = Sequential::new(&[8, 8, 1]).seed(4);
    m.add(Conv2D::new(16, 3).activation(Activation::Relu)).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(16).activation(Activation::Relu)).unwrap();
    m.add(Dropout::new(0.3)).unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax)).unwrap();
    m.compile(Adam::new(0.01), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    m
}

fn opts(epochs: usize, ckpt: &std::path::Path) -> FitOptions<'static> {
    FitOptions {
        epochs,
        batch_size: 16,
        validation_split: 0.2,
        seed: 9,
        augment: Some(Augment { shift: 0.1, rotation: 10.0, zoom: 0.1, horizontal_flip: true }),
        checkpoint: Some(ckpt.to_path_buf()),
        ..Default::default()
    }
}

/// A test's own temporary folder, removed when dropped.
fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Sets the stop flag after `at` steps, as the CLI's signal handler does.
struct StopAt(u64);
impl Callback for StopAt {
    fn name(&self) -> String {
        "stop_at".into()
    }
    fn on_batch_end(&mut self, _m: &mut Sequential, step: u64, _loss: f64) -> kiln::Result<()> {
        if step == self.0 {
            stop_flag().store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

// One test, so the process-wide stop flag is not shared between tests running at once.
#[test]
fn resumed_runs_end_bit_identical_to_uninterrupted_ones() {
    let tmp = tmp();
    let dir = tmp.path();
    let (x, y) = images(200);
    // Uninterrupted: 6 epochs, with early stopping (patience large enough not to fire) whose state must
    // carry over too.
    let mut full = model();
    let mut es = EarlyStopping::new("val_loss").patience(50);
    let h_full = full.fit_with(&x, &y, opts(6, &dir.join("a.ckpt")), &mut [&mut es]).unwrap();
    assert_eq!(h_full.epochs.len(), 6);

    // Stopped after epoch 3 (a process that ran 3 epochs), then resumed from its checkpoint in a fresh model.
    let mut first = model();
    let mut es = EarlyStopping::new("val_loss").patience(50);
    first.fit_with(&x, &y, opts(3, &dir.join("b.ckpt")), &mut [&mut es]).unwrap();
    drop(first);
    let (mut resumed, progress) = Sequential::load_checkpoint(dir.join("b.ckpt")).unwrap();
    assert_eq!(progress.epoch, 3);
    let mut es = EarlyStopping::new("val_loss").patience(50);
    let h = resumed
        .fit_with(&x, &y, FitOptions { resume: Some(progress), ..opts(6, &dir.join("b.ckpt")) }, &mut [&mut es])
        .unwrap();
    assert!(resumed.get_weights() == full.get_weights(), "resumed at an epoch boundary: weights differ");
    assert_eq!(h.epochs.len(), 6);
    for (a, b) in h.epochs.iter().zip(&h_full.epochs) {
        assert_eq!((a.loss, a.val_loss), (b.loss, b.val_loss));
    }

    // Interrupted mid-epoch 2 (step 15 of 10 per epoch), checkpoint written on the way out, resumed.
    let mut m = model();
    let err = m.fit_with(&x, &y, opts(6, &dir.join("c.ckpt")), &mut [&mut StopAt(15)]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("interrupted at epoch 2, batch 5 of 10") && msg.contains("c.ckpt"), "{msg}");
    let (mut resumed, progress) = Sequential::load_checkpoint(dir.join("c.ckpt")).unwrap();
    assert_eq!((progress.epoch, progress.step_in_epoch), (1, 5));
    let h = resumed.fit(&x, &y, FitOptions { resume: Some(progress), ..opts(6, &dir.join("c.ckpt")) }).unwrap();
    assert!(resumed.get_weights() == full.get_weights(), "resumed mid-epoch: weights differ");
    assert_eq!(h.epochs[1].loss, h_full.epochs[1].loss, "the interrupted epoch's loss covers all its batches");

    // A learning rate that blows the loss up in epoch 2 (10 steps per epoch; absurd from step 12): training
    // stops naming the batch and the last checkpoint, which loads and holds finite weights.
    let mut m = model();
    let schedule = Schedule::Piecewise { boundaries: vec![12], values: vec![0.01, 1e30] };
    m.compile_with(CompileConfig::new(Sgd::new(0.01), Loss::SparseCategoricalCrossentropy, &[]).schedule(schedule))
        .unwrap();
    let err = m.fit(&x, &y, opts(3, &dir.join("d.ckpt"))).unwrap_err().to_string();
    assert!(err.starts_with("training stopped: epoch 2, batch ") && err.contains("the loss became"), "{err}");
    assert!(err.contains("last good checkpoint") && err.contains("d.ckpt (end of epoch 1)"), "{err}");
    let (m, p) = Sequential::load_checkpoint(dir.join("d.ckpt")).unwrap();
    assert_eq!(p.epoch, 1);
    assert!(m.get_weights().iter().flatten().all(|v| v.is_finite()));
}

#[test]
fn nan_in_the_data_is_refused_before_any_step() {
    let (x, y) = images(50);
    let mut data = x.data().to_vec();
    data[37 * 64 + 5] = f32::NAN;
    let x = Tensor::new(&[50, 8, 8, 1], data).unwrap();
    let mut m = model();
    let before = m.get_weights();
    let err = m.fit(&x, &y, FitOptions { epochs: 1, ..Default::default() }).unwrap_err().to_string();
    assert_eq!(err, "data error: fit: x holds NaN at sample 37 (element 5)");
    assert_eq!(m.get_weights(), before);
}

#[test]
fn a_plain_model_file_is_not_a_checkpoint() {
    let tmp = tmp();
    let dir = tmp.path();
    let m = model();
    m.save(dir.join("m.safetensors")).unwrap();
    let err = Sequential::load_checkpoint(dir.join("m.safetensors")).err().unwrap().to_string();
    assert!(err.contains("not a training checkpoint"), "{err}");
}
