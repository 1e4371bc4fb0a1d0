//! The `kiln` binary as a user runs it: on a small MNIST-format folder the test writes, and on the real
//! MNIST example. Every failure must be one "error:" line, a non-zero exit, no panic, and no lost file.

use crate::common::*;

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
    let o = kiln(&["train", &cfg, "--output", &model, "--run-dir", &t.s("run"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let trained = scores(&stdout(&o));
    let acc: f64 = trained.rsplit(' ').next().unwrap().parse().unwrap();
    println!("MNIST example: test {trained}");
    assert!(acc >= 0.985, "test accuracy {acc} < 0.985");
    let o = kiln(&["evaluate", &model, "--data", &format!("{root}/data/mnist")]);
    assert_eq!(scores(&stdout(&o)), trained);
}

#[test]
fn run_folder_plot_and_report() {
    let t = Tmp::new("report");
    write_mnist(&t.path("data"), 300, 100);
    let cfg = config(LAYERS_OK, "validation_split = 0.2\n").replace("epochs = 2", "epochs = 3");
    std::fs::write(t.path("run.toml"), cfg).unwrap();
    let o = kiln(&["train", &t.s("run.toml"), "--run-dir", &t.s("run"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["config.toml", "log.csv", "log.jsonl", "checkpoint.safetensors", "model.safetensors"] {
        assert!(t.path("run").join(f).exists(), "run folder lacks {f}");
    }
    // The run folder's config has every default and absolute paths: it trains the same from anywhere.
    let saved = std::fs::read_to_string(t.path("run/config.toml")).unwrap();
    assert!(saved.contains("beta_1") && saved.contains(&t.s("data")), "{saved}");

    let o = kiln(&["plot", &t.s("run")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(t.path("run/curves.svg")).unwrap();
    // Each series is a line and its legend's line: training in blue (loss, accuracy, learning rate),
    // validation in orange (loss, accuracy).
    assert_eq!(svg.matches("stroke=\"#1F77B4\"").count(), 6, "{svg}");
    assert_eq!(svg.matches("stroke=\"#FF7F0E\"").count(), 4, "{svg}");
    for title in ["loss", "accuracy", "learning_rate", "validation", "epoch"] {
        assert!(svg.contains(title), "curves.svg lacks {title}");
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(t.path("run/curves.png")).unwrap()));
    let info = decoder.read_info().unwrap();
    assert_eq!((info.info().width, info.info().height), (960, 240), "three panels");

    let o = kiln(&["report", &t.s("run")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(t.path("run/report.md")).unwrap();
    for want in [
        "## Training curves",
        "| loss |",
        "## Final model on the test set (100 samples)",
        "Confusion matrix",
        "```toml",
    ] {
        assert!(md.contains(want), "report lacks {want}:\n{md}");
    }
    assert!(t.path("run/confusion.svg").exists());

    assert_fails(&kiln(&["plot", &t.s("data")]), &["data", "not a run folder"]);
    assert_fails(&kiln(&["report", &t.s("data")]), &["data", "not a run folder"]);
}

/// A graph model from TOML: `[[model.nodes]]` naming what each layer reads, with a residual `add`; trained,
/// saved, summarized and evaluated as any other model. A node reading a missing layer is one error line.
#[test]
fn a_residual_graph_from_toml_trains_and_round_trips() {
    let t = Tmp::new("graph");
    write_mnist(&t.path("data"), 300, 100);
    let nodes = r#"
[[model.nodes]]
type = "flatten"

[[model.nodes]]
type = "dense"
name = "h"
units = 32
activation = "relu"

[[model.nodes]]
type = "dense"
name = "f"
units = 32
activation = "relu"

[[model.nodes]]
type = "add"
name = "skip"
inputs = ["h", "f"]

[[model.nodes]]
type = "dense"
units = 10
activation = "softmax"
"#;
    std::fs::write(t.path("run.toml"), config(nodes, "")).unwrap();
    let o = kiln(&["train", &t.s("run.toml"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let trained = scores(&stdout(&o));
    let acc: f64 = trained.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(acc > 0.9, "the bars are easy to learn: {trained}");
    let o = kiln(&["evaluate", &t.s("model.safetensors"), "--data", &t.s("data")]);
    assert_eq!(scores(&stdout(&o)), trained, "the saved graph evaluates as trained");
    // 784·32+32 + 32·32+32 + 32·10+10
    for target in [t.s("model.safetensors"), t.s("run.toml")] {
        let o = kiln(&["summary", &target]);
        assert!(stdout(&o).contains("Total params: 26,506") && stdout(&o).contains("skip (Add)"), "{}", stdout(&o));
    }

    let bad = nodes.replace(r#"inputs = ["h", "f"]"#, r#"inputs = ["h", "g"]"#);
    std::fs::write(t.path("bad.toml"), config(&bad, "")).unwrap();
    assert_fails(&kiln(&["train", &t.s("bad.toml"), "--quiet"]), &["bad.toml", "model.nodes[3]", "`g`", "h, f"]);
    let both = format!("{nodes}\n[[model.layers]]\ntype = \"flatten\"\n");
    std::fs::write(t.path("both.toml"), config(&both, "")).unwrap();
    assert_fails(&kiln(&["train", &t.s("both.toml"), "--quiet"]), &["`layers`", "`nodes`", "not both"]);
}

/// One thread-count setting for every command: `--threads N`, else `KILN_THREADS`; the run folder records
/// what the run used (run.json), and a bad value is one error line.
#[test]
fn threads_come_from_the_flag_or_the_environment_and_are_recorded() {
    let t = Tmp::new("threads");
    write_mnist(&t.path("data"), 100, 50);
    std::fs::write(t.path("run.toml"), config(LAYERS_OK, "").replace("epochs = 2", "epochs = 1")).unwrap();
    let run = |args: &[&str], env: Option<&str>| {
        let mut c = std::process::Command::new(KILN);
        c.args(args).current_dir(&t.0);
        match env {
            Some(v) => c.env("KILN_THREADS", v),
            None => c.env_remove("KILN_THREADS"),
        };
        c.output().unwrap()
    };
    let threads_of = |dir: &str| -> u64 {
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(t.path(dir).join("run.json")).unwrap()).unwrap();
        info["threads"].as_u64().unwrap()
    };
    let o = run(&["train", "run.toml", "--quiet", "--threads", "1", "--run-dir", "a"], Some("2"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(threads_of("a"), 1, "the flag wins over the environment");
    let o = run(&["train", "run.toml", "--quiet", "--run-dir", "b"], Some("2"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(threads_of("b"), 2);
    assert_fails(&run(&["train", "run.toml", "--quiet"], Some("many")), &["KILN_THREADS=many", "positive number"]);
    assert_fails(&run(&["--threads", "0", "train", "run.toml"], None), &["--threads must be positive"]);
}

/// `--set` changes any config's values, image configs included, checked as the file is.
#[test]
fn set_changes_an_image_config_and_checks_the_key() {
    let t = Tmp::new("set");
    std::fs::write(t.path("run.toml"), config(LAYERS_OK, "")).unwrap();
    let o =
        kiln(&["train", &t.s("run.toml"), "--set", "train.batch_size=128", "--set", "model.seed=7", "--print-config"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("batch_size = 128") && stdout(&o).contains("seed = 7"), "{}", stdout(&o));
    assert_fails(&kiln(&["train", &t.s("run.toml"), "--set", "train.bach_size=128"]), &["bach_size", "batch_size"]);
    assert_fails(&kiln(&["train", &t.s("run.toml"), "--set", "train.epochs=1,2"]), &["one value"]);
}

/// `kiln cv` and `kiln search` take an image config as they take a table's: stratified folds of the
/// training images, configs ranked by accuracy.
#[test]
fn cv_cross_validates_an_image_config() {
    let t = Tmp::new("cv-images");
    write_mnist(&t.path("data"), 300, 50);
    std::fs::write(t.path("run.toml"), config(LAYERS_OK, "")).unwrap();
    let o = kiln(&["cv", &t.s("run.toml"), "--folds", "3", "--set", "train.epochs=2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert_eq!(out.lines().filter(|l| l.starts_with("fold ")).count(), 3, "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("3-fold cross-validation: loss: ") && last.contains("accuracy: "), "{out}");
    let acc: f64 = last.split("accuracy: ").nth(1).unwrap()[..6].parse().unwrap();
    assert!(acc > 0.8, "the bars are easy to learn: {last}");
    assert_fails(&kiln(&["cv", &t.s("run.toml"), "--folds", "1"]), &["at least 2 folds"]);
    let o = kiln(&["search", &t.s("run.toml"), "--set", "train.epochs=1,3", "--folds", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    let ranking: Vec<&str> = out.lines().skip_while(|l| l.starts_with("config ")).collect();
    assert_eq!(ranking[0], "2 configs, 2-fold cross-validation each, best first by mean accuracy:", "{out}");
    let acc = |l: &str| -> f64 { l.split("accuracy: ").nth(1).unwrap()[..6].parse().unwrap() };
    assert!(acc(ranking[1]) >= acc(ranking[2]), "ranked by accuracy: {out}");
    let best = std::fs::read_to_string(t.path("best.toml")).unwrap();
    assert!(best.contains("format = \"mnist\""), "{best}");
    assert_fails(&kiln(&["search", &t.s("run.toml"), "--set", "train.epochs=1,2", "--random", "0"]), &["--random"]);
    assert_fails(&kiln(&["search", &t.s("run.toml"), "--set", "train.oversample=true,false"]), &["train.oversample"]);
}

/// What a review as a new user found: a named run folder that holds a run is not overwritten, zero epochs
/// trains nothing and writes nothing, --resume takes no second config, and an absurd thread count is refused.
#[test]
fn runs_are_not_overwritten_and_contradictory_flags_are_refused() {
    let t = Tmp::new("guards");
    write_mnist(&t.path("data"), 100, 50);
    std::fs::write(t.path("run.toml"), config(LAYERS_OK, "").replace("epochs = 2", "epochs = 1")).unwrap();
    let o = kiln(&["train", &t.s("run.toml"), "--quiet", "--run-dir", &t.s("r")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let before = std::fs::read(t.path("r/model.safetensors")).unwrap();
    assert_fails(
        &kiln(&["train", &t.s("run.toml"), "--quiet", "--run-dir", &t.s("r")]),
        &["already holds files", "--resume"],
    );
    assert_eq!(std::fs::read(t.path("r/model.safetensors")).unwrap(), before, "the first run's model is kept");
    let saved = std::fs::read(t.path("model.safetensors")).unwrap();
    assert_fails(&kiln(&["train", &t.s("run.toml"), "--epochs", "0", "--run-dir", &t.s("z")]), &["at least 1"]);
    assert!(!t.path("z").exists(), "no run folder for a run that cannot start");
    assert_eq!(std::fs::read(t.path("model.safetensors")).unwrap(), saved, "[output] model untouched");
    assert_fails(&kiln(&["train", &t.s("run.toml"), "--resume", &t.s("r")]), &["--resume", "not a config"]);
    assert_fails(&kiln(&["train", "--resume", &t.s("r"), "--run-dir", &t.s("x")]), &["--run-dir"]);
    assert_fails(&kiln(&["--threads", "100000", "summary", &t.s("run.toml")]), &["100000 threads", "cores"]);
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("r/run.json")).unwrap()).unwrap();
    assert_eq!(info["sessions"].as_array().unwrap().len(), 1);
}
