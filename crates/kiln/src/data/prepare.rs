//! Preparing a table for a network, fitted on the training rows only and saved inside the model, so that
//! prediction on raw rows applies exactly what training did. Numbers: missing values imputed (mean, median,
//! most frequent, or a constant) with a was-missing indicator, outliers optionally clipped (IQR or z-score bounds), then
//! scaled (standard, min-max or robust). Categories: one-hot, with one more slot for missing and unseen
//! values, or learned embeddings. Booleans: 0/1. Free text: term ids for a bag-of-terms embedding (data::text).

use super::table::{Column, ColumnType, Table, truthy};
use super::text::{TextOptions, TextOutput, bag, ids, vocabulary_and_idf};
use kiln_core::{Error, Result, Tensor};
use serde::{Deserialize, Serialize};

pub use super::target::{Target, Task};

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impute {
    #[default]
    Mean,
    Median,
    MostFrequent,
    /// `fill_value` (0 unless set).
    Constant,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    #[default]
    Standard,
    MinMax,
    Robust,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outliers {
    #[default]
    Keep,
    /// Clip to [Q1 − 1.5·IQR, Q3 + 1.5·IQR].
    Iqr,
    /// Clip to mean ± 3 standard deviations.
    Zscore,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CategoryEncoding {
    /// One input per level, plus one for missing and unseen values.
    #[default]
    OneHot,
    /// One index per column, looked up in a learned embedding table (a `CategoryEmbedding` first layer).
    Embedding,
}

/// How to prepare the columns (a config's `[data.prepare]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrepareOptions {
    pub impute: Impute,
    /// The value `impute = "constant"` fills in.
    pub fill_value: f64,
    pub scale: Scale,
    pub outliers: Outliers,
    /// Drop training rows that repeat an earlier row exactly.
    pub drop_duplicates: bool,
    /// Categories as one-hot inputs or as learned embeddings.
    pub categories: CategoryEncoding,
    /// How free-text columns become term ids for a bag-of-terms embedding (the mean of the terms' vectors).
    pub text: TextOptions,
    /// Take ln(1 + x) of non-negative columns with a long right tail (skewness above 2: amounts, counts),
    /// so that a few huge values do not squash all the others after scaling.
    #[serde(default = "yes")]
    pub log_skewed: bool,
    /// Numbers also get a one-hot of their quantile bin (this many bins; 0 for none), which lets a small
    /// network use thresholds as trees do.
    #[serde(default)]
    pub bins: usize,
    /// How `bins` encode a number: `one_hot` (its bin), or `piecewise_linear` (Gorishniy et al. 2022's
    /// PLE: 1 for every bin below the value, the fraction of its own bin it has passed, 0 above).
    #[serde(default)]
    pub bin_encoding: BinEncoding,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinEncoding {
    #[default]
    OneHot,
    PiecewiseLinear,
}

fn yes() -> bool {
    true
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            impute: Impute::default(),
            fill_value: 0.0,
            scale: Scale::default(),
            outliers: Outliers::default(),
            drop_duplicates: false,
            categories: CategoryEncoding::OneHot,
            text: TextOptions::default(),
            log_skewed: true,
            bins: 0,
            bin_encoding: BinEncoding::OneHot,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeatureKind {
    /// x → ln(1 + x) when `log`, then missing → fill, clipped to `clip` (when set), (x − center) / scale.
    Number {
        #[serde(default)]
        log: bool,
        fill: f64,
        indicator: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clip: Option<(f64, f64)>,
        center: f64,
        scale: f64,
        /// Upper edges of the quantile bins (after the log), one-hot encoded after the value.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        edges: Vec<f64>,
        /// With piecewise-linear bins: the training values' least and greatest (after the log), the outer
        /// edges of the first and last bin; the bins then hold `ple` instead of a one-hot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        span: Option<(f64, f64)>,
    },
    /// One-hot over the levels plus a slot for missing/unseen; or, with `embed`, the level's index (the
    /// slot after the last level for missing/unseen) for an embedding `embed` wide.
    Category {
        levels: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        embed: Option<usize>,
    },
    Boolean,
    /// `opts.length` term ids (see `data::text`), for an embedding bag `opts.dim` wide; for the bag outputs
    /// (multi-hot, counts, TF-IDF) followed by a weight per id.
    Text {
        vocab: Vec<String>,
        opts: TextOptions,
        /// Inverse document frequency per vocabulary term (TF-IDF only).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        idf: Vec<f32>,
    },
    /// A pretrained encoder's token ids ([CLS] … [SEP], cut at `length`, 0 after), from its tokenizer,
    /// kept whole (tokenizer.json's text) so that a saved model reads raw text on its own.
    Tokens {
        tokenizer: String,
        length: usize,
    },
}

/// A tokenizer.json's text as a tokenizer that pads nothing and cuts at `length` tokens.
pub fn parse_tokenizer(json: &str, length: usize) -> Result<tokenizers::Tokenizer> {
    let mut tok: tokenizers::Tokenizer =
        json.parse().map_err(|e| Error::Data(format!("the saved tokenizer does not parse ({e})")))?;
    tok.with_padding(None);
    tok.with_truncation(Some(tokenizers::TruncationParams { max_length: length, ..Default::default() }))
        .map_err(|e| Error::Data(format!("the tokenizer cannot cut at {length} tokens ({e})")))?;
    Ok(tok)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub kind: FeatureKind,
}

impl Feature {
    pub fn width(&self) -> usize {
        match &self.kind {
            FeatureKind::Number { indicator, edges, .. } => {
                1 + *indicator as usize + if edges.is_empty() { 0 } else { edges.len() + 1 }
            }
            FeatureKind::Category { embed: Some(_), .. } => 1,
            FeatureKind::Category { levels, .. } => levels.len() + 1,
            FeatureKind::Boolean => 1,
            FeatureKind::Text { opts, .. } => opts.width(),
            FeatureKind::Tokens { length, .. } => *length,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PreparationFile")]
pub struct Preparation {
    /// The columns predicted, in the order of the model's outputs (`data.target`); at least one.
    pub targets: Vec<Target>,
    pub features: Vec<Feature>,
    /// Target values to classes as the config mapped them (`data.classes`), for scoring files later.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub classes: std::collections::BTreeMap<String, String>,
    /// The model's named inputs and the columns each reads (`[[model.inputs]]`); empty: one input, the whole
    /// prepared row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputColumns>,
}

/// A preparation as saved: `targets`, or (models saved before several targets) one `target` and its `task`.
#[derive(Deserialize)]
struct PreparationFile {
    #[serde(default)]
    targets: Vec<Target>,
    target: Option<String>,
    task: Option<Task>,
    features: Vec<Feature>,
    #[serde(default)]
    classes: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    inputs: Vec<InputColumns>,
}

impl TryFrom<PreparationFile> for Preparation {
    type Error = String;
    fn try_from(f: PreparationFile) -> std::result::Result<Self, String> {
        let mut targets = f.targets;
        if let (Some(name), Some(task)) = (f.target, f.task) {
            targets.insert(0, Target { name, task });
        }
        if targets.is_empty() {
            return Err("the preparation names no target".into());
        }
        Ok(Preparation { targets, features: f.features, classes: f.classes, inputs: f.inputs })
    }
}

/// One named input of a table model and the columns it reads (`[[model.inputs]]`: `name`, `columns`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputColumns {
    pub name: String,
    pub columns: Vec<String>,
}

/// Piecewise-linear encoding of `x` over the bins that `edges` (inner) and `span` (outer) bound: bin t
/// [b_t, b_t+1] gets 0 when x is below it, 1 when x is past it, (x − b_t) / (b_t+1 − b_t) inside it; the first
/// bin is not cut below nor the last above, so values outside the training span keep their distance
/// (Gorishniy et al. 2022, eq. 1). A bin of no width (the least value repeated) is a step at its edge.
pub(crate) fn ple(x: f64, edges: &[f64], span: (f64, f64), out: &mut [f32]) {
    let t = edges.len() + 1;
    for (i, o) in out.iter_mut().take(t).enumerate() {
        let lower = if i == 0 { span.0.min(edges[0]) } else { edges[i - 1] };
        let upper = if i == t - 1 { span.1.max(edges[t - 2]) } else { edges[i] };
        let e = if upper > lower {
            (x - lower) / (upper - lower)
        } else if x >= upper {
            1.0
        } else {
            0.0
        };
        *o = match i {
            0 => e.min(1.0),
            i if i == t - 1 => e.max(0.0),
            _ => e.clamp(0.0, 1.0),
        } as f32;
    }
}

/// The most frequent of sorted values (the smallest on a tie).
fn most_frequent(sorted: &[f64]) -> f64 {
    let (mut best, mut best_n, mut i) = (0.0, 0, 0);
    while i < sorted.len() {
        let j = sorted[i..].iter().take_while(|&&x| x == sorted[i]).count();
        if j > best_n {
            (best, best_n) = (sorted[i], j);
        }
        i += j;
    }
    best
}

fn skewness(v: &[f64]) -> f64 {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
    if var <= 0.0 { 0.0 } else { v.iter().map(|x| (x - m).powi(3)).sum::<f64>() / n / var.powf(1.5) }
}

/// The q-quantile of sorted values, interpolated linearly between neighbours (numpy's and pandas' default,
/// as scikit-learn's RobustScaler uses it).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    sorted[i] + (sorted[(i + 1).min(sorted.len() - 1)] - sorted[i]) * f
}

/// Tukey's fences of sorted values, Q1 − 1.5·IQR and Q3 + 1.5·IQR: where IQR clipping clips, and so what the
/// audit counts as outliers.
pub(crate) fn iqr_fences(sorted: &[f64]) -> (f64, f64) {
    let (q1, q3) = (quantile(sorted, 0.25), quantile(sorted, 0.75));
    (q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1))
}

impl Preparation {
    /// Fits on `rows` of `table` (the training rows), with `types` per column, to predict the `targets`
    /// columns (one model output each); `ignore` lists columns left out.
    pub fn fit(
        table: &Table,
        types: &[ColumnType],
        targets: &[&str],
        rows: &[usize],
        ignore: &[String],
        opts: &PrepareOptions,
    ) -> Result<Preparation> {
        if targets.is_empty() {
            return Err(Error::Config("data.target: name the column to predict".into()));
        }
        let targets = targets.iter().map(|t| Target::fit(table, types, t, rows)).collect::<Result<Vec<_>>>()?;
        let features = Self::fit_features(table, types, &targets, rows, ignore, opts)?;
        Ok(Preparation { targets, features, classes: Default::default(), inputs: Vec::new() })
    }

    /// Makes `positive` the positive class (classes[1], the sigmoid's 1) of every two-class target that has
    /// it (`data.positive`); a class no two-class target has is an error listing theirs.
    pub fn set_positive(&mut self, positive: &str) -> Result<()> {
        let mut found = false;
        for t in &mut self.targets {
            if let Task::Binary { classes } = &mut t.task
                && let Some(i) = classes.iter().position(|c| c == positive)
            {
                classes.swap(i, 1);
                found = true;
            }
        }
        if found {
            return Ok(());
        }
        let have: Vec<String> = self
            .targets
            .iter()
            .filter_map(|t| match &t.task {
                Task::Binary { classes } => Some(format!("`{}` has {}", t.name, classes.join(", "))),
                _ => None,
            })
            .collect();
        Err(Error::Config(if have.is_empty() {
            format!("data.positive = \"{positive}\": no target has two classes")
        } else {
            format!("data.positive: `{positive}` is not a class of the target ({})", have.join("; "))
        }))
    }

    /// The first target's task (what class weights, oversampling and stratified splits read).
    pub fn task(&self) -> &Task {
        &self.targets[0].task
    }

    /// The target columns' names, in the order of the model's outputs.
    pub fn target_names(&self) -> Vec<&str> {
        self.targets.iter().map(|t| t.name.as_str()).collect()
    }

    /// Every column but the targets and the ignored ones, fitted on `rows`.
    fn fit_features(
        table: &Table,
        types: &[ColumnType],
        targets: &[Target],
        rows: &[usize],
        ignore: &[String],
        opts: &PrepareOptions,
    ) -> Result<Vec<Feature>> {
        let mut features = Vec::new();
        let used = |c: &&Column| !targets.iter().any(|t| t.name == c.name) && !ignore.contains(&c.name);
        let numbers = table.columns.iter().zip(types).any(|(c, &t)| t == ColumnType::Number && used(&c));
        if opts.bins > rows.len() && numbers {
            // Not an error (the bins are capped before anything is allocated), but not what was asked.
            eprintln!(
                "warning: data.prepare.bins = {} is more than the {} training rows; each number gets at most one \
                 bin per distinct value",
                opts.bins,
                rows.len()
            );
        }
        for (c, &ty) in table.columns.iter().zip(types) {
            if !used(&c) {
                continue;
            }
            if c.name.trim().is_empty() {
                return Err(Error::Data(format!(
                    "{}: a column has no name in the header (column {} of {}): name it, or drop it from the file",
                    table.source,
                    table.columns.iter().position(|d| std::ptr::eq(d, c)).map_or(0, |i| i + 1),
                    table.columns.len()
                )));
            }
            if rows.iter().all(|&r| c.cells[r].is_none()) {
                // A blank column (common in exported spreadsheets) carries nothing: left out, and said.
                eprintln!(
                    "warning: {}: column `{}` is empty in every training row; it is left out (data.ignore \
                     silences this)",
                    table.source, c.name
                );
                continue;
            }
            let kind = match ty {
                ColumnType::Text => {
                    let docs = rows.iter().filter_map(|&r| c.cells[r].as_deref());
                    let (vocab, idf) = vocabulary_and_idf(docs, &opts.text);
                    if vocab.is_empty() {
                        return Err(Error::Data(format!(
                            "{}: text column `{}` has no term in {} or more of the {} training rows (empty \
                             everywhere?): ignore it (data.ignore), or lower data.prepare.text.min_freq",
                            table.source,
                            c.name,
                            opts.text.min_freq,
                            rows.len()
                        )));
                    }
                    let idf = if opts.text.output == TextOutput::TfIdf { idf } else { Vec::new() };
                    FeatureKind::Text { vocab, opts: opts.text.clone(), idf }
                }
                ColumnType::Boolean => FeatureKind::Boolean,
                ColumnType::Category => {
                    let mut levels: Vec<String> = rows.iter().filter_map(|&r| c.cells[r].clone()).collect();
                    levels.sort_unstable();
                    levels.dedup();
                    // fast.ai's rule of thumb for the width, capped: 1.6·n^0.56.
                    let embed = (opts.categories == CategoryEncoding::Embedding)
                        .then(|| ((1.6 * ((levels.len() + 1) as f64).powf(0.56)).round() as usize).clamp(2, 16));
                    FeatureKind::Category { levels, embed }
                }
                ColumnType::Number => {
                    let mut v: Vec<f64> = rows.iter().filter_map(|&r| c.cells[r].as_deref()?.parse().ok()).collect();
                    let indicator = v.len() < rows.len();
                    let log = opts.log_skewed && v.iter().all(|&x| x >= 0.0) && skewness(&v) > 2.0;
                    if log {
                        v.iter_mut().for_each(|x| *x = x.ln_1p());
                    }
                    v.sort_by(f64::total_cmp);
                    let n = v.len().max(1) as f64;
                    let mean = v.iter().sum::<f64>() / n;
                    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
                    let (q1, med, q3) = (quantile(&v, 0.25), quantile(&v, 0.5), quantile(&v, 0.75));
                    let (lo, hi) = match opts.outliers {
                        Outliers::Keep => (f64::NEG_INFINITY, f64::INFINITY),
                        Outliers::Iqr => iqr_fences(&v),
                        Outliers::Zscore => (mean - 3.0 * std, mean + 3.0 * std),
                    };
                    let fill = match opts.impute {
                        Impute::Mean => mean,
                        Impute::Median => med,
                        Impute::MostFrequent => most_frequent(&v),
                        Impute::Constant if log => opts.fill_value.max(0.0).ln_1p(),
                        Impute::Constant => opts.fill_value,
                    };
                    // Scaling statistics of the clipped values.
                    let clipped: Vec<f64> = v.iter().map(|x| x.clamp(lo, hi)).collect();
                    let cmean = clipped.iter().sum::<f64>() / n;
                    let cstd = (clipped.iter().map(|x| (x - cmean).powi(2)).sum::<f64>() / n).sqrt();
                    let (center, scale) = match opts.scale {
                        Scale::Standard => (cmean, cstd),
                        Scale::MinMax => {
                            let (a, b) =
                                (clipped.first().copied().unwrap_or(0.0), clipped.last().copied().unwrap_or(1.0));
                            (a, b - a)
                        }
                        Scale::Robust => (med.clamp(lo, hi), (q3 - q1)),
                    };
                    let scale = if scale > 1e-12 { scale } else { 1.0 };
                    // More bins than training values cannot separate anything more (and `bins = 100000000`
                    // would allocate its edges before they dedup).
                    let nb = opts.bins.min(v.len().max(1));
                    let mut edges: Vec<f64> = (1..nb).map(|k| quantile(&v, k as f64 / nb as f64)).collect();
                    edges.dedup();
                    let clip = (opts.outliers != Outliers::Keep).then_some((lo, hi));
                    let span = (opts.bin_encoding == BinEncoding::PiecewiseLinear && !edges.is_empty())
                        .then(|| (v.first().copied().unwrap_or(0.0), v.last().copied().unwrap_or(0.0)));
                    FeatureKind::Number { log, fill, indicator, clip, center, scale, edges, span }
                }
            };
            features.push(Feature { name: c.name.clone(), kind });
        }
        if features.is_empty() {
            let names: Vec<String> = targets.iter().map(|t| format!("`{}`", t.name)).collect();
            return Err(Error::Config(format!(
                "{}: no usable input columns besides {}",
                table.source,
                names.join(", ")
            )));
        }
        // Embedded categories go last: the embedding layer reads the numbers first, then one index per column.
        features.sort_by_key(|f| match f.kind {
            FeatureKind::Category { embed: Some(_), .. } => 1,
            FeatureKind::Text { .. } | FeatureKind::Tokens { .. } => 2,
            _ => 0,
        });
        Ok(features)
    }

    /// Reads the text (and category) columns with a pretrained encoder's tokenizer (`tokenizer.json`'s
    /// text) instead of the fitted vocabulary or levels: `length` token ids per text.
    pub fn use_tokenizer(&mut self, tokenizer_json: &str, length: usize) -> Result<()> {
        parse_tokenizer(tokenizer_json, length)?;
        for f in &mut self.features {
            if let FeatureKind::Text { .. } | FeatureKind::Category { .. } = f.kind {
                f.kind = FeatureKind::Tokens { tokenizer: tokenizer_json.to_string(), length };
            }
        }
        Ok(())
    }

    /// Values per row after preparation.
    pub fn width(&self) -> usize {
        self.features.iter().map(Feature::width).sum()
    }

    /// Splits the prepared row among named inputs, each reading its own columns: every prepared column in
    /// exactly one input, none of them embedded (an embedded column's ids need the `CategoryEmbedding`
    /// that reads the whole row). Empty `inputs`: one input, the whole row.
    pub fn set_inputs(&mut self, inputs: &[InputColumns]) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("model.inputs: {m}")));
        let mut owner: Vec<Option<&str>> = vec![None; self.features.len()];
        for i in inputs {
            if inputs.iter().filter(|j| j.name == i.name).count() > 1 {
                return bad(format!("two inputs are called `{}`", i.name));
            }
            if i.columns.is_empty() {
                return bad(format!("`{}` reads no columns", i.name));
            }
            for c in &i.columns {
                let Some(f) = self.features.iter().position(|f| &f.name == c) else {
                    let names: Vec<&str> = self.features.iter().map(|f| f.name.as_str()).collect();
                    return bad(format!(
                        "`{}` reads `{c}`, which is not a column the model gets (the target, ignored or absent; \
                         the columns are: {})",
                        i.name,
                        names.join(", ")
                    ));
                };
                if let Some(o) = owner[f] {
                    return bad(format!("`{c}` is read by both `{o}` and `{}`", i.name));
                }
                if matches!(
                    self.features[f].kind,
                    FeatureKind::Category { embed: Some(_), .. } | FeatureKind::Text { .. }
                ) {
                    return bad(format!(
                        "`{c}` is embedded (a text column, or data.prepare.categories = \"embedding\"); named \
                         inputs take numbers and one-hot categories"
                    ));
                }
                owner[f] = Some(&i.name);
            }
        }
        if !inputs.is_empty()
            && let Some(f) = owner.iter().position(Option::is_none)
        {
            return bad(format!(
                "column `{}` is read by no input: add it to one, or to data.ignore",
                self.features[f].name
            ));
        }
        self.inputs = inputs.to_vec();
        Ok(())
    }

    /// Each named input's name and width (one input, `input`, of the whole row when none are named).
    pub fn input_widths(&self) -> Vec<(String, usize)> {
        if self.inputs.is_empty() {
            return vec![("input".to_string(), self.width())];
        }
        self.inputs
            .iter()
            .map(|i| {
                let w = self.features.iter().filter(|f| i.columns.contains(&f.name)).map(Feature::width).sum();
                (i.name.clone(), w)
            })
            .collect()
    }

    /// The model's x for `rows`: the prepared row (`transform`), split among the named inputs.
    pub fn transform_inputs(&self, table: &Table, rows: &[usize]) -> Result<Vec<Tensor>> {
        let x = self.transform(table, rows)?;
        if self.inputs.is_empty() {
            return Ok(vec![x]);
        }
        let w = self.width();
        let mut at = Vec::with_capacity(self.features.len());
        let mut off = 0;
        for f in &self.features {
            at.push((off, f.width()));
            off += f.width();
        }
        self.inputs
            .iter()
            .map(|i| {
                let spans: Vec<(usize, usize)> = self
                    .features
                    .iter()
                    .zip(&at)
                    .filter(|(f, _)| i.columns.contains(&f.name))
                    .map(|(_, &s)| s)
                    .collect();
                let iw: usize = spans.iter().map(|s| s.1).sum();
                let mut data = Vec::with_capacity(rows.len() * iw);
                for row in x.data().chunks_exact(w) {
                    for &(o, n) in &spans {
                        data.extend_from_slice(&row[o..o + n]);
                    }
                }
                Tensor::new(&[rows.len(), iw], data)
            })
            .collect()
    }

    /// With embedded categories or texts: the model's `CategoryEmbedding` first layer, which reads the
    /// leading numbers, then each embedded column's ids (and weights, for text bags).
    pub fn embedding_layer(&self) -> Option<crate::nn::CategoryEmbedding> {
        let cols: Vec<(usize, usize, usize, bool)> = self
            .features
            .iter()
            .filter_map(|f| match &f.kind {
                FeatureKind::Category { levels, embed: Some(d) } => Some((levels.len() + 1, *d, 1, false)),
                FeatureKind::Text { vocab, opts, .. } => {
                    Some((vocab.len() + 2, opts.dim, opts.length, opts.output != TextOutput::Ids))
                }
                _ => None,
            })
            .collect();
        let ids: usize = cols.iter().map(|c| c.2 * (1 + c.3 as usize)).sum();
        (!cols.is_empty()).then(|| {
            let sizes: Vec<(usize, usize)> = cols.iter().map(|c| (c.0, c.1)).collect();
            crate::nn::CategoryEmbedding::new(self.width() - ids, &sizes)
                .lengths(&cols.iter().map(|c| c.2).collect::<Vec<_>>())
                .weighted(&cols.iter().map(|c| c.3).collect::<Vec<_>>())
        })
    }

    /// The prepared inputs of `rows`. Every feature column must be in the table (by name, any order);
    /// categories not seen in training go to the extra slot.
    pub fn transform(&self, table: &Table, rows: &[usize]) -> Result<Tensor> {
        let w = self.width();
        kiln_core::mem::check(
            rows.len() as u128 * w as u128,
            4,
            &format!("{} rows of {w} prepared inputs", rows.len()),
        )
        .map_err(|e| match e {
            Error::Config(m) => Error::Config(format!(
                "data.prepare: {m} (quantile bins and one-hot categories widen each row; lower data.prepare.bins or \
                     ignore wide columns)"
            )),
            e => e,
        })?;
        let mut x = vec![0f32; rows.len() * w];
        let mut off = 0;
        for f in &self.features {
            let col = table.column(&f.name)?;
            if let FeatureKind::Tokens { tokenizer, length } = &f.kind {
                let tok = parse_tokenizer(tokenizer, *length)?;
                let texts: Vec<&str> =
                    rows.iter().map(|&r| col.cells.get(r).and_then(|c| c.as_deref()).unwrap_or("")).collect();
                let enc =
                    tok.encode_batch(texts, true).map_err(|e| Error::Data(format!("column `{}`: {e}", f.name)))?;
                for (i, e) in enc.iter().enumerate() {
                    let dst = &mut x[i * w + off..i * w + off + length];
                    for (d, &id) in dst.iter_mut().zip(e.get_ids()) {
                        *d = id as f32;
                    }
                }
                off += length;
                continue;
            }
            for (i, &r) in rows.iter().enumerate() {
                let dst = &mut x[i * w + off..i * w + off + f.width()];
                let cell = col.cells.get(r).and_then(|c| c.as_deref());
                match &f.kind {
                    FeatureKind::Number { log, fill, indicator, clip, center, scale, edges, span } => {
                        let v = match cell {
                            Some(s) => Some(match s.parse::<f64>() {
                                Ok(x) if crate::data::table::finite_f32(x) => x,
                                parsed => {
                                    return Err(Error::Data(format!(
                                        "{}: column `{}` row {} has `{s}`, {}",
                                        table.source,
                                        f.name,
                                        r + 1,
                                        if parsed.is_ok() { "not a finite number" } else { "not a number" }
                                    )));
                                }
                            }),
                            None => None,
                        };
                        let v = if *log { v.map(|x| x.max(0.0).ln_1p()) } else { v };
                        let (lo, hi) = clip.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
                        dst[0] = ((v.unwrap_or(*fill).clamp(lo, hi) - center) / scale) as f32;
                        if *indicator {
                            dst[1] = v.is_none() as u8 as f32;
                        }
                        let bins = &mut dst[1 + *indicator as usize..];
                        match span {
                            _ if edges.is_empty() => {}
                            Some(span) => ple(v.unwrap_or(*fill), edges, *span, bins),
                            None => bins[edges.partition_point(|e| *e < v.unwrap_or(*fill))] = 1.0,
                        }
                    }
                    FeatureKind::Category { levels, embed } => {
                        let k = cell
                            .and_then(|s| levels.binary_search_by(|l| l.as_str().cmp(s)).ok())
                            .unwrap_or(levels.len());
                        match embed {
                            Some(_) => dst[0] = k as f32,
                            None => dst[k] = 1.0,
                        }
                    }
                    FeatureKind::Boolean => dst[0] = cell.is_some_and(truthy) as u8 as f32,
                    FeatureKind::Text { vocab, opts, .. } if opts.output == TextOutput::Ids => {
                        ids(cell.unwrap_or(""), vocab, opts, dst)
                    }
                    FeatureKind::Text { vocab, opts, idf } => bag(cell.unwrap_or(""), vocab, idf, opts, dst),
                    FeatureKind::Tokens { .. } => unreachable!("tokenized above"),
                }
            }
            off += f.width();
        }
        Tensor::new(&[rows.len(), w], x)
    }

    /// For each text column, how many of `rows` hold no term of its vocabulary (empty, or every word unseen
    /// in training): the model knows nothing of their text, so what it predicts for them rests on the other
    /// columns, or on nothing. Columns with none are left out.
    pub fn rows_without_known_terms(&self, table: &Table, rows: &[usize]) -> Result<Vec<(&str, usize)>> {
        let mut out = Vec::new();
        for f in &self.features {
            let FeatureKind::Text { vocab, opts, .. } = &f.kind else { continue };
            let col = table.column(&f.name)?;
            let n = rows
                .iter()
                .filter(|&&r| {
                    let text = col.cells.get(r).and_then(|c| c.as_deref()).unwrap_or("");
                    !crate::data::text::term_ids(text, vocab, opts).any(|id| id >= 2)
                })
                .count();
            if n > 0 {
                out.push((f.name.as_str(), n));
            }
        }
        Ok(out)
    }

    /// Each target's values on `rows` (`Target::values`), in the order of the model's outputs.
    pub fn target_values(&self, table: &Table, rows: &[usize]) -> Result<Vec<Tensor>> {
        self.targets.iter().map(|t| t.values(table, rows)).collect()
    }
}

/// Rows that repeat an earlier row of `rows` exactly (all columns), to drop from training.
pub fn duplicate_rows(table: &Table, rows: &[usize]) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    rows.iter()
        .copied()
        .filter(|&r| !seen.insert(table.columns.iter().map(|c| c.cells[r].clone()).collect::<Vec<_>>()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::csv::{CsvOptions, parse_csv};
    use std::path::Path;

    #[test]
    fn fitted_on_training_rows_and_applied_to_others() {
        let csv = "n,c,b,y\n1,red,yes,a\n2,blue,no,b\n3,red,yes,a\n,red,no,b\n100,green,yes,a\n";
        let t = parse_csv(csv, Path::new("t.csv"), &CsvOptions::default()).unwrap();
        let types = t.infer_types().unwrap();
        let opts = PrepareOptions { impute: Impute::MostFrequent, log_skewed: false, ..Default::default() };
        // Fitted on rows 0-3: `green` (row 4) is unseen, the missing `n` (row 3) gets the indicator.
        let p = Preparation::fit(&t, &types, &["y"], &[0, 1, 2, 3], &[], &opts).unwrap();
        assert_eq!(p.targets[0].task, Task::Binary { classes: vec!["a".into(), "b".into()] });
        assert_eq!(p.width(), 2 + 3 + 1, "number + indicator, blue/red + unseen, boolean");
        let x = p.transform(&t, &[3, 4]).unwrap();
        let FeatureKind::Number { fill, center, scale, .. } = p.features[0].kind else { panic!() };
        assert_eq!(fill, 1.0, "most frequent of 1, 2, 3 (a tie: the smallest)");
        let row = |r: usize| &x.data()[r * 6..r * 6 + 6];
        assert_eq!(row(0), [((1.0 - center) / scale) as f32, 1.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(row(1)[..2], [((100.0 - center) / scale) as f32, 0.0]);
        assert_eq!(row(1)[2..], [0.0, 0.0, 1.0, 1.0], "unseen `green` in the extra slot; yes = 1");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Preparation>(&json).unwrap(), p, "survives saving in a model file");
        let with_clip = PrepareOptions { outliers: Outliers::Iqr, ..opts };
        let p2 = Preparation::fit(&t, &types, &["y"], &[0, 1, 2, 3, 4], &[], &with_clip).unwrap();
        assert_eq!(serde_json::from_str::<Preparation>(&serde_json::to_string(&p2).unwrap()).unwrap(), p2);
    }
}
