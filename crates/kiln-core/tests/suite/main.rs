//! kiln-core's integration tests as one test binary (one link instead of seven; see kiln's tests/suite).
//! Threading settings (`ops::set_num_threads`, `par::set_min_parallel_work`) are process-wide, so every test
//! that changes them holds `SETTINGS` while it does.

use std::sync::{Mutex, MutexGuard};

static SETTINGS: Mutex<()> = Mutex::new(());

/// Takes the threading settings for the caller's test (a test that failed while holding them poisons
/// nothing: its settings are restored by the next taker's own calls).
pub fn settings() -> MutexGuard<'static, ()> {
    SETTINGS.lock().unwrap_or_else(|e| e.into_inner())
}

mod backend;
#[cfg(feature = "cuda")]
mod cuda;
mod fast_paths;
mod fused;
mod gradcheck;
mod quant;
mod reference_forwards;
mod torch_fixtures;
