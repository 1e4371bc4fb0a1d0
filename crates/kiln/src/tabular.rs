//! Models for tables in one call: read a CSV or ARFF file, split off the test rows, infer column types
//! (overridable), fit the preparation on the training rows, build a multi-layer network sized for the task
//! (sigmoid for two classes, softmax for more, linear for a number), train it, and score it: accuracy and
//! ROC-AUC for classes, RMSE, MAE and R² for numbers. Several targets make one output each, scored each
//! (`scores`); splits are stratified by the first. `cross_validate` does the same over k stratified folds.
//! The config is the one every run reads (config.rs); `Config::for_table` is what `kiln train --data FILE
//! --target COL` uses.

use crate::callbacks::Callback;
use crate::config::Config;
use crate::data::csv::{CsvOptions, read_table};
use crate::data::prepare::{FeatureKind, Preparation, Task, duplicate_rows};
use crate::data::table::{ColumnType, Table};
use crate::metrics::{ClassificationReport, pr_auc, regression_scores, roc_auc};
use crate::model::Sequential;
use crate::train::{ClassWeight, FitOptions};
use crate::weights::TermVectors;
use kiln_core::{Error, Result, Rng, Tensor};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

impl Config {
    /// The file's rows, with `data.classes` applied to the target.
    pub fn read_table(&self) -> Result<Table> {
        Ok(self.read_table_rows()?.0)
    }

    /// `read_table`, and for each of its rows the row of the file it came from (0 = the first data row), so
    /// that a split can be reproduced elsewhere.
    pub fn read_table_rows(&self) -> Result<(Table, Vec<usize>)> {
        let opts =
            CsvOptions { delimiter: None, missing: self.data.missing.clone(), encoding: self.data.encoding.clone() };
        let t = read_table(&self.data.path, &opts)?;
        map_classes(t, self.data.target(), &self.data.classes)
    }

    /// Column types: inferred, then the config's overrides (each must name a column).
    pub fn types(&self, table: &Table) -> Result<Vec<ColumnType>> {
        for name in self.data.columns.keys().chain(&self.data.ignore) {
            table.column(name)?;
        }
        let mut types = Vec::new();
        for c in &table.columns {
            types.push(match self.data.columns.get(&c.name) {
                Some(t) => *t,
                None if self.data.ignore.contains(&c.name) => ColumnType::Text,
                None => c.infer(&table.source)?,
            });
        }
        Ok(types)
    }
}

/// `table` with its `target` values mapped to classes by `classes` and the rows whose value is not listed
/// dropped (nothing changes when `classes` is empty); and for each row left, its row in `table`.
pub fn map_classes(mut t: Table, target: &str, classes: &BTreeMap<String, String>) -> Result<(Table, Vec<usize>)> {
    if classes.is_empty() {
        let n = t.rows();
        return Ok((t, (0..n).collect()));
    }
    let ti = t.columns.iter().position(|c| c.name == target).ok_or_else(|| t.column(target).err().unwrap())?;
    let keep: Vec<usize> =
        (0..t.rows()).filter(|&r| t.columns[ti].cells[r].as_ref().is_some_and(|v| classes.contains_key(v))).collect();
    if keep.is_empty() && t.rows() > 0 {
        let mut seen: Vec<&str> = t.columns[ti].cells.iter().flatten().map(String::as_str).collect();
        seen.sort_unstable();
        seen.dedup();
        let more = if seen.len() > 8 { format!(" and {} more", seen.len() - 8) } else { String::new() };
        let listed: Vec<String> = classes.keys().map(|k| format!("\"{k}\"")).collect();
        return Err(Error::Config(format!(
            "data.classes lists {} but target `{target}` holds none of them (its values: {}{more}), so every row \
             would be dropped",
            listed.join(", "),
            seen.iter().take(8).map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ")
        )));
    }
    for (i, c) in t.columns.iter_mut().enumerate() {
        c.cells = keep
            .iter()
            .map(|&r| if i == ti { c.cells[r].as_ref().map(|v| classes[v].clone()) } else { c.cells[r].clone() })
            .collect();
        if i == ti {
            c.declared = Some(ColumnType::Category);
        }
    }
    Ok((t, keep))
}

/// Test metrics of a table model.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TableScores {
    pub rows: usize,
    pub accuracy: Option<f64>,
    /// The unweighted mean over classes of each class's F1 (scikit-learn's f1_score(average="macro")).
    pub macro_f1: Option<f64>,
    /// The mean of the classes' F1 weighted by their support (average="weighted"). Micro-averaged
    /// precision, recall and F1 equal the accuracy here (one class per row).
    pub weighted_f1: Option<f64>,
    /// Precision, recall and F1 of the positive class (binary targets: the second class).
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub roc_auc: Option<f64>,
    /// Average precision of the positive class (binary only).
    pub pr_auc: Option<f64>,
    pub rmse: Option<f64>,
    pub mae: Option<f64>,
    pub r2: Option<f64>,
    /// Per-class precision, recall, F1 and the confusion matrix (classification).
    #[serde(skip)]
    pub report: Option<ClassificationReport>,
    /// The class that precision, recall, F1 and PR-AUC are about (binary targets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive: Option<String>,
}

impl TableScores {
    /// The scores present, by name, in the order they print.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        [
            ("accuracy", self.accuracy),
            ("precision", self.precision),
            ("recall", self.recall),
            ("f1", self.f1),
            ("macro_f1", self.macro_f1),
            ("weighted_f1", self.weighted_f1),
            ("roc_auc", self.roc_auc),
            ("pr_auc", self.pr_auc),
            ("rmse", self.rmse),
            ("mae", self.mae),
            ("r2", self.r2),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect()
    }
}

impl std::fmt::Display for TableScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.named().iter().map(|(n, v)| format!("{n}: {v:.4}")).collect();
        write!(f, "{}", parts.join(" - "))
    }
}

/// Scores as `kiln train` and `kiln evaluate` print them: a line per target, `{lead}{scores} ({rows} rows)`
/// (after the target's name when there are several), each followed by its classification report when
/// `reports`.
pub fn render_scores(scores: &[(String, TableScores)], lead: &str, reports: bool) -> String {
    let mut out = String::new();
    for (t, s) in scores {
        let name = if scores.len() > 1 { format!("{t}: ") } else { String::new() };
        out += &format!("{lead}{name}{s} ({} rows)\n", s.rows);
        if let Some(p) = &s.positive {
            out += &format!("(precision, recall, f1 and pr_auc are of class `{p}`; data.positive chooses it)\n");
        }
        if let (Some(r), true) = (&s.report, reports) {
            out += &format!("\n{}\n", r.render());
        }
    }
    out
}

/// Each target's values on `rows`, shaped for its loss: a column for binary and regression, class indices
/// otherwise.
fn loss_targets(prep: &Preparation, table: &Table, rows: &[usize]) -> Result<Vec<Tensor>> {
    prep.targets
        .iter()
        .map(|t| {
            let y = t.values(table, rows)?;
            match t.task {
                Task::Multiclass { .. } => Ok(y),
                _ => Tensor::new(&[rows.len(), 1], y.into_data()),
            }
        })
        .collect()
}

/// Scores of `model` on `rows` of `table`: its first target's (`scores` gives every target's).
pub fn score(model: &Sequential, table: &Table, rows: &[usize]) -> Result<TableScores> {
    Ok(scores(model, table, rows)?.swap_remove(0).1)
}

/// Each target's scores of `model` on `rows` of `table`, with the target's name, in the order of the
/// model's outputs.
pub fn scores(model: &Sequential, table: &Table, rows: &[usize]) -> Result<Vec<(String, TableScores)>> {
    let prep = model.preparation().ok_or_else(|| Error::Config("the model was not trained on a table".into()))?;
    let x = prep.transform_inputs(table, rows)?;
    let x: Vec<&Tensor> = x.iter().collect();
    let p = model.predict_outputs(&x, 1024)?;
    prep.targets
        .iter()
        .zip(&p)
        .map(|(t, p)| Ok((t.name.clone(), score_target(&t.task, p, &t.values(table, rows)?))))
        .collect()
}

/// The scores of one target's predictions `p` (probabilities, or numbers) against its values `y`.
fn score_target(task: &Task, p: &Tensor, y: &Tensor) -> TableScores {
    let rows = y.len();
    let mut s = TableScores { rows, ..Default::default() };
    match task {
        Task::Binary { .. } => {
            let labels: Vec<bool> = y.data().iter().map(|&v| v > 0.5).collect();
            let correct = p.data().iter().zip(&labels).filter(|(q, l)| (**q > 0.5) == **l).count();
            s.accuracy = Some(correct as f64 / rows.max(1) as f64);
            s.roc_auc = roc_auc(p.data(), &labels);
            s.pr_auc = pr_auc(p.data(), &labels);
            let pred: Vec<usize> = p.data().iter().map(|&q| (q > 0.5) as usize).collect();
            let truth: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
            if let Task::Binary { classes } = task {
                s.positive = Some(classes[1].clone());
                let r = ClassificationReport::new(&pred, &truth, classes);
                (s.precision, s.recall, s.f1) =
                    (Some(r.per_class[1].0), Some(r.per_class[1].1), Some(r.per_class[1].2));
                (s.macro_f1, s.weighted_f1) = (Some(r.macro_avg.2), Some(r.weighted_avg.2));
                s.report = Some(r);
            }
        }
        Task::Multiclass { classes } => {
            let pred = p.argmax_rows();
            let correct = pred.iter().zip(y.data()).filter(|(a, b)| **a == **b as usize).count();
            s.accuracy = Some(correct as f64 / rows.max(1) as f64);
            let truth: Vec<usize> = y.data().iter().map(|&v| v as usize).collect();
            let r = ClassificationReport::new(&pred, &truth, classes);
            (s.macro_f1, s.weighted_f1) = (Some(r.macro_avg.2), Some(r.weighted_avg.2));
            s.report = Some(r);
        }
        Task::Regression => {
            let (rmse, mae, r2) = regression_scores(p.data(), y.data());
            (s.rmse, s.mae, s.r2) = (Some(rmse), Some(mae), Some(r2));
        }
    }
    s
}

/// Fits the preparation and a model on `train` rows; `verbose` prints a line per epoch.
pub fn fit_rows(
    cfg: &Config,
    table: &Table,
    types: &[ColumnType],
    train: &[usize],
    verbose: bool,
) -> Result<Sequential> {
    fit_rows_in(cfg, table, types, train, verbose, RunFiles::default())
}

/// What a table run writes as it trains (`fit_rows_in`): callbacks besides early stopping (the run folder's
/// logs), a checkpoint after every epoch and on interrupt, and the checkpoint to continue from.
#[derive(Default)]
pub struct RunFiles {
    pub callbacks: Vec<Box<dyn Callback>>,
    pub checkpoint: Option<PathBuf>,
    /// A checkpoint of this run (`Sequential::load_checkpoint`): training continues from it, on the same
    /// rows, as if it had never stopped.
    pub resume: Option<(Sequential, crate::checkpoint::Progress)>,
    /// This process is one rank of a data-parallel job (`FitOptions::collective`).
    pub collective: Option<crate::dist::Shared>,
}

/// `fit_rows` in a run folder: see `RunFiles`.
pub fn fit_rows_in(
    cfg: &Config,
    table: &Table,
    types: &[ColumnType],
    train: &[usize],
    verbose: bool,
    run: RunFiles,
) -> Result<Sequential> {
    let cfg = &cfg.filled();
    let (prep, mut train, val) = prepared(cfg, table, types, train)?;
    if cfg.train.oversample && *prep.task() == Task::Regression {
        return Err(Error::Config(format!(
            "train.oversample repeats the rows of the smaller classes, but target `{}` is a number, not classes; \
             leave it out, or map the values to classes with [data.classes]",
            cfg.data.target()
        )));
    }
    let (mut model, progress) = match run.resume {
        Some((m, p)) => {
            if m.preparation() != Some(&prep) {
                return Err(Error::Config(
                    "the checkpoint was trained on other data or settings than its run's config now gives".into(),
                ));
            }
            (m, Some(p))
        }
        None => {
            // Pretraining reads texts, not labels: the validation rows' texts are fair game.
            let texts: Vec<usize> = train.iter().chain(&val).copied().collect();
            // Weights from a file (`model.weights`) are the start; GloVe or skip-gram vectors otherwise.
            let vectors = match cfg.model.weights {
                None => word_vectors(&prep, table, &texts, cfg.model.seed, verbose)?,
                Some(_) => None,
            };
            (cfg.table_model_with(&prep, vectors)?, None)
        }
    };
    if cfg.train.oversample {
        train = oversampled(&prep, table, &train, cfg.train.seed)?;
    }
    let (x, y) = (prep.transform_inputs(table, &train)?, loss_targets(&prep, table, &train)?);
    let (x, y): (Vec<&Tensor>, Vec<&Tensor>) = (x.iter().collect(), y.iter().collect());
    let opts = FitOptions {
        // The validation rows are held out above, stratified (`hold_out_validation`).
        validation_split: 0.0,
        verbose,
        class_weight: class_weight_by_index(cfg.train.class_weight.as_ref(), prep.task())?,
        checkpoint: run.checkpoint,
        resume: progress,
        collective: run.collective,
        ..cfg.fit_options()
    };
    let mut given = run.callbacks;
    let mut callbacks: Vec<&mut dyn Callback> = given.iter_mut().map(|b| b.as_mut() as &mut dyn Callback).collect();
    if val.is_empty() {
        model.fit_with(&x, &y, opts, &mut callbacks)?;
    } else {
        let (vx, vy) = (prep.transform_inputs(table, &val)?, loss_targets(&prep, table, &val)?);
        let (vx, vy): (Vec<&Tensor>, Vec<&Tensor>) = (vx.iter().collect(), vy.iter().collect());
        let mut stop = cfg.early_stopping();
        if let Some(stop) = &mut stop {
            callbacks.push(stop);
        }
        let opts = FitOptions { validation_data: Some(((&vx).into(), (&vy).into())), ..opts };
        model.fit_with(&x, &y, opts, &mut callbacks)?;
    }
    Ok(model)
}

/// The preparation fitted on the training rows (duplicates dropped if asked, validation rows held out), with
/// the training and validation rows.
fn prepared(
    cfg: &Config,
    table: &Table,
    types: &[ColumnType],
    train: &[usize],
) -> Result<(Preparation, Vec<usize>, Vec<usize>)> {
    let (train, val) = fit_and_validation_rows(cfg, table, types, train)?;
    if train.is_empty() {
        return Err(Error::Data(format!(
            "{}: {} rows leave no training rows once the test rows (data.test_fraction or data.test_rows) and \
             validation rows (train.validation_split) are set aside",
            table.source,
            table.rows()
        )));
    }
    let mut prep = Preparation::fit(table, types, &cfg.data.targets(), &train, &cfg.data.ignore, &cfg.data.prepare)?;
    prep.classes = cfg.data.classes.clone();
    if let Some(dir) = &cfg.model.pretrained {
        let folder = crate::pretrained::bert::Folder::read(dir)?;
        // A column of few distinct texts reads as categories; the tokenizer reads it as text all the same.
        let texts = prep
            .features
            .iter()
            .filter(|f| matches!(f.kind, FeatureKind::Text { .. } | FeatureKind::Category { .. }))
            .count();
        if texts != 1 || prep.features.len() != 1 {
            let names: Vec<&str> = prep.features.iter().map(|f| f.name.as_str()).collect();
            return Err(Error::Config(format!(
                "model.pretrained reads one text column, and the inputs here are {} ({} of them text): ignore the \
                 others (data.ignore), or declare the text column under [data.columns]",
                names.join(", "),
                texts
            )));
        }
        prep.use_tokenizer(&folder.tokenizer_json, cfg.data.prepare.text.length.min(folder.max_tokens))?;
    }
    if let Some(p) = &cfg.data.positive {
        prep.set_positive(p)?;
    }
    prep.set_inputs(&cfg.model.inputs)?;
    Ok((prep, train, val))
}

/// The model a table config trains, built but not trained (its input width comes from the preparation of the
/// training rows): what `kiln summary TABLE.toml` shows.
pub fn untrained_model(cfg: &Config) -> Result<Sequential> {
    let table = cfg.read_table()?;
    let types = cfg.types(&table)?;
    let (_, train) = split(cfg, &table, &types)?;
    let (prep, _, _) = prepared(cfg, &table, &types, &train)?;
    cfg.table_model(&prep)
}

/// The config's class weights with class names turned into the output's class indices.
fn class_weight_by_index(cw: Option<&ClassWeight>, task: &Task) -> Result<Option<ClassWeight>> {
    let classes = match task {
        Task::Binary { classes } | Task::Multiclass { classes } => classes,
        Task::Regression if cw.is_some() => {
            return Err(Error::Config("train.class_weight: the target is a number, not classes".into()));
        }
        Task::Regression => return Ok(None),
    };
    match cw {
        Some(ClassWeight::PerClass(m)) => {
            let mut out = BTreeMap::new();
            for (name, &w) in m {
                let i = classes.iter().position(|c| c == name).ok_or_else(|| {
                    Error::Config(format!(
                        "train.class_weight: no class `{name}`; the classes are: {}",
                        classes.join(", ")
                    ))
                })?;
                if !w.is_finite() || w < 0.0 {
                    return Err(Error::Config(format!(
                        "train.class_weight: {w} for class `{name}` is not a weight >= 0"
                    )));
                }
                out.insert(i.to_string(), w);
            }
            Ok(Some(ClassWeight::PerClass(out)))
        }
        other => Ok(other.cloned()),
    }
}

/// The rows a table run fits on and the validation rows it picks the epoch by, from its training rows:
/// repeated rows dropped (data.prepare.drop_duplicates), then `hold_out_validation`. `kiln train` marks them
/// in split.csv, so that other tools can score the same validation rows.
pub fn fit_and_validation_rows(
    cfg: &Config,
    table: &Table,
    types: &[ColumnType],
    train: &[usize],
) -> Result<(Vec<usize>, Vec<usize>)> {
    let mut train = train.to_vec();
    if cfg.data.prepare.drop_duplicates {
        let dups = duplicate_rows(table, &train);
        train.retain(|r| !dups.contains(r));
    }
    hold_out_validation(cfg, table, types, train)
}

/// Splits training rows into (training, validation): shuffled with the training seed, then the last
/// `train.validation_split` of each class's rows held out (stratified, as the test split), to pick the epoch.
pub fn hold_out_validation(
    cfg: &Config,
    table: &Table,
    types: &[ColumnType],
    mut rows: Vec<usize>,
) -> Result<(Vec<usize>, Vec<usize>)> {
    Rng::new(cfg.train.seed ^ 0x7AB1E).shuffle(&mut rows);
    let vs = cfg.filled().train.validation_split();
    if !(0.0..1.0).contains(&vs) {
        return Err(Error::Config(format!("train.validation_split must be in [0, 1), got {vs}")));
    }
    let keys = strata(table, types, cfg.data.target())?;
    let mut by_class: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &r in &rows {
        by_class.entry(keys[r].as_str()).or_default().push(r);
    }
    let mut held = vec![false; table.rows()];
    for class_rows in by_class.values() {
        let n_val = class_rows.len() - (class_rows.len() as f64 * (1.0 - vs)).floor() as usize;
        class_rows[class_rows.len() - n_val..].iter().for_each(|&r| held[r] = true);
    }
    let val: Vec<usize> = rows.iter().copied().filter(|&r| held[r]).collect();
    rows.retain(|&r| !held[r]);
    Ok((rows, val))
}

/// The vectors the text embedding tables start from (built with them: `TermVectors`): a GloVe file's for
/// the terms it covers, or skip-gram vectors trained on the texts of the `rows`; None when no text column
/// asks for either.
fn word_vectors(
    prep: &Preparation,
    table: &Table,
    rows: &[usize],
    seed: u64,
    verbose: bool,
) -> Result<Option<TermVectors>> {
    let tables = text_columns(prep)
        .into_iter()
        .map(|(j, name, vocab, opts)| {
            let found = match (&opts.glove, &opts.pretrain) {
                (Some(_), Some(_)) => {
                    return Err(Error::Config(
                        "data.prepare.text: `glove` and `pretrain` both start the embeddings; keep one".into(),
                    ));
                }
                (Some(path), None) => crate::data::text::read_glove(path, vocab, opts.dim)?,
                (None, Some(sg)) => {
                    sg.validate("data.prepare.text.pretrain")?;
                    let col = table.column(name)?;
                    let texts: Vec<Vec<u32>> = rows
                        .iter()
                        .map(|&r| {
                            let text = col.cells.get(r).and_then(|c| c.as_deref()).unwrap_or("");
                            let ids = crate::data::text::term_ids(text, vocab, opts);
                            ids.filter(|&id| id >= 2).map(|id| (id - 2) as u32).collect()
                        })
                        .collect();
                    let start = std::time::Instant::now();
                    let v = sg.train(&texts, vocab.len(), opts.dim, seed);
                    if verbose {
                        println!(
                            "word vectors for `{name}`: skip-gram on {} training and validation texts, {} epochs, {:.1} s",
                            texts.len(),
                            sg.epochs,
                            start.elapsed().as_secs_f64()
                        );
                    }
                    v.chunks(opts.dim).map(|c| c.to_vec()).enumerate().collect()
                }
                (None, None) => Vec::new(),
            };
            Ok((j, opts.dim, found))
        })
        .collect::<Result<Vec<_>>>()?;
    let any = tables.iter().any(|(_, _, found)| !found.is_empty());
    Ok(any.then(|| TermVectors::new(tables)))
}

/// Each text column's index among the embedded columns (a CategoryEmbedding's table `embeddings_{j}`),
/// name, vocabulary and options, in feature order.
fn text_columns(prep: &Preparation) -> Vec<(usize, &str, &[String], &crate::data::text::TextOptions)> {
    let mut j = 0;
    let mut out = Vec::new();
    for f in &prep.features {
        match &f.kind {
            FeatureKind::Category { embed: Some(_), .. } => j += 1,
            FeatureKind::Text { vocab, opts, .. } => {
                out.push((j, f.name.as_str(), vocab.as_slice(), opts));
                j += 1;
            }
            _ => {}
        }
    }
    out
}

/// Each text column's name, vocabulary, options and embedding table, found by name in the first layer: a
/// CategoryEmbedding's `embeddings_{j}` (j counting the embedded columns in feature order), or an
/// Embedding's `embeddings` (sequence models of one text column).
fn text_tables<'a>(
    model: &Sequential,
    prep: &'a Preparation,
) -> Vec<(&'a str, &'a [String], &'a crate::data::text::TextOptions, kiln_core::ParamId)> {
    let Some(first) = model.layers().first() else { return Vec::new() };
    text_columns(prep)
        .into_iter()
        .filter_map(|(j, name, vocab, opts)| {
            let table = first.param(&crate::nn::CategoryEmbedding::table_name(j)).or_else(|| first.param("embeddings"));
            table.map(|pid| (name, vocab, opts, pid))
        })
        .collect()
}

/// The learned vector of every single-word term of the model's first text column (the rows of its
/// embedding table), to start another model's embeddings from (`glove = "file"`): what `kiln
/// export-vectors` writes in GloVe's text format.
pub fn term_vectors(model: &Sequential) -> Result<Vec<(String, Vec<f32>)>> {
    let prep = model.preparation().ok_or_else(|| Error::Config("the model was not trained on a table".into()))?;
    let Some(&(_, vocab, opts, pid)) = text_tables(model, prep).first() else {
        return Err(Error::Config("the model has no text column".into()));
    };
    let table = &model.graph().param(pid).value;
    if table.len() != (vocab.len() + 2) * opts.dim {
        return Err(Error::Config("the model's first layer is not the text column's embedding table".into()));
    }
    Ok(vocab
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.contains(' '))
        .map(|(k, t)| (t.clone(), table[(k + 2) * opts.dim..(k + 3) * opts.dim].to_vec()))
        .collect())
}

/// `rows` with rows of the smaller classes repeated (drawn at random) until each class has as many as the
/// largest, shuffled.
fn oversampled(prep: &Preparation, table: &Table, rows: &[usize], seed: u64) -> Result<Vec<usize>> {
    let y = prep.targets[0].values(table, rows)?;
    let mut by_class: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (&r, &c) in rows.iter().zip(y.data()) {
        by_class.entry(c as u32).or_default().push(r);
    }
    let most = by_class.values().map(Vec::len).max().unwrap_or(0);
    let mut rng = Rng::new(seed ^ 0x0BE5);
    let mut out: Vec<usize> = Vec::with_capacity(most * by_class.len());
    for class_rows in by_class.values() {
        out.extend(class_rows);
        out.extend((class_rows.len()..most).map(|_| class_rows[rng.below(class_rows.len())]));
    }
    rng.shuffle(&mut out);
    Ok(out)
}

/// The test rows and training rows of the table, as the config splits them.
pub fn split(cfg: &Config, table: &Table, types: &[ColumnType]) -> Result<(Vec<usize>, Vec<usize>)> {
    let n = table.rows();
    if n == 0 {
        return Err(Error::Data(format!("{}: no rows", table.source)));
    }
    if let Some(t) = cfg.data.test_rows {
        if t >= n {
            return Err(Error::Config(format!("data.test_rows = {t}, but the file has only {n} rows")));
        }
        return Ok(((0..t).collect(), (t..n).collect()));
    }
    let f = cfg.data.test_fraction;
    if !(0.0..1.0).contains(&f) {
        return Err(Error::Config(format!("data.test_fraction must be in [0, 1), got {f}")));
    }
    let folds = stratified_folds(
        table,
        types,
        cfg.data.target(),
        ((1.0 / f.max(1e-9)).round() as usize).max(2),
        cfg.train.seed,
    )?;
    if f == 0.0 {
        return Ok((Vec::new(), (0..n).collect()));
    }
    let mut test = folds[0].clone();
    test.sort_unstable();
    let train = (0..n).filter(|r| test.binary_search(r).is_err()).collect();
    Ok((test, train))
}

/// Each row's stratum for splitting: its class, or one stratum for all when the target is a number.
pub(crate) fn strata(table: &Table, types: &[ColumnType], target: &str) -> Result<Vec<String>> {
    let ti = table.columns.iter().position(|c| c.name == target).ok_or_else(|| table.column(target).err().unwrap())?;
    let col = &table.columns[ti];
    let numeric = types[ti] == ColumnType::Number && col.distinct() > 2;
    Ok(col.cells.iter().map(|c| if numeric { String::new() } else { c.clone().unwrap_or_default() }).collect())
}

/// `k` folds of the rows, each with about the same share of every class (random order within a class).
pub fn stratified_folds(
    table: &Table,
    types: &[ColumnType],
    target: &str,
    k: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    let keys = strata(table, types, target)?;
    Ok(stratify(&keys, k, seed))
}

/// k folds of the indices of `keys` with each key's indices spread evenly over them: per key in order,
/// shuffled with `seed`, dealt round-robin. Tables fold by their target's strata, images by label.
pub fn stratify<K: Ord>(keys: &[K], k: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng::new(seed ^ 0xF01D);
    let mut by_class: BTreeMap<&K, Vec<usize>> = BTreeMap::new();
    for (r, key) in keys.iter().enumerate() {
        by_class.entry(key).or_default().push(r);
    }
    let mut folds = vec![Vec::new(); k];
    let mut next = 0;
    for rows in by_class.values_mut() {
        rng.shuffle(rows);
        for &r in rows.iter() {
            folds[next % k].push(r);
            next += 1;
        }
    }
    folds
}

#[cfg(test)]
mod oversample_tests {
    use super::*;
    use crate::data::csv::parse_csv;

    /// How often each row occurs in `rows`.
    fn counts(rows: &[usize], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        rows.iter().for_each(|&r| c[r] += 1);
        c
    }

    #[test]
    fn oversampling_repeats_only_minority_rows_until_every_class_has_as_many_as_the_largest() {
        // Rows 0-5 class a, 6-8 class b, 9 class c; rows 10 (b) and 11 (c) are not given (validation rows).
        let csv = "x,y\n0,a\n1,a\n2,a\n3,a\n4,a\n5,a\n6,b\n7,b\n8,b\n9,c\n10,b\n11,c\n";
        let t = parse_csv(csv, std::path::Path::new("t.csv"), &CsvOptions::default()).unwrap();
        let types = t.infer_types().unwrap();
        let rows: Vec<usize> = (0..10).collect();
        let prep =
            Preparation::fit(&t, &types, &["y"], &rows, &[], &crate::data::prepare::PrepareOptions::default()).unwrap();
        for seed in [0, 1, 7] {
            let out = oversampled(&prep, &t, &rows, seed).unwrap();
            let c = counts(&out, t.rows());
            assert_eq!(out.len(), 18, "3 classes × 6 rows (the largest class)");
            assert!(c[..6].iter().all(|&k| k == 1), "the largest class's rows once each: {c:?}");
            assert!(c[..10].iter().all(|&k| k >= 1), "every given row kept: {c:?}");
            assert_eq!((c[6..9].iter().sum::<usize>(), c[9]), (6, 6), "b's 3 rows and c's 1 row make 6 each");
            assert_eq!(c[10..], [0, 0], "rows not given are never drawn");
            assert_eq!(out, oversampled(&prep, &t, &rows, seed).unwrap(), "the same seed, the same rows");
            assert_ne!(out[..6], [0, 1, 2, 3, 4, 5], "shuffled, not grouped by class");
        }
        // Balanced classes: each row once, in some order.
        let even = [0, 1, 6, 7];
        let out = oversampled(&prep, &t, &even, 3).unwrap();
        assert_eq!(counts(&out, t.rows()), counts(&even, t.rows()));
    }
}
