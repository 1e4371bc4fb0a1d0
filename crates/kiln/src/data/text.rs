//! Text as a bag of terms for an embedding model: lowercasing, Unicode-aware splitting on anything that
//! is not a letter or digit (apostrophes inside words are dropped: "don't" → "dont"), optional English stop
//! words, word n-grams, and a vocabulary by document frequency (min frequency, max size). A text becomes the
//! ids of its terms, truncated or padded to a fixed length: 0 is padding, 1 an out-of-vocabulary term.
//! Fitted on training texts and saved inside the model with the rest of the preparation.
//! For bag-of-words models a text can instead become its distinct terms with a weight each (multi-hot,
//! counts or TF-IDF): the sparse form of the vocabulary-wide vector, which the model multiplies by a learned
//! matrix without ever writing the zeros.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextOptions {
    pub lowercase: bool,
    /// Drop common English words ("the", "and", ...). Off by default: for sentiment, "not" matters.
    pub stop_words: bool,
    /// Terms are word n-grams for n = 1..=ngrams.
    pub ngrams: usize,
    /// Terms in fewer documents than this are out of vocabulary.
    pub min_freq: usize,
    /// The most frequent terms kept.
    pub max_tokens: usize,
    /// Terms per text after which it is truncated (shorter texts are padded).
    pub length: usize,
    /// Width of each term's embedding.
    pub dim: usize,
    /// `ids` (default; Keras's "int"): the terms in order, for embeddings and sequence models. `multi_hot`,
    /// `count`, `tf_idf`: the text as a bag of its distinct terms, each weighted 1, by its count, or by
    /// count × idf with idf = ln((1 + documents) / (1 + document frequency)) + 1 and the vector scaled to
    /// length 1 (scikit-learn's TfidfVectorizer defaults; out-of-vocabulary terms left out). The model then
    /// multiplies that vocabulary-wide vector by a learned (vocabulary × `dim`) matrix. `length` caps the
    /// distinct terms kept (the first ones in reading order).
    pub output: TextOutput,
    /// Start the embeddings of the terms found in this word-vector file (GloVe's text format: a word, then
    /// `dim` numbers, per line) from those vectors; other terms start random. A path relative to the config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub glove: Option<std::path::PathBuf>,
    /// Start the embeddings from word vectors learned first from the training rows' texts, validation rows
    /// included (no labels: word2vec's skip-gram, see `data::word_vectors`): `pretrain = {}` for its
    /// defaults, or e.g. `pretrain = { epochs = 20, window = 3 }`. For sequence models trained from scratch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretrain: Option<super::word_vectors::SkipGram>,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions {
            lowercase: true,
            stop_words: false,
            ngrams: 2,
            min_freq: 2,
            max_tokens: 30_000,
            length: 200,
            dim: 32,
            output: TextOutput::Ids,
            glove: None,
            pretrain: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextOutput {
    #[default]
    #[serde(alias = "int")]
    Ids,
    MultiHot,
    Count,
    TfIdf,
}

impl TextOptions {
    /// Values per text after preparation: ids, then a weight per id for the bag outputs.
    pub fn width(&self) -> usize {
        if self.output == TextOutput::Ids { self.length } else { 2 * self.length }
    }
}

const STOP_WORDS: &[&str] = &[
    "a", "about", "an", "and", "are", "as", "at", "be", "been", "but", "by", "for", "from", "had", "has", "have", "he",
    "her", "his", "i", "in", "is", "it", "its", "me", "my", "of", "on", "or", "our", "she", "so", "that", "the",
    "their", "them", "they", "this", "to", "was", "we", "were", "which", "will", "with", "you", "your",
];

/// The words of a text, as the options say.
pub fn words(text: &str, opts: &TextOptions) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut push = |w: &mut String| {
        if !w.is_empty() {
            let word = std::mem::take(w);
            if !(opts.stop_words && STOP_WORDS.contains(&word.as_str())) {
                out.push(word);
            }
        }
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            if opts.lowercase {
                cur.extend(c.to_lowercase());
            } else {
                cur.push(c);
            }
        } else if c == '\'' || c == '’' {
            // Inside a word: dropped, so "don't" and "dont" are one term.
        } else {
            push(&mut cur);
        }
    }
    push(&mut cur);
    out
}

/// Word n-grams for n = 1..=ngrams, in reading order of their first word.
pub fn terms(text: &str, opts: &TextOptions) -> Vec<String> {
    let w = words(text, opts);
    let mut t = Vec::with_capacity(w.len() * opts.ngrams.max(1));
    for i in 0..w.len() {
        t.push(w[i].clone());
        for n in 2..=opts.ngrams {
            if i + n <= w.len() {
                t.push(w[i..i + n].join(" "));
            }
        }
    }
    t
}

/// A `length` for `docs` chosen from the data, for configs inferred from a file (`kiln train --data`): the
/// 95th percentile of the number of terms per text (words and, with `ngrams`, word runs; distinct terms for
/// the bag outputs), at least 8, and at most what keeps the prepared texts under 1 GiB of f32s (the rows
/// times `width`) and at most 5,000. Returns the length and the percentile before those bounds.
pub fn length_from_data<'a>(docs: impl Iterator<Item = &'a str>, opts: &TextOptions) -> (usize, usize) {
    let mut counts: Vec<usize> = docs
        .map(|d| {
            let mut t = terms(d, opts);
            if opts.output != TextOutput::Ids {
                t.sort_unstable();
                t.dedup();
            }
            t.len()
        })
        .collect();
    if counts.is_empty() {
        return (opts.length, 0);
    }
    counts.sort_unstable();
    let p95 = counts[((counts.len() - 1) as f64 * 0.95).round() as usize];
    let per_term = if opts.output == TextOutput::Ids { 1 } else { 2 };
    let memory_cap = (1usize << 28) / (counts.len() * per_term).max(1);
    (p95.clamp(8, 5_000.min(memory_cap).max(8)), p95)
}

/// The vocabulary of `docs`: terms in at least min_freq documents, the max_tokens most frequent (ties by
/// term, so the result does not depend on hashing).
pub fn vocabulary<'a>(docs: impl Iterator<Item = &'a str>, opts: &TextOptions) -> Vec<String> {
    vocabulary_and_idf(docs, opts).0
}

/// The vocabulary and each term's inverse document frequency, ln((1 + n) / (1 + df)) + 1.
pub fn vocabulary_and_idf<'a>(docs: impl Iterator<Item = &'a str>, opts: &TextOptions) -> (Vec<String>, Vec<f32>) {
    let mut df: HashMap<String, usize> = HashMap::new();
    let mut n = 0usize;
    for d in docs {
        n += 1;
        let mut t = terms(d, opts);
        t.sort_unstable();
        t.dedup();
        for term in t {
            *df.entry(term).or_default() += 1;
        }
    }
    let mut v: Vec<(String, usize)> = df.into_iter().filter(|(_, n)| *n >= opts.min_freq.max(1)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(opts.max_tokens);
    v.sort_unstable();
    let idf = v.iter().map(|(_, d)| (((1 + n) as f64 / (1 + d) as f64).ln() + 1.0) as f32).collect();
    (v.into_iter().map(|p| p.0).collect(), idf)
}

/// The bag outputs (`opts.output` other than ids): the first `opts.length` distinct term ids of `text`, then
/// their weights (zeros after the last term).
pub fn bag(text: &str, vocab: &[String], idf: &[f32], opts: &TextOptions, out: &mut [f32]) {
    out.fill(0.0);
    let len = opts.length;
    let mut slot: HashMap<usize, usize> = HashMap::new();
    for id in term_ids(text, vocab, opts) {
        if id == 1 && opts.output == TextOutput::TfIdf {
            continue;
        }
        let next = slot.len();
        let k = *slot.entry(id).or_insert(next);
        if k < len {
            out[k] = id as f32;
            out[len + k] += 1.0;
        }
    }
    let (ids, w) = out.split_at_mut(len);
    match opts.output {
        TextOutput::MultiHot => w.iter_mut().for_each(|v| *v = v.min(1.0)),
        TextOutput::TfIdf => {
            for (v, &id) in w.iter_mut().zip(ids.iter()).filter(|(_, id)| **id >= 2.0) {
                *v *= idf[id as usize - 2];
            }
            let norm = w.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                w.iter_mut().for_each(|v| *v /= norm);
            }
        }
        TextOutput::Count | TextOutput::Ids => {}
    }
}

/// Term ids of `text` (2 + position in the sorted `vocab`; 1 out of vocabulary; 0 padding), `opts.length` of them.
pub fn ids(text: &str, vocab: &[String], opts: &TextOptions, out: &mut [f32]) {
    out.fill(0.0);
    for (slot, id) in out.iter_mut().zip(term_ids(text, vocab, opts)) {
        *slot = id as f32;
    }
}

/// The id of each term of `text` in reading order: 2 + its position in the sorted `vocab`, or 1 out of
/// vocabulary (0 is left for padding).
pub fn term_ids<'a>(text: &str, vocab: &'a [String], opts: &TextOptions) -> impl Iterator<Item = usize> + 'a {
    terms(text, opts).into_iter().map(|t| vocab.binary_search(&t).map_or(1, |i| i + 2))
}

/// Vectors for the words of `vocab` found in a GloVe text file (`word v1 ... v_dim` per line): (vocab index,
/// vector). A line whose width is not `dim` is an error naming it.
pub fn read_glove(path: &std::path::Path, vocab: &[String], dim: usize) -> kiln_core::Result<Vec<(usize, Vec<f32>)>> {
    let text = super::csv::read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut parts = line.split(' ');
        let Some(word) = parts.next().filter(|w| !w.is_empty()) else {
            continue;
        };
        let Ok(k) = vocab.binary_search_by(|v| v.as_str().cmp(word)) else {
            continue;
        };
        let v: Vec<f32> =
            parts.filter(|p| !p.is_empty()).map(|p| p.parse::<f32>()).collect::<Result<_, _>>().map_err(|_| {
                kiln_core::Error::format(path, format!("line {}: `{word}` is not followed by numbers", i + 1))
            })?;
        if v.len() != dim {
            return Err(kiln_core::Error::format(
                path,
                format!("line {}: `{word}` has {} numbers, but text.dim is {dim}", i + 1, v.len()),
            ));
        }
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_from_data_is_the_95th_percentile_within_bounds() {
        let o = TextOptions { ngrams: 1, ..Default::default() };
        // 100 texts of 1..=100 words: the 95th percentile (index 94 of 0..99, rounded) is 95 words.
        let docs: Vec<String> = (1..=100).map(|n| vec!["w"; n].join(" ")).collect();
        assert_eq!(length_from_data(docs.iter().map(|s| s.as_str()), &o), (95, 95));
        // Bigrams count too; distinct terms only for the bags ("w" and "w w" whatever the length).
        let bi = TextOptions { ngrams: 2, ..o.clone() };
        assert_eq!(length_from_data(docs.iter().map(|s| s.as_str()), &bi).1, 95 + 94);
        let bag = TextOptions { output: TextOutput::Count, ..bi.clone() };
        assert_eq!(length_from_data(docs.iter().map(|s| s.as_str()), &bag), (8, 2));
        // Short texts get 8; none at all keep the option's length.
        assert_eq!(length_from_data(["a b"].into_iter(), &o), (8, 2));
        assert_eq!(length_from_data(std::iter::empty(), &o), (o.length, 0));
        let long = vec!["w"; 9_000].join(" ");
        assert_eq!(length_from_data([long.as_str()].into_iter(), &o), (5_000, 9_000));
    }

    #[test]
    fn words_terms_vocabulary_and_ids() {
        let o = TextOptions { ngrams: 2, min_freq: 1, length: 6, ..Default::default() };
        assert_eq!(words("Don't STOP—me, naïve café!", &o), ["dont", "stop", "me", "naïve", "café"]);
        assert_eq!(terms("a b c", &o), ["a", "a b", "b", "b c", "c"]);
        let stop = TextOptions { stop_words: true, ..o.clone() };
        assert_eq!(words("The dress and the fit", &stop), ["dress", "fit"]);
        let v =
            vocabulary(["good dress", "bad dress", "good fit"].into_iter(), &TextOptions { min_freq: 2, ..o.clone() });
        assert_eq!(v, ["dress", "good"]);
        let mut out = [9.0; 6];
        ids("Good dress, good price", &v, &o, &mut out);
        // good, "good dress" (unknown), dress, "dress good" (unknown), good, "good price" (unknown): truncated to 6.
        assert_eq!(out, [3.0, 1.0, 2.0, 1.0, 3.0, 1.0]);
        ids("", &v, &o, &mut out);
        assert_eq!(out, [0.0; 6]);
        // Bags: distinct terms in reading order, weighted.
        let uni = TextOptions { ngrams: 1, min_freq: 1, length: 3, ..o.clone() };
        let docs = ["good dress", "bad dress", "good fit good"];
        let (bv, idf) = vocabulary_and_idf(docs.into_iter(), &uni);
        assert_eq!(bv, ["bad", "dress", "fit", "good"]);
        // ln(4/2) + 1 for terms in 1 of 3 documents, ln(4/3) + 1 in 2.
        assert!((idf[0] - (2f32.ln() + 1.0)).abs() < 1e-6 && (idf[3] - ((4f32 / 3.0).ln() + 1.0)).abs() < 1e-6);
        let mut out = [9.0; 6];
        bag("good good new dress", &bv, &idf, &TextOptions { output: TextOutput::Count, ..uni.clone() }, &mut out);
        assert_eq!(out, [5.0, 1.0, 3.0, 2.0, 1.0, 1.0]);
        bag("good good new dress", &bv, &idf, &TextOptions { output: TextOutput::MultiHot, ..uni.clone() }, &mut out);
        assert_eq!(out, [5.0, 1.0, 3.0, 1.0, 1.0, 1.0]);
        // TF-IDF as scikit-learn's TfidfVectorizer(min_df=1) computes it on these documents: for
        // "good good new dress", good 2·(ln(4/3)+1), dress 1·(ln(4/3)+1), l2-normalized; "new" left out.
        bag("good good new dress", &bv, &idf, &TextOptions { output: TextOutput::TfIdf, ..uni.clone() }, &mut out);
        let (g, d) = (2.0 * idf[3], idf[1]);
        let norm = (g * g + d * d).sqrt();
        assert_eq!(out[..3], [5.0, 3.0, 0.0]);
        assert!((out[3] - g / norm).abs() < 1e-6 && (out[4] - d / norm).abs() < 1e-6 && out[5] == 0.0);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("glove.txt");
        std::fs::write(&path, "good 0.5 -1\nunused 1 2\ndress 3 4\n").unwrap();
        assert_eq!(read_glove(&path, &v, 2).unwrap(), vec![(1, vec![0.5, -1.0]), (0, vec![3.0, 4.0])]);
        assert!(read_glove(&path, &v, 3).unwrap_err().to_string().contains("line 1: `good` has 2 numbers"));
    }
}
