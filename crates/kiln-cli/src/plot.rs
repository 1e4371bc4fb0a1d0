//! `kiln plot RUN_DIR`: training curves from the run's `log.jsonl`, one panel per quantity (loss, each
//! metric, learning rate) with the training and validation values per epoch, written as `curves.svg` and
//! `curves.png` in the run folder. Both pictures come from one drawing (chart.rs, through plotters).

use crate::chart::{self, Curves, TRAIN, VAL};
use kiln::{Error, Result};
use std::path::{Path, PathBuf};

/// Pixels per panel.
const PANEL: (u32, u32) = (320, 240);

/// One panel: a title and up to two series (training, validation) of (epoch, value).
pub struct Panel {
    pub title: String,
    pub train: Vec<(f64, f64)>,
    pub val: Vec<(f64, f64)>,
}

/// The epochs logged in `run_dir/log.jsonl`, as panels.
pub fn panels(run_dir: &Path) -> Result<Vec<Panel>> {
    crate::run_dir::require_run(run_dir)?;
    let path = run_dir.join("log.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, &e))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| Error::format(&path, format!("line {}: not JSON ({e})", i + 1)))?;
        rows.push(v);
    }
    if rows.is_empty() {
        return Err(Error::format(&path, "no epochs logged yet"));
    }
    let mut names: Vec<String> = Vec::new();
    for r in &rows {
        for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
            let base = k.strip_prefix("val_").unwrap_or(k).to_string();
            if !["epoch", "seconds"].contains(&base.as_str()) && !names.contains(&base) {
                names.push(base);
            }
        }
    }
    // Loss first and the learning rate last, as Keras lists them.
    names.sort_by_key(|n| match n.as_str() {
        "loss" => 0,
        "learning_rate" => 2,
        _ => 1,
    });
    let series = |name: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| Some((r.get("epoch")?.as_f64()?, r.get(name)?.as_f64()?)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    };
    Ok(names.into_iter().map(|n| Panel { train: series(&n), val: series(&format!("val_{n}")), title: n }).collect())
}

pub fn plot(run_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let panels = panels(run_dir)?;
    let (svg, png) = (run_dir.join("curves.svg"), run_dir.join("curves.png"));
    let curves: Vec<Curves> = panels
        .iter()
        .map(|p| Curves {
            title: &p.title,
            x_label: "epoch",
            series: vec![("training", TRAIN, &p.train[..]), ("validation", VAL, &p.val[..])],
        })
        .collect();
    let size = (PANEL.0 * panels.len() as u32, PANEL.1);
    kiln::io::write_atomic(&svg, chart::svg(size, |a| chart::curves(a, &curves))?.as_bytes())?;
    kiln::io::write_atomic(&png, &chart::png(size, |a| chart::curves(a, &curves))?)?;
    Ok((svg, png))
}
