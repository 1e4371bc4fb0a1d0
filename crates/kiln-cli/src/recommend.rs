//! Recommenders from the command line: `kiln train` on a config with `format = "interactions"` (the run
//! folder also holds the split, `split/{train,valid,test}.tsv`, and the test ranking, `metrics.json`),
//! `kiln evaluate MODEL --protocol sampled|full --k K` and `kiln recommend MODEL --user ID`.

use crate::run_dir::{CONFIG, MODEL, model_file};
use crate::train::TrainArgs;
use kiln::config::{Config, ModelKind};
use kiln::recommend::{Interactions, Protocol, Recommender, RecommenderFit, Split};
use kiln::{Error, Result};
use std::fmt::Write as _;
use std::path::Path;

/// The folder of the split, inside the run folder.
pub const SPLIT_DIR: &str = "split";

/// A recommendation run: read, split leave-last-out, train (validation ranking each epoch), rank the test
/// items on both protocols, save.
pub fn train(cfg: &Config, a: &TrainArgs) -> Result<()> {
    if a.resume.is_some() {
        return Err(Error::Invalid(
            "--resume continues a run from its checkpoint; a recommender run keeps none (it trains in seconds to \
             minutes): train it again"
                .into(),
        ));
    }
    let data = Interactions::read(&cfg.data.interactions())?;
    let validation = cfg.train.validation_split() > 0.0;
    let split = Split::leave_last_out(&data, validation, cfg.data.eval_negatives.unwrap_or(99), cfg.train.seed);
    if split.test.is_empty() {
        return Err(Error::Data(format!(
            "{}: no user has two interactions (or every user has every item): leave-last-out holds out each \
             user's latest, and needs another to train on",
            cfg.data.path.display()
        )));
    }
    let kind = cfg.model.kind.unwrap_or(ModelKind::Bpr);
    let mut rec = Recommender::new(cfg.recommender(kind), &data, &split, cfg.model.seed)?;
    let output = a.output.clone().or_else(|| cfg.output.model.clone());
    if let Some(o) = &output {
        crate::train::check_model_output(o, cfg, a)?;
    }
    let (dir, named) = match &a.run_dir {
        Some(d) => (d.clone(), true),
        None => (crate::run_dir::default_for(&cfg.output.runs_dir, &cfg.run_name()), false),
    };
    let dir = crate::run_dir::create(dir, named)?;
    let result = run(cfg, a, &data, &split, &mut rec, &dir, output.as_deref());
    // A run that failed before its results leaves no folder; one that has them keeps it.
    if result.is_err() && !dir.join(MODEL).exists() && !dir.join("metrics.json").exists() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn run(
    cfg: &Config,
    a: &TrainArgs,
    data: &Interactions,
    split: &Split,
    rec: &mut Recommender,
    dir: &Path,
    output: Option<&Path>,
) -> Result<()> {
    let mut recorded = cfg.clone();
    recorded.output.model = output.map(|o| std::path::absolute(o).unwrap_or_else(|_| o.to_path_buf()));
    kiln::io::write_atomic(&dir.join(CONFIG), recorded.to_toml().as_bytes())?;
    crate::run_dir::write_run_info(dir)?;
    split.write(&dir.join(SPLIT_DIR), &data.users, &data.items)?;
    if !a.quiet {
        println!("run folder: {}", dir.display());
        let feats = |f: &Option<kiln::recommend::data::SideFeatures>, what: &str| match f {
            Some(f) if rec.config.kind == kiln::recommend::RecommenderKind::TwoTower => {
                let missing = if f.missing > 0 { format!(", {} without a row", f.missing) } else { String::new() };
                format!(", {what} features: {} from {} columns{missing}", f.width(), f.encoder.columns.len())
            }
            _ => String::new(),
        };
        println!(
            "{} users, {} items, {} interactions: {} train, {} validation, {} test (leave-last-out){}{}",
            data.users.len(),
            data.items.len(),
            data.len(),
            split.train.len(),
            split.valid.len(),
            split.test.len(),
            feats(&data.user_features, "user"),
            feats(&data.item_features, "item")
        );
        print!("{}", rec.model.summary());
    }
    let t = &cfg.train;
    let fit = RecommenderFit {
        epochs: t.epochs(),
        batch_size: t.batch_size(),
        optimizer: t.optimizer.clone(),
        schedule: t.schedule.clone(),
        seed: t.seed,
        patience: t.patience,
        k: 10,
        reference: false,
        shuffle: t.shuffle,
    };
    let mut log = String::new();
    let (quiet, epochs) = (a.quiet, t.epochs());
    let logs = rec.fit(split, &fit, |e| {
        let mut line = serde_json::json!({"epoch": e.epoch, "loss": e.loss, "seconds": e.seconds});
        let mut shown = String::new();
        if let Some(v) = &e.valid {
            line["val_hr@10"] = v.hr.into();
            line["val_ndcg@10"] = v.ndcg.into();
            shown = format!("  val HR@10 {:.4}  val NDCG@10 {:.4}", v.hr, v.ndcg);
        }
        let _ = writeln!(log, "{line}");
        let _ = kiln::io::write_atomic(&dir.join(crate::run_dir::LOG_JSONL), log.as_bytes());
        if !quiet {
            println!("epoch {}/{epochs}  loss {:.4}{shown}  ({:.2} s)", e.epoch, e.loss, e.seconds);
        }
    })?;
    if let Some(best) = logs.iter().filter(|l| l.valid.is_some()).max_by(|a, b| {
        let key = |l: &kiln::recommend::EpochLog| l.valid.as_ref().map_or(0.0, |v| v.ndcg);
        key(a).total_cmp(&key(b)).then(b.epoch.cmp(&a.epoch))
    }) && best.epoch != logs.len()
        && !a.quiet
    {
        println!("kept epoch {} (the best validation NDCG@10)", best.epoch);
    }
    let mut results = serde_json::Map::new();
    for p in [Protocol::Sampled, Protocol::Full] {
        let r = rec.evaluate(&split.test, p, 10)?;
        println!("test {r}");
        results.insert(p.name().into(), serde_json::to_value(&r).unwrap_or_default());
    }
    let secs = logs.iter().map(|l| l.seconds).sum::<f64>() / logs.len().max(1) as f64;
    let metrics = serde_json::json!({"test": results, "epochs": logs.len(), "seconds_per_epoch": secs});
    let text = serde_json::to_string_pretty(&metrics).unwrap_or_default() + "\n";
    kiln::io::write_atomic(&dir.join("metrics.json"), text.as_bytes())?;
    rec.save(dir.join(MODEL))?;
    if let Some(o) = output {
        rec.save(o)?;
    }
    println!("saved model to {}", output.map_or(dir.join(MODEL), Path::to_path_buf).display());
    Ok(())
}

/// `kiln evaluate MODEL --protocol P --k K`: the run folder's test items (or `--data`'s split folder,
/// or a run folder holding one) ranked as `train` ranked them.
pub fn evaluate(model: &Path, data: Option<&Path>, protocol: &str, k: usize, valid: bool) -> Result<()> {
    let protocol = Protocol::parse(protocol).ok_or_else(|| {
        Error::Invalid(format!(
            "--protocol must be `sampled` (99 sampled negatives) or `full` (every item), got `{protocol}`"
        ))
    })?;
    if k == 0 {
        return Err(Error::Invalid("--k must be at least 1".into()));
    }
    let file = model_file(model);
    let rec = Recommender::load(&file)?;
    let folder = match data {
        Some(d) if d.join(SPLIT_DIR).is_dir() => d.join(SPLIT_DIR),
        Some(d) if !d.join(kiln::recommend::split::TEST).is_file() => {
            return Err(Error::Invalid(format!(
                "--data {}: neither a run folder (with split/) nor a split folder (with {})",
                d.display(),
                kiln::recommend::split::TEST
            )));
        }
        Some(d) => d.to_path_buf(),
        None => {
            let run = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let s = run.join(SPLIT_DIR);
            if !s.is_dir() {
                return Err(Error::Invalid(format!(
                    "{}: no split folder beside the model ({}); give the run folder that trained it with --data",
                    file.display(),
                    s.display()
                )));
            }
            s
        }
    };
    let split = Split::read(&folder, &rec.users, &rec.items)?;
    let held = if valid { &split.valid } else { &split.test };
    if held.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no {} items in the split",
            folder.display(),
            if valid { "validation" } else { "test" }
        )));
    }
    if protocol == Protocol::Sampled && held.iter().any(|h| h.negatives.is_empty()) {
        return Err(Error::Invalid(format!("{}: the split has no sampled negatives", folder.display())));
    }
    println!("{} {}", if valid { "validation" } else { "test" }, rec.evaluate(held, protocol, k)?);
    Ok(())
}

/// What `kiln recommend` is asked for.
pub struct Ask<'a> {
    pub user: Option<&'a str>,
    pub similar: Option<&'a str>,
    pub features: &'a [String],
    pub k: usize,
    pub json: bool,
}

pub fn recommend(model: &Path, ask: Ask) -> Result<()> {
    if ask.k == 0 {
        return Err(Error::Invalid("--k must be at least 1".into()));
    }
    let rec = Recommender::load(model_file(model))?;
    let list = match (ask.user, ask.similar, ask.features.is_empty()) {
        (Some(u), None, true) => rec.recommend(u, ask.k)?,
        (None, Some(i), true) => rec.similar_items(i, ask.k)?,
        (None, None, false) => {
            let pairs = ask
                .features
                .iter()
                .map(|f| {
                    f.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).ok_or_else(|| {
                        Error::Invalid(format!(
                            "--feature `{f}`: expected NAME=VALUE, e.g. --feature occupation=student"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            rec.recommend_new_user(&pairs, ask.k)?
        }
        _ => {
            return Err(Error::Invalid(
                "give one of --user ID, --similar-items ID, or --feature NAME=VALUE (repeatable) for a new user".into(),
            ));
        }
    };
    if ask.json {
        let items: Vec<_> = list.iter().map(|(i, s)| serde_json::json!({"item": i, "score": s})).collect();
        println!("{}", serde_json::Value::Array(items));
    } else {
        let what = if ask.similar.is_some() { "cosine" } else { "score" };
        println!("rank  item  {what}");
        for (r, (i, s)) in list.iter().enumerate() {
            println!("{:>4}  {i}  {s:.4}", r + 1);
        }
    }
    Ok(())
}
