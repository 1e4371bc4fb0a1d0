//! Crash safety through the binary: a run killed with SIGKILL and resumed ends bit-identical to one that
//! was never interrupted; SIGINT checkpoints mid-epoch and resumes the same way; SIGKILL while a
//! checkpoint is being written leaves the previous one loadable; a NaN loss stops with a clear line and
//! the last good checkpoint.

use crate::common::*;
use kiln::prelude::Sequential;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LAYERS: &str = r#"
[[model.layers]]
type = "conv2d"
filters = 8
kernel_size = 3
activation = "relu"

[[model.layers]]
type = "max_pooling2d"

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 64
activation = "relu"

[[model.layers]]
type = "dropout"
rate = 0.3

[[model.layers]]
type = "dense"
units = 10
activation = "softmax"
"#;

fn spawn(args: &[&str]) -> Child {
    Command::new(KILN).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("kiln starts")
}

/// Epochs done according to the run's checkpoint (0 while there is none).
fn epochs_done(run: &Path) -> usize {
    Sequential::load_checkpoint(run.join("checkpoint.safetensors")).map(|(_, p)| p.epoch).unwrap_or(0)
}

fn weights(path: &Path) -> Vec<Vec<f32>> {
    Sequential::load(path).unwrap().get_weights()
}

fn wait_for(what: &str, child: &mut Child, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(child.try_wait().unwrap().is_none(), "kiln exited before {what}");
        assert!(start.elapsed() < Duration::from_secs(120), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killed_or_interrupted_runs_resume_bit_identical() {
    let t = Tmp::new("crash");
    write_mnist(&t.path("data"), 3000, 100);
    let cfg = config(LAYERS, "validation_split = 0.1\nseed = 3\n").replace("epochs = 2", "epochs = 6");
    std::fs::write(t.path("run.toml"), cfg).unwrap();
    let o = kiln(&["train", &t.s("run.toml"), "--run-dir", &t.s("full"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let full = weights(&t.path("full/model.safetensors"));

    // SIGKILL once epoch 3's checkpoint is on disk; resume.
    let mut child = spawn(&["train", &t.s("run.toml"), "--run-dir", &t.s("killed"), "--quiet"]);
    wait_for("epoch 3", &mut child, || epochs_done(&t.path("killed")) >= 3);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed, not finished");
    let done = epochs_done(&t.path("killed"));
    assert!((3..6).contains(&done), "checkpoint after epoch {done}");
    let o = kiln(&["train", "--resume", &t.s("killed"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        weights(&t.path("killed/model.safetensors")) == full,
        "killed after epoch {done} and resumed: weights differ"
    );
    let log = std::fs::read_to_string(t.path("killed/log.csv")).unwrap();
    assert!(log.lines().count() >= 7, "the log holds every epoch once the run is done:\n{log}");

    // SIGINT in the middle of epoch 2: a clean stop with a checkpoint taken mid-epoch; resume.
    let mut child = spawn(&["train", &t.s("run.toml"), "--run-dir", &t.s("int"), "--quiet"]);
    wait_for("epoch 1", &mut child, || epochs_done(&t.path("int")) >= 1);
    std::thread::sleep(Duration::from_millis(50));
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "Ctrl-C exits 128 + SIGINT: {err}");
    assert!(err.starts_with("error: training stopped: interrupted ") && err.lines().count() == 1, "{err}");
    assert!(err.contains(&format!("continue with: kiln train --resume {}", t.s("int"))), "{err}");
    let o = kiln(&["train", "--resume", &t.s("int"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(weights(&t.path("int/model.safetensors")) == full, "interrupted and resumed: weights differ");

    // A finished run says so instead of training again.
    assert_fails(&kiln(&["train", "--resume", &t.s("int")]), &["has trained 6 epochs already", "--epochs above 6"]);
    assert_fails(&kiln(&["train", "--resume", &t.s("nowhere")]), &["config.toml", "a run folder"]);
}

#[test]
fn sigkill_while_writing_a_checkpoint_keeps_the_previous_one() {
    let t = Tmp::new("ckptkill");
    write_mnist(&t.path("data"), 32, 10);
    // A large model on one tiny batch per epoch: most of the time goes to writing its 40 MB checkpoint.
    let layers = "[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"dense\"\nunits = 4096\n\
                  [[model.layers]]\ntype = \"dense\"\nunits = 10\nactivation = \"softmax\"\n";
    let cfg = config(layers, "").replace("epochs = 2", "epochs = 100000");
    std::fs::write(t.path("run.toml"), cfg).unwrap();
    let run = t.path("run");
    let (mut mid_write, mut tries) = (0, 0);
    let mut seed = 7u64;
    while mid_write < 3 && tries < 40 {
        tries += 1;
        let args = ["train", &t.s("run.toml"), "--run-dir", &t.s("run"), "--quiet"];
        let mut child = if run.join("checkpoint.safetensors").exists() {
            spawn(&["train", "--resume", &t.s("run"), "--quiet"])
        } else {
            spawn(&args)
        };
        let before = epochs_done(&run);
        wait_for("a checkpoint", &mut child, || epochs_done(&run) > before);
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(seed >> 58));
        child.kill().unwrap();
        child.wait().unwrap();
        // A write cut short leaves its temporary file; the checkpoint itself must load either way.
        let temps: Vec<_> = std::fs::read_dir(&run)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        if !temps.is_empty() {
            mid_write += 1;
            for e in temps {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        let (m, p) = Sequential::load_checkpoint(run.join("checkpoint.safetensors"))
            .unwrap_or_else(|e| panic!("after kill {tries}: the checkpoint does not load: {e}"));
        assert!(p.epoch >= 1 && m.get_weights().iter().flatten().all(|v| v.is_finite()));
    }
    println!("{tries} kills, {mid_write} of them while a checkpoint was being written");
    assert!(mid_write >= 1, "no kill landed during a checkpoint write in {tries} tries");
}

#[test]
fn a_nan_loss_stops_with_the_step_and_the_last_good_checkpoint() {
    let t = Tmp::new("nan");
    write_mnist(&t.path("data"), 640, 10);
    // 20 steps per epoch; from step 25 on the learning rate is absurd, so the loss overflows in epoch 2.
    let schedule = "[train.schedule]\ntype = \"piecewise\"\nboundaries = [25]\nvalues = [0.01, 1e30]\n";
    let cfg = config(LAYERS, "")
        .replace("epochs = 2", "epochs = 5")
        .replace("\n\n[output]", &format!("\n{schedule}\n[output]"));
    std::fs::write(t.path("run.toml"), cfg).unwrap();
    let o = kiln(&["train", &t.s("run.toml"), "--run-dir", &t.s("run"), "--quiet"]);
    assert_fails(&o, &["training stopped: epoch 2, batch ", "the loss became", "not applied", "continue with"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the last good checkpoint is") && err.contains("checkpoint.safetensors (end of epoch 1)"),
        "{err}"
    );
    let (m, p) = Sequential::load_checkpoint(t.path("run/checkpoint.safetensors")).unwrap();
    assert_eq!(p.epoch, 1);
    assert!(m.get_weights().iter().flatten().all(|v| v.is_finite()));
    assert!(!t.path("run/model.safetensors").exists(), "no final model from a failed run");
}

/// A loss that becomes NaN before any epoch finished leaves nothing to resume: the line says so instead of
/// advising `--resume`, and no half-made run folder stays behind.
#[test]
fn a_nan_loss_in_the_first_epoch_advises_no_resume_and_leaves_no_folder() {
    let t = Tmp::new("nan1");
    write_mnist(&t.path("data"), 640, 10);
    let cfg = config(LAYERS, "").replace(
        "\n\n[output]",
        "\n[train.schedule]\ntype = \"piecewise\"\nboundaries = [3]\nvalues = [0.01, 1e30]\n\n[output]",
    );
    std::fs::write(t.path("run.toml"), cfg).unwrap();
    let o = kiln(&["train", &t.s("run.toml"), "--run-dir", &t.s("run"), "--quiet"]);
    assert_fails(&o, &["training stopped: epoch 1, batch ", "no epoch had finished, so nothing was saved"]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("--resume"));
    assert!(!t.path("run").exists(), "the empty run folder is removed");
}

/// `--resume` writes the final model where the run's `--output` said, not only into the run folder.
#[test]
fn resume_keeps_the_output_the_run_was_started_with() {
    let t = Tmp::new("resume-output");
    write_mnist(&t.path("data"), 320, 10);
    std::fs::write(t.path("run.toml"), config(LAYERS, "").replace("epochs = 2", "epochs = 1")).unwrap();
    let out = t.s("best.safetensors");
    let o = kiln(&["train", &t.s("run.toml"), "--run-dir", &t.s("run"), "--output", &out, "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let first = weights(Path::new(&out));
    let recorded = std::fs::read_to_string(t.path("run/config.toml")).unwrap();
    assert!(recorded.contains(&format!("model = \"{out}\"")), "the run's config records --output: {recorded}");
    let o = kiln(&["train", "--resume", &t.s("run"), "--epochs", "2", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains(&format!("saved model to {out}")), "{}", stdout(&o));
    assert_eq!(weights(Path::new(&out)), weights(&t.path("run/model.safetensors")));
    assert_ne!(weights(Path::new(&out)), first, "the second epoch's model replaced the first's");
}

/// Output cut short by a closed pipe ends the process quietly, without a panic.
#[test]
fn a_closed_pipe_ends_quietly() {
    let t = Tmp::new("pipe");
    write_mnist(&t.path("data"), 320, 10);
    std::fs::write(t.path("run.toml"), config(LAYERS, "")).unwrap();
    let mut child = Command::new(KILN)
        .args(["summary", &t.s("run.toml")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(o.status.code(), Some(101), "not a panic's exit code: {:?} {err}", o.status);
}

/// A table of 300 rows whose folds each take a while (many epochs, no early stopping).
fn slow_table(t: &Tmp) -> String {
    let mut csv = String::from("a,b,y\n");
    for i in 0..300 {
        csv += &format!("{},{},{}\n", (i * 37) % 101, (i * 53) % 89, ["p", "q"][(i * 7 / 5) % 2]);
    }
    std::fs::write(t.path("t.csv"), csv).unwrap();
    let cfg = "[data]\npath = \"t.csv\"\ntarget = \"y\"\n[model]\nhidden = [8]\n[train]\nepochs = 20000\nvalidation_split = 0.0\n";
    std::fs::write(t.path("c.toml"), cfg).unwrap();
    t.s("c.toml")
}

/// Ctrl-C during `kiln cv` stops with the finished folds' summary, `--output` keeps each finished fold, and
/// `--resume` runs the rest to the numbers of an uninterrupted run.
#[test]
fn an_interrupted_cross_validation_keeps_its_finished_folds_and_resumes() {
    let t = Tmp::new("cv-int");
    let cfg = slow_table(&t);
    let out = t.path("cv.jsonl");
    let mut child = spawn(&["cv", &cfg, "--folds", "5", "--output", &t.s("cv.jsonl"), "--set", "train.epochs=2000"]);
    let lines = || std::fs::read_to_string(&out).map(|s| s.lines().count()).unwrap_or(0);
    wait_for("fold 1", &mut child, || lines() >= 1);
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("training stopped: interrupted ") && err.contains("of 5 folds had finished: accuracy: "),
        "{err}"
    );
    let kept = std::fs::read_to_string(&out).unwrap();
    let first: serde_json::Value = serde_json::from_str(kept.lines().next().unwrap()).unwrap();
    assert_eq!((first["fold"].as_u64(), first["of"].as_u64()), (Some(1), Some(5)), "{kept}");
    assert!(first["scores"]["accuracy"].as_f64().is_some(), "{kept}");

    // --resume runs the other folds only, and ends with what an uninterrupted run prints.
    let summary = |file: &str| {
        let text = std::fs::read_to_string(t.path(file)).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        last["summary"].as_str().unwrap_or_else(|| panic!("no summary in {text}")).to_string()
    };
    let resume = ["cv", &cfg, "--folds", "5", "--output", &t.s("cv.jsonl"), "--set", "train.epochs=2000", "--resume"];
    let o = kiln(&resume);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let printed = stdout(&o);
    let earlier = printed.lines().filter(|l| l.ends_with("(finished earlier)")).count();
    assert!(earlier >= 1 && printed.lines().filter(|l| l.starts_with("fold ")).count() == 5, "{printed}");
    let o = kiln(&["cv", &cfg, "--folds", "5", "--output", &t.s("whole.jsonl"), "--set", "train.epochs=2000"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(summary("cv.jsonl"), summary("whole.jsonl"));
    // A finished run, another fold count or no file are refused by name.
    assert_fails(&kiln(&resume), &["cv.jsonl", "finished cross-validation"]);
    std::fs::write(t.path("part.jsonl"), kept.lines().next().unwrap()).unwrap();
    assert_fails(
        &kiln(&["cv", &cfg, "--folds", "4", "--output", &t.s("part.jsonl"), "--resume"]),
        &["part.jsonl", "fold 1 of 5", "--folds 5"],
    );
    assert_fails(&kiln(&["cv", &cfg, "--resume"]), &["--output"]);
    // Another config's folds are not mixed in; an interrupted run's file is not written over without --resume.
    assert_fails(
        &kiln(&["cv", &cfg, "--folds", "5", "--output", &t.s("part.jsonl"), "--resume"]),
        &["part.jsonl", "another cross-validation"],
    );
    assert_fails(
        &kiln(&["cv", &cfg, "--folds", "5", "--output", &t.s("part.jsonl"), "--set", "train.epochs=2000"]),
        &["part.jsonl", "interrupted cross-validation", "--resume"],
    );
    // A last line cut short by a crash is left out, with a warning, and its fold run again.
    let cut = format!("{}\n{}", kept.lines().next().unwrap(), &kept.lines().nth(1).unwrap_or("{\"fold\":2")[..9]);
    std::fs::write(t.path("cut.jsonl"), cut).unwrap();
    let o =
        kiln(&["cv", &cfg, "--folds", "5", "--output", &t.s("cut.jsonl"), "--set", "train.epochs=2000", "--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 2 was cut short; it is left out"));
    assert_eq!(summary("cut.jsonl"), summary("whole.jsonl"));
}

/// Ctrl-C during `kiln search` writes the best finished config and keeps every finished config's scores.
#[test]
fn an_interrupted_search_keeps_the_best_finished_config_and_resumes() {
    let t = Tmp::new("search-int");
    let cfg = slow_table(&t);
    let trials = t.path("best.trials.jsonl");
    let mut child = spawn(&[
        "search",
        &cfg,
        "--folds",
        "2",
        "--set",
        "model.l2=0.0,0.001,0.002,0.003",
        "--set",
        "train.epochs=1,3000",
    ]);
    let lines = || std::fs::read_to_string(&trials).map(|s| s.lines().count()).unwrap_or(0);
    wait_for("a config", &mut child, || lines() >= 1);
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("the best of the") && err.contains("finished configs"), "{err}");
    let best = std::fs::read_to_string(t.path("best.toml")).unwrap();
    assert!(best.starts_with("# The best of the ") && best.contains("before it was interrupted"), "{best}");
    let kept = std::fs::read_to_string(&trials).unwrap();
    assert!(kept.lines().count() >= 1 && kept.contains("\"summary\""), "{kept}");

    // --resume runs the configs not yet finished and ranks them with the earlier ones: the same ranking and
    // best config as a search never interrupted.
    let args = |out: &str, resume: bool| {
        let mut a = vec!["search", &cfg, "--folds", "2", "--set", "model.l2=0.0,0.001,0.002,0.003"];
        a.extend(["--set", "train.epochs=1,3000", "--output"]);
        let mut a: Vec<String> = a.into_iter().map(String::from).collect();
        a.push(t.s(out));
        if resume {
            a.push("--resume".into());
        }
        a
    };
    let run = |out: &str, resume: bool| {
        let a = args(out, resume);
        let o = kiln(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ranking: Vec<String> = stdout(&o).lines().filter(|l| l.starts_with("  ")).map(String::from).collect();
        let best = std::fs::read_to_string(t.path(out)).unwrap();
        (ranking, best.lines().skip(1).collect::<Vec<_>>().join("\n"), stdout(&o))
    };
    let (ranking, best, printed) = run("best.toml", true);
    assert!(printed.contains("(finished earlier)") && ranking.len() == 8, "{printed}");
    let (whole_ranking, whole_best, _) = run("whole.toml", false);
    assert_eq!((ranking, best), (whole_ranking, whole_best));
    let mut other = args("best.toml", true);
    other[3] = "3".into();
    assert_fails(
        &kiln(&other.iter().map(String::as_str).collect::<Vec<_>>()),
        &["best.trials.jsonl", "another search"],
    );
}
