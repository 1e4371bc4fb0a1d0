//! Weights by name from a safetensors file PyTorch wrote (tools/make_torch_weights_fixture.py): the
//! loaded kiln model gives PyTorch's outputs; a wrong map is one error naming both sides, and changes nothing.

use kiln::model::Model;
use kiln::nn::Concatenate;
use kiln::prelude::*;
use kiln::weights::{NameMap, Transform, WeightFile};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_weights").join(name)
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<f32>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            x => out.push(x.as_f64().unwrap() as f32),
        }
    }
    walk(v, &mut out);
    out
}

/// The kiln twin of the fixture's PyTorch `Net`, layer names as its modules.
fn twin(eps: f64) -> Model {
    twin_from(eps, None, "")
}

/// `twin`, its parameters taken from `source` as the layers are built when one is given, its layers named
/// `prefix` + the module's name.
fn twin_from(eps: f64, source: Option<WeightFile>, prefix: &str) -> Model {
    let mut m = Model::with_inputs(&[("image", &[4, 4, 2]), ("id", &[1])]);
    if let Some(s) = source {
        m = m.weights_from(s);
    }
    m.apply(Conv2D::new(3, 3).name(&format!("{prefix}conv")), &["image"]).unwrap();
    m.add(BatchNormalization::new().epsilon(eps).name(&format!("{prefix}bn"))).unwrap();
    m.add(ActivationLayer::new(Activation::Relu)).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    let img = m.apply(Flatten::new(), &[]).unwrap();
    let e = m.apply(Embedding::new(10, 4).name(&format!("{prefix}emb")), &["id"]).unwrap();
    let e = m.apply(Flatten::new(), &[&e]).unwrap();
    m.apply(Concatenate::new(), &[&img, &e]).unwrap();
    m.add(Dense::new(5).activation(Activation::Relu).name(&format!("{prefix}fc1"))).unwrap();
    m.add(Dense::new(2).name(&format!("{prefix}fc2"))).unwrap();
    m
}

const MODULES: [(&str, &str); 5] = [("conv", "conv"), ("bn", "bn"), ("emb", "emb"), ("fc1", "fc1"), ("fc2", "fc2")];

#[test]
fn a_pytorch_state_dict_loads_by_name_and_gives_pytorchs_outputs() {
    let ex = expected();
    let n = ex["ids"].as_array().unwrap().len();
    let image = Tensor::new(&[n, 4, 4, 2], floats(&ex["image_nhwc"])).unwrap();
    let ids = Tensor::new(&[n, 1], floats(&ex["ids"])).unwrap();
    let want = floats(&ex["output"]);

    let mut m = twin(ex["bn_eps"].as_f64().unwrap());
    let fresh = m.predict(&[&image, &ids], 8).unwrap();
    let map = NameMap::pytorch(&m, &MODULES).unwrap();
    let unused = m.load_weights(fixture("model.safetensors"), &map).unwrap();
    assert_eq!(unused, ["bn.num_batches_tracked"], "the int64 counter is the only tensor left over");
    let got = m.predict(&[&image, &ids], 8).unwrap();
    assert_eq!(got.shape(), &[n, 2]);
    let worst = got.data().iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "largest difference from PyTorch {worst}: {:?} vs {want:?}", got.data());
    // Random weights are far from PyTorch's answer: the comparison above can fail.
    let off = fresh.data().iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(off > 1e-2, "{off}");
}

/// The builder path: the same file read while the model is built (`weights_from`, the way a fresh model
/// takes its initializers) gives the very model `load_weights` gives; the PyTorch map is decided per layer
/// as each is built.
#[test]
fn building_from_the_file_gives_the_model_loading_into_it_gives() {
    let ex = expected();
    let n = ex["ids"].as_array().unwrap().len();
    let image = Tensor::new(&[n, 4, 4, 2], floats(&ex["image_nhwc"])).unwrap();
    let ids = Tensor::new(&[n, 1], floats(&ex["ids"])).unwrap();
    let eps = ex["bn_eps"].as_f64().unwrap();
    // kiln's layers named apart from PyTorch's modules (`k_conv` for `conv`): the map must join them.
    let modules: Vec<(&str, String)> = MODULES.iter().map(|(m, l)| (*m, format!("k_{l}"))).collect();
    let modules: Vec<(&str, &str)> = modules.iter().map(|(m, l)| (*m, l.as_str())).collect();
    let file = WeightFile::open(fixture("model.safetensors"), NameMap::new().pytorch_modules(&modules)).unwrap();
    let mut built = twin_from(eps, Some(file), "k_");
    let src = built.finish_weights().unwrap();
    assert!(src.missing().is_empty(), "{:?}", src.missing());
    let mut loaded = twin(eps);
    loaded.load_weights(fixture("model.safetensors"), &NameMap::pytorch(&loaded, &MODULES).unwrap()).unwrap();
    assert_eq!(built.get_weights(), loaded.get_weights());
    let got = built.predict(&[&image, &ids], 8).unwrap();
    let want = floats(&ex["output"]);
    let worst = got.data().iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "largest difference from PyTorch {worst}");
    // Without the map only the biases fit (PyTorch's `fc1.bias` is kiln's name too): the other eight
    // parameters keep their initializers' values, and the source says which it did not hold.
    let file = WeightFile::open(fixture("model.safetensors"), NameMap::new()).unwrap();
    let mut partial = twin_from(eps, Some(file), "");
    let missing = partial.finish_weights().unwrap().missing();
    assert!(missing.contains(&"`fc2.kernel`".to_string()) && missing.len() == 8, "{missing:?}");
    let fresh = twin(eps);
    let (p, f, l) = (partial.get_weights(), fresh.get_weights(), loaded.get_weights());
    let fc2 = p.len() - 2;
    assert_eq!((&p[fc2], &p[fc2 + 1]), (&f[fc2], &l[fc2 + 1]), "fc2: the initializer's kernel, the file's bias");
}

#[test]
fn a_wrong_map_is_one_error_naming_both_sides_and_changes_nothing() {
    let mut m = twin(1e-5);
    let before: Vec<Vec<f32>> = m.get_weights();
    let file = fixture("model.safetensors");

    let e = m.load_weights(&file, &NameMap::new()).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors")
            && e.contains("`conv.kernel`")
            && e.contains("`fc2.kernel`")
            && !e.contains("`fc2.bias`"),
        "{e}"
    );

    let map = NameMap::pytorch(&m, &MODULES).unwrap().rename("fc1.weight", "fc1.kernel", Transform::None);
    let e = m.load_weights(&file, &map).unwrap_err().to_string();
    assert!(e.contains("`fc1.kernel` wants [7, 5]") && e.contains("`fc1.weight` is [5, 7]"), "{e}");
    assert!(e.contains("add a transpose"), "{e}");

    let map = NameMap::pytorch(&m, &MODULES).unwrap().rename("conv.weight", "conv.kernel", Transform::None);
    let e = m.load_weights(&file, &map).unwrap_err().to_string();
    assert!(e.contains("`conv.kernel` wants [3, 3, 2, 3]") && e.contains("OihwToHwio"), "{e}");

    let e = NameMap::pytorch(&m, &[("fc3", "dense_9")]).unwrap_err().to_string();
    assert!(e.contains("no layer `dense_9`") && e.contains("fc1"), "{e}");
    let e = m.load_weights(fixture("expected.json"), &NameMap::new()).unwrap_err().to_string();
    assert!(e.contains("expected.json") && e.contains("not a safetensors file"), "{e}");
    assert_eq!(m.get_weights(), before, "a failed load leaves every weight as it was");
}
