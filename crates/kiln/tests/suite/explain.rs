//! `kiln::explain` against Captum and scikit-learn (fixtures from tools/make_explain_fixtures.py, models
//! built here with the fixture's weights), integrated gradients' completeness, and a table model's row
//! attributions and permutation importance mapped to its columns.

use kiln::explain::{self, At, Probe, Rule, Scoring, Target};
use kiln::prelude::*;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/explain/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}: value {i} is {g}, Captum's {w} (tolerance {tol})");
    }
}

fn cnn(f: &Value) -> Sequential {
    let mut m = Sequential::new(&[8, 8, 1]);
    m.add(Conv2D::new(4, 3).activation(Activation::Relu)).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(3).activation(Activation::Softmax)).unwrap();
    let w = ["conv_kernel", "conv_bias", "dense_kernel", "dense_bias"].map(|k| floats(&f[k]));
    m.set_weights(&w).unwrap();
    m
}

fn mlp(f: &Value) -> Sequential {
    let mut m = Sequential::new(&[5]);
    m.add(Dense::new(8).activation(Activation::Tanh)).unwrap();
    m.add(Dense::new(3).activation(Activation::Softmax)).unwrap();
    let w = ["hidden_kernel", "hidden_bias", "out_kernel", "out_bias"].map(|k| floats(&f[k]));
    m.set_weights(&w).unwrap();
    m
}

#[test]
fn cnn_attributions_equal_captums() {
    let f = &fixture("captum.json")["cnn"];
    let model = cnn(f);
    let images: Vec<Tensor> =
        f["images"].as_array().unwrap().iter().map(|i| Tensor::new(&[1, 8, 8, 1], floats(i)).unwrap()).collect();
    let cases = f["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 14);
    for case in cases {
        let image = &images[case["image"].as_u64().unwrap() as usize];
        let target = Target {
            column: case["target"].as_u64().unwrap() as usize,
            logits: case["logits"].as_bool().unwrap(),
            ..Default::default()
        };
        let probe = Probe::new(&model, &[image], At::Inputs, target).unwrap();
        let want = floats(&case["attributions"]);
        let method = case["method"].as_str().unwrap();
        let what = format!("{method} {case:.0}", case = case["image"]);
        let got = match method {
            "integrated_gradients" => {
                let rule = Rule::parse(case["rule"].as_str().unwrap()).unwrap();
                let steps = case["steps"].as_u64().unwrap() as usize;
                let a = explain::integrated_gradients(&probe, &[0.0; 64], steps, rule).unwrap();
                // Captum's delta is Σ attributions − (f(x) − f(b)), as ours.
                let delta = case["delta"].as_f64().unwrap() as f32;
                assert!((a.delta().unwrap() - delta).abs() < 1e-4, "{what}: delta {:?} vs {delta}", a.delta());
                a
            }
            "saliency" => explain::saliency(&probe, true).unwrap(),
            "occlusion" => {
                let sizes = |k: &str| -> Vec<usize> {
                    case[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
                };
                explain::occlusion(&probe, &sizes("window"), &sizes("strides"), 0.0).unwrap()
            }
            m => panic!("unknown method {m}"),
        };
        close(&format!("{what} target {} logits {}", target.column, target.logits), &got.values, &want, 1e-4);
        assert!(got.values.iter().any(|v| v.abs() > 1e-3), "{what}: attributions are not all near zero");
    }
}

#[test]
fn mlp_integrated_gradients_equal_captums_from_a_baseline() {
    let f = &fixture("captum.json")["mlp"];
    let model = mlp(f);
    let x = Tensor::new(&[1, 5], floats(&f["x"])).unwrap();
    let baseline = floats(&f["baseline"]);
    for case in f["cases"].as_array().unwrap() {
        let target = Target {
            column: case["target"].as_u64().unwrap() as usize,
            logits: case["logits"].as_bool().unwrap(),
            ..Default::default()
        };
        let probe = Probe::new(&model, &[&x], At::Inputs, target).unwrap();
        let a = explain::integrated_gradients(&probe, &baseline, 50, Rule::GaussLegendre).unwrap();
        close(&format!("mlp {target:?}"), &a.values, &floats(&case["attributions"]), 1e-4);
        // Completeness within 1% of f(x) − f(b) at the default steps.
        let gap = a.output - a.baseline_output.unwrap();
        assert!(a.delta().unwrap().abs() <= 0.01 * gap.abs().max(1e-3), "{target:?}: delta {:?}", a.delta());
    }
}

#[test]
fn permutation_importance_equals_scikit_learns() {
    let f = fixture("permutation.json");
    let mut model = Sequential::new(&[4]);
    model.add(Dense::new(6).activation(Activation::Relu)).unwrap();
    model.add(Dense::new(3).activation(Activation::Softmax)).unwrap();
    model.set_weights(&["w1", "b1", "w2", "b2"].map(|k| floats(&f[k]))).unwrap();
    let x = floats(&f["x"]);
    let y = floats(&f["y"]);
    let n = y.len();
    let orders: Vec<Vec<usize>> = f["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect())
        .collect();
    let task = kiln::data::prepare::Task::Multiclass { classes: vec!["0".into(), "1".into(), "2".into()] };
    for (name, want) in f["scorings"].as_object().unwrap() {
        let scoring = Scoring::parse(name).unwrap();
        let score = |x: &[f32]| {
            let p = model.predict(&Tensor::new(&[n, 4], x.to_vec()).unwrap(), 64).unwrap();
            scoring.score(&task, p.data(), &y).unwrap()
        };
        let baseline = score(&x);
        assert!((baseline - want["baseline"].as_f64().unwrap()).abs() < 1e-5, "{name}: baseline {baseline}");
        let shuffled: Vec<Vec<f64>> = (0..4)
            .map(|c| {
                orders
                    .iter()
                    .map(|o| {
                        let mut xp = x.clone();
                        for (r, &from) in o.iter().enumerate() {
                            xp[r * 4 + c] = x[from * 4 + c];
                        }
                        score(&xp)
                    })
                    .collect()
            })
            .collect();
        let names: Vec<String> = (0..4).map(|c| format!("x{c}")).collect();
        let imp = explain::permutation::importances(&names, baseline, &shuffled);
        for (c, i) in imp.iter().enumerate() {
            let w = floats(&want["importances"][c]);
            for (g, w) in i.importances.iter().zip(&w) {
                assert!((*g as f32 - w).abs() < 1e-5, "{name} column {c}: {:?} vs {w:?}", i.importances);
            }
            assert!((i.mean as f32 - want["mean"][c].as_f64().unwrap() as f32).abs() < 1e-5, "{name} mean {c}");
            assert!((i.std as f32 - want["std"][c].as_f64().unwrap() as f32).abs() < 1e-5, "{name} std {c}");
            assert!(i.low <= i.mean && i.mean <= i.high);
        }
        // The column the model barely reads matters least.
        assert!(imp[3].mean < imp[1].mean, "{name}: {imp:?}");
    }
}

/// A table whose label is set by `city` (a category) and `amount`, with a `noise` column it does not need.
fn table_csv(dir: &std::path::Path) -> std::path::PathBuf {
    let mut csv = String::from("city,amount,noise,label\n");
    let mut seed = 9u64;
    for _ in 0..2000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let city = (seed >> 33) % 6;
        let amount = ((seed >> 13) % 1000) as f64 / 10.0;
        let noise = ((seed >> 23) % 997) as f64 / 9.97;
        let label = if (city < 3) ^ (amount > 70.0) { "yes" } else { "no" };
        csv += &format!("c{city},{amount},{noise},{label}\n");
    }
    let path = dir.join("t.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

#[test]
fn table_rows_are_attributed_to_their_columns_and_importance_ranks_them() {
    use kiln::config::Config;
    use kiln::data::prepare::CategoryEncoding;
    use kiln::tabular;
    let tmp = tempfile::tempdir().unwrap();
    let path = table_csv(tmp.path());
    for encoding in [CategoryEncoding::OneHot, CategoryEncoding::Embedding] {
        let mut cfg = Config::for_table(&path, "label");
        cfg.data.prepare.categories = encoding;
        cfg.train.epochs = Some(30);
        let table = cfg.read_table().unwrap();
        let types = cfg.types(&table).unwrap();
        let (test, train) = tabular::split(&cfg, &table, &types).unwrap();
        let model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
        let first = model.layers()[0].config().class_name();
        assert_eq!(first == "CategoryEmbedding", encoding == CategoryEncoding::Embedding, "{first}");
        for &row in &test[..5] {
            for target in [Target::class(0), Target { negate: true, ..Target::class(0) }] {
                let e = explain::explain_row(&model, &table, row, target, 50, Rule::GaussLegendre).unwrap();
                let names: Vec<&str> = e.columns.iter().map(|c| c.column.as_str()).collect();
                assert_eq!(names.len(), 3, "{encoding:?}: one attribution per column, got {names:?}");
                for want in ["city", "amount", "noise"] {
                    assert!(names.contains(&want), "{encoding:?}: {names:?}");
                }
                // Completeness at the default steps: within 1% of f(x) − f(b) or, where the columns pull apart
                // and nearly cancel, of the attributions' size (ReLU kinks limit the quadrature); at 500 steps
                // within 1e-3 of the probability, so the gap is the quadrature's and not a lost term.
                let gap = e.output - e.baseline_output;
                let size: f32 = e.columns.iter().map(|c| c.attribution.abs()).sum();
                assert!(e.delta().abs() <= 0.01 * gap.abs().max(size), "{encoding:?} row {row}: {e:?}");
                if row == test[0] {
                    let fine = explain::explain_row(&model, &table, row, target, 500, Rule::GaussLegendre).unwrap();
                    assert!(fine.delta().abs() < 1e-3, "{encoding:?} row {row} at 500 steps: {fine:?}");
                }
                let city = e.columns.iter().find(|c| c.column == "city").unwrap();
                assert_eq!(city.value, table.column("city").unwrap().cells[row].clone().unwrap());
            }
        }
        // Importance: the two columns the label depends on matter, the noise next to nothing.
        let orders = explain::permutation::shuffles(test.len(), 3, 1);
        let sub = kiln::data::table::Table {
            source: "test rows".into(),
            columns: table
                .columns
                .iter()
                .map(|c| kiln::data::table::Column {
                    cells: test.iter().map(|&r| c.cells[r].clone()).collect(),
                    ..c.clone()
                })
                .collect(),
        };
        let (base, imp) = explain::table_importance(&model, &sub, Scoring::Accuracy, &orders).unwrap();
        assert!(base > 0.9, "{encoding:?}: accuracy {base}");
        let of = |n: &str| imp.iter().find(|i| i.column == n).unwrap().mean;
        assert!(of("city") > 0.1 && of("amount") > 0.1, "{encoding:?}: {imp:?}");
        assert!(of("noise") < 0.03, "{encoding:?}: {imp:?}");
    }
}

#[test]
fn wrong_requests_are_named() {
    let f = &fixture("captum.json")["mlp"];
    let model = mlp(f);
    let x = Tensor::new(&[1, 5], floats(&f["x"])).unwrap();
    let e = Probe::new(&model, &[&x], At::Inputs, Target::class(3)).err().unwrap().to_string();
    assert!(e.contains("class 3") && e.contains("0 to 2"), "{e}");
    let wide = Tensor::new(&[1, 6], vec![0.0; 6]).unwrap();
    let e = Probe::new(&model, &[&wide], At::Inputs, Target::class(0)).err().unwrap().to_string();
    assert!(e.contains("input `input`") && e.contains("[5]"), "{e}");
    let e = Probe::new(&model, &[&x], At::Layer(7), Target::class(0)).err().unwrap().to_string();
    assert!(e.contains("layer 7"), "{e}");
    let probe = Probe::new(&model, &[&x], At::Inputs, Target::class(0)).unwrap();
    let e = explain::integrated_gradients(&probe, &[0.0; 4], 50, Rule::GaussLegendre).err().unwrap().to_string();
    assert!(e.contains("baseline has 4 values"), "{e}");
    let e = explain::occlusion(&probe, &[2], &[3], 0.0).err().unwrap().to_string();
    assert!(e.contains("does not fit"), "{e}");
}

#[test]
fn texts_are_attributed_to_their_terms() {
    use kiln::config::{Config, ModelKind};
    use kiln::tabular;
    let tmp = tempfile::tempdir().unwrap();
    // "awful" makes a text negative; the other words say nothing.
    let mut csv = String::from("text,label\n");
    let fillers = ["the dress", "this shirt fits", "color and size", "ordered it in blue"];
    for i in 0..400 {
        let bad = i % 2 == 1;
        // Each filler with both labels (i / 2 runs through the fillers for odd and even i alike).
        let text = format!("{} {}", fillers[(i / 2) % 4], if bad { "awful" } else { "lovely" });
        csv += &format!("{text},{}\n", if bad { "neg" } else { "pos" });
    }
    std::fs::write(tmp.path().join("t.csv"), csv).unwrap();
    for kind in [None, Some(ModelKind::Gru)] {
        let mut cfg = Config::for_table(tmp.path().join("t.csv"), "label");
        cfg.data.columns.insert("text".into(), kiln::data::table::ColumnType::Text);
        cfg.data.prepare.text.ngrams = 1;
        cfg.data.prepare.text.min_freq = 1;
        cfg.data.prepare.text.length = 8;
        cfg.data.prepare.text.dim = 8;
        cfg.model.kind = kind;
        cfg.model.units = 8;
        cfg.train.epochs = Some(20);
        cfg.train.optimizer.set_learning_rate(0.01);
        let table = cfg.read_table().unwrap();
        let types = cfg.types(&table).unwrap();
        let (test, train) = tabular::split(&cfg, &table, &types).unwrap();
        let model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
        let row = *test.iter().find(|&&r| table.column("label").unwrap().cells[r].as_deref() == Some("neg")).unwrap();
        // The negative class of a sigmoid: 1 − p, where "awful" should lead.
        let target = Target { negate: true, ..Target::class(0) };
        let e = explain::explain_row(&model, &table, row, target, 50, Rule::GaussLegendre).unwrap();
        let (col, terms) = &e.terms[0];
        assert_eq!(col, "text");
        let text = table.column("text").unwrap().cells[row].clone().unwrap();
        assert_eq!(terms.len(), text.split(' ').count(), "{kind:?}: one attribution per term of `{text}`: {terms:?}");
        let top = terms.iter().max_by(|a, b| a.attribution.total_cmp(&b.attribution)).unwrap();
        assert_eq!(top.term, "awful", "{kind:?}: {terms:?}");
        let sum: f32 = terms.iter().map(|t| t.attribution).sum();
        assert!((sum - e.columns[0].attribution).abs() < 1e-4, "{kind:?}: the terms share the column's attribution");
        let gap = e.output - e.baseline_output;
        assert!(e.delta().abs() <= 0.01 * gap.abs().max(0.01), "{kind:?}: {e:?}");
    }
}
