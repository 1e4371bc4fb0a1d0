//! Pretrained encoders through the binary: `kiln embed` (CSV and .npy) and semantic search (`kiln index
//! build`, `kiln index query`) with all-MiniLM-L6-v2, and their bad inputs. The model comes from
//! tools/fetch_models.sh (CI runs it); without it the tests that need it skip with a printed notice.

use crate::common::*;
use std::io::Write;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn minilm() -> Option<String> {
    let dir = format!("{ROOT}/models/all-MiniLM-L6-v2");
    if std::path::Path::new(&dir).join("model.safetensors").is_file() {
        return Some(dir);
    }
    let _ = writeln!(std::io::stderr(), "NOTICE: {dir} is absent (run tools/fetch_models.sh); skipped");
    None
}

const FAQ: [&str; 6] = [
    "You can return any item within 30 days for a full refund.",
    "Shipping takes 3 to 5 business days within the country.",
    "We accept Visa, Mastercard and PayPal.",
    "To reset your password, click 'Forgot password' on the sign-in page.",
    "Our support team is available Monday to Friday, 9am to 5pm.",
    "Gift cards never expire and can be used online or in stores.",
];

fn faq_csv(t: &Tmp) -> String {
    let mut csv = String::from("id,answer\n");
    for (i, a) in FAQ.iter().enumerate() {
        csv += &format!("{i},\"{a}\"\n");
    }
    std::fs::write(t.path("faq.csv"), csv).unwrap();
    t.s("faq.csv")
}

#[test]
fn embed_writes_csv_and_npy_and_names_bad_inputs() {
    let Some(model) = minilm() else { return };
    let t = Tmp::new("embed");
    let faq = faq_csv(&t);
    let o = kiln(&["embed", &model, "--input", &faq, "--column", "answer", "--output", &t.s("v.csv"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(t.path("v.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "a header and a row per text");
    assert_eq!(csv.lines().nth(1).unwrap().split(',').count(), 384);
    let o = kiln(&["embed", &model, "--input", &faq, "--column", "answer", "--output", &t.s("v.npy"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let npy = std::fs::read(t.path("v.npy")).unwrap();
    assert!(npy.starts_with(b"\x93NUMPY") && String::from_utf8_lossy(&npy[..128]).contains("(6, 384)"));
    // Unit vectors: the first row's values squared sum to 1.
    let header = 10 + u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let first: f32 =
        npy[header..header + 384 * 4].chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).powi(2)).sum();
    assert!((first - 1.0).abs() < 1e-4, "{first}");
    assert_fails(
        &kiln(&["embed", &model, "--input", &faq, "--column", "answer", "--output", &t.s("v.txt")]),
        &["--output", "want a .csv or .npy file"],
    );
    assert_fails(
        &kiln(&["embed", &model, "--input", &faq, "--column", "question", "--output", &t.s("w.csv")]),
        &["question"],
    );
    assert_fails(
        &kiln(&["embed", &t.s("nowhere"), "--input", &faq, "--column", "answer", "--output", &t.s("w.csv")]),
        &["nowhere"],
    );
}

#[test]
fn an_index_finds_the_answer_to_a_question_by_meaning() {
    let Some(model) = minilm() else { return };
    let t = Tmp::new("index");
    let faq = faq_csv(&t);
    let idx = t.s("faq.index");
    let o = kiln(&["index", "build", &model, "--input", &faq, "--column", "answer", "--output", &idx, "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("indexed 6 texts (384 values each)"), "{}", stdout(&o));
    // No word in common with the answer: it is found by meaning.
    let o = kiln(&["index", "query", &idx, "How can I get my money back?", "--k", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    let first = out.lines().nth(1).unwrap_or("");
    assert!(first.contains("full refund") && first.trim_start().starts_with("1 "), "{out}");
    assert_eq!(out.lines().count(), 3, "a header and k = 2 hits: {out}");
    let o = kiln(&["index", "query", &idx, "which credit cards do you take", "--json"]);
    let hits: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(hits.as_array().unwrap().len(), 5);
    assert_eq!(hits[0]["row"], 3, "{hits}");
    let scores: Vec<f64> = hits.as_array().unwrap().iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores[0] <= 1.0 + 1e-6, "{scores:?}");
    // Rebuilding replaces the index; a folder that is not one is never replaced.
    let o = kiln(&["index", "build", &model, "--input", &faq, "--column", "answer", "--output", &idx, "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = kiln(&["index", "query", &idx, "How can I get my money back?", "--k", "1"]);
    assert!(stdout(&o).contains("full refund"), "{}", stdout(&o));
    let left: Vec<String> =
        std::fs::read_dir(&t.0).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(left.iter().all(|n| !n.starts_with(".faq.index")), "{left:?}");
    std::fs::create_dir(t.path("keep")).unwrap();
    std::fs::write(t.path("keep/notes.txt"), "mine").unwrap();
    assert_fails(
        &kiln(&["index", "build", &model, "--input", &faq, "--column", "answer", "--output", &t.s("keep")]),
        &["keep", "is not a kiln index"],
    );
    assert_eq!(std::fs::read_to_string(t.path("keep/notes.txt")).unwrap(), "mine");
    // A moved encoder is named, and another folder can be given.
    let info = std::fs::read_to_string(t.path("faq.index/index.json")).unwrap();
    let moved = info.replace("all-MiniLM-L6-v2", "gone-model");
    std::fs::write(t.path("faq.index/index.json"), moved).unwrap();
    assert_fails(&kiln(&["index", "query", &idx, "refund"]), &["gone-model", "--model"]);
    let o = kiln(&["index", "query", &idx, "refund", "--model", &model, "--k", "1"]);
    assert!(stdout(&o).contains("full refund"), "{}", String::from_utf8_lossy(&o.stderr));
    // With an HNSW graph (built from 100,000 texts on unless asked): the same answer, walked or exact.
    let o = kiln(&[
        "index",
        "build",
        &model,
        "--input",
        &faq,
        "--column",
        "answer",
        "--output",
        &idx,
        "--quiet",
        "--approximate",
        "always",
    ]);
    assert!(stdout(&o).contains("indexed 6 texts (384 values each, with an HNSW graph)"), "{}", stdout(&o));
    for extra in [None, Some("--exact")] {
        let mut args = vec!["index", "query", &idx, "How can I get my money back?", "--k", "1"];
        args.extend(extra);
        let o = kiln(&args);
        assert!(stdout(&o).contains("full refund"), "{extra:?}: {}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn bad_indexes_and_settings_are_one_clear_error() {
    let t = Tmp::new("badindex");
    std::fs::create_dir(t.path("empty")).unwrap();
    assert_fails(&kiln(&["index", "query", &t.s("empty"), "hello"]), &["empty", "not a kiln index"]);
    std::fs::create_dir(t.path("broken")).unwrap();
    std::fs::write(t.path("broken/index.json"), "{\"format\": 3}").unwrap();
    assert_fails(&kiln(&["index", "query", &t.s("broken"), "hello"]), &["broken/index.json"]);
    assert_fails(&kiln(&["index", "query", &t.s("empty"), "hello", "--k", "0"]), &["--k 0"]);
    let o = kiln(&[
        "index",
        "build",
        &t.s("m"),
        "--input",
        &t.s("f.csv"),
        "--column",
        "a",
        "--output",
        &t.s("i"),
        "--approximate",
        "sometimes",
    ]);
    assert_fails(&o, &["--approximate `sometimes`", "auto, always or never"]);
}

/// Short reviews whose label rests on one word of praise or complaint.
fn reviews(t: &Tmp) -> String {
    let (good, bad, filler) =
        (["great", "lovely", "perfect"], ["awful", "broken", "refund"], ["the", "dress", "fit", "color"]);
    let mut csv = String::from("review,stars\n");
    let mut seed = 5u64;
    for i in 0..300 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let positive = i % 3 != 0;
        let words = if positive { good } else { bad };
        let text = format!(
            "{} {} {}",
            filler[(seed >> 20) as usize % 4],
            words[(seed >> 30) as usize % 3],
            filler[(seed >> 40) as usize % 4]
        );
        csv += &format!("{text},{}\n", if positive { 5 } else { 1 });
    }
    std::fs::write(t.path("r.csv"), csv).unwrap();
    t.s("r.csv")
}

#[test]
fn a_fine_tuned_encoder_learns_saves_its_tokenizer_and_predicts_raw_text() {
    let Some(model) = minilm() else { return };
    let t = Tmp::new("finetune");
    let data = reviews(&t);
    let cfg = format!(
        "[data]\npath = \"{data}\"\ntarget = \"stars\"\n[data.classes]\n1 = \"negative\"\n5 = \"positive\"\n\
         [data.prepare.text]\nlength = 32\n[model]\npretrained = \"{model}\"\nfreeze = 5\nhidden = []\n\
         [train]\nepochs = 3\nbatch_size = 16\noptimizer = {{ type = \"adam\", learning_rate = 0.001 }}\n"
    );
    std::fs::write(t.path("ft.toml"), &cfg).unwrap();
    let o = kiln(&["train", &t.s("ft.toml"), "--run-dir", &t.s("run"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let acc: f64 = stdout(&o).split("test accuracy: ").nth(1).unwrap()[..6].parse().unwrap();
    assert!(acc > 0.9, "{}", stdout(&o));
    // The model file alone (moved away from the run and the folder) reads raw text.
    std::fs::rename(t.path("run/model.safetensors"), t.path("ft.safetensors")).unwrap();
    let o = kiln(&["predict", &t.s("ft.safetensors"), "what a lovely dress"]);
    assert!(stdout(&o).contains("1,positive,"), "{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    let o = kiln(&["predict", &t.s("ft.safetensors"), "broken, I want a refund"]);
    assert!(stdout(&o).contains("1,negative,"), "{}", stdout(&o));
    let o = kiln(&["summary", &t.s("ft.safetensors")]);
    assert!(stdout(&o).contains("BertEncoder"), "{}", stdout(&o));
    // Settings that do not fit fine-tuning are named.
    assert_fails(
        &kiln(&["train", &t.s("ft.toml"), "--set", "model.kind=\"gru\""]),
        &["model.pretrained", "leave model.kind out"],
    );
    assert_fails(
        &kiln(&["train", &t.s("ft.toml"), "--set", "model.freeze=9"]),
        &["freeze = 9", "the embeddings and 6 layers"],
    );
    let gone = cfg.replace(&model, &t.s("no-such-model"));
    std::fs::write(t.path("gone.toml"), gone).unwrap();
    assert_fails(&kiln(&["train", &t.s("gone.toml")]), &["no-such-model"]);
    let loose = cfg.replace(&format!("pretrained = \"{model}\"\n"), "");
    std::fs::write(t.path("loose.toml"), loose).unwrap();
    assert_fails(&kiln(&["train", &t.s("loose.toml")]), &["model.freeze", "model.pretrained"]);
}
