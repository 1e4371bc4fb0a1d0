//! The TOML config: the MNIST example parses and builds; mistakes get one line with a suggestion; images and
//! tables share one schema, each refusing the other's keys, with recipes (`kind`) for both.

use kiln::config::Config;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/mnist/mnist.toml");

fn minimal(extra_layer: &str, extra_train: &str) -> String {
    format!(
        "[data]\nformat = \"mnist\"\npath = \"d\"\n[model]\ninput_shape = [28, 28, 1]\n\
         [[model.layers]]\ntype = \"flatten\"\n{extra_layer}\n[[model.layers]]\ntype = \"dense\"\nunits = 10\n\
         activation = \"softmax\"\n[train]\nloss = \"categorical_crossentropy\"\n{extra_train}\n"
    )
}

#[test]
fn the_example_config_builds_the_reference_model() {
    let c = Config::from_file(EXAMPLE).unwrap();
    assert_eq!((c.train.epochs, c.train.batch_size, c.train.validation_split), (Some(10), Some(64), Some(0.1)));
    assert!(c.data.path.ends_with("data/mnist"));
    let m = c.build_model().unwrap();
    assert_eq!(m.param_counts().0, 693_962);
    // Printing the resolved config and reading it back gives the same config.
    let again = Config::parse(&c.to_toml()).unwrap();
    assert_eq!(again.model, c.model);
    assert_eq!(again.train, c.train);
}

#[test]
fn unknown_keys_name_the_line_and_the_nearest_key() {
    let e = Config::parse(&minimal("", "epohcs = 3")).err().unwrap();
    assert!(e.contains("unknown key `epohcs`") && e.contains("did you mean `epochs`?") && e.contains("line "), "{e}");
    let e = Config::parse(&minimal("[[model.layers]]\ntype = \"dense\"\nunit = 3", "")).err().unwrap();
    assert!(e.contains("did you mean `units`?"), "{e}");
    let e = Config::parse(&minimal("[[model.layers]]\ntype = \"dens\"\nunits = 3", "")).err().unwrap();
    assert!(e.contains("unknown value `dens`") && e.contains("did you mean `dense`?"), "{e}");
    // A shortened spelling names the value it begins, not the nearest by edits (`zeros` for `glorot`).
    let dense = "[[model.layers]]\ntype = \"dense\"\nunits = 3\nkernel_initializer = \"glorot\"";
    let e = Config::parse(&minimal(dense, "")).err().unwrap();
    assert!(e.contains("did you mean `glorot_uniform` or `glorot_normal`?"), "{e}");
    let e = Config::parse(&minimal("", "optimizer = \"adma\"")).err().unwrap();
    assert!(e.contains("did you mean `adam`?"), "{e}");
    let e = Config::parse(&minimal("", "optimizer = { type = \"adam\", learning_rat = 0.1 }")).err().unwrap();
    assert!(e.contains("did you mean `learning_rate`?"), "{e}");
    let e = Config::parse("[data]\nformat = \"mnist\"\npath = 3\n").err().unwrap();
    assert!(e.contains("line 3"), "{e}");
}

#[test]
fn optimizer_by_name_or_by_table() {
    let c = Config::parse(&minimal("", "optimizer = \"sgd\"")).unwrap();
    assert_eq!(c.train.optimizer.learning_rate(), 0.01);
    let c = Config::parse(&minimal("", "optimizer = { type = \"rmsprop\", learning_rate = 0.05 }")).unwrap();
    assert_eq!(c.train.optimizer.learning_rate(), 0.05);
    let c = Config::parse(&minimal("[[model.layers]]\ntype = \"dense\"\nunits = 3\nkernel_size = 3", ""));
    assert!(c.is_err());
    let bad = Config::parse(&minimal("", "optimizer = { type = \"adam\", learning_rate = -1.0 }")).unwrap();
    assert!(bad.build_model().err().unwrap().to_string().contains("learning_rate"));
}

/// A mistake inside a `[[model.layers]]` or `[[model.nodes]]` table is reported at its own line, not at the
/// table's header.
#[test]
fn a_typo_inside_a_layer_table_names_its_own_line() {
    let layers = "[[model.layers]]\ntype = \"flatten\"\n\n[[model.layers]]\ntype = \"dense\"\nactivation = \"relu\"\nunitz = 3\n";
    let text = minimal(layers, "");
    let want = text.lines().position(|l| l.starts_with("unitz")).unwrap() + 1;
    let e = Config::parse(&text).err().unwrap();
    assert!(e.starts_with(&format!("line {want}: unknown key `unitz`")), "{e}");
    let nodes = "[[model.nodes]]\ntype = \"flatten\"\n\n[[model.nodes]]\ntype = \"concat\"\ninputs = [\"flatten\"]\n";
    let text = minimal(nodes, "");
    let want = text.lines().position(|l| l.contains("\"concat\"")).unwrap() + 1;
    let e = Config::parse(&text).err().unwrap();
    assert!(e.starts_with(&format!("line {want}: unknown value `concat`")), "{e}");
    let nodes = "[[model.nodes]]\ntype = \"dense\"\nunits = 3\ninput = [\"x\"]\n";
    let e = Config::parse(&minimal(nodes, "")).err().unwrap();
    assert!(e.contains("did you mean `inputs`?"), "{e}");
}

/// One schema: the `[train]` keys are the same for images and tables, the defaults left out are filled
/// in by the kind of data (and printed), and a key of the other kind is an error naming it.
#[test]
fn images_and_tables_share_one_schema() {
    let table = "[data]\npath = \"t.csv\"\ntarget = \"y\"\n";
    let c = Config::parse(table).unwrap();
    assert_eq!(c.kind().unwrap(), kiln::config::DataKind::Table);
    assert_eq!((c.train.epochs, c.train.batch_size, c.train.patience), (Some(30), Some(64), Some(4)));
    assert_eq!(c.model.kind, Some(kiln::config::ModelKind::Mlp));
    let printed = c.to_toml();
    assert!(printed.contains("epochs = 30") && printed.contains("target = \"y\""), "{printed}");
    assert!(!printed.contains("units") && printed.contains("learning_rate = 0.001\n"), "{printed}");
    assert_eq!(Config::parse(&printed).unwrap(), c, "the printed config reads back as itself");
    let images = "[data]\nformat = \"mnist\"\npath = \"d\"\n[model]\nkind = \"cnn\"\n";
    let c = Config::parse(images).unwrap();
    assert_eq!((c.train.epochs, c.train.batch_size, c.train.patience), (Some(1), Some(32), None));
    let printed = c.to_toml();
    assert!(!printed.contains("test_fraction") && !printed.contains("oversample"), "{printed}");
    assert!(!printed.contains("bidirectional") && printed.contains("kernel_size = 3"), "only what cnn uses: {printed}");
    assert_eq!(Config::parse(&printed).unwrap(), c);
    // Keys of the other kind, and written-out layers beside a recipe's settings.
    for (text, want) in [
        (format!("{images}[train]\noversample = true\n"), "train.oversample repeats a table's rows"),
        (
            format!("{}target = \"y\"\n", images.replace("[model]\nkind = \"cnn\"\n", "")),
            "data.target is a key of tables",
        ),
        (format!("{table}[train]\naugment = {{ shift = 0.1 }}\n"), "train.augment changes images"),
        (format!("{table}[model]\ninput_shape = [3]\n"), "model.input_shape"),
        (
            format!("{table}[model]\nhidden = [8]\n[[model.layers]]\ntype = \"dense\"\nunits = 1\n"),
            "model.hidden is a setting of the built-in recipes",
        ),
        ("[data]\npath = \"d\"\n".to_string(), "needs `format = \"mnist\"`"),
        ("[data]\nformat = \"mnist\"\npath = \"d\"\n".to_string(), "[model] needs `kind`"),
        (format!("{images}[train]\npatience = 2\n"), "train.patience = 2 needs validation rows"),
        (format!("{table}[train]\npatience = 2\nvalidation_split = 0.0\n"), "train.patience = 2 needs validation rows"),
        // Written keys are checked whatever their value: these are the defaults, still refused.
        (
            "[data]\nformat = \"mnist\"\npath = \"d\"\ntest_fraction = 0.2\n[model]\nkind = \"cnn\"\n".to_string(),
            "data.test_fraction is a key of tables",
        ),
        (
            format!("{table}[model]\ndropout = 0.1\n[[model.layers]]\ntype = \"dense\"\nunits = 1\n"),
            "model.dropout is a setting of the built-in recipes",
        ),
        // Recipe settings the chosen recipe does not use.
        (format!("{table}[model]\nkind = \"mlp\"\nunits = 64\n"), "model.units does not apply to kind = \"mlp\""),
        (format!("{table}[model]\nkind = \"lstm\"\nkernel_size = 3\n"), "model.kernel_size does not apply"),
        (format!("{images}bidirectional = true\n"), "model.bidirectional does not apply to kind = \"cnn\" for images"),
        (format!("{table}[model]\nhidden = [8, 0]\n"), "must be at least 1"),
        (format!("{table}[model]\ndropout = 1.0\n"), "model.dropout must be in [0, 1)"),
    ] {
        let e = Config::parse(&text).err().unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert!(e.contains(want), "{e}\n(wanted `{want}`)");
    }
}

/// `[model] kind` is the short form for images as for tables: mlp and cnn recipes end in the softmax over
/// MNIST's ten classes; a text recipe on images is refused.
#[test]
fn image_recipes_build_the_models_they_name() {
    let base = "[data]\nformat = \"mnist\"\npath = \"d\"\n[model]\n";
    let c = Config::parse(&format!("{base}kind = \"mlp\"\nhidden = [16]\ndropout = 0.0\n")).unwrap();
    let m = c.build_model().unwrap();
    assert_eq!(m.output_shape(), [10]);
    assert_eq!(m.param_counts().0, 784 * 16 + 16 + 16 * 10 + 10);
    let c = Config::parse(&format!("{base}kind = \"cnn\"\nunits = 4\nkernel_size = 5\nhidden = []\n")).unwrap();
    let m = c.build_model().unwrap();
    let classes: Vec<&str> = m.layers().iter().map(|l| l.config().class_name()).collect();
    assert_eq!(classes, ["Conv2D", "MaxPooling2D", "Flatten", "Dense"]);
    // 5×5 windows: 24×24 after the convolution, 12×12 after pooling.
    assert_eq!(m.param_counts().0, (25 + 1) * 4 + 12 * 12 * 4 * 10 + 10);
    let spec = format!("{:?}", m.layers().iter().map(|l| l.config().clone()).collect::<Vec<_>>());
    assert!(spec.contains("Relu") && spec.contains("Softmax"), "ReLU convolution, softmax output: {spec}");
    let c = Config::parse(&format!("{base}kind = \"lstm\"\n")).unwrap();
    let e = c.build_model().err().unwrap().to_string();
    assert!(e.contains("images take \"mlp\" or \"cnn\""), "{e}");
    let c = Config::parse(&format!("{base}kind = \"mlp\"\ninput_shape = [28, 28]\n")).unwrap();
    let e = c.build_model().err().unwrap().to_string();
    assert!(e.contains("MNIST images are [28, 28, 1]"), "{e}");
}

/// A size mistake is one error naming the layer and the memory it would need, before the allocation (not
/// the process aborting after growing for minutes).
#[cfg(target_os = "linux")]
#[test]
fn a_layer_too_large_for_memory_is_refused_before_allocating() {
    let text = "[data]\nformat = \"mnist\"\npath = \"d\"\n[[model.layers]]\ntype = \"flatten\"\n\
                [[model.layers]]\ntype = \"dense\"\nunits = 10000000000\n";
    let e = Config::parse(text).unwrap().build_model().err().unwrap().to_string();
    assert!(e.contains("layer `dense` (Dense): a weight of shape [784, 10000000000] needs 28.5 TiB"), "{e}");
    assert!(e.contains("of memory available"), "{e}");
    let text = text.replace(
        "type = \"dense\"\nunits = 10000000000",
        "type = \"embedding\"\ninput_dim = 100000\noutput_dim = 100000000",
    );
    let e = Config::parse(&text).unwrap().build_model().err().unwrap().to_string();
    assert!(e.contains("an embedding table of 10000000000000 values needs"), "{e}");
}
