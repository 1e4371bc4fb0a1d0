//! Models in and out of other frameworks' formats. `kiln export MODEL --format onnx|keras|glove`: ONNX
//! (kiln::onnx) runs in onnxruntime, tract and the other runtimes; keras writes Keras 3's .keras; glove a
//! text model's word vectors (what `export-vectors` wrote before). `kiln import FILE`: a Keras .h5 or
//! .keras model as a kiln model file. The Keras formats need the `keras` feature (libhdf5).

use crate::table;
use kiln::Result;
use kiln::model::Sequential;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An ONNX graph (opset 17): inputs and outputs as `kiln predict` takes and gives them.
    Onnx,
    /// Keras 3's .keras (a Sequential model of layers Keras has).
    Keras,
    /// A text model's word vectors as GloVe text (a word, then its numbers, per line).
    Glove,
}

impl Format {
    const NAMES: [(&str, Format); 3] = [("onnx", Format::Onnx), ("keras", Format::Keras), ("glove", Format::Glove)];

    /// `--format`'s value, or one line naming the formats there are.
    fn parse(s: &str) -> Result<Format> {
        Self::NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)).map(|p| p.1).ok_or_else(|| {
            let names: Vec<&str> = Self::NAMES.iter().map(|p| p.0).collect();
            kiln::Error::Config(format!("--format {s}: kiln exports {}", names.join(", ")))
        })
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Onnx => "onnx",
            Format::Keras => "keras",
            Format::Glove => "vectors.txt",
        }
    }
}

pub fn export(model: &Path, format: &str, output: Option<&Path>) -> Result<()> {
    let format = Format::parse(format)?;
    // A run folder stands for its model.safetensors; the file written goes beside it by default.
    let model = crate::run_dir::model_file(model);
    let out = output.map_or_else(|| model.with_extension(format.extension()), Path::to_path_buf);
    crate::outputs::check_output("--output", &out, &[&model])?;
    match format {
        Format::Glove => table::export_vectors(&model, &out),
        Format::Keras => {
            keras_save(&Sequential::load(&model)?, &out)?;
            println!("wrote {} (Keras 3: keras.models.load_model)", out.display());
            Ok(())
        }
        Format::Onnx => {
            let m = Sequential::load(&model)?;
            m.save_onnx(&out).map_err(|e| match e {
                kiln::Error::Invalid(m) | kiln::Error::Config(m) => {
                    kiln::Error::Format { path: model.display().to_string(), message: m }
                }
                e => e,
            })?;
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

/// `kiln import FILE [--output]`: a Keras model file as a kiln model file.
pub fn import(file: &Path, output: Option<&Path>) -> Result<()> {
    let model = keras_load(file)?;
    let out = match output {
        Some(o) => o.to_path_buf(),
        None => {
            let out = file.with_extension("safetensors");
            if out.exists() {
                return Err(kiln::Error::Config(format!(
                    "{}: exists already; name the file to write with --output (it is then replaced)",
                    out.display()
                )));
            }
            out
        }
    };
    crate::outputs::check_output("--output", &out, &[file])?;
    model.save(&out)?;
    let (trainable, frozen) = model.param_counts();
    println!(
        "wrote {}: {} layers, {} parameters, input {:?}, from {}",
        out.display(),
        model.layers().len(),
        trainable + frozen,
        model.input_shape(),
        file.display()
    );
    Ok(())
}

#[cfg(feature = "keras")]
fn keras_load(file: &Path) -> Result<Sequential> {
    kiln::keras::h5::load(file)
}

#[cfg(feature = "keras")]
fn keras_save(model: &Sequential, out: &Path) -> Result<()> {
    kiln::keras::h5::save_keras(model, out)
}

#[cfg(not(feature = "keras"))]
fn no_keras(file: &Path) -> kiln::Error {
    kiln::Error::Config(format!(
        "{}: this kiln was built without Keras support; build it with `--features keras` (needs libhdf5: \
         apt-get install libhdf5-dev)",
        file.display()
    ))
}

#[cfg(not(feature = "keras"))]
fn keras_load(file: &Path) -> Result<Sequential> {
    Err(no_keras(file))
}

#[cfg(not(feature = "keras"))]
fn keras_save(_model: &Sequential, out: &Path) -> Result<()> {
    Err(no_keras(out))
}
