//! The `kiln` binary as a user runs it: on a small MNIST-format folder the test writes, and on the real
//! MNIST example. Every failure must be one "error:" line, a non-zero exit, no panic, and no lost file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

fn kiln(args: &[&str]) -> Output {
    Command::new(KILN).args(args).output().expect("kiln runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts a clean failure: exit 1, exactly one line on stderr starting with "error:", containing `want`.
fn assert_fails(o: &Output, want: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for w in want {
        assert!(err.contains(w), "stderr lacks `{w}`: {err}");
    }
}

struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("kiln-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
    fn path(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
    fn s(&self, p: &str) -> String {
        self.path(p).display().to_string()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn idx(kind_dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, kind_dims.len() as u8];
    for d in kind_dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// A small MNIST-format folder: digit k is a bright bar on row 2k+4, with noise.
fn write_mnist(dir: &Path, n_train: usize, n_test: usize) {
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

const LAYERS_OK: &str = r#"
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

fn config(layers: &str, extra_train: &str) -> String {
    format!(
        "[data]\nformat = \"mnist\"\npath = \"data\"\n\n[model]\ninput_shape = [28, 28, 1]\n{layers}\n[train]\n\
         optimizer = {{ type = \"adam\", learning_rate = 0.01 }}\nloss = \"categorical_crossentropy\"\n\
         metrics = [\"accuracy\"]\nepochs = 2\nbatch_size = 32\n{extra_train}\n\n[output]\nmodel = \"model.safetensors\"\n"
    )
}

/// "loss: 0.1234 - accuracy: 0.5678" from a `test ...` line.
fn scores(out: &str) -> String {
    let line = out.lines().find(|l| l.starts_with("test loss:")).unwrap_or_else(|| panic!("no test line in {out}"));
    line.split(" (").next().unwrap().to_string()
}

#[test]
fn train_evaluate_predict_summary_round_trip() {
    let t = Tmp::new("ok");
    write_mnist(&t.path("data"), 300, 100);
    std::fs::write(t.path("run.toml"), config(LAYERS_OK, "")).unwrap();
    let o = kiln(&["train", &t.s("run.toml"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let trained = scores(&stdout(&o));
    let acc: f64 = trained.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(acc > 0.9, "the bars are easy to learn: {trained}");
    assert!(stdout(&o).contains("saved model to"));

    let o = kiln(&["evaluate", &t.s("model.safetensors"), "--data", &t.s("data")]);
    assert!(o.status.success());
    assert_eq!(scores(&stdout(&o)), trained, "evaluate on the saved model prints what train printed");

    let o = kiln(&["predict", &t.s("model.safetensors"), &t.s("data/t10k-images-idx3-ubyte"), "--index", "3"]);
    assert!(stdout(&o).contains("predicted class: 3"), "{}", stdout(&o));

    // The same digit as a PNG file.
    let png_path = t.path("three.png");
    let mut px = vec![0u8; 784];
    px[10 * 28..11 * 28].fill(250);
    let file = std::fs::File::create(&png_path).unwrap();
    let mut enc = png::Encoder::new(file, 28, 28);
    enc.set_color(png::ColorType::Grayscale);
    enc.write_header().unwrap().write_image_data(&px).unwrap();
    let o = kiln(&["predict", &t.s("model.safetensors"), &t.s("three.png")]);
    assert!(stdout(&o).contains("predicted class: 3"), "{} {}", stdout(&o), String::from_utf8_lossy(&o.stderr));

    for target in [t.s("model.safetensors"), t.s("run.toml")] {
        let o = kiln(&["summary", &target]);
        assert!(stdout(&o).contains("Total params: 6,810"), "{}", stdout(&o));
    }
    let o = kiln(&["train", &t.s("run.toml"), "--print-config"]);
    assert!(stdout(&o).contains("batch_size = 32") && stdout(&o).contains("beta_1"), "{}", stdout(&o));
}

#[test]
fn bad_input_gives_one_line_and_keeps_files() {
    let t = Tmp::new("bad");
    write_mnist(&t.path("data"), 60, 20);
    // A model already on disk must survive every failed run.
    std::fs::write(t.path("model.safetensors"), b"previous model").unwrap();
    let keep = || assert_eq!(std::fs::read(t.path("model.safetensors")).unwrap(), b"previous model");
    let train = |cfg: String| {
        std::fs::write(t.path("run.toml"), cfg).unwrap();
        kiln(&["train", &t.s("run.toml"), "--quiet"])
    };

    assert_fails(&train(config(LAYERS_OK, "epohcs = 3")), &["run.toml", "line", "`epohcs`", "did you mean `epochs`?"]);
    let dense_after_conv = "[[model.layers]]\ntype = \"conv2d\"\nfilters = 4\nkernel_size = 3\n\
                            [[model.layers]]\ntype = \"dense\"\nunits = 10\n";
    assert_fails(&train(config(dense_after_conv, "")), &["`dense` (Dense)", "`conv2d` (Conv2D)", "(26, 26, 4)"]);
    keep();

    let labels = t.path("data/t10k-labels-idx1-ubyte");
    let saved = std::fs::read(&labels).unwrap();
    std::fs::remove_file(&labels).unwrap();
    assert_fails(&train(config(LAYERS_OK, "")), &["t10k-labels-idx1-ubyte", "no such file"]);
    std::fs::write(&labels, &saved).unwrap();

    let images = t.path("data/train-images-idx3-ubyte");
    let good = std::fs::read(&images).unwrap();
    std::fs::write(&images, &good[..good.len() - 100]).unwrap();
    assert_fails(&train(config(LAYERS_OK, "")), &["train-images-idx3-ubyte", "truncated IDX file"]);
    let mut wrong = good.clone();
    wrong[2] = 0x55;
    wrong[3] = 0x66;
    std::fs::write(&images, &wrong).unwrap();
    assert_fails(&train(config(LAYERS_OK, "")), &["train-images-idx3-ubyte", "magic number"]);
    std::fs::write(&images, &good).unwrap();
    keep();

    assert_fails(&kiln(&["evaluate", &t.s("model.safetensors"), "--data", &t.s("data")]), &["not a kiln model"]);
    assert_fails(&kiln(&["evaluate", &t.s("run.toml"), "--data", &t.s("data")]), &["run.toml", "not a kiln model"]);
    assert_fails(&kiln(&["train", &t.s("missing.toml")]), &["missing.toml", "no such file"]);
    assert_fails(&kiln(&["summary", &t.s("nothing.safetensors")]), &["nothing.safetensors"]);
    assert_fails(&train(config(LAYERS_OK, "").replace("path = \"data\"", "path = \"nodata\"")), &["nodata"]);
    keep();
    // A bad command-line flag is clap's usage error: exit 2.
    assert_eq!(kiln(&["train", "--epochz", "3"]).status.code(), Some(2));
}

/// The issue's acceptance run: the Keras reference program, 10 epochs, on the real MNIST (about a minute).
#[test]
fn mnist_example_reaches_0985_and_evaluate_agrees() {
    let t = Tmp::new("mnist");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let cfg = format!("{root}/examples/mnist/mnist.toml");
    let model = t.s("mnist.safetensors");
    let o = kiln(&["train", &cfg, "--output", &model, "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let trained = scores(&stdout(&o));
    let acc: f64 = trained.rsplit(' ').next().unwrap().parse().unwrap();
    println!("MNIST example: test {trained}");
    assert!(acc >= 0.985, "test accuracy {acc} < 0.985");
    let o = kiln(&["evaluate", &model, "--data", &format!("{root}/data/mnist")]);
    assert_eq!(scores(&stdout(&o)), trained);
}
