//! `kiln embed`: one vector per text of a table's column, from a pretrained encoder folder
//! (`kiln::pretrained`), written as CSV (a header `v0..v{d-1}`, a row per input row) or NumPy .npy
//! (float32, [rows, d]). The file is written whole or not at all.

use kiln::data::csv::{CsvOptions, read_table};
use kiln::pretrained::Encoder;
use kiln::{Error, Result};
use std::path::Path;

/// A float32 [rows, d] array in NumPy's .npy format (version 1.0, little-endian, C order).
pub fn npy(vecs: &[Vec<f32>], d: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {d}), }}", vecs.len());
    // Magic, version, header length, then the header padded with spaces to a multiple of 64 with '\n' last.
    let unpadded = 10 + dict.len() + 1;
    let header = format!("{dict}{}\n", " ".repeat(unpadded.next_multiple_of(64) - unpadded));
    let mut out = Vec::with_capacity(10 + header.len() + vecs.len() * d * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in vecs {
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out
}

fn csv(vecs: &[Vec<f32>], d: usize) -> Vec<u8> {
    let mut s = (0..d).map(|j| format!("v{j}")).collect::<Vec<_>>().join(",");
    s.push('\n');
    for v in vecs {
        s.push_str(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","));
        s.push('\n');
    }
    s.into_bytes()
}

/// The texts of `column` of the table `input`, one per row. Every cell is text here: "NA" is a text like
/// any other, an empty cell the empty text.
pub fn column_texts(input: &Path, column: &str) -> Result<Vec<String>> {
    let table = read_table(input, &CsvOptions { missing: Vec::new(), ..Default::default() })?;
    let col = table.column(column)?;
    Ok(col.cells.iter().map(|c| c.clone().unwrap_or_default()).collect())
}

/// "embedding [=====>    ] 96/1000 texts, ETA 12s" on stderr, or nothing with `quiet`.
pub fn progress_bar(n: usize, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(n as u64);
    let style = indicatif::ProgressStyle::with_template("embedding [{bar:30}] {pos}/{len} texts, ETA {eta}")
        .expect("a valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

pub fn embed(model: &Path, input: &Path, column: &str, output: &Path, batch: usize, quiet: bool) -> Result<()> {
    let ext = output.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let write: fn(&[Vec<f32>], usize) -> Vec<u8> = match ext.as_deref() {
        Some("csv") => csv,
        Some("npy") => npy,
        _ => {
            return Err(Error::Config(format!("--output {}: want a .csv or .npy file", output.display())));
        }
    };
    if batch == 0 {
        return Err(Error::Config("--batch-size 0: want at least 1".into()));
    }
    let mut encoder = Encoder::open(model)?;
    let owned = column_texts(input, column)?;
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    if texts.is_empty() {
        return Err(Error::Config(format!("{}: no rows to embed", input.display())));
    }
    let bar = progress_bar(texts.len(), quiet);
    let (vecs, truncated) = encoder.embed(&texts, batch, &mut |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    if truncated > 0 {
        eprintln!(
            "note: {truncated} of {} texts are longer than the model's {} tokens and were cut there (as \
             sentence-transformers does)",
            texts.len(),
            encoder.max_tokens
        );
    }
    kiln::io::write_atomic(output, &write(&vecs, encoder.dim()))?;
    println!("wrote {} vectors of {} values to {}", vecs.len(), encoder.dim(), output.display());
    Ok(())
}
