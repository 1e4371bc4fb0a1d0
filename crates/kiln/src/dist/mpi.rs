//! `Collective` over MPI (the `mpi` crate on the system's Open MPI): `MPI_Allreduce` with MPI's own sum, and
//! `MPI_Allgatherv` for an embedding table's rows.
//! Started with `MPI_THREAD_SERIALIZED`, since `fit` runs on a thread of kiln's pool, not the main thread;
//! a lock makes the calls one at a time.

use super::Collective;
use kiln_core::{Error, Result};
use mpi::collective::SystemOperation;
use mpi::datatype::{Equivalence, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::CommunicatorCollectives;
use std::sync::Mutex;

/// Every rank of `MPI_COMM_WORLD`. MPI ends (`MPI_Finalize`) when it is dropped.
pub struct Mpi {
    rank: usize,
    size: usize,
    /// Receive buffers, kept so that a steady training step does not allocate.
    recv: Mutex<(Vec<f32>, Vec<f64>)>,
    _universe: Universe,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mpi {{ rank: {}, size: {} }}", self.rank, self.size)
    }
}

impl Mpi {
    /// Starts MPI (once per process).
    pub fn start() -> Result<Mpi> {
        let (universe, level) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| Error::Config("MPI was already started in this process".into()))?;
        if level < mpi::Threading::Serialized {
            return Err(Error::Config(format!(
                "this MPI library gives threading level {level:?}; kiln calls it from a worker thread and needs \
                 Serialized"
            )));
        }
        let world = universe.world();
        Ok(Mpi {
            rank: world.rank() as usize,
            size: world.size() as usize,
            recv: Mutex::new((Vec::new(), Vec::new())),
            _universe: universe,
        })
    }
}

/// `MPI_Allreduce` of `buf` into `out`, copied back: the mpi crate has no in-place form. MPI's default error
/// handler ends the job on failure, so there is no error to return.
fn sum_through<T: Equivalence + Copy + Default>(buf: &mut [T], out: &mut Vec<T>) {
    out.resize(buf.len(), T::default());
    SimpleCommunicator::world().all_reduce_into(&buf[..], &mut out[..], SystemOperation::sum());
    buf.copy_from_slice(out);
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        sum_through(buf, &mut self.recv.lock().unwrap_or_else(|p| p.into_inner()).0);
        Ok(())
    }

    fn sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        sum_through(buf, &mut self.recv.lock().unwrap_or_else(|p| p.into_inner()).1);
        Ok(())
    }

    fn gather_f32(&self, mine: &[f32], lens: &[usize], all: &mut Vec<f32>) -> Result<()> {
        let count = |n: usize| {
            mpi::Count::try_from(n).map_err(|_| Error::Config(format!("{n} values are too many for one MPI message")))
        };
        let counts = lens.iter().map(|&n| count(n)).collect::<Result<Vec<_>>>()?;
        let displs = lens.iter().scan(0, |at, &n| Some(std::mem::replace(at, *at + n))).map(count);
        let displs = displs.collect::<Result<Vec<_>>>()?;
        all.clear();
        all.resize(lens.iter().sum(), 0.0);
        let _one_at_a_time = self.recv.lock().unwrap_or_else(|p| p.into_inner());
        let mut parts = PartitionMut::new(&mut all[..], counts, &displs[..]);
        SimpleCommunicator::world().all_gather_varcount_into(mine, &mut parts);
        Ok(())
    }

    fn abort(&self, code: i32) -> ! {
        SimpleCommunicator::world().abort(code)
    }
}
