//! `kiln report RUN_DIR`: a Markdown summary of a run (`report.md` in the run folder): the config, the
//! training curves (`curves.svg`, made as by `kiln plot`), the last epoch's metrics, the final model's
//! test metrics and, for a classifier, its confusion matrix as a table and as a picture
//! (`confusion.svg`); for a table model, each column's permutation importance on the test rows
//! (`importance.svg`).

use crate::chart::{self, Bar};
use crate::plot;
use crate::run_dir::{CONFIG, MODEL};
use kiln::config::{Config, DataKind};
use kiln::data::mnist;
use kiln::data::table::{Column, Table};
use kiln::explain::Scoring;
use kiln::prelude::*;
use kiln::{Error, Result};
use std::fmt::Write;
use std::path::{Path, PathBuf};

pub fn report(run_dir: &Path) -> Result<PathBuf> {
    crate::run_dir::require_run(run_dir)?;
    let cfg_path = run_dir.join(CONFIG);
    let cfg_text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, &e))?;
    let cfg = Config::from_file(&cfg_path)?;
    let table_run = cfg.kind()? == DataKind::Table;
    plot::plot(run_dir)?;
    let panels = plot::panels(run_dir)?;
    let mut md = format!("# Run `{}`\n\n", run_dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    md += "## Training curves\n\n![training curves](curves.svg)\n\n## Last epoch\n\n| quantity | training | validation |\n|---|---|---|\n";
    let epochs = panels.first().and_then(|p| p.train.last()).map_or(0.0, |p| p.0);
    for p in &panels {
        let last = |s: &[(f64, f64)]| s.last().map(|v| format!("{:.4}", v.1)).unwrap_or_else(|| "-".into());
        let _ = writeln!(md, "| {} | {} | {} |", p.title, last(&p.train), last(&p.val));
    }
    let _ = writeln!(md, "\n{epochs} epochs logged.\n");
    let model_path = run_dir.join(MODEL);
    if model_path.exists() && cfg.kind()? == DataKind::Interactions {
        md += &ranking_scores(run_dir)?;
    } else if model_path.exists() && table_run {
        md += &table_scores(run_dir, &cfg, &model_path)?;
    } else if model_path.exists() {
        let model = Sequential::load(&model_path)?;
        let test = mnist::load_split(&cfg.data.path, "t10k")?;
        let y = cfg.targets(&test)?;
        let scores = model.evaluate(&test.x, &y, 1000)?;
        let _ = writeln!(md, "## Final model on the test set ({} samples)\n\n{scores}\n", test.x.rows());
        let classes = model.output_shape().last().copied().unwrap_or(1);
        if classes > 1 {
            let pred = model.predict(&test.x, 1000)?.argmax_rows();
            let mut cm = vec![vec![0usize; classes]; classes];
            for (&p, &l) in pred.iter().zip(&test.labels) {
                cm[l as usize][p] += 1;
            }
            kiln::io::write_atomic(&run_dir.join("confusion.svg"), confusion_svg(&cm).as_bytes())?;
            md +=
                "## Confusion matrix (rows: true class, columns: predicted)\n\n![confusion matrix](confusion.svg)\n\n";
            md += &format!(
                "| | {} |\n|---|{}\n",
                (0..classes).map(|c| c.to_string()).collect::<Vec<_>>().join(" | "),
                "---|".repeat(classes)
            );
            for (i, row) in cm.iter().enumerate() {
                let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
                let _ = writeln!(md, "| **{i}** | {} |", cells.join(" | "));
            }
            md.push('\n');
        }
    } else {
        md += "No final model in the run folder (the run has not finished): no test metrics.\n\n";
    }
    md += &format!("## Config\n\n```toml\n{}```\n", cfg_text);
    let out = run_dir.join("report.md");
    kiln::io::write_atomic(&out, md.as_bytes())?;
    Ok(out)
}

/// A recommender run's test ranking on both protocols (its metrics.json).
fn ranking_scores(run_dir: &Path) -> Result<String> {
    let path = run_dir.join("metrics.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, &e))?;
    let m: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::format(&path, format!("not JSON ({e})")))?;
    let mut md = String::from(
        "## Final model on the test items (leave-last-out)\n\n| protocol | users | HR@K | NDCG@K | recall@K | MRR | \
         coverage@K |\n|---|---|---|---|---|---|---|\n",
    );
    for p in ["sampled", "full"] {
        let r = &m["test"][p];
        let f = |k: &str| r[k].as_f64().map_or("-".to_string(), |v| format!("{v:.4}"));
        let _ = writeln!(
            md,
            "| {p} (K = {}) | {} | {} | {} | {} | {} | {} |",
            r["k"],
            r["users"],
            f("hr"),
            f("ndcg"),
            f("recall"),
            f("mrr"),
            f("coverage")
        );
    }
    md.push('\n');
    Ok(md)
}

/// A table run's final model on its test rows (the rows `split.csv` marks `test`): its scores and, for
/// classes, the per-class report and confusion matrix.
fn table_scores(run_dir: &Path, cfg: &Config, model_path: &Path) -> Result<String> {
    let model = Sequential::load(model_path)?;
    let (table, file_rows) = cfg.read_table_rows()?;
    let split_path = run_dir.join("split.csv");
    let split = std::fs::read_to_string(&split_path).map_err(|e| Error::io(&split_path, &e))?;
    let test_file_rows: std::collections::HashSet<usize> = split
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(',').filter(|(_, p)| *p == "test").and_then(|(r, _)| r.parse().ok()))
        .collect();
    let test: Vec<usize> = (0..table.rows()).filter(|&r| test_file_rows.contains(&file_rows[r])).collect();
    if test.is_empty() {
        return Ok("No test rows in the run's split: no test metrics.\n\n".into());
    }
    let scores = kiln::tabular::scores(&model, &table, &test)?;
    let mut md = String::new();
    // Several targets: a section each; the first classifier's matrix is `confusion.svg`, the next ones'
    // `confusion_2.svg`...
    let mut drawn = 0;
    for (target, s) in &scores {
        let of = if scores.len() == 1 { String::new() } else { format!(": `{target}`") };
        md += &format!("## Final model on the test rows{of} ({} rows)\n\n{s}\n\n", s.rows);
        if let Some(r) = &s.report {
            drawn += 1;
            let svg = if drawn == 1 { "confusion.svg".to_string() } else { format!("confusion_{drawn}.svg") };
            md += &format!("```\n{}```\n\n", r.render());
            kiln::io::write_atomic(&run_dir.join(&svg), confusion_svg(&r.confusion).as_bytes())?;
            md += &format!(
                "## Confusion matrix{of} (rows: true class, columns: predicted)\n\n![confusion matrix]({svg})\n\n"
            );
        }
    }
    // Importance is extra: a model it cannot score (a target of other values) still gets its report.
    md += &importance_section(run_dir, &model, &table, &test)
        .unwrap_or_else(|e| format!("## Permutation importance\n\nNot measured: {e}\n\n"));
    Ok(md)
}

/// Permutation importance of every column on the test rows (5 shuffles, seed 0; the first target's default
/// score), as a Markdown table and `importance.svg`: what `kiln explain MODEL --data` measures.
fn importance_section(run_dir: &Path, model: &Sequential, table: &Table, rows: &[usize]) -> Result<String> {
    let Some(prep) = model.preparation() else { return Ok(String::new()) };
    let test = Table {
        source: table.source.clone(),
        columns: table
            .columns
            .iter()
            .map(|c| Column { cells: rows.iter().map(|&r| c.cells[r].clone()).collect(), ..c.clone() })
            .collect(),
    };
    let scoring = Scoring::default_for(&prep.targets[0].task);
    let orders = kiln::explain::permutation::shuffles(rows.len(), 5, 0);
    let (base, mut imp) = kiln::explain::table_importance(model, &test, scoring, &orders)?;
    imp.sort_by(|p, q| q.mean.total_cmp(&p.mean));
    let bars: Vec<Bar> =
        imp.iter().map(|i| Bar { label: i.column.clone(), value: i.mean, interval: Some((i.low, i.high)) }).collect();
    let title = format!("permutation importance (drop in {})", scoring.name());
    let svg = chart::svg((760, 90 + 26 * bars.len() as u32), |a| chart::bars(a, &title, scoring.name(), &bars))?;
    kiln::io::write_atomic(&run_dir.join("importance.svg"), svg.as_bytes())?;
    let mut md = format!(
        "## Permutation importance on the test rows\n\nThe drop in {} ({base:.4} on the test rows) when a column is \
         shuffled, over 5 shuffles, with a 95% interval for the mean.\n\n![permutation importance](importance.svg)\n\n\
         | column | importance | 95% interval |\n|---|---:|---|\n",
        scoring.name()
    );
    for i in &imp {
        let _ = writeln!(md, "| {} | {:.4} | [{:.4}, {:.4}] |", i.column, i.mean, i.low, i.high);
    }
    md.push('\n');
    Ok(md)
}

/// Counts as a heat map: darker blue for larger shares of the row.
fn confusion_svg(cm: &[Vec<usize>]) -> String {
    let n = cm.len();
    let cell = 36.0;
    let (ox, oy) = (50.0, 40.0);
    let size = ox + cell * n as f64 + 10.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{}\" font-family=\"sans-serif\" \
         font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"14\" \
         text-anchor=\"middle\">predicted</text>\n<text x=\"12\" y=\"{}\" transform=\"rotate(-90 12 {})\" \
         text-anchor=\"middle\">true</text>\n",
        size + 10.0,
        ox + cell * n as f64 / 2.0,
        oy + cell * n as f64 / 2.0,
        oy + cell * n as f64 / 2.0
    );
    for (i, row) in cm.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{i}</text>",
            ox - 6.0,
            oy + cell * (i as f64 + 0.6)
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{i}</text>",
            ox + cell * (i as f64 + 0.5),
            oy - 6.0
        );
        for (j, &v) in row.iter().enumerate() {
            let share = v as f64 / total;
            let shade = (255.0 * (1.0 - 0.85 * share)) as u8;
            let ink = if share > 0.5 { "white" } else { "black" };
            let (x, y) = (ox + cell * j as f64, oy + cell * i as f64);
            let _ = writeln!(
                s,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgb({shade},{shade},255)\" \
                 stroke=\"#ccc\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{ink}\">{v}</text>",
                x + cell / 2.0,
                y + cell * 0.6
            );
        }
    }
    s + "</svg>\n"
}
