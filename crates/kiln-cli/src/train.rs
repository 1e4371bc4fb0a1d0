//! `kiln train`: every run gets a folder, `runs/NAME-YYYYMMDD-HHMMSS/`, holding the config with every
//! default filled in (`config.toml`), the per-epoch logs (`log.csv`, `log.jsonl`), a training checkpoint
//! after every epoch (`checkpoint.safetensors`), whatever the configured callbacks write (best model,
//! TensorBoard files) and the final model (`model.safetensors`). `kiln train --resume RUN_DIR` continues a
//! run from its checkpoint; SIGINT or SIGTERM makes training finish its step and checkpoint before exiting.

use kiln::callbacks::Callback;
use kiln::config::{DataFormat, RunConfig};
use kiln::data::mnist;
use kiln::prelude::*;
use kiln::{Error, Result};
use std::path::{Path, PathBuf};

use crate::run_dir::{CHECKPOINT, CONFIG, MODEL, on_signal_stop};

pub struct TrainArgs {
    pub config: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    pub epochs: Option<usize>,
    pub output: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    /// KEY=VALUE overrides of config values.
    pub set: Vec<String>,
    pub print_config: bool,
    pub quiet: bool,
}

pub fn train(a: TrainArgs) -> Result<()> {
    let (mut cfg, run_dir, resume) = match (&a.config, &a.resume) {
        (Some(_), Some(_)) => return Err(Error::Invalid("give a config or --resume RUN_DIR, not both".into())),
        (None, None) => return Err(Error::Invalid("give a config file, or --resume RUN_DIR".into())),
        (Some(c), None) => {
            let cfg = RunConfig::from_file(c)?;
            (cfg, None, false)
        }
        (None, Some(dir)) => {
            let cfg = RunConfig::from_file(dir.join(CONFIG)).map_err(|e| match e {
                Error::Io { path, message } => {
                    Error::Io { path, message: format!("{message} (is {} a run folder?)", dir.display()) }
                }
                e => e,
            })?;
            (cfg, Some(dir.clone()), true)
        }
    };
    if let Some(e) = a.epochs {
        cfg.train.epochs = e;
    }
    let cfg = cfg.with_settings(&a.set)?;
    if a.print_config {
        // A config that prints must also build.
        cfg.build_model()?;
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    let cfg = cfg.resolved();
    // Everything that can be wrong with the config or the data is found before the run folder is made.
    crate::run_dir::check_train(cfg.train.epochs, cfg.train.batch_size, cfg.train.validation_split)?;
    let mut model = cfg.build_model()?;
    let callbacks_cfg = cfg.callbacks.clone();
    let (train, test) = match cfg.data.format {
        DataFormat::Mnist => (mnist::load_split(&cfg.data.path, "train")?, mnist::load_split(&cfg.data.path, "t10k")?),
    };
    let (ytrain, ytest) = (cfg.targets(&train)?, cfg.targets(&test)?);
    let output = a.output.clone().or_else(|| cfg.output.model.clone());
    if let Some(o) = &output {
        check_writable(o)?;
    }
    let (run_dir, named) = match (run_dir, a.run_dir) {
        (Some(d), _) => (d, true),
        (None, Some(d)) => (d, true),
        (None, None) => (crate::run_dir::default_for(&cfg.output.runs_dir, &cfg.model.name), false),
    };
    let mut progress = None;
    if resume {
        let (m, p) = crate::run_dir::checkpoint_to_resume(&run_dir, cfg.train.epochs)?;
        model = m;
        progress = Some(p);
    }
    let run_dir = if resume { run_dir } else { crate::run_dir::create(run_dir, named)? };
    if !resume {
        kiln::io::write_atomic(&run_dir.join(CONFIG), cfg.to_toml().as_bytes())?;
    }
    crate::run_dir::write_run_info(&run_dir)?;
    let mut built: Vec<Box<dyn Callback>> = crate::run_dir::loggers(&run_dir);
    for c in &callbacks_cfg {
        built.push(c.build(&run_dir)?);
    }
    let mut callbacks: Vec<&mut dyn Callback> = built.iter_mut().map(|b| b.as_mut() as &mut dyn Callback).collect();
    if !a.quiet {
        match &progress {
            Some(p) => println!("resuming {} after epoch {} of {}", run_dir.display(), p.epoch, cfg.train.epochs),
            None => print!("{}", model.summary()),
        }
        println!("run folder: {}", run_dir.display());
    }
    let opts = FitOptions {
        epochs: cfg.train.epochs,
        batch_size: cfg.train.batch_size,
        validation_split: cfg.train.validation_split,
        shuffle: cfg.train.shuffle,
        seed: cfg.train.seed,
        verbose: !a.quiet,
        augment: cfg.train.augment.clone(),
        checkpoint: Some(run_dir.join(CHECKPOINT)),
        resume: progress,
        class_weight: cfg.train.class_weight.clone(),
        ..Default::default()
    };
    on_signal_stop();
    let history = model.fit_with(&train.x, &ytrain, opts, &mut callbacks).map_err(|e| match e {
        Error::Stopped(m) => Error::Stopped(format!("{m}; continue with: kiln train --resume {}", run_dir.display())),
        e => e,
    })?;
    let scores = model.evaluate(&test.x, &ytest, 1000)?;
    model.save(run_dir.join(MODEL))?;
    if let Some(o) = &output {
        model.save(o)?;
    }
    let secs: f64 = history.epochs.iter().map(|e| e.seconds).sum::<f64>() / history.epochs.len().max(1) as f64;
    println!("test {scores} ({} samples, {secs:.1} s per epoch)", test.x.rows());
    println!("saved model to {}", output.unwrap_or_else(|| run_dir.join(MODEL)).display());
    Ok(())
}

/// Fails before training, not after, when the model could not be saved where asked.
fn check_writable(path: &Path) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(Error::Io {
            path: path.display().to_string(),
            message: format!("folder {} does not exist", dir.display()),
        });
    }
    Ok(())
}
