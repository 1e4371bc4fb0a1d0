//! Semantic search: a collection of texts embedded once by a pretrained encoder (`pretrained::Encoder`),
//! kept as unit vectors, and queried by cosine similarity. The search is exact: every document's score is
//! one dot product, rows in parallel, each product in 16 independent lanes so that it vectorizes (see
//! `dot`). Measured on 2 cores (`cargo run --release -p kiln-bench --bin indexbench`, 384 values, while
//! another job ran): 0.7 ms a query over 10,000 documents, 18 ms over 100,000, 175 ms over 1,000,000 (it
//! reads every vector: 1.5 GB). Up to about 100,000 documents that is the time of embedding the question
//! itself (7 ms for a short one); past that an approximate index would pay, and none is built yet.
//!
//! On disk an index is a folder: `index.json` (the encoder's folder, the column and file the texts came
//! from, counts), `vectors.safetensors` (`vectors` [documents, dim], f32, unit length) and `texts.jsonl`
//! (each document's text and its row in the source file, one JSON object a line). It is written to a
//! temporary folder beside it and renamed into place, so a failed build leaves any earlier index whole.

use crate::pretrained::Encoder;
use crate::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const LANES: usize = 16;
const FORMAT: &str = "kiln-index-1";

/// What index.json holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexInfo {
    pub format: String,
    /// The encoder's folder, absolute, as it was when the index was built.
    pub model: PathBuf,
    pub source: PathBuf,
    pub column: String,
    pub documents: usize,
    pub dim: usize,
}

/// One document: its text and its row in the source file (1 = the first row after the header).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub row: usize,
    pub text: String,
}

/// A document found by a query, with its cosine similarity to the query.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit<'a> {
    pub score: f32,
    pub doc: &'a Document,
}

pub struct Index {
    pub info: IndexInfo,
    pub docs: Vec<Document>,
    /// [documents, dim], each row of unit length (or zero, for a text whose vector was zero).
    vectors: Vec<f32>,
}

/// v / ‖v‖ (zero stays zero).
fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
    }
}

/// Σ aᵢ·bᵢ in `LANES` independent sums (a single running sum does not vectorize: the compiler may not
/// reorder float additions).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

impl Index {
    /// An index of `docs` from their vectors (one per document, all of `dim` values), normalized here.
    pub fn from_vectors(info: IndexInfo, docs: Vec<Document>, vecs: Vec<Vec<f32>>) -> Result<Index> {
        if vecs.len() != docs.len() || vecs.iter().any(|v| v.len() != info.dim) {
            return Err(Error::Shape(format!(
                "index: {} documents with {} vectors; want one vector of {} values each",
                docs.len(),
                vecs.len(),
                info.dim
            )));
        }
        let mut vectors = Vec::with_capacity(docs.len() * info.dim);
        for mut v in vecs {
            normalize(&mut v);
            vectors.extend(v);
        }
        Ok(Index { info: IndexInfo { documents: docs.len(), ..info }, docs, vectors })
    }

    /// Embeds every text of `texts` (rows of `source`'s `column`) with `encoder` (from `model`), `batch`
    /// at a time, telling `progress` how many are done. Returns the index and how many texts were cut at
    /// the encoder's length.
    pub fn build(
        encoder: &mut Encoder,
        model: &Path,
        source: &Path,
        column: &str,
        texts: &[&str],
        batch: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Index, usize)> {
        if texts.is_empty() {
            return Err(Error::Config(format!("{}: no rows to index", source.display())));
        }
        let (vecs, truncated) = encoder.embed(texts, batch, progress)?;
        let model = std::fs::canonicalize(model).map_err(|e| Error::io(model, &e))?;
        let source = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
        let info = IndexInfo {
            format: FORMAT.into(),
            model,
            source,
            column: column.into(),
            documents: texts.len(),
            dim: encoder.dim(),
        };
        let docs = texts.iter().enumerate().map(|(i, t)| Document { row: i + 1, text: t.to_string() }).collect();
        Ok((Index::from_vectors(info, docs, vecs)?, truncated))
    }

    /// The `k` documents most similar to `query` (a vector of `dim` values), best first; ties keep the
    /// documents' order.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit<'_>>> {
        let d = self.info.dim;
        if query.len() != d {
            return Err(Error::Shape(format!("index query: a vector of {} values; the index holds {d}", query.len())));
        }
        let mut q = query.to_vec();
        normalize(&mut q);
        let mut scores = vec![0f32; self.docs.len()];
        // Blocks of rows per task: one row is too little work to hand to another thread.
        const BLOCK: usize = 256;
        scores.par_chunks_mut(BLOCK).zip(self.vectors.par_chunks(BLOCK * d)).for_each(|(s, rows)| {
            kiln_core::simd::vectorized(
                #[inline(always)]
                || {
                    for (s, row) in s.iter_mut().zip(rows.chunks_exact(d)) {
                        *s = dot(row, &q);
                    }
                },
            )
        });
        let mut order: Vec<usize> = (0..scores.len()).collect();
        let k = k.min(order.len());
        let better = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
        if k < order.len() && k > 0 {
            order.select_nth_unstable_by(k - 1, better);
        }
        order.truncate(k);
        order.sort_by(better);
        Ok(order.into_iter().map(|i| Hit { score: scores[i], doc: &self.docs[i] }).collect())
    }

    /// Writes the index folder `dir` (see the header), replacing an index already there; any other
    /// existing file or folder at `dir` is an error, left as it is.
    pub fn save(&self, dir: &Path) -> Result<()> {
        if dir.exists() && !dir.join("index.json").is_file() {
            return Err(Error::Config(format!(
                "--output {}: exists and is not a kiln index; choose a new folder",
                dir.display()
            )));
        }
        let name =
            dir.file_name().ok_or_else(|| Error::Config(format!("--output {}: not a folder name", dir.display())))?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = parent.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
        let old = parent.join(format!(".{}.{}.old", name.to_string_lossy(), std::process::id()));
        let write = || -> Result<()> {
            std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, &e))?;
            let json = serde_json::to_string_pretty(&self.info).expect("plain data");
            crate::io::write_atomic(&tmp.join("index.json"), json.as_bytes())?;
            let bytes: Vec<u8> = self.vectors.iter().flat_map(|x| x.to_le_bytes()).collect();
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                vec![self.docs.len(), self.info.dim],
                &bytes,
            )
            .map_err(|e| Error::Invalid(format!("index vectors: {e}")))?;
            let st = safetensors::serialize([("vectors", view)], None)
                .map_err(|e| Error::Invalid(format!("index vectors: {e}")))?;
            crate::io::write_atomic(&tmp.join("vectors.safetensors"), &st)?;
            let mut lines = String::new();
            for d in &self.docs {
                lines += &serde_json::to_string(d).expect("plain data");
                lines.push('\n');
            }
            crate::io::write_atomic(&tmp.join("texts.jsonl"), lines.as_bytes())
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let had = dir.exists();
        if had {
            std::fs::rename(dir, &old).map_err(|e| Error::io(dir, &e))?;
        }
        if let Err(e) = std::fs::rename(&tmp, dir) {
            if had {
                let _ = std::fs::rename(&old, dir);
            }
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(Error::io(dir, &e));
        }
        if had {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(())
    }

    /// Reads an index folder written by `save`, each file checked against index.json.
    pub fn load(dir: &Path) -> Result<Index> {
        let info_path = dir.join("index.json");
        if !info_path.is_file() {
            return Err(Error::Config(format!(
                "{}: not a kiln index (no index.json); make one with `kiln index build`",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&info_path).map_err(|e| Error::io(&info_path, &e))?;
        let info: IndexInfo =
            serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", info_path.display())))?;
        if info.format != FORMAT {
            return Err(Error::Config(format!(
                "{}: format `{}`, this kiln reads `{FORMAT}`; rebuild the index",
                info_path.display(),
                info.format
            )));
        }
        let vpath = dir.join("vectors.safetensors");
        let bytes = std::fs::read(&vpath).map_err(|e| Error::io(&vpath, &e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Config(format!("{}: {e}", vpath.display())))?;
        let t = st.tensor("vectors").map_err(|e| Error::Config(format!("{}: {e}", vpath.display())))?;
        if t.dtype() != safetensors::Dtype::F32 || t.shape() != [info.documents, info.dim] {
            return Err(Error::Config(format!(
                "{}: `vectors` is {:?} {:?}; index.json says [{}, {}] f32",
                vpath.display(),
                t.dtype(),
                t.shape(),
                info.documents,
                info.dim
            )));
        }
        let vectors: Vec<f32> =
            t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let tpath = dir.join("texts.jsonl");
        let lines = std::fs::read_to_string(&tpath).map_err(|e| Error::io(&tpath, &e))?;
        let docs = lines
            .lines()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| Error::Config(format!("{} line {}: {e}", tpath.display(), i + 1)))
            })
            .collect::<Result<Vec<Document>>>()?;
        if docs.len() != info.documents {
            return Err(Error::Config(format!(
                "{}: {} texts; index.json says {}",
                tpath.display(),
                docs.len(),
                info.documents
            )));
        }
        Ok(Index { info, docs, vectors })
    }
}
