//! The subcommands. Each returns the library's error; `main` prints it as one line.

use kiln::config::Config;
use kiln::data::mnist;
use kiln::prelude::*;
use kiln::{Error, Result};
use std::path::Path;

pub fn evaluate(
    model_path: &Path,
    data: Option<&Path>,
    split: Option<&str>,
    batch_size: usize,
    protocol: Option<&str>,
    k: Option<usize>,
) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::Config("--batch-size 0: want at least 1".into()));
    }
    let file = crate::run_dir::model_file(model_path);
    if kiln::recommend::is_recommender(&file)? {
        let valid = match split.unwrap_or("test") {
            "test" => false,
            "validation" | "valid" => true,
            other => {
                return Err(Error::Invalid(format!(
                    "--split for a recommender is `test` or `validation` (its held-out items), got `{other}`"
                )));
            }
        };
        return crate::recommend::evaluate(&file, data, protocol.unwrap_or("sampled"), k.unwrap_or(10), valid);
    }
    if protocol.is_some() || k.is_some() {
        return Err(Error::Invalid(format!(
            "{}: --protocol and --k rank a recommender's items; this model is not a recommender",
            model_path.display()
        )));
    }
    let Some(data) = data else {
        return Err(Error::Invalid(
            "--data is needed: the MNIST folder, or the table (CSV, ARFF, JSON lines) to score".into(),
        ));
    };
    let model = Sequential::load(model_path)?;
    if model.preparation().is_some() {
        return crate::table::evaluate(model, model_path, data, split);
    }
    let split = split.unwrap_or("test");
    let prefix = match split {
        "test" => "t10k",
        "train" => "train",
        other => {
            return Err(Error::Invalid(format!("--split must be `test` or `train` for MNIST, got `{other}`")));
        }
    };
    let Some(compiled) = model.compile_config().cloned() else {
        return Err(Error::Config(format!(
            "{}: the model was saved without a loss; cannot evaluate",
            model_path.display()
        )));
    };
    let s = mnist::load_split(data, prefix)?;
    let y = if compiled.loss.sparse() {
        Tensor::new(&[s.labels.len()], s.labels.iter().map(|&l| l as f32).collect())?
    } else {
        s.y.clone()
    };
    let scores = model.evaluate(&s.x, &y, batch_size)?;
    println!("{split} {scores} ({} samples)", s.x.rows());
    Ok(())
}

/// An image model's prediction for a PNG, or for image `index` of an IDX file.
pub fn predict(model: Sequential, input: &Path, index: Option<usize>) -> Result<()> {
    let x = read_image(&model, input, index)?;
    let probs = model.predict(&x, 1)?;
    let p = probs.data();
    let best = kiln::core::argmax(p);
    println!("predicted class: {best} (probability {:.4})", p[best]);
    let all: Vec<String> = p.iter().enumerate().map(|(i, v)| format!("{i}: {v:.4}")).collect();
    println!("probabilities: {}", all.join(", "));
    Ok(())
}

/// One image for an image model, as a batch of one: a PNG of its input size, or image `index` of an IDX file.
pub fn read_image(model: &Sequential, input: &Path, index: Option<usize>) -> Result<Tensor> {
    let want = model.input_shape().to_vec();
    let x = if is_png(input)? {
        if index.is_some() {
            return Err(Error::Invalid("--index applies to IDX files, not to a PNG image".into()));
        }
        read_png(input, &want)?
    } else {
        let mut head = [0u8; 4];
        let idx = std::fs::File::open(input).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head)).is_ok()
            && head == [0, 0, 8, 3];
        if !idx {
            return Err(Error::Invalid(format!(
                "{}: neither a PNG image nor an IDX file of images, which an image model predicts from",
                input.display()
            )));
        }
        let images = mnist::load_images(input)?;
        let Some(i) = index else {
            return Err(Error::Invalid(format!(
                "{} holds {} images: choose one with --index N",
                input.display(),
                images.rows()
            )));
        };
        if i >= images.rows() {
            return Err(Error::Invalid(format!(
                "--index {i} is out of range: {} has {} images",
                input.display(),
                images.rows()
            )));
        }
        images.slice_rows(i, i + 1)
    };
    if x.shape()[1..] != want[..] {
        return Err(Error::Shape(format!(
            "{} is {:?} but the model takes {:?} (height, width, channels)",
            input.display(),
            &x.shape()[1..],
            want
        )));
    }
    Ok(x)
}

fn is_png(path: &Path) -> Result<bool> {
    let mut head = [0u8; 8];
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, &e))?;
    let n = f.read(&mut head).map_err(|e| Error::io(path, &e))?;
    Ok(n == 8 && head == [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a])
}

/// A PNG as one sample (1, height, width, channels) with values in [0, 1]; color is averaged to gray
/// for one-channel models.
fn read_png(path: &Path, want: &[usize]) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
    decode_png(&bytes, &path.display().to_string(), want)
}

/// `read_png` for a PNG in memory (`kiln serve`'s base64 images); `source` names it in errors.
pub fn decode_png(bytes: &[u8], source: &str, want: &[usize]) -> Result<Tensor> {
    let bad = |m: String| Error::Format { path: source.to_string(), message: m };
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| bad(format!("not a readable PNG: {e}")))?;
    // The size from the header, before any pixel is decoded: a small file may claim a huge image.
    let (height, width) = (reader.info().height as usize, reader.info().width as usize);
    if let [h, w, _] = want
        && (height, width) != (*h, *w)
    {
        return Err(Error::Shape(format!(
            "{source} is {height}x{width} pixels but the model takes {h}x{w} (height x width)"
        )));
    }
    let size = reader.output_buffer_size().ok_or_else(|| bad("PNG too large".into()))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| bad(format!("corrupt PNG data: {e}")))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let ch = info.color_type.samples();
    let channels = *want.last().unwrap_or(&1);
    let mut data = Vec::with_capacity(w * h * channels);
    for px in buf[..info.buffer_size()].chunks(ch) {
        let color = &px[..ch.min(3)];
        match channels {
            1 => data.push(color.iter().map(|&v| v as f32).sum::<f32>() / color.len() as f32 / 255.0),
            3 if color.len() == 3 => data.extend(color.iter().map(|&v| v as f32 / 255.0)),
            3 => data.extend([color[0] as f32 / 255.0; 3]),
            c => return Err(bad(format!("the model takes {c} channels; PNG input gives 1 or 3"))),
        }
    }
    Tensor::new(&[1, h, w, channels], data)
}

/// The layer table of a saved model, or of the model a config builds (a table's is sized by its data).
pub fn summary(path: &Path) -> Result<()> {
    let model = if path.extension().is_some_and(|e| e == "toml") {
        Config::from_file(path)?.build_model()?
    } else {
        Sequential::load(path)?
    };
    print!("{}", model.summary());
    Ok(())
}
