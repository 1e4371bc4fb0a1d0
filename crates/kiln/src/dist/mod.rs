//! Data-parallel training: several processes (ranks) train one model. Each takes its shard of every global
//! batch, and the ranks sum their gradients before each optimizer step, so every rank takes the step one
//! process would take on the whole batch, and the weights stay equal on every rank without being sent.
//!
//! `Collective` is the seam: the sums a step needs. kiln ships one over MPI (`Mpi`, feature `mpi`), which
//! `from_env` starts when `mpirun` launched the process. The dense gradients go in one call per step, as one
//! flat buffer: on these 2-core machines every core is busy with the backward pass, so a reduction overlapped
//! with it would have no core of its own to run on. An embedding table's gradient, whose rows a batch
//! mostly leaves at zero, goes as the rows it has (ids and values, gathered from every rank) when that is
//! fewer bytes than the table: the reviews bag's 12.8 MB table is 0.9 MB of rows on two ranks
//! (`kiln-bench --bin distcost`; `step.rs` `sum_over_ranks`).

mod grads;
#[cfg(feature = "mpi")]
mod mpi;

pub(crate) use grads::GradSums;

#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;

use kiln_core::{Error, Result};
use std::ops::Range;
use std::sync::Arc;

/// The sums data-parallel training needs, over every rank of one job.
pub trait Collective: Send + Sync + std::fmt::Debug {
    /// This process's place among the ranks, 0-based. Rank 0 writes the logs, checkpoints and the model.
    fn rank(&self) -> usize;
    /// How many ranks train together.
    fn size(&self) -> usize;
    /// Sums `buf` element by element over every rank, in place: every rank ends with the same sums.
    fn sum_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// `sum_f32` for f64 (losses and metric sums, kept in f64 as one process keeps them).
    fn sum_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// Every rank's `mine`, one after another in rank order, into `all` (an all-gather of varying lengths):
    /// `lens[r]` is rank r's length, the same slice on every rank.
    fn gather_f32(&self, mine: &[f32], lens: &[usize], all: &mut Vec<f32>) -> Result<()>;
    /// Returns once every rank has called it (a sum of nothing worth sending).
    fn barrier(&self) -> Result<()> {
        self.sum_f64(&mut [0.0])
    }
    /// Ends every rank's process with `code` (after an error on this one, so that no rank waits forever).
    fn abort(&self, code: i32) -> !;
}

/// A collective shared by the code that trains (fit's options, the command line).
pub type Shared = Arc<dyn Collective>;

/// The samples of a global batch of `n` that rank `rank` of `size` takes: contiguous, the first `n % size`
/// ranks one more than the others. Shards of sizes that differ are weighted by their sizes (see `step`).
pub fn shard(n: usize, rank: usize, size: usize) -> Range<usize> {
    let (base, extra) = (n / size, n % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// Where a launcher (mpirun, srun) put this process, read from the environment it sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub size: usize,
    /// Ranks on this machine (they share its cores).
    pub local_size: usize,
}

/// Open MPI's variables, then the PMI ones MPICH and Slurm set.
const SIZE_VARS: [(&str, &str, &str); 2] = [
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS"),
];

/// The launch this process is part of, when a launcher started it with more than one rank.
pub fn launched() -> Option<Launch> {
    let num = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<usize>().ok());
    SIZE_VARS.iter().find_map(|&(size, rank, local)| {
        let (size, rank) = (num(size)?, num(rank)?);
        (size > 1 && rank < size).then(|| Launch { rank, size, local_size: num(local).unwrap_or(1).max(1) })
    })
}

/// The collective of the job this process was launched in (`mpirun -np N kiln train ...`), or `None` when
/// it runs alone. A launch of several ranks in a build without MPI is an error: each rank would train
/// alone and write the same files.
pub fn from_env() -> Result<Option<Shared>> {
    let Some(launch) = launched() else {
        return Ok(None);
    };
    #[cfg(feature = "mpi")]
    {
        let mpi = Mpi::start()?;
        if (mpi.rank(), mpi.size()) != (launch.rank, launch.size) {
            // An MPI library that is not the launcher's makes every process a world of its own.
            return Err(Error::Config(format!(
                "the launcher started this process as rank {} of {}, but MPI sees rank {} of {}: launch kiln \
                 with the mpirun of the MPI it was built with (Open MPI)",
                launch.rank,
                launch.size,
                mpi.rank(),
                mpi.size()
            )));
        }
        Ok(Some(Arc::new(mpi)))
    }
    #[cfg(not(feature = "mpi"))]
    Err(Error::Config(format!(
        "started as rank {} of {} by an MPI launcher, but this kiln was built without MPI: build it with \
         `cargo build --release --features kiln-cli/mpi` (Debian: apt-get install libopenmpi-dev openmpi-bin \
         libclang-dev), or run it without mpirun",
        launch.rank, launch.size
    )))
}

/// `Error::Config` naming the step: kept here so that every rank says the same.
pub(crate) fn too_small(batch: usize, size: usize) -> Error {
    Error::Config(format!(
        "fit: a batch of {batch} cannot be shared by {size} ranks: make batch_size at least {size} (it is the \
         global batch, split over the ranks)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_once_in_order() {
        for n in 0..40 {
            for size in 1..7 {
                let parts: Vec<Range<usize>> = (0..size).map(|r| shard(n, r, size)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, n);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start, "n {n} size {size}");
                    assert!(w[0].len() >= w[1].len() && w[0].len() - w[1].len() <= 1);
                }
            }
        }
    }
}
