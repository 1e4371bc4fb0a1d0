//! Table models from the library: categories as learned embeddings train, save and load with their
//! preparation, and unseen categories at prediction go to the reserved slot.

use kiln::config::Config;
use kiln::data::csv::{CsvOptions, read_table};
use kiln::data::prepare::CategoryEncoding;
use kiln::data::table::ColumnType;
use kiln::prelude::*;
use kiln::tabular;

#[test]
fn embedded_categories_learn_save_and_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The label is set by the city (30 levels, as a category would be) and nudged by a number.
    let mut csv = String::from("city,amount,label\n");
    let mut seed = 9u64;
    for _ in 0..3000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let city = (seed >> 33) % 30;
        let amount = ((seed >> 13) % 1000) as f64 / 10.0;
        let label = if city.is_multiple_of(3) ^ (amount > 95.0) { "yes" } else { "no" };
        csv += &format!("c{city},{amount},{label}\n");
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
    let mut cfg = Config::for_table(dir.join("t.csv"), "label");
    cfg.data.prepare.categories = CategoryEncoding::Embedding;
    cfg.train.epochs = Some(40);
    let table = cfg.read_table().unwrap();
    let types = cfg.types(&table).unwrap();
    let (test, train) = tabular::split(&cfg, &table, &types).unwrap();
    let model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
    assert_eq!(model.layers()[0].config().class_name(), "CategoryEmbedding");
    let scores = tabular::score(&model, &table, &test).unwrap();
    assert!(scores.accuracy.unwrap() > 0.95, "{scores}");

    // The same table with its layers written out in TOML: they read the category embeddings' output and
    // give the one sigmoid unit two classes need; a head of another width is refused before training.
    let layers = "[[model.layers]]\ntype = \"dense\"\nunits = 32\nactivation = \"relu\"\n\
                  [[model.layers]]\ntype = \"dense\"\nunits = 1\nactivation = \"sigmoid\"\n";
    let text = format!(
        "[data]\npath = \"t.csv\"\ntarget = \"label\"\n[data.prepare]\ncategories = \"embedding\"\n\
         [train]\nepochs = 40\n{layers}"
    );
    std::fs::write(dir.join("layers.toml"), &text).unwrap();
    let written = Config::from_file(dir.join("layers.toml")).unwrap();
    let m = tabular::fit_rows(&written, &table, &types, &train, false).unwrap();
    let names: Vec<&str> = m.layers().iter().map(|l| l.config().class_name()).collect();
    assert_eq!(names, ["CategoryEmbedding", "Dense", "Dense"]);
    let s = tabular::score(&m, &table, &test).unwrap();
    assert!(s.accuracy.unwrap() > 0.95, "written-out layers: {s}");
    std::fs::write(dir.join("wide.toml"), text.replace("units = 1\n", "units = 2\n")).unwrap();
    let wide = Config::from_file(dir.join("wide.toml")).unwrap();
    let e = tabular::fit_rows(&wide, &table, &types, &train, false).err().unwrap().to_string();
    assert!(e.contains("output is [2] per row, but the target `label` needs [1]"), "{e}");

    model.save(dir.join("m.safetensors")).unwrap();
    // `model.weights`: the same config started from the saved model's weights builds that very model (its
    // parameters come from the file as the layers are built); a file that does not fit is refused, naming
    // the parameter and both shapes.
    let mut warm = cfg.clone();
    warm.model.weights = Some(dir.join("m.safetensors"));
    let prep = model.preparation().unwrap();
    assert_eq!(warm.table_model(prep).unwrap().get_weights(), model.get_weights());
    warm.model.hidden = vec![64, 32, 16];
    let e = warm.table_model(prep).err().unwrap().to_string();
    assert!(e.contains("`dense_2.kernel` wants [32, 16], the file's `dense_2.kernel` is [32, 1]"), "{e}");
    assert!(!e.contains("None"), "no layout change to name: {e}");

    let loaded = Sequential::load(dir.join("m.safetensors")).unwrap();
    std::fs::write(dir.join("new.csv"), "amount,city\n50,c3\n50,c4\n99,atlantis\n").unwrap();
    let rows = read_table(&dir.join("new.csv"), &CsvOptions::default()).unwrap();
    let prep = loaded.preparation().unwrap().clone();
    let x = prep.transform(&rows, &[0, 1, 2]).unwrap();
    let p = loaded.predict(&x, 3).unwrap();
    assert_eq!(p.data().to_vec(), model.predict(&x, 3).unwrap().data().to_vec(), "loaded model predicts the same");
    assert!(p.data()[0] > 0.5 && p.data()[1] < 0.5, "c3 is a `yes` city, c4 is not: {:?}", p.data());
    assert!(p.data()[2].is_finite(), "an unseen city still gets a prediction");
}

#[test]
fn a_class_training_never_saw_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut csv = String::from("x,y\n");
    for i in 0..40 {
        csv += &format!("{i},{}\n", if i % 2 == 0 { "a" } else { "b" });
    }
    std::fs::write(dir.join("t.csv"), &csv).unwrap();
    let mut cfg = Config::for_table(dir.join("t.csv"), "y");
    cfg.train.epochs = Some(2);
    let table = cfg.read_table().unwrap();
    let types = cfg.types(&table).unwrap();
    let rows: Vec<usize> = (0..40).collect();
    let model = tabular::fit_rows(&cfg, &table, &types, &rows, false).unwrap();
    std::fs::write(dir.join("new.csv"), "x,y\n3,a\n4,c\n").unwrap();
    let new = read_table(&dir.join("new.csv"), &CsvOptions::default()).unwrap();
    let err = tabular::score(&model, &new, &[0, 1]).unwrap_err().to_string();
    assert!(err.contains("row 2 has class `c` in `y`, which training never saw (classes: a, b)"), "{err}");
}

#[test]
fn sequence_models_read_a_text_column_in_order() {
    use kiln::config::ModelKind;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The label depends on word order: "not good" is negative, "good" alone positive.
    let mut csv = String::from("text,label\n");
    for i in 0..400 {
        let (text, label) = match i % 4 {
            0 => ("the fit is good", "pos"),
            1 => ("the fit is not good", "neg"),
            2 => ("good color and fit", "pos"),
            _ => ("not good color", "neg"),
        };
        csv += &format!("{text},{label}\n");
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
    let mut cfg = Config::for_table(dir.join("t.csv"), "label");
    cfg.data.prepare.text.ngrams = 1;
    cfg.data.prepare.text.length = 8;
    cfg.data.prepare.text.dim = 8;
    // Four distinct texts would be inferred a category: say it is text.
    cfg.data.columns.insert("text".into(), kiln::data::table::ColumnType::Text);
    cfg.model.units = 8;
    cfg.model.hidden = vec![];
    cfg.train.epochs = Some(30);
    cfg.train.optimizer.set_learning_rate(0.01);
    let table = cfg.read_table().unwrap();
    let types = cfg.types(&table).unwrap();
    let (test, train) = tabular::split(&cfg, &table, &types).unwrap();
    use kiln::config::Pooling;
    let cases = [
        (ModelKind::Lstm, false, None, "LSTM"),
        (ModelKind::Gru, false, None, "GRU"),
        (ModelKind::SimpleRnn, false, None, "SimpleRNN"),
        (ModelKind::Cnn, false, None, "Conv1D"),
        (ModelKind::Gru, true, Some(Pooling::Max), "Bidirectional"),
        (ModelKind::Lstm, false, Some(Pooling::Average), "LSTM"),
    ];
    for (kind, bidirectional, pooling, layer) in cases {
        (cfg.model.kind, cfg.model.bidirectional, cfg.model.pooling) = (Some(kind), bidirectional, pooling);
        // One case with dropout on the term vectors: a Dropout layer after the embedding.
        cfg.model.embedding_dropout = if pooling == Some(Pooling::Average) { 0.2 } else { 0.0 };
        let model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
        let at = 1 + (cfg.model.embedding_dropout > 0.0) as usize;
        assert_eq!(model.layers()[at].config().class_name(), layer);
        if pooling.is_some() {
            assert_eq!(model.layers().len(), 3 + at, "{layer} then a pooling layer and the output");
        }
        let s = tabular::score(&model, &table, &test).unwrap();
        assert!(s.accuracy.unwrap() > 0.95, "{layer} {pooling:?}: {s}");
    }
    cfg.data.prepare.text.output = kiln::data::text::TextOutput::TfIdf;
    let err = tabular::fit_rows(&cfg, &table, &types, &train, false).err().unwrap().to_string();
    assert!(err.contains("output = \"ids\""), "{err}");
}

#[test]
fn glove_vectors_start_the_embeddings_of_the_words_they_cover() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut csv = String::from("text,label\n");
    for i in 0..40 {
        csv += &format!("{},{}\n", if i % 2 == 0 { "good fit" } else { "bad fit" }, i % 2);
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
    std::fs::write(dir.join("glove.txt"), "fit 0.5 0.25\ngood 1 -1\nother 9 9\n").unwrap();
    let mut cfg = Config::for_table(dir.join("t.csv"), "label");
    cfg.data.columns.insert("text".into(), kiln::data::table::ColumnType::Text);
    cfg.data.prepare.text = kiln::data::text::TextOptions {
        ngrams: 1,
        min_freq: 1,
        length: 4,
        dim: 2,
        glove: Some(dir.join("glove.txt")),
        ..Default::default()
    };
    cfg.train.epochs = Some(0);
    let table = cfg.read_table().unwrap();
    let types = cfg.types(&table).unwrap();
    let rows: Vec<usize> = (0..40).collect();
    let model = tabular::fit_rows(&cfg, &table, &types, &rows, false).unwrap();
    // Vocabulary (sorted): bad, fit, good → ids 2, 3, 4; GloVe covers fit and good.
    let table = &model.get_weights()[0];
    assert_eq!(&table[3 * 2..4 * 2], &[0.5, 0.25]);
    assert_eq!(&table[4 * 2..5 * 2], &[1.0, -1.0]);
    assert!(table[2 * 2..3 * 2].iter().all(|v| v.abs() <= 0.05), "bad: no vector, a small random start");
}

/// Texts of two topics whose words never meet: after skip-gram pretraining (and no supervised epoch) a
/// word's embedding is nearer the words it shares texts with than the other topic's; the settings travel
/// in the saved model; `glove` with `pretrain` and a bad setting are errors naming the key.
#[test]
fn skip_gram_pretraining_starts_the_embeddings_from_the_training_texts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let topics = [["soft", "cozy", "warm", "comfy", "lovely"], ["tight", "itchy", "scratchy", "small", "thin"]];
    let mut rng = kiln::core::Rng::new(3);
    let mut csv = String::from("text,label\n");
    for i in 0..300 {
        let words: Vec<&str> = (0..10).map(|_| topics[i % 2][rng.below(5)]).collect();
        csv += &format!("{},{}\n", words.join(" "), i % 2);
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
    let mut cfg = Config::for_table(dir.join("t.csv"), "label");
    cfg.data.columns.insert("text".into(), ColumnType::Text);
    let pretrain: kiln::data::text::TextOptions =
        toml::from_str("ngrams = 1\ndim = 8\npretrain = { sample = 0.0 }").unwrap();
    cfg.data.prepare.text = pretrain;
    cfg.train.epochs = Some(0);
    let table = cfg.read_table().unwrap();
    let types = cfg.types(&table).unwrap();
    let rows: Vec<usize> = (0..300).collect();
    let model = tabular::fit_rows(&cfg, &table, &types, &rows, false).unwrap();
    let vectors: std::collections::HashMap<String, Vec<f32>> =
        tabular::term_vectors(&model).unwrap().into_iter().collect();
    let cos = |a: &str, b: &str| {
        let (x, y) = (&vectors[a], &vectors[b]);
        let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
        dot / (x.iter().map(|p| p * p).sum::<f32>() * y.iter().map(|q| q * q).sum::<f32>()).sqrt()
    };
    for (a, b, c) in [("soft", "cozy", "itchy"), ("warm", "lovely", "thin"), ("tight", "small", "comfy")] {
        assert!(cos(a, b) > cos(a, c) + 0.5, "{a}~{b} {} vs {a}~{c} {}", cos(a, b), cos(a, c));
    }
    let path = dir.join("m.safetensors");
    model.save(&path).unwrap();
    let loaded = Sequential::load(&path).unwrap();
    assert_eq!(loaded.preparation(), model.preparation());

    cfg.data.prepare.text.glove = Some(dir.join("glove.txt"));
    let e = tabular::fit_rows(&cfg, &table, &types, &rows, false).err().unwrap().to_string();
    assert!(e.contains("`glove` and `pretrain` both start the embeddings"), "{e}");
    cfg.data.prepare.text.glove = None;
    cfg.data.prepare.text.pretrain.as_mut().unwrap().epochs = 0;
    let e = tabular::fit_rows(&cfg, &table, &types, &rows, false).err().unwrap().to_string();
    assert!(e.contains("data.prepare.text.pretrain.epochs must be at least 1"), "{e}");
    let e = toml::from_str::<kiln::data::text::TextOptions>("pretrain = { epoch = 3 }").unwrap_err().to_string();
    assert!(e.contains("unknown field `epoch`"), "{e}");
}

/// Reviews whose label is carried by a word anywhere in them ("bad" → neg), one class rare.
fn word_reviews(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = kiln::core::Rng::new(11);
    let filler = ["the", "dress", "fit", "color", "was", "very", "and", "size", "fabric", "true"];
    let mut csv = String::from("review,label\n");
    for i in 0..600 {
        let neg = i % 5 == 0;
        let mut words: Vec<&str> = (0..6).map(|_| filler[rng.below(filler.len())]).collect();
        words.insert(rng.below(7), if neg { "bad" } else { "lovely" });
        csv += &format!("{},{}\n", words.join(" "), if neg { "neg" } else { "pos" });
    }
    let path = dir.join("r.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

/// A config for `word_reviews` (unigrams, 8-wide vectors, 20 epochs at `lr`), the table, its column types,
/// and the (test, train) rows.
fn word_setup(dir: &std::path::Path, lr: f32) -> (Config, kiln::data::table::Table, Vec<ColumnType>, Rows) {
    let mut cfg = Config::for_table(word_reviews(dir), "label");
    cfg.data.prepare.text.ngrams = 1;
    cfg.data.prepare.text.dim = 8;
    cfg.train.epochs = Some(20);
    cfg.train.optimizer.set_learning_rate(lr);
    let table = cfg.read_table().unwrap();
    let types = cfg.types(&table).unwrap();
    let split = tabular::split(&cfg, &table, &types).unwrap();
    (cfg, table, types, split)
}

type Rows = (Vec<usize>, Vec<usize>);

#[test]
fn multi_hot_count_and_tf_idf_bags_train_save_and_predict() {
    use kiln::data::text::TextOutput;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut cfg, table, types, (test, train)) = word_setup(dir, 0.02);
    cfg.data.prepare.text.length = 10;
    cfg.model.hidden = vec![];
    for output in [TextOutput::MultiHot, TextOutput::Count, TextOutput::TfIdf] {
        cfg.data.prepare.text.output = output;
        let model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
        let prep = model.preparation().unwrap().clone();
        // Ten ids, then ten weights.
        assert_eq!(prep.width(), 20);
        let x = prep.transform(&table, &test[..1]).unwrap();
        let w = &x.data()[10..];
        match output {
            TextOutput::TfIdf => assert!((w.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5, "{w:?}"),
            _ => assert!(w.iter().all(|&v| v == v.round() && v >= 0.0), "{w:?}"),
        }
        let s = tabular::score(&model, &table, &test).unwrap();
        assert!(s.accuracy.unwrap() > 0.97, "{output:?}: {s}");
        let path = dir.join("bag.safetensors");
        model.save(&path).unwrap();
        let loaded = Sequential::load(&path).unwrap();
        let all = prep.transform(&table, &test).unwrap();
        assert_eq!(model.predict(&all, 64).unwrap().data(), loaded.predict(&all, 64).unwrap().data());
    }
}

#[test]
fn class_weights_by_class_name() {
    use kiln::prelude::ClassWeight;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut cfg, table, types, (test, train)) = word_setup(dir, 0.01);
    // Weight 0 for "neg": its rows teach nothing, so the model predicts "pos" for every row.
    cfg.train.class_weight = Some(ClassWeight::PerClass([("neg".to_string(), 0.0)].into()));
    let model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
    let r = tabular::score(&model, &table, &test).unwrap().report.unwrap();
    assert_eq!(r.per_class[0].1, 0.0, "neg recall with neg weighted 0: {r:?}");
    cfg.train.class_weight = Some(ClassWeight::balanced());
    // AdamW, named in train.optimizer as in every config.
    cfg.train.optimizer = kiln::optim::AdamW::new(0.001, 0.001).into();
    let model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
    assert!(matches!(
        model.compile_config().unwrap().optimizer,
        kiln::optim::OptimizerConfig::Adamw(ref o) if o.weight_decay == 0.001
    ));
    let s = tabular::score(&model, &table, &test).unwrap();
    assert!(s.accuracy.unwrap() > 0.95, "{s}");
    cfg.train.class_weight = Some(ClassWeight::PerClass([("negative".to_string(), 2.0)].into()));
    let err = tabular::fit_rows(&cfg, &table, &types, &train, false).err().unwrap().to_string();
    assert!(err.contains("no class `negative`; the classes are: neg, pos"), "{err}");
    // From TOML.
    let parsed: Config =
        toml::from_str("[data]\npath = \"x.csv\"\ntarget = \"y\"\n[train]\nclass_weight = \"balanced\"\n").unwrap();
    assert_eq!(parsed.train.class_weight, Some(ClassWeight::balanced()));
    let parsed: Config =
        toml::from_str("[data]\npath = \"x.csv\"\ntarget = \"y\"\n[train]\nclass_weight = { neg = 3.0 }\n").unwrap();
    assert!(matches!(parsed.train.class_weight, Some(ClassWeight::PerClass(m)) if m["neg"] == 3.0));
}

#[test]
fn validation_rows_are_stratified_like_the_test_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut cfg, table, types, (test, train)) = word_setup(dir, 0.01);
    cfg.train.validation_split = Some(0.25);
    let (fit, val) = tabular::hold_out_validation(&cfg, &table, &types, train.clone()).unwrap();
    assert_eq!(fit.len() + val.len(), train.len());
    assert!(val.iter().all(|r| train.contains(r) && !fit.contains(r)));
    let label = table.column("label").unwrap();
    let neg = |rows: &[usize]| rows.iter().filter(|&&r| label.cells[r].as_deref() == Some("neg")).count();
    // One row in five is "neg": in the training rows, and to the row in the validation rows and the test rows.
    let want = |rows: &[usize]| rows.len() as f64 / 5.0;
    assert!((neg(&val) as f64 - want(&val)).abs() <= 1.0, "{} neg of {}", neg(&val), val.len());
    assert!((neg(&test) as f64 - want(&test)).abs() <= 1.0, "{} neg of {}", neg(&test), test.len());
}

/// kind = "ft_transformer" (every column a token, a [CLS] token, attention over them): learns a label that
/// needs a category and a threshold on a number together, with piecewise-linear bins and with the periodic
/// number encoding; saves, loads and predicts the same; settings it cannot use are one clear error.
#[test]
fn ft_transformer_learns_a_table_with_both_number_encodings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut csv = String::from("city,amount,member,label\n");
    let mut seed = 4u64;
    for _ in 0..3000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let city = (seed >> 33) % 12;
        let amount = ((seed >> 13) % 1000) as f64 / 10.0;
        let member = (seed >> 45).is_multiple_of(2);
        let label = if city.is_multiple_of(3) ^ (amount > 70.0) { "yes" } else { "no" };
        csv += &format!("c{city},{amount},{member},{label}\n");
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
    let text = "[data]\npath = \"t.csv\"\ntarget = \"label\"\n[data.prepare]\nbins = 16\n\
                bin_encoding = \"piecewise_linear\"\n[model]\nkind = \"ft_transformer\"\ndim = 16\nblocks = 1\n\
                heads = 2\nunits = 32\nhidden = []\n[train]\nepochs = 25\nbatch_size = 64\n\
                optimizer = { type = \"adamw\", learning_rate = 0.003 }\n";
    std::fs::write(dir.join("ft.toml"), text).unwrap();
    let cfg = Config::from_file(dir.join("ft.toml")).unwrap();
    let table = cfg.read_table().unwrap();
    let types = cfg.types(&table).unwrap();
    let (test, train) = tabular::split(&cfg, &table, &types).unwrap();
    let model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
    let names: Vec<&str> = model.layers().iter().map(|l| l.config().class_name()).collect();
    assert_eq!(
        names,
        ["ColumnTokens", "TransformerEncoder", "LayerNormalization", "SelectToken", "Activation", "Dense"]
    );
    let scores = tabular::score(&model, &table, &test).unwrap();
    assert!(scores.accuracy.unwrap() > 0.95, "piecewise-linear bins: {scores}");
    model.save(dir.join("ft.safetensors")).unwrap();
    let loaded = Sequential::load(dir.join("ft.safetensors")).unwrap();
    let x = loaded.preparation().unwrap().transform(&table, &test[..50]).unwrap();
    assert_eq!(loaded.predict(&x, 50).unwrap().data(), model.predict(&x, 50).unwrap().data());

    // Periodic: the number's sines and cosines, no bins.
    let periodic = text.replace("bins = 16\nbin_encoding = \"piecewise_linear\"\n", "").replace(
        "kind = \"ft_transformer\"\n",
        "kind = \"ft_transformer\"\nnumeric_embedding = \"periodic\"\nsigma = 1.0\n",
    );
    std::fs::write(dir.join("periodic.toml"), &periodic).unwrap();
    let cfg = Config::from_file(dir.join("periodic.toml")).unwrap();
    let model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
    assert!(model.get_weights().len() > 2 + 3 + 2 + 1, "frequencies, kernels and biases");
    let scores = tabular::score(&model, &table, &test).unwrap();
    assert!(scores.accuracy.unwrap() > 0.95, "periodic numbers: {scores}");

    let bad = |edit: &dyn Fn(&mut Config)| {
        let mut c = Config::from_file(dir.join("ft.toml")).unwrap();
        edit(&mut c);
        tabular::fit_rows(&c, &table, &types, &train, false).err().unwrap().to_string()
    };
    let e = bad(&|c| c.model.heads = 3);
    assert!(e.contains("model.heads = 3 must divide the token width model.dim = 16"), "{e}");
    let e = bad(&|c| c.data.prepare.categories = CategoryEncoding::Embedding);
    assert!(e.contains("`city` is an embedded category"), "{e}");
}
