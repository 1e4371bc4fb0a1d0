//! `kiln cv` and `kiln search`: the long runs made of many trainings. Each finished fold or config is printed
//! and written as a JSON line the moment it finishes (`cv --output FILE`; a search's `best.trials.jsonl`),
//! Ctrl-C or SIGTERM stops after the current step with what had finished, and `--resume` reads those lines
//! back and runs only what is missing: the folds and the configs are the same whatever is skipped (the
//! seed fixes them), so a resumed run ends with the numbers an uninterrupted one would have printed.

use kiln::config::Config;
use kiln::search::Folds;
use kiln::{Error, Result};
use std::path::{Path, PathBuf};

/// Adds a line to a file, flushed before returning (a JSON-lines log that survives an interrupted run).
fn append_line(path: &Path, line: &impl serde::Serialize) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_string(line).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).map_err(|e| Error::io(path, &e))?;
    writeln!(f, "{text}").and_then(|_| f.sync_data()).map_err(|e| Error::io(path, &e))
}

/// Pairs written as a JSON object in their own order (a `serde_json::Map` would sort them by name).
struct Ordered<'a, V>(&'a [(String, V)]);

impl<V: serde::Serialize> serde::Serialize for Ordered<'_, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// A line of `kiln cv --output` as written: one finished fold.
#[derive(serde::Serialize)]
struct FoldOut<'a> {
    fold: usize,
    of: usize,
    scores: Ordered<'a, f64>,
    /// `fingerprint` of the config and fold count.
    made_by: &'a str,
}

/// A line of a search's trials file, as written: one finished config.
#[derive(serde::Serialize)]
struct TrialOut<'a> {
    config: usize,
    of: usize,
    settings: Ordered<'a, String>,
    summary: String,
    rank: f64,
    /// `fingerprint` of the config, folds, --random and the settings varied.
    made_by: &'a str,
}

/// The same line read back.
#[derive(serde::Deserialize)]
struct TrialLine {
    settings: InOrder<String>,
    summary: String,
    /// `null` when no score ranked it (JSON has no −∞).
    rank: Option<f64>,
    made_by: Option<String>,
}

/// The JSON lines of a log an earlier run wrote, for `--resume`, each read as `L`; a line that does not
/// parse is named.
fn read_lines<L: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<L>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Invalid(format!("--resume: {} does not exist: nothing to resume", path.display())));
        }
        Err(e) => return Err(Error::io(path, &e)),
    };
    let mut out = Vec::new();
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
    for (k, &(i, line)) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(l) => out.push(l),
            // A last line cut short (the process killed while writing it, with no newline after it) is what
            // was being written: left out, and said.
            Err(_) if k + 1 == lines.len() && !text.ends_with('\n') => {
                eprintln!("warning: {}: line {} was cut short; it is left out", path.display(), i + 1)
            }
            Err(e) => {
                return Err(Error::Data(format!("{}: line {} is not a line kiln wrote ({e})", path.display(), i + 1)));
            }
        }
    }
    Ok(out)
}

/// A line of `kiln cv --output`: a fold, or the summary that ends a finished run.
#[derive(serde::Deserialize)]
struct FoldLine {
    fold: Option<usize>,
    of: Option<usize>,
    scores: Option<InOrder<f64>>,
    summary: Option<String>,
    made_by: Option<String>,
}

/// What a log's lines were made by, so that `--resume` refuses another run's file: FNV-1a of the config
/// as run (every default filled in, paths absolute) and the run's own parameters, in hex.
fn fingerprint(cfg: &Config, run: &str) -> String {
    let text = format!("{}\n{run}", cfg.resolved().to_toml());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}")
}

fn check_folds(folds: usize) -> Result<()> {
    if !(2..=1000).contains(&folds) {
        return Err(Error::Invalid(format!(
            "--folds {folds}: cross-validation needs at least 2 folds, and at most 1000"
        )));
    }
    Ok(())
}

/// A JSON object's pairs in the order they were written (read into a map they would be sorted, and a resumed
/// run would list scores and settings in another order than an uninterrupted one).
struct InOrder<V>(Vec<(String, V)>);

impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for InOrder<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = InOrder<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("values by name")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<InOrder<V>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, V>()? {
                    out.push((k, v));
                }
                Ok(InOrder(out))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// A fold's scores by name, in order.
type Scores = Vec<(String, f64)>;

/// The folds an earlier `kiln cv --output FILE` finished: (fold index from 0, its scores).
fn finished_folds(path: &Path, folds: usize, made_by: &str) -> Result<Vec<(usize, Scores)>> {
    let mut out: Vec<(usize, Scores)> = Vec::new();
    for (i, line) in read_lines::<FoldLine>(path)?.into_iter().enumerate() {
        if line.summary.is_some() {
            return Err(Error::Invalid(format!(
                "--resume: {} holds a finished cross-validation (its summary line is there)",
                path.display()
            )));
        }
        let (Some(fold), Some(of), Some(InOrder(named))) = (line.fold, line.of, line.scores) else {
            return Err(Error::Data(format!("{}: line {} is not a fold kiln cv wrote", path.display(), i + 1)));
        };
        if out.iter().any(|(j, _)| *j + 1 == fold) {
            return Err(Error::Data(format!("{}: fold {fold} appears twice (line {})", path.display(), i + 1)));
        }
        if of != folds || fold == 0 || fold > folds {
            return Err(Error::Invalid(format!(
                "--resume: {} holds fold {fold} of {of} (line {}), which a {folds}-fold run does not continue{}",
                path.display(),
                i + 1,
                if of != folds { format!(" (give --folds {of})") } else { String::new() }
            )));
        }
        if line.made_by.as_deref() != Some(made_by) {
            return Err(Error::Invalid(format!(
                "--resume: {} was written by another cross-validation (another config, or other settings): \
                 its folds cannot be summarized with this one's",
                path.display()
            )));
        }
        out.push((fold - 1, named));
    }
    Ok(out)
}

/// `kiln cv`: k folds of any config (a table's rows, or the training images), each scored by a model
/// trained on the others; each fold's line printed (and with `output`, written) as it finishes. Ctrl-C or
/// SIGTERM stops after the current step, with the finished folds' summary; `resume` continues from the
/// folds `output` holds.
pub fn cv(
    config: Option<&Path>,
    data: Option<&Path>,
    target: Option<&str>,
    folds: usize,
    set: &[String],
    output: Option<&Path>,
    resume: bool,
) -> Result<()> {
    let cfg = crate::train::config_of(config, None, data, target, set)?;
    check_folds(folds)?;
    let made_by = fingerprint(&cfg, &format!("cv, {folds} folds"));
    let earlier = match (output, resume) {
        (Some(o), true) => finished_folds(o, folds, &made_by)?,
        (None, true) => {
            return Err(Error::Invalid("--resume continues from the folds of --output FILE: give it".into()));
        }
        (Some(o), false) => {
            // The folds of an interrupted run are not written over without a word.
            if let Ok(text) = std::fs::read_to_string(o)
                && !text.contains("\"summary\"")
                && text.contains("\"fold\"")
            {
                return Err(Error::Invalid(format!(
                    "{} holds the finished folds of an interrupted cross-validation: continue it with --resume, or \
                     remove the file to start again",
                    o.display()
                )));
            }
            Vec::new()
        }
        (None, false) => Vec::new(),
    };
    for n in &cfg.notes {
        println!("note: {n}");
    }
    for (i, scores) in &earlier {
        println!("fold {}/{folds}: {} (finished earlier)", i + 1, Folds::Named(vec![scores.clone()]).line(0));
    }
    crate::run_dir::on_signal_stop();
    let start = std::time::Instant::now();
    let skip: Vec<usize> = earlier.iter().map(|(i, _)| *i).collect();
    // Every finished fold so far, earlier ones included, by index.
    let mut all: Vec<Option<Scores>> = vec![None; folds];
    for (i, s) in &earlier {
        all[*i] = Some(s.clone());
    }
    let mut written = Ok(());
    // A file that is not continued is replaced when the first fold finishes, not before: a run that fails
    // first leaves it as it was.
    let mut fresh = !resume;
    let r = cfg.cross_validate_skipping(folds, &skip, &mut |i, f| {
        let scores = f.fold(f.len() - 1);
        println!("fold {}/{folds}: {}", i + 1, f.line(f.len() - 1));
        if let (Some(o), true) = (output, written.is_ok()) {
            if std::mem::take(&mut fresh) {
                written = kiln::io::write_atomic(o, b"");
            }
            if written.is_ok() {
                let line = FoldOut { fold: i + 1, of: folds, scores: Ordered(&scores), made_by: &made_by };
                written = append_line(o, &line);
            }
        }
        all[i] = Some(scores);
    });
    written?;
    let finished = Folds::Named(all.iter().flatten().cloned().collect());
    match r {
        Ok(_) => {}
        Err(Error::Stopped(m)) => {
            let kept = match finished.len() {
                0 => "; no fold had finished".to_string(),
                n => format!("; {n} of {folds} folds had finished: {}", finished.summary()),
            };
            let file = match output {
                Some(o) => format!(" (in {}; continue with --resume)", o.display()),
                None => String::new(),
            };
            return Err(Error::Stopped(format!("{m}{kept}{file}")));
        }
        Err(e) => return Err(e),
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{folds}-fold cross-validation: {} ({secs:.1} s)", finished.summary());
    if let Some(o) = output {
        append_line(o, &serde_json::json!({ "summary": finished.summary(), "seconds": secs }))?;
        println!("wrote each fold's scores to {}", o.display());
    }
    Ok(())
}

/// One finished config of a search: its settings (as TOML text, by key), summary and rank.
struct Finished {
    settings: Vec<(String, String)>,
    summary: String,
    rank: f64,
}

/// The configs an earlier search finished, from its trials file; each must be one this search tries.
fn finished_trials(path: &Path, axes: &[kiln::config::Axis], made_by: &str) -> Result<Vec<Finished>> {
    let keys: Vec<String> = axes.iter().map(|a| a.key.clone()).collect();
    let mut out = Vec::new();
    for line in read_lines::<TrialLine>(path)? {
        if line.made_by.as_deref() != Some(made_by) {
            return Err(Error::Invalid(format!(
                "--resume: {} was written by another search (another config, settings, --folds or --random): its \
                 scores do not rank with this one's",
                path.display()
            )));
        }
        let settings = line.settings.0;
        let mut have: Vec<&String> = settings.iter().map(|(k, _)| k).collect();
        let mut want: Vec<&String> = keys.iter().collect();
        have.sort();
        want.sort();
        if have != want {
            return Err(Error::Invalid(format!(
                "--resume: {} was written by a search over {}, not over {}",
                path.display(),
                have.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
                want.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        for (k, v) in &settings {
            if let Some(a) = axes.iter().find(|a| &a.key == k)
                && !a.values.iter().any(|x| &x.to_string() == v)
            {
                return Err(Error::Invalid(format!(
                    "--resume: {} holds a config with {k} = {v}, which this search does not try",
                    path.display()
                )));
            }
        }
        let rank = line.rank.unwrap_or(f64::NEG_INFINITY);
        out.push(Finished { settings, summary: line.summary, rank });
    }
    Ok(out)
}

/// A trial's settings as `Finished` keeps them: each value as TOML text, by key.
fn as_text(settings: &[(String, toml::Value)]) -> Vec<(String, String)> {
    settings.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
}

fn same(a: &[(String, String)], b: &[(String, String)]) -> bool {
    a.len() == b.len() && a.iter().all(|p| b.contains(p))
}

/// `cfg` with the settings of a finished config applied (to write it out as the best).
fn with_text_settings(cfg: &Config, settings: &[(String, String)]) -> Result<Config> {
    let mut c = cfg.clone();
    for (k, v) in settings {
        let value = format!("x = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("x"))
            .ok_or_else(|| Error::Data(format!("--resume: `{v}` for {k} is not a TOML value")))?;
        c = kiln::config::with_setting(&c, k, &value)?;
    }
    c.fill_defaults();
    Ok(c)
}

/// `kiln search`: every combination of the settings (or `random` of them), each cross-validated; the best
/// config is written (default: best.toml beside the config), and every finished config's scores as it
/// finishes (`best.trials.jsonl`), which `resume` reads back to run only the configs not yet finished.
pub fn search(
    config: &Path,
    set: &[String],
    random: Option<usize>,
    folds: usize,
    output: Option<PathBuf>,
    resume: bool,
) -> Result<()> {
    let cfg = Config::from_file_unfilled(config)?;
    check_folds(folds)?;
    let out = output.unwrap_or_else(|| config.with_file_name("best.toml"));
    crate::outputs::check_output("--output", &out, &[config, &cfg.data.path])?;
    let trials = out.with_extension("trials.jsonl");
    let axes = set.iter().map(|s| kiln::config::parse_axis(s)).collect::<Result<Vec<_>>>()?;
    let made_by = fingerprint(&cfg, &format!("search, {folds} folds, random {random:?}, {}", set.join(" ")));
    let earlier = if resume { finished_trials(&trials, &axes, &made_by)? } else { Vec::new() };
    crate::run_dir::on_signal_stop();
    let start = std::time::Instant::now();
    let show = |settings: &[(String, String)]| -> String {
        settings.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
    };
    for (i, f) in earlier.iter().enumerate() {
        println!("config {}: {} | {} (finished earlier)", i + 1, f.summary, show(&f.settings));
    }
    let mut n = earlier.len();
    // The best finished config so far (rank, settings), earlier ones included.
    let mut best: Option<(f64, Vec<(String, String)>)> =
        earlier.iter().max_by(|a, b| a.rank.total_cmp(&b.rank)).map(|f| (f.rank, f.settings.clone()));
    let mut written = Ok(());
    let skip = |s: &[(String, toml::Value)]| earlier.iter().any(|f| same(&f.settings, &as_text(s)));
    let r = kiln::search::search(&cfg, &axes, folds, random, &skip, &mut |(settings, _, scores), of| {
        n += 1;
        let text = as_text(settings);
        println!("config {n}/{of}: {} | {}", scores.summary(), show(&text));
        let (summary, rank) = (scores.summary(), scores.rank());
        let line = TrialOut { config: n, of, settings: Ordered(&text), summary, rank, made_by: &made_by };
        if written.is_ok() {
            // A fresh search starts the file with its first finished config (one refused before writes nothing).
            let fresh = if n == 1 { kiln::io::write_atomic(&trials, b"") } else { Ok(()) };
            written = fresh.and_then(|_| append_line(&trials, &line));
        }
        if best.as_ref().is_none_or(|b| scores.rank() > b.0) {
            best = Some((scores.rank(), text));
        }
    });
    written?;
    let write_best = |settings: &[(String, String)], head: String| -> Result<()> {
        let conf = with_text_settings(&cfg, settings)?;
        kiln::io::write_atomic(&out, format!("{head}\n{}", conf.resolved().to_toml()).as_bytes())
    };
    let results = match r {
        Ok(r) => r,
        Err(Error::Stopped(m)) => {
            let kept = match &best {
                Some((_, settings)) => {
                    write_best(
                        settings,
                        format!(
                            "# The best of the {n} configs kiln search finished before it was interrupted ({folds}-fold \
                             cross-validation)"
                        ),
                    )?;
                    format!("; the best of the {n} finished configs ({}) is in {}", show(settings), out.display())
                }
                None => "; no config had finished, so there is nothing to resume".to_string(),
            };
            let file = match &best {
                Some(_) => {
                    format!("; every finished config's scores are in {} (continue with --resume)", trials.display())
                }
                None => String::new(),
            };
            return Err(Error::Stopped(format!("{m}{kept}{file}")));
        }
        Err(e) => return Err(e),
    };
    // This run's configs and the earlier ones, best first.
    let mut all: Vec<Finished> = earlier;
    all.extend(results.iter().map(|(s, _, scores)| Finished {
        settings: as_text(s),
        summary: scores.summary(),
        rank: scores.rank(),
    }));
    all.sort_by(|a, b| b.rank.total_cmp(&a.rank));
    // Which score ranked them (the same for every config of a search).
    let by = results.first().and_then(|(_, _, f)| f.ranked_by()).map(|(n, _)| format!(" by mean {n}"));
    println!("{} configs, {folds}-fold cross-validation each, best first{}:", all.len(), by.unwrap_or_default());
    for f in &all {
        println!("  {} | {}", f.summary, show(&f.settings));
    }
    write_best(
        &all[0].settings,
        format!(
            "# The best of {} configs found by kiln search ({folds}-fold cross-validation, {:.1} s)",
            all.len(),
            start.elapsed().as_secs_f64()
        ),
    )?;
    println!("wrote the best config to {}", out.display());
    Ok(())
}
