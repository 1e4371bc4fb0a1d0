//! Word vectors learned from the training texts themselves: word2vec's skip-gram with negative sampling
//! (Mikolov et al., 2013, and its reference C code's defaults). For a text model trained from scratch on a
//! few thousand labelled texts, the labels alone teach the embedding little about words seen a handful of
//! times; predicting each word's neighbours does, from the same texts, and the model starts from that.

use kiln_core::simd::dot;
use kiln_core::{Error, Result, Rng};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a table of skip-gram settings: {} for the defaults, or e.g. { epochs = 20 }"
)]
pub struct SkipGram {
    /// Passes over the texts (word2vec's default is 5; small corpora gain from more).
    pub epochs: usize,
    /// The largest distance of a neighbour; each word uses a window drawn from 1..=window, so near
    /// neighbours count more.
    pub window: usize,
    /// Words drawn from the unigram distribution to the power 0.75, as negatives, per true neighbour.
    pub negative: usize,
    /// Frequent words are dropped at random with this threshold (word2vec's `-sample`; 0 keeps all).
    pub sample: f64,
    /// SGD step at the start, decaying linearly to 1/10,000 of it.
    pub learning_rate: f32,
}

impl Default for SkipGram {
    fn default() -> Self {
        SkipGram { epochs: 10, window: 5, negative: 5, sample: 1e-3, learning_rate: 0.025 }
    }
}

impl SkipGram {
    pub fn validate(&self, key: &str) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("{key}.{what}")));
        if self.epochs == 0 {
            return bad("epochs must be at least 1");
        }
        if self.window == 0 {
            return bad("window must be at least 1");
        }
        if self.negative == 0 {
            return bad("negative must be at least 1");
        }
        if !(self.sample >= 0.0 && self.sample.is_finite()) {
            return bad(&format!("sample must be a number >= 0, got {}", self.sample));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(&format!("learning_rate must be > 0, got {}", self.learning_rate));
        }
        Ok(())
    }

    /// Vectors (`words` × `dim`, row-major) for words 0..words, from texts given as word indices.
    /// One thread, so that a seed always gives the same vectors (word2vec's threads update the shared
    /// vectors without locks, in an order that changes from run to run): about 50 s for 10 passes over the
    /// clothing reviews' 16,492 training texts as words and 2-grams.
    pub fn train(&self, texts: &[Vec<u32>], words: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed ^ 0x5C1B_6A4A);
        let mut input: Vec<f32> = (0..words * dim).map(|_| ((rng.uniform() - 0.5) / dim as f64) as f32).collect();
        let mut output = vec![0f32; words * dim];
        let mut counts = vec![0u64; words];
        for &w in texts.iter().flatten() {
            counts[w as usize] += 1;
        }
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return input;
        }
        // Probability of keeping a word: word2vec's (sqrt(f / t) + 1) · t / f, with f its count and t the
        // threshold in counts.
        let t = self.sample * total as f64;
        let keep: Vec<f64> = counts
            .iter()
            .map(|&c| if t == 0.0 || c == 0 { 1.0 } else { ((c as f64 / t).sqrt() + 1.0) * t / c as f64 })
            .collect();
        let noise = Alias::new(&counts.iter().map(|&c| (c as f64).powf(0.75)).collect::<Vec<_>>());
        let steps = (self.epochs as u64 * total) as f32;
        let mut done = 0u64;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        let mut kept = Vec::new();
        let mut grad = vec![0f32; dim];
        for _ in 0..self.epochs {
            rng.shuffle(&mut order);
            for &i in &order {
                let text = &texts[i];
                kept.clear();
                kept.extend(text.iter().copied().filter(|&w| rng.uniform() < keep[w as usize]));
                for (pos, &center) in kept.iter().enumerate() {
                    let lr = self.learning_rate * (1.0 - done as f32 / steps).max(1e-4);
                    let reach = 1 + (rng.next_u64() % self.window as u64) as usize;
                    let lo = pos.saturating_sub(reach);
                    let hi = (pos + reach).min(kept.len() - 1);
                    for c in (lo..=hi).filter(|&c| c != pos) {
                        let ctx = kept[c] as usize * dim;
                        grad.fill(0.0);
                        for d in 0..=self.negative {
                            let (target, label) = if d == 0 {
                                (center as usize, 1.0)
                            } else {
                                let n = noise.sample(&mut rng);
                                if n == center as usize {
                                    continue;
                                }
                                (n, 0.0)
                            };
                            let (v, o) = (&input[ctx..ctx + dim], &mut output[target * dim..(target + 1) * dim]);
                            let dot = dot(v, o);
                            let g = (label - 1.0 / (1.0 + (-dot.clamp(-6.0, 6.0)).exp())) * lr;
                            for ((gr, ov), iv) in grad.iter_mut().zip(o.iter_mut()).zip(v.iter()) {
                                *gr += g * *ov;
                                *ov += g * iv;
                            }
                        }
                        for (iv, gr) in input[ctx..ctx + dim].iter_mut().zip(&grad) {
                            *iv += gr;
                        }
                    }
                }
                done += text.len() as u64;
            }
        }
        input
    }
}

/// Walker's alias method: draws index i with probability weight[i] / sum in constant time (the noise words
/// are drawn about 300 million times in a pretraining of 10 epochs over a million words).
struct Alias {
    keep: Vec<f64>,
    other: Vec<usize>,
}

impl Alias {
    fn new(weight: &[f64]) -> Alias {
        let n = weight.len();
        let sum: f64 = weight.iter().sum();
        let mut keep: Vec<f64> = weight.iter().map(|w| w * n as f64 / sum).collect();
        let mut other: Vec<usize> = (0..n).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| keep[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            other[s] = l;
            keep[l] -= 1.0 - keep[s];
            if keep[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // What is left is 1 up to rounding.
        large.into_iter().chain(small).for_each(|i| keep[i] = 1.0);
        Alias { keep, other }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let i = (rng.next_u64() % self.keep.len() as u64) as usize;
        if rng.uniform() < self.keep[i] { i } else { self.other[i] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(v: &[f32], a: usize, b: usize, dim: usize) -> f32 {
        let (x, y) = (&v[a * dim..(a + 1) * dim], &v[b * dim..(b + 1) * dim]);
        let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
        dot / (x.iter().map(|p| p * p).sum::<f32>().sqrt() * y.iter().map(|q| q * q).sum::<f32>().sqrt())
    }

    /// Two topics whose words never share a text: words of one topic end up closer to each other than to
    /// the other topic's words, which a random start does not give.
    #[test]
    fn words_sharing_contexts_get_similar_vectors() {
        let mut rng = Rng::new(7);
        let texts: Vec<Vec<u32>> = (0..400)
            .map(|i| {
                let base = if i % 2 == 0 { 0 } else { 5 };
                (0..12).map(|_| base + (rng.next_u64() % 5) as u32).collect()
            })
            .collect();
        let dim = 16;
        let o = SkipGram { sample: 0.0, ..SkipGram::default() };
        let v = o.train(&texts, 10, dim, 0);
        for (a, b, c) in [(0, 1, 5), (2, 4, 7), (6, 9, 3), (5, 8, 0)] {
            let (same, other) = (cosine(&v, a, b, dim), cosine(&v, a, c, dim));
            assert!(same > 0.5 && other < same - 0.5, "words {a},{b}: {same}; {a},{c}: {other}");
        }
        assert_eq!(v, o.train(&texts, 10, dim, 0), "the same seed gives the same vectors");
    }

    #[test]
    fn noise_words_are_drawn_in_proportion_to_their_weight() {
        let weight = [1.0, 0.0, 3.0, 6.0, 0.5];
        let alias = Alias::new(&weight);
        let mut rng = Rng::new(1);
        let mut seen = [0usize; 5];
        let n = 200_000;
        for _ in 0..n {
            seen[alias.sample(&mut rng)] += 1;
        }
        for (i, (&s, w)) in seen.iter().zip(weight).enumerate() {
            let (got, want) = (s as f64 / n as f64, w / 10.5);
            assert!((got - want).abs() < 0.005, "word {i}: {got} vs {want}");
        }
    }

    #[test]
    fn bad_settings_name_the_key() {
        let e = SkipGram { window: 0, ..SkipGram::default() }.validate("data.prepare.text.pretrain").unwrap_err();
        assert!(e.to_string().contains("data.prepare.text.pretrain.window must be at least 1"), "{e}");
        let e = SkipGram { sample: -1.0, ..SkipGram::default() }.validate("p").unwrap_err();
        assert!(e.to_string().contains("p.sample must be a number >= 0"), "{e}");
    }
}
