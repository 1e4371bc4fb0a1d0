//! A language model's tokenizer from its GGUF metadata: byte-level BPE as GPT-2 made it
//! (`tokenizer.ggml.model = "gpt2"`: the vocabulary's tokens, the merges in rank order, the token types),
//! built as the `tokenizers` crate's BPE with GPT-2's pre-tokenizer regex and byte-level decoding, with the
//! control tokens (`<|im_start|>`, ...) matched whole. This is how Hugging Face transformers converts a
//! GGUF tokenizer, and tests/suite/llm.rs checks the ids against its own on texts with digits, spaces, accents,
//! emoji and control tokens. A tokenizer.json beside the model, when given, is read instead.

use super::gguf::Gguf;
use crate::{Error, Result};
use serde_json::json;
use tokenizers::Tokenizer;

/// GGUF token types (llama.cpp's `llama_token_type`): 3 marks control tokens, 4 user-defined ones.
const CONTROL: u64 = 3;
const USER_DEFINED: u64 = 4;

/// The tokenizer the GGUF file describes.
pub fn from_gguf(g: &Gguf) -> Result<Tokenizer> {
    let model = g.str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(Error::Data(format!(
            "{}: tokenizer.ggml.model is `{model}`; kiln reads GPT-2-style byte-level BPE (`gpt2`) from GGUF \
             metadata (a tokenizer.json can be read with kiln::llm::tokenizer::from_file)",
            g.path.display()
        )));
    }
    let tokens = g.strings("tokenizer.ggml.tokens")?;
    let merges = g.strings("tokenizer.ggml.merges")?;
    let types = match g.metadata.contains_key("tokenizer.ggml.token_type") {
        true => g.integers("tokenizer.ggml.token_type")?,
        false => Vec::new(),
    };
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.to_string(), json!(i))).collect();
    if vocab.len() != tokens.len() {
        return Err(Error::Data(format!("{}: tokenizer.ggml.tokens repeats a token", g.path.display())));
    }
    let added: Vec<serde_json::Value> = types
        .iter()
        .enumerate()
        .filter(|&(_, &t)| t == CONTROL || t == USER_DEFINED)
        .map(|(i, _)| {
            json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    });
    spec.to_string()
        .parse()
        .map_err(|e| Error::Data(format!("{}: the tokenizer in the metadata does not build ({e})", g.path.display())))
}

/// A tokenizer.json (Hugging Face's format).
pub fn from_file(path: &std::path::Path) -> Result<Tokenizer> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, &e))?;
    text.parse().map_err(|e| Error::Data(format!("{}: the tokenizer does not parse ({e})", path.display())))
}

/// Token ids of `text`, control tokens written in it recognized.
pub fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tok.encode(text, false).map_err(|e| Error::Data(format!("tokenizing: {e}")))?.get_ids().to_vec())
}

/// The text of `ids`, control tokens included.
pub fn decode(tok: &Tokenizer, ids: &[u32]) -> Result<String> {
    tok.decode(ids, false).map_err(|e| Error::Data(format!("decoding tokens: {e}")))
}
