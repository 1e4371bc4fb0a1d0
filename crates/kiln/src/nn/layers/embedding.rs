//! Embeddings: ids to learned vectors. `Embedding` maps a sequence of ids (Keras's layer, with `mask_zero`
//! starting a padding mask); `CategoryEmbedding` maps a table row's category and text columns, each through
//! a table of its own, next to the row's numbers.

use crate::nn::Layer;
use crate::nn::spec::{BuildCx, Fwd, LayerSpec, MaskRule};
use crate::onnx::proto::INT64;
use crate::onnx::{Attr, OnnxGraph};
use kiln_core::{Error, Result, Rng, Var};
use serde::{Deserialize, Serialize};

/// Keras's Embedding default start: uniform in [−0.05, 0.05].
fn embedding_init(n: usize, rng: &mut Rng) -> kiln_core::Result<Vec<f32>> {
    kiln_core::mem::check(n as u128, 4, &format!("an embedding table of {n} values"))?;
    Ok((0..n).map(|_| rng.uniform_range(-0.05, 0.05) as f32).collect())
}

/// Ids (0..input_dim) to learned vectors (Keras's Embedding): input (length,), output (length, output_dim).
/// With `mask_zero`, id 0 is padding: the recurrent layer after it skips those steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Embedding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub input_dim: usize,
    pub output_dim: usize,
    #[serde(default)]
    pub mask_zero: bool,
}

impl Embedding {
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Embedding { name: None, input_dim, output_dim, mask_zero: false }
    }
    pub fn mask_zero(mut self, on: bool) -> Self {
        self.mask_zero = on;
        self
    }
}

impl LayerSpec for Embedding {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let ids = o.op("Cast", &[&xs[0]], vec![Attr::i("to", INT64 as i64)]);
        let table = o.param(l, "embeddings")?;
        Ok(o.op("Gather", &[&table, &ids], vec![Attr::i("axis", 0)]))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        cx.positive(self.input_dim.min(self.output_dim), "input_dim and output_dim")?;
        let &[steps] = cx.input() else {
            return Err(cx.misfit("a sequence of ids (length,)"));
        };
        let table = embedding_init(self.input_dim.saturating_mul(self.output_dim), cx.rng)?;
        cx.param("embeddings", &[self.input_dim, self.output_dim], table, true)?;
        Ok(vec![steps, self.output_dim])
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let (g, x) = (&mut *f.g, xs[0]);
        let (n, steps) = (g.shape(x).dim(0), g.shape(x).dim(1));
        let ids: Vec<u32> = g.value(x).iter().map(|&v| v as u32).collect();
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.input_dim) {
            return Err(Error::Data(format!(
                "layer `{}`: id {bad} is outside its vocabulary of {}",
                l.name(),
                self.input_dim
            )));
        }
        let w = g.use_param(l.must("embeddings"));
        let e = g.index_select(w, 0, &ids)?;
        g.reshape(e, &[n, steps, self.output_dim])
    }

    fn mask_rule(&self) -> MaskRule {
        if self.mask_zero { MaskRule::Starts } else { MaskRule::Keeps }
    }
}

/// Learned embeddings of categorical columns (Keras: one Embedding per column, then Concatenate). Its input
/// rows hold `numeric` numbers followed by one category index per column (0..vocab); its output is the
/// numbers followed by each column's embedding vector. Tables with `categories = "embedding"` start with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryEmbedding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub numeric: usize,
    /// (vocabulary size, embedding width) per column.
    pub columns: Vec<(usize, usize)>,
    /// Ids per column (1 for a category; more for a text, whose output is the mean of the vectors of its
    /// non-zero ids: 0 is padding). Empty means 1 for every column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lengths: Vec<usize>,
    /// Per column: its ids are followed by as many weights, and the output is the weighted sum of the
    /// vectors (a vocabulary-wide multi-hot, count or TF-IDF vector times the table, computed sparsely).
    /// Empty means none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weighted: Vec<bool>,
}

impl CategoryEmbedding {
    pub fn new(numeric: usize, columns: &[(usize, usize)]) -> Self {
        CategoryEmbedding { name: None, numeric, columns: columns.to_vec(), lengths: Vec::new(), weighted: Vec::new() }
    }

    /// Columns of several ids each (texts as bags of terms).
    pub fn lengths(mut self, lengths: &[usize]) -> Self {
        self.lengths = lengths.to_vec();
        self
    }

    /// Columns whose ids come with weights (see `weighted`).
    pub fn weighted(mut self, weighted: &[bool]) -> Self {
        self.weighted = weighted.to_vec();
        self
    }

    pub(crate) fn is_weighted(&self, j: usize) -> bool {
        self.weighted.get(j).copied().unwrap_or(false)
    }

    pub(crate) fn length(&self, j: usize) -> usize {
        self.lengths.get(j).copied().unwrap_or(1)
    }

    /// Values the layer reads per row after the numbers: ids, and weights where weighted.
    pub(crate) fn ids(&self) -> usize {
        (0..self.columns.len()).map(|j| self.length(j) * (1 + self.is_weighted(j) as usize)).sum()
    }

    /// The name of column `j`'s table within the layer.
    pub fn table_name(j: usize) -> String {
        format!("embeddings_{j}")
    }
}

impl LayerSpec for CategoryEmbedding {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let x = &xs[0];
        let mut parts = Vec::with_capacity(self.columns.len() + 1);
        if self.numeric > 0 {
            parts.push(o.columns(x, 0, self.numeric));
        }
        let mut off = self.numeric;
        for (j, &(_, dim)) in self.columns.iter().enumerate() {
            let len = self.length(j);
            let raw = o.columns(x, off, off + len);
            off += len;
            let ids = o.op("Cast", &[&raw], vec![Attr::i("to", INT64 as i64)]);
            let table = o.param(l, &Self::table_name(j))?;
            // [batch, len, dim]
            let e = o.op("Gather", &[&table, &ids], vec![Attr::i("axis", 0)]);
            if len == 1 {
                parts.push(o.reshape(&e, &[dim]));
                continue;
            }
            // A bag: the weighted sum of its vectors, with the weights given beside the ids, or 1/count on
            // each non-padding id.
            let w = if self.is_weighted(j) {
                let w = o.columns(x, off, off + len);
                off += len;
                w
            } else {
                let nz = o.keep(&raw);
                let n = o.sum(&nz, 1, true);
                let one = o.floats(&[], &[1.0]);
                let n = o.op("Max", &[&n, &one], vec![]);
                o.op("Div", &[&nz, &n], vec![])
            };
            let w = o.reshape(&w, &[len, 1]);
            let weighted = o.op("Mul", &[&e, &w], vec![]);
            parts.push(o.sum(&weighted, 1, false));
        }
        let parts: Vec<&str> = parts.iter().map(|s| s.as_str()).collect();
        Ok(o.op("Concat", &parts, vec![Attr::i("axis", 1)]))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        let &[width] = cx.input() else {
            return Err(cx.misfit("a flat input (features,)"));
        };
        let per_column = |v: usize| v == 0 || v == self.columns.len();
        if width != self.numeric + self.ids() || !per_column(self.lengths.len()) || !per_column(self.weighted.len()) {
            return Err(cx.misfit(&format!("{} numbers and {} category indices", self.numeric, self.ids())));
        }
        let mut out = self.numeric;
        for (i, &(vocab, dim)) in self.columns.iter().enumerate() {
            cx.positive(vocab.min(dim), "vocabulary and width")?;
            let table = embedding_init(vocab.saturating_mul(dim), cx.rng)?;
            cx.param(&Self::table_name(i), &[vocab, dim], table, true)?;
            out += dim;
        }
        Ok(vec![out])
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        // The indices are data (the batch's input), read from the graph; the embeddings take the gradient.
        let (g, x) = (&mut *f.g, xs[0]);
        let width = self.numeric + self.ids();
        let mut cols: Vec<Vec<u32>> = Vec::with_capacity(self.columns.len());
        let mut weights: Vec<Vec<f32>> = Vec::with_capacity(self.columns.len());
        {
            let v = g.value(x);
            let mut off = self.numeric;
            for j in 0..self.columns.len() {
                let len = self.length(j);
                cols.push(v.chunks(width).flat_map(|r| r[off..off + len].iter().map(|&i| i as u32)).collect());
                off += len;
                if self.is_weighted(j) {
                    weights.push(v.chunks(width).flat_map(|r| r[off..off + len].iter().copied()).collect());
                    off += len;
                } else {
                    weights.push(Vec::new());
                }
            }
        }
        let mut parts = Vec::with_capacity(self.columns.len() + 1);
        if self.numeric > 0 {
            parts.push(g.slice(x, 1, 0, self.numeric)?);
        }
        for (j, idx) in cols.iter().enumerate() {
            let (vocab, _) = self.columns[j];
            if let Some(bad) = idx.iter().find(|&&i| i as usize >= vocab) {
                return Err(Error::Data(format!(
                    "layer `{}`: index {bad} of column {j} is outside its vocabulary of {vocab}",
                    l.name()
                )));
            }
            let w = g.use_param(l.must(&Self::table_name(j)));
            let len = self.length(j);
            if len == 1 {
                parts.push(g.index_select(w, 0, idx)?);
                continue;
            }
            // Several ids: one fused bag op (`Graph::embedding_bag`), the weighted sum of their vectors.
            if self.is_weighted(j) {
                // Weights given with the ids: padding has weight 0.
                parts.push(g.embedding_bag(w, idx, &weights[j], len)?);
                continue;
            }
            // The mean of the vectors of the non-padding ids: weight 1/count each.
            let mut mean = Vec::with_capacity(idx.len());
            for bag in idx.chunks(len) {
                let inv = 1.0 / bag.iter().filter(|&&i| i != 0).count().max(1) as f32;
                mean.extend(bag.iter().map(|&i| if i != 0 { inv } else { 0.0 }));
            }
            parts.push(g.embedding_bag(w, idx, &mean, len)?);
        }
        g.concat(&parts, 1)
    }
}
