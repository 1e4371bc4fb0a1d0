//! Tables through the binary: the audit of adult.csv, a planted leak, training on the official split and
//! predicting raw rows with the saved preparation, cross-validation, and bad tables.

use crate::common::*;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn adult() -> String {
    format!("{ROOT}/data/adult/adult.csv.gz")
}

#[test]
fn audit_reports_missing_values_balance_and_a_planted_leak() {
    let o = kiln(&["data", "audit", &adult(), "--target", "income"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    for col in ["workclass", "occupation", "native-country"] {
        let line = out.lines().find(|l| l.starts_with(col)).unwrap_or_else(|| panic!("no row for {col}:\n{out}"));
        assert!(line.contains("% missing"), "{line}");
    }
    assert!(out.contains("target `income` balance: <=50K: 37155 (76.1%), >50K: 11687 (23.9%)"), "{out}");
    assert!(out.contains("no leakage suspects"), "{out}");

    // A copy of the label with 1% of its values flipped, under an innocent name.
    let t = Tmp::new("leak");
    let mut csv = String::from("age,hours,approved_flag,label\n");
    let mut seed = 1u64;
    for i in 0..2000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let label = if (seed >> 40).is_multiple_of(3) { "yes" } else { "no" };
        let flip = i % 100 == 0;
        let flag = if (label == "yes") != flip { "A" } else { "B" };
        csv += &format!("{},{},{flag},{label}\n", 20 + (seed >> 50) % 50, 30 + (seed >> 20) % 20);
    }
    std::fs::write(t.path("leak.csv"), csv).unwrap();
    let (json, html) = (t.s("audit.json"), t.s("audit.html"));
    let o = kiln(&["data", "audit", &t.s("leak.csv"), "--target", "label", "--json", &json, "--html", &html]);
    assert!(stdout(&o).contains("leakage suspects (check how these are filled in): approved_flag"), "{}", stdout(&o));
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["leakage_suspects"], serde_json::json!(["approved_flag"]));
    assert!(std::fs::read_to_string(&html).unwrap().contains("class=\"leak\""));
}

#[test]
fn adult_trains_on_its_split_and_predicts_raw_rows_with_the_saved_preparation() {
    let t = Tmp::new("adult");
    let cfg = format!("{ROOT}/examples/adult/adult.toml");
    let o = kiln(&["train", &cfg, "--run-dir", &t.s("run"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    let line = out.lines().find(|l| l.starts_with("test ")).unwrap();
    let auc: f64 = line.split("roc_auc: ").nth(1).unwrap()[..6].parse().unwrap();
    println!("adult: {line}");
    assert!(auc >= 0.9052, "ROC-AUC {auc} below logistic regression's 0.9052 on the same split");

    // Raw rows, without the target column, in another column order, with an unseen category and a `?`.
    let raw = "education,age,workclass,fnlwgt,educational-num,marital-status,occupation,relationship,race,gender,\
               capital-gain,capital-loss,hours-per-week,native-country\n\
               Doctorate,52,Self-emp-inc,100000,16,Married-civ-spouse,Exec-managerial,Husband,White,Male,15024,0,60,United-States\n\
               11th,19,?,100000,7,Never-married,Handlers-cleaners,Own-child,White,Male,0,0,20,Atlantis\n";
    std::fs::write(t.path("rows.csv"), raw).unwrap();
    let o = kiln(&["predict", &t.s("run/model.safetensors"), "--input", &t.s("rows.csv"), "--output", &t.s("p.csv")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = std::fs::read_to_string(t.path("p.csv")).unwrap();
    let rows: Vec<&str> = p.lines().collect();
    assert_eq!(rows[0], "row,prediction,p_>50K");
    assert!(rows[1].starts_with("1,>50K,") && rows[2].starts_with("2,<=50K,"), "{p}");

    // The same probabilities as the library computes in-process for those rows.
    let model = kiln::prelude::Sequential::load(t.path("run/model.safetensors")).unwrap();
    let table = kiln::data::csv::read_table(&t.path("rows.csv"), &Default::default()).unwrap();
    let x = model.preparation().unwrap().transform(&table, &[0, 1]).unwrap();
    let probs = model.predict(&x, 2).unwrap();
    for (line, q) in rows[1..].iter().zip(probs.data()) {
        assert_eq!(line.rsplit(',').next().unwrap(), format!("{q:.6}"));
    }

    // `kiln summary` reads a table config as it reads an image config: the model it would train.
    let o = kiln(&["summary", &cfg]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let total = |s: &str| s.lines().find(|l| l.contains("Total params")).map(str::to_string);
    assert_eq!(total(&stdout(&o)), total(&model.summary()), "{}", stdout(&o));
}

#[test]
fn zero_config_training_cross_validation_and_bad_tables() {
    let t = Tmp::new("tables");
    let credit = format!("{ROOT}/data/german-credit/credit-g.arff");
    let o = kiln(&["cv", "--data", &credit, "--target", "class", "--folds", "5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert_eq!(out.lines().filter(|l| l.starts_with("fold ")).count(), 5);
    assert!(
        out.contains("5-fold cross-validation: accuracy: ") && out.contains("roc_auc: 0.") && out.contains(" ± "),
        "{out}"
    );

    let o = kiln(&["train", "--data", &credit, "--target", "class", "--run-dir", &t.s("run"), "--epochs", "5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("config used") && stdout(&o).contains("target = \"class\""), "{}", stdout(&o));

    std::fs::write(t.path("ragged.csv"), "a,b,y\n1,2,x\n3,y\n").unwrap();
    assert_fails(
        &kiln(&["train", "--data", &t.s("ragged.csv"), "--target", "y"]),
        &["ragged.csv", "line 3 has 2 fields"],
    );
    assert_fails(
        &kiln(&["train", "--data", &credit, "--target", "risk"]),
        &["no column `risk`", "checking_status", "class"],
    );
    let mut stray = String::from("x,y\n");
    for i in 0..100 {
        stray += &format!("{},{}\n", if i == 41 { "abc".to_string() } else { i.to_string() }, i % 2);
    }
    std::fs::write(t.path("stray.csv"), stray).unwrap();
    assert_fails(
        &kiln(&["train", "--data", &t.s("stray.csv"), "--target", "y"]),
        &["column `x` holds numbers but row 42 has `abc`"],
    );
    std::fs::write(t.path("empty.csv"), "").unwrap();
    assert_fails(&kiln(&["data", "audit", &t.s("empty.csv")]), &["empty.csv", "empty file"]);
    assert_fails(&kiln(&["train", "--data", &credit]), &["--target"]);
}

#[test]
fn a_numeric_target_is_regression_scored_by_rmse_mae_and_r2() {
    let t = Tmp::new("regress");
    let mut csv = String::from("x1,x2,color,y\n");
    let mut seed = 3u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    for _ in 0..1500 {
        let (a, b, c) = (next() * 4.0 - 2.0, next() * 4.0 - 2.0, next());
        let color = if c < 0.5 { "red" } else { "blue" };
        let y = 2.0 * a - b + if color == "red" { 1.0 } else { 0.0 } + 0.05 * (next() - 0.5);
        csv += &format!("{a:.4},{b:.4},{color},{y:.4}\n");
    }
    std::fs::write(t.path("r.csv"), csv).unwrap();
    std::fs::write(
        t.path("r.toml"),
        "[data]\npath = \"r.csv\"\ntarget = \"y\"\n[train]\nepochs = 60\nloss = \"huber\"\n",
    )
    .unwrap();
    let o = kiln(&["train", &t.s("r.toml"), "--run-dir", &t.s("run"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = stdout(&o).lines().find(|l| l.starts_with("test ")).unwrap().to_string();
    let r2: f64 = line.split("r2: ").nth(1).unwrap()[..6].parse().unwrap();
    assert!(line.contains("rmse: ") && line.contains("mae: ") && r2 > 0.95, "{line}");
}

#[test]
fn search_cross_validates_each_setting_and_writes_the_best_config() {
    let t = Tmp::new("search");
    let cfg = std::fs::read_to_string(format!("{ROOT}/examples/german-credit/credit.toml"))
        .unwrap()
        .replace("../../data", &format!("{ROOT}/data"));
    std::fs::write(t.path("c.toml"), cfg).unwrap();
    let o = kiln(&[
        "search",
        &t.s("c.toml"),
        "--set",
        "model.hidden=[8],[16, 8]",
        "--set",
        "train.epochs=5",
        "--folds",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    let ranking: Vec<&str> = out.lines().skip_while(|l| l.starts_with("config ")).collect();
    assert!(ranking[0].starts_with("2 configs, 3-fold cross-validation each"), "{out}");
    let best = std::fs::read_to_string(t.path("best.toml")).unwrap();
    let first = ranking[1];
    let hidden = if first.contains("[16, 8]") { "hidden = [\n    16,\n    8,\n]" } else { "hidden = [8]" };
    assert!(best.contains(hidden) && best.contains("epochs = 5"), "{first}\n{best}");
    assert_fails(&kiln(&["search", &t.s("c.toml"), "--set", "model.l2=0.1,abc"]), &["model.l2 = \"abc\""]);
}

/// The adult FT-Transformer example builds (its layers from the table) and trains a few epochs through the
/// binary; its full run's figures are in examples/adult/README.md.
#[test]
fn the_adult_ft_transformer_example_trains() {
    let t = Tmp::new("adult-ft");
    let cfg = format!("{ROOT}/examples/adult/ft_transformer.toml");
    let o = kiln(&["train", &cfg, "--run-dir", &t.s("run"), "--quiet", "--epochs", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    let line = out.lines().find(|l| l.starts_with("test ")).unwrap();
    let auc: f64 = line.split("roc_auc: ").nth(1).unwrap()[..6].parse().unwrap();
    assert!(auc >= 0.85, "two epochs of the FT-Transformer: {line}");
    let o = kiln(&["summary", &t.s("run/model.safetensors")]);
    assert!(stdout(&o).contains("ColumnTokens") && stdout(&o).contains("SelectToken"), "{}", stdout(&o));
}

/// A table run gets the run folder an image run gets: logs, a checkpoint every epoch, run.json; `kiln plot`
/// and `kiln report` read it; and a run continued with `--resume` ends with the very weights of a run that
/// was never stopped (early stopping's best weights travel in the checkpoint).
#[test]
fn a_table_run_has_logs_checkpoints_report_and_resumes_bit_identically() {
    let t = Tmp::new("table-run");
    let mut csv = String::from("x1,x2,color,label\n");
    let mut seed = 7u64;
    for _ in 0..400 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let (a, b) = (((seed >> 33) % 1000) as f64 / 100.0, ((seed >> 13) % 1000) as f64 / 100.0);
        let color = ["red", "green", "blue"][(seed >> 50) as usize % 3];
        let label = if a + b + if color == "red" { 3.0 } else { 0.0 } > 11.0 { "yes" } else { "no" };
        csv += &format!("{a},{b},{color},{label}\n");
    }
    std::fs::write(t.path("t.csv"), csv).unwrap();
    std::fs::write(
        t.path("t.toml"),
        "[data]\npath = \"t.csv\"\ntarget = \"label\"\n\n[model]\nhidden = [16]\n\n[train]\nepochs = 6\npatience = 2\n",
    )
    .unwrap();
    let o = kiln(&["train", &t.s("t.toml"), "--run-dir", &t.s("full"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in
        ["config.toml", "run.json", "split.csv", "log.csv", "log.jsonl", "checkpoint.safetensors", "model.safetensors"]
    {
        assert!(t.path("full").join(f).exists(), "the table run folder lacks {f}");
    }
    let o = kiln(&["plot", &t.s("full")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = kiln(&["report", &t.s("full")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(t.path("full/report.md")).unwrap();
    assert!(md.contains("## Final model on the test rows (80 rows)") && md.contains("roc_auc"), "{md}");

    // Two epochs, then continued to six from the checkpoint.
    let o = kiln(&["train", &t.s("t.toml"), "--run-dir", &t.s("cut"), "--quiet", "--epochs", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = kiln(&["train", "--resume", &t.s("cut"), "--epochs", "6", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let weights =
        |dir: &str| kiln::prelude::Sequential::load(t.path(dir).join("model.safetensors")).unwrap().get_weights();
    assert_eq!(weights("cut"), weights("full"), "the resumed run ends where the uninterrupted one does");
    let log = |dir: &str| std::fs::read_to_string(t.path(dir).join("log.csv")).unwrap().lines().count();
    assert_eq!(log("cut"), log("full"), "one log line per epoch, across the resume");
}

/// `[train]` is spelled as in every config: the optimizer and its rate in `optimizer`, the loss in `loss`;
/// the older table spellings get a line saying where the setting went.
#[test]
fn table_train_keys_are_the_common_ones_and_old_spellings_are_redirected() {
    let t = Tmp::new("train-keys");
    let csv: String = std::iter::once("x,y\n".to_string())
        .chain((0..60).map(|i| format!("{i},{}\n", ["no", "yes"][i % 2])))
        .collect();
    std::fs::write(t.path("t.csv"), csv).unwrap();
    let cfg = |train: &str| format!("[data]\npath = \"t.csv\"\ntarget = \"y\"\n\n[train]\nepochs = 1\n{train}\n");
    for (train, want) in [
        ("learning_rate = 0.01", "it is set with the optimizer: optimizer = { type = \"adam\", learning_rate"),
        ("weight_decay = 0.01", "type = \"adamw\""),
        ("regression_loss = \"huber\"", "write loss = \"huber\""),
        ("loss = \"mean_squared_error\"", "train.loss: mean_squared_error does not fit the target `y`"),
    ] {
        std::fs::write(t.path("t.toml"), cfg(train)).unwrap();
        assert_fails(&kiln(&["train", &t.s("t.toml"), "--quiet", "--run-dir", &t.s("r")]), &[want]);
    }
    std::fs::write(
        t.path("t.toml"),
        cfg("optimizer = { type = \"adamw\", learning_rate = 0.01, weight_decay = 0.01 }"),
    )
    .unwrap();
    let o = kiln(&["train", &t.s("t.toml"), "--print-config"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("type = \"adamw\""), "{}", stdout(&o));
}

/// A two-input graph from TOML: `[[model.inputs]]` give a table's graph two named inputs, each reading its own
/// columns; the label is an XOR of one half-plane per input, so a model that ignores either input stays at
/// chance. Trained, summarized with both inputs, predicting raw rows; wrong column splits are refused.
#[test]
fn a_two_input_table_graph_from_toml_learns_a_rule_needing_both() {
    let t = Tmp::new("two-inputs");
    // `left` reads three columns (a3 is noise), `right` two: inputs wired to the wrong columns would not fit.
    let mut csv = String::from("a1,a2,a3,b1,b2,label\n");
    let mut seed = 3u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    for _ in 0..1500 {
        let (a1, a2, a3, b1, b2) = (next(), next(), next(), next(), next());
        let label = if (a1 + 2.0 * a2 > 0.0) != (b1 - b2 > 0.0) { "yes" } else { "no" };
        csv += &format!("{a1:.4},{a2:.4},{a3:.4},{b1:.4},{b2:.4},{label}\n");
    }
    std::fs::write(t.path("pairs.csv"), csv).unwrap();
    let graph = r#"
[data]
path = "pairs.csv"
target = "label"

[train]
epochs = 80
patience = 20
optimizer = { type = "adam", learning_rate = 0.01 }

[[model.inputs]]
name = "left"
columns = ["a1", "a2", "a3"]

[[model.inputs]]
name = "right"
columns = ["b1", "b2"]

[[model.nodes]]
type = "dense"
name = "l"
units = 8
activation = "tanh"
inputs = ["left"]

[[model.nodes]]
type = "dense"
name = "r"
units = 8
activation = "tanh"
inputs = ["right"]

[[model.nodes]]
type = "concatenate"
name = "both"
inputs = ["l", "r"]

[[model.nodes]]
type = "dense"
units = 16
activation = "relu"
inputs = ["both"]

[[model.nodes]]
type = "dense"
units = 1
activation = "sigmoid"
"#;
    std::fs::write(t.path("g.toml"), graph).unwrap();
    let o = kiln(&["summary", &t.s("g.toml")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = stdout(&o);
    assert!(
        summary.contains("left") && summary.contains("right") && summary.contains("both (Concatenate)"),
        "{summary}"
    );
    let o = kiln(&["train", &t.s("g.toml"), "--quiet", "--run-dir", &t.s("run")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    let line = out.lines().find(|l| l.starts_with("test ")).unwrap_or_else(|| panic!("{out}"));
    let acc: f64 = line.split("accuracy: ").nth(1).unwrap()[..6].parse().unwrap();
    assert!(acc > 0.9, "an XOR of the two inputs' half-planes: {line}");
    // Raw rows go to the two inputs as in training.
    // a1 + 2·a2: 0.9 - 0.3 > 0 in the first row, -0.9 + 0.6 < 0 in the second (a1 and a2 swapped would flip
    // both); b1 - b2 < 0 in both.
    std::fs::write(t.path("rows.csv"), "b2,b1,a3,a2,a1\n0.5,-0.5,0.0,-0.15,0.9\n0.5,-0.5,0.0,0.3,-0.9\n").unwrap();
    let o = kiln(&["predict", &t.s("run/model.safetensors"), "--input", &t.s("rows.csv")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let preds: Vec<String> = stdout(&o).lines().skip(1).map(|l| l.split(',').nth(1).unwrap().to_string()).collect();
    assert_eq!(preds, ["yes", "no"], "a1 + 2·a2 > 0 with b1 - b2 < 0 is `yes`, both false `no`: {}", stdout(&o));
    // Every prepared column in exactly one input; named inputs go with a graph.
    let cases = [
        (graph.replace("columns = [\"b1\", \"b2\"]", "columns = [\"b1\"]"), "column `b2` is read by no input"),
        (graph.replace("columns = [\"b1\", \"b2\"]", "columns = [\"b1\", \"b2\", \"a1\"]"), "`a1` is read by both"),
        (
            graph.replace("columns = [\"b1\", \"b2\"]", "columns = [\"b1\", \"b3\"]"),
            "reads `b3`, which is not a column",
        ),
        (
            graph
                .replace("[[model.nodes]]", "[[model.layers]]")
                .lines()
                .filter(|l| !l.starts_with("inputs = "))
                .collect::<Vec<_>>()
                .join("\n"),
            "model.inputs names the inputs of a table's graph",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let name = format!("bad{i}.toml");
        std::fs::write(t.path(&name), text).unwrap();
        assert_fails(&kiln(&["train", &t.s(&name), "--quiet", "--run-dir", &t.s(&format!("bad{i}"))]), &[want]);
        assert!(!t.path(&format!("bad{i}")).exists(), "a refused config leaves no run folder");
    }
}

/// Two targets from one config: `kiln train` prints a test line per target, `kiln predict` writes each
/// target's columns, `kiln evaluate` and `kiln report` score each, and `kiln cv` names each score after its
/// target.
#[test]
fn two_targets_train_predict_evaluate_report_and_cross_validate() {
    let t = Tmp::new("targets");
    let mut csv = String::from("a,b,spend,churn\n");
    let mut seed = 3u64;
    for _ in 0..600 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let (a, b) = (((seed >> 20) % 1000) as f64 / 500.0 - 1.0, ((seed >> 40) % 1000) as f64 / 500.0 - 1.0);
        csv += &format!("{a},{b},{:.3},{}\n", 1.0 + 3.0 * a, if b > 0.0 { "yes" } else { "no" });
    }
    std::fs::write(t.path("t.csv"), csv).unwrap();
    let toml =
        "[data]\npath = \"t.csv\"\ntarget = [\"spend\", \"churn\"]\n[model]\nhidden = [16]\n[train]\nepochs = 60\n";
    std::fs::write(t.path("c.toml"), toml).unwrap();
    let o = kiln(&["train", &t.s("c.toml"), "--run-dir", &t.s("run"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(out.contains("test spend: rmse: ") && out.contains("test churn: accuracy: "), "{out}");
    let log = std::fs::read_to_string(t.path("run/log.csv")).unwrap();
    let head = log.lines().next().unwrap();
    for col in ["spend_loss", "churn_loss", "spend_mae", "churn_accuracy", "val_churn_accuracy"] {
        assert!(head.split(',').any(|c| c == col), "log.csv lacks {col}: {head}");
    }

    std::fs::write(t.path("rows.csv"), "b,a\n0.5,0.0\n-0.5,1.0\n").unwrap();
    let o = kiln(&["predict", &t.s("run/model.safetensors"), "--input", &t.s("rows.csv"), "--output", &t.s("p.csv")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = std::fs::read_to_string(t.path("p.csv")).unwrap();
    let lines: Vec<Vec<&str>> = p.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(lines[0], ["row", "spend", "churn", "churn_p_yes"], "{p}");
    let spend = |r: usize| lines[r][1].parse::<f64>().unwrap();
    assert!((spend(1) - 1.0).abs() < 0.5 && (spend(2) - 4.0).abs() < 0.5, "spend 1 + 3a: {p}");
    assert_eq!((lines[1][2], lines[2][2]), ("yes", "no"), "churn when b > 0: {p}");

    let o = kiln(&["evaluate", &t.s("run/model.safetensors"), "--data", &t.s("t.csv")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(out.starts_with("spend: rmse: ") && out.contains("\nchurn: accuracy: "), "{out}");
    let o = kiln(&["report", &t.s("run")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(t.path("run/report.md")).unwrap();
    assert!(md.contains("## Final model on the test rows: `spend`") && md.contains("test rows: `churn`"), "{md}");
    assert!(md.contains("![confusion matrix](confusion.svg)"), "churn, the only classifier, is drawn: {md}");

    let o = kiln(&["cv", &t.s("c.toml"), "--folds", "2", "--set", "train.epochs=5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(out.contains("spend_rmse: ") && out.contains("churn_accuracy: "), "{out}");
}

/// Table inputs that used to pass in silence, or crash: each is one clear line, or a warning on stderr.
#[test]
fn silent_table_inputs_get_words() {
    let t = Tmp::new("silent");
    let write = |name: &str, text: &str| std::fs::write(t.path(name), text).unwrap();
    let rows = |n: usize, f: &dyn Fn(usize) -> String| (0..n).map(f).collect::<String>();
    // One class everywhere (numbers): nothing to learn, for train and cv alike.
    write("one.csv", &format!("x,y\n{}", rows(50, &|i| format!("{i},1\n"))));
    let want = ["one.csv: target `y` has 1 distinct value in the", "nothing to learn"];
    assert_fails(&kiln(&["train", "--data", &t.s("one.csv"), "--target", "y"]), &want);
    assert_fails(&kiln(&["cv", "--data", &t.s("one.csv"), "--target", "y"]), &want);
    // A target empty on every row, one row, a column without a name.
    write("none.csv", &format!("x,y\n{}", rows(20, &|i| format!("{i},\n"))));
    assert_fails(&kiln(&["train", "--data", &t.s("none.csv"), "--target", "y"]), &["target `y` is empty on every one"]);
    write("onerow.csv", "x,y\n1,a\n");
    assert_fails(
        &kiln(&["train", "--data", &t.s("onerow.csv"), "--target", "y"]),
        &["onerow.csv: 1 rows leave no training rows"],
    );
    write("blank.csv", &format!("a,,y\n{}", rows(20, &|i| format!("{i},{},{}\n", i % 3, ["p", "q"][i % 2]))));
    assert_fails(
        &kiln(&["train", "--data", &t.s("blank.csv"), "--target", "y"]),
        &["a column has no name in the header (column 2 of 3)"],
    );
    // Words settings of 0.
    write(
        "w.csv",
        &format!("text,y\n{}", rows(40, &|i| format!("word{} other{},{}\n", i % 7, i % 5, ["p", "q"][i % 2]))),
    );
    for key in ["ngrams", "min_freq", "max_tokens"] {
        let set = format!("data.prepare.text.{key}=0");
        let o = kiln(&["train", "--data", &t.s("w.csv"), "--target", "y", "--set", &set]);
        assert_fails(&o, &[&format!("data.prepare.text.{key} must be at least 1")]);
    }
    // A blank column is left out, with a warning.
    write("extra.csv", &format!("x,extra,y\n{}", rows(60, &|i| format!("{},,{}\n", i % 17, ["p", "q"][(i / 7) % 2]))));
    let o = kiln(&[
        "train",
        "--data",
        &t.s("extra.csv"),
        "--target",
        "y",
        "--run-dir",
        &t.s("r1"),
        "--quiet",
        "--epochs",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("column `extra` is empty in every training row; it is left out")
    );

    // A text model: a header-only file to score or predict, a file given where a text goes, unknown words.
    // Texts of 4 to 7 words drawn from each class's 8 (nearly every text distinct: free text, not a category).
    let good = ["good", "great", "lovely", "nice", "fine", "super", "neat", "grand"];
    let bad = ["bad", "awful", "poor", "ugly", "sad", "worse", "dull", "grim"];
    let texts = rows(200, &|i| {
        let pos = i % 2 == 0;
        let mut x = i as u64 * 2654435761 + 12345;
        let w: Vec<&str> = (0..4 + i % 4)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let k = (x >> 33) as usize % 8;
                if pos { good[k] } else { bad[k] }
            })
            .collect();
        format!("{},{}\n", w.join(" "), if pos { "pos" } else { "neg" })
    });
    write("txt.csv", &format!("review,label\n{texts}"));
    let o = kiln(&[
        "train",
        "--data",
        &t.s("txt.csv"),
        "--target",
        "label",
        "--run-dir",
        &t.s("rt"),
        "--quiet",
        "--epochs",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = t.s("rt/model.safetensors");
    write("head.csv", "review,label\n");
    assert_fails(
        &kiln(&["evaluate", &model, "--data", &t.s("head.csv")]),
        &["head.csv: no rows to score (only a header)"],
    );
    assert_fails(&kiln(&["predict", &model, "--input", &t.s("head.csv")]), &["head.csv: no rows to predict"]);
    assert_fails(&kiln(&["predict", &model, &t.s("head.csv")]), &["is a file, and", "give its rows with --input"]);
    // Quoted empty texts are rows (4 in, 4 out), and texts with no known word are counted on stderr.
    write("in.csv", "review\n\"good great\"\n\"\"\n\"\"\nzzz qqq\n");
    let o = kiln(&["predict", &model, "--input", &t.s("in.csv")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o).lines().count(), 5, "a header and 4 rows: {}", stdout(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("warning: 3 of 4 rows have no word the model knows in `review`"), "{err}");
}

/// A Latin-1/Windows-1252 file (a spreadsheet export) is read, with a warning naming the encoding used;
/// `data.encoding` says which it is; an unknown one is an error naming the key.
#[test]
fn files_in_other_encodings_are_read_and_say_so() {
    let t = Tmp::new("encoding");
    let mut bytes = b"city,amount,y\n".to_vec();
    for i in 0..60 {
        let city: &[u8] = if i % 2 == 0 { b"Z\xfcrich" } else { b"M\xe1laga" };
        bytes.extend_from_slice(city);
        bytes.extend_from_slice(format!(",{i},{}\n", ["p", "q"][i % 2]).as_bytes());
    }
    std::fs::write(t.path("latin.csv"), &bytes).unwrap();
    let o = kiln(&["data", "audit", &t.s("latin.csv"), "--target", "y"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("latin.csv: not UTF-8 (line 2); read as Windows-1252 (Latin-1)"), "{err}");
    let json = t.s("audit.json");
    let o = kiln(&["data", "audit", &t.s("latin.csv"), "--json", &json]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let top = j["columns"][0]["top"][0].as_str().unwrap().to_string();
    assert!(top == "Zürich" || top == "Málaga", "decoded: {top}");
    let cfg = "[data]\npath = \"latin.csv\"\ntarget = \"y\"\nencoding = \"latin1\"\n[train]\nepochs = 1\n";
    std::fs::write(t.path("c.toml"), cfg).unwrap();
    let o = kiln(&["train", &t.s("c.toml"), "--run-dir", &t.s("run"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("warning"), "an encoding given: no warning");
    std::fs::write(t.path("bad.toml"), cfg.replace("latin1", "klingon")).unwrap();
    assert_fails(&kiln(&["train", &t.s("bad.toml")]), &["data.encoding: `klingon` is not an encoding kiln knows"]);
    // UTF-16 without a byte-order mark (valid UTF-8, NULs between the characters) is found and said.
    let text: String = (0..60).map(|i| format!("Zürich,{i},{}\n", ["p", "q"][i % 2])).collect();
    let utf16: Vec<u8> = format!("city,amount,y\n{text}").encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    std::fs::write(t.path("utf16.csv"), &utf16).unwrap();
    let o = kiln(&["data", "audit", &t.s("utf16.csv"), "--json", &json]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("utf16.csv: no byte-order mark, but read as UTF-16LE"), "{err}");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["columns"][0]["top"][0].as_str(), Some("Zürich"));
    // Said once per file, whichever path reads it; with a byte-order mark there is nothing to say.
    let o = kiln(&["train", "--data", &t.s("utf16.csv"), "--target", "y", "--epochs", "1", "--run-dir", &t.s("r16")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stderr).matches("no byte-order mark").count(), 1);
    let mut with_bom = vec![0xFF, 0xFE];
    with_bom.extend(&utf16);
    std::fs::write(t.path("bom.csv"), &with_bom).unwrap();
    let o = kiln(&["data", "audit", &t.s("bom.csv")]);
    assert!(o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("warning"), "{o:?}");
    // An encoding that does not fit the file: named, not "no rows".
    std::fs::write(t.path("t.csv"), format!("city,amount,y\n{text}")).unwrap();
    std::fs::write(t.path("wrong.toml"), cfg.replace("latin1", "utf-16le").replace("latin.csv", "t.csv")).unwrap();
    assert_fails(&kiln(&["train", &t.s("wrong.toml")]), &["t.csv", "UTF-16LE", "set data.encoding"]);
}

/// `data.positive` names the class the binary metrics are about, and the test line says which it is.
#[test]
fn the_positive_class_is_chosen_and_named() {
    let t = Tmp::new("positive");
    let mut csv = String::from("x,risk\n");
    for i in 0..200 {
        csv += &format!("{i},{}\n", if i % 4 == 0 { "bad" } else { "good" });
    }
    std::fs::write(t.path("t.csv"), csv).unwrap();
    let run = |extra: &str, dir: &str| {
        std::fs::write(
            t.path("c.toml"),
            format!("[data]\npath = \"t.csv\"\ntarget = \"risk\"\n{extra}[train]\nepochs = 2\n"),
        )
        .unwrap();
        kiln(&["train", &t.s("c.toml"), "--run-dir", &t.s(dir), "--quiet"])
    };
    let o = run("", "a");
    let about = |c: &str| format!("\n(precision, recall, f1 and pr_auc are of class `{c}`; data.positive chooses it)");
    assert!(stdout(&o).contains(&about("good")), "the last in order by default: {}", stdout(&o));
    let o = run("positive = \"bad\"\n", "b");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains(&about("bad")), "{}", stdout(&o));
    assert_fails(
        &run("positive = \"ugly\"\n", "c"),
        &["data.positive: `ugly` is not a class of the target (`risk` has bad, good)"],
    );
}

/// The audit names identifier columns (and a zero-config run leaves them out, saying so), reads a 0/1
/// target's balance, notes a capped target, and does not call every non-zero value of a zero-heavy column
/// an outlier.
#[test]
fn the_audit_flags_identifiers_caps_and_zero_heavy_columns() {
    let t = Tmp::new("audit-ids");
    let mut csv = String::from("id,name,gain,x,flag,price\n");
    for i in 0..300 {
        let gain = if i % 5 == 0 { (i * 37) % 900 + 1 } else { 0 };
        let price = if i % 10 == 0 { 500001 } else { 1000 + (i * 7919) % 90000 };
        csv +=
            &format!("{},Person {},{gain},{:.3},{},{price}\n", i + 1, i * 7 % 1000, (i as f64 * 0.37).sin(), i % 3 % 2);
    }
    std::fs::write(t.path("t.csv"), &csv).unwrap();
    let o = kiln(&["data", "audit", &t.s("t.csv"), "--target", "price"]);
    let out = stdout(&o);
    let line = |c: &str| {
        out.lines().find(|l| l.starts_with(&format!("{c} "))).unwrap_or_else(|| panic!("{c}: {out}")).to_string()
    };
    assert!(line("id").contains("IDENTIFIER?") && line("name").contains("IDENTIFIER?"), "{out}");
    assert!(!line("x").contains("IDENTIFIER?"), "a measurement with distinct values is no identifier: {out}");
    assert!(line("gain").contains("80.0% are `0`") && !line("gain").contains("outliers"), "{out}");
    assert!(line("price").contains("capped? 30 rows (10.0%) at exactly the maximum 500001"), "{out}");
    // A numeric column with one stray string: the audit says what training will refuse.
    let stray: String = (0..100).map(|i| if i == 42 { "oops,p\n".to_string() } else { format!("{i},p\n") }).collect();
    std::fs::write(t.path("stray.csv"), format!("n,y\n{stray}")).unwrap();
    let o = kiln(&["data", "audit", &t.s("stray.csv")]);
    assert!(
        stdout(&o).contains("TRAINING REFUSES IT: column `n` holds numbers but row 43 has `oops`"),
        "{}",
        stdout(&o)
    );
    assert!(
        out.contains(
            "identifier columns (a different value on nearly every row; zero-config runs leave them out): id, name"
        ),
        "{out}"
    );
    let o = kiln(&["data", "audit", &t.s("t.csv"), "--target", "flag"]);
    assert!(stdout(&o).contains("target `flag` balance: 0: 200 (66.7%), 1: 100 (33.3%)"), "{}", stdout(&o));

    let o = kiln(&["train", "--data", &t.s("t.csv"), "--target", "flag", "--run-dir", &t.s("run"), "--epochs", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("\nnote: leaving out identifier columns: id, name"), "{}", stdout(&o));
    assert!(stdout(&o).contains("ignore = [\n    \"id\",\n    \"name\",\n]"), "the printed config: {}", stdout(&o));
}
