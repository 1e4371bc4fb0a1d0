//! Text through the binary: models trained on a CSV of texts predict raw text as they predict files, the
//! review examples' configs parse, and zero-config training sizes its text length from the data.

use crate::common::*;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

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
    let o = kiln(&["train", "--data", &t.s("bad.csv"), "--target", "stars", "--set", "data.encoding=\"utf-8\""]);
    assert_fails(&o, &["bad.csv", "not valid UTF-8 (line 2, byte 13)"]);
    std::fs::write(t.path("other.csv"), "comment\nnice\n").unwrap();
    assert_fails(&kiln(&["predict", &model, "--input", &t.s("other.csv")]), &["no column `review`", "comment"]);
    // `kiln evaluate` scores a file with the config's class mapping (stars 1 and 5 to negative/positive).
    let o = kiln(&["evaluate", &model, "--data", &t.s("r.csv")]);
    let ev = stdout(&o);
    assert!(ev.contains("macro_f1: ") && ev.contains("(600 rows)") && ev.contains("weighted avg"), "{ev}");
    // The bag's learned word vectors, exported in GloVe's format, start a GRU's embeddings.
    let o = kiln(&["export", &model, "--format", "glove", "--output", &t.s("vectors.txt")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let vectors = std::fs::read_to_string(t.path("vectors.txt")).unwrap();
    let lovely = vectors.lines().find(|l| l.starts_with("lovely ")).expect("a word of the vocabulary");
    assert_eq!(lovely.split(' ').count(), 9, "a word and 8 numbers: {lovely}");
    assert!(vectors.lines().all(|l| !l.contains("  ")) && !vectors.contains("lovely dress "), "words only");
    let gru = cfg.replace("dim = 8\n", "dim = 8\nglove = \"vectors.txt\"\n") + "[model]\nkind = \"gru\"\nunits = 8\n";
    std::fs::write(t.path("gru.toml"), gru).unwrap();
    let o = kiln(&["train", &t.s("gru.toml"), "--run-dir", &t.s("run5"), "--quiet", "--epochs", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_fails(&kiln(&["export", &t.s("r.csv"), "--format", "glove", "--output", &t.s("v2.txt")]), &["r.csv"]);
    // The same model as ONNX, beside it by default, its preparation in the metadata.
    let o = kiln(&["export", &model, "--format", "onnx"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("kiln.preparation"), "{}", stdout(&o));
    let onnx = std::fs::read(std::path::Path::new(&model).with_extension("onnx")).unwrap();
    assert!(onnx.windows(16).any(|w| w == b"kiln.preparation"), "the preparation travels in the file");
    // A transformer over the terms in order learns it too and predicts raw text as the file's rows; its heads
    // must split the term vectors.
    let tf = cfg.to_string() + "[model]\nkind = \"transformer\"\nblocks = 1\nheads = 2\nunits = 16\n";
    std::fs::write(t.path("tf.toml"), &tf).unwrap();
    let o = kiln(&["train", &t.s("tf.toml"), "--run-dir", &t.s("run7"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let acc: f64 = stdout(&o).split("test accuracy: ").nth(1).unwrap()[..6].parse().unwrap();
    assert!(acc > 0.95, "{}", stdout(&o));
    let model7 = t.s("run7/model.safetensors");
    let one = stdout(&kiln(&["predict", &model7, "what a lovely dress"]));
    assert!(one.contains("1,positive,"), "{one}");
    let many = stdout(&kiln(&["predict", &model7, "--input", &t.s("in.csv")]));
    assert_eq!(many.lines().nth(1), one.lines().nth(1));
    assert_fails(
        &kiln(&["train", &t.s("tf.toml"), "--set", "model.heads=3"]),
        &["model.heads = 3 must divide", "data.prepare.text.dim = 8"],
    );
    assert_fails(
        &kiln(&["train", &t.s("tf.toml"), "--set", "model.kernel_size=3"]),
        &["model.kernel_size", "blocks, heads"],
    );
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
    // The run folder says which file rows were test, training and validation rows (for baselines on the same
    // split), and `kiln evaluate --split` scores one part of the file the run trained on.
    let split = std::fs::read_to_string(t.path("run/split.csv")).unwrap();
    assert_eq!(split.lines().next(), Some("row,part"));
    assert_eq!(split.lines().filter(|l| l.ends_with(",test")).count(), 120);
    assert_eq!(split.lines().filter(|l| l.ends_with(",train")).count(), 432);
    assert_eq!(split.lines().filter(|l| l.ends_with(",validation")).count(), 48);
    for (part, rows) in [("validation", "(48 rows)"), ("test", "(120 rows)")] {
        let o = kiln(&["evaluate", &model, "--data", &t.s("r.csv"), "--split", part]);
        assert!(stdout(&o).contains(rows), "{part}: {}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    }
    assert_fails(&kiln(&["evaluate", &model, "--data", &t.s("r.csv"), "--split", "dev"]), &["--split", "`dev`"]);
    std::fs::copy(t.path("run/model.safetensors"), t.path("loose.safetensors")).unwrap();
    assert_fails(
        &kiln(&["evaluate", &t.s("loose.safetensors"), "--data", &t.s("r.csv"), "--split", "test"]),
        &["split.csv", "leave --split out"],
    );
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
    for name in ["sentiment", "sentiment_gru", "sentiment_transformer", "sentiment_minilm", "would_recommend"] {
        let o = kiln(&["train", &format!("{ROOT}/examples/reviews/{name}.toml"), "--print-config"]);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn zero_config_chooses_text_length_from_the_data_and_trains_until_early_stopping() {
    let t = Tmp::new("zero-text");
    // Articles of 100 to 399 words: 200 terms (the fixed default) would cut most of them.
    let words = ["market", "shares", "match", "goal", "season", "prices", "team", "bank"];
    let mut csv = String::from("text,topic\n");
    for i in 0..200usize {
        let n = 100 + (i * 37) % 300;
        let body: Vec<&str> = (0..n).map(|k| words[(i % 2) * 4 + (k * 7 + i) % 4]).collect();
        // A quarter of the labels are noise no word can predict: the validation loss bottoms out, and early
        // stopping ends the run.
        let topic = if i % 4 == 0 { 1 } else { i % 2 };
        csv += &format!("{},{}\n", body.join(" "), ["finance", "sport"][topic]);
    }
    std::fs::write(t.path("news.csv"), csv).unwrap();
    let data = t.s("news.csv");
    let o = kiln(&["train", "--data", &data, "--target", "topic", "--print-config"]);
    let printed = stdout(&o);
    // Term counts (words and word pairs) are 2n - 1; the 95th percentile of n over these rows is 385.
    assert!(printed.contains("length = 769\n"), "{printed}");
    assert!(printed.contains("epochs = 200\n") && printed.contains("patience = 4\n"), "{printed}");
    // What the user sets is kept, and --epochs is a fixed number of epochs.
    let o = kiln(&[
        "train",
        "--data",
        &data,
        "--target",
        "topic",
        "--print-config",
        "--epochs",
        "3",
        "--set",
        "data.prepare.text.length=50",
    ]);
    let printed = stdout(&o);
    assert!(printed.contains("length = 50\n") && printed.contains("epochs = 3\n"), "{printed}");
    // A run says both decisions, and early stopping ends it long before the cap.
    let o = kiln(&["train", "--data", &data, "--target", "topic", "--run-dir", &t.s("run"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(out.contains("note: text length 769: 95% of the texts in text have at most 769 terms"), "{out}");
    assert!(
        out.contains("note: training until the validation loss has not improved for 4 epochs, at most 200"),
        "{out}"
    );
    let log = std::fs::read_to_string(t.path("run/log.csv")).unwrap();
    assert!(log.lines().count() - 1 < 200, "early stopping ended the run: {log}");
}
