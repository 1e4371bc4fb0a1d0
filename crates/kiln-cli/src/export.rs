//! `kiln export MODEL --format onnx|keras|glove`: a trained model in another framework's format. ONNX
//! (kiln::onnx) runs in onnxruntime, tract and the other runtimes; glove writes a text model's word vectors
//! (what `export-vectors` wrote before).

use crate::table;
use kiln::Result;
use kiln::model::Sequential;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An ONNX graph (opset 17): inputs and outputs as `kiln predict` takes and gives them.
    Onnx,
    /// A text model's word vectors as GloVe text (a word, then its numbers, per line).
    Glove,
}

impl Format {
    const NAMES: [(&str, Format); 2] = [("onnx", Format::Onnx), ("glove", Format::Glove)];

    /// `--format`'s value, or one line naming the formats there are.
    fn parse(s: &str) -> Result<Format> {
        Self::NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)).map(|p| p.1).ok_or_else(|| {
            let names: Vec<&str> = Self::NAMES.iter().map(|p| p.0).collect();
            kiln::Error::Config(format!("--format {s}: kiln exports {}", names.join(" or ")))
        })
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Onnx => "onnx",
            Format::Glove => "vectors.txt",
        }
    }
}

pub fn export(model: &Path, format: &str, output: Option<&Path>) -> Result<()> {
    let format = Format::parse(format)?;
    // A run folder stands for its model.safetensors; the file written goes beside it by default.
    let model: PathBuf = if model.is_dir() { model.join("model.safetensors") } else { model.to_path_buf() };
    let out = output.map_or_else(|| model.with_extension(format.extension()), Path::to_path_buf);
    match format {
        Format::Glove => table::export_vectors(&model, &out),
        Format::Onnx => {
            let m = Sequential::load(&model)?;
            m.save_onnx(&out)?;
            let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            println!(
                "wrote {} ({:.1} MiB): inputs {}, outputs {}",
                out.display(),
                bytes as f64 / (1024.0 * 1024.0),
                m.inputs().iter().map(|i| format!("{} {:?}", i.name, i.shape)).collect::<Vec<_>>().join(", "),
                m.outputs().join(", ")
            );
            if m.preparation().is_some() {
                println!("the table/text preparation is in the file's metadata (kiln.preparation), to apply before it");
            }
            Ok(())
        }
    }
}
