//! Keras's two files, read through libhdf5 (the `keras` feature):
//! - legacy HDF5 (`model.save('mnist_model.h5')`): the config as the root's `model_config` attribute, each
//!   layer's weights under `model_weights/{layer}`, in the order its `weight_names` attribute lists;
//! - Keras 3's `.keras`: a zip of config.json and model.weights.h5, where each layer's weights are
//!   `layers/{key}/vars/0..n` (nested layers, a recurrent cell or a Bidirectional's two directions, in
//!   groups below it), the layer's name in the `vars` group's `name` attribute.
//!
//! `save_keras` writes the second form from `super::to_keras`, for Keras 3's `keras.models.load_model`.

use super::{Weight, model_from_config, to_keras};
use crate::model::Model;
use hdf5::types::{VarLenAscii, VarLenUnicode};
use hdf5_metno as hdf5;
use kiln_core::{Error, Result};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

fn format_err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Format { path: path.display().to_string(), message: what.to_string() }
}

/// A Keras model file (.h5 or .keras, told apart by its first bytes) as a kiln model.
pub fn load(path: &Path) -> Result<Model> {
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, &e))?;
    let n = f.read(&mut head).map_err(|e| Error::io(path, &e))?;
    match &head[..n] {
        [b'P', b'K', 3, 4] => load_keras(path),
        [0x89, b'H', b'D', b'F'] => load_h5(path),
        _ => Err(format_err(path, "neither a Keras .h5 (HDF5) file nor a .keras (zip) file")),
    }
}

/// A string attribute, however h5py wrote it.
fn str_attr(loc: &hdf5::Location, name: &str) -> hdf5::Result<String> {
    let a = loc.attr(name)?;
    if let Ok(s) = a.read_scalar::<VarLenUnicode>() {
        return Ok(s.as_str().to_string());
    }
    Ok(a.read_scalar::<VarLenAscii>()?.as_str().to_string())
}

fn str_list(loc: &hdf5::Location, name: &str) -> hdf5::Result<Vec<String>> {
    let a = loc.attr(name)?;
    if a.size() == 0 {
        return Ok(Vec::new());
    }
    if let Ok(v) = a.read_raw::<VarLenUnicode>() {
        return Ok(v.iter().map(|s| s.as_str().to_string()).collect());
    }
    Ok(a.read_raw::<VarLenAscii>()?.iter().map(|s| s.as_str().to_string()).collect())
}

fn weight(ds: &hdf5::Dataset) -> hdf5::Result<Weight> {
    Ok((ds.shape(), ds.read_raw::<f32>()?))
}

fn load_h5(path: &Path) -> Result<Model> {
    let err = |e: hdf5::Error| format_err(path, e);
    let file = hdf5::File::open(path).map_err(err)?;
    let config = str_attr(&file, "model_config")
        .map_err(|_| format_err(path, "no `model_config`: a weights-only file (save_weights), not a whole model"))?;
    let config: serde_json::Value =
        serde_json::from_str(&config).map_err(|e| format_err(path, format!("model_config: {e}")))?;
    // Keras 2 put the layers' groups at the root; Keras 3 and tf.keras under model_weights.
    let root = file.group("model_weights").unwrap_or_else(|_| file.group("/").expect("the root group"));
    let mut weights = |layer: &str| -> Result<Vec<Weight>> {
        let Ok(g) = root.group(layer) else { return Ok(Vec::new()) };
        let names = str_list(&g, "weight_names").map_err(err)?;
        names.iter().map(|n| g.dataset(n).and_then(|d| weight(&d)).map_err(err)).collect()
    };
    model_from_config(&path.display().to_string(), &config, &mut weights)
}

/// Every weight of a .keras layer group: its own `vars/0..n`, then its nested layers' (the cell, then the
/// forward and the backward layer of a Bidirectional), depth first.
fn keras_vars(g: &hdf5::Group, out: &mut Vec<Weight>) -> hdf5::Result<()> {
    if let Ok(vars) = g.group("vars") {
        let mut names = vars.member_names()?;
        names.sort_by_key(|n| n.parse::<usize>().unwrap_or(usize::MAX));
        for n in names {
            out.push(weight(&vars.dataset(&n)?)?);
        }
    }
    let mut children: Vec<String> = g.member_names()?.into_iter().filter(|n| n != "vars").collect();
    let rank = |n: &str| ["cell", "forward_layer", "backward_layer"].iter().position(|k| *k == n).unwrap_or(3);
    children.sort_by(|a, b| (rank(a), a).cmp(&(rank(b), b)));
    for c in children {
        if let Ok(sub) = g.group(&c) {
            keras_vars(&sub, out)?;
        }
    }
    Ok(())
}

fn load_keras(path: &Path) -> Result<Model> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, &e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format_err(path, e))?;
    let mut read = |name: &str| -> Result<Vec<u8>> {
        let mut entry = zip.by_name(name).map_err(|_| format_err(path, format!("no {name} in the archive")))?;
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| format_err(path, e))?;
        Ok(bytes)
    };
    let config: serde_json::Value =
        serde_json::from_slice(&read("config.json")?).map_err(|e| format_err(path, format!("config.json: {e}")))?;
    let h5 = read("model.weights.h5")?;
    // libhdf5 reads files: the weights go to a temporary one, removed when done.
    let tmp = tempfile_path(path);
    std::fs::write(&tmp, &h5).map_err(|e| Error::io(&tmp, &e))?;
    let result = (|| {
        let err = |e: hdf5::Error| format_err(path, format!("model.weights.h5: {e}"));
        let file = hdf5::File::open(&tmp).map_err(err)?;
        let mut groups: HashMap<String, hdf5::Group> = HashMap::new();
        if let Ok(layers) = file.group("layers") {
            for key in layers.member_names().map_err(err)? {
                let g = layers.group(&key).map_err(err)?;
                let name = g.group("vars").ok().and_then(|v| str_attr(&v, "name").ok()).unwrap_or(key);
                groups.insert(name, g);
            }
        }
        let mut weights = |layer: &str| -> Result<Vec<Weight>> {
            let mut out = Vec::new();
            if let Some(g) = groups.get(layer) {
                keras_vars(g, &mut out).map_err(err)?;
            }
            Ok(out)
        };
        model_from_config(&path.display().to_string(), &config, &mut weights)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

fn tempfile_path(path: &Path) -> std::path::PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    std::env::temp_dir().join(format!(
        "kiln-{stem}-{}-{:?}.weights.h5",
        std::process::id(),
        std::thread::current().id()
    ))
}

fn name_attr(g: &hdf5::Group, name: &str) -> hdf5::Result<()> {
    let v: VarLenUnicode = name.parse().map_err(|e| hdf5::Error::from(format!("{e:?}")))?;
    g.new_attr::<VarLenUnicode>().create("name")?.write_scalar(&v)
}

/// `model` as a Keras 3 .keras file (a zip of metadata.json, config.json and model.weights.h5), written
/// atomically. Layers Keras lacks, or a graph model, are an error naming them (ONNX export takes those).
pub fn save_keras(model: &Model, path: &Path) -> Result<()> {
    let export = to_keras(model)?;
    let tmp = tempfile_path(path);
    let written = (|| -> hdf5::Result<()> {
        let f = hdf5::File::create(&tmp)?;
        let layers = f.create_group("layers")?;
        for l in &export.layers {
            let g = layers.create_group(&l.key)?;
            name_attr(&g.create_group("vars")?, &l.name)?;
            for (sub, weights) in &l.vars {
                let mut target = g.clone();
                for part in sub.split('/').filter(|p| !p.is_empty()) {
                    target = match target.group(part) {
                        Ok(t) => t,
                        Err(_) => {
                            let t = target.create_group(part)?;
                            name_attr(&t.create_group("vars")?, part)?;
                            t
                        }
                    };
                }
                let vars = target.group("vars")?;
                for (i, (shape, data)) in weights.iter().enumerate() {
                    vars.new_dataset::<f32>().shape(shape.clone()).create(i.to_string().as_str())?.write_raw(data)?;
                }
            }
        }
        name_attr(&f.create_group("vars")?, &model.name)?;
        Ok(())
    })();
    let h5 =
        written.map_err(|e| format_err(path, e)).and_then(|_| std::fs::read(&tmp).map_err(|e| Error::io(&tmp, &e)));
    let _ = std::fs::remove_file(&tmp);
    let h5 = h5?;
    let metadata = serde_json::json!({"keras_version": "3.15.1", "date_saved": "", "producer": "kiln"});
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in [
        ("metadata.json", metadata.to_string().into_bytes()),
        ("config.json", export.config.to_string().into_bytes()),
        ("model.weights.h5", h5),
    ] {
        zip.start_file(name, opts).map_err(|e| format_err(path, e))?;
        zip.write_all(&bytes).map_err(|e| Error::io(path, &e))?;
    }
    let bytes = zip.finish().map_err(|e| format_err(path, e))?.into_inner();
    crate::io::write_atomic(path, &bytes)
}
