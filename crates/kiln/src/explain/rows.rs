//! A table row's or a text's integrated gradients, mapped back to what the user wrote: one number per
//! column (a one-hot group or an embedding vector summed into its column), and for a text column one per
//! term.
//!
//! Where they are taken, by the model's first layer:
//! - numbers and one-hot categories: at the prepared row, from a baseline of zeros (each number at its
//!   training mean, no category level; Captum's default baseline);
//! - `CategoryEmbedding` (embedded categories, text bags): at its output, from its output on a row of zero
//!   numbers, each category at the unseen slot and each text empty; a bag's attribution is shared among its
//!   terms exactly, since a bag is linear in each term's vector: term t's part is its weight times
//!   (its vector · the path-averaged gradient);
//! - `Embedding` (a text as term ids): at its output, from every term replaced by padding (the padding
//!   mask kept from the text, as Captum's layer attributions keep the attention mask), one number per term.

use super::integrated::{Rule, path_gradient};
use super::{At, Probe, Target};
use crate::data::prepare::{Feature, FeatureKind, Preparation};
use crate::data::table::Table;
use crate::data::text::{TextOptions, term_ids, terms, words};
use crate::model::Model;
use crate::nn::LayerConfig;
use kiln_core::{Error, Result, Tensor};
use serde::Serialize;

/// One column's share of a prediction.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnAttribution {
    pub column: String,
    /// The raw cell, as the file has it (empty when missing).
    pub value: String,
    pub attribution: f32,
}

/// One term's share (of a text column).
#[derive(Clone, Debug, Serialize)]
pub struct TermAttribution {
    pub term: String,
    pub attribution: f32,
}

/// A row's prediction taken apart.
#[derive(Clone, Debug, Serialize)]
pub struct RowExplanation {
    /// The explained output on the row, and on the baseline.
    pub output: f32,
    pub baseline_output: f32,
    pub columns: Vec<ColumnAttribution>,
    /// Per text column: its terms in reading order (a bag's terms once each, in order of first use).
    pub terms: Vec<(String, Vec<TermAttribution>)>,
    /// Per text column: its words in reading order, each with its share of the terms it is part of (a
    /// term's attribution split evenly over its occurrences and over the words of each): what a page shades.
    pub words: Vec<(String, Vec<TermAttribution>)>,
}

impl RowExplanation {
    /// Completeness' error: Σ columns − (f(row) − f(baseline)).
    pub fn delta(&self) -> f32 {
        let sum: f64 = self.columns.iter().map(|c| c.attribution as f64).sum();
        (sum - (self.output as f64 - self.baseline_output as f64)) as f32
    }
}

/// Integrated gradients of row `row` of `table` for `target`, mapped to columns and terms.
pub fn explain_row(
    model: &Model,
    table: &Table,
    row: usize,
    target: Target,
    steps: usize,
    rule: Rule,
) -> Result<RowExplanation> {
    let prep = model.preparation().ok_or_else(|| {
        Error::Invalid("this model was not trained on a table or text; explain its images instead".into())
    })?;
    if row >= table.rows() {
        return Err(Error::Invalid(format!(
            "{}: row {} asked for, the file has {} rows (1 to {})",
            table.source,
            row + 1,
            table.rows(),
            table.rows()
        )));
    }
    let x = prep.transform_inputs(table, &[row])?;
    let xs: Vec<&Tensor> = x.iter().collect();
    let first = model.layers().first().map(|l| &l.config);
    // A missing cell (empty, or `?` where the reader took it as missing) is shown as such.
    let cell = |f: &Feature| -> Result<String> {
        Ok(table.column(&f.name)?.cells[row].clone().unwrap_or_else(|| "(missing)".into()))
    };
    let mut columns = Vec::new();
    let mut text_terms = Vec::new();
    let mut text_words = Vec::new();
    let (output, baseline_output) = match first {
        Some(LayerConfig::CategoryEmbedding(ce)) if xs.len() == 1 => {
            let probe = Probe::new(model, &xs, At::Layer(0), target)?;
            // The baseline row: zero numbers, categories at the unseen slot, texts empty.
            let mut base = vec![0f32; prep.width()];
            let mut off = ce.numeric;
            for f in prep.features.iter().filter(|f| embedded(f)) {
                if let FeatureKind::Category { levels, .. } = &f.kind {
                    base[off] = levels.len() as f32;
                }
                off += f.width();
            }
            let baseline = probe.layer_output(&[base], 0)?;
            let (g, ends) = path_gradient(&probe, &baseline, steps, rule)?;
            let point = probe.point()?;
            let attr: Vec<f32> =
                point.iter().zip(&baseline).zip(&g).map(|((x, b), g)| ((x - b) as f64 * g) as f32).collect();
            // The numbers first (the leading unembedded features, in order), then each embedded column's vector.
            let (mut at, mut id_at, mut j) = (0, ce.numeric, 0);
            for f in prep.features.iter().filter(|f| !embedded(f)) {
                let w = f.width();
                columns.push(ColumnAttribution {
                    column: f.name.clone(),
                    value: cell(f)?,
                    attribution: sum(&attr[at..at + w]),
                });
                at += w;
            }
            for f in prep.features.iter().filter(|f| embedded(f)) {
                let dim = ce.columns[j].1;
                let block = &attr[at..at + dim];
                columns.push(ColumnAttribution { column: f.name.clone(), value: cell(f)?, attribution: sum(block) });
                if let FeatureKind::Text { vocab, opts, .. } = &f.kind {
                    let len = opts.length;
                    let ids = &x[0].data()[id_at..id_at + len];
                    let weights =
                        if ce.is_weighted(j) { Some(&x[0].data()[id_at + len..id_at + 2 * len]) } else { None };
                    let table_id =
                        model.layers()[0].param(&crate::nn::CategoryEmbedding::table_name(j)).expect("built");
                    let e = &model.graph().param(table_id).value;
                    let nonzero = ids.iter().filter(|&&i| i != 0.0).count().max(1) as f32;
                    // Per term id (a bag of ids repeats a term in as many slots as it occurs), in order of first use.
                    let mut by_id: std::collections::HashMap<usize, f32> = std::collections::HashMap::new();
                    let mut order = Vec::new();
                    for (k, &id) in ids.iter().enumerate().filter(|(_, i)| **i != 0.0) {
                        let c = weights.map_or(1.0 / nonzero, |w| w[k]);
                        let v = &e[id as usize * dim..(id as usize + 1) * dim];
                        let share: f64 = v.iter().zip(&g[at..at + dim]).map(|(v, g)| *v as f64 * g).sum();
                        let slot = by_id.entry(id as usize).or_insert_with(|| {
                            order.push(id as usize);
                            0.0
                        });
                        *slot += (c as f64 * share) as f32;
                    }
                    let out: Vec<TermAttribution> = order
                        .iter()
                        .map(|&id| TermAttribution { term: term_name(vocab, id), attribution: by_id[&id] })
                        .collect();
                    // Each occurrence of a bag's term shares its attribution (a term counted once or more).
                    let text = cell(f)?;
                    let seq: Vec<usize> = term_ids(&text, vocab, opts).collect();
                    let mut seen: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
                    for id in &seq {
                        *seen.entry(*id).or_default() += 1;
                    }
                    let per: Vec<f32> =
                        seq.iter().map(|id| by_id.get(id).map_or(0.0, |a| a / seen[id] as f32)).collect();
                    text_words.push((f.name.clone(), word_shares(&text, opts, &per)));
                    text_terms.push((f.name.clone(), out));
                }
                at += dim;
                id_at += f.width();
                j += 1;
            }
            (ends.0, ends.1)
        }
        Some(LayerConfig::Embedding(_)) => {
            let [f @ Feature { kind: FeatureKind::Text { opts, .. }, .. }] = prep.features.as_slice() else {
                return Err(Error::Invalid(
                    "explain: an Embedding first layer reads one text column's term ids".into(),
                ));
            };
            let probe = Probe::new(model, &xs, At::Layer(0), target)?;
            let baseline = probe.layer_output(&[vec![0f32; prep.width()]], 0)?;
            let (g, ends) = path_gradient(&probe, &baseline, steps, rule)?;
            let point = probe.point()?;
            let dim = point.len() / opts.length;
            let text = cell(f)?;
            let words = terms(&text, opts);
            let mut out = Vec::new();
            for (t, word) in words.iter().take(opts.length).enumerate() {
                let r = t * dim..(t + 1) * dim;
                let a: f64 = point[r.clone()]
                    .iter()
                    .zip(&baseline[r.clone()])
                    .zip(&g[r])
                    .map(|((x, b), g)| (x - b) as f64 * g)
                    .sum();
                out.push(TermAttribution { term: word.clone(), attribution: a as f32 });
            }
            let per: Vec<f32> = out.iter().map(|t| t.attribution).collect();
            text_words.push((f.name.clone(), word_shares(&text, opts, &per)));
            columns.push(ColumnAttribution {
                column: f.name.clone(),
                value: text,
                attribution: out.iter().map(|t| t.attribution).sum(),
            });
            text_terms.push((f.name.clone(), out));
            (ends.0, ends.1)
        }
        _ if prep.features.iter().any(|f| matches!(f.kind, FeatureKind::Tokens { .. })) => {
            return Err(Error::Invalid(
                "explain: a fine-tuned pretrained encoder runs as one layer in kiln, so its tokens cannot be \
                 attributed yet"
                    .into(),
            ));
        }
        _ => {
            let probe = Probe::new(model, &xs, At::Inputs, target)?;
            let baseline = vec![0f32; probe.width];
            let (g, ends) = path_gradient(&probe, &baseline, steps, rule)?;
            let point = probe.point()?;
            let mut at = 0;
            for f in features_in_input_order(prep) {
                let w = f.width();
                let a: f64 = (at..at + w).map(|i| point[i] as f64 * g[i]).sum();
                columns.push(ColumnAttribution { column: f.name.clone(), value: cell(f)?, attribution: a as f32 });
                at += w;
            }
            (ends.0, ends.1)
        }
    };
    Ok(RowExplanation { output, baseline_output, columns, terms: text_terms, words: text_words })
}

/// The words of `text` in reading order, each with its share of `per_term` (one attribution per term of
/// `terms(text)`, in that order; missing ones count nothing): a term of n words gives each a 1/n part.
fn word_shares(text: &str, opts: &TextOptions, per_term: &[f32]) -> Vec<TermAttribution> {
    let w = words(text, opts);
    let mut share = vec![0f32; w.len()];
    // terms() lists, for each word i, the word and then the n-grams starting at it.
    let mut t = 0;
    for i in 0..w.len() {
        for n in 1..=opts.ngrams.max(1) {
            if n > 1 && i + n > w.len() {
                continue;
            }
            if let Some(&a) = per_term.get(t) {
                share[i..i + n].iter_mut().for_each(|s| *s += a / n as f32);
            }
            t += 1;
        }
    }
    w.into_iter().zip(share).map(|(term, attribution)| TermAttribution { term, attribution }).collect()
}

/// A feature the first `CategoryEmbedding` looks up (a category's index, or a text's ids as a bag).
fn embedded(f: &Feature) -> bool {
    matches!(f.kind, FeatureKind::Category { embed: Some(_), .. } | FeatureKind::Text { .. })
}

/// The features as the model's inputs hold them: each named input's columns in turn (in the preparation's
/// order within it), or the prepared row as it is.
fn features_in_input_order(prep: &Preparation) -> Vec<&Feature> {
    if prep.inputs.is_empty() {
        return prep.features.iter().collect();
    }
    prep.inputs.iter().flat_map(|i| prep.features.iter().filter(move |f| i.columns.contains(&f.name))).collect()
}

/// Term id → its text: 2 + position in the vocabulary, 1 out of vocabulary.
fn term_name(vocab: &[String], id: usize) -> String {
    if id >= 2 { vocab.get(id - 2).cloned().unwrap_or_else(|| format!("#{id}")) } else { "[unknown]".into() }
}

fn sum(v: &[f32]) -> f32 {
    v.iter().map(|&v| v as f64).sum::<f64>() as f32
}
