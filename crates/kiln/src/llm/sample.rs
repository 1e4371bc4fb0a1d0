//! Choosing the next token from the logits, in llama.cpp's order: the repetition penalty on tokens of the
//! recent context (a positive logit divided by it, a negative one multiplied: CTRL, Keskar et al. 2019),
//! then greedy when the temperature is 0, else top-k, top-p (the smallest set of most likely tokens whose
//! probabilities reach p), the temperature, and a draw from a seeded generator, so a seed gives the same
//! text every time.

use crate::{Error, Result};
use kiln_core::Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplerSettings {
    /// 0: always the most likely token (greedy).
    pub temperature: f32,
    /// Keep the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the most likely tokens whose probabilities sum to p (1: all).
    pub top_p: f32,
    /// 1: none.
    pub repeat_penalty: f32,
    /// How many of the latest tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerSettings {
    /// llama.cpp's defaults, but a temperature of 0.7 and a fixed seed.
    fn default() -> Self {
        SamplerSettings { temperature: 0.7, top_k: 40, top_p: 0.9, repeat_penalty: 1.1, repeat_last_n: 64, seed: 0 }
    }
}

impl SamplerSettings {
    pub fn greedy() -> Self {
        SamplerSettings { temperature: 0.0, repeat_penalty: 1.0, ..Default::default() }
    }

    /// Each setting in its range, or the error naming it by its command-line flag.
    pub fn check(&self) -> Result<()> {
        match self.out_of_range() {
            Some(o) => Err(Error::Config(format!("{} {}: want {}", o.flag, o.value, o.want))),
            None => Ok(()),
        }
    }

    /// The first setting out of its range, named both ways (the command line's flag, a chat request's
    /// field), with its value and what it takes; None when all are in range.
    pub fn out_of_range(&self) -> Option<OutOfRange> {
        let o = |flag, field, value, want| Some(OutOfRange { flag, field, value, want });
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return o("--temperature", "temperature", self.temperature, "0 (greedy) or more");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return o("--top-p", "top_p", self.top_p, "more than 0, at most 1");
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return o("--repeat-penalty", "frequency_penalty", self.repeat_penalty, "more than 0 (1 for none)");
        }
        None
    }
}

/// A sampling setting out of its range (`SamplerSettings::out_of_range`).
pub struct OutOfRange {
    pub flag: &'static str,
    pub field: &'static str,
    pub value: f32,
    pub want: &'static str,
}

pub struct Sampler {
    pub settings: SamplerSettings,
    rng: Rng,
}

impl Sampler {
    pub fn new(settings: SamplerSettings) -> Sampler {
        let rng = Rng::new(settings.seed);
        Sampler { settings, rng }
    }

    /// The next token after `history` (the tokens so far) from `logits` (changed in place).
    pub fn next(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let s = &self.settings;
        if s.repeat_penalty != 1.0 {
            let recent = &history[history.len().saturating_sub(s.repeat_last_n)..];
            let mut seen = std::collections::HashSet::new();
            for &t in recent {
                if let Some(l) = logits.get_mut(t as usize)
                    && seen.insert(t)
                {
                    *l = if *l > 0.0 { *l / s.repeat_penalty } else { *l * s.repeat_penalty };
                }
            }
        }
        let best = || {
            let mut b = 0;
            for (i, &l) in logits.iter().enumerate() {
                if l > logits[b] {
                    b = i;
                }
            }
            b as u32
        };
        if s.temperature == 0.0 {
            return best();
        }
        // Candidates, most likely first; NaN logits never chosen.
        let mut cand: Vec<(u32, f32)> =
            logits.iter().enumerate().filter(|(_, l)| !l.is_nan()).map(|(i, &l)| (i as u32, l)).collect();
        if cand.is_empty() {
            return 0;
        }
        let k = if s.top_k == 0 { cand.len() } else { s.top_k.min(cand.len()) };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            cand.truncate(k);
        }
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        // Probabilities at temperature 1 for top-p (as llama.cpp), then the temperature on what is kept.
        let max = cand[0].1;
        let mut p: Vec<f64> = cand.iter().map(|c| ((c.1 - max) as f64).exp()).collect();
        let total: f64 = p.iter().sum();
        let mut keep = p.len();
        if s.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, q) in p.iter().enumerate() {
                acc += q / total;
                if acc >= s.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        cand.truncate(keep);
        p = cand.iter().map(|c| (((c.1 - max) / s.temperature) as f64).exp()).collect();
        let total: f64 = p.iter().sum();
        let mut r = self.rng.uniform() * total;
        for (c, q) in cand.iter().zip(&p) {
            if r < *q {
                return c.0;
            }
            r -= q;
        }
        cand[cand.len() - 1].0
    }
}
