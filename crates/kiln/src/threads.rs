//! One setting for how many threads kiln computes on: `--threads N` on the command line, or the
//! `KILN_THREADS` environment variable, or else every core. It sizes rayon's pool (where every parallel
//! kernel runs) and the number of parts kernels split their work into. Ranks that `mpirun` started on one
//! machine share its cores: each gets cores / ranks unless told.

use kiln_core::{Error, Result};

/// The environment variable read when no count is given.
pub const ENV: &str = "KILN_THREADS";

/// The most threads kiln starts (each holds its own kernel buffers), unless the machine has more cores.
pub const MAX: usize = 256;

/// Sets the thread count from `n`, else from `KILN_THREADS`, else every core; returns the count in effect.
/// Call it once, before any training or prediction (rayon's pool can be sized only before its first use;
/// a later call with another count is an error naming both).
pub fn configure(n: Option<usize>) -> Result<usize> {
    let from_env = || -> Result<Option<usize>> {
        match std::env::var(ENV) {
            Ok(v) if v.trim().is_empty() => Ok(None),
            Ok(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .map(Some)
                .ok_or_else(|| Error::Config(format!("{ENV}={v}: expected a positive number of threads"))),
            Err(_) => Ok(None),
        }
    };
    let want = match n {
        Some(0) => return Err(Error::Config("--threads must be positive".into())),
        Some(n) => Some(n),
        None => from_env()?,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Ranks launched together on one machine share its cores.
    let want =
        want.or_else(|| crate::dist::launched().filter(|l| l.local_size > 1).map(|l| (cores / l.local_size).max(1)));
    let Some(want) = want else {
        return Ok(rayon::current_num_threads());
    };
    if want > MAX.max(cores) {
        return Err(Error::Config(format!(
            "{want} threads is more than kiln runs on (at most {}; this machine has {cores} cores)",
            MAX.max(cores)
        )));
    }
    if rayon::ThreadPoolBuilder::new().num_threads(want).build_global().is_err() && rayon::current_num_threads() != want
    {
        return Err(Error::Config(format!(
            "cannot use {want} threads: the thread pool already runs {} (set the count before training)",
            rayon::current_num_threads()
        )));
    }
    kiln_core::ops::set_num_threads(want);
    Ok(want)
}

/// The number of threads kiln computes on now.
pub fn current() -> usize {
    rayon::current_num_threads()
}
