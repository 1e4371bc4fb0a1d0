//! What the benchmark binaries share: the median of repeated timings, the process's peak memory, and the
//! reference MNIST models.

/// The median of `v` (sorted in place); NaN when empty.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// This process's peak resident memory in MiB (Linux's VmHWM), NaN where /proc is not there.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The reference MNIST models, compiled with Adam and cross-entropy: "cnn" (the seed's: Conv2D 32 3x3 relu,
/// MaxPooling 2, Dense 128 relu, Dropout 0.5, Dense 10 softmax) and "mlp" (Dense 512, 512, 10).
pub fn mnist_model(name: &str) -> kiln::Result<kiln::prelude::Sequential> {
    use kiln::prelude::*;
    let mut m = Sequential::new(&[28, 28, 1]);
    match name {
        "cnn" => {
            m.add(Conv2D::new(32, 3).activation(Activation::Relu))?;
            m.add(MaxPooling2D::new(2))?;
            m.add(Flatten::new())?;
            m.add(Dense::new(128).activation(Activation::Relu))?;
            m.add(Dropout::new(0.5))?;
            m.add(Dense::new(10).activation(Activation::Softmax))?;
        }
        "mlp" => {
            m.add(Flatten::new())?;
            m.add(Dense::new(512).activation(Activation::Relu))?;
            m.add(Dense::new(512).activation(Activation::Relu))?;
            m.add(Dense::new(10).activation(Activation::Softmax))?;
        }
        other => {
            return Err(kiln::Error::Config(format!("unknown bench model `{other}` (valid: cnn, mlp)")));
        }
    }
    m.compile(Adam::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy])?;
    Ok(m)
}
