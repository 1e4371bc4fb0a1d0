//! Saved models carry a format version: files of the version before graph models (`kiln-sequential-1`:
//! one input shape and a chain of layers) still load, under the same parameter names, and give the same
//! predictions; an unknown version is one line saying what this kiln reads.

use kiln::prelude::*;
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;
use std::collections::HashMap;

/// The file at `path` rewritten with `meta` as its metadata (tensors unchanged).
fn with_metadata(path: &std::path::Path, meta: HashMap<String, String>) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<(String, TensorView)> = st.tensors().into_iter().collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

#[test]
fn a_format_1_model_loads_and_predicts_as_saved() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Sequential::new(&[6, 6, 1]).seed(3);
    m.add(Conv2D::new(2, 3).activation(Activation::Relu)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(3).activation(Activation::Softmax)).unwrap();
    m.compile(Adam::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    let new = dir.path().join("new.safetensors");
    m.save(&new).unwrap();

    // What kiln wrote before graph models: the same tensors, the architecture as a chain.
    let layers: Vec<serde_json::Value> = m.layers().iter().map(|l| serde_json::to_value(l.config()).unwrap()).collect();
    let spec = serde_json::json!({
        "name": "sequential",
        "input_shape": [6, 6, 1],
        "layers": layers,
        "compile": m.compile_config(),
    });
    let old = dir.path().join("old.safetensors");
    let meta = HashMap::from([
        ("kiln.format".to_string(), "kiln-sequential-1".to_string()),
        ("kiln.model".to_string(), spec.to_string()),
    ]);
    std::fs::write(&old, with_metadata(&new, meta)).unwrap();

    let loaded = Sequential::load(&old).unwrap();
    assert_eq!(loaded.summary(), m.summary());
    let x = Tensor::new(&[4, 6, 6, 1], (0..144).map(|i| (i % 7) as f32 / 7.0).collect()).unwrap();
    assert_eq!(loaded.predict(&x, 4).unwrap().data(), m.predict(&x, 4).unwrap().data());
    // Saved again, it is a current file.
    loaded.save(&old).unwrap();
    let bytes = std::fs::read(&old).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["kiln.format"], "kiln-model-2");

    let meta = HashMap::from([("kiln.format".to_string(), "kiln-model-9".to_string())]);
    let future = dir.path().join("future.safetensors");
    std::fs::write(&future, with_metadata(&new, meta)).unwrap();
    let e = Sequential::load(&future).err().unwrap().to_string();
    assert!(e.contains("unsupported format `kiln-model-9`") && e.contains("kiln-model-2"), "{e}");
}
