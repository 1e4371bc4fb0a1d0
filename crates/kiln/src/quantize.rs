//! `Model::quantize`: the Dense kernels of a trained model stored block-quantized (GGUF's Q8_0, Q4_0,
//! Q4_1) or as halves (f16, bf16) for inference, about 3.8x (Q8_0) to 6.4x (Q4_0) and 2x (halves) smaller
//! than f32. The product dequantizes 32 weights
//! at a time (kiln-core's quant.rs); a quantized model predicts and evaluates, and refuses to train or to be
//! saved (saving quantized weights comes with GGUF files).

use crate::model::Model;
use crate::nn::LayerConfig;
use kiln_core::{DType, Error, Result};

/// What `Model::quantize` did: the kernels it quantized, and those it kept in f32 with the reason.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantizeReport {
    pub quantized: Vec<String>,
    pub kept: Vec<(String, String)>,
}

impl Model {
    /// Quantizes every Dense kernel whose input width is a multiple of 32 (GGUF's block size) as `dtype`.
    pub fn quantize(&mut self, dtype: DType) -> Result<QuantizeReport> {
        if !kiln_core::quant::QMatrix::holds(dtype) {
            return Err(Error::Config(format!(
                "quantize: Dense kernels are stored as q8_0, q4_0, q4_1, f16 or bf16, not {dtype}"
            )));
        }
        let mut report = QuantizeReport::default();
        let kernels: Vec<_> = self
            .layers()
            .iter()
            .filter(|l| matches!(l.config(), LayerConfig::Dense(_)))
            .filter_map(|l| l.param("kernel").map(|p| (p, l.input_shape()[0])))
            .collect();
        for (p, n_in) in kernels {
            let name = self.graph.param(p).name.clone();
            if self.graph.param(p).quant.is_some() {
                report.kept.push((name, "quantized already".into()));
            } else if !n_in.is_multiple_of(32) {
                report.kept.push((name, format!("its {n_in} inputs are not a multiple of 32")));
            } else {
                self.graph.quantize_param(p, dtype)?;
                report.quantized.push(name);
            }
        }
        if report.quantized.is_empty() {
            let why: Vec<String> = report.kept.iter().map(|(n, r)| format!("`{n}`: {r}")).collect();
            return Err(Error::Config(format!(
                "quantize: no Dense kernel could be quantized{}",
                if why.is_empty() { " (the model has none)".to_string() } else { format!(" ({})", why.join("; ")) }
            )));
        }
        Ok(report)
    }

    /// The first quantized parameter, if any.
    pub(crate) fn quantized_param(&self) -> Option<(&str, DType)> {
        self.graph.params().iter().find(|p| p.quant.is_some()).map(|p| (p.name.as_str(), p.dtype()))
    }
}
