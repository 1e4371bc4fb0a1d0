//! Checking a config against its kind of data and model (`Config::check`, `check_key`): a key of the other
//! kind (`data.target` for MNIST, `train.augment` for a table), a recipe setting the model does not use, a
//! table's targets (each once; with several, no setting that balances one target's classes, and one named
//! output each) and the text settings of 0 are each an error naming the key.

use super::{Config, DataConfig, DataKind, ModelConfig, ModelKind, TrainDefaults};
use kiln_core::{Error, Result};

/// `[data]` keys that only tables use.
const TABLE_DATA_KEYS: [&str; 10] = [
    "target",
    "test_rows",
    "test_fraction",
    "ignore",
    "missing",
    "encoding",
    "columns",
    "classes",
    "positive",
    "prepare",
];

/// `[data]` keys that only interactions use.
const INTERACTION_DATA_KEYS: [&str; 8] =
    ["user", "item", "timestamp", "rating", "min_rating", "users", "items", "eval_negatives"];

/// `[model]` keys that a recommender (built from its `kind`) does not take.
const NOT_RECOMMENDER_MODEL_KEYS: [&str; 8] =
    ["input_shape", "layers", "nodes", "inputs", "outputs", "weights", "pretrained", "freeze"];

/// `[train]` keys that a recommender does not take.
const NOT_RECOMMENDER_TRAIN_KEYS: [&str; 7] =
    ["loss", "metrics", "oversample", "augment", "class_weight", "loss_weights", "clip"];

/// The recommender kinds.
const RECOMMENDERS: [ModelKind; 3] = [ModelKind::Bpr, ModelKind::Ncf, ModelKind::TwoTower];

/// `[model]` keys of the built-in recipes.
const RECIPE_KEYS: [&str; 16] = [
    "units",
    "bidirectional",
    "pooling",
    "embedding_dropout",
    "kernel_size",
    "blocks",
    "heads",
    "dim",
    "numeric_embedding",
    "frequencies",
    "sigma",
    "hidden",
    "dropout",
    "l2",
    "id_dropout",
    "history",
];

/// Whether the recipe `kind` on this kind of data uses the `[model]` setting `key`.
pub(super) fn recipe_uses(data: DataKind, kind: ModelKind, key: &str) -> bool {
    let sequence = ["units", "pooling", "embedding_dropout"];
    if data == DataKind::Interactions || RECOMMENDERS.contains(&kind) {
        return match kind {
            ModelKind::Bpr => matches!(key, "dim" | "l2"),
            ModelKind::Ncf => matches!(key, "dim" | "hidden" | "dropout" | "l2"),
            ModelKind::TwoTower => matches!(key, "dim" | "hidden" | "dropout" | "l2" | "id_dropout" | "history"),
            _ => false,
        };
    }
    matches!(key, "hidden" | "dropout" | "l2")
        || match (data, kind) {
            (_, ModelKind::Mlp) => false,
            (DataKind::Images, ModelKind::Cnn) => matches!(key, "units" | "kernel_size"),
            (DataKind::Images, _) => false,
            (DataKind::Table, ModelKind::Cnn) => sequence.contains(&key) || key == "kernel_size",
            (DataKind::Table, ModelKind::Transformer) => sequence.contains(&key) || matches!(key, "blocks" | "heads"),
            (DataKind::Table, ModelKind::FtTransformer) => {
                matches!(key, "units" | "blocks" | "heads" | "dim" | "numeric_embedding" | "frequencies" | "sigma")
            }
            (DataKind::Table, _) => sequence.contains(&key) || key == "bidirectional",
            (DataKind::Interactions, _) => false,
        }
}

impl Config {
    /// Keys that the config's kind of data does not use are errors, not silently ignored.
    pub fn check(&self) -> Result<()> {
        let kind = self.kind()?;
        let d = &self.data;
        let m = &self.model;
        let t = &self.train;
        if let Some(dev) = &t.device {
            crate::device::check(dev).map_err(|_| {
                Error::Config(format!(
                    "train.device = \"{dev}\": expected one of {}",
                    crate::device::DEVICES.join(", ")
                ))
            })?;
        }
        let recommender = m.kind.is_some_and(|k| RECOMMENDERS.contains(&k));
        if kind == DataKind::Interactions && !recommender {
            return Err(Error::Config(
                "[model] needs kind = \"bpr\", \"ncf\" or \"two_tower\": the recommender to train on these \
                 interactions"
                    .into(),
            ));
        }
        if kind != DataKind::Interactions && recommender {
            return Err(Error::Config(format!(
                "model.kind = \"{}\" is a recommender: it trains on format = \"interactions\"",
                m.kind.map_or("", |k| k.name())
            )));
        }
        if kind == DataKind::Interactions {
            return self.check_interactions();
        }
        // Keys set away from their defaults (a config made in code; a file's keys are checked as written).
        let (blank, md) = (DataConfig::table(&d.path, ""), ModelConfig::default());
        for (key, set) in [
            ("data.target", !d.target.is_empty()),
            ("data.test_rows", d.test_rows.is_some()),
            ("data.test_fraction", d.test_fraction != blank.test_fraction),
            ("data.ignore", d.ignore != blank.ignore),
            ("data.missing", d.missing != blank.missing),
            ("data.encoding", d.encoding.is_some()),
            ("data.positive", d.positive.is_some()),
            ("data.columns", d.columns != blank.columns),
            ("data.classes", d.classes != blank.classes),
            ("data.prepare", d.prepare != blank.prepare),
            ("train.oversample", t.oversample),
            ("train.augment", t.augment.is_some()),
            ("model.input_shape", !m.input_shape.is_empty()),
            ("model.kind", m.kind.is_some()),
            ("model.units", m.units != md.units),
            ("model.bidirectional", m.bidirectional),
            ("model.pooling", m.pooling.is_some()),
            ("model.embedding_dropout", m.embedding_dropout != 0.0),
            ("model.kernel_size", m.kernel_size != md.kernel_size),
            ("model.blocks", m.blocks != md.blocks),
            ("model.heads", m.heads != md.heads),
            ("model.dim", m.dim != md.dim),
            ("model.numeric_embedding", m.numeric_embedding != md.numeric_embedding),
            ("model.frequencies", m.frequencies != md.frequencies),
            ("model.sigma", m.sigma != md.sigma),
            ("model.hidden", m.hidden != md.hidden),
            ("model.dropout", m.dropout != md.dropout),
            ("model.l2", m.l2 != 0.0),
            ("model.id_dropout", m.id_dropout != md.id_dropout),
            ("model.history", m.history != 0),
            ("train.negatives", t.negatives.is_some()),
        ] {
            if set && !(key == "data.target" && kind == DataKind::Table) {
                self.check_key(key)?;
            }
        }
        if m.freeze > 0 && m.pretrained.is_none() {
            return Err(Error::Config(
                "model.freeze keeps parts of a pretrained encoder fixed: it goes with model.pretrained".into(),
            ));
        }
        if let Some(p) = &m.pretrained {
            let why = if kind != DataKind::Table {
                Some("a table with a text column; MNIST images are not text")
            } else if m.explicit() {
                Some(
                    "its own recipe (the encoder, then `hidden` Dense layers); leave out [[model.layers]] and [[model.nodes]]",
                )
            } else if m.kind.is_some_and(|k| k != ModelKind::Mlp) {
                Some("its own recipe (the encoder, then `hidden` Dense layers); leave model.kind out")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(Error::Config(format!("model.pretrained = {}: fine-tuning takes {why}", p.display())));
            }
        }
        if !m.inputs.is_empty() && (kind != DataKind::Table || m.nodes.is_empty()) {
            return Err(Error::Config(
                "model.inputs names the inputs of a table's graph: it goes with [[model.nodes]] and a table".into(),
            ));
        }
        if !m.outputs.is_empty() && !m.explicit() {
            return Err(Error::Config(
                "model.outputs names output layers of [[model.layers]] or [[model.nodes]]; a recipe (`kind`) \
                 makes one output per target by itself"
                    .into(),
            ));
        }
        if kind == DataKind::Images && m.outputs.len() > 1 {
            return Err(Error::Config(format!(
                "model.outputs names {} layers, but MNIST images have one label: name one, or leave it out",
                m.outputs.len()
            )));
        }
        if kind == DataKind::Table {
            self.check_targets()?;
            let tx = &d.prepare.text;
            for (key, v) in [
                ("ngrams", tx.ngrams),
                ("min_freq", tx.min_freq),
                ("max_tokens", tx.max_tokens),
                ("length", tx.length),
                ("dim", tx.dim),
            ] {
                if v == 0 {
                    return Err(Error::Config(format!(
                        "data.prepare.text.{key} must be at least 1 (0 leaves the model no words to read)"
                    )));
                }
            }
        }
        if m.explicit() {
            if !m.layers.is_empty() && !m.nodes.is_empty() {
                return Err(Error::Config(
                    "[model] needs `layers` (a line of layers) or `nodes` (a graph), not both".into(),
                ));
            }
        } else if kind == DataKind::Images && m.kind.is_none() {
            return Err(Error::Config(
                "[model] needs `kind` (\"mlp\" or \"cnn\"), `layers` (a line of layers) or `nodes` (a graph)".into(),
            ));
        }
        if let Some(p) = t.patience
            && t.validation_split.unwrap_or(TrainDefaults::of(kind).validation_split) <= 0.0
        {
            return Err(Error::Config(format!(
                "train.patience = {p} needs validation rows: set train.validation_split above 0, or leave \
                 patience out"
            )));
        }
        for (key, v) in [("model.dropout", m.dropout), ("model.embedding_dropout", m.embedding_dropout)] {
            if !(0.0..1.0).contains(&v) {
                return Err(Error::Config(format!("{key} must be in [0, 1), got {v}")));
            }
        }
        if m.hidden.contains(&0) || m.units == 0 || m.kernel_size == 0 {
            return Err(Error::Config(
                "model.hidden, model.units and model.kernel_size must be at least 1 (a layer of 0 units)".into(),
            ));
        }
        Ok(())
    }

    /// A recommendation config: no key of tables or images, and the recommender's settings in range.
    fn check_interactions(&self) -> Result<()> {
        let (d, m, t) = (&self.data, &self.model, &self.train);
        let blank = DataConfig::table(&d.path, "");
        let md = ModelConfig::default();
        for (key, set) in [
            ("data.target", !d.target.is_empty()),
            ("data.test_rows", d.test_rows.is_some()),
            ("data.test_fraction", d.test_fraction != blank.test_fraction),
            ("data.positive", d.positive.is_some()),
            ("data.columns", d.columns != blank.columns),
            ("data.classes", d.classes != blank.classes),
            ("data.prepare", d.prepare != blank.prepare),
            ("model.input_shape", !m.input_shape.is_empty()),
            ("model.layers", !m.layers.is_empty()),
            ("model.nodes", !m.nodes.is_empty()),
            ("model.inputs", !m.inputs.is_empty()),
            ("model.outputs", !m.outputs.is_empty()),
            ("model.weights", m.weights.is_some()),
            ("model.pretrained", m.pretrained.is_some()),
            ("model.freeze", m.freeze > 0),
            ("model.units", m.units != md.units),
            ("model.blocks", m.blocks != md.blocks),
            ("model.heads", m.heads != md.heads),
            ("model.hidden", m.hidden != md.hidden),
            ("model.dropout", m.dropout != md.dropout),
            ("model.id_dropout", m.id_dropout != md.id_dropout),
            ("model.history", m.history != 0),
            ("train.loss", t.loss.is_some()),
            ("train.metrics", !t.metrics.is_empty()),
            ("train.oversample", t.oversample),
            ("train.augment", t.augment.is_some()),
            ("train.class_weight", t.class_weight.is_some()),
            ("train.loss_weights", !t.loss_weights.is_empty()),
        ] {
            if set {
                self.check_key(key)?;
            }
        }
        self.recommender(m.kind.unwrap_or(ModelKind::Bpr)).check()?;
        if d.eval_negatives == Some(0) {
            return Err(Error::Config("data.eval_negatives must be at least 1".into()));
        }
        if let Some(p) = t.patience
            && t.validation_split.unwrap_or(0.1) <= 0.0
        {
            return Err(Error::Config(format!(
                "train.patience = {p} needs the validation items: leave train.validation_split above 0, or leave \
                 patience out"
            )));
        }
        Ok(())
    }

    /// The recommender a config describes.
    pub fn recommender(&self, kind: ModelKind) -> crate::recommend::RecommenderConfig {
        use crate::recommend::{RecommenderConfig, RecommenderKind};
        let k = match kind {
            ModelKind::Ncf => RecommenderKind::Ncf,
            ModelKind::TwoTower => RecommenderKind::TwoTower,
            _ => RecommenderKind::Bpr,
        };
        let (m, base) = (&self.model, RecommenderConfig::new(k));
        RecommenderConfig {
            kind: k,
            dim: m.dim,
            hidden: m.hidden.clone(),
            dropout: m.dropout,
            l2: m.l2,
            negatives: self.train.negatives.unwrap_or(base.negatives),
            id_dropout: m.id_dropout,
            history: m.history,
        }
    }

    /// A table's targets: each once, not ignored, and with several, no setting that balances one target's
    /// classes; written-out models name one output per target.
    fn check_targets(&self) -> Result<()> {
        let (d, t, m) = (&self.data, &self.train, &self.model);
        let ts = &d.target;
        for (i, name) in ts.iter().enumerate() {
            if ts[..i].contains(name) {
                return Err(Error::Config(format!("data.target names `{name}` twice")));
            }
            if d.ignore.contains(name) {
                return Err(Error::Config(format!("data.target `{name}` is also in data.ignore; keep it in one")));
            }
        }
        if ts.len() > 1 {
            let several = format!("this config has {} targets ({})", ts.len(), ts.join(", "));
            for (key, set, what) in [
                ("data.classes", !d.classes.is_empty(), "maps the values of one target to classes"),
                ("train.oversample", t.oversample, "repeats rows to balance one target's classes"),
                ("train.class_weight", t.class_weight.is_some(), "weighs one target's classes"),
            ] {
                if set {
                    return Err(Error::Config(format!("{key} {what}, and {several}: leave it out")));
                }
            }
            if m.explicit() && m.outputs.len() != ts.len() {
                return Err(Error::Config(format!(
                    "{several}: name one output layer for each, in that order, with model.outputs = [...] \
                     (it names {})",
                    m.outputs.len()
                )));
            }
        }
        let lw = &t.loss_weights;
        if !lw.is_empty() && lw.len() != ts.len() {
            return Err(Error::Config(format!(
                "train.loss_weights gives {} weights for {} target{}: one per target, in data.target's order",
                lw.len(),
                ts.len(),
                if ts.len() == 1 { "" } else { "s" }
            )));
        }
        if let Some(w) = lw.iter().find(|w| !w.is_finite() || **w < 0.0) {
            return Err(Error::Config(format!("train.loss_weights: {w} is not a weight >= 0")));
        }
        if !lw.is_empty() && lw.iter().all(|w| *w == 0.0) {
            return Err(Error::Config("train.loss_weights are all 0: nothing would be learned".into()));
        }
        if m.explicit() && !m.outputs.is_empty() && m.outputs.len() != ts.len() {
            return Err(Error::Config(format!(
                "model.outputs names {} layers for {} target{}: one output per target, in data.target's order",
                m.outputs.len(),
                ts.len(),
                if ts.len() == 1 { "" } else { "s" }
            )));
        }
        Ok(())
    }

    /// Whether the dotted `key` (written in the file, or given to `--set`) applies to this config: a key of
    /// the other kind of data, or a recipe setting the model does not use, is an error naming it, whatever
    /// its value.
    pub fn check_key(&self, key: &str) -> Result<()> {
        let kind = self.kind()?;
        let mut parts = key.split('.');
        let (section, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let err = |m: String| Err(Error::Config(m));
        match (section, name) {
            ("data", k) if kind != DataKind::Interactions && INTERACTION_DATA_KEYS.contains(&k) => {
                err(format!("data.{k} is a key of interactions (format = \"interactions\"), for a recommender"))
            }
            ("train", "negatives") if kind != DataKind::Interactions => {
                err("train.negatives is a recommender's key (format = \"interactions\")".into())
            }
            ("data", k)
                if kind == DataKind::Interactions
                    && TABLE_DATA_KEYS.contains(&k)
                    && !matches!(k, "ignore" | "missing" | "encoding") =>
            {
                err(format!(
                    "data.{k} is a key of tables; interactions are split leave-last-out (each user's latest item is \
                     the test item)"
                ))
            }
            ("model", k) if kind == DataKind::Interactions && NOT_RECOMMENDER_MODEL_KEYS.contains(&k) => err(format!(
                "model.{k} does not apply to a recommender: kind = \"bpr\", \"ncf\" or \"two_tower\" builds it"
            )),
            ("train", k) if kind == DataKind::Interactions && NOT_RECOMMENDER_TRAIN_KEYS.contains(&k) => err(format!(
                "train.{k} does not apply to a recommender (its loss is the kind's own; its metrics are ranking \
                 metrics)"
            )),
            ("data", k) if kind == DataKind::Images && TABLE_DATA_KEYS.contains(&k) => err(format!(
                "data.{k} is a key of tables (format = \"table\"); MNIST images come with their own test split and \
                 labels"
            )),
            ("train", "oversample") if kind == DataKind::Images => {
                err("train.oversample repeats a table's rows; this config reads images".into())
            }
            ("train", "augment") if kind == DataKind::Table => {
                err("train.augment changes images; this config reads a table".into())
            }
            ("model", "input_shape") if kind == DataKind::Table => {
                err("model.input_shape: a table's input is its prepared row, sized by [data.prepare]; leave it out"
                    .into())
            }
            ("model", k) if RECIPE_KEYS.contains(&k) && self.model.explicit() => err(format!(
                "model.{k} is a setting of the built-in recipes (`kind`); a model written as [[model.{}]] says it \
                 in its layers",
                if self.model.layers.is_empty() { "nodes" } else { "layers" }
            )),
            ("model", "kind") if self.model.explicit() => {
                err("model.kind is a built-in recipe: give it, or [[model.layers]] / [[model.nodes]], not both".into())
            }
            ("model", k) if RECIPE_KEYS.contains(&k) => {
                let recipe = self.model.kind.unwrap_or_default();
                let uses: Vec<&str> = RECIPE_KEYS.iter().copied().filter(|r| recipe_uses(kind, recipe, r)).collect();
                if uses.contains(&k) {
                    Ok(())
                } else {
                    err(format!(
                        "model.{k} does not apply to kind = \"{}\"{}; it uses: {}",
                        recipe.name(),
                        if kind == DataKind::Images { " for images" } else { "" },
                        uses.join(", ")
                    ))
                }
            }
            _ => Ok(()),
        }
    }
}
