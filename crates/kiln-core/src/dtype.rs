//! The element types a kiln buffer can hold.
//!
//! - `F32`, `F64`: computed as stored; f32 is the training precision.
//! - `BF16`, `F16`: stored halves; kernels convert them to f32, compute in f32, and round the result back
//!   (see [`crate::quant::to_f32`] / [`crate::quant::from_f32`]).
//! - `Q8_0`, `Q4_0`, `Q4_1`: GGML/GGUF block-quantized weights, 32 elements per block (layouts in
//!   [`crate::quant`]). They hold weights only and are never trainable: there is no gradient of a rounding.

use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    BF16,
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
}

impl DType {
    pub const ALL: [DType; 7] =
        [DType::F32, DType::F64, DType::BF16, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_1];

    /// The lower-case name used in configs, file metadata and messages ("f32", "q8_0", ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
        }
    }

    /// Block-quantized (weights only, never trainable).
    pub fn is_quantized(self) -> bool {
        matches!(self, DType::Q8_0 | DType::Q4_0 | DType::Q4_1)
    }

    /// Elements per storage unit: 32 for the block-quantized types, 1 otherwise.
    pub fn block_size(self) -> usize {
        if self.is_quantized() { 32 } else { 1 }
    }

    /// Bytes per storage unit (one element, or one block of 32 for the quantized types).
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
            DType::BF16 | DType::F16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
        }
    }

    /// Bytes that `numel` elements take; an error if a quantized type is given a partial block.
    pub fn bytes_for(self, numel: usize) -> Result<usize> {
        let bs = self.block_size();
        if !numel.is_multiple_of(bs) {
            return Err(Error::Invalid(format!(
                "{} elements cannot be stored as {}: it needs a multiple of its block size {bs}",
                numel,
                self.name()
            )));
        }
        (numel / bs)
            .checked_mul(self.block_bytes())
            .ok_or_else(|| Error::Invalid(format!("{numel} elements of {} overflow the addressable size", self.name())))
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = Error;

    /// Parses a name as [`DType::name`] writes it, ignoring case ("F16" and "f16" both work).
    fn from_str(s: &str) -> Result<DType> {
        let lower = s.trim().to_ascii_lowercase();
        DType::ALL.into_iter().find(|d| d.name() == lower).ok_or_else(|| {
            let names: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
            Error::Invalid(format!("unknown dtype '{s}': expected one of {}", names.join(", ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
            assert_eq!(d.to_string(), d.name());
        }
        assert_eq!("Q4_1".parse::<DType>().unwrap(), DType::Q4_1);
        let err = "q5_0".parse::<DType>().unwrap_err().to_string();
        assert!(err.contains("'q5_0'") && err.contains("f32, f64, bf16, f16, q8_0, q4_0, q4_1"), "{err}");
    }

    #[test]
    fn sizes() {
        let bytes: Vec<usize> = DType::ALL.iter().map(|d| d.block_bytes()).collect();
        assert_eq!(bytes, [4, 8, 2, 2, 34, 18, 20]);
        assert_eq!(DType::F16.bytes_for(3).unwrap(), 6);
        assert_eq!(DType::Q8_0.bytes_for(64).unwrap(), 68);
        assert_eq!(DType::Q4_0.bytes_for(96).unwrap(), 54);
        assert_eq!(DType::Q4_1.bytes_for(0).unwrap(), 0);
        assert!(!DType::BF16.is_quantized() && DType::Q4_0.is_quantized());
        let err = DType::Q4_1.bytes_for(33).unwrap_err().to_string();
        assert!(err.contains("33") && err.contains("32") && err.contains("q4_1"), "{err}");
    }
}
