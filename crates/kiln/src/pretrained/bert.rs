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

use crate::nn::layers::bert::forward_tokens;
use crate::nn::{BertEncoder, LayerConfig};
use crate::weights::{ParamSource, Transform, read_safetensors, read_tensor};
use kiln_core::{Error, Graph, ParamId, Result};
use safetensors::SafeTensors;
use serde::Deserialize;
use std::collections::HashMap;
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

/// How token vectors become one vector per text (the layer's setting).
pub use crate::nn::TokenPooling as Pooling;

/// A pretrained BERT-family text encoder and its tokenizer, ready to embed texts.
pub struct Encoder {
    pub config: BertConfig,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Tokens per text at most ([CLS] and [SEP] included); longer texts are truncated.
    pub max_tokens: usize,
    tokenizer: tokenizers::Tokenizer,
    graph: Graph<f32>,
    /// The architecture as kiln's layer (`nn::BertEncoder`), whose forward the encoder runs.
    arch: BertEncoder,
    /// The parameters under the layer's names.
    params: HashMap<String, ParamId>,
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

/// A parameter of `nn::BertEncoder` (`encoder.layer.0.attention.self.query.kernel`) as the weights file
/// names it (without the file's prefix) and its layout there: kernels are PyTorch's transposed `weight`s.
fn file_name(param: &str) -> (String, Transform) {
    match param.strip_suffix(".kernel") {
        Some(stem) => (format!("{stem}.weight"), Transform::Transpose),
        None => (param.to_string(), Transform::None),
    }
}

/// A Hugging Face folder's model.safetensors as a weight source for a model with a `BertEncoder` layer
/// (the one loading path: `Model::set_weights_source`): the layer's parameters by their Hugging Face
/// names, any `bert.` prefix of the file's, linear weights transposed.
pub struct HfBertSource {
    path: PathBuf,
    bytes: Vec<u8>,
    prefix: String,
    missing: Vec<String>,
}

impl HfBertSource {
    pub fn open(path: &Path) -> Result<HfBertSource> {
        let bytes = read_safetensors(path)?;
        let st = SafeTensors::deserialize(&bytes).expect("checked by read_safetensors");
        let prefix = if st.tensor("embeddings.word_embeddings.weight").is_ok() { "" } else { "bert." }.to_string();
        Ok(HfBertSource { path: path.to_path_buf(), bytes, prefix, missing: Vec::new() })
    }

    /// The values of the layer parameter `param` (its name within the layer) of `shape`, in kiln's layout;
    /// None when the file has no such tensor.
    fn lookup(&self, param: &str, shape: &[usize]) -> Result<Option<Vec<f32>>> {
        let st = SafeTensors::deserialize(&self.bytes).expect("checked by read_safetensors");
        let (name, t) = file_name(param);
        let name = format!("{}{name}", self.prefix);
        if st.tensor(&name).is_err() {
            return Ok(None);
        }
        read_tensor(&st, &name, shape, t, &self.path).map(Some)
    }

    /// `lookup`, for a tensor the file must have (its absence named by `read_tensor`).
    fn read(&self, param: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let st = SafeTensors::deserialize(&self.bytes).expect("checked by read_safetensors");
        let (name, t) = file_name(param);
        read_tensor(&st, &format!("{}{name}", self.prefix), shape, t, &self.path)
    }
}

impl ParamSource for HfBertSource {
    fn take(&mut self, layer: &LayerConfig, name: &str, shape: &[usize], _init: &[f32]) -> Result<Option<Vec<f32>>> {
        let LayerConfig::BertEncoder(_) = layer else { return Ok(None) };
        let param = name.split_once('.').map_or(name, |(_, p)| p);
        let found = self.lookup(param, shape)?;
        if found.is_none() {
            self.missing.push(name.to_string());
        }
        Ok(found)
    }

    fn missing(&self) -> Vec<String> {
        self.missing.clone()
    }
}

/// A model folder read and checked: its architecture, pooling, token limit and tokenizer; the weights are
/// read by `Encoder::open` (to embed) or by a model that fine-tunes it (`weights`).
pub struct Folder {
    pub dir: PathBuf,
    pub config: BertConfig,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Tokens per text at most ([CLS] and [SEP] included); longer texts are truncated.
    pub max_tokens: usize,
    /// tokenizer.json's text (a fine-tuned model keeps it, to read raw text without the folder).
    pub tokenizer_json: String,
    tokenizer: tokenizers::Tokenizer,
}

impl Folder {
    pub fn read(dir: impl AsRef<Path>) -> Result<Folder> {
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
        let tokenizer_json = std::fs::read_to_string(&tok_path).map_err(|e| Error::io(&tok_path, &e))?;
        // The file may bake in fixed padding and truncation (all-MiniLM-L6-v2's pads every text to 128):
        // sentence-transformers pads to the longest text of a batch and truncates at its own limit.
        let tokenizer = crate::data::prepare::parse_tokenizer(&tokenizer_json, max_tokens)
            .map_err(|e| Error::format(&tok_path, format!("is not a tokenizer this version reads ({e})")))?;
        // Padding is id 0 wherever kiln pads (the BertEncoder layer masks the zeros of a prepared row).
        if let Some(pad) = tokenizer.token_to_id("[PAD]").filter(|&p| p != 0) {
            return Err(Error::format(
                &tok_path,
                format!("[PAD] is token {pad}; kiln reads BERT vocabularies with [PAD] = 0"),
            ));
        }
        Ok(Folder { dir: dir.to_path_buf(), config, pooling, normalize, max_tokens, tokenizer_json, tokenizer })
    }

    /// The encoder as kiln's layer, with the folder's pooling and normalization.
    pub fn layer(&self) -> BertEncoder {
        layer_of(&self.config, self.pooling, self.normalize)
    }

    /// The folder's weights as a source for building a model with the encoder's layer.
    pub fn weights(&self) -> Result<HfBertSource> {
        HfBertSource::open(&self.dir.join("model.safetensors"))
    }
}

impl Encoder {
    /// Opens a Hugging Face model folder of a BERT-family encoder.
    pub fn open(dir: impl AsRef<Path>) -> Result<Encoder> {
        let Folder { config, pooling, normalize, max_tokens, tokenizer, dir, .. } = Folder::read(dir)?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        let arch = layer_of(&config, pooling, normalize);
        let source = HfBertSource::open(&dir.join("model.safetensors"))?;
        let mut graph = Graph::<f32>::new();
        let mut params = HashMap::new();
        for (name, shape, _) in arch.param_shapes() {
            let values = source.read(&name, &shape)?;
            params.insert(name.clone(), graph.add_param(&name, &shape, values, false)?);
        }
        graph.set_recording(false);
        Ok(Encoder { config, pooling, normalize, max_tokens, tokenizer, graph, arch, params, pad_id })
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
        let h = self.config.hidden_size;
        let (g, params) = (&mut self.graph, &self.params);
        g.reset();
        let x = forward_tokens(g, &self.arch, &|n: &str| params[n], &flat, &keep, b, t, None)?;
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

/// config.json's architecture and the folder's pooling as kiln's layer.
fn layer_of(c: &BertConfig, pooling: Pooling, normalize: bool) -> BertEncoder {
    BertEncoder {
        name: None,
        vocab_size: c.vocab_size,
        hidden_size: c.hidden_size,
        num_hidden_layers: c.num_hidden_layers,
        num_attention_heads: c.num_attention_heads,
        intermediate_size: c.intermediate_size,
        max_position_embeddings: c.max_position_embeddings,
        type_vocab_size: c.type_vocab_size,
        layer_norm_eps: c.layer_norm_eps,
        pooling,
        normalize,
        dropout: 0.1,
        freeze: 0,
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
