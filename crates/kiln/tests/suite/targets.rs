//! Several targets from a table config (`target = ["spend", "churn"]`): one output per target, each with
//! the loss and metrics its column needs, from a recipe and from a written-out graph; scored per target,
//! saved and loaded; and the settings that cannot apply to several targets refused with one line.

use kiln::config::Config;
use kiln::data::prepare::{Preparation, Task};
use kiln::data::table::{ColumnType, Table};
use kiln::prelude::*;
use kiln::tabular;
use std::path::Path;

/// 1500 rows: `spend` a number set by `a` and `b`, `churn` yes/no set by `b` and the plan, `tier` one of
/// three classes set by `a`.
fn write_table(dir: &Path) {
    let mut csv = String::from("a,b,plan,spend,churn,tier\n");
    let mut seed = 5u64;
    let mut draw = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    for i in 0..1500 {
        let (a, b) = (draw(), draw());
        let plan = ["basic", "plus", "pro"][i % 3];
        let spend = 10.0 + 4.0 * a - 3.0 * b + 0.1 * draw();
        let churn = if b + if plan == "basic" { 0.4 } else { -0.2 } > 0.1 { "yes" } else { "no" };
        let tier = if a < -0.33 {
            "low"
        } else if a < 0.33 {
            "mid"
        } else {
            "high"
        };
        csv += &format!("{a:.4},{b:.4},{plan},{spend:.4},{churn},{tier}\n");
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
}

fn load(dir: &Path, toml: &str) -> (Config, Table, Vec<ColumnType>, Vec<usize>, Vec<usize>) {
    std::fs::write(dir.join("c.toml"), toml).unwrap();
    let cfg = Config::from_file(dir.join("c.toml")).unwrap();
    let table = cfg.read_table().unwrap();
    let types = cfg.types(&table).unwrap();
    let (test, train) = tabular::split(&cfg, &table, &types).unwrap();
    (cfg, table, types, test, train)
}

const DATA: &str = "[data]\npath = \"t.csv\"\ntarget = [\"spend\", \"churn\"]\nignore = [\"tier\"]\n";

#[test]
fn a_recipe_gives_each_target_its_output_loss_and_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_table(dir);
    let (cfg, table, types, test, train) = load(dir, &format!("{DATA}[model]\nhidden = [32]\n[train]\nepochs = 60\n"));
    let model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
    assert_eq!(model.outputs(), ["spend", "churn"], "one output per target, named after it");
    assert_eq!(model.output_shapes(), [&[1usize][..], &[1]]);
    let c = model.compile_config().unwrap();
    assert_eq!(c.losses, [Loss::MeanSquaredError, Loss::BinaryCrossentropy]);
    assert_eq!(c.output_metrics[0], [Metric::MeanAbsoluteError], "a number's metrics for the number");
    let prep = model.preparation().unwrap();
    assert_eq!(prep.target_names(), ["spend", "churn"]);
    assert!(!prep.features.iter().any(|f| f.name == "spend" || f.name == "churn"), "targets are no inputs");

    let scores = tabular::scores(&model, &table, &test).unwrap();
    assert_eq!(scores.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), ["spend", "churn"]);
    let (spend, churn) = (&scores[0].1, &scores[1].1);
    assert!(spend.r2.unwrap() > 0.95 && spend.accuracy.is_none(), "spend: {spend}");
    assert!(churn.accuracy.unwrap() > 0.9 && churn.roc_auc.unwrap() > 0.95 && churn.rmse.is_none(), "churn: {churn}");
    assert_eq!(tabular::score(&model, &table, &test).unwrap(), *spend, "`score` is the first target's");
    let shown = tabular::render_scores(&scores, "test ", false);
    assert!(shown.starts_with("test spend: rmse: ") && shown.contains("\ntest churn: accuracy: "), "{shown}");

    // Each output answers for its own target: the predictions are the ones `scores` scored.
    let x = prep.transform_inputs(&table, &test).unwrap();
    let x: Vec<&Tensor> = x.iter().collect();
    let p = model.predict_outputs(&x, 256).unwrap();
    let y = prep.target_values(&table, &test).unwrap();
    let correct = p[1].data().iter().zip(y[1].data()).filter(|(q, t)| (**q > 0.5) == (**t > 0.5)).count();
    assert_eq!(correct as f64 / test.len() as f64, churn.accuracy.unwrap());

    // Saved and loaded, the model keeps both targets and scores the same.
    model.save(dir.join("m.safetensors")).unwrap();
    let loaded = Sequential::load(dir.join("m.safetensors")).unwrap();
    assert_eq!(loaded.preparation(), model.preparation());
    assert_eq!(tabular::scores(&loaded, &table, &test).unwrap(), scores);
}

#[test]
fn a_graph_names_its_outputs_and_each_is_checked_against_its_target() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_table(dir);
    let nodes = "[model]\noutputs = [\"spend_out\", \"tier_out\"]\n\
                 [[model.nodes]]\ntype = \"dense\"\nname = \"body\"\nunits = 32\nactivation = \"relu\"\ninputs = [\"input\"]\n\
                 [[model.nodes]]\ntype = \"dense\"\nname = \"spend_out\"\nunits = 1\ninputs = [\"body\"]\n\
                 [[model.nodes]]\ntype = \"dense\"\nname = \"tier_out\"\nunits = 3\nactivation = \"softmax\"\ninputs = [\"body\"]\n\
                 [train]\nepochs = 60\nloss_weights = [1.0, 2.0]\n";
    let data = "[data]\npath = \"t.csv\"\ntarget = [\"spend\", \"tier\"]\nignore = [\"churn\"]\n";
    let (cfg, table, types, test, train) = load(dir, &format!("{data}{nodes}"));
    let model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
    assert_eq!(model.outputs(), ["spend_out", "tier_out"]);
    let prep = model.preparation().unwrap();
    assert!(matches!(&prep.targets[1].task, Task::Multiclass { classes } if classes.len() == 3));
    let c = model.compile_config().unwrap();
    assert_eq!(c.losses, [Loss::MeanSquaredError, Loss::SparseCategoricalCrossentropy]);
    assert_eq!(c.loss_weights, [1.0, 2.0]);
    let s = tabular::scores(&model, &table, &test).unwrap();
    assert!(s[0].1.r2.unwrap() > 0.9, "{}", s[0].1);
    assert!(s[1].1.accuracy.unwrap() > 0.9, "{}", s[1].1);
    assert_eq!(s[1].1.report.as_ref().unwrap().confusion.len(), 3);

    // The weighted total: evaluate's loss is spend's loss plus twice tier's.
    let x = prep.transform_inputs(&table, &test).unwrap();
    let (x, mut y): (Vec<&Tensor>, Vec<Tensor>) = (x.iter().collect(), prep.target_values(&table, &test).unwrap());
    y[0] = Tensor::new(&[test.len(), 1], y[0].data().to_vec()).unwrap();
    let y: Vec<&Tensor> = y.iter().collect();
    let e = model.evaluate(&x, &y, 256).unwrap();
    let get = |n: &str| e.metrics.iter().find(|m| m.0 == n).unwrap_or_else(|| panic!("no {n}: {e:?}")).1;
    let want = get("spend_out_loss") + 2.0 * get("tier_out_loss");
    assert!((e.loss - want).abs() < 1e-5 * want.abs().max(1.0), "{} vs {want}", e.loss);

    // An output of the wrong width is refused before training, naming the output and its target.
    let wide = format!("{data}{}", nodes.replace("units = 3", "units = 2"));
    let (cfg, ..) = load(dir, &wide);
    let e = tabular::fit_rows(&cfg, &table, &types, &train, false).err().unwrap().to_string();
    assert!(e.contains("output `tier_out` is [2] per row, but the target `tier` needs [3]"), "{e}");
    // An output that is no layer.
    let (cfg, ..) = load(dir, &format!("{data}{}", nodes.replace("\"tier_out\"]", "\"tier_head\"]")));
    let e = tabular::fit_rows(&cfg, &table, &types, &train, false).err().unwrap().to_string();
    assert!(e.contains("model.outputs: `tier_head` is no layer of the model"), "{e}");
    // Outputs matched to the wrong targets: shapes fit, but classes need probabilities.
    let swapped = "[data]\npath = \"t.csv\"\ntarget = [\"spend\", \"churn\"]\nignore = [\"tier\"]\n\
                   [model]\noutputs = [\"p\", \"v\"]\n\
                   [[model.nodes]]\ntype = \"dense\"\nname = \"p\"\nunits = 1\nactivation = \"sigmoid\"\ninputs = [\"input\"]\n\
                   [[model.nodes]]\ntype = \"dense\"\nname = \"v\"\nunits = 1\ninputs = [\"input\"]\n";
    let (cfg, table, types, _, train) = load(dir, swapped);
    let e = tabular::fit_rows(&cfg, &table, &types, &train, false).err().unwrap().to_string();
    assert!(e.contains("layer `v` ends in linear, but the target `churn` is classes"), "{e}");
}

#[test]
fn settings_that_cannot_apply_to_several_targets_are_refused_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let refused = |toml: &str, want: &str| {
        std::fs::write(dir.join("bad.toml"), toml).unwrap();
        let e = Config::from_file(dir.join("bad.toml")).err().unwrap().to_string();
        assert!(e.contains(want), "{toml}\n→ {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    };
    let two = "[data]\npath = \"t.csv\"\ntarget = [\"spend\", \"churn\"]\n";
    refused("[data]\npath = \"t.csv\"\ntarget = [\"spend\", \"spend\"]\n", "data.target names `spend` twice");
    refused(
        &format!("{two}classes = {{ yes = \"y\", no = \"n\" }}\n"),
        "data.classes maps the values of one target to classes, and this config has 2 targets (spend, churn)",
    );
    refused(&format!("{two}[train]\noversample = true\n"), "train.oversample repeats rows");
    refused(&format!("{two}[train]\nclass_weight = \"balanced\"\n"), "train.class_weight weighs one target's");
    refused(&format!("{two}[train]\nloss_weights = [1.0]\n"), "train.loss_weights gives 1 weights for 2 targets");
    refused(&format!("{two}[train]\nloss_weights = [1.0, -1.0]\n"), "train.loss_weights: -1 is not a weight");
    refused(&format!("{two}[train]\nloss_weights = [0.0, 0.0]\n"), "train.loss_weights are all 0");
    refused(
        &format!("{two}[[model.layers]]\ntype = \"dense\"\nunits = 1\n"),
        "name one output layer for each, in that order, with model.outputs",
    );
    refused(&format!("{two}[model]\noutputs = [\"a\", \"b\"]\n"), "model.outputs names output layers of");
    refused("[data]\npath = \"t.csv\"\ntarget = [\"spend\"]\nignore = [\"spend\"]\n", "also in data.ignore");
    refused("[data]\npath = \"t.csv\"\ntarget = 3\n", "a column name, or a list of column names");

    // One target written as a list is the same config as the string.
    std::fs::write(dir.join("one.toml"), "[data]\npath = \"t.csv\"\ntarget = [\"spend\"]\n").unwrap();
    std::fs::write(dir.join("str.toml"), "[data]\npath = \"t.csv\"\ntarget = \"spend\"\n").unwrap();
    let (a, b) = (Config::from_file(dir.join("one.toml")).unwrap(), Config::from_file(dir.join("str.toml")).unwrap());
    assert_eq!(a.data, b.data);
    assert_eq!(a.data.targets(), ["spend"]);
}

#[test]
fn a_preparation_saved_with_one_target_still_loads() {
    // The form every table model saved before several targets: `target` and `task` at the top.
    let old = r#"{"target":"label","task":{"type":"binary","classes":["no","yes"]},
                  "features":[{"name":"x","kind":{"type":"boolean"}}]}"#;
    let p: Preparation = serde_json::from_str(old).unwrap();
    assert_eq!(p.target_names(), ["label"]);
    assert_eq!(*p.task(), Task::Binary { classes: vec!["no".into(), "yes".into()] });
    let again: Preparation = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(again, p, "and saves in the new form");
    let none = r#"{"features":[]}"#;
    let e = serde_json::from_str::<Preparation>(none).unwrap_err().to_string();
    assert!(e.contains("the preparation names no target"), "{e}");
}

/// Heads are named after their targets and never collide: with a layer, the model's input or each other.
#[test]
fn head_names_stay_unique_whatever_the_targets_are_called() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut csv = String::from("x,input,a.b,a_b,dense\n");
    for i in 0..200 {
        let x = i as f64 / 100.0;
        csv += &format!("{x},{},{},{},{}\n", 2.0 * x, 1.0 - x, x * x, ["p", "q"][(i / 10) % 2]);
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
    let toml = "[data]\npath = \"t.csv\"\ntarget = [\"input\", \"a.b\", \"a_b\", \"dense\"]\n[train]\nepochs = 1\n";
    let (cfg, table, types, _, train) = load(dir, toml);
    let model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
    assert_eq!(model.outputs(), ["input_output", "a_b", "a_b_output", "dense_output"]);
}
