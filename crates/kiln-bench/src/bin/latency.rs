//! One-row prediction latency, in-process and warm, as a server answers a request: a raw row of the file
//! (strings, as they would arrive) is prepared with the model's saved preparation and predicted, one at a
//! time. `cargo run --release -p kiln-bench --bin latency [-- --calls N]` prints one JSON line per model:
//! the adult table model (examples/adult/adult.toml) and the sentiment embedding bag
//! (examples/reviews/sentiment.toml), each built by its config with the preparation fitted on its training
//! rows. Training does not change the work of a prediction, so the models are not trained here.

use kiln::config::Config;
use kiln::data::table::{Column, Table};
use kiln::prelude::*;
use std::time::Instant;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Row `r` of `table` alone, as a table of its own (the cells a request would carry).
fn one_row(table: &Table, r: usize) -> Table {
    let columns = table
        .columns
        .iter()
        .map(|c| Column { name: c.name.clone(), cells: vec![c.cells[r].clone()], declared: None })
        .collect();
    Table { source: "a request".into(), columns }
}

fn main() -> kiln::Result<()> {
    let calls: usize =
        std::env::args().skip_while(|a| a != "--calls").nth(1).map(|v| v.parse().expect("--calls N")).unwrap_or(5000);
    for (name, config, goal_ms) in
        [("adult", "examples/adult/adult.toml", 0.1), ("sentiment_bag", "examples/reviews/sentiment.toml", 1.0)]
    {
        let cfg = Config::from_file(format!("{ROOT}/{config}"))?;
        let table = cfg.read_table()?;
        let model = kiln::tabular::untrained_model(&cfg)?;
        let prep = model.preparation().cloned().expect("a table model has its preparation");
        let requests: Vec<Table> = (0..table.rows().min(500)).map(|r| one_row(&table, r)).collect();
        let predict = |t: &Table| -> kiln::Result<f32> {
            let x = prep.transform_inputs(t, &[0])?;
            let x: Vec<&Tensor> = x.iter().collect();
            Ok(model.predict_outputs(&x, 1)?[0].data()[0])
        };
        for t in requests.iter().cycle().take(200) {
            predict(t)?;
        }
        let mut us = Vec::with_capacity(calls);
        let mut sink = 0.0;
        for t in requests.iter().cycle().take(calls) {
            let start = Instant::now();
            sink += predict(t)?;
            us.push(start.elapsed().as_secs_f64() * 1e6);
        }
        us.sort_by(f64::total_cmp);
        let at = |q: f64| us[((us.len() - 1) as f64 * q) as usize];
        println!(
            "{}",
            serde_json::json!({"model": name, "median_us": at(0.5), "p99_us": at(0.99), "goal_us": goal_ms * 1000.0,
                "calls": calls, "checksum": sink})
        );
    }
    Ok(())
}
