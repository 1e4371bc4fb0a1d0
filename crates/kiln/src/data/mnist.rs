//! MNIST from its four IDX files (raw or .gz), as Keras's `mnist.load_data()` gives it, scaled and shaped
//! for a channels-last model: images (n, 28, 28, 1) in [0, 1], labels one-hot (n, 10).

use super::idx::read_idx;
use kiln_core::{Error, Result, Tensor};
use std::path::{Path, PathBuf};

pub struct Split {
    /// (n, rows, cols, 1), pixel values / 255.
    pub x: Tensor,
    /// (n, 10) one-hot.
    pub y: Tensor,
    pub labels: Vec<u8>,
}

/// `dir/name` or `dir/name.gz`, whichever exists (the error names both).
pub fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if plain.is_file() {
        return Ok(plain);
    }
    if gz.is_file() {
        return Ok(gz);
    }
    Err(Error::Io { path: gz.display().to_string(), message: format!("no such file (nor {})", plain.display()) })
}

/// Images of an IDX file as (n, rows, cols, 1) floats in [0, 1].
pub fn load_images(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let idx = read_idx(path)?;
    let [n, r, c] = idx.dims[..] else {
        return Err(Error::format(path, format!("expected images (n, rows, cols), found sizes {:?}", idx.dims)));
    };
    Tensor::new(&[n, r, c, 1], idx.data.iter().map(|&p| p as f32 / 255.0).collect())
}

pub fn load_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let idx = read_idx(path)?;
    if idx.dims.len() != 1 {
        return Err(Error::format(path, format!("expected labels (n,), found sizes {:?}", idx.dims)));
    }
    if let Some(&bad) = idx.data.iter().find(|&&l| l > 9) {
        return Err(Error::format(path, format!("label {bad} is not a digit 0-9")));
    }
    Ok(idx.data)
}

/// One split: "train" or "t10k" (the test set).
pub fn load_split(dir: impl AsRef<Path>, prefix: &str) -> Result<Split> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        let message = if dir.exists() {
            "is a file, not a folder: give the folder that holds the MNIST IDX files".into()
        } else {
            "no such folder (expected the MNIST IDX files in it)".into()
        };
        return Err(Error::Io { path: dir.display().to_string(), message });
    }
    let img_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let lab_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let x = load_images(&img_path)?;
    let labels = load_labels(&lab_path)?;
    if labels.len() != x.rows() {
        return Err(Error::format(
            &lab_path,
            format!("{} labels for {} images in {}", labels.len(), x.rows(), img_path.display()),
        ));
    }
    let y = super::one_hot(&labels, 10)?;
    Ok(Split { x, y, labels })
}

/// (train, test), as `keras.datasets.mnist.load_data()` but from a local folder.
pub fn load(dir: impl AsRef<Path>) -> Result<(Split, Split)> {
    Ok((load_split(&dir, "train")?, load_split(&dir, "t10k")?))
}
