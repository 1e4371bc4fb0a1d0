//! The bad-input suite: a corpus of wrong files, configs and flags that this test writes (tables, TOML
//! configs, MNIST IDX files, PNG images, saved models, run folders, command lines), each fed through the
//! `kiln` binary. Every case must exit non-zero without a panic or an abort, with one line on stderr
//! (starting `error:`) that names the culprit (the file, key, column, row or flag), and leave every file
//! already on disk as it was (the corpus is hashed before and after; a model at `--output` survives a run
//! that fails). Flags clap rejects exit 2, as clap's, with the usage folded into that line. The in-process fuzz over the readers is in
//! `crates/kiln/tests/suite/fuzz_readers.rs`.

use crate::common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One bad input: the arguments, and what its error line must contain.
struct Case {
    args: Vec<String>,
    want: Vec<String>,
    /// Rejected by the argument parser (exit 2, the usage in the line), not by kiln.
    clap: bool,
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A valid table: two numbers, a category and a label set by them.
fn table_csv() -> String {
    let mut s = String::from("a,b,c,y\n");
    for i in 0..120 {
        s += &format!("{},{},{},{}\n", i % 13, (i * 7) % 11, ["r", "g", "b"][i % 3], ["p", "q"][(i % 13 > 6) as usize]);
    }
    s
}

const TABLE_CONFIG: &str = "[data]\npath = \"t.csv\"\ntarget = \"y\"\n\n[model]\nhidden = [8]\n\n[train]\nepochs = 1\n";
/// The same without the keys the one-key cases write.
const BARE_CONFIG: &str = "[data]\npath = \"t.csv\"\ntarget = \"y\"\n\n[model]\n\n[train]\n";

fn image_config(data: &str, layers: &str) -> String {
    format!(
        "[data]\nformat = \"mnist\"\npath = \"{data}\"\n\n[model]\ninput_shape = [28, 28, 1]\n{layers}\n[train]\n\
         epochs = 1\nbatch_size = 32\n"
    )
}

#[test]
fn every_bad_input_is_one_clear_line_and_loses_nothing() {
    let t = Tmp::new("bad-inputs");
    let c = t.path("corpus");
    std::fs::create_dir_all(&c).unwrap();
    let p = |name: &str| c.join(name).display().to_string();
    let write = |name: &str, bytes: &[u8]| {
        let path = c.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };

    // Valid pieces the bad ones are made from: a table, MNIST-format folders, a trained model of each kind.
    write("t.csv", table_csv().as_bytes());
    write_mnist(&c.join("mnist"), 64, 16);
    // The image model is trained here (one epoch on the small folder): a fresh clone has no example model.
    std::fs::write(t.path("image.toml"), image_config(&p("mnist"), LAYERS_OK)).unwrap();
    let o = kiln(&[
        "train",
        &t.s("image.toml"),
        "--output",
        &p("image_model.safetensors"),
        "--run-dir",
        &t.s("made_image"),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o =
        kiln(&["train", "--data", &p("t.csv"), "--target", "y", "--epochs", "1", "--run-dir", &t.s("made"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::copy(t.path("made/model.safetensors"), c.join("table_model.safetensors")).unwrap();
    write("existing.safetensors", b"a model the user keeps");
    let good_model = std::fs::read(c.join("table_model.safetensors")).unwrap();

    let mut cases: Vec<Case> = Vec::new();
    let mut add = |args: &[&str], want: &[&str]| {
        cases.push(Case {
            args: args.iter().map(|s| s.to_string()).collect(),
            want: want.iter().map(|s| s.to_string()).collect(),
            clap: false,
        })
    };
    let run_dir = t.s("runs/r");

    // --- Table files, through `kiln train --data FILE --target y` (and `data audit`, `cv` for some).
    let tables: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.csv", b"".to_vec(), "empty file"),
        ("header_only.csv", b"a,b,y\n".to_vec(), "no rows"),
        ("ragged.csv", b"a,b,y\n1,2,p\n3,q\n".to_vec(), "line 3 has 2 fields"),
        ("unclosed.csv", b"a,b,y\n1,\"2,p\n3,4,q\n".to_vec(), "never closes"),
        ("dup_header.csv", b"a,a,y\n1,2,p\n".to_vec(), "appears twice"),
        ("garbage.csv", vec![0, 159, 146, 150, 0, 255, 10, 1, 2, 3], "garbage.csv"),
        ("no_target.csv", b"a,b\n1,2\n3,4\n".to_vec(), "no column `y`"),
        (
            "one_class.csv",
            (0..40).map(|i| format!("{i},1\n")).fold(b"a,y\n".to_vec(), |mut v, l| {
                v.extend(l.bytes());
                v
            }),
            "nothing to learn",
        ),
        (
            "target_empty.csv",
            (0..40).map(|i| format!("{i},\n")).fold(b"a,y\n".to_vec(), |mut v, l| {
                v.extend(l.bytes());
                v
            }),
            "empty on every one",
        ),
        (
            "stray.csv",
            (0..200)
                .map(|i| if i == 117 { "oops,p\n".to_string() } else { format!("{},{}\n", i % 17, ["p", "q"][i % 2]) })
                .fold(b"a,y\n".to_vec(), |mut v, l| {
                    v.extend(l.bytes());
                    v
                }),
            "oops",
        ),
        ("only_target.csv", b"y\np\nq\np\nq\n".to_vec(), "only_target.csv"),
        ("one_row.csv", b"a,y\n1,p\n".to_vec(), "1 rows leave no training rows"),
        (
            "nameless.csv",
            (0..40).map(|i| format!("{i},{},{}\n", i % 3, ["p", "q"][i % 2])).fold(b"a,,y\n".to_vec(), |mut v, l| {
                v.extend(l.bytes());
                v
            }),
            "no name in the header",
        ),
        ("not_gzip.csv.gz", b"a,y\n1,p\n".to_vec(), "gzip"),
        ("bad.jsonl", b"{\"a\": 1, \"y\": \"p\"}\n{\"a\": 2, \"y\": \n".to_vec(), "bad.jsonl"),
        ("bad.arff", b"@relation x\n@attribute a numeric\n@data\n1,2,3\n".to_vec(), "bad.arff"),
        ("type.arff", b"@attribute a numerc\n@attribute y {p,q}\n@data\n1,p\n".to_vec(), "has type `numerc`"),
        ("nominal.arff", b"@attribute a numeric\n@attribute y {p,q}\n@data\n1,p\n2,x\n".to_vec(), "line 5: `x`"),
        (
            "decimal.csv",
            (0..40).map(|i| format!("{},{};{};{}\n", i % 9, i % 7, i % 5, ["p", "q"][i % 2])).fold(
                b"a;b;y\n".to_vec(),
                |mut v, l| {
                    v.extend(l.bytes());
                    v
                },
            ),
            "decimal commas",
        ),
    ];
    for (name, bytes, want) in &tables {
        write(name, bytes);
        add(&["train", "--data", &p(name), "--target", "y", "--run-dir", &run_dir], &[want]);
    }
    for name in ["empty.csv", "ragged.csv", "unclosed.csv", "not_gzip.csv.gz"] {
        add(&["data", "audit", &p(name)], &[name]);
    }
    add(&["data", "audit", &p("t.csv"), "--target", "nope"], &["no column `nope`"]);
    add(&["data", "audit", &p("missing.csv")], &["missing.csv"]);
    add(&["train", "--data", &p("missing.csv"), "--target", "y"], &["missing.csv"]);
    add(&["train", "--data", &p("mnist"), "--target", "y"], &["mnist"]);
    add(&["cv", "--data", &p("one_class.csv"), "--target", "y"], &["nothing to learn"]);
    add(&["cv", "--data", &p("t.csv"), "--target", "y", "--folds", "121"], &["121 folds"]);

    // --- Table configs: one wrong key at a time, over a valid config.
    let key_cases: Vec<(&str, &str, &str)> = vec![
        // (section, line, culprit named)
        ("train", "epochs = \"ten\"", "epochs"),
        ("train", "epochs = -1", "epochs"),
        ("train", "epochs = 0", "train.epochs"),
        ("train", "batch_size = 0", "train.batch_size"),
        ("train", "batch_size = \"x\"", "batch_size"),
        ("train", "validation_split = 1.5", "validation_split"),
        ("train", "validation_split = -0.1", "validation_split"),
        ("train", "patience = -1", "patience"),
        ("train", "seed = \"x\"", "seed"),
        ("train", "shuffle = \"yes\"", "shuffle"),
        ("train", "optimizer = { type = \"nope\" }", "nope"),
        ("train", "optimizer = { type = \"adam\", learning_rate = -1.0 }", "learning_rate"),
        ("train", "optimizer = { type = \"adam\", learning_rate = \"x\" }", "learning_rate"),
        ("train", "optimizer = { type = \"adam\", momentum = 0.9 }", "momentum"),
        ("train", "loss = \"nope\"", "nope"),
        ("train", "loss = \"mean_squared_error\"", "train.loss"),
        ("train", "metrics = [\"nope\"]", "nope"),
        ("train", "class_weight = \"nope\"", "class_weight"),
        ("train", "class_weight = { nope = 1.0 }", "nope"),
        ("train", "class_weight = { p = -1.0 }", "class_weight"),
        ("train", "oversample = 3", "oversample"),
        ("train", "loss_weights = [1.0, 2.0]", "loss_weights"),
        ("train", "augment = { rotation = 10.0 }", "train.augment"),
        ("train", "schedule = { type = \"nope\" }", "nope"),
        ("train", "clip = { norm = -1.0 }", "clip"),
        ("train", "nope = 1", "nope"),
        ("data", "test_fraction = 2.0", "test_fraction"),
        ("data", "test_rows = 1000000", "test_rows"),
        ("data", "ignore = \"a\"", "ignore"),
        ("data", "ignore = [\"nope\"]", "nope"),
        ("data", "columns = { a = \"nope\" }", "nope"),
        ("data", "columns = { nope = \"number\" }", "nope"),
        ("data", "columns = { c = \"number\" }", "`c`"),
        ("data", "missing = 3", "missing"),
        ("data", "encoding = \"klingon\"", "klingon"),
        ("data", "positive = \"nope\"", "nope"),
        ("data", "classes = { p = \"a\" }", "y"),
        ("data", "classes = { zz = \"a\" }", "target `y` holds none of them (its values: \"p\", \"q\")"),
        ("data", "format = \"nope\"", "nope"),
        ("data", "prepare = { scale = \"nope\" }", "nope"),
        ("data", "prepare = { impute = \"nope\" }", "nope"),
        ("data", "prepare = { bins = -1 }", "bins"),
        ("data", "prepare = { text = { ngrams = 0 } }", "ngrams"),
        ("data", "nope = 1", "nope"),
        ("data", "file = \"t.csv\"", "unknown key `file`; did you mean `path`?"),
        ("model", "kind = \"nope\"", "nope"),
        ("model", "kind = \"lstm\"", "text column"),
        ("model", "hidden = [0]", "model.hidden"),
        ("model", "hidden = \"x\"", "hidden"),
        ("model", "dropout = 1.5", "model.dropout"),
        ("model", "dropout = -1.0", "model.dropout"),
        ("model", "units = 0", "units"),
        ("model", "input_shape = [3]", "model.input_shape"),
        ("model", "outputs = [\"x\"]", "model.outputs"),
        ("model", "weights = \"missing.safetensors\"", "missing.safetensors"),
        ("model", "weights = \"t.csv\"", "t.csv"),
        ("model", "name = 3", "name"),
        ("model", "seed = -1", "seed"),
        ("model", "nope = 1", "nope"),
    ];
    // Wrong values found once the data is read name the data's file and column (or the weights file).
    let names_data = [
        "columns = { c = \"number\" }",
        "classes = { p = \"a\" }",
        "classes = { zz = \"a\" }",
        "weights = \"missing.safetensors\"",
        "weights = \"t.csv\"",
    ];
    for (i, (section, line, want)) in key_cases.iter().enumerate() {
        let text = BARE_CONFIG.replace(&format!("[{section}]\n"), &format!("[{section}]\n{line}\n"));
        let name = format!("key_{i}.toml");
        write(&name, text.as_bytes());
        let file = if names_data.contains(line) { "" } else { name.as_str() };
        add(&["train", &p(&name), "--run-dir", &run_dir], &[file, want]);
    }
    write("ok.toml", TABLE_CONFIG.as_bytes());
    let layer_cases: Vec<(&str, &str)> = vec![
        ("[[model.layers]]\ntype = \"nope\"\n", "nope"),
        ("[[model.layers]]\ntype = \"dense\"\n", "units"),
        ("[[model.layers]]\ntype = \"dense\"\nunits = -1\n", "units"),
        ("[[model.layers]]\ntype = \"dense\"\nunits = 2\nactivation = \"nope\"\n", "nope"),
        ("[[model.layers]]\ntype = \"dense\"\nunits = 2\nactivation = \"softmax\"\n", "needs [1]"),
        ("[[model.layers]]\ntype = \"conv2d\"\nfilters = 2\nkernel_size = 3\n", "conv2d"),
        ("[[model.nodes]]\ntype = \"dense\"\nunits = 1\ninputs = [\"nowhere\"]\n", "nowhere"),
        ("[[model.nodes]]\ntype = \"add\"\ninputs = [\"input\"]\n", "add"),
    ];
    for (i, (layers, want)) in layer_cases.iter().enumerate() {
        let text = TABLE_CONFIG.replace("hidden = [8]\n", "") + layers;
        let name = format!("layers_{i}.toml");
        write(&name, text.as_bytes());
        add(&["train", &p(&name), "--run-dir", &run_dir], &[&name, want]);
    }
    let whole_files: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.toml", b"".to_vec(), "data"),
        ("no_data.toml", b"[train]\nepochs = 1\n".to_vec(), "data"),
        ("syntax.toml", b"[data]\npath = \"t.csv\ntarget = \"y\"\n".to_vec(), "line 2"),
        ("unclosed_table.toml", b"[data\npath = \"t.csv\"\n".to_vec(), "line 1"),
        ("no_value.toml", b"[data]\npath = \"t.csv\"\ntarget = \"y\"\n[train]\nepochs =\n".to_vec(), "line 5"),
        ("dup_key.toml", b"[data]\npath = \"t.csv\"\npath = \"u.csv\"\ntarget = \"y\"\n".to_vec(), "line 3"),
        ("unknown_section.toml", format!("{TABLE_CONFIG}[nope]\nx = 1\n").into_bytes(), "nope"),
        ("not_utf8.toml", b"[data]\npath = \"t\xff.csv\"\n".to_vec(), "not_utf8.toml"),
        ("missing_data.toml", b"[data]\npath = \"nothere.csv\"\ntarget = \"y\"\n".to_vec(), "corpus/nothere.csv"),
        ("callback.toml", format!("{TABLE_CONFIG}[[callbacks]]\ntype = \"nope\"\n").into_bytes(), "nope"),
        (
            "output_dir.toml",
            format!("{TABLE_CONFIG}[output]\nmodel = \"no/such/dir/m.safetensors\"\n").into_bytes(),
            "no/such/dir",
        ),
        (
            "two_targets_layers.toml",
            b"[data]\npath = \"t.csv\"\ntarget = [\"y\", \"a\"]\n[[model.layers]]\ntype = \"dense\"\nunits = 1\n"
                .to_vec(),
            "model.outputs",
        ),
        ("target_twice.toml", b"[data]\npath = \"t.csv\"\ntarget = [\"y\", \"y\"]\n".to_vec(), "twice"),
        // `a` is a number (13 values): classes' metrics and a softmax output do not fit it.
        (
            "oversample_number.toml",
            b"[data]\npath = \"t.csv\"\ntarget = \"a\"\n[train]\noversample = true\n".to_vec(),
            "train.oversample repeats the rows of the smaller classes, but target `a` is a number",
        ),
        (
            "metric_on_number.toml",
            b"[data]\npath = \"t.csv\"\ntarget = \"a\"\n[train]\nmetrics = [\"accuracy\"]\n".to_vec(),
            "train.metrics: accuracy scores classes",
        ),
        (
            "softmax_on_number.toml",
            b"[data]\npath = \"t.csv\"\ntarget = \"a\"\n[[model.layers]]\ntype = \"dense\"\nunits = 1\n\
              activation = \"softmax\"\n"
                .to_vec(),
            "always 1",
        ),
        (
            "softmax_then_dropout.toml",
            b"[data]\npath = \"t.csv\"\ntarget = \"a\"\n[[model.layers]]\ntype = \"dense\"\nunits = 1\n\
              activation = \"softmax\"\n[[model.layers]]\ntype = \"dropout\"\nrate = 0.1\n"
                .to_vec(),
            "always 1",
        ),
    ];
    for (name, bytes, want) in &whole_files {
        write(name, bytes);
        // A missing data file or output folder is named by its own path.
        let file = if ["missing_data.toml", "output_dir.toml"].contains(name) { "" } else { name };
        add(&["train", &p(name), "--run-dir", &run_dir], &[file, want]);
    }
    for name in ["syntax.toml", "key_0.toml", "layers_0.toml"] {
        add(&["summary", &p(name)], &[name]);
        add(&["cv", &p(name)], &[name]);
    }
    add(&["train", &p("missing.toml")], &["missing.toml"]);
    add(&["train", &c.display().to_string()], &["corpus"]);
    // A failed run leaves the model the user keeps at --output as it was.
    add(&["train", &p("key_0.toml"), "--output", &p("existing.safetensors")], &["train.epochs"]);
    add(&["train", &p("one_class.csv"), "--output", &p("existing.safetensors")], &["one_class.csv"]);

    // --- Image data: MNIST folders that are wrong in one way each.
    let mnist_ok = std::fs::read(c.join("mnist/train-images-idx3-ubyte")).unwrap();
    let labels_ok = std::fs::read(c.join("mnist/train-labels-idx1-ubyte")).unwrap();
    let t10k: Vec<(String, Vec<u8>)> = ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(c.join("mnist").join(f)).unwrap()))
        .collect();
    let folders: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = vec![
        ("truncated", mnist_ok[..1000].to_vec(), labels_ok.clone(), "train-images"),
        ("magic", [&[0u8, 0, 9, 3][..], &mnist_ok[4..]].concat(), labels_ok.clone(), "magic"),
        ("count", mnist_ok.clone(), idx(&[63], &labels_ok[8..71]), "labels"),
        ("label_range", mnist_ok.clone(), [&labels_ok[..8], &[77u8; 64][..]].concat(), "label"),
        ("header_only", mnist_ok[..16].to_vec(), labels_ok.clone(), "train-images"),
        ("dims", idx(&[64, 28, 27], &mnist_ok[16..16 + 64 * 28 * 27]), labels_ok.clone(), "28"),
    ];
    for (dir, images, labels, want) in &folders {
        write(&format!("{dir}/train-images-idx3-ubyte"), images);
        write(&format!("{dir}/train-labels-idx1-ubyte"), labels);
        for (f, b) in &t10k {
            write(&format!("{dir}/{f}"), b);
        }
        let name = format!("images_{dir}.toml");
        write(&name, image_config(dir, LAYERS_OK).as_bytes());
        add(&["train", &p(&name), "--run-dir", &run_dir], &[want]);
    }
    write("images_nofolder.toml", image_config("nowhere", LAYERS_OK).as_bytes());
    add(&["train", &p("images_nofolder.toml")], &["nowhere"]);
    write("images_file.toml", image_config("t.csv", LAYERS_OK).as_bytes());
    add(&["train", &p("images_file.toml")], &["t.csv"]);
    write(
        "images_huge.toml",
        image_config("mnist", &LAYERS_OK.replace("filters = 4", "filters = 100000000")).as_bytes(),
    );
    add(&["train", &p("images_huge.toml")], &["conv2d", "GiB"]);
    write("images_head.toml", image_config("mnist", &LAYERS_OK.replace("units = 10", "units = 7")).as_bytes());
    add(&["train", &p("images_head.toml")], &["10 classes"]);
    write(
        "images_table_key.toml",
        image_config("mnist", LAYERS_OK).replace("[train]\n", "[train]\noversample = true\n").as_bytes(),
    );
    add(&["train", &p("images_table_key.toml")], &["train.oversample"]);

    // --- Models: files that are not one, or broken ones, where a model is expected.
    write("empty.safetensors", b"");
    write("short.safetensors", &good_model[..good_model.len() / 2]);
    write("huge_header.safetensors", &[255, 255, 255, 255, 255, 255, 255, 127, b'{']);
    write("bad_json.safetensors", &[[4u8, 0, 0, 0, 0, 0, 0, 0].as_slice(), b"{{{{"].concat());
    let mut nan_model = good_model.clone();
    let header_len = u64::from_le_bytes(nan_model[..8].try_into().unwrap()) as usize;
    let at = 8 + header_len;
    nan_model[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    write("nan.safetensors", &nan_model);
    for m in [
        "empty.safetensors",
        "short.safetensors",
        "huge_header.safetensors",
        "bad_json.safetensors",
        "t.csv",
        "key_0.toml",
        "nan.safetensors",
        "missing.safetensors",
    ] {
        add(&["predict", &p(m), "--input", &p("t.csv")], &[m]);
        add(&["summary", &p(m)], &[m]);
    }
    add(&["evaluate", &p("short.safetensors"), "--data", &p("t.csv")], &["short.safetensors"]);
    add(&["predict", &p("mnist"), "x"], &["mnist"]);
    add(&["predict", &t.s("made"), "--input", &p("t.csv")], &["a run folder: its model is", "made/model.safetensors"]);

    // --- Inputs to a saved model.
    write("rows_missing_col.csv", b"a,b\n1,2\n");
    add(&["predict", &p("table_model.safetensors"), "--input", &p("rows_missing_col.csv")], &["no column `c`"]);
    add(&["predict", &p("table_model.safetensors"), "--input", &p("header_only.csv")], &["header_only.csv"]);
    add(&["predict", &p("table_model.safetensors"), &p("t.csv")], &["--input"]);
    add(
        &["predict", &p("table_model.safetensors"), "good dress"],
        &["not a file", "reads the columns a, b, c", "--input"],
    );
    add(&["predict", &p("table_model.safetensors"), "--input", &p("missing.csv")], &["missing.csv"]);
    add(&["evaluate", &p("table_model.safetensors"), "--data", &p("no_target.csv")], &["no_target.csv", "no column"]);
    add(&["evaluate", &p("table_model.safetensors"), "--data", &p("mnist")], &["mnist"]);
    write("image.png", &[137, 80, 78, 71, 13, 10, 26, 10, 0, 0]);
    write("notpng.png", b"hello");
    add(&["predict", &p("image_model.safetensors"), &p("image.png")], &["image.png"]);
    add(&["predict", &p("image_model.safetensors"), &p("notpng.png")], &["notpng.png"]);
    add(&["predict", &p("image_model.safetensors"), &p("t.csv")], &["t.csv", "neither a PNG image nor an IDX file"]);
    add(&["predict", &p("image_model.safetensors"), &p("mnist/t10k-images-idx3-ubyte"), "--index", "99"], &["99"]);
    add(&["predict", &p("image_model.safetensors"), &p("mnist/t10k-images-idx3-ubyte")], &["--index"]);
    add(&["predict", &p("image_model.safetensors")], &["give an input"]);
    add(&["predict", &p("image_model.safetensors"), "--input", &p("t.csv")], &["not trained on a table"]);
    add(&["evaluate", &p("image_model.safetensors"), "--data", &p("magic"), "--split", "train"], &["magic"]);
    add(&["evaluate", &p("image_model.safetensors"), "--data", &p("mnist"), "--split", "nope"], &["nope"]);
    add(
        &["export", &p("table_model.safetensors"), "--format", "glove", "--output", &t.s("v.txt")],
        &["no text column"],
    );
    add(
        &["export", &p("image_model.safetensors"), "--format", "glove", "--output", &t.s("v.txt")],
        &["image_model.safetensors"],
    );
    add(&["export-vectors", &p("image_model.safetensors"), "--output", &t.s("v.txt")], &["image_model.safetensors"]);
    add(&["export", &p("missing.safetensors"), "--format", "onnx"], &["missing.safetensors"]);
    add(&["export", &p("t.csv"), "--format", "onnx"], &["t.csv"]);
    add(&["export", &p("image_model.safetensors"), "--format", "onnx", "--output", &p("nowhere/m.onnx")], &["nowhere"]);
    add(&["export", &p("image_model.safetensors"), "--format", "tflite"], &["tflite", "onnx"]);
    add(
        &["export", &p("image_model.safetensors"), "--format", "onnx", "--output", &p("image_model.safetensors")],
        &["image_model.safetensors", "is the file being read"],
    );
    add(
        &["export", &p("image_model.safetensors"), "--format", "onnx", "--output", &p("mnist")],
        &["mnist is a folder"],
    );

    // --- An output that is a file the command reads (by another spelling too), or one that cannot be a file:
    // refused before any work (predict had replaced its input rows and exited 0; train had trained fully
    // and then failed on an empty path).
    let data_as_output = TABLE_CONFIG.replace("[train]", "[output]\nmodel = \"t.csv\"\n\n[train]");
    write("out_is_data.toml", data_as_output.as_bytes());
    write(
        "out_is_self.toml",
        TABLE_CONFIG.replace("[train]", "[output]\nmodel = \"out_is_self.toml\"\n\n[train]").as_bytes(),
    );
    write("out_empty.toml", TABLE_CONFIG.replace("[train]", "[output]\nmodel = \"\"\n\n[train]").as_bytes());
    write("out_folder.toml", TABLE_CONFIG.replace("[train]", "[output]\nmodel = \"mnist\"\n\n[train]").as_bytes());
    write("cv_missing.toml", TABLE_CONFIG.replace("t.csv", "missing.csv").as_bytes());
    write("best.toml", TABLE_CONFIG.as_bytes());
    let same = "is the file being read";
    let model = p("table_model.safetensors");
    add(&["predict", &model, "--input", &p("t.csv"), "--output", &p("t.csv")], &["t.csv", same]);
    add(&["predict", &model, "--input", &p("t.csv"), "--output", &p("../corpus/t.csv")], &["t.csv", same]);
    add(&["predict", &model, "--input", &p("t.csv"), "--output", &model], &["table_model.safetensors", same]);
    add(&["embed", &p("nomodel"), "--input", &p("t.csv"), "--column", "c", "--output", &p("t.csv")], &[same]);
    add(&["train", &p("out_is_data.toml")], &["[output] model", "t.csv", same]);
    add(&["train", &p("out_is_self.toml")], &["[output] model", "out_is_self.toml", same]);
    add(&["train", &p("out_empty.toml")], &["[output] model is empty"]);
    add(&["train", &p("out_folder.toml")], &["[output] model", "is a folder"]);
    add(&["train", &p("ok.toml"), "--output", &p("ok.toml")], &["--output", same]);
    add(&["search", &p("best.toml"), "--set", "model.l2=0.1,0.2"], &["best.toml", same]);
    add(&["cv", &p("ok.toml"), "--output", &p("ok.toml")], &["--output", same]);
    // A cross-validation that fails before its first fold leaves the file it was to write as it was.
    add(&["cv", &p("cv_missing.toml"), "--output", &p("existing.safetensors")], &["missing.csv"]);
    add(&["data", "audit", &p("t.csv"), "--json", &p("t.csv")], &["--json", same]);
    add(&["evaluate", &model, "--data", &p("t.csv"), "--batch-size", "0"], &["--batch-size 0"]);
    // A number column with one stray word in 40 rows, or a number past f32's range: the row, not a category
    // or an internal message.
    let stray40: String = (0..40)
        .map(|i| format!("{},{}\n", if i == 9 { "abc".to_string() } else { (i % 7).to_string() }, i % 2))
        .collect();
    write("stray40.csv", format!("a,y\n{stray40}").as_bytes());
    let huge: String = (0..40)
        .map(|i| format!("{},{}\n", if i == 3 { "1e39".to_string() } else { (i % 7).to_string() }, i % 2))
        .collect();
    write("huge.csv", format!("a,y\n{huge}").as_bytes());
    add(
        &["train", "--data", &p("stray40.csv"), "--target", "y", "--run-dir", &run_dir],
        &["column `a`", "row 10", "abc"],
    );
    add(&["train", "--data", &p("huge.csv"), "--target", "y", "--run-dir", &run_dir], &["column `a`", "row 4", "1e39"]);
    // The assistant served alone (no other model) gets as far as reading its FAQ.
    let faq = p("nofaq.csv");
    add(
        &[
            "serve",
            "--assistant",
            &format!("shop={faq}"),
            "--assistant-model",
            &p("x.gguf"),
            "--assistant-embedder",
            &p("nodir"),
        ],
        &["nofaq.csv"],
    );
    write("nonfinite_rows.csv", b"a,b,c\n1,inf,r\n");
    add(&["predict", &model, "--input", &p("nonfinite_rows.csv")], &["column `b`", "row 1", "inf"]);
    add(
        &["index", "build", &p("nomodel"), "--input", &p("t.csv"), "--column", "c", "--output", &p("nodir/x")],
        &["nodir"],
    );
    add(&["index", "query", &p("noindex"), "  "], &["question is empty"]);

    // --- Run folders and flags.
    add(&["train", "--resume", &p("nowhere")], &["nowhere"]);
    add(&["train", "--resume", &p("mnist")], &["mnist"]);
    add(&["plot", &p("nowhere")], &["nowhere"]);
    add(&["plot", &p("mnist")], &["mnist", "not a run folder"]);
    add(&["report", &p("mnist")], &["mnist", "not a run folder"]);
    add(&["train", &p("ok.toml"), "--run-dir", &p("t.csv")], &["--run-dir", "t.csv", "is a file"]);
    add(&["train", &p("ok.toml"), "--resume", &p("mnist")], &["--resume"]);
    add(&["train", "--data", &p("t.csv")], &["--target"]);
    add(&["train"], &["give a config"]);
    add(&["train", &p("ok.toml"), "--epochs", "0"], &["epochs"]);
    add(&["train", "--data", &p("t.csv"), "--target", "y", "--set", "train.epochs"], &["train.epochs"]);
    add(&["train", "--data", &p("t.csv"), "--target", "y", "--set", "train.nope=1"], &["nope"]);
    add(&["train", "--data", &p("t.csv"), "--target", "y", "--set", "train.epochs=[1"], &["train.epochs"]);
    add(&["train", "--data", &p("t.csv"), "--target", "y", "--set", "data.target=3"], &["target"]);
    add(&["cv", "--data", &p("t.csv"), "--target", "y", "--folds", "1"], &["--folds 1"]);
    add(&["cv", "--data", &p("t.csv"), "--target", "y", "--output", &p("no/dir/cv.jsonl")], &["no/dir"]);
    add(&["search", &p("ok.toml"), "--set", "model.l2=0.1", "--random", "0"], &["--random"]);
    add(&["search", &p("ok.toml"), "--set", "model.nope=1,2"], &["nope"]);
    add(&["search", &p("ok.toml"), "--set", "model.l2"], &["model.l2"]);
    add(&["--threads", "0", "train", &p("ok.toml")], &["threads"]);
    add(&["--device", "tpu", "train", &p("ok.toml")], &["device `tpu`", "cpu, cuda"]);
    add(&["train", &p("ok.toml"), "--set", "train.device=\"gpu\""], &["train.device", "cpu, cuda"]);
    add(&["--device", "cuda", "generate", &p("x.gguf"), "hi"], &["CPU only"]);
    // Without a GPU (or a kiln built without CUDA) a CUDA run is refused before anything is written.
    if !std::path::Path::new("/dev/nvidia0").exists() {
        add(&["--device", "cuda", "train", &p("ok.toml")], &["device error", "CUDA"]);
        add(&["train", &p("ok.toml"), "--set", "train.device=\"cuda\""], &["device error", "CUDA"]);
    }
    // Each as one line with the usage folded in, and the help to read.
    let clap_cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["nope"], "(usage: kiln [OPTIONS] <COMMAND>; see `kiln --help`)"),
        (vec!["train", "--epochs", "-1", "x.toml"], "see `kiln train --help`"),
        (vec!["train", "--epochs", "ten", "x.toml"], "'ten' for '--epochs"),
        (vec!["--threads", "abc", "train"], "see `kiln train --help`"),
        (vec!["cv", "--folds", "x"], "see `kiln cv --help`"),
        (vec!["search", "x.toml"], "not provided: --set"),
        (vec!["predict"], "not provided: <MODEL> (usage: kiln predict <MODEL> [INPUT]; see `kiln predict --help`)"),
        (vec!["train", "--bogus", "x.toml"], "'--bogus' found; tip: to pass"),
    ];
    for (a, want) in clap_cases {
        cases.push(Case { args: a.iter().map(|s| s.to_string()).collect(), want: vec![want.into()], clap: true });
    }
    // A command group without its command shows the group's help, as clap does (exit 2).
    let o = kiln(&["data"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("audit"), "{}", String::from_utf8_lossy(&o.stderr));

    let before = snapshot(&c);
    let mut failures = Vec::new();
    for case in &cases {
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let o = kiln(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        let shown = format!("kiln {}", args.join(" "));
        let problem = if err.contains("panicked") || o.status.code().is_none() {
            Some(format!("panicked or was killed ({:?})", o.status))
        } else if o.status.code() != Some(if case.clap { 2 } else { 1 }) {
            Some(format!("exit {:?}", o.status.code()))
        } else {
            // Warnings may come first; the error is the last line, and the only `error:` one.
            let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
            let stray = err.lines().filter(|l| !l.starts_with("error:") && !l.starts_with("warning:")).count();
            if errors.len() != 1 || stray > 0 {
                Some("not one `error:` line".to_string())
            } else {
                let missing: Vec<&String> = case.want.iter().filter(|w| !errors[0].contains(w.as_str())).collect();
                (!missing.is_empty()).then(|| format!("does not name {missing:?}"))
            }
        };
        if let Some(why) = problem {
            failures.push(format!("{shown}\n    {why}: {}", err.trim()));
        }
    }
    let after = snapshot(&c);
    let changed: Vec<&PathBuf> =
        before.keys().chain(after.keys()).filter(|k| before.get(*k) != after.get(*k)).collect();
    assert!(changed.is_empty(), "files on disk changed: {changed:?}");
    assert_eq!(std::fs::read(c.join("existing.safetensors")).unwrap(), b"a model the user keeps");
    assert!(!t.path("runs/r").exists(), "a failed run leaves no folder behind");
    println!("{} bad inputs through the binary", cases.len());
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
