//! Run folders: every run, of any kind, gets `RUNS/NAME-YYYYMMDD-HHMMSS` unless the user names one.

use kiln::checkpoint::Progress;
use std::path::{Path, PathBuf};

/// The config with every default filled in and absolute paths.
pub const CONFIG: &str = "config.toml";
/// The training checkpoint, written after every epoch and on SIGINT/SIGTERM.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The final model.
pub const MODEL: &str = "model.safetensors";
/// The per-epoch logs (`kiln plot` and `kiln report` read the second).
pub const LOG_CSV: &str = "log.csv";
pub const LOG_JSONL: &str = "log.jsonl";

/// The model file a path names: itself, or a run folder's model.safetensors.
pub fn model_file(path: &Path) -> PathBuf {
    if path.is_dir() { path.join(MODEL) } else { path.to_path_buf() }
}

/// The loggers every run has: `log.csv` and `log.jsonl` in `dir`.
pub fn loggers(dir: &Path) -> Vec<Box<dyn kiln::callbacks::Callback>> {
    vec![
        Box::new(kiln::callbacks::CsvLogger::new(dir.join(LOG_CSV))),
        Box::new(kiln::callbacks::JsonLogger::new(dir.join(LOG_JSONL))),
    ]
}

/// The signal that stopped the run (0: none), so that the process exits 128 + its number (130 for Ctrl-C)
/// as shells expect of an interrupted command.
pub static SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// SIGINT and SIGTERM ask training to stop after its current step (it then writes its checkpoint); a
/// second signal exits at once.
pub fn on_signal_stop() {
    #[cfg(unix)]
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // SAFETY: the handler only touches atomics and calls _exit, both async-signal-safe.
        let _ = unsafe {
            signal_hook::low_level::register(sig, move || {
                SIGNAL.store(sig, std::sync::atomic::Ordering::SeqCst);
                if kiln::train::stop_flag().swap(true, std::sync::atomic::Ordering::SeqCst) {
                    signal_hook::low_level::exit(128 + sig);
                }
            })
        };
    }
}

/// What the run ran on, beside its config: `run.json` (threads, kiln's version, the command line, when),
/// with one entry per session: the first run, then each `--resume`.
pub fn write_run_info(dir: &Path) -> kiln::Result<()> {
    let path = dir.join("run.json");
    let mut sessions: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("sessions").and_then(|s| s.as_array()).cloned())
        .unwrap_or_default();
    let this = serde_json::json!({
        "threads": kiln::threads::current(),
        "kiln": env!("CARGO_PKG_VERSION"),
        "command": std::env::args().collect::<Vec<_>>(),
        "started": timestamp(),
    });
    sessions.push(this.clone());
    let mut info = this;
    info["sessions"] = serde_json::Value::Array(sessions);
    let text = serde_json::to_string_pretty(&info).unwrap_or_default() + "\n";
    kiln::io::write_atomic(&path, text.as_bytes())
}

/// Makes a new run folder. A folder the user named must not hold files already (a run would be overwritten:
/// continue it with --resume instead); a default one that exists (two runs in one second) gets a suffix.
pub fn create(dir: PathBuf, named: bool) -> kiln::Result<PathBuf> {
    let holds_files = |d: &Path| std::fs::read_dir(d).map(|mut r| r.next().is_some()).unwrap_or(false);
    let dir = if named {
        if dir.exists() && !dir.is_dir() {
            return Err(kiln::Error::Invalid(format!(
                "--run-dir {}: is a file, not a folder; name a folder for the run",
                dir.display()
            )));
        }
        if holds_files(&dir) {
            return Err(kiln::Error::Invalid(format!(
                "{} already holds files (a run folder?); continue that run with --resume {}, or choose another \
                 --run-dir",
                dir.display(),
                dir.display()
            )));
        }
        dir
    } else {
        let mut d = dir.clone();
        let mut k = 2;
        while d.exists() {
            d = PathBuf::from(format!("{}-{k}", dir.display()));
            k += 1;
        }
        d
    };
    std::fs::create_dir_all(&dir).map_err(|e| kiln::Error::io(&dir, &e))?;
    Ok(dir)
}

/// Fails unless `dir` is a folder `kiln train` made (it holds the run's config.toml or log.jsonl): `plot` and
/// `report` on another folder had said only that its log.jsonl was missing.
pub fn require_run(dir: &Path) -> kiln::Result<()> {
    if !dir.join(CONFIG).is_file() && !dir.join("log.jsonl").is_file() {
        let what =
            if dir.is_dir() { "is not a run folder (no config.toml or log.jsonl in it)" } else { "is not a folder" };
        return Err(kiln::Error::Invalid(format!("{} {what}: give the run folder `kiln train` made", dir.display())));
    }
    Ok(())
}

/// The run's checkpoint, to continue it to `epochs` epochs (which must be more than it has trained).
pub fn checkpoint_to_resume(dir: &Path, epochs: usize) -> kiln::Result<(kiln::model::Model, Progress)> {
    let (m, p) = kiln::model::Model::load_checkpoint(dir.join(CHECKPOINT))?;
    if p.epoch >= epochs {
        return Err(kiln::Error::Invalid(format!(
            "{} has trained {} epochs already: give --epochs above {} to train further",
            dir.display(),
            p.epoch,
            p.epoch
        )));
    }
    Ok((m, p))
}

/// The default run folder for a run called `name` under `runs`.
pub fn default_for(runs: &Path, name: &str) -> PathBuf {
    runs.join(format!("{name}-{}", timestamp()))
}

/// The current UTC time as YYYYMMDD-HHMMSS.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}
