//! ModelCheckpoint every N epochs: the file is written after exactly the epochs that are multiples of N
//! (Keras's `period`/epoch-based `save_freq`: 1-based epochs N, 2N, ...), holds those epochs' weights, and
//! is left alone in between. A spy callback after the checkpoint looks at the file at every epoch's end.

use kiln::callbacks::{Callback, CallbackConfig, Mode, ModelCheckpoint, Signal};
use kiln::prelude::*;
use kiln::train::EpochLog;
use std::path::{Path, PathBuf};

/// (epoch, the model's weights, the checkpoint's weights if it exists).
type Seen = (usize, Vec<Vec<f32>>, Option<Vec<Vec<f32>>>);

/// At each epoch's end: the model's weights, and the checkpoint file's weights if it exists.
struct Spy {
    path: PathBuf,
    seen: Vec<Seen>,
}

impl Callback for Spy {
    fn name(&self) -> String {
        "spy".into()
    }
    fn on_epoch_end(&mut self, model: &mut Sequential, log: &EpochLog) -> kiln::Result<Signal> {
        let file = self.path.exists().then(|| Sequential::load(&self.path).unwrap().get_weights());
        self.seen.push((log.epoch, model.get_weights(), file));
        Ok(Signal::Continue)
    }
}

fn model_and_data() -> (Sequential, Tensor, Tensor) {
    let mut rng = kiln::core::Rng::new(9);
    let x: Vec<f32> = (0..64 * 4).map(|_| rng.normal() as f32).collect();
    let y: Vec<f32> = x.chunks(4).map(|r| (r[0] + r[1] > 0.0) as u8 as f32).collect();
    let mut m = Sequential::new(&[4]).seed(2);
    m.add(Dense::new(8).activation(Activation::Relu)).unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax)).unwrap();
    m.compile(Sgd::new(0.1), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    (m, Tensor::new(&[64, 4], x).unwrap(), Tensor::new(&[64], y).unwrap())
}

/// Runs `epochs` epochs with `checkpoint` then the spy, and checks the file after each epoch: absent before
/// the first multiple of `every`, equal to the weights of the last multiple of `every` so far.
fn check(mut checkpoint: Box<dyn Callback>, path: &Path, every: usize, epochs: usize) {
    let (mut m, x, y) = model_and_data();
    let mut spy = Spy { path: path.to_path_buf(), seen: Vec::new() };
    let opts = FitOptions { epochs, batch_size: 16, ..Default::default() };
    m.fit_with(&x, &y, opts, &mut [&mut *checkpoint, &mut spy]).unwrap();
    assert_eq!(spy.seen.len(), epochs);
    for (i, (epoch, _, file)) in spy.seen.iter().enumerate() {
        assert_eq!(*epoch, i + 1);
        let last_saved = epoch / every * every;
        match file {
            None => assert_eq!(last_saved, 0, "every {every}: no file after epoch {epoch}"),
            Some(w) => {
                assert!(last_saved > 0, "every {every}: a file after epoch {epoch}, before epoch {every}");
                let want = &spy.seen[last_saved - 1].1;
                assert!(
                    w == want,
                    "every {every}: after epoch {epoch} the file does not hold epoch {last_saved}'s weights"
                );
                // Weights change every epoch, so holding epoch `last_saved`'s means it was not rewritten since.
                if last_saved != *epoch {
                    assert!(w != &spy.seen[i].1, "every {every}: epoch {epoch}'s weights equal epoch {last_saved}'s");
                }
            }
        }
    }
    // Atomic writes leave no temporary file beside the checkpoint.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [path.file_name().unwrap()], "the folder holds only the checkpoint");
}

#[test]
fn every_2_over_5_epochs_saves_after_epochs_2_and_4() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ckpt.safetensors");
    check(Box::new(ModelCheckpoint::new(&path).every(2)), &path, 2, 5);
}

#[test]
fn every_1_saves_after_every_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ckpt.safetensors");
    check(Box::new(ModelCheckpoint::new(&path)), &path, 1, 3);
}

#[test]
fn every_3_from_a_config_over_7_epochs_saves_after_epochs_3_and_6() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = CallbackConfig::ModelCheckpoint {
        path: "every3.safetensors".into(),
        monitor: "val_loss".into(),
        mode: Mode::Auto,
        save_best_only: false,
        every: 3,
    };
    let cb = cfg.build(tmp.path()).unwrap();
    check(cb, &tmp.path().join("every3.safetensors"), 3, 7);
    let zero = CallbackConfig::ModelCheckpoint {
        path: "x.safetensors".into(),
        monitor: "val_loss".into(),
        mode: Mode::Auto,
        save_best_only: false,
        every: 0,
    };
    assert!(zero.build(tmp.path()).is_err(), "every = 0 is refused");
}
