//! The prepared inputs of a table model for the first rows of a CSV file, as JSON (`[[f32, ...], ...]`):
//! what bench/serve_load.py sends the ONNX peer, which has no copy of kiln's preparation.
//!
//!     cargo run --release -p kiln-bench --bin prepared -- MODEL FILE.csv [ROWS]

use kiln::data::csv::{CsvOptions, read_table};
use kiln::model::Sequential;
use std::path::Path;

fn main() -> kiln::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, file, rest @ ..] = &args[..] else {
        eprintln!("usage: prepared MODEL FILE.csv [ROWS]");
        std::process::exit(2);
    };
    let n: usize = rest.first().and_then(|s| s.parse().ok()).unwrap_or(1);
    let model = Sequential::load(path)?;
    let prep = model.preparation().ok_or_else(|| kiln::Error::Config(format!("{path}: not a table model")))?;
    let table = read_table(Path::new(file), &CsvOptions::default())?;
    let rows: Vec<usize> = (0..n.min(table.rows())).collect();
    let x = prep.transform(&table, &rows)?;
    let width = x.shape()[1];
    let out: Vec<&[f32]> = x.data().chunks(width).collect();
    println!("{}", serde_json::to_string(&out).expect("floats"));
    Ok(())
}
