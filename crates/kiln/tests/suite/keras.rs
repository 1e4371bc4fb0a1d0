//! Keras models in and out: small models Keras saved both ways (legacy .h5 and Keras 3's .keras; made by
//! tools/make_keras_fixtures.py with random weights) open in kiln and predict what Keras predicted, within
//! 1e-5, and what kiln cannot import is refused with the layer named. Needs the `keras` feature (libhdf5);
//! CI enables it.

#[cfg(feature = "keras")]
mod with_hdf5 {
    use kiln::keras::h5;
    use kiln::prelude::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras").join(name)
    }

    fn tensors(v: &serde_json::Value) -> Vec<Tensor> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let shape: Vec<usize> =
                    t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                let data: Vec<f32> = t["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
                Tensor::new(&shape, data).unwrap()
            })
            .collect()
    }

    #[test]
    fn keras_models_in_both_formats_predict_what_keras_predicted() {
        // The last is a functional model: two inputs, Add, Multiply, Dot, Concatenate, two outputs.
        for name in ["cnn", "text", "bidir", "rnn", "functional"] {
            let spec: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap()).unwrap();
            let (inputs, want) = (tensors(&spec["inputs"]), tensors(&spec["outputs"]));
            let refs: Vec<&Tensor> = inputs.iter().collect();
            for ext in ["h5", "keras"] {
                let path = fixture(&format!("{name}.{ext}"));
                let m = h5::load(&path).unwrap_or_else(|e| panic!("{name}.{ext}: {e}"));
                let got = m.predict_outputs(&refs, 16).unwrap();
                assert_eq!(got.len(), want.len(), "{name}.{ext}: outputs");
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.shape(), w.shape(), "{name}.{ext}");
                    let worst = g.data().iter().zip(w.data()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                    assert!(worst <= 1e-5, "{name}.{ext}: {worst:e} from Keras's outputs");
                }
            }
        }
    }

    #[test]
    fn a_keras_file_kiln_writes_reads_back_to_the_same_predictions() {
        // Keras itself loading these is checked by tools/check_keras.py (it needs Keras).
        let dir = tempfile::tempdir().unwrap();
        for name in ["cnn", "text", "bidir", "rnn"] {
            let spec: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap()).unwrap();
            let x = &tensors(&spec["inputs"])[0];
            let m = h5::load(&fixture(&format!("{name}.h5"))).unwrap();
            let out = dir.path().join(format!("{name}.keras"));
            h5::save_keras(&m, &out).unwrap();
            let back = h5::load(&out).unwrap();
            assert_eq!(back.summary(), m.summary(), "{name}");
            assert_eq!(back.predict(x, 16).unwrap().data(), m.predict(x, 16).unwrap().data(), "{name}");
        }
        // A layer Keras lacks, and a graph model, are refused with what to do instead.
        let graph = h5::load(&fixture("functional.keras")).unwrap();
        let e = h5::save_keras(&graph, &dir.path().join("g.keras")).unwrap_err().to_string();
        assert!(e.contains("Sequential") && e.contains("ONNX"), "{e}");
        let mut m = Sequential::new(&[4]);
        m.add(CategoryEmbedding::new(3, &[(5, 2)])).unwrap();
        let e = h5::save_keras(&m, &dir.path().join("c.keras")).unwrap_err().to_string();
        assert!(e.contains("category_embedding") && e.contains("ONNX"), "{e}");
        assert!(!dir.path().join("c.keras").exists());
    }

    #[test]
    fn what_kiln_cannot_import_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.h5");
        std::fs::write(&junk, b"not a model at all").unwrap();
        let e = h5::load(&junk).err().unwrap().to_string();
        assert!(e.contains("junk.h5") && e.contains("neither"), "{e}");
        let e = h5::load(&dir.path().join("missing.keras")).err().unwrap().to_string();
        assert!(e.contains("missing.keras"), "{e}");
    }
}

/// The config translation needs no HDF5: a layer kiln lacks is named, and so is a layer whose weights do
/// not fit.
#[test]
fn keras_configs_kiln_cannot_run_are_refused_by_layer() {
    let config = r#"{"class_name": "Sequential", "config": {"name": "m", "layers": [
            {"class_name": "InputLayer", "config": {"batch_shape": [null, 4], "name": "in"}},
            {"class_name": "Dense", "config": {"name": "d", "units": 2, "activation": "relu"}},
            {"class_name": "UnitNormalization", "config": {"name": "u"}}]}}"#;
    let config: serde_json::Value = serde_json::from_str(config).unwrap();
    let mut weights = |layer: &str| -> kiln::Result<Vec<kiln::keras::Weight>> {
        Ok(if layer == "d" { vec![(vec![4, 2], vec![0.0; 8]), (vec![2], vec![0.0; 2])] } else { vec![] })
    };
    let e = kiln::keras::model_from_config("m.h5", &config, &mut weights).err().unwrap().to_string();
    assert!(e.contains("m.h5") && e.contains("`u` (UnitNormalization)") && e.contains("no layer like it"), "{e}");
    let mut wrong = |_: &str| -> kiln::Result<Vec<kiln::keras::Weight>> { Ok(vec![(vec![3, 2], vec![0.0; 6])]) };
    let e = kiln::keras::model_from_config("m.h5", &config, &mut wrong).err().unwrap().to_string();
    assert!(e.contains("`d` (Dense)") && e.contains("weights"), "{e}");
}

#[cfg(not(feature = "keras"))]
#[test]
fn keras_import_is_not_built() {
    eprintln!("notice: Keras import tests skipped: kiln was built without the `keras` feature (libhdf5)");
}
