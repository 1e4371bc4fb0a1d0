//! The GGUF language model against Hugging Face transformers' reading of the same file
//! (tools/make_smollm_reference.py → fixtures/smollm/reference.json): token ids, the chat template, the
//! last position's logits, and greedy continuations; sampling's settings; damaged GGUF files are one error.
//! The model comes from tools/fetch_models.sh; without it the model tests print a notice and pass.

use kiln::llm::{GenerateOptions, Gguf, Lm, Message, Sampler, SamplerSettings};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The model, loaded once for all tests; None (with a notice) when tools/fetch_models.sh has not run.
fn lm() -> Option<&'static Lm> {
    static LM: OnceLock<Option<Lm>> = OnceLock::new();
    LM.get_or_init(|| {
        let p = model_path();
        if !p.is_file() {
            eprintln!("notice: {} is absent (run tools/fetch_models.sh); skipping the model tests", p.display());
            return None;
        }
        Some(Lm::open(&p).unwrap())
    })
    .as_ref()
}

fn reference() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn tokenizer_gives_transformers_ids() {
    let Some(lm) = lm() else { return };
    for case in reference()["texts"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let got = lm.encode(text).unwrap();
        assert_eq!(got, ids(&case["ids"]), "{text:?}");
        assert_eq!(lm.decode(&got).unwrap(), case["decoded"].as_str().unwrap(), "{text:?}");
    }
}

#[test]
fn chat_template_renders_as_transformers() {
    let Some(lm) = lm() else { return };
    for p in reference()["prompts"].as_array().unwrap() {
        let Some(conv) = p["conversation"].as_array() else { continue };
        let msgs: Vec<Message> = conv.iter().map(|m| serde_json::from_value(m.clone()).unwrap()).collect();
        assert_eq!(lm.chat_prompt(&msgs).unwrap(), p["text"].as_str().unwrap());
    }
}

/// The exact path (f32 activations, weights dequantized block by block): the last position's 40 largest
/// logits and 40 fixed ones within 1e-4 of the largest logit of transformers' float32, and the same greedy
/// tokens. The default path (16-bit activations, integer products): within 1e-3 of the largest and the same
/// greedy tokens.
#[test]
fn logits_and_greedy_text_match_transformers() {
    let Some(lm) = lm() else { return };
    let exact = {
        let mut m = Lm::open(&model_path()).unwrap();
        m.model.exact = true;
        m
    };
    for p in reference()["prompts"].as_array().unwrap() {
        let prompt = ids(&p["ids"]);
        assert_eq!(lm.encode(p["text"].as_str().unwrap()).unwrap(), prompt);
        let mut wanted: Vec<(u32, f64)> = ids(&p["top_ids"])
            .into_iter()
            .zip(p["top_logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
            .collect();
        wanted.extend(
            ids(&p["fixed_ids"])
                .into_iter()
                .zip(p["fixed_logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap())),
        );
        let largest = wanted[0].1.abs();
        for (m, tol) in [(&exact, 1e-4), (lm, 1e-3)] {
            let logits = m.model.forward(&prompt, &mut m.model.cache(512)).unwrap();
            for &(t, w) in &wanted {
                let got = logits[t as usize] as f64;
                assert!(
                    (got - w).abs() <= tol * largest,
                    "exact {}: token {t}: kiln {got}, transformers {w} (largest {largest})",
                    m.model.exact
                );
            }
            // Greedy: the same tokens (transformers stops at the end-of-turn token, which kiln does not return).
            let opts = GenerateOptions { max_tokens: 24, sampler: SamplerSettings::greedy(), stop: vec![] };
            let mut streamed = String::new();
            let g = m
                .generate(&prompt, &opts, &mut m.model.cache(512), &mut |s| {
                    streamed.push_str(s);
                    true
                })
                .unwrap();
            let want: Vec<u32> = ids(&p["greedy"]).into_iter().take_while(|t| !m.stop_ids.contains(t)).collect();
            assert_eq!(g.tokens, want, "exact {}: {:?}", m.model.exact, p["greedy_text"]);
            assert_eq!(streamed, g.text, "the streamed pieces make the text");
        }
    }
}

/// A cache reused for the next turn computes only the new tokens and gives the logits a fresh one gives.
#[test]
fn a_cached_prefix_gives_the_same_logits() {
    let Some(lm) = lm() else { return };
    let a = lm.encode("The quick brown fox jumps over").unwrap();
    let b = lm.encode("The quick brown fox jumps over the lazy dog and runs").unwrap();
    let mut cache = lm.model.cache(64);
    lm.model.forward(&a, &mut cache).unwrap();
    let opts = GenerateOptions { max_tokens: 3, sampler: SamplerSettings::greedy(), stop: vec![] };
    let reused = lm.generate(&b, &opts, &mut cache, &mut |_| true).unwrap();
    let fresh = lm.generate(&b, &opts, &mut lm.model.cache(64), &mut |_| true).unwrap();
    assert_eq!(reused.tokens, fresh.tokens);
    // Stop strings end the text before them; a callback returning false stops it.
    let opts = GenerateOptions { max_tokens: 30, sampler: SamplerSettings::greedy(), stop: vec![" the".into()] };
    let g =
        lm.generate(&lm.encode("Once upon a time, there was a").unwrap(), &opts, &mut lm.model.cache(64), &mut |_| {
            true
        });
    let g = g.unwrap();
    assert!(!g.text.contains(" the") && g.finish == kiln::llm::Finish::StopString, "{g:?}");
    let g = lm.generate(&a, &GenerateOptions::default(), &mut lm.model.cache(64), &mut |_| false).unwrap();
    assert_eq!(g.finish, kiln::llm::Finish::Cancelled);
}

/// A seed gives the same draw; top-k 1 is greedy; the settings' ranges are checked.
#[test]
fn sampling_is_seeded_and_bounded() {
    // 0.0, 0.1, ... 4.9 in a shuffled order: distinct, so "the most likely" is one token.
    let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 50) as f32 * 0.1).collect();
    let draw = |s: SamplerSettings| {
        let mut sm = Sampler::new(s);
        (0..20).map(|_| sm.next(&mut logits.clone(), &[])).collect::<Vec<_>>()
    };
    let s = SamplerSettings { temperature: 1.0, top_k: 0, top_p: 1.0, repeat_penalty: 1.0, ..Default::default() };
    assert_eq!(draw(s.clone()), draw(s.clone()));
    assert_ne!(draw(s.clone()), draw(SamplerSettings { seed: 9, ..s.clone() }));
    let best = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
    assert!(draw(SamplerSettings { top_k: 1, ..s.clone() }).iter().all(|&t| t == best));
    // Top-p 0.05 keeps the most likely token alone (it holds 9.6% of the mass), 0.15 the two most likely.
    assert!(draw(SamplerSettings { top_p: 0.05, ..s.clone() }).iter().all(|&t| t == best));
    let two = draw(SamplerSettings { top_p: 0.15, ..s.clone() });
    assert!(two.iter().all(|&t| logits[t as usize] >= 4.8) && two.iter().any(|&t| t != best), "{two:?}");
    // The repetition penalty turns greedy away from a token just used.
    let mut sm = Sampler::new(SamplerSettings { repeat_penalty: 100.0, ..SamplerSettings::greedy() });
    assert_ne!(sm.next(&mut logits.clone(), &[best]), best);
    for (bad, word) in [
        (SamplerSettings { temperature: -1.0, ..s.clone() }, "--temperature"),
        (SamplerSettings { top_p: 0.0, ..s.clone() }, "--top-p"),
        (SamplerSettings { repeat_penalty: 0.0, ..s.clone() }, "--repeat-penalty"),
    ] {
        assert!(bad.check().unwrap_err().to_string().contains(word));
    }
}

/// Damaged files: each one error naming the file, never a panic or a huge allocation.
#[test]
fn damaged_gguf_files_are_one_clear_error() {
    let p = Path::new("x.gguf");
    let err = |b: Vec<u8>| Gguf::from_bytes(p, b).err().unwrap().to_string();
    assert!(err(b"PK\x03\x04".to_vec()).contains("not a GGUF file"));
    let head = |version: u32, tensors: u64, kvs: u64| {
        let mut b = b"GGUF".to_vec();
        b.extend(version.to_le_bytes());
        b.extend(tensors.to_le_bytes());
        b.extend(kvs.to_le_bytes());
        b
    };
    assert!(err(head(1, 0, 0)).contains("GGUF version 1"));
    assert!(err(head(3, u64::MAX, 0)).contains("tensor count"));
    assert!(err(head(3, 0, 1 << 40)).contains("metadata count"));
    // A key whose string length runs past the end.
    let mut b = head(3, 0, 1);
    b.extend(1000u64.to_le_bytes());
    b.extend(b"abc");
    assert!(err(b).contains("x.gguf"));
    // A tensor whose data lies past the end of the file.
    let mut b = head(3, 1, 0);
    b.extend(1u64.to_le_bytes());
    b.push(b'w');
    b.extend(1u32.to_le_bytes());
    b.extend(64u64.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    let e = err(b);
    assert!(e.contains("tensor `w`") && e.contains("outside"), "{e}");
    // A file whose model is not a LLaMA: named.
    if let Some(lm) = lm() {
        let _ = lm;
        let mut bytes = std::fs::read(model_path()).unwrap();
        let at = bytes.windows(5).position(|w| w == b"llama").unwrap();
        bytes[at..at + 5].copy_from_slice(b"gemma");
        let g = Gguf::from_bytes(p, bytes).unwrap();
        let e = kiln::llm::Llama::from_gguf(&g).err().unwrap().to_string();
        assert!(e.contains("general.architecture is `gemma`"), "{e}");
    }
}

/// `Gguf::open` reads the header and then each tensor from the file when asked: a header longer than its
/// first read (a 9 MiB metadata string) is read again in full, the tensor comes back as written, and damaged
/// files (cut short, empty, not GGUF) are the same one error naming the file as from memory.
#[test]
fn gguf_files_are_read_header_first_and_tensors_when_asked() {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // metadata
    let long = "a".repeat(9 << 20);
    b.extend(12u64.to_le_bytes());
    b.extend(b"general.name");
    b.extend(8u32.to_le_bytes());
    b.extend((long.len() as u64).to_le_bytes());
    b.extend(long.as_bytes());
    b.extend(1u64.to_le_bytes());
    b.push(b'w');
    b.extend(1u32.to_le_bytes());
    b.extend(64u64.to_le_bytes());
    b.extend(0u32.to_le_bytes()); // F32
    b.extend(0u64.to_le_bytes());
    b.resize(b.len().div_ceil(32) * 32, 0);
    let w: Vec<f32> = (0..64).map(|i| i as f32 * 0.5 - 3.0).collect();
    w.iter().for_each(|v| b.extend(v.to_le_bytes()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.gguf");
    std::fs::write(&path, &b).unwrap();
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.str("general.name").unwrap().len(), long.len());
    assert_eq!(g.f32s("w", &[64]).unwrap(), w);
    assert_eq!(g.metadata, Gguf::from_bytes(&path, b.clone()).unwrap().metadata);
    let open_err = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        let e = Gguf::open(&path).err().expect("an error").to_string();
        let m = Gguf::from_bytes(&path, bytes.to_vec()).err().expect("an error").to_string();
        assert_eq!(e, m, "from the file and from memory");
        assert!(e.contains("long.gguf"), "{e}");
        e
    };
    assert!(open_err(&b[..b.len() - 4]).contains("outside"));
    assert!(open_err(&b[..1 << 20]).contains("larger than the file"));
    assert!(open_err(b"").contains("not a GGUF file"));
    assert!(open_err(b"PK\x03\x04 not gguf").contains("not a GGUF file"));
}

/// Against llama.cpp's own run of the file (llama-cpp-python, 8-bit activations; tools/make_llamacpp_reference.py
/// → fixtures/smollm/llamacpp.json, made on an AVX-512 machine): the last position's logits within 6e-2 of the
/// largest, on the default path and on `fast8` (8-bit activations), and 32 greedy tokens the same up to the
/// first step where llama.cpp's two most likely tokens were within that tolerance (there either choice is
/// right). Not the 1e-2: llama.cpp is itself up to 5.1% of the largest logit away from transformers'
/// float32 (which kiln's default path matches within 1e-3), and llama.cpp 0.3.16 built on an AVX2-only
/// machine is 1.5-3.2% of the largest away from the same version's run in this fixture, on the same prompts:
/// its own results move by more than 1e-2 with the processor it was built for.
#[test]
fn logits_and_greedy_tokens_match_llama_cpp() {
    let Some(lm) = lm() else { return };
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm/llamacpp.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let fast8 = {
        let mut m = Lm::open(&model_path()).unwrap();
        m.model.fast8 = true;
        m
    };
    let mut compared = 0;
    for p in reference["prompts"].as_array().unwrap() {
        let prompt = ids(&p["ids"]);
        let floats = |k: &str| p[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>();
        let mut wanted: Vec<(u32, f64)> = ids(&p["top_ids"]).into_iter().zip(floats("top_logits")).collect();
        wanted.extend(ids(&p["fixed_ids"]).into_iter().zip(floats("fixed_logits")));
        let tol = 6e-2 * wanted[0].1.abs();
        for m in [lm, &fast8] {
            let logits = m.model.forward(&prompt, &mut m.model.cache(512)).unwrap();
            let mut worst = 0f64;
            for &(t, w) in &wanted {
                let got = logits[t as usize] as f64;
                worst = worst.max((got - w).abs() / wanted[0].1.abs());
                assert!((got - w).abs() <= tol, "fast8 {}: token {t}: kiln {got}, llama.cpp {w}", m.model.fast8);
            }
            println!("fast8 {}: logits within {worst:.2e} of the largest of llama.cpp's", m.model.fast8);
            let opts = GenerateOptions { max_tokens: 32, sampler: SamplerSettings::greedy(), stop: vec![] };
            let g = m.generate(&prompt, &opts, &mut m.model.cache(512), &mut |_| true).unwrap();
            let (want, gaps) = (ids(&p["greedy"]), floats("gaps"));
            for (step, (&w, &gap)) in want.iter().zip(&gaps).enumerate() {
                if gap <= tol {
                    break;
                }
                match g.tokens.get(step) {
                    Some(&t) => assert_eq!(t, w, "fast8 {}: step {step} of {:?}", m.model.fast8, p["greedy_text"]),
                    // kiln ended its turn here: llama.cpp (which does not stop) chose an end-of-turn token.
                    None => {
                        assert!(m.stop_ids.contains(&w), "step {step}: kiln stopped, llama.cpp chose {w}");
                        break;
                    }
                }
                compared += 1;
            }
        }
    }
    assert!(compared >= 4, "only {compared} greedy steps were outside the tolerance");
}
