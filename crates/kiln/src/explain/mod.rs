//! Why a model predicted what it did: attributions of one prediction to the values of its input (images),
//! a text's terms, or a table's columns, and dataset-wide permutation importance. Methods as Captum defines
//! them, checked against Captum and scikit-learn on committed fixtures (tools/make_explain_fixtures.py).
//!
//! - `probe`: the model as a function of one point (its inputs, or a layer's output in its place).
//! - `integrated`: saliency and integrated gradients; `occlusion`: sliding-window occlusion.
//! - `rows`: a table row's or a text's attributions mapped back to its columns and terms.
//! - `permutation`: permutation importance with confidence intervals.

pub mod integrated;
pub mod occlusion;
pub mod permutation;
pub mod probe;
pub mod rows;

pub use integrated::{Rule, integrated_gradients, saliency};
pub use occlusion::occlusion;
pub use permutation::{Importance, Scoring, table_importance};
pub use probe::Probe;
pub use rows::{ColumnAttribution, RowExplanation, TermAttribution, explain_row};

/// Where attributions are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// The model's inputs, every input's values of one sample side by side.
    Inputs,
    /// The output of layer `l` (by index in `Model::layers`), the inputs held at the sample: Captum's layer
    /// attributions, for inputs that are ids (a text's term vectors, a category's embedding).
    Layer(usize),
}

/// The number explained: column `column` of output `output`; with `negate` a sigmoid's other class (1 − p,
/// or the logit −z, whose attributions are p's negated); before the output's softmax or sigmoid with
/// `logits`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub output: usize,
    pub column: usize,
    pub negate: bool,
    pub logits: bool,
}

impl Target {
    pub fn class(column: usize) -> Target {
        Target { column, ..Default::default() }
    }
}

/// One attribution per value of the explained point, with the explained output there and (integrated
/// gradients) at the baseline.
#[derive(Clone, Debug)]
pub struct Attribution {
    pub values: Vec<f32>,
    pub output: f32,
    pub baseline_output: Option<f32>,
}

impl Attribution {
    /// Completeness' error: Σ attributions − (f(x) − f(baseline)); None without a baseline.
    pub fn delta(&self) -> Option<f32> {
        let sum: f64 = self.values.iter().map(|&v| v as f64).sum();
        self.baseline_output.map(|b| (sum - (self.output as f64 - b as f64)) as f32)
    }
}
