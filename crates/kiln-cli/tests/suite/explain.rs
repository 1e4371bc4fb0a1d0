//! `kiln explain` as a user runs it: an image's heatmaps (integrated gradients, saliency, occlusion), a table
//! row's columns, permutation importance over a file, a text's terms; and every wrong request as one line.

use crate::common::*;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    stdout(o)
}

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let info = decoder.read_info().unwrap();
    (info.info().width, info.info().height)
}

#[test]
fn images_get_heatmaps_where_their_digit_is() {
    let t = Tmp::new("explain-images");
    write_mnist(&t.path("data"), 300, 100);
    std::fs::write(t.path("run.toml"), config(LAYERS_OK, "")).unwrap();
    ok(&kiln(&["train", &t.s("run.toml"), "--quiet"]));
    let (model, images, out) = (t.s("model.safetensors"), t.s("data/t10k-images-idx3-ubyte"), t.s("out"));
    // Test image 3 is a digit 3: a bright bar on row 10 (write_mnist).
    let o = ok(&kiln(&["explain", &model, &images, "--index", "3", "--output-dir", &out, "--class", "5"]));
    assert!(o.contains("predicted class: 3"), "{o}");
    assert!(o.contains("class 3: integrated gradients (50 steps) sum to"), "{o}");
    for k in [3, 5] {
        let stem = format!("t10k-images-idx3-ubyte_3_integrated_gradients_class{k}");
        assert_eq!(png_size(&t.path(&format!("out/{stem}.png"))).1, 28 * 11 + 70);
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(t.path(&format!("out/{stem}.json"))).unwrap()).unwrap();
        let a: Vec<f64> = j["attributions"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(a.len(), 784);
        // Completeness, as printed: the attributions sum to f(image) − f(black).
        let gap = j["output"].as_f64().unwrap() - j["baseline_output"].as_f64().unwrap();
        assert!((a.iter().sum::<f64>() - gap).abs() <= 0.01 * gap.abs().max(0.01), "class {k}: {gap}");
        if k == 3 {
            // Most of the attribution lies on the bar's rows.
            let bar: f64 = a[9 * 28..12 * 28].iter().map(|v| v.abs()).sum();
            let all: f64 = a.iter().map(|v| v.abs()).sum();
            assert!(bar > 0.5 * all, "the bar holds {bar} of {all}");
        }
    }
    for (method, extra) in [("saliency", &[][..]), ("occlusion", &["--window", "6", "--stride", "3"][..])] {
        let mut args = vec!["explain", &model, &images, "--index", "3", "--method", method, "--output-dir", &out];
        args.extend_from_slice(extra);
        ok(&kiln(&args));
        assert!(t.path(&format!("out/t10k-images-idx3-ubyte_3_{method}_class3.png")).exists(), "{method}");
    }

    // Wrong requests: one line each, nothing written.
    let bad = |args: &[&str], want: &[&str]| {
        let mut all = vec!["explain", &model];
        all.extend_from_slice(args);
        assert_fails(&kiln(&all), want);
    };
    bad(&[&images, "--index", "100"], &["--index 100 is out of range", "100 images"]);
    bad(&[&images], &["--index N"]);
    bad(&[&images, "--index", "1", "--class", "12"], &["--class 12", "classes 0 to 9"]);
    bad(&[&images, "--index", "1", "--method", "shap"], &["--method shap", "integrated_gradients"]);
    bad(&[&images, "--index", "1", "--rule", "simpson"], &["simpson", "riemann_trapezoid"]);
    bad(&[&images, "--index", "1", "--steps", "1"], &["--steps 1", "at least 2"]);
    bad(&["--input", &images, "--row", "2"], &["takes images", "--index"]);
    bad(&[&images, "--index", "1", "--method", "occlusion", "--window", "40"], &["does not fit"]);
    bad(&["--data", &images], &["not trained on a table"]);
    bad(&[&images, "--index", "1", "--steps", "20000"], &["--steps 20000", "at most 10000"]);
    bad(&[&images, "--index", "1", "--baseline", "NaN"], &["--baseline NaN", "finite"]);
    std::fs::write(t.path("a-file"), "").unwrap();
    bad(&[&images, "--index", "1", "--output-dir", &t.s("a-file")], &["is a file, not a folder"]);
    bad(&[&t.s("missing.png")], &["missing.png"]);
}

#[test]
fn table_rows_and_files_are_explained_by_column() {
    let t = Tmp::new("explain-tables");
    // The first 3000 rows of adult for a quick model, and 400 others to measure importance on.
    let text = std::process::Command::new("sh")
        .args(["-c", &format!("zcat {ROOT}/data/adult/adult.csv.gz | head -3401")])
        .output()
        .unwrap()
        .stdout;
    let text = String::from_utf8(text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(t.path("train.csv"), lines[..3001].join("\n") + "\n").unwrap();
    std::fs::write(t.path("rows.csv"), [&lines[..1], &lines[3001..]].concat().join("\n") + "\n").unwrap();
    let cfg = "[data]\npath = \"train.csv\"\ntarget = \"income\"\nignore = [\"fnlwgt\"]\n[train]\nepochs = 10\n";
    std::fs::write(t.path("adult.toml"), cfg).unwrap();
    ok(&kiln(&["train", &t.s("adult.toml"), "--run-dir", &t.s("run"), "--quiet"]));
    let (model, rows, out) = (t.s("run/model.safetensors"), t.s("rows.csv"), t.s("out"));

    let o = ok(&kiln(&["explain", &model, "--input", &rows, "--row", "7", "--class", ">50K", "--output-dir", &out]));
    assert!(o.starts_with("# Why p(>50K) is "), "{o}");
    for column in ["age", "education", "marital-status", "hours-per-week", "native-country"] {
        assert!(o.contains(&format!("| {column} |")), "{column}: {o}");
    }
    assert!(!o.contains("| fnlwgt |"), "an ignored column is not the model's: {o}");
    for f in ["md", "png", "json"] {
        assert!(t.path(&format!("out/rows_row7__50K.{f}")).exists(), "{f}");
    }
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("out/rows_row7__50K.json")).unwrap()).unwrap();
    let sum: f64 = j["columns"].as_array().unwrap().iter().map(|c| c["attribution"].as_f64().unwrap()).sum();
    let gap = j["output"].as_f64().unwrap() - j["baseline_output"].as_f64().unwrap();
    let size: f64 = j["columns"].as_array().unwrap().iter().map(|c| c["attribution"].as_f64().unwrap().abs()).sum();
    assert!((sum - gap).abs() <= 0.01 * gap.abs().max(size), "{sum} vs {gap}");
    // The other class: the same attributions, negated.
    ok(&kiln(&["explain", &model, "--input", &rows, "--row", "7", "--class", "<=50K", "--output-dir", &out]));
    let k: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("out/rows_row7___50K.json")).unwrap()).unwrap();
    let (a, b) = (&j["columns"][0]["attribution"], &k["columns"][0]["attribution"]);
    assert!((a.as_f64().unwrap() + b.as_f64().unwrap()).abs() < 1e-5, "{a} {b}");

    let o = ok(&kiln(&["explain", &model, "--data", &rows, "--repeats", "3", "--output-dir", &out]));
    assert!(o.contains("accuracy on 400 rows"), "{o}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("out/importance.json")).unwrap()).unwrap();
    let cols = j["columns"].as_array().unwrap();
    assert_eq!(cols.len(), 13, "every column but the target and the ignored one");
    for c in cols {
        assert_eq!(c["importances"].as_array().unwrap().len(), 3);
        assert!(c["low"].as_f64().unwrap() <= c["mean"].as_f64().unwrap());
    }
    assert!(t.path("out/importance.png").exists() && t.path("out/importance.md").exists());

    let bad = |args: &[&str], want: &[&str]| {
        let mut all = vec!["explain", &model];
        all.extend_from_slice(args);
        assert_fails(&kiln(&all), want);
    };
    bad(&["--input", &rows, "--row", "0"], &["--row 0 is out of range", "400 rows"]);
    bad(&["--input", &rows, "--row", "401"], &["--row 401"]);
    bad(&["--input", &rows], &["--row N"]);
    bad(&["--input", &rows, "--row", "2", "--class", "rich"], &["--class rich", "<=50K, >50K"]);
    bad(&["--input", &rows, "--row", "2", "--method", "saliency"], &["saliency", "for images"]);
    bad(&["--data", &rows, "--scoring", "r2"], &["`r2` is for regression"]);
    bad(&["--data", &rows, "--scoring", "auc"], &["unknown scoring `auc`"]);
    bad(&["--data", &rows, "--repeats", "0"], &["--repeats 0", "1 to 1000"]);
    bad(&["--data", &rows, "--repeats", "100000000"], &["1 to 1000"]);
    std::fs::write(t.path("header.csv"), lines[0].to_string() + "\n").unwrap();
    bad(&["--input", &t.s("header.csv"), "--row", "1"], &["header.csv", "no rows"]);
    bad(&["some text"], &["trained on a table", "--input FILE --row N"]);
}

#[test]
fn texts_are_shaded_term_by_term() {
    let t = Tmp::new("explain-text");
    let mut csv = String::from("review,stars\n");
    let fillers = ["the dress", "this shirt fits", "color and size", "ordered it in blue"];
    for i in 0..400 {
        let bad = i % 2 == 1;
        csv +=
            &format!("{} {},{}\n", fillers[(i / 2) % 4], if bad { "awful" } else { "lovely" }, if bad { 1 } else { 5 });
    }
    std::fs::write(t.path("r.csv"), csv).unwrap();
    let cfg = "[data]\npath = \"r.csv\"\ntarget = \"stars\"\n[data.classes]\n1 = \"negative\"\n5 = \"positive\"\n\
               [data.columns]\nreview = \"text\"\n[data.prepare.text]\nngrams = 1\nmin_freq = 1\nlength = 8\ndim = 8\n\
               [train]\nepochs = 20\n";
    std::fs::write(t.path("r.toml"), cfg).unwrap();
    ok(&kiln(&["train", &t.s("r.toml"), "--run-dir", &t.s("run"), "--quiet"]));
    let o =
        ok(&kiln(&["explain", &t.s("run/model.safetensors"), "this shirt fits awful", "--output-dir", &t.s("out")]));
    assert!(o.contains("# Why p(negative) is"), "{o}");
    assert!(o.contains("- toward: awful ("), "{o}");
    let html = std::fs::read_to_string(t.path("out/text_this_shirt_fits_awful_negative.html")).unwrap();
    assert_eq!(html.matches("<span").count(), 4, "one shaded span per term: {html}");
    assert!(png_size(&t.path("out/text_this_shirt_fits_awful_negative_words.png")).0 == 760);
    // A mistyped file is not explained as a text; an existing one points to --input.
    let m = t.s("run/model.safetensors");
    assert_fails(&kiln(&["explain", &m, &t.s("reviews.csv")]), &["reviews.csv does not exist", "--input"]);
    assert_fails(&kiln(&["explain", &m, &t.s("r.csv")]), &["r.csv is a file", "--input"]);
    // A file of rows works as for tables; saliency does not apply to texts.
    assert_fails(
        &kiln(&[
            "explain",
            &t.s("run/model.safetensors"),
            "--input",
            &t.s("r.csv"),
            "--row",
            "2",
            "--method",
            "saliency",
        ]),
        &["for images"],
    );
    ok(&kiln(&[
        "explain",
        &t.s("run/model.safetensors"),
        "--input",
        &t.s("r.csv"),
        "--row",
        "2",
        "--output-dir",
        &t.s("out"),
    ]));
    assert!(t.path("out/r_row2_negative.html").exists());
}
