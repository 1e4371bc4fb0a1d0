//! `kiln train`: one path for every kind of run. The config is read by the one reader (a file, a run
//! folder's config.toml with --resume, or `--data FILE --target COL` for a table with no config), and every
//! run gets a folder, `runs/NAME-YYYYMMDD-HHMMSS/`, holding the config with every default filled in
//! (`config.toml`), `run.json`, the per-epoch logs (`log.csv`, `log.jsonl`), a training checkpoint after
//! every epoch (`checkpoint.safetensors`), whatever the configured callbacks write (best model, TensorBoard
//! files) and the final model (`model.safetensors`); a table run also `split.csv`. `kiln train --resume
//! RUN_DIR` continues a run from its checkpoint; SIGINT or SIGTERM makes training finish its step and
//! checkpoint before exiting. Under `mpirun -np N` each process is one rank of a data-parallel run
//! (kiln::dist): rank 0 makes and writes the run folder; the others write nothing.

use kiln::callbacks::Callback;
use kiln::checkpoint::Progress;
use kiln::config::{Config, DataKind};
use kiln::data::mnist;
use kiln::prelude::*;
use kiln::tabular;
use kiln::{Error, Result};
use std::path::{Path, PathBuf};

use crate::run_dir::{CHECKPOINT, CONFIG, MODEL, on_signal_stop};

pub struct TrainArgs {
    pub config: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    /// A table with no config: `--data FILE --target COL`.
    pub data: Option<PathBuf>,
    pub target: Option<String>,
    pub test_rows: Option<usize>,
    pub epochs: Option<usize>,
    pub output: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    /// KEY=VALUE overrides of config values.
    pub set: Vec<String>,
    pub print_config: bool,
    pub quiet: bool,
    /// The ranks of an `mpirun` launch this process is one of.
    pub ranks: Option<kiln::dist::Shared>,
    /// `--device`, which overrides the config's `[train] device` (and is saved as it in the run folder).
    pub device: Option<String>,
}

/// The config a command names: a file, a run folder's (`--resume`), or a table's defaults (`--data FILE
/// --target COL`), with `--set` applied. Every command that takes a config reads it here.
pub fn config_of(
    config: Option<&Path>,
    resume: Option<&Path>,
    data: Option<&Path>,
    target: Option<&str>,
    set: &[String],
) -> Result<Config> {
    let cfg = match (config, resume, data, target) {
        (Some(c), None, None, None) => return Config::from_file_with(c, set),
        (None, Some(dir), None, None) => Config::from_file(dir.join(CONFIG)).map_err(|e| match e {
            Error::Io { path, message } => {
                Error::Io { path, message: format!("{message} (is {} a run folder?)", dir.display()) }
            }
            e => e,
        })?,
        (None, None, Some(d), Some(t)) => {
            // --set before the kind's defaults, as for a file.
            let mut c = Config::for_table_unfilled(d, t).with_settings(set)?;
            let given = |key: &str| set.iter().any(|s| s.split_once('=').is_some_and(|(k, _)| k.trim() == key));
            if !given("train.epochs") && c.train.validation_split.is_none_or(|v| v > 0.0) {
                c.train.epochs = Some(EPOCH_CAP);
                c.notes.push(format!(
                    "training until the validation loss has not improved for {} epochs, at most {EPOCH_CAP} \
                     (--epochs N for a fixed number)",
                    c.train.patience.unwrap_or(4)
                ));
            }
            c.fill_defaults();
            if !given("train.epochs") && c.train.validation_split() == 0.0 {
                c.notes.push(format!(
                    "no validation rows (train.validation_split = 0), so no early stopping: {} epochs (--epochs N \
                     for another number)",
                    c.train.epochs()
                ));
            }
            infer_from_data(&mut c, !given("data.ignore"), !given("data.prepare.text.length"))?;
            return Ok(c);
        }
        (None, None, Some(_), None) => {
            return Err(Error::Invalid("--data needs --target COLUMN (the column to predict)".into()));
        }
        (Some(_), _, Some(_), _) => {
            return Err(Error::Invalid("give a config file or --data FILE --target COLUMN, not both".into()));
        }
        _ => return Err(Error::Invalid("give a config file, or --data FILE --target COLUMN".into())),
    };
    cfg.with_settings(set)
}

/// The most epochs a config inferred from the data trains (`--data FILE --target COL`): it trains until early
/// stopping ends it, and this only bounds a loss that keeps creeping down.
const EPOCH_CAP: usize = 200;

/// What a config inferred from the data alone (`--data FILE --target COL`) decides from the file, each said
/// in a note: the columns that look like identifiers (`kiln data audit` names them: a row id, a name, a code)
/// are left out, since a model could only memorize them; and the text length is the 95th percentile of the
/// texts' term counts (`text::length_from_data`) instead of a fixed 200 that cuts long articles.
fn infer_from_data(c: &mut Config, identifiers: bool, text_length: bool) -> Result<()> {
    let table = c.read_table()?;
    let types = c.types(&table)?;
    let owned: Vec<String> = c.data.targets().iter().map(|t| t.to_string()).collect();
    let targets: Vec<&str> = owned.iter().map(String::as_str).collect();
    if identifiers {
        let ids = kiln::data::audit::identifier_columns(&table, &types, &targets);
        if !ids.is_empty() {
            c.notes.push(format!(
                "leaving out identifier columns: {} (a different value on nearly every row, which a model can \
                 only memorize; keep them with --set 'data.ignore=[]')",
                ids.join(", ")
            ));
            c.data.ignore.extend(ids);
        }
    }
    let texts: Vec<&kiln::data::table::Column> = (table.columns.iter().zip(&types))
        .filter(|(col, t)| {
            **t == kiln::data::table::ColumnType::Text
                && !targets.contains(&col.name.as_str())
                && !c.data.ignore.contains(&col.name)
        })
        .map(|(col, _)| col)
        .collect();
    if text_length && !texts.is_empty() {
        let opts = &c.data.prepare.text;
        let docs = texts.iter().flat_map(|col| col.cells.iter().flatten().map(|s| s.as_str()));
        let (length, p95) = kiln::data::text::length_from_data(docs, opts);
        let names: Vec<&str> = texts.iter().map(|col| col.name.as_str()).collect();
        c.notes.push(format!(
            "text length {length}: 95% of the texts in {} have at most {p95} terms ({}){}",
            names.join(", "),
            if opts.ngrams > 1 { format!("words and runs of up to {} words", opts.ngrams) } else { "words".into() },
            if length == p95 { String::new() } else { format!(", bounded to {length}") }
        ));
        c.data.prepare.text.length = length;
    }
    Ok(())
}

/// What a run writes as it trains, made once its config and data have been checked.
pub struct Run {
    pub dir: PathBuf,
    /// The checkpoint to continue from (`--resume`).
    pub resume: Option<(Sequential, Progress)>,
    /// The run folder's loggers and the config's `[[callbacks]]`.
    pub callbacks: Vec<Box<dyn Callback>>,
    pub output: Option<PathBuf>,
    pub quiet: bool,
    /// A rank other than 0 (`follower_run`): it writes nothing.
    pub follower: bool,
    pub ranks: Option<kiln::dist::Shared>,
}

impl Run {
    pub fn checkpoint(&self) -> PathBuf {
        self.dir.join(CHECKPOINT)
    }

    /// A fit's error: an interrupted one with the command that continues it; any other, before the first
    /// checkpoint, leaves no run folder (`abandon`).
    pub fn stopped(&self, e: Error) -> Error {
        match e {
            Error::Stopped(m) if self.dir.join(CHECKPOINT).exists() => {
                let launch = self.ranks.as_ref().map(|r| format!("mpirun -np {} ", r.size())).unwrap_or_default();
                Error::Stopped(format!("{m}; continue with: {launch}kiln train --resume {}", self.dir.display()))
            }
            // Stopped before the first checkpoint (a loss that became NaN in epoch 1): nothing to resume.
            Error::Stopped(m) => {
                self.abandon();
                Error::Stopped(format!("{m}; no epoch had finished, so nothing was saved"))
            }
            e => {
                self.abandon();
                e
            }
        }
    }

    /// A run that failed before its first checkpoint (a mistake found once the data was read) leaves no
    /// folder behind: the files it wrote are removed, and the folder if that empties it.
    pub fn abandon(&self) {
        if self.follower || self.dir.join(CHECKPOINT).exists() {
            return;
        }
        for f in [CONFIG, "run.json", "split.csv", crate::run_dir::LOG_CSV, crate::run_dir::LOG_JSONL] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        let _ = std::fs::remove_dir(&self.dir);
    }

    /// Saves the model in the run folder and where `--output`/`[output] model` asks.
    pub fn save(&self, model: &Sequential) -> Result<()> {
        if self.follower {
            return Ok(());
        }
        model.save(self.dir.join(MODEL))?;
        if let Some(o) = &self.output {
            model.save(o)?;
        }
        println!("saved model to {}", self.output.clone().unwrap_or(self.dir.join(MODEL)).display());
        Ok(())
    }
}

pub fn train(a: TrainArgs) -> Result<()> {
    // `--epochs N` is a setting like the others, so a config inferred from the data knows it was given.
    let mut set = a.set.clone();
    set.extend(a.epochs.map(|e| format!("train.epochs={e}")));
    let mut cfg = config_of(a.config.as_deref(), a.resume.as_deref(), a.data.as_deref(), a.target.as_deref(), &set)?;
    if let Some(t) = a.test_rows {
        if cfg.kind()? != DataKind::Table {
            return Err(Error::Invalid(
                "--test-rows splits a table; MNIST has its own test split, interactions are split leave-last-out"
                    .into(),
            ));
        }
        cfg.data.test_rows = Some(t);
    }
    if let Some(d) = &a.device {
        cfg.train.device = Some(d.clone());
    }
    if a.print_config {
        // A config that prints must also build and train.
        cfg.build_model()?;
        cfg.check_train().map_err(|e| cfg.in_file(e))?;
        // What was decided for the user, as comments: the printed config stays a config.
        for n in &cfg.notes {
            println!("# note: {n}");
        }
        print!("{}", cfg.resolved().to_toml());
        return Ok(());
    }
    let cfg = cfg.resolved();
    cfg.check_train().map_err(|e| cfg.in_file(e))?;
    if let Some(d) = &cfg.train.device {
        kiln::device::configure(d).map_err(|e| cfg.in_file(e))?;
    }
    if a.ranks.is_some() && cfg.kind()? == DataKind::Interactions {
        return Err(Error::Invalid(
            "a recommendation model (data.kind = \"interactions\") trains in one process: run it without mpirun".into(),
        ));
    }
    match cfg.kind()? {
        DataKind::Images => images(&cfg, &a),
        DataKind::Table => table(&cfg, &a),
        DataKind::Interactions => crate::recommend::train(&cfg, &a),
    }
    .map_err(|e| cfg.in_file(e))
}

/// Makes (or, with --resume, reopens) the run folder: the config, `run.json`, the loggers, the configured
/// callbacks and the checkpoint to continue from. Called once the config and data have been checked, so a
/// mistake leaves no folder behind.
pub fn open_run(cfg: &Config, a: &TrainArgs) -> Result<Run> {
    if let Some(ranks) = a.ranks.as_ref().filter(|r| r.rank() != 0) {
        return follower_run(cfg, a, ranks);
    }
    if a.config.is_none() && a.resume.is_none() && !a.quiet {
        println!("config used (save it and edit it to change anything):\n\n{}", cfg.to_toml());
    }
    // What was decided for the user is said even with --quiet (it changes what the model reads).
    for n in &cfg.notes {
        println!("note: {n}");
    }
    let output = a.output.clone().or_else(|| cfg.output.model.clone());
    if let Some(o) = &output {
        check_model_output(o, cfg, a)?;
    }
    // The run's config records where its model goes (`--output` too), so `--resume` writes there again.
    let mut recorded = cfg.clone();
    recorded.output.model = output.as_ref().map(|o| std::path::absolute(o).unwrap_or_else(|_| o.clone()));
    let (dir, named) = match (&a.resume, &a.run_dir) {
        (Some(d), _) | (None, Some(d)) => (d.clone(), true),
        (None, None) => (crate::run_dir::default_for(&cfg.output.runs_dir, &cfg.run_name()), false),
    };
    let resume = match &a.resume {
        Some(_) => Some(crate::run_dir::checkpoint_to_resume(&dir, cfg.train.epochs())?),
        None => None,
    };
    let dir = if resume.is_some() { dir } else { crate::run_dir::create(dir, named)? };
    // On --resume too: `--epochs` may have changed what the run trains to.
    kiln::io::write_atomic(&dir.join(CONFIG), recorded.to_toml().as_bytes())?;
    crate::run_dir::write_run_info(&dir)?;
    let mut callbacks = crate::run_dir::loggers(&dir);
    for c in &cfg.callbacks {
        callbacks.push(c.build(&dir)?);
    }
    if !a.quiet {
        if let Some((_, p)) = &resume {
            println!("resuming {} after epoch {} of {}", dir.display(), p.epoch, cfg.train.epochs());
        }
        println!("run folder: {}", dir.display());
    }
    on_signal_stop();
    Ok(Run { dir, resume, callbacks, output, quiet: a.quiet, follower: false, ranks: a.ranks.clone() })
}

/// The run of a rank other than 0: it reads the checkpoint to continue from (`--resume`), prints and
/// writes nothing, and runs only the configured callbacks that steer training (early stopping, learning-rate
/// changes), so that they agree with rank 0's; the files are rank 0's to write.
fn follower_run(cfg: &Config, a: &TrainArgs, ranks: &kiln::dist::Shared) -> Result<Run> {
    let resume = match &a.resume {
        Some(d) => Some(crate::run_dir::checkpoint_to_resume(d, cfg.train.epochs())?),
        None => None,
    };
    // Rank 0's folder when it was named; only messages that followers do not print use it.
    let dir = a.resume.clone().or_else(|| a.run_dir.clone()).unwrap_or_default();
    let mut callbacks = Vec::new();
    for c in cfg.callbacks.iter().filter(|c| c.steers_training()) {
        callbacks.push(c.build(&dir)?);
    }
    on_signal_stop();
    Ok(Run { dir, resume, callbacks, output: None, quiet: true, follower: true, ranks: Some(ranks.clone()) })
}

/// An image run: MNIST's training images (the last `validation_split` held out), its test images scored.
fn images(cfg: &Config, a: &TrainArgs) -> Result<()> {
    let mut model = cfg.build_model()?;
    let (train, test) = (mnist::load_split(&cfg.data.path, "train")?, mnist::load_split(&cfg.data.path, "t10k")?);
    let (ytrain, ytest) = (cfg.targets(&train)?, cfg.targets(&test)?);
    let mut run = open_run(cfg, a)?;
    let mut progress = None;
    if let Some((m, p)) = run.resume.take() {
        model = m;
        progress = Some(p);
    } else if !run.quiet {
        print!("{}", model.summary());
    }
    let mut stop = cfg.early_stopping();
    let mut given = std::mem::take(&mut run.callbacks);
    let mut callbacks: Vec<&mut dyn Callback> = given.iter_mut().map(|b| b.as_mut() as &mut dyn Callback).collect();
    if let Some(s) = &mut stop {
        callbacks.push(s);
    }
    let opts = FitOptions {
        verbose: !run.quiet,
        checkpoint: Some(run.dir.join(CHECKPOINT)),
        resume: progress,
        collective: run.ranks.clone(),
        ..cfg.fit_options()
    };
    let history = model.fit_with(&train.x, &ytrain, opts, &mut callbacks).map_err(|e| run.stopped(e))?;
    drop(callbacks);
    if run.follower {
        return Ok(());
    }
    let scores = model.evaluate(&test.x, &ytest, 1000)?;
    let secs: f64 = history.epochs.iter().map(|e| e.seconds).sum::<f64>() / history.epochs.len().max(1) as f64;
    println!("test {scores} ({} samples, {secs:.1} s per epoch)", test.x.rows());
    run.save(&model)
}

/// A table run: the file read and split (test rows set aside) before the run folder is made, `split.csv`
/// written beside the config, the model fitted and scored on the test rows.
fn table(cfg: &Config, a: &TrainArgs) -> Result<()> {
    let (table, file_rows) = cfg.read_table_rows()?;
    let types = cfg.types(&table)?;
    let (test, train) = tabular::split(cfg, &table, &types)?;
    let mut run = open_run(cfg, a)?;
    if run.resume.is_none() && !run.follower {
        // Which rows of the file were test, training and validation rows (and repeated rows that
        // drop_duplicates left out), so that other tools (examples' baselines, scores on the validation rows)
        // can use the same split.
        let (fit, val) = tabular::fit_and_validation_rows(cfg, &table, &types, &train).map_err(|e| run.stopped(e))?;
        let mut part = vec![""; table.rows()];
        train.iter().for_each(|&r| part[r] = "duplicate");
        fit.iter().for_each(|&r| part[r] = "train");
        val.iter().for_each(|&r| part[r] = "validation");
        test.iter().for_each(|&r| part[r] = "test");
        let split: String = std::iter::once("row,part\n".to_string())
            .chain(file_rows.iter().zip(&part).map(|(r, p)| format!("{r},{p}\n")))
            .collect();
        kiln::io::write_atomic(&run.dir.join("split.csv"), split.as_bytes())?;
    }
    let files = tabular::RunFiles {
        callbacks: std::mem::take(&mut run.callbacks),
        checkpoint: Some(run.checkpoint()),
        resume: run.resume.take(),
        collective: run.ranks.clone(),
    };
    let start = std::time::Instant::now();
    let model = tabular::fit_rows_in(cfg, &table, &types, &train, !run.quiet, files).map_err(|e| run.stopped(e))?;
    if run.follower {
        return Ok(());
    }
    let secs = start.elapsed().as_secs_f64();
    let prep = model.preparation().cloned().expect("set by fit_rows");
    if !run.quiet {
        println!("{} training rows, {} inputs after preparation, {:.1} s", train.len(), prep.width(), secs);
    }
    if !test.is_empty() {
        print!("{}", tabular::render_scores(&tabular::scores(&model, &table, &test)?, "test ", !run.quiet));
    }
    run.save(&model)
}

/// Fails before training, not after, when the model could not be saved at `out` (`--output`, else the
/// config's `[output] model`), or would replace the config or the data it trains on.
pub fn check_model_output(out: &Path, cfg: &Config, a: &TrainArgs) -> Result<()> {
    let what = if a.output.is_some() { "--output" } else { "[output] model" };
    let config = a.config.as_deref().unwrap_or(Path::new(""));
    crate::outputs::check_output(what, out, &[config, &cfg.data.path])
}
