//! Interactions (who did what, and when) read from a CSV/TSV file, with ids of any form mapped to indices,
//! and the optional side tables of users and items turned into feature rows. RecBole's atomic files
//! (`user_id:token item_id:token rating:float timestamp:float`) read as they are: a `:type` suffix on a
//! header names the column's type and is left out of its name.

use crate::data::csv::{CsvOptions, read_table};
use crate::data::table::{Column, ColumnType, Table};
use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Ids as the file writes them, each mapped to an index (0..len, in the order first seen). Index `len` is
/// the slot of an id the model has not seen (a new user described by features).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdMap {
    ids: Vec<String>,
    index: HashMap<String, u32>,
}

impl IdMap {
    pub fn from_ids(ids: Vec<String>) -> IdMap {
        let index = ids.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();
        IdMap { ids, index }
    }

    /// The id's index, adding it when new.
    pub fn insert(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.index.insert(id.to_string(), i);
        i
    }

    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub fn id(&self, i: u32) -> &str {
        &self.ids[i as usize]
    }

    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Where the interactions are and which columns say what (`[data]` of a recommendation config).
#[derive(Clone, Debug)]
pub struct InteractionOptions {
    pub path: PathBuf,
    pub user: String,
    pub item: String,
    /// The order of a user's interactions (leave-last-out holds out the latest); None: the file's order.
    pub timestamp: Option<String>,
    /// A rating column, read with `min_rating`.
    pub rating: Option<String>,
    /// Only rows rated at least this are positives; None: every row is one (as the NCF paper does).
    pub min_rating: Option<f64>,
    /// Side tables keyed by the user or item column: their other columns become features.
    pub users: Option<PathBuf>,
    pub items: Option<PathBuf>,
    /// Side-table columns left out.
    pub ignore: Vec<String>,
    pub csv: CsvOptions,
}

impl InteractionOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        InteractionOptions {
            path: path.into(),
            user: "user_id".into(),
            item: "item_id".into(),
            timestamp: None,
            rating: None,
            min_rating: None,
            users: None,
            items: None,
            ignore: Vec::new(),
            csv: CsvOptions::default(),
        }
    }
}

/// Positive interactions: parallel columns of user index, item index and time, one row per (user, item)
/// (a pair seen twice keeps its latest time).
#[derive(Clone, Debug, Default)]
pub struct Interactions {
    pub users: IdMap,
    pub items: IdMap,
    pub user: Vec<u32>,
    pub item: Vec<u32>,
    /// The timestamp, or the row's place in the file when there is none.
    pub time: Vec<f64>,
    /// The row's place in the file (ties of `time` are broken by it).
    pub row: Vec<u32>,
    pub user_features: Option<SideFeatures>,
    pub item_features: Option<SideFeatures>,
    pub source: String,
}

impl Interactions {
    pub fn len(&self) -> usize {
        self.user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }

    /// From (user id, item id) pairs in order (time = place), no features: for tests and the Rust API.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Interactions {
        let mut d = Interactions { source: "pairs".into(), ..Default::default() };
        let mut seen = HashMap::new();
        for (k, (u, i)) in pairs.iter().enumerate() {
            let (u, i) = (d.users.insert(u), d.items.insert(i));
            d.push_pair(&mut seen, u, i, k as f64, k as u32);
        }
        d
    }

    fn push_pair(&mut self, seen: &mut HashMap<(u32, u32), usize>, u: u32, i: u32, t: f64, row: u32) {
        match seen.get(&(u, i)) {
            Some(&at) => {
                if (t, row) >= (self.time[at], self.row[at]) {
                    (self.time[at], self.row[at]) = (t, row);
                }
            }
            None => {
                seen.insert((u, i), self.user.len());
                self.user.push(u);
                self.item.push(i);
                self.time.push(t);
                self.row.push(row);
            }
        }
    }

    /// Reads the file and side tables; errors name the file, column and row.
    pub fn read(o: &InteractionOptions) -> Result<Interactions> {
        if o.path.is_dir() {
            return Err(Error::format(&o.path, "a folder; data.path names the interactions file (CSV or TSV)"));
        }
        if o.user == o.item {
            return Err(Error::Config(format!("data.item names the same column as data.user (`{}`)", o.user)));
        }
        let table = typed(read_table(&o.path, &o.csv)?);
        let src = o.path.display().to_string();
        let col = |name: &str, key: &str| -> Result<&Column> {
            table.0.column(name).map_err(|e| match e {
                Error::Config(m) => Error::Config(format!("data.{key}: {m}")),
                e => e,
            })
        };
        let users = col(&o.user, "user")?;
        let items = col(&o.item, "item")?;
        let time = o.timestamp.as_deref().map(|t| col(t, "timestamp")).transpose()?;
        let rating = o.rating.as_deref().map(|r| col(r, "rating")).transpose()?;
        if o.min_rating.is_some() && rating.is_none() {
            return Err(Error::Config("data.min_rating needs data.rating: the column it reads".into()));
        }
        let number =
            |c: &Column, r: usize, what: &str| -> Result<f64> {
                let v = c.cells[r].as_deref().unwrap_or("");
                v.trim().parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| {
                    Error::Data(format!("{src}: row {}: {what} `{}` is `{v}`, not a number", r + 2, c.name))
                })
            };
        let mut d = Interactions { source: src.clone(), ..Default::default() };
        let mut seen = HashMap::new();
        for r in 0..table.0.rows() {
            let (Some(u), Some(i)) = (users.cells[r].as_deref(), items.cells[r].as_deref()) else {
                let which = if users.cells[r].is_none() { &o.user } else { &o.item };
                return Err(Error::Data(format!("{src}: row {}: the {which} cell is empty", r + 2)));
            };
            if let Some(c) = rating {
                let v = number(c, r, "rating")?;
                if o.min_rating.is_some_and(|min| v < min) {
                    continue;
                }
            }
            let t = match time {
                Some(c) => number(c, r, "timestamp")?,
                None => r as f64,
            };
            let (u, i) = (d.users.insert(u.trim()), d.items.insert(i.trim()));
            d.push_pair(&mut seen, u, i, t, r as u32);
        }
        if d.is_empty() {
            let why = if o.min_rating.is_some() { " rated at least data.min_rating" } else { "" };
            return Err(Error::Data(format!("{src}: no interactions{why}")));
        }
        for name in &o.ignore {
            if name == &o.user || name == &o.item {
                return Err(Error::Config(format!(
                    "data.ignore names `{name}`, the id column: the side tables are keyed by it"
                )));
            }
        }
        if let Some(p) = &o.users {
            d.user_features = Some(SideFeatures::read(p, &o.user, &d.users, &o.ignore, &o.csv)?);
        }
        if let Some(p) = &o.items {
            d.item_features = Some(SideFeatures::read(p, &o.item, &d.items, &o.ignore, &o.csv)?);
        }
        // A name in data.ignore that no table has is a typo, not a column left out.
        let sides = [&d.user_features, &d.item_features];
        let known = |n: &String| {
            table.0.columns.iter().any(|c| &c.name == n)
                || sides.iter().any(|s| s.as_ref().is_some_and(|s| s.header.contains(n)))
        };
        if let Some(n) = o.ignore.iter().find(|n| !known(n)) {
            return Err(Error::Config(format!(
                "data.ignore names `{n}`, which neither the interactions nor a side table has"
            )));
        }
        Ok(d)
    }

    /// Each user's items (CSR: `offsets[u]..offsets[u+1]` of `items`, sorted), over the rows `rows`.
    pub fn by_user(&self, rows: impl Iterator<Item = usize>) -> Csr {
        Csr::new(self.users.len(), rows.map(|r| (self.user[r], self.item[r])))
    }
}

/// A table whose `name:type` headers (RecBole's) are split into the name and a declared type.
fn typed(mut t: Table) -> (Table, Vec<Option<&'static str>>) {
    let mut kinds = Vec::new();
    for c in &mut t.columns {
        let split = c.name.rsplit_once(':').and_then(|(n, k)| {
            let k: &'static str = match k {
                "token" => "token",
                "token_seq" => "token_seq",
                "float" => "float",
                _ => return None,
            };
            Some((n.to_string(), k))
        });
        match split {
            Some((n, k)) => {
                c.name = n;
                c.declared = Some(if k == "float" { ColumnType::Number } else { ColumnType::Category });
                kinds.push(Some(k));
            }
            None => kinds.push(None),
        }
    }
    (t, kinds)
}

/// Sets of items per user (or users per item), compressed rows with each row sorted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Csr {
    pub offsets: Vec<u32>,
    pub values: Vec<u32>,
}

impl Csr {
    pub fn new(rows: usize, pairs: impl Iterator<Item = (u32, u32)>) -> Csr {
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); rows];
        for (r, v) in pairs {
            lists[r as usize].push(v);
        }
        let mut c = Csr { offsets: vec![0], values: Vec::new() };
        for mut l in lists {
            l.sort_unstable();
            l.dedup();
            c.values.extend(l);
            c.offsets.push(c.values.len() as u32);
        }
        c
    }

    pub fn row(&self, r: u32) -> &[u32] {
        let r = r as usize;
        if r + 1 >= self.offsets.len() {
            return &[];
        }
        &self.values[self.offsets[r] as usize..self.offsets[r + 1] as usize]
    }

    pub fn contains(&self, r: u32, v: u32) -> bool {
        self.row(r).binary_search(&v).is_ok()
    }

    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
}

/// How one side-table column becomes features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureColumn {
    /// Standardized (missing: 0, the mean).
    Number { name: String, mean: f64, std: f64 },
    /// One-hot over the levels (another level: all zero).
    Category { name: String, levels: Vec<String> },
    /// Several tokens per cell (space-separated: genres), multi-hot over the most frequent.
    Tokens { name: String, tokens: Vec<String> },
}

/// The most levels or tokens a column keeps (the most frequent; the rest read as unknown).
const MAX_LEVELS: usize = 100;

impl FeatureColumn {
    pub fn name(&self) -> &str {
        match self {
            FeatureColumn::Number { name, .. }
            | FeatureColumn::Category { name, .. }
            | FeatureColumn::Tokens { name, .. } => name,
        }
    }

    fn width(&self) -> usize {
        match self {
            FeatureColumn::Number { .. } => 1,
            FeatureColumn::Category { levels, .. } => levels.len(),
            FeatureColumn::Tokens { tokens, .. } => tokens.len(),
        }
    }

    /// Writes the cell's features into `out` (this column's width); a number that does not parse is an
    /// error naming the column.
    fn encode(&self, cell: Option<&str>, out: &mut [f32]) -> Result<()> {
        out.iter_mut().for_each(|v| *v = 0.0);
        let Some(cell) = cell.map(str::trim).filter(|c| !c.is_empty()) else {
            return Ok(());
        };
        match self {
            FeatureColumn::Number { name, mean, std } => {
                let x: f64 = cell
                    .parse()
                    .ok()
                    .filter(|x: &f64| x.is_finite())
                    .ok_or_else(|| Error::Data(format!("feature `{name}` is `{cell}`, not a number")))?;
                out[0] = ((x - mean) / std) as f32;
                if !out[0].is_finite() {
                    return Err(Error::Data(format!("feature `{name}` is `{cell}`, too large a number")));
                }
            }
            FeatureColumn::Category { levels, .. } => {
                if let Some(k) = levels.iter().position(|l| l == cell) {
                    out[k] = 1.0;
                }
            }
            FeatureColumn::Tokens { tokens, .. } => {
                for t in cell.split_whitespace() {
                    if let Some(k) = tokens.iter().position(|l| l == t) {
                        out[k] = 1.0;
                    }
                }
            }
        }
        Ok(())
    }

    fn fit(c: &Column, declared: Option<&str>, source: &str) -> Result<FeatureColumn> {
        let name = c.name.clone();
        let kind = match declared {
            Some("float") => ColumnType::Number,
            Some("token") => ColumnType::Category,
            Some(_) => ColumnType::Text,
            None => c.infer(source)?,
        };
        let frequent = |values: &mut dyn Iterator<Item = &str>| {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            values.for_each(|v| *counts.entry(v).or_default() += 1);
            let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
            // Most frequent first; equal counts in the values' order, so the columns do not depend on hashing.
            v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            v.into_iter().take(MAX_LEVELS).map(|(s, _)| s.to_string()).collect::<Vec<_>>()
        };
        Ok(match kind {
            ColumnType::Number => {
                let xs: Vec<f64> = c.present().filter_map(|(_, v)| v.trim().parse().ok()).collect();
                let n = xs.len().max(1) as f64;
                let mean = xs.iter().sum::<f64>() / n;
                let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
                if !mean.is_finite() || !var.is_finite() {
                    return Err(Error::Data(format!(
                        "{source}: column `{name}` holds numbers too large to standardize (mean {mean}, variance \
                         {var}); scale them down, or leave the column out with data.ignore"
                    )));
                }
                FeatureColumn::Number { name, mean, std: if var > 0.0 { var.sqrt() } else { 1.0 } }
            }
            ColumnType::Category | ColumnType::Boolean => {
                FeatureColumn::Category { name, levels: frequent(&mut c.present().map(|(_, v)| v.trim())) }
            }
            ColumnType::Text => FeatureColumn::Tokens {
                name,
                tokens: frequent(&mut c.present().flat_map(|(_, v)| v.split_whitespace())),
            },
        })
    }
}

/// Feature rows of the users (or items) from their side table, aligned with their indices, and how a row of
/// raw values becomes one (saved with the model, for users it has not seen).
#[derive(Clone, Debug, PartialEq)]
pub struct SideFeatures {
    pub encoder: FeatureEncoder,
    /// Row-major, one row per index of the id map, and one more (zeros) for the unknown slot.
    pub rows: Vec<f32>,
    /// Indices with no row in the side table (their features are zeros).
    pub missing: usize,
    /// The table's column names.
    pub header: Vec<String>,
}

/// The side table's columns as features.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureEncoder {
    /// The key column (the user or item id).
    pub key: String,
    pub columns: Vec<FeatureColumn>,
}

impl FeatureEncoder {
    pub fn width(&self) -> usize {
        self.columns.iter().map(FeatureColumn::width).sum()
    }

    /// A feature row from raw values by column name (a new user's description); a name that is no
    /// feature is an error listing them.
    pub fn encode(&self, values: &[(String, String)]) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.width()];
        for (j, (k, v)) in values.iter().enumerate() {
            if values[..j].iter().any(|(o, _)| o == k) {
                return Err(Error::Invalid(format!("feature `{k}` is given twice")));
            }
            match self.columns.iter().find(|c| c.name() == k) {
                None => {
                    let names: Vec<&str> = self.columns.iter().map(FeatureColumn::name).collect();
                    return Err(Error::Invalid(format!(
                        "`{k}` is not a feature of this model; its features are: {}",
                        names.join(", ")
                    )));
                }
                // A level the side table never had reads as unknown: say so rather than guess.
                Some(FeatureColumn::Category { levels, .. }) if !levels.iter().any(|l| l == v.trim()) => {
                    let shown: Vec<&str> = levels.iter().take(30).map(String::as_str).collect();
                    let more = if levels.len() > 30 { ", ..." } else { "" };
                    return Err(Error::Invalid(format!(
                        "feature `{k}` = `{v}` is not one of the values the model knows: {}{more}",
                        shown.join(", ")
                    )));
                }
                _ => {}
            }
        }
        let mut at = 0;
        for c in &self.columns {
            let w = c.width();
            let v = values.iter().rev().find(|(k, _)| k == c.name()).map(|(_, v)| v.as_str());
            c.encode(v, &mut out[at..at + w])?;
            at += w;
        }
        Ok(out)
    }
}

impl SideFeatures {
    fn read(path: &Path, key: &str, ids: &IdMap, ignore: &[String], csv: &CsvOptions) -> Result<SideFeatures> {
        let (table, kinds) = typed(read_table(path, csv)?);
        let src = path.display().to_string();
        let k = table.columns.iter().position(|c| c.name == key).ok_or_else(|| {
            let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
            Error::Config(format!(
                "{src}: a side table needs the id column `{key}`, as in the interactions; its columns are: {}",
                names.join(", ")
            ))
        })?;
        let mut columns = Vec::new();
        let mut used = Vec::new();
        for (j, c) in table.columns.iter().enumerate() {
            if j == k || ignore.contains(&c.name) {
                continue;
            }
            let f = FeatureColumn::fit(c, kinds[j], &src)?;
            if f.width() > 0 {
                columns.push(f);
                used.push(j);
            }
        }
        let encoder = FeatureEncoder { key: key.to_string(), columns };
        let w = encoder.width();
        let mut rows = vec![0.0; (ids.len() + 1) * w];
        let mut have = vec![false; ids.len()];
        for r in 0..table.rows() {
            let Some(id) = table.columns[k].cells[r].as_deref().and_then(|v| ids.get(v.trim())) else {
                continue;
            };
            if have[id as usize] {
                return Err(Error::Data(format!("{src}: row {}: `{}` has a row already", r + 2, ids.id(id))));
            }
            have[id as usize] = true;
            let mut at = id as usize * w;
            for (f, &j) in encoder.columns.iter().zip(&used) {
                let fw = f.width();
                f.encode(table.columns[j].cells[r].as_deref(), &mut rows[at..at + fw])
                    .map_err(|e| Error::Data(format!("{src}: row {}: {e}", r + 2)))?;
                at += fw;
            }
        }
        let missing = have.iter().filter(|h| !**h).count();
        let header = table.columns.iter().map(|c| c.name.clone()).collect();
        Ok(SideFeatures { encoder, rows, missing, header })
    }

    pub fn width(&self) -> usize {
        self.encoder.width()
    }
}
