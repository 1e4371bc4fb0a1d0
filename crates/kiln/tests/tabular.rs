//! Table models from the library: categories as learned embeddings train, save and load with their
//! preparation, and unseen categories at prediction go to the reserved slot.

use kiln::data::csv::{CsvOptions, read_table};
use kiln::data::prepare::CategoryEncoding;
use kiln::prelude::*;
use kiln::tabular::{self, TableConfig};

#[test]
fn embedded_categories_learn_save_and_load() {
    let dir = std::env::temp_dir().join(format!("kiln-tab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The label is set by the city (30 levels, as a category would be) and nudged by a number.
    let mut csv = String::from("city,amount,label\n");
    let mut seed = 9u64;
    for _ in 0..3000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let city = (seed >> 33) % 30;
        let amount = ((seed >> 13) % 1000) as f64 / 10.0;
        let label = if (city % 3 == 0) ^ (amount > 95.0) { "yes" } else { "no" };
        csv += &format!("c{city},{amount},{label}\n");
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
    let mut cfg = TableConfig::new(dir.join("t.csv"), "label");
    cfg.data.prepare.categories = CategoryEncoding::Embedding;
    cfg.train.epochs = 40;
    let table = cfg.read_table().unwrap();
    let types = cfg.types(&table).unwrap();
    let (test, train) = tabular::split(&cfg, &table, &types).unwrap();
    let mut model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
    assert_eq!(model.layers()[0].config().class_name(), "CategoryEmbedding");
    let scores = tabular::score(&mut model, &table, &test).unwrap();
    assert!(scores.accuracy.unwrap() > 0.95, "{scores}");

    model.save(dir.join("m.safetensors")).unwrap();
    let mut loaded = Sequential::load(dir.join("m.safetensors")).unwrap();
    std::fs::write(dir.join("new.csv"), "amount,city\n50,c3\n50,c4\n99,atlantis\n").unwrap();
    let rows = read_table(&dir.join("new.csv"), &CsvOptions::default()).unwrap();
    let prep = loaded.preparation().unwrap().clone();
    let x = prep.transform(&rows, &[0, 1, 2]).unwrap();
    let p = loaded.predict(&x, 3).unwrap();
    assert_eq!(p.data().to_vec(), model.predict(&x, 3).unwrap().data().to_vec(), "loaded model predicts the same");
    assert!(p.data()[0] > 0.5 && p.data()[1] < 0.5, "c3 is a `yes` city, c4 is not: {:?}", p.data());
    assert!(p.data()[2].is_finite(), "an unseen city still gets a prediction");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_class_training_never_saw_is_named() {
    let dir = std::env::temp_dir().join(format!("kiln-tab2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("x,y\n");
    for i in 0..40 {
        csv += &format!("{i},{}\n", if i % 2 == 0 { "a" } else { "b" });
    }
    std::fs::write(dir.join("t.csv"), &csv).unwrap();
    let mut cfg = TableConfig::new(dir.join("t.csv"), "y");
    cfg.train.epochs = 2;
    let table = cfg.read_table().unwrap();
    let types = cfg.types(&table).unwrap();
    let rows: Vec<usize> = (0..40).collect();
    let mut model = tabular::fit_rows(&cfg, &table, &types, &rows, false).unwrap();
    std::fs::write(dir.join("new.csv"), "x,y\n3,a\n4,c\n").unwrap();
    let new = read_table(&dir.join("new.csv"), &CsvOptions::default()).unwrap();
    let err = tabular::score(&mut model, &new, &[0, 1]).unwrap_err().to_string();
    assert!(err.contains("row 2 has class `c` in `y`, which training never saw (classes: a, b)"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sequence_models_read_a_text_column_in_order() {
    use kiln::tabular::ModelKind;
    let dir = std::env::temp_dir().join(format!("kiln-tab3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
    let mut cfg = TableConfig::new(dir.join("t.csv"), "label");
    cfg.data.prepare.text.ngrams = 1;
    cfg.data.prepare.text.length = 8;
    cfg.data.prepare.text.dim = 8;
    // Four distinct texts would be inferred a category: say it is text.
    cfg.data.columns.insert("text".into(), kiln::data::table::ColumnType::Text);
    cfg.model.units = 8;
    cfg.model.hidden = vec![];
    cfg.train.epochs = 30;
    cfg.train.learning_rate = 0.01;
    let table = cfg.read_table().unwrap();
    let types = cfg.types(&table).unwrap();
    let (test, train) = tabular::split(&cfg, &table, &types).unwrap();
    for (kind, layer) in [(ModelKind::Lstm, "LSTM"), (ModelKind::Gru, "GRU"), (ModelKind::Cnn, "Conv1D")] {
        cfg.model.kind = kind;
        let mut model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
        assert_eq!(model.layers()[1].config().class_name(), layer);
        let s = tabular::score(&mut model, &table, &test).unwrap();
        assert!(s.accuracy.unwrap() > 0.95, "{layer}: {s}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn glove_vectors_start_the_embeddings_of_the_words_they_cover() {
    let dir = std::env::temp_dir().join(format!("kiln-tab4-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("text,label\n");
    for i in 0..40 {
        csv += &format!("{},{}\n", if i % 2 == 0 { "good fit" } else { "bad fit" }, i % 2);
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
    std::fs::write(dir.join("glove.txt"), "fit 0.5 0.25\ngood 1 -1\nother 9 9\n").unwrap();
    let mut cfg = TableConfig::new(dir.join("t.csv"), "label");
    cfg.data.columns.insert("text".into(), kiln::data::table::ColumnType::Text);
    cfg.data.prepare.text = kiln::data::text::TextOptions {
        ngrams: 1,
        min_freq: 1,
        length: 4,
        dim: 2,
        glove: Some(dir.join("glove.txt")),
        ..Default::default()
    };
    cfg.train.epochs = 0;
    let table = cfg.read_table().unwrap();
    let types = cfg.types(&table).unwrap();
    let rows: Vec<usize> = (0..40).collect();
    let model = tabular::fit_rows(&cfg, &table, &types, &rows, false).unwrap();
    // Vocabulary (sorted): bad, fit, good → ids 2, 3, 4; GloVe covers fit and good.
    let table = &model.get_weights()[0];
    assert_eq!(&table[3 * 2..4 * 2], &[0.5, 0.25]);
    assert_eq!(&table[4 * 2..5 * 2], &[1.0, -1.0]);
    assert!(table[2 * 2..3 * 2].iter().all(|v| v.abs() <= 0.05), "bad: no vector, a small random start");
    std::fs::remove_dir_all(&dir).unwrap();
}
