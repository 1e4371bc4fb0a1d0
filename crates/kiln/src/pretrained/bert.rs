//! BERT-family encoders from a Hugging Face model folder as it is published: config.json (the
//! architecture), model.safetensors (the weights, with or without a `bert.` prefix), tokenizer.json
//! (WordPiece through the `tokenizers` crate, the same ids as Python's), and, when present,
//! sentence-transformers' modules.json with its pooling config, sentence_bert_config.json (the token limit)
//! and Normalize module.
//!
//! The encoder is BERT's (Devlin et al. 2019): word + position + token-type embeddings, LayerNorm, then per
//! layer: self-attention over the non-padding tokens, output projection, residual, LayerNorm; a GELU
//! feed-forward, residual, LayerNorm (post-norm). Texts are embedded as sentence-transformers does: padded to
//! the longest text of a batch, truncated at the model's token limit, pooled (mean over real tokens, or
//! the [CLS] token) and normalized to unit length when the folder's modules say so.

use crate::weights::{Transform, read_safetensors, read_tensor};
use kiln_core::{Error, Graph, ParamId, Result, UnaryOp};
use safetensors::SafeTensors;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The keys of config.json kiln reads (others are ignored, as transformers ignores unknown ones).
#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_types() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

/// How token vectors become one vector per text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the text's tokens (padding excluded): sentence-transformers' default.
    Mean,
    /// The first token's vector ([CLS]).
    Cls,
}

/// One encoder layer's parameters.
struct Block {
    q: (ParamId, ParamId),
    k: (ParamId, ParamId),
    v: (ParamId, ParamId),
    out: (ParamId, ParamId),
    ln1: (ParamId, ParamId),
    up: (ParamId, ParamId),
    down: (ParamId, ParamId),
    ln2: (ParamId, ParamId),
}

/// A pretrained BERT-family text encoder and its tokenizer, ready to embed texts.
pub struct Encoder {
    pub config: BertConfig,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Tokens per text at most ([CLS] and [SEP] included); longer texts are truncated.
    pub max_tokens: usize,
    tokenizer: tokenizers::Tokenizer,
    graph: Graph<f32>,
    word: ParamId,
    position: ParamId,
    token_type: ParamId,
    ln: (ParamId, ParamId),
    blocks: Vec<Block>,
    pad_id: u32,
}

/// What tokenizing a batch gave: ids per text, and how many texts were cut at the token limit.
pub struct Tokens {
    pub ids: Vec<Vec<u32>>,
    pub truncated: usize,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, &e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("does not parse as JSON here ({e})")))
}

/// The files a model folder must have, checked together so that one message names everything missing.
fn require(dir: &Path, files: &[&str]) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::Config(format!("{}: not a folder (want a Hugging Face model folder)", dir.display())));
    }
    let missing: Vec<&str> = files.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    if !missing.is_empty() {
        return Err(Error::Config(format!(
            "{}: an incomplete model folder: {} missing (a BERT-family folder has config.json, model.safetensors \
             and tokenizer.json)",
            dir.display(),
            missing.join(", ")
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// Pooling and normalization from sentence-transformers' modules.json (mean pooling without it, as
/// sentence-transformers does for a plain Hugging Face folder).
fn read_modules(dir: &Path) -> Result<(Pooling, bool)> {
    let path = dir.join("modules.json");
    if !path.is_file() {
        return Ok((Pooling::Mean, false));
    }
    let modules: Vec<Module> = read_json(&path)?;
    let mut pooling = Pooling::Mean;
    let mut normalize = false;
    for m in &modules {
        let kind = m.kind.rsplit('.').next().unwrap_or(&m.kind);
        match kind {
            "Transformer" => {}
            "Normalize" => normalize = true,
            "Pooling" => {
                let cfg_path = dir.join(&m.path).join("config.json");
                let c: PoolingConfig = read_json(&cfg_path)?;
                pooling = match (c.pooling_mode_mean_tokens, c.pooling_mode_cls_token) {
                    _ if c.pooling_mode_max_tokens || c.pooling_mode_mean_sqrt_len_tokens => {
                        return Err(Error::format(
                            &cfg_path,
                            "max and mean_sqrt_len pooling are not supported yet (kiln pools by mean or [CLS])",
                        ));
                    }
                    (true, false) => Pooling::Mean,
                    (false, true) => Pooling::Cls,
                    _ => {
                        return Err(Error::format(
                            &cfg_path,
                            "want exactly one of pooling_mode_mean_tokens and pooling_mode_cls_token",
                        ));
                    }
                };
            }
            other => {
                return Err(Error::format(
                    &path,
                    format!("module `{other}` is not supported (kiln runs Transformer, Pooling and Normalize)"),
                ));
            }
        }
    }
    Ok((pooling, normalize))
}

/// Parameters from the weights file into a graph's store, under the file's names (without its prefix),
/// linear weights turned from PyTorch's [out, in] into kiln's [in, out]; frozen (inference).
struct Loader<'a> {
    st: &'a SafeTensors<'a>,
    path: &'a Path,
    prefix: &'a str,
    g: Graph<f32>,
}

impl Loader<'_> {
    fn load(&mut self, name: &str, shape: &[usize], t: Transform) -> Result<ParamId> {
        let values = read_tensor(self.st, &format!("{}{name}", self.prefix), shape, t, self.path)?;
        self.g.add_param(name, shape, values, false)
    }

    fn param(&mut self, name: &str, shape: &[usize]) -> Result<ParamId> {
        self.load(name, shape, Transform::None)
    }

    /// A linear layer's weight [i, o] and bias [o].
    fn linear(&mut self, name: &str, i: usize, o: usize) -> Result<(ParamId, ParamId)> {
        Ok((
            self.load(&format!("{name}.weight"), &[i, o], Transform::Transpose)?,
            self.param(&format!("{name}.bias"), &[o])?,
        ))
    }

    /// A LayerNorm's γ and β, [h] each.
    fn norm(&mut self, name: &str, h: usize) -> Result<(ParamId, ParamId)> {
        Ok((self.param(&format!("{name}.weight"), &[h])?, self.param(&format!("{name}.bias"), &[h])?))
    }
}

impl Encoder {
    /// Opens a Hugging Face model folder of a BERT-family encoder.
    pub fn open(dir: impl AsRef<Path>) -> Result<Encoder> {
        let dir = dir.as_ref();
        require(dir, &["config.json", "model.safetensors", "tokenizer.json"])?;
        let cfg_path = dir.join("config.json");
        let config: BertConfig = read_json(&cfg_path)?;
        check_config(&config, &cfg_path)?;
        let (pooling, normalize) = read_modules(dir)?;
        let limit = match dir.join("sentence_bert_config.json") {
            p if p.is_file() => read_json::<SentenceBertConfig>(&p)?.max_seq_length,
            _ => None,
        };
        let max_tokens = limit.unwrap_or(config.max_position_embeddings).min(config.max_position_embeddings);

        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| Error::format(&tok_path, format!("is not a tokenizer this version reads ({e})")))?;
        // The file may bake in fixed padding and truncation (all-MiniLM-L6-v2's pads every text to 128):
        // sentence-transformers pads to the longest text of a batch and truncates at its own limit.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_tokens, ..Default::default() }))
            .map_err(|e| Error::format(&tok_path, format!("cannot truncate at {max_tokens} tokens ({e})")))?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);

        let w_path = dir.join("model.safetensors");
        let bytes = read_safetensors(&w_path)?;
        let st = SafeTensors::deserialize(&bytes).expect("checked by read_safetensors");
        let prefix = if st.tensor("embeddings.word_embeddings.weight").is_ok() { "" } else { "bert." };
        let h = config.hidden_size;
        let mut ld = Loader { st: &st, path: &w_path, prefix, g: Graph::<f32>::new() };
        let word = ld.param("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position = ld.param("embeddings.position_embeddings.weight", &[config.max_position_embeddings, h])?;
        let token_type = ld.param("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, h])?;
        let ln = ld.norm("embeddings.LayerNorm", h)?;
        let mut blocks = Vec::new();
        for l in 0..config.num_hidden_layers {
            let n = |s: &str| format!("encoder.layer.{l}.{s}");
            let f = config.intermediate_size;
            blocks.push(Block {
                q: ld.linear(&n("attention.self.query"), h, h)?,
                k: ld.linear(&n("attention.self.key"), h, h)?,
                v: ld.linear(&n("attention.self.value"), h, h)?,
                out: ld.linear(&n("attention.output.dense"), h, h)?,
                ln1: ld.norm(&n("attention.output.LayerNorm"), h)?,
                up: ld.linear(&n("intermediate.dense"), h, f)?,
                down: ld.linear(&n("output.dense"), f, h)?,
                ln2: ld.norm(&n("output.LayerNorm"), h)?,
            });
        }
        let mut graph = ld.g;
        graph.set_recording(false);
        Ok(Encoder {
            config,
            pooling,
            normalize,
            max_tokens,
            tokenizer,
            graph,
            word,
            position,
            token_type,
            ln,
            blocks,
            pad_id,
        })
    }

    /// The graph the encoder runs on (its parameters, and `set_profiling` for seconds per op).
    pub fn graph_mut(&mut self) -> &mut Graph<f32> {
        &mut self.graph
    }

    /// Width of the vectors `embed` returns.
    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }

    /// Token ids of each text ([CLS] … [SEP]), cut at `max_tokens`.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Tokens> {
        let enc =
            self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| Error::Invalid(format!("tokenizer: {e}")))?;
        let truncated = enc.iter().filter(|e| !e.get_overflowing().is_empty()).count();
        Ok(Tokens { ids: enc.iter().map(|e| e.get_ids().to_vec()).collect(), truncated })
    }

    /// One vector per text, of `dim()` values, from token ids (`tokenize`): the texts of one batch, padded
    /// to the longest.
    pub fn embed_ids(&mut self, ids: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let b = ids.len();
        if b == 0 {
            return Ok(Vec::new());
        }
        let t = ids.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
        if t > self.config.max_position_embeddings {
            return Err(Error::Invalid(format!(
                "a text of {t} tokens is longer than the model's {} positions",
                self.config.max_position_embeddings
            )));
        }
        let vocab = self.config.vocab_size as u32;
        let mut flat = vec![self.pad_id; b * t];
        let mut keep = vec![0f32; b * t];
        for (r, row) in ids.iter().enumerate() {
            for (j, &id) in row.iter().enumerate() {
                if id >= vocab {
                    return Err(Error::Invalid(format!("token id {id} is outside the model's {vocab} words")));
                }
                flat[r * t + j] = id;
                keep[r * t + j] = 1.0;
            }
        }
        let positions: Vec<u32> = (0..b * t).map(|i| (i % t) as u32).collect();
        let h = self.config.hidden_size;
        let eps = self.config.layer_norm_eps;
        let heads = self.config.num_attention_heads;
        let g = &mut self.graph;
        g.reset();
        // Embeddings: [b·t, h] each; every text is segment 0.
        let (wt, pt, tt) = (g.use_param(self.word), g.use_param(self.position), g.use_param(self.token_type));
        let words = g.index_select(wt, 0, &flat)?;
        let pos = g.index_select(pt, 0, &positions)?;
        let seg = g.slice(tt, 0, 0, 1)?;
        let x = g.add(words, pos)?;
        let x = g.add(x, seg)?;
        let (lg, lb) = (g.use_param(self.ln.0), g.use_param(self.ln.1));
        let mut x = g.layer_norm(x, lg, lb, eps)?;
        for blk in &self.blocks {
            let dense = |g: &mut Graph<f32>, x, (w, bb): (ParamId, ParamId), act| {
                let (w, bb) = (g.use_param(w), g.use_param(bb));
                g.linear(x, w, Some(bb), act)
            };
            let q = dense(g, x, blk.q, None)?;
            let k = dense(g, x, blk.k, None)?;
            let v = dense(g, x, blk.v, None)?;
            let a = g.attention(q, k, v, b, t, heads, Some(&keep), false)?;
            let a = dense(g, a, blk.out, None)?;
            let a = g.add(a, x)?;
            let (g1, b1) = (g.use_param(blk.ln1.0), g.use_param(blk.ln1.1));
            x = g.layer_norm(a, g1, b1, eps)?;
            let f = dense(g, x, blk.up, Some(UnaryOp::Gelu))?;
            let f = dense(g, f, blk.down, None)?;
            let f = g.add(f, x)?;
            let (g2, b2) = (g.use_param(blk.ln2.0), g.use_param(blk.ln2.1));
            x = g.layer_norm(f, g2, b2, eps)?;
        }
        let out = g.value(x);
        let mut vecs = Vec::with_capacity(b);
        for r in 0..b {
            let rows = &out[r * t * h..(r + 1) * t * h];
            let mut v = match self.pooling {
                Pooling::Cls => rows[..h].to_vec(),
                Pooling::Mean => {
                    let mut s = vec![0f32; h];
                    let n = keep[r * t..(r + 1) * t].iter().sum::<f32>();
                    for (j, row) in rows.chunks_exact(h).enumerate() {
                        if keep[r * t + j] > 0.0 {
                            s.iter_mut().zip(row).for_each(|(a, &x)| *a += x);
                        }
                    }
                    // sentence-transformers divides by the token count clamped at 1e-9.
                    s.iter_mut().for_each(|a| *a /= n.max(1e-9));
                    s
                }
            };
            if self.normalize {
                // torch.nn.functional.normalize: v / max(‖v‖, 1e-12).
                let norm = v.iter().map(|&a| (a as f64) * (a as f64)).sum::<f64>().sqrt().max(1e-12) as f32;
                v.iter_mut().for_each(|a| *a /= norm);
            }
            vecs.push(v);
        }
        Ok(vecs)
    }

    /// One vector per text, in order: texts are sorted by length and embedded `batch` at a time (so a batch
    /// pads little), `progress` told after each batch how many are done. Returns the vectors and how many
    /// texts were cut at `max_tokens`.
    pub fn embed(
        &mut self,
        texts: &[&str],
        batch: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Vec<Vec<f32>>, usize)> {
        let tokens = self.tokenize(texts)?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(tokens.ids[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        let mut done = 0;
        for chunk in order.chunks(batch.max(1)) {
            let ids: Vec<&[u32]> = chunk.iter().map(|&i| &tokens.ids[i][..]).collect();
            for (&i, v) in chunk.iter().zip(self.embed_ids(&ids)?) {
                out[i] = v;
            }
            done += chunk.len();
            progress(done);
        }
        Ok((out, tokens.truncated))
    }
}

/// The architecture kiln runs: a BERT encoder with absolute positions and exact GELU.
fn check_config(c: &BertConfig, path: &PathBuf) -> Result<()> {
    match c.model_type.as_deref() {
        Some("bert") | None => {}
        Some(other) => {
            return Err(Error::format(
                path,
                format!("model_type `{other}` is not a BERT-family encoder (kiln reads `bert` models here)"),
            ));
        }
    }
    if c.hidden_act != "gelu" {
        return Err(Error::format(
            path,
            format!("hidden_act `{}`: kiln's BERT runs `gelu` (exact, erf)", c.hidden_act),
        ));
    }
    if let Some(p) = c.position_embedding_type.as_deref().filter(|p| *p != "absolute") {
        return Err(Error::format(path, format!("position_embedding_type `{p}`: kiln's BERT runs `absolute`")));
    }
    let fits = c.num_attention_heads > 0 && c.hidden_size.is_multiple_of(c.num_attention_heads);
    if !fits || c.hidden_size == 0 || c.num_hidden_layers == 0 || c.vocab_size == 0 || c.max_position_embeddings == 0 {
        return Err(Error::format(
            path,
            format!(
                "hidden_size {} with {} heads, {} layers, vocab {}, {} positions: want a width that splits into the heads and none zero",
                c.hidden_size, c.num_attention_heads, c.num_hidden_layers, c.vocab_size, c.max_position_embeddings
            ),
        ));
    }
    Ok(())
}
