//! Helpers for the tests of the `kiln` binary: running it, checking failures, temporary folders, small
//! MNIST-format data sets and configs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// Runs kiln in a working folder of its own, so default run folders (runs/NAME-TIMESTAMP) of tests running at
/// once never meet, and are removed afterwards.
pub fn kiln(args: &[&str]) -> Output {
    let cwd = tempfile::tempdir().expect("a temporary folder");
    Command::new(KILN).args(args).current_dir(cwd.path()).output().expect("kiln runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts a clean failure: exit 1, exactly one line on stderr starting with "error:", containing `want`.
pub fn assert_fails(o: &Output, want: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for w in want {
        assert!(err.contains(w), "stderr lacks `{w}`: {err}");
    }
}

/// A test's own temporary folder (unique, so tests can run at once), removed when dropped.
pub struct Tmp(pub PathBuf, tempfile::TempDir);

impl Tmp {
    pub fn new(name: &str) -> Tmp {
        let d = tempfile::Builder::new().prefix(&format!("kiln-cli-{name}-")).tempdir().expect("a temporary folder");
        Tmp(d.path().to_path_buf(), d)
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
    pub fn s(&self, p: &str) -> String {
        self.path(p).display().to_string()
    }
}

pub fn idx(kind_dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, kind_dims.len() as u8];
    for d in kind_dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// A small MNIST-format folder: digit k is a bright bar on row 2k+4, with noise.
pub fn write_mnist(dir: &Path, n_train: usize, n_test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut seed = 12345u32;
    let mut noise = || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (seed >> 24) as u8 / 4
    };
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let mut px = Vec::with_capacity(n * 784);
        for &l in &labels {
            for r in 0..28 {
                for _ in 0..28 {
                    px.push(if r == 2 * l as usize + 4 { 250 } else { noise() });
                }
            }
        }
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), idx(&[n as u32, 28, 28], &px)).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), idx(&[n as u32], &labels)).unwrap();
    }
}

pub const LAYERS_OK: &str = r#"
[[model.layers]]
type = "conv2d"
filters = 4
kernel_size = 3
activation = "relu"

[[model.layers]]
type = "max_pooling2d"

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 10
activation = "softmax"
"#;

pub fn config(layers: &str, extra_train: &str) -> String {
    format!(
        "[data]\nformat = \"mnist\"\npath = \"data\"\n\n[model]\ninput_shape = [28, 28, 1]\n{layers}\n[train]\n\
         optimizer = {{ type = \"adam\", learning_rate = 0.01 }}\nloss = \"categorical_crossentropy\"\n\
         metrics = [\"accuracy\"]\nepochs = 2\nbatch_size = 32\n{extra_train}\n\n[output]\nmodel = \"model.safetensors\"\n"
    )
}

/// "loss: 0.1234 - accuracy: 0.5678" from a `test ...` line.
pub fn scores(out: &str) -> String {
    let line = out.lines().find(|l| l.starts_with("test loss:")).unwrap_or_else(|| panic!("no test line in {out}"));
    line.split(" (").next().unwrap().to_string()
}
