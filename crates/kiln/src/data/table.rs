//! Tables of text cells as read from CSV or ARFF, and the type of each column: number, category, boolean
//! or text, inferred from the values unless the file (ARFF) or the user declares it.

use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Number,
    Category,
    Boolean,
    Text,
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    /// One cell per row; None is missing.
    pub cells: Vec<Option<String>>,
    /// The type the file declares (ARFF), if any.
    pub declared: Option<ColumnType>,
}

#[derive(Clone, Debug)]
pub struct Table {
    /// The file it came from, for messages.
    pub source: String,
    pub columns: Vec<Column>,
}

/// Pairs of words read as false/true.
const BOOLEANS: [(&str, &str); 4] = [("false", "true"), ("no", "yes"), ("n", "y"), ("f", "t")];

/// A column with more distinct values than this (and than 5% of its rows) is text, not a category.
const MAX_LEVELS: usize = 100;

impl Table {
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.cells.len())
    }

    pub fn column(&self, name: &str) -> Result<&Column> {
        self.columns.iter().find(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
            Error::Config(format!("{}: no column `{name}`; the columns are: {}", self.source, names.join(", ")))
        })
    }

    /// Each column's type: declared, else inferred. A column whose values are numbers but for a few is an
    /// error naming the first stray value, rather than silently becoming a category.
    pub fn infer_types(&self) -> Result<Vec<ColumnType>> {
        self.columns.iter().map(|c| c.infer(&self.source)).collect()
    }
}

impl Column {
    pub fn present(&self) -> impl Iterator<Item = (usize, &str)> {
        self.cells.iter().enumerate().filter_map(|(i, c)| c.as_deref().map(|v| (i, v)))
    }

    pub fn distinct(&self) -> usize {
        let mut seen: Vec<&str> = self.present().map(|(_, v)| v).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    pub fn infer(&self, source: &str) -> Result<ColumnType> {
        if let Some(t) = self.declared {
            return Ok(t);
        }
        let present: Vec<(usize, &str)> = self.present().collect();
        if present.is_empty() {
            return Ok(ColumnType::Category);
        }
        let bad: Vec<(usize, &str)> =
            present.iter().filter(|(_, v)| v.parse::<f64>().map_or(true, |x| !finite_f32(x))).copied().collect();
        if bad.is_empty() {
            return Ok(ColumnType::Number);
        }
        // Mostly numbers (nine values in ten or more): a stray string is a data error to fix, not a reason to
        // treat the column as a category. The limit was one in fifty from 20 values on, which let a 40-row
        // file with one `abc` become a category of 28 levels without a word.
        if bad.len() * 10 <= present.len() && present.len() >= 10 {
            let (row, v) = bad[0];
            return Err(Error::Data(format!(
                "{source}: column `{}` holds numbers but row {} has `{v}`{}; fix it, mark it missing, or declare \
                 the column a category",
                self.name,
                row + 1,
                if bad.len() > 1 { format!(" ({} such values)", bad.len()) } else { String::new() }
            )));
        }
        // Numbers written with decimal commas (`2,5`, as European spreadsheets export them) would otherwise
        // become a category of as many levels as values.
        let comma =
            |v: &str| v.matches(',').count() == 1 && v.replace(',', ".").parse::<f64>().is_ok_and(f64::is_finite);
        if bad.len() * 2 > present.len() && bad.iter().all(|(_, v)| comma(v)) {
            let (row, v) = bad[0];
            return Err(Error::Data(format!(
                "{source}: column `{}` holds numbers written with decimal commas (`{v}` on row {}); write them with \
                 points, or declare the column a category (data.columns)",
                self.name,
                row + 1
            )));
        }
        let mut words: Vec<String> = present.iter().map(|(_, v)| v.to_ascii_lowercase()).collect();
        words.sort_unstable();
        words.dedup();
        if words.len() == 2 && BOOLEANS.iter().any(|(f, t)| words == [*f, *t]) {
            return Ok(ColumnType::Boolean);
        }
        let distinct = self.distinct();
        Ok(if distinct <= MAX_LEVELS || distinct * 20 <= present.len() {
            ColumnType::Category
        } else {
            ColumnType::Text
        })
    }
}

/// Whether a number read from a file is finite and stays finite as the f32 that models compute in (`1e39` is
/// a finite f64 and an infinite f32).
pub fn finite_f32(x: f64) -> bool {
    x.is_finite() && (x as f32).is_finite()
}

/// Whether a boolean cell reads as true.
pub fn truthy(v: &str) -> bool {
    let v = v.to_ascii_lowercase();
    BOOLEANS.iter().any(|(_, t)| *t == v)
}
