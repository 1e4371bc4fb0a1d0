//! One setting for where models compute: `--device cpu|cuda` on the command line, else `[train] device`
//! in a config, else the CPU. `cuda` is kiln-core's CUDA backend (feature `cuda`; backend/cuda/), which
//! every f32 graph made after [`configure`] runs on: training tapes and inference tapes alike. Models are
//! saved the same either way.

use kiln_core::{Error, Result};

/// The devices kiln knows.
pub const DEVICES: &[&str] = &["cpu", "cuda"];

/// Checks a device name, with the valid ones in the message.
pub fn check(name: &str) -> Result<()> {
    if DEVICES.contains(&name) {
        return Ok(());
    }
    Err(Error::Config(format!("device `{name}`: expected one of {}", DEVICES.join(", "))))
}

/// Makes every model made from now on compute on `name` ("cpu" or "cuda"). `cuda` needs a kiln built with
/// the `cuda` feature and a machine with an NVIDIA driver and GPU; either missing is an error that says so.
pub fn configure(name: &str) -> Result<()> {
    check(name)?;
    if name == "cpu" {
        kiln_core::set_default_backend(None);
        return Ok(());
    }
    cuda()
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<()> {
    let gpu = kiln_core::backend::cuda::Cuda::new()?;
    kiln_core::set_default_backend(Some(std::sync::Arc::new(gpu)));
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<()> {
    Err(Error::Device(
        "this kiln was built without CUDA: build it with `cargo build --release -p kiln-cli --features cuda`".into(),
    ))
}
