//! The TOML config: the MNIST example parses and builds; mistakes get one line with a suggestion.

use kiln::config::RunConfig;

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
    let c = RunConfig::from_file(EXAMPLE).unwrap();
    assert_eq!((c.train.epochs, c.train.batch_size, c.train.validation_split), (10, 64, 0.1));
    assert!(c.data.path.ends_with("data/mnist"));
    let m = c.build_model().unwrap();
    assert_eq!(m.param_counts().0, 693_962);
    // Printing the resolved config and reading it back gives the same config.
    let again = RunConfig::parse(&c.to_toml()).unwrap();
    assert_eq!(again.model, c.model);
    assert_eq!(again.train, c.train);
}

#[test]
fn unknown_keys_name_the_line_and_the_nearest_key() {
    let e = RunConfig::parse(&minimal("", "epohcs = 3")).err().unwrap();
    assert!(e.contains("unknown key `epohcs`") && e.contains("did you mean `epochs`?") && e.contains("line "), "{e}");
    let e = RunConfig::parse(&minimal("[[model.layers]]\ntype = \"dense\"\nunit = 3", "")).err().unwrap();
    assert!(e.contains("did you mean `units`?"), "{e}");
    let e = RunConfig::parse(&minimal("[[model.layers]]\ntype = \"dens\"\nunits = 3", "")).err().unwrap();
    assert!(e.contains("unknown value `dens`") && e.contains("did you mean `dense`?"), "{e}");
    let e = RunConfig::parse(&minimal("", "optimizer = \"adma\"")).err().unwrap();
    assert!(e.contains("did you mean `adam`?"), "{e}");
    let e = RunConfig::parse(&minimal("", "optimizer = { type = \"adam\", learning_rat = 0.1 }")).err().unwrap();
    assert!(e.contains("did you mean `learning_rate`?"), "{e}");
    let e = RunConfig::parse("[data]\nformat = \"mnist\"\npath = 3\n").err().unwrap();
    assert!(e.contains("line 3"), "{e}");
}

#[test]
fn optimizer_by_name_or_by_table() {
    let c = RunConfig::parse(&minimal("", "optimizer = \"sgd\"")).unwrap();
    assert_eq!(c.train.optimizer.learning_rate(), 0.01);
    let c = RunConfig::parse(&minimal("", "optimizer = { type = \"rmsprop\", learning_rate = 0.05 }")).unwrap();
    assert_eq!(c.train.optimizer.learning_rate(), 0.05);
    let c = RunConfig::parse(&minimal("[[model.layers]]\ntype = \"dense\"\nunits = 3\nkernel_size = 3", ""));
    assert!(c.is_err());
    let bad = RunConfig::parse(&minimal("", "optimizer = { type = \"adam\", learning_rate = -1.0 }")).unwrap();
    assert!(bad.build_model().err().unwrap().to_string().contains("learning_rate"));
}

/// A mistake inside a `[[model.layers]]` or `[[model.nodes]]` table is reported at its own line, not at the
/// table's header.
#[test]
fn a_typo_inside_a_layer_table_names_its_own_line() {
    let layers = "[[model.layers]]\ntype = \"flatten\"\n\n[[model.layers]]\ntype = \"dense\"\nactivation = \"relu\"\nunitz = 3\n";
    let text = minimal(layers, "");
    let want = text.lines().position(|l| l.starts_with("unitz")).unwrap() + 1;
    let e = RunConfig::parse(&text).err().unwrap();
    assert!(e.starts_with(&format!("line {want}: unknown key `unitz`")), "{e}");
    let nodes = "[[model.nodes]]\ntype = \"flatten\"\n\n[[model.nodes]]\ntype = \"concat\"\ninputs = [\"flatten\"]\n";
    let text = minimal(nodes, "");
    let want = text.lines().position(|l| l.contains("\"concat\"")).unwrap() + 1;
    let e = RunConfig::parse(&text).err().unwrap();
    assert!(e.starts_with(&format!("line {want}: unknown value `concat`")), "{e}");
    let nodes = "[[model.nodes]]\ntype = \"dense\"\nunits = 3\ninput = [\"x\"]\n";
    let e = RunConfig::parse(&minimal(nodes, "")).err().unwrap();
    assert!(e.contains("did you mean `inputs`?"), "{e}");
}
