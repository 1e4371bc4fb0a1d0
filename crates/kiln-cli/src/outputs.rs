//! Where a command writes, checked before it does any work: a file path (not empty, not a folder) in a folder
//! that exists, and never one of the files the command reads, by another spelling or through a link. Before
//! these checks `kiln predict M --input rows.csv --output rows.csv` replaced the rows with predictions and
//! exited 0, and `[output] model = ""` failed only once training had finished.

use kiln::{Error, Result};
use std::path::{Path, PathBuf};

/// Fails when `out` (named in messages as `what`: "--output", "[output] model") could not be written as a
/// file, or is one of the files in `reads` (those that do not exist are not read, and are skipped).
pub fn check_output(what: &str, out: &Path, reads: &[&Path]) -> Result<()> {
    if out.as_os_str().is_empty() {
        return Err(Error::Config(format!("{what} is empty: name a file to write")));
    }
    if out.is_dir() {
        return Err(Error::Config(format!(
            "{what} {} is a folder: name a file to write (e.g. {})",
            out.display(),
            out.join("model.safetensors").display()
        )));
    }
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(Error::Io {
            path: out.display().to_string(),
            message: format!("folder {} does not exist", dir.display()),
        });
    }
    let written = full(out);
    for input in reads.iter().filter(|p| p.is_file()) {
        if written.is_some() && full(input) == written {
            let also = match *input == out {
                true => String::new(),
                false => format!(" ({})", input.display()),
            };
            return Err(Error::Config(format!(
                "{what} {} is the file being read{also}; name another file to write",
                out.display()
            )));
        }
    }
    Ok(())
}

/// The file a path names once links and relative parts are resolved; for a file not yet there, its
/// resolved folder joined with its name.
fn full(p: &Path) -> Option<PathBuf> {
    if let Ok(c) = p.canonicalize() {
        return Some(c);
    }
    let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Some(parent.canonicalize().ok()?.join(p.file_name()?))
}
