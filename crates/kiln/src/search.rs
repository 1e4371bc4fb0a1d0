//! Cross-validation and hyperparameter search for any config (`kiln cv`, `kiln search`). Images: k folds of
//! the training images, stratified by class, each scored by a model trained on the others (loss and the
//! configured metrics). Tables: k stratified folds of the rows, scored with table metrics (tabular.rs). A
//! search tries every combination of the settings given (or n of them drawn at random), cross-validates each
//! config, and ranks them: ROC-AUC for two classes, accuracy for more, −RMSE for numbers, −loss otherwise.

use crate::callbacks::{Callback, EarlyStopping};
use crate::config::{Axis, Config, DataKind, with_setting};
use crate::data::mnist;
use crate::tabular::{TableScores, fit_rows, scores, strata, stratify};
use crate::train::{Evaluation, FitOptions};
use kiln_core::{Error, Result, Rng};

/// Each fold's scores, as the config's kind of data scores them: a table's per target, by name.
#[derive(Clone, Debug)]
pub enum Folds {
    Images(Vec<Evaluation>),
    Table(Vec<Vec<(String, TableScores)>>),
    /// Folds known by their named scores alone (`fold`): those of an interrupted run, read back from its
    /// file to be summarized with the rest (`kiln cv --resume`).
    Named(Vec<Vec<(String, f64)>>),
}

impl Folds {
    pub fn len(&self) -> usize {
        match self {
            Folds::Images(f) => f.len(),
            Folds::Table(f) => f.len(),
            Folds::Named(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fold `i`'s scores in a line.
    pub fn line(&self, i: usize) -> String {
        match self {
            Folds::Images(f) => f[i].to_string(),
            Folds::Table(f) => match &f[i][..] {
                [(_, s)] => format!("{s} ({} rows)", s.rows),
                many => {
                    let parts: Vec<String> = many.iter().map(|(t, s)| format!("{t}: {s}")).collect();
                    format!("{} ({} rows)", parts.join("; "), many[0].1.rows)
                }
            },
            Folds::Named(f) => f[i].iter().map(|(n, v)| format!("{n}: {v:.4}")).collect::<Vec<_>>().join(" - "),
        }
    }

    /// The named scores of each fold.
    fn named(&self) -> Vec<Vec<(String, f64)>> {
        match self {
            Folds::Images(f) => f
                .iter()
                .map(|e| std::iter::once(("loss".to_string(), e.loss)).chain(e.metrics.iter().cloned()).collect())
                .collect(),
            // Several targets: `{target}_{score}`.
            Folds::Table(f) => f
                .iter()
                .map(|targets| {
                    let prefix = |t: &str| if targets.len() > 1 { format!("{t}_") } else { String::new() };
                    targets
                        .iter()
                        .flat_map(|(t, s)| s.named().into_iter().map(move |(n, v)| (format!("{}{n}", prefix(t)), v)))
                        .collect()
                })
                .collect(),
            Folds::Named(f) => f.clone(),
        }
    }

    /// Fold `i`'s scores by name (a table's several targets as `{target}_{score}`).
    pub fn fold(&self, i: usize) -> Vec<(String, f64)> {
        self.named().swap_remove(i)
    }

    /// The mean and standard deviation of `name` over the folds that have it.
    pub fn stat(&self, name: &str) -> Option<(f64, f64)> {
        mean_sd(&self.named(), name)
    }

    /// "accuracy: 0.9751 ± 0.0020 - roc_auc: ...": each score any fold has, its mean and standard deviation
    /// over the folds that have it ("over 3 of 5 folds" when some lack it: ROC-AUC of a fold with one class).
    pub fn summary(&self) -> String {
        let folds = self.named();
        let mut names: Vec<&str> = Vec::new();
        for (n, _) in folds.iter().flatten() {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
        names
            .iter()
            .filter_map(|n| {
                let have = folds.iter().filter(|f| f.iter().any(|(m, _)| m == n)).count();
                let part =
                    if have < folds.len() { format!(" (over {have} of {} folds)", folds.len()) } else { String::new() };
                // One fold (an interrupted run) has no spread to show.
                mean_sd(&folds, n).map(|(m, sd)| match have {
                    1 => format!("{n}: {m:.4}{part}"),
                    _ => format!("{n}: {m:.4} ± {sd:.4}{part}"),
                })
            })
            .collect::<Vec<_>>()
            .join(" - ")
    }

    /// What ranks configs (higher is better): ROC-AUC for two classes, accuracy for more, −RMSE for numbers,
    /// −loss when the config logs no accuracy. With several targets, the first target's.
    pub fn rank(&self) -> f64 {
        self.ranked_by().map_or(f64::NEG_INFINITY, |(_, v)| v)
    }

    /// The score that ranks (`rank`) and its value, higher better: ("roc_auc", 0.91), ("rmse", −3.2).
    pub fn ranked_by(&self) -> Option<(String, f64)> {
        let folds = self.named();
        let prefix = match self {
            Folds::Table(f) if f.first().is_some_and(|t| t.len() > 1) => format!("{}_", f[0][0].0),
            _ => String::new(),
        };
        let mean = |n: &str, sign: f64| {
            let name = format!("{prefix}{n}");
            mean_sd(&folds, &name).map(|s| (name, sign * s.0))
        };
        mean("roc_auc", 1.0)
            .or_else(|| mean("accuracy", 1.0))
            .or_else(|| mean("rmse", -1.0))
            .or_else(|| mean("loss", -1.0))
    }
}

/// The mean and standard deviation of `name` over the folds (named scores each) that have it.
fn mean_sd(folds: &[Vec<(String, f64)>], name: &str) -> Option<(f64, f64)> {
    let v: Vec<f64> = folds.iter().filter_map(|f| f.iter().find(|(n, _)| n == name).map(|(_, v)| *v)).collect();
    if v.is_empty() {
        return None;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    Some((m, (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()))
}

/// Classes with fewer rows than there are folds, so that some folds test none of them (scikit-learn's
/// StratifiedKFold warns the same): one line naming them, or None. `strata` is each row's class (one
/// stratum for a numeric target).
fn thin_classes(strata: &[String], target: &str, k: usize) -> Option<String> {
    let mut count: std::collections::BTreeMap<&str, usize> = Default::default();
    for c in strata {
        *count.entry(c.as_str()).or_default() += 1;
    }
    let thin: Vec<String> = count
        .iter()
        .filter(|&(_, &n)| n < k)
        .map(|(c, &n)| format!("`{c}` ({n} row{})", if n == 1 { "" } else { "s" }))
        .collect();
    let (one, list) = (thin.len() == 1, thin.join(", "));
    (!thin.is_empty()).then(|| {
        format!(
            "{} {list} of target `{target}` {} fewer rows than the {k} folds, so some folds test none of {}: \
             scores that need every class (AUC) are left out there",
            if one { "class" } else { "classes" },
            if one { "has" } else { "have" },
            if one { "it" } else { "them" }
        )
    })
}

impl Config {
    /// Each of `k` folds scored by a model trained on the others as the config trains.
    pub fn cross_validate(&self, k: usize) -> Result<Folds> {
        self.cross_validate_with(k, &mut |_, _| {})
    }

    /// `cross_validate`, calling `done(i, folds so far)` as each fold finishes (progress, or keeping results).
    pub fn cross_validate_with(&self, k: usize, done: &mut dyn FnMut(usize, &Folds)) -> Result<Folds> {
        self.cross_validate_skipping(k, &[], done)
    }

    /// `cross_validate_with` without the folds in `skip` (0-based; finished by an earlier, interrupted run):
    /// the folds are the same whatever is skipped, and the result holds the others, in order.
    pub fn cross_validate_skipping(
        &self,
        k: usize,
        skip: &[usize],
        done: &mut dyn FnMut(usize, &Folds),
    ) -> Result<Folds> {
        if k < 2 {
            return Err(Error::Config(format!("cross-validation needs at least 2 folds, got {k}")));
        }
        self.check_train()?;
        match self.kind()? {
            DataKind::Images => self.image_folds(k, skip, done),
            DataKind::Table => self.table_folds(k, skip, done),
            DataKind::Interactions => Err(Error::Config(
                "cross-validation takes images or a table; a recommender is scored leave-last-out by `kiln train` \
                 (its validation items pick the epoch)"
                    .into(),
            )),
        }
    }

    fn table_folds(&self, k: usize, skip: &[usize], done: &mut dyn FnMut(usize, &Folds)) -> Result<Folds> {
        let table = self.read_table()?;
        let types = self.types(&table)?;
        if table.rows() < k {
            return Err(Error::Data(format!("{} rows cannot make {k} folds", table.rows())));
        }
        let keys = strata(&table, &types, self.data.target())?;
        let folds = stratify(&keys, k, self.train.seed);
        if let Some(w) = thin_classes(&keys, self.data.target(), k) {
            // Once per process: a search cross-validates every trial on the same folds.
            static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
            let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
            if !warned.contains(&w) {
                eprintln!("warning: {w}");
                warned.push(w);
            }
        }
        let mut out = Folds::Table(Vec::new());
        for (i, test) in folds.iter().enumerate().filter(|(i, _)| !skip.contains(i)) {
            let train: Vec<usize> =
                folds.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, f)| f.iter().copied()).collect();
            let model = fit_rows(self, &table, &types, &train, false)?;
            if let Folds::Table(v) = &mut out {
                v.push(scores(&model, &table, test)?);
            }
            done(i, &out);
        }
        Ok(out)
    }

    fn image_folds(&self, k: usize, skip: &[usize], done: &mut dyn FnMut(usize, &Folds)) -> Result<Folds> {
        let train = mnist::load_split(&self.data.path, "train")?;
        if train.labels.len() < k {
            return Err(Error::Data(format!("{} training images cannot make {k} folds", train.labels.len())));
        }
        let y = self.targets(&train)?;
        let folds = stratify(&train.labels, k, self.train.seed);
        let mut out = Folds::Images(Vec::new());
        for (i, held) in folds.iter().enumerate().filter(|(i, _)| !skip.contains(i)) {
            let mut keep = vec![true; train.labels.len()];
            held.iter().for_each(|&i| keep[i] = false);
            let rest: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
            let mut model = self.image_model()?;
            let mut stop = self.early_stopping();
            let mut callbacks: Vec<&mut dyn Callback> = stop.iter_mut().map(|s| s as &mut dyn Callback).collect();
            model.fit_with(&train.x.select_rows(&rest), &y.select_rows(&rest), self.fit_options(), &mut callbacks)?;
            if let Folds::Images(v) = &mut out {
                v.push(model.evaluate(&train.x.select_rows(held), &y.select_rows(held), 1000)?);
            }
            done(i, &out);
        }
        Ok(out)
    }

    /// How an image run fits (the `[train]` keys), without run-folder files.
    pub fn fit_options(&self) -> FitOptions<'static> {
        let t = &self.train;
        FitOptions {
            epochs: t.epochs(),
            batch_size: t.batch_size(),
            validation_split: t.validation_split(),
            shuffle: t.shuffle,
            seed: t.seed,
            augment: t.augment.clone(),
            class_weight: t.class_weight.clone(),
            ..Default::default()
        }
    }

    /// `train.patience` as a callback: stop when the validation loss has not fallen for that many epochs,
    /// keeping the best epoch's weights.
    pub fn early_stopping(&self) -> Option<EarlyStopping> {
        self.train.patience.map(|p| EarlyStopping::new("val_loss").patience(p).restore_best_weights(true))
    }
}

/// One search trial: its settings, the config they make, and its fold scores.
pub type Trial = (Vec<(String, toml::Value)>, Config, Folds);

/// The settings of one combination of a search, key and value.
pub type Settings = [(String, toml::Value)];

/// Grid search (every combination) or, with `random = Some(n)`, n combinations drawn without replacement;
/// each config is cross-validated on `folds` folds, `done(trial, of)` called after each. Returns the trials
/// best first. `cfg` is best as written (`Config::from_file_unfilled`): each trial's defaults are filled
/// in after its settings, as they would be for a file that had them. The combinations `skip` says yes to
/// (finished by an earlier, interrupted search: `kiln search --resume`) are not run; the others are drawn
/// and run in the same order as without it.
pub fn search(
    cfg: &Config,
    axes: &[Axis],
    folds: usize,
    random: Option<usize>,
    skip: &dyn Fn(&Settings) -> bool,
    done: &mut dyn FnMut(&Trial, usize),
) -> Result<Vec<Trial>> {
    if axes.is_empty() {
        return Err(Error::Invalid("a search needs at least one KEY=VALUE,VALUE,... to vary".into()));
    }
    if random == Some(0) {
        return Err(Error::Invalid("--random needs at least 1 config to try".into()));
    }
    if folds < 2 {
        return Err(Error::Config(format!("cross-validation needs at least 2 folds, got {folds}")));
    }
    for (i, a) in axes.iter().enumerate() {
        if axes[..i].iter().any(|b| b.key == a.key) {
            return Err(Error::Invalid(format!("{} is given twice: list all its values in one --set", a.key)));
        }
    }
    // Every value is checked before any training, so a typo fails at once.
    for a in axes {
        for v in &a.values {
            let mut c = with_setting(cfg, &a.key, v)?;
            c.check()?;
            c.check_key(&a.key)?;
            c.fill_defaults();
            c.check_train()?;
        }
    }
    let total: usize = axes.iter().map(|a| a.values.len()).product();
    let mut combos: Vec<usize> = (0..total).collect();
    if let Some(n) = random {
        Rng::new(cfg.train.seed ^ 0x5EA4C4).shuffle(&mut combos);
        combos.truncate(n.min(total));
    }
    let mut out = Vec::new();
    let of = combos.len();
    for c in combos {
        let (mut rest, mut settings, mut conf) = (c, Vec::new(), cfg.clone());
        for a in axes {
            let v = &a.values[rest % a.values.len()];
            rest /= a.values.len();
            conf = with_setting(&conf, &a.key, v)?;
            settings.push((a.key.clone(), v.clone()));
        }
        if skip(&settings) {
            continue;
        }
        conf.fill_defaults();
        let scores = conf.cross_validate(folds)?;
        out.push((settings, conf, scores));
        done(out.last().expect("pushed"), of);
    }
    out.sort_by(|a, b| b.2.rank().total_cmp(&a.2.rank()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every score any fold has is summarized, over the folds that have it, and says so when some lack it.
    #[test]
    fn the_summary_covers_every_score_and_names_folds_without_it() {
        let fold = |acc, auc| TableScores { rows: 10, accuracy: Some(acc), roc_auc: auc, ..Default::default() };
        let one = |acc, auc| vec![("y".to_string(), fold(acc, auc))];
        let folds = Folds::Table(vec![one(0.5, None), one(0.7, Some(0.8)), one(0.9, Some(0.6))]);
        assert_eq!(folds.summary(), "accuracy: 0.7000 ± 0.1633 - roc_auc: 0.7000 ± 0.1000 (over 2 of 3 folds)");
        assert_eq!(folds.rank(), 0.7, "ROC-AUC ranks, over the folds that have it");
        assert_eq!(folds.line(1), "accuracy: 0.7000 - roc_auc: 0.8000 (10 rows)");
    }

    /// With several targets each score is named after its target, and the first target ranks.
    #[test]
    fn several_targets_are_scored_each_and_the_first_ranks() {
        let num = |rmse| TableScores { rows: 10, rmse: Some(rmse), ..Default::default() };
        let cls = |acc| TableScores { rows: 10, accuracy: Some(acc), ..Default::default() };
        let two = |rmse, acc| vec![("spend".to_string(), num(rmse)), ("churn".to_string(), cls(acc))];
        let folds = Folds::Table(vec![two(2.0, 0.6), two(4.0, 0.8)]);
        assert_eq!(folds.summary(), "spend_rmse: 3.0000 ± 1.0000 - churn_accuracy: 0.7000 ± 0.1000");
        assert_eq!(folds.rank(), -3.0, "the first target's −RMSE, not the second's accuracy");
        assert_eq!(folds.line(0), "spend: rmse: 2.0000; churn: accuracy: 0.6000 (10 rows)");
        assert_eq!(folds.stat("churn_accuracy").map(|s| s.0), Some(0.7));
    }

    #[test]
    fn classes_with_fewer_rows_than_folds_are_named_and_numbers_are_not() {
        let keys = |spec: &[(&str, usize)]| -> Vec<String> {
            spec.iter().flat_map(|&(c, n)| std::iter::repeat_n(c.to_string(), n)).collect()
        };
        let w = super::thin_classes(&keys(&[("no", 40), ("yes", 2)]), "label", 5).unwrap();
        assert_eq!(
            w,
            "class `yes` (2 rows) of target `label` has fewer rows than the 5 folds, so some folds test none of \
             it: scores that need every class (AUC) are left out there"
        );
        let w = super::thin_classes(&keys(&[("a", 1), ("b", 3), ("c", 9)]), "y", 4).unwrap();
        assert!(w.starts_with("classes `a` (1 row), `b` (3 rows) of target `y` have fewer rows than the 4"), "{w}");
        assert_eq!(super::thin_classes(&keys(&[("a", 5), ("b", 5)]), "y", 5), None);
        // A numeric target is one stratum.
        assert_eq!(super::thin_classes(&keys(&[("", 30)]), "price", 5), None);
    }
}
