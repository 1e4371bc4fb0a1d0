//! Language models from GGUF files: the file reader (gguf.rs), the tokenizer from its metadata
//! (tokenizer.rs), a LLaMA-family decoder on the quantized weights (llama.rs), sampling (sample.rs), the
//! chat template (chat.rs), and `Lm`, which puts them together to generate text a token at a time.

pub mod assistant;
pub mod chat;
pub mod gguf;
pub mod llama;
pub mod sample;
pub mod tokenizer;

pub use chat::Message;
pub use gguf::Gguf;
pub use llama::{KvCache, Llama, LlamaConfig};
pub use sample::{Sampler, SamplerSettings};

use crate::{Error, Result};
use std::path::Path;

/// A model, its tokenizer and its chat template, from one GGUF file.
pub struct Lm {
    pub model: Llama,
    pub tokenizer: tokenizers::Tokenizer,
    /// The Jinja chat template of the file (`tokenizer.chat_template`), if it has one.
    pub chat_template: Option<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Tokens that end a turn: the end-of-text token and the template's end-of-turn (`<|im_end|>`, ...).
    pub stop_ids: Vec<u32>,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerSettings,
    /// The text stops before the first of these strings.
    pub stop: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_tokens: 256, sampler: SamplerSettings::default(), stop: Vec::new() }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its turn (an end-of-text or end-of-turn token).
    Stop,
    /// A stop string appeared.
    StopString,
    Length,
    /// The caller's callback asked to stop (Ctrl-C).
    Cancelled,
}

/// What a generation made: the text, its tokens, and why it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub text: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    pub finish: Finish,
}

impl Lm {
    pub fn open(path: &Path) -> Result<Lm> {
        let g = Gguf::open(path)?;
        let model = Llama::from_gguf(&g)?;
        let tokenizer = tokenizer::from_gguf(&g)?;
        let id = |k: &str| g.metadata.get(k).and_then(|v| v.as_u64()).map(|v| v as u32);
        let (bos, eos) = (id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id"));
        let chat_template = g.metadata.get("tokenizer.chat_template").and_then(|v| v.as_str()).map(String::from);
        let mut stop_ids: Vec<u32> = eos.into_iter().collect();
        for t in ["<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "</s>"] {
            if let Some(i) = tokenizer.token_to_id(t)
                && !stop_ids.contains(&i)
            {
                stop_ids.push(i);
            }
        }
        Ok(Lm { model, tokenizer, chat_template, bos, eos, stop_ids })
    }

    /// Tokenizes with a Hugging Face tokenizer.json instead of the one the file's metadata describes (its
    /// end-of-turn tokens are looked up again); one with more tokens than the model has rows is refused.
    pub fn use_tokenizer_file(&mut self, path: &Path) -> Result<()> {
        let tok = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::format(path, format!("not a readable tokenizer.json ({e})")))?;
        let vocab = tok.get_vocab_size(true);
        if vocab > self.model.config.vocab {
            return Err(Error::format(
                path,
                format!("has {vocab} tokens, more than the model's {} rows of embeddings", self.model.config.vocab),
            ));
        }
        // Another model's tokenizer (BERT's WordPiece for a GPT-2 byte-level model) fits in the vocabulary and
        // turns every prompt into ids this model reads as other tokens: its tokens must be the file's own,
        // id for id, where the file holds a vocabulary.
        let own = self.tokenizer.get_vocab_size(true).min(vocab) as u32;
        let same =
            (0..own).filter(|&i| tok.id_to_token(i).is_some_and(|t| self.tokenizer.id_to_token(i) == Some(t))).count();
        if own > 0 && (same as f64) < 0.9 * own as f64 {
            return Err(Error::format(
                path,
                format!(
                    "is another model's tokenizer: {same} of the first {own} ids name the token the model's own \
                     vocabulary (in its GGUF metadata) gives them; use the tokenizer.json made for this model"
                ),
            ));
        }
        for t in ["<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "</s>"] {
            if let Some(i) = tok.token_to_id(t)
                && !self.stop_ids.contains(&i)
            {
                self.stop_ids.push(i);
            }
        }
        self.tokenizer = tok;
        Ok(())
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        tokenizer::encode(&self.tokenizer, text)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        tokenizer::decode(&self.tokenizer, ids)
    }

    /// The prompt of a conversation through the file's chat template, ready for the assistant's turn.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| {
            Error::Data("the model has no chat template (tokenizer.chat_template); give a plain prompt".into())
        })?;
        let tok = |id: Option<u32>| id.and_then(|i| self.tokenizer.id_to_token(i)).unwrap_or_default();
        chat::render(template, messages, &tok(self.bos), &tok(self.eos))
    }

    /// Continues `prompt` (token ids) with up to `opts.max_tokens` tokens, calling `on_text` with each new
    /// piece of text as it is made (stop strings held back until they cannot be one); `on_text` returning
    /// false stops it. `cache` holds the conversation so far: positions it already holds that match the
    /// prompt's start are not computed again.
    pub fn generate(
        &self,
        prompt: &[u32],
        opts: &GenerateOptions,
        cache: &mut KvCache,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generated> {
        opts.sampler.check()?;
        if prompt.is_empty() {
            return Err(Error::Invalid("the prompt is empty".into()));
        }
        if prompt.len() >= cache.capacity() {
            return Err(Error::Invalid(format!(
                "the prompt has {} tokens; the context holds {} (shorten it, or raise --context)",
                prompt.len(),
                cache.capacity()
            )));
        }
        // Reuse the cached prefix the prompt shares (a chat's earlier turns); the last prompt token is always
        // run, for its logits.
        let mut history = prompt.to_vec();
        let shared = cache.tokens().iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let reuse = shared.min(prompt.len() - 1);
        cache.truncate(reuse);
        let mut logits = self.model.forward(&prompt[reuse..], cache)?;
        let mut sampler = Sampler::new(opts.sampler.clone());
        let (mut out, mut text, mut sent) = (Vec::new(), String::new(), 0usize);
        let mut finish = Finish::Length;
        while out.len() < opts.max_tokens {
            let next = sampler.next(&mut logits, &history);
            if self.stop_ids.contains(&next) {
                finish = Finish::Stop;
                break;
            }
            out.push(next);
            history.push(next);
            text = self.decode(&out)?;
            if let Some(at) = opts.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                text.truncate(at);
                finish = Finish::StopString;
                break;
            }
            // Send what can no longer turn into a stop string or an unfinished character.
            let hold = opts.stop.iter().map(|s| s.len().saturating_sub(1)).max().unwrap_or(0);
            let mut upto = text.len().saturating_sub(hold);
            while !text.is_char_boundary(upto) {
                upto -= 1;
            }
            let ready = text[..upto].trim_end_matches('\u{FFFD}').len().max(sent);
            if ready > sent {
                if !on_text(&text[sent..ready]) {
                    sent = ready;
                    finish = Finish::Cancelled;
                    break;
                }
                sent = ready;
            }
            if cache.len() + 1 >= cache.capacity() {
                break;
            }
            logits = self.model.forward(&[next], cache)?;
        }
        if finish != Finish::Cancelled && text.len() > sent {
            on_text(&text[sent..]);
        }
        Ok(Generated { text, tokens: out, prompt_tokens: prompt.len(), finish })
    }
}
