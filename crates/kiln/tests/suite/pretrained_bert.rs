//! BERT-family encoders from Hugging Face folders (kiln::pretrained): all-MiniLM-L6-v2's token ids and
//! sentence embeddings against sentence-transformers' own (fixtures/minilm_reference.json, made by
//! tools/make_minilm_reference.py from the same files), and each kind of bad folder refused with a line
//! naming the file. The model comes from tools/fetch_models.sh (CI runs it); without it the comparison
//! skips with a printed notice.

use kiln::pretrained::Encoder;
use std::io::Write;
use std::path::{Path, PathBuf};

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
}

/// Whether the model was fetched; if not, a notice on the terminal (the harness captures print!).
fn fetched() -> bool {
    let dir = model_dir();
    let there = dir.join("model.safetensors").is_file();
    if !there {
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: {} is absent (run tools/fetch_models.sh); the MiniLM tests were skipped",
            dir.display()
        );
    }
    there
}

struct Reference {
    sentences: Vec<String>,
    ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
    max_seq_length: usize,
}

fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let list = |k: &str| v[k].as_array().unwrap().clone();
    Reference {
        sentences: list("sentences").iter().map(|s| s.as_str().unwrap().to_string()).collect(),
        ids: list("ids")
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
            .collect(),
        embeddings: list("embeddings")
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
            .collect(),
        max_seq_length: v["max_seq_length"].as_u64().unwrap() as usize,
    }
}

#[test]
fn minilm_tokens_and_embeddings_equal_sentence_transformers() {
    if !fetched() {
        return;
    }
    let mut enc = Encoder::open(model_dir()).expect("the fetched model opens");
    let r = reference();
    assert_eq!(enc.max_tokens, r.max_seq_length);
    let texts: Vec<&str> = r.sentences.iter().map(String::as_str).collect();
    let tokens = enc.tokenize(&texts).unwrap();
    for (i, (got, want)) in tokens.ids.iter().zip(&r.ids).enumerate() {
        assert_eq!(got, want, "token ids of sentence {i} ({:?})", r.sentences[i]);
    }
    // The last sentence is longer than the model's limit.
    assert_eq!(tokens.truncated, 1);
    // Batches of 3 after sorting by length, so padding is exercised as in the reference.
    let (vecs, truncated) = enc.embed(&texts, 3, &mut |_| {}).unwrap();
    assert_eq!(truncated, 1);
    for (i, (a, b)) in vecs.iter().zip(&r.embeddings).enumerate() {
        assert_eq!(a.len(), 384);
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let na = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let cos = dot / (na * nb);
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(cos >= 0.9999 && worst <= 1e-4, "sentence {i}: cosine {cos}, max abs difference {worst}");
        // Normalized, as the folder's Normalize module says.
        assert!((na - 1.0).abs() < 1e-5, "sentence {i}: norm {na}");
    }
    // One text alone (no padding) gives the same vector as in a padded batch.
    let alone = enc.embed(&texts[..1], 1, &mut |_| {}).unwrap().0;
    let worst = alone[0].iter().zip(&vecs[0]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-5, "alone vs in a batch: {worst}");
}

/// The encoder as a model layer (`BertEncoder`, filled from the folder through the one loading path) gives
/// sentence-transformers' vectors too, from the padded id rows a table's preparation makes; a frozen part
/// is not trainable; and a fine-tuning step moves only what is not frozen.
#[test]
fn the_encoder_as_a_layer_equals_sentence_transformers_and_freezes_its_lower_parts() {
    use kiln::prelude::*;
    if !fetched() {
        return;
    }
    let folder = kiln::pretrained::Folder::read(model_dir()).unwrap();
    let enc = Encoder::open(model_dir()).unwrap();
    let r = reference();
    let texts: Vec<&str> = r.sentences.iter().map(String::as_str).collect();
    let tokens = enc.tokenize(&texts).unwrap();
    let steps = 300; // past the longest: the layer runs only to the batch's longest text.
    let mut ids = vec![0f32; texts.len() * steps];
    for (row, t) in tokens.ids.iter().enumerate() {
        for (j, &id) in t.iter().enumerate() {
            ids[row * steps + j] = id as f32;
        }
    }
    let ids = Tensor::new(&[texts.len(), steps], ids).unwrap();
    let mut m = Sequential::new(&[steps]).weights_from(folder.weights().unwrap());
    m.add(folder.layer().freeze(3).name("bert")).unwrap();
    assert!(m.finish_weights().unwrap().missing().is_empty());
    let vecs = m.predict(&ids, 3).unwrap();
    for (i, (a, b)) in vecs.data().chunks(384).zip(&r.embeddings).enumerate() {
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-4, "sentence {i}: max abs difference {worst}");
    }
    // One SGD step: the embeddings (5 tensors) and the first two layers (16 each) stay; the rest moves.
    m.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]).unwrap();
    let before = m.get_weights();
    let target = Tensor::new(&[texts.len(), 384], vec![0.5; texts.len() * 384]).unwrap();
    m.train_on_batch(&ids, &target).unwrap();
    let after = m.get_weights();
    let moved: Vec<bool> = before.iter().zip(&after).map(|(b, a)| b != a).collect();
    assert_eq!(moved.len(), 5 + 6 * 16);
    assert!(moved[..37].iter().all(|m| !m), "a frozen part moved: {moved:?}");
    assert!(moved[37..].iter().filter(|&&m| m).count() >= 60, "{moved:?}");
    // A token id outside the vocabulary is one clear error.
    let bad = Tensor::new(&[1, steps], (0..steps).map(|i| if i == 3 { 40000.0 } else { 1.0 }).collect()).unwrap();
    let e = m.predict(&bad, 1).unwrap_err().to_string();
    assert!(e.contains("token id 40000 is outside the model's 30522 words"), "{e}");
}

/// A folder with the files given (name, contents).
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn open_err(dir: &Path) -> String {
    match Encoder::open(dir) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(e) => e.to_string(),
    }
}

const BERT_CONFIG: &str = r#"{"model_type": "bert", "vocab_size": 10, "hidden_size": 4, "num_hidden_layers": 1,
    "num_attention_heads": 2, "intermediate_size": 8, "max_position_embeddings": 16}"#;

#[test]
fn bad_model_folders_are_refused_with_a_line_naming_the_file() {
    // Not a folder; a folder missing files (every missing one named).
    let e = open_err(Path::new("/nonexistent/minilm"));
    assert!(e.contains("not a folder"), "{e}");
    let dir = folder(&[("config.json", BERT_CONFIG)]);
    let e = open_err(dir.path());
    assert!(e.contains("incomplete model folder") && e.contains("model.safetensors, tokenizer.json"), "{e}");

    // A config.json of another architecture, one that does not parse, one missing a key.
    let gpt2 = r#"{"model_type": "gpt2", "vocab_size": 10, "hidden_size": 4, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 8, "max_position_embeddings": 16}"#;
    for (config, want) in [
        (gpt2, "model_type `gpt2` is not a BERT-family encoder"),
        ("{not json", "does not parse"),
        (r#"{"model_type": "bert"}"#, "missing field `vocab_size`"),
        (&BERT_CONFIG.replace("\"num_attention_heads\": 2", "\"num_attention_heads\": 3"), "splits into the heads"),
    ] {
        let dir = folder(&[("config.json", config), ("model.safetensors", ""), ("tokenizer.json", "{}")]);
        let e = open_err(dir.path());
        assert!(e.contains("config.json") && e.contains(want), "{config}: {e}");
    }

    // A tokenizer.json that does not parse.
    let dir = folder(&[("config.json", BERT_CONFIG), ("model.safetensors", ""), ("tokenizer.json", "{\"version\": 1")]);
    let e = open_err(dir.path());
    assert!(e.contains("tokenizer.json") && e.contains("is not a tokenizer"), "{e}");
}

/// A weights file without a tensor the config implies, or with one of another shape: named, with the shapes.
#[test]
fn weights_that_do_not_fit_the_config_are_named() {
    if !fetched() {
        return;
    }
    let src = model_dir();
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let config = std::fs::read_to_string(src.join("config.json")).unwrap();
    for (from, to, want) in [
        // One more layer than the file holds.
        (
            "\"num_hidden_layers\": 6",
            "\"num_hidden_layers\": 7",
            ["model.safetensors", "encoder.layer.6.attention.self.query.weight"],
        ),
        // A wider model than the file's.
        (
            "\"intermediate_size\": 1536",
            "\"intermediate_size\": 1024",
            ["encoder.layer.0.intermediate.dense.weight", "[1536, 384]"],
        ),
    ] {
        std::fs::write(dir.path().join("config.json"), config.replace(from, to)).unwrap();
        let e = open_err(dir.path());
        assert!(want.iter().all(|w| e.contains(w)), "{to}: {e}");
    }
}
