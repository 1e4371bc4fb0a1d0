//! `[data]`: what a run reads (MNIST images, a table, or interactions for a recommender) and how, and the
//! kind of run that makes.

use crate::data::csv::CsvOptions;
use crate::data::prepare::PrepareOptions;
use crate::data::table::ColumnType;
use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What `[data]` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// A folder with the four MNIST IDX files (raw or .gz): images, with its own test split.
    Mnist,
    /// Rows with a `target` column: a CSV/TSV (any delimiter, quoted fields, header row; .gz too), ARFF or
    /// JSON-lines file, or a folder of class folders of text files; numbers, categories and text columns.
    /// (`csv`, `arff` and `jsonl` are read as `table`: the file's name tells them apart.)
    #[serde(alias = "csv", alias = "arff", alias = "jsonl")]
    Table,
    /// Who did what, for a recommender: a CSV/TSV of (user, item[, rating][, timestamp]) rows, every row an
    /// implicit positive (RecBole's atomic files read as they are), with optional side tables of users and
    /// items.
    Interactions,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `mnist`, `table` or `interactions`; left out, `table` when a `target` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DataFormat>,
    pub path: PathBuf,
    /// The column to predict (tables), or several (`target = ["churn", "spend"]`): a model with one output
    /// per target, in this order, each with the loss and metrics its column needs.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many",
        serialize_with = "write_one_or_many"
    )]
    pub target: Vec<String>,
    /// The first `test_rows` rows are the test set (a file's official split)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_rows: Option<usize>,
    /// ...or else this fraction of rows, drawn at random (stratified by class) with the training seed.
    #[serde(default = "fifth")]
    pub test_fraction: f64,
    /// Columns left out.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Cells read as missing besides the empty one.
    #[serde(default = "missing_markers")]
    pub missing: Vec<String>,
    /// The class that binary metrics (precision, recall, F1, PR-AUC) are about, and that the sigmoid's 1
    /// means: e.g. `positive = "bad"` for credit risk. Left out: the value that sorts last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive: Option<String>,
    /// The file's text encoding (`windows-1252`, `latin1`, `iso-8859-15`, `shift_jis`...; any WHATWG
    /// label). Left out: UTF-8, or Windows-1252 with a warning when the file is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Column types that override the inferred ones (number, category, boolean, text).
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnType>,
    /// Target values to classes, e.g. ratings 1-2 to "negative" and 4-5 to "positive"; rows whose target
    /// is not listed are dropped. Empty: the target's values are the classes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classes: BTreeMap<String, String>,
    #[serde(default)]
    pub prepare: PrepareOptions,
    // Interactions (format = "interactions"):
    /// The user id column (default `user_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The item id column (default `item_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// The column that orders each user's interactions: the latest is the test item, the one before it the
    /// validation item (equal times: the row later in the file). Left out: the file's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// A rating column, with `min_rating`: only rows rated at least that are positives. Left out, every row
    /// is a positive (as the NCF paper treats every rating).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rating: Option<f64>,
    /// Side tables keyed by the user (item) column: their other columns (numbers, categories, and
    /// space-separated tokens such as genres) are the two-tower model's features. `ignore` leaves columns out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<PathBuf>,
    /// Sampled negatives per held-out item (the sampled protocol's candidates, NCF's 99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_negatives: Option<usize>,
}

/// The kind of run a config makes, from its `[data]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    Images,
    Table,
    Interactions,
}

fn fifth() -> f64 {
    0.2
}
fn missing_markers() -> Vec<String> {
    CsvOptions::default().missing
}

impl DataConfig {
    /// A table file and its target column, every other key at its default.
    pub fn table(path: impl Into<PathBuf>, target: &str) -> DataConfig {
        DataConfig {
            format: Some(DataFormat::Table),
            path: path.into(),
            target: vec![target.into()],
            test_rows: None,
            test_fraction: fifth(),
            ignore: Vec::new(),
            missing: missing_markers(),
            encoding: None,
            positive: None,
            columns: BTreeMap::new(),
            classes: BTreeMap::new(),
            prepare: PrepareOptions::default(),
            user: None,
            item: None,
            timestamp: None,
            rating: None,
            min_rating: None,
            users: None,
            items: None,
            eval_negatives: None,
        }
    }

    /// The interactions' reading options (format = "interactions").
    pub fn interactions(&self) -> crate::recommend::InteractionOptions {
        let mut o = crate::recommend::InteractionOptions::new(&self.path);
        o.user = self.user.clone().unwrap_or(o.user);
        o.item = self.item.clone().unwrap_or(o.item);
        o.timestamp = self.timestamp.clone();
        o.rating = self.rating.clone();
        o.min_rating = self.min_rating;
        o.users = self.users.clone();
        o.items = self.items.clone();
        o.ignore = self.ignore.clone();
        o.csv = CsvOptions { delimiter: None, missing: self.missing.clone(), encoding: self.encoding.clone() };
        o
    }

    /// Images, a table or interactions: the `format`, or else a table when a `target` is named.
    pub fn kind(&self) -> Result<DataKind> {
        match (self.format, self.target.first()) {
            (Some(DataFormat::Mnist), _) => Ok(DataKind::Images),
            (Some(DataFormat::Interactions), _) => Ok(DataKind::Interactions),
            (Some(DataFormat::Table), Some(_)) | (None, Some(_)) => Ok(DataKind::Table),
            (Some(DataFormat::Table), None) => {
                Err(Error::Config("[data] needs `target`: the column to predict".into()))
            }
            (None, None) => Err(Error::Config(
                "[data] needs `format = \"mnist\"` (a folder of MNIST files), `format = \"interactions\"` (who did \
                 what, for a recommender), or `target` (the column of a table to predict)"
                    .into(),
            )),
        }
    }

    /// The (first) target column (tables): the one the rows are stratified by.
    pub fn target(&self) -> &str {
        self.target.first().map_or("", String::as_str)
    }

    /// Every target column, in the order of the model's outputs.
    pub fn targets(&self) -> Vec<&str> {
        self.target.iter().map(String::as_str).collect()
    }
}

/// `target = "col"` or `target = ["a", "b"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a column name, or a list of column names")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> std::result::Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = a.next_element::<String>()? {
                out.push(v);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// One target as a string (as it was written), several as a list.
fn write_one_or_many<S: serde::Serializer>(v: &[String], s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        [one] => s.serialize_str(one),
        many => serde::Serialize::serialize(many, s),
    }
}
