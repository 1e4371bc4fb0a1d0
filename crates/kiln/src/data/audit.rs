//! What is wrong with a table before training on it (`kiln data audit`): per column its type, missing
//! rate, distinct values, constant or near-constant columns, outliers; duplicate rows; the target's class
//! balance; columns that almost determine the target (leakage suspects: a column filled in after the
//! fact, or a copy of the label); and identifier columns (a row id, a file or person's name, a product code:
//! a different value on nearly every row, which a model can only memorize; zero-config runs leave them out).

use super::prepare::iqr_fences;
use super::table::{ColumnType, Table};
use kiln_core::Result;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ColumnAudit {
    pub name: String,
    pub kind: ColumnType,
    pub missing: usize,
    pub missing_rate: f64,
    pub distinct: usize,
    /// The most frequent value and its share of the present values.
    pub top: Option<(String, f64)>,
    /// Numbers only: values outside [Q1 − 1.5·IQR, Q3 + 1.5·IQR].
    pub outliers: Option<usize>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Findings worth a look, in words.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Audit {
    pub source: String,
    pub rows: usize,
    pub duplicate_rows: usize,
    pub target: Option<String>,
    /// (class, rows) of the target, most frequent first (classification targets).
    pub balance: Vec<(String, usize)>,
    pub columns: Vec<ColumnAudit>,
    /// Columns whose value alone almost determines the target.
    pub leakage_suspects: Vec<String>,
    /// Columns that look like identifiers (`identifier_columns`).
    pub identifiers: Vec<String>,
}

/// Whether a column looks like an identifier: at least 20 values, 95% or more of them distinct, and either
/// short strings (three words at most on average: codes, file names, people's names; longer text is free
/// text) or whole numbers spread densely over their range (a row number: at most twice as many possible
/// values as rows), not a measurement.
pub fn identifier_like(col: &super::table::Column, kind: ColumnType) -> bool {
    let present: Vec<&str> = col.present().map(|(_, v)| v).collect();
    let n = present.len();
    if n < 20 {
        return false;
    }
    let mut distinct = present.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if (distinct.len() as f64) < 0.95 * n as f64 {
        return false;
    }
    match kind {
        ColumnType::Number => {
            let v: Vec<f64> = present.iter().filter_map(|s| s.parse().ok()).collect();
            let whole = v.len() == n && v.iter().all(|x| x.fract() == 0.0);
            let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
            whole && hi - lo + 1.0 <= 2.0 * n as f64
        }
        ColumnType::Boolean => false,
        _ => {
            let words: usize = present.iter().map(|s| s.split_whitespace().count()).sum();
            words as f64 <= 3.0 * n as f64
        }
    }
}

/// The columns of `table` that look like identifiers (`identifier_like`), besides `skip` (the targets).
pub fn identifier_columns(table: &Table, types: &[ColumnType], skip: &[&str]) -> Vec<String> {
    table
        .columns
        .iter()
        .zip(types)
        .filter(|(c, k)| !skip.contains(&c.name.as_str()) && identifier_like(c, **k))
        .map(|(c, _)| c.name.clone())
        .collect()
}

/// Share of rows whose target is the most common one among rows with the same key.
fn purity(keys: &[Option<usize>], target: &[usize]) -> f64 {
    let mut counts: std::collections::HashMap<(usize, usize), usize> = Default::default();
    let mut totals: std::collections::HashMap<usize, usize> = Default::default();
    let mut n = 0;
    for (k, &t) in keys.iter().zip(target) {
        if let Some(k) = k {
            *counts.entry((*k, t)).or_default() += 1;
            *totals.entry(*k).or_default() += 1;
            n += 1;
        }
    }
    let mut best: std::collections::HashMap<usize, usize> = Default::default();
    for ((k, _), c) in counts {
        let b = best.entry(k).or_default();
        *b = (*b).max(c);
    }
    if n == 0 { 0.0 } else { best.values().sum::<usize>() as f64 / n as f64 }
}

pub fn audit(table: &Table, types: &[ColumnType], target: Option<&str>) -> Result<Audit> {
    let rows = table.rows();
    if let Some(t) = target {
        table.column(t)?;
    }
    let mut seen = std::collections::HashSet::new();
    let duplicate_rows = (0..rows)
        .filter(|&r| !seen.insert(table.columns.iter().map(|c| c.cells[r].as_deref()).collect::<Vec<_>>()))
        .count();
    // The target as class indices (classification) for the leakage check and the balance.
    let tcol = target.and_then(|t| table.columns.iter().position(|c| c.name == t));
    let mut balance = Vec::new();
    let mut classes: Option<Vec<usize>> = None;
    // Classes: a category, or a number with two values (0/1), as training reads them.
    if let Some(ti) = tcol
        && (types[ti] != ColumnType::Number || table.columns[ti].distinct() <= 2)
    {
        let col = &table.columns[ti];
        let mut names: Vec<&str> = col.present().map(|(_, v)| v).collect();
        names.sort_unstable();
        names.dedup();
        let idx: Vec<usize> =
            col.cells.iter().map(|c| c.as_deref().map_or(usize::MAX, |v| names.binary_search(&v).unwrap())).collect();
        for (k, n) in names.iter().enumerate() {
            balance.push((n.to_string(), idx.iter().filter(|&&i| i == k).count()));
        }
        balance.sort_by_key(|b| std::cmp::Reverse(b.1));
        classes = Some(idx);
    }
    let majority = balance.first().map_or(1.0, |b| b.1 as f64 / rows.max(1) as f64);
    let mut columns = Vec::new();
    let mut leakage_suspects = Vec::new();
    let mut identifiers = Vec::new();
    for (ci, (c, &kind)) in table.columns.iter().zip(types).enumerate() {
        if Some(ci) != tcol && identifier_like(c, kind) {
            identifiers.push(c.name.clone());
        }
        let present: Vec<&str> = c.present().map(|(_, v)| v).collect();
        let missing = rows - present.len();
        let mut counts: std::collections::HashMap<&str, usize> = Default::default();
        for v in &present {
            *counts.entry(v).or_default() += 1;
        }
        let top = counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(v, n)| (v.to_string(), *n as f64 / present.len().max(1) as f64));
        let mut notes = Vec::new();
        if missing > 0 {
            notes.push(format!("{:.1}% missing", 100.0 * missing as f64 / rows.max(1) as f64));
        }
        match (&top, counts.len()) {
            (_, 0) => notes.push("empty".into()),
            (_, 1) => notes.push("constant".into()),
            (Some((v, share)), _) if *share >= 0.99 => {
                notes.push(format!("near-constant ({:.1}% `{v}`)", share * 100.0))
            }
            _ => {}
        }
        let (mut outliers, mut min, mut max) = (None, None, None);
        if kind == ColumnType::Number {
            let mut v: Vec<f64> = present.iter().filter_map(|s| s.parse().ok()).collect();
            v.sort_by(f64::total_cmp);
            if !v.is_empty() {
                let (lo, hi) = iqr_fences(&v);
                let n = v.iter().filter(|&&x| x < lo || x > hi).count();
                match (&top, counts.len()) {
                    // Half the values or more are one value (zero-heavy amounts, 0/1 flags): the fences
                    // collapse onto it and every other value would be an "outlier".
                    (Some((t, share)), 2..) if lo == hi && *share < 0.99 => {
                        notes.push(format!("{:.1}% are `{t}`", share * 100.0));
                    }
                    _ if n > 0 => notes.push(format!("{n} outliers outside [{lo:.4}, {hi:.4}]")),
                    _ => {}
                }
                let last = v[v.len() - 1];
                let at_max = v.iter().rev().take_while(|&&x| x == last).count();
                let below = v[..v.len() - at_max].last().map_or(0, |&b| v.iter().filter(|&&x| x == b).count());
                if Some(ci) == tcol && counts.len() > 2 && at_max * 100 >= v.len() && at_max >= 5 && at_max > 3 * below
                {
                    notes.push(format!(
                        "capped? {at_max} rows ({:.1}%) at exactly the maximum {last}: the true values there may be \
                         higher",
                        100.0 * at_max as f64 / v.len() as f64
                    ));
                }
                (outliers, min, max) = (Some(n), v.first().copied(), v.last().copied());
            }
        }
        if identifiers.last() == Some(&c.name) {
            notes.push("IDENTIFIER? a different value on nearly every row: leave it out (data.ignore)".into());
        } else if kind == ColumnType::Text {
            notes.push("free text: a bag-of-terms embedding in table models".into());
        }
        if let (Some(cls), Some(ti)) = (&classes, tcol)
            && ti != ci
        {
            // Keys: the value itself for categories, one of 20 quantile bins for numbers.
            let keys: Vec<Option<usize>> = match kind {
                ColumnType::Number => {
                    let mut v: Vec<f64> = present.iter().filter_map(|s| s.parse().ok()).collect();
                    v.sort_by(f64::total_cmp);
                    let edges: Vec<f64> = (1..20).map(|k| v[(v.len().saturating_sub(1)) * k / 20]).collect();
                    c.cells
                        .iter()
                        .map(|s| {
                            s.as_deref().and_then(|s| s.parse::<f64>().ok()).map(|x| edges.partition_point(|e| *e < x))
                        })
                        .collect()
                }
                _ => {
                    let mut names: Vec<&str> = counts.keys().copied().collect();
                    names.sort_unstable();
                    c.cells.iter().map(|s| s.as_deref().map(|s| names.binary_search(&s).unwrap())).collect()
                }
            };
            let usable: Vec<usize> = (0..rows).filter(|&r| cls[r] != usize::MAX).collect();
            let keys: Vec<Option<usize>> = usable.iter().map(|&r| keys[r]).collect();
            let target: Vec<usize> = usable.iter().map(|&r| cls[r]).collect();
            let p = purity(&keys, &target);
            let many_rows_per_key = counts.len() * 2 <= present.len() || kind == ColumnType::Number;
            if p >= 0.98 && majority < 0.97 && many_rows_per_key {
                notes.push(format!("LEAKAGE SUSPECT: its value alone gives the target for {:.1}% of rows", p * 100.0));
                leakage_suspects.push(c.name.clone());
            }
        }
        columns.push(ColumnAudit {
            name: c.name.clone(),
            kind,
            missing,
            missing_rate: missing as f64 / rows.max(1) as f64,
            distinct: counts.len(),
            top,
            outliers,
            min,
            max,
            notes,
        });
    }
    Ok(Audit {
        source: table.source.clone(),
        rows,
        duplicate_rows,
        target: target.map(String::from),
        balance,
        columns,
        leakage_suspects,
        identifiers,
    })
}

impl Audit {
    /// The terminal table.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{}: {} rows, {} columns, {} duplicate rows\n\n",
            self.source,
            self.rows,
            self.columns.len(),
            self.duplicate_rows
        );
        let w = self.columns.iter().map(|c| c.name.len()).max().unwrap_or(6).max(6);
        s += &format!("{:<w$}  {:<8}  {:>8}  {:>8}  notes\n", "column", "type", "missing", "distinct");
        for c in &self.columns {
            let kind = format!("{:?}", c.kind).to_lowercase();
            s += &format!(
                "{:<w$}  {:<8}  {:>7.1}%  {:>8}  {}\n",
                c.name,
                kind,
                c.missing_rate * 100.0,
                c.distinct,
                c.notes.join("; ")
            );
        }
        if !self.identifiers.is_empty() {
            s += &format!(
                "\nidentifier columns (a different value on nearly every row; zero-config runs leave them out): {}\n",
                self.identifiers.join(", ")
            );
        }
        if let Some(t) = &self.target {
            if !self.balance.is_empty() {
                // The 20 largest classes; a target of hundreds of values is more likely a number or an
                // identifier than classes, and says so.
                let mut parts: Vec<String> = self
                    .balance
                    .iter()
                    .take(20)
                    .map(|(c, n)| format!("{c}: {n} ({:.1}%)", 100.0 * *n as f64 / self.rows.max(1) as f64))
                    .collect();
                if self.balance.len() > 20 {
                    parts.push(format!(
                        "... and {} more classes (a number or an identifier rather than classes?)",
                        self.balance.len() - 20
                    ));
                }
                s += &format!("\ntarget `{t}` balance: {}\n", parts.join(", "));
            }
            s += &match self.leakage_suspects.len() {
                0 => "no leakage suspects\n".to_string(),
                _ => {
                    format!("leakage suspects (check how these are filled in): {}\n", self.leakage_suspects.join(", "))
                }
            };
        }
        s
    }

    /// A self-contained HTML page with the same table.
    pub fn html(&self) -> String {
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let mut h = format!(
            "<!doctype html><meta charset=\"utf-8\"><title>audit of {0}</title><style>body{{font-family:sans-serif}}\
             td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}.leak{{background:#fdd}}</style><h1>{0}</h1><p>{1} rows, \
             {2} columns, {3} duplicate rows</p><table><tr><th>column</th><th>type</th><th>missing</th><th>distinct</th>\
             <th>notes</th></tr>",
            esc(&self.source),
            self.rows,
            self.columns.len(),
            self.duplicate_rows
        );
        for c in &self.columns {
            let leak = self.leakage_suspects.contains(&c.name);
            h += &format!(
                "<tr{}><td>{}</td><td>{:?}</td><td>{:.1}%</td><td>{}</td><td>{}</td></tr>",
                if leak { " class=\"leak\"" } else { "" },
                esc(&c.name),
                c.kind,
                c.missing_rate * 100.0,
                c.distinct,
                esc(&c.notes.join("; "))
            );
        }
        h += "</table>";
        if let Some(t) = &self.target {
            let parts: Vec<String> = self.balance.iter().map(|(c, n)| format!("{}: {n}", esc(c))).collect();
            h += &format!("<p>target <b>{}</b> balance: {}</p>", esc(t), parts.join(", "));
        }
        h + "\n"
    }
}
