//! Tables through the binary: the audit of adult.csv, a planted leak, training on the official split and
//! predicting raw rows with the saved preparation, cross-validation, and bad tables.

mod common;
use common::*;

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

#[test]
fn text_models_predict_raw_text_as_they_predict_files() {
    let t = Tmp::new("text");
    let (good, bad, filler) =
        (["great", "lovely", "perfect"], ["awful", "broken", "refund"], ["the", "dress", "fit", "color"]);
    let mut csv = String::from("review,stars\n");
    let mut jsonl = String::new();
    let mut seed = 5u64;
    for i in 0..600 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let positive = i % 3 != 0;
        let words = if positive { good } else { bad };
        let text = format!(
            "{} {}, \"{}\" {}",
            filler[(seed >> 20) as usize % 4],
            words[(seed >> 30) as usize % 3],
            filler[(seed >> 40) as usize % 4],
            if i % 7 == 0 { "" } else { filler[(seed >> 50) as usize % 4] }
        );
        let stars = if positive { 5 } else { 1 };
        csv += &format!("\"{}\",{stars}\n", text.replace('"', "\"\""));
        jsonl += &format!("{}\n", serde_json::json!({"review": text, "stars": stars}));
    }
    std::fs::write(t.path("r.csv"), csv).unwrap();
    std::fs::write(t.path("r.jsonl"), jsonl).unwrap();
    let cfg = "[data]\npath = \"r.csv\"\ntarget = \"stars\"\n[data.classes]\n1 = \"negative\"\n5 = \"positive\"\n\
               [data.prepare.text]\nlength = 16\ndim = 8\n[train]\nepochs = 30\n";
    std::fs::write(t.path("r.toml"), cfg).unwrap();
    let o = kiln(&["train", &t.s("r.toml"), "--run-dir", &t.s("run")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(out.contains("precision") && out.contains("confusion matrix"), "{out}");
    let acc: f64 = out.split("test accuracy: ").nth(1).unwrap()[..6].parse().unwrap();
    assert!(acc > 0.95, "{out}");
    let model = t.s("run/model.safetensors");
    let o = kiln(&["predict", &model, "what a lovely dress"]);
    let one = stdout(&o);
    assert!(one.contains("1,positive,"), "{one}{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(t.path("in.csv"), "review\nwhat a lovely dress\n\"broken, awful\"\n\n").unwrap();
    let o = kiln(&["predict", &model, "--input", &t.s("in.csv")]);
    let many = stdout(&o);
    assert_eq!(many.lines().nth(1), one.lines().nth(1), "raw text and a file row give the same probability");
    assert!(many.contains("2,negative,"), "{many}");
    // The same rows from JSON lines train too; an invalid UTF-8 file and a missing column are named.
    let o = kiln(&["cv", "--data", &t.s("r.jsonl"), "--target", "stars", "--folds", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(t.path("bad.csv"), b"review,stars\n\xff\xfe,1\n").unwrap();
    assert_fails(
        &kiln(&["train", "--data", &t.s("bad.csv"), "--target", "stars"]),
        &["bad.csv", "not UTF-8", "offset 13"],
    );
    std::fs::write(t.path("other.csv"), "comment\nnice\n").unwrap();
    assert_fails(&kiln(&["predict", &model, "--input", &t.s("other.csv")]), &["no column `review`", "comment"]);
    // `kiln evaluate` scores a file with the config's class mapping (stars 1 and 5 to negative/positive).
    let o = kiln(&["evaluate", &model, "--data", &t.s("r.csv")]);
    let ev = stdout(&o);
    assert!(ev.contains("macro_f1: ") && ev.contains("(600 rows)") && ev.contains("weighted avg"), "{ev}");
    // The bag's learned word vectors, exported in GloVe's format, start a GRU's embeddings.
    let o = kiln(&["export-vectors", &model, "--output", &t.s("vectors.txt")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let vectors = std::fs::read_to_string(t.path("vectors.txt")).unwrap();
    let lovely = vectors.lines().find(|l| l.starts_with("lovely ")).expect("a word of the vocabulary");
    assert_eq!(lovely.split(' ').count(), 9, "a word and 8 numbers: {lovely}");
    assert!(vectors.lines().all(|l| !l.contains("  ")) && !vectors.contains("lovely dress "), "words only");
    let gru = cfg.replace("dim = 8\n", "dim = 8\nglove = \"vectors.txt\"\n") + "[model]\nkind = \"gru\"\nunits = 8\n";
    std::fs::write(t.path("gru.toml"), gru).unwrap();
    let o = kiln(&["train", &t.s("gru.toml"), "--run-dir", &t.s("run5"), "--quiet", "--epochs", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_fails(&kiln(&["export-vectors", &t.s("r.csv"), "--output", &t.s("v2.txt")]), &["r.csv"]);
    // Or from vectors learned first on the training texts (not both); a bad setting is named.
    let pre = cfg.replace("dim = 8\n", "dim = 8\npretrain = { epochs = 2 }\n") + "[model]\nkind = \"gru\"\nunits = 8\n";
    std::fs::write(t.path("pre.toml"), pre).unwrap();
    let o = kiln(&["train", &t.s("pre.toml"), "--run-dir", &t.s("run6"), "--epochs", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("word vectors for `review`: skip-gram on 480 training and validation texts"));
    assert_fails(
        &kiln(&["train", &t.s("gru.toml"), "--set", "data.prepare.text.pretrain={}"]),
        &["`glove` and `pretrain` both start the embeddings"],
    );
    assert_fails(
        &kiln(&["train", &t.s("pre.toml"), "--set", "data.prepare.text.pretrain={ window = 0 }"]),
        &["data.prepare.text.pretrain.window must be at least 1"],
    );
    assert_fails(
        &kiln(&["train", &t.s("pre.toml"), "--set", "data.prepare.text.pretrain=3"]),
        &["data.prepare.text.pretrain = 3", "a table of skip-gram settings: {} for the defaults"],
    );
    // The run folder says which file rows were test rows (for baselines on the same split).
    let split = std::fs::read_to_string(t.path("run/split.csv")).unwrap();
    assert_eq!(split.lines().next(), Some("row,part"));
    assert_eq!(split.lines().filter(|l| l.ends_with(",test")).count(), 120);
    assert_eq!(split.lines().filter(|l| l.ends_with(",train")).count(), 480);
    // TF-IDF bag with balanced class weights, from the config; raw text and a file row agree.
    let tfidf = cfg.replace("dim = 8\n", "dim = 8\noutput = \"tf_idf\"\n") + "class_weight = \"balanced\"\n";
    std::fs::write(t.path("tfidf.toml"), &tfidf).unwrap();
    let o = kiln(&["train", &t.s("tfidf.toml"), "--run-dir", &t.s("run2"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let acc: f64 = stdout(&o).split("test accuracy: ").nth(1).unwrap()[..6].parse().unwrap();
    assert!(acc > 0.95, "{}", stdout(&o));
    let model2 = t.s("run2/model.safetensors");
    let one = stdout(&kiln(&["predict", &model2, "what a lovely dress"]));
    let many = stdout(&kiln(&["predict", &model2, "--input", &t.s("in.csv")]));
    assert_eq!(many.lines().nth(1), one.lines().nth(1));
    // The same from the command line, and a key that does not exist.
    let o = kiln(&[
        "train",
        &t.s("r.toml"),
        "--set",
        "data.prepare.text.output=multi_hot",
        "--set",
        "train.class_weight={ negative = 2.0 }",
        "--run-dir",
        &t.s("run4"),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let saved = std::fs::read_to_string(t.path("run4/config.toml")).unwrap();
    assert!(saved.contains("output = \"multi_hot\"") && saved.contains("negative = 2.0"), "{saved}");
    assert_fails(&kiln(&["train", &t.s("r.toml"), "--set", "model.nope=1"]), &["model.nope", "nope"]);
    std::fs::write(t.path("badw.toml"), tfidf.replace("\"balanced\"", "{ neutral = 2.0 }")).unwrap();
    assert_fails(
        &kiln(&["train", &t.s("badw.toml"), "--run-dir", &t.s("run3")]),
        &["train.class_weight", "no class `neutral`", "negative, positive"],
    );
}

#[test]
fn the_review_examples_configs_parse() {
    for name in ["sentiment", "sentiment_gru", "recommend"] {
        let o = kiln(&["train", &format!("{ROOT}/examples/reviews/{name}.toml"), "--print-config"]);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    }
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
        ("loss = \"mean_squared_error\"", "train.loss: mean_squared_error does not fit this target"),
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
