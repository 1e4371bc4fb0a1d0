//! Class weights (Keras's `class_weight`): "balanced" or a weight per class, checked with a message that
//! says what is expected.

use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Class weights: `"balanced"`, or a weight per class (by index here; by class name in table configs),
/// classes not listed weighing 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged, try_from = "RawClassWeight")]
pub enum ClassWeight {
    Rule(WeightRule),
    PerClass(std::collections::BTreeMap<String, f32>),
}

/// What a config may hold for `class_weight`, read before checking it, so a wrong value gets a message
/// saying what is expected.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawClassWeight {
    Text(String),
    PerClass(std::collections::BTreeMap<String, f32>),
    Other(serde::de::IgnoredAny),
}

impl TryFrom<RawClassWeight> for ClassWeight {
    type Error = String;
    fn try_from(raw: RawClassWeight) -> std::result::Result<Self, String> {
        const EXPECTED: &str = "expected \"balanced\" or a weight per class, e.g. { 0 = 1.0, 1 = 5.0 }";
        match raw {
            RawClassWeight::Text(t) if t == "balanced" => Ok(ClassWeight::balanced()),
            RawClassWeight::Text(t) => Err(format!("class_weight `{t}`: {EXPECTED}")),
            RawClassWeight::PerClass(m) => Ok(ClassWeight::PerClass(m)),
            RawClassWeight::Other(_) => Err(format!("class_weight: {EXPECTED}")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightRule {
    /// See `balanced_class_weights`.
    Balanced,
}

impl ClassWeight {
    pub fn balanced() -> Self {
        ClassWeight::Rule(WeightRule::Balanced)
    }

    /// Weights by class index, e.g. `[(0, 4.0)]`.
    pub fn per_class(w: &[(usize, f32)]) -> Self {
        ClassWeight::PerClass(w.iter().map(|(c, v)| (c.to_string(), *v)).collect())
    }

    /// One weight per class, for samples of classes `classes` (indices below `n`).
    pub fn resolve(&self, classes: &[usize], n: usize) -> Result<Vec<f32>> {
        match self {
            ClassWeight::Rule(WeightRule::Balanced) => Ok(balanced_class_weights(classes, n)),
            ClassWeight::PerClass(m) => {
                let mut w = vec![1.0; n];
                for (k, &v) in m {
                    let c =
                        k.parse::<usize>().ok().filter(|&c| c < n).ok_or_else(|| {
                            Error::Config(format!("class_weight: `{k}` is not a class index in 0..{n}"))
                        })?;
                    if !v.is_finite() || v < 0.0 {
                        return Err(Error::Config(format!("class_weight: {v} for class {k} is not a weight >= 0")));
                    }
                    w[c] = v;
                }
                Ok(w)
            }
        }
    }
}

/// Keras's and scikit-learn's "balanced" class weights: samples / (classes × samples of the class), so that
/// every class weighs as much in the loss as it would with the classes even. A class with no samples gets 1.
pub fn balanced_class_weights(classes: &[usize], n_classes: usize) -> Vec<f32> {
    let mut count = vec![0usize; n_classes];
    for &c in classes {
        count[c] += 1;
    }
    count.iter().map(|&k| if k == 0 { 1.0 } else { classes.len() as f32 / (n_classes as f32 * k as f32) }).collect()
}
