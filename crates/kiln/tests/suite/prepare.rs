//! Column preparation against values worked out by hand: min-max and robust scaling (numpy's linear
//! percentiles, as scikit-learn's RobustScaler), z-score and IQR clipping, median and constant imputation with
//! the was-missing indicator, ln(1 + x) of skewed columns, all fitted on the training rows only; duplicate rows
//! (`duplicate_rows`, `drop_duplicates` in training, the audit's count) and the audit's outlier count.

use kiln::config::Config;
use kiln::data::audit::audit;
use kiln::data::prepare::{FeatureKind, Impute, Outliers, Preparation, PrepareOptions, Scale, duplicate_rows};
use kiln::data::table::{Column, ColumnType, Table};
use kiln::tabular;

const TOL: f64 = 1e-6;

/// A table of number columns (None: missing) and a class column `y` (a, b, a, b, ...).
fn table(cols: &[(&str, &[Option<f64>])]) -> Table {
    let rows = cols[0].1.len();
    let mut columns: Vec<Column> = cols
        .iter()
        .map(|(name, v)| Column {
            name: name.to_string(),
            cells: v.iter().map(|x| x.map(|x| x.to_string())).collect(),
            declared: Some(ColumnType::Number),
        })
        .collect();
    let y = (0..rows).map(|r| Some(if r % 2 == 0 { "a" } else { "b" }.to_string())).collect();
    columns.push(Column { name: "y".into(), cells: y, declared: Some(ColumnType::Category) });
    Table { source: "t.csv".into(), columns }
}

fn some(v: &[f64]) -> Vec<Option<f64>> {
    v.iter().map(|&x| Some(x)).collect()
}

fn fit(t: &Table, rows: &[usize], opts: &PrepareOptions) -> Preparation {
    Preparation::fit(t, &t.infer_types().unwrap(), &["y"], rows, &[], opts).unwrap()
}

/// Options without the ln(1 + x) of skewed columns, so that values stay as written.
fn plain() -> PrepareOptions {
    PrepareOptions { log_skewed: false, ..Default::default() }
}

/// (log, fill, indicator, clip, center, scale) of the number feature `name`.
fn number(p: &Preparation, name: &str) -> (bool, f64, bool, Option<(f64, f64)>, f64, f64) {
    match &p.features.iter().find(|f| f.name == name).unwrap().kind {
        FeatureKind::Number { log, fill, indicator, clip, center, scale, .. } => {
            (*log, *fill, *indicator, *clip, *center, *scale)
        }
        k => panic!("`{name}` is not a number feature: {k:?}"),
    }
}

/// The prepared values of `rows` as rows of f64.
fn prepared(p: &Preparation, t: &Table, rows: &[usize]) -> Vec<Vec<f64>> {
    let x = p.transform(t, rows).unwrap();
    x.data().chunks(p.width()).map(|r| r.iter().map(|&v| v as f64).collect()).collect()
}

fn assert_close(got: &[Vec<f64>], want: &[Vec<f64>]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len(), "{got:?} vs {want:?}");
        for (a, b) in g.iter().zip(w) {
            // The prepared values are f32.
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "got {got:?}\nwant {want:?}");
        }
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (m, (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt())
}

#[test]
fn robust_scaling_is_x_minus_median_over_iqr_with_linear_percentiles() {
    // Training rows 0-5; row 6 (huge) and row 7 (missing) are not training rows.
    let t = table(&[("x", &[Some(1.0), Some(2.0), Some(4.0), Some(8.0), Some(9.0), Some(20.0), Some(1000.0), None])]);
    let p = fit(&t, &[0, 1, 2, 3, 4, 5], &PrepareOptions { scale: Scale::Robust, ..plain() });
    // np.percentile([1, 2, 4, 8, 9, 20], [25, 50, 75]) = [2.5, 6, 8.75] (positions 1.25, 2.5, 3.75), as
    // scikit-learn's RobustScaler uses them: (x − 6) / 6.25.
    let (log, fill, indicator, clip, center, scale) = number(&p, "x");
    assert_eq!((log, indicator, clip), (false, false, None), "no missing training value: no indicator");
    assert!((center - 6.0).abs() < TOL && (scale - 6.25).abs() < TOL, "center {center}, scale {scale}");
    assert!((fill - 44.0 / 6.0).abs() < TOL, "mean imputation of the training values: {fill}");
    let want: Vec<Vec<f64>> =
        [1.0, 2.0, 4.0, 8.0, 9.0, 20.0, 1000.0, 44.0 / 6.0].iter().map(|x| vec![(x - 6.0) / 6.25]).collect();
    assert_close(&prepared(&p, &t, &(0..8).collect::<Vec<_>>()), &want);
}

#[test]
fn min_max_scaling_maps_the_training_range_to_0_1_without_clipping_other_rows() {
    let t = table(&[("x", &[Some(2.0), Some(10.0), None, Some(4.0), Some(14.0), Some(-2.0)])]);
    let p = fit(&t, &[0, 1, 2, 3], &PrepareOptions { scale: Scale::MinMax, ..plain() });
    let (_, fill, indicator, _, center, scale) = number(&p, "x");
    assert!(indicator, "a training value is missing: a was-missing input follows the value");
    assert_eq!((center, scale), (2.0, 8.0));
    assert!((fill - 16.0 / 3.0).abs() < TOL);
    // (x − 2) / 8; like scikit-learn's MinMaxScaler (clip=False) values beyond the training range go past 0-1.
    let want = vec![
        vec![0.0, 0.0],
        vec![1.0, 0.0],
        vec![(16.0 / 3.0 - 2.0) / 8.0, 1.0],
        vec![0.25, 0.0],
        vec![1.5, 0.0],
        vec![-0.5, 0.0],
    ];
    assert_close(&prepared(&p, &t, &[0, 1, 2, 3, 4, 5]), &want);
}

#[test]
fn median_imputation_fills_the_median_of_the_training_values() {
    // Training values 1, 2, 10, 20 (and a missing one): np.median = (2 + 10) / 2 = 6; row 5 (1000) is not
    // training.
    let t = table(&[("x", &[Some(1.0), Some(20.0), None, Some(2.0), Some(10.0), Some(1000.0)])]);
    let p = fit(&t, &[0, 1, 2, 3, 4], &PrepareOptions { impute: Impute::Median, ..plain() });
    let (_, fill, indicator, _, center, scale) = number(&p, "x");
    assert_eq!((fill, indicator), (6.0, true));
    // Standard scaling of the present training values, with the population deviation (StandardScaler's).
    let (m, s) = mean_std(&[1.0, 20.0, 2.0, 10.0]);
    assert!((center - m).abs() < TOL && (scale - s).abs() < TOL, "{center} {scale} vs {m} {s}");
    assert_close(&prepared(&p, &t, &[2, 0]), &[vec![(6.0 - m) / s, 1.0], vec![(1.0 - m) / s, 0.0]]);
    // An odd count: the middle value. Missing values in rows training did not see get the same fill (and no
    // indicator when training had none missing).
    let t = table(&[("x", &[Some(10.0), Some(1.0), Some(2.0), None])]);
    let p = fit(&t, &[0, 1, 2], &PrepareOptions { impute: Impute::Median, scale: Scale::MinMax, ..plain() });
    let (_, fill, indicator, ..) = number(&p, "x");
    assert_eq!((fill, indicator), (2.0, false));
    assert_close(&prepared(&p, &t, &[3]), &[vec![(2.0 - 1.0) / 9.0]]);
}

#[test]
fn constant_imputation_fills_fill_value_or_zero() {
    let t = table(&[("x", &[Some(0.0), Some(10.0), Some(5.0), None])]);
    let minmax = PrepareOptions { impute: Impute::Constant, scale: Scale::MinMax, ..plain() };
    let p = fit(&t, &[0, 1, 2, 3], &PrepareOptions { fill_value: -5.0, ..minmax.clone() });
    assert_eq!(number(&p, "x").1, -5.0);
    assert_close(&prepared(&p, &t, &[3, 2]), &[vec![-0.5, 1.0], vec![0.5, 0.0]]);
    let p = fit(&t, &[0, 1, 2, 3], &minmax);
    assert_close(&prepared(&p, &t, &[3]), &[vec![0.0, 1.0]]);
}

/// Population skewness (scipy.stats.skew's default), written out.
fn skew(v: &[f64]) -> f64 {
    let (m, s) = mean_std(v);
    v.iter().map(|x| ((x - m) / s).powi(3)).sum::<f64>() / v.len() as f64
}

#[test]
fn ln_1p_is_taken_of_non_negative_columns_skewed_beyond_2() {
    // a: nine 0s and a 100 (skewness (n − 2)/√(n − 1) = 8/3); b: the same with a −1 (negative: kept as is);
    // c: 0..9 (not skewed). Row 10 is not training.
    let mut a = vec![0.0; 9];
    a.extend([100.0, 3.0]);
    let mut b = vec![-1.0];
    b.extend([0.0; 8]);
    b.extend([100.0, 3.0]);
    let c: Vec<f64> = (0..11).map(f64::from).collect();
    assert!(skew(&a[..10]) > 2.0 && skew(&b[..10]) > 2.0 && skew(&c[..10]).abs() < 2.0);
    let t = table(&[("a", &some(&a)), ("b", &some(&b)), ("c", &some(&c))]);
    let opts = PrepareOptions { scale: Scale::MinMax, ..Default::default() };
    assert!(opts.log_skewed, "on by default");
    let train: Vec<usize> = (0..10).collect();
    let p = fit(&t, &train, &opts);
    let logs: Vec<bool> = ["a", "b", "c"].iter().map(|n| number(&p, n).0).collect();
    assert_eq!(logs, [true, false, false]);
    // a: ln(1 + x) / ln(101); b: (x + 1) / 101; c: x / 9.
    let l = 101f64.ln();
    let want = vec![vec![1.0, 101.0 / 101.0, 1.0], vec![4f64.ln() / l, 4.0 / 101.0, 10.0 / 9.0]];
    assert_close(&prepared(&p, &t, &[9, 10]), &want);
    let p = fit(&t, &train, &PrepareOptions { log_skewed: false, ..opts.clone() });
    assert!(!number(&p, "a").0);
    // The threshold: n − 1 zeros and one 1 have skewness (n − 2)/√(n − 1): 1.79 for n = 6, 2.04 for n = 7.
    for (n, want) in [(6, false), (7, true)] {
        let mut v = vec![0.0; n - 1];
        v.push(1.0);
        let t = table(&[("x", &some(&v))]);
        let p = fit(&t, &(0..n).collect::<Vec<_>>(), &PrepareOptions::default());
        assert_eq!(number(&p, "x").0, want, "n = {n}, skewness {}", skew(&v));
    }
    // A missing value (row 10, not training) in a logged column: the fill is in the log scale; fill_value 3 → ln 4.
    let mut d = a[..10].iter().copied().map(Some).collect::<Vec<_>>();
    d.push(None);
    let t = table(&[("x", &d)]);
    let p = fit(&t, &train, &PrepareOptions { impute: Impute::Constant, fill_value: 3.0, ..opts });
    assert!(number(&p, "x").0);
    assert_close(&prepared(&p, &t, &[10]), &[vec![4f64.ln() / l]]);
}

#[test]
fn z_score_clipping_clips_to_the_training_mean_plus_minus_3_deviations() {
    // Ten 0s and a 100: mean 100/11, population deviation 28.75, so 100 (z = √10 ≈ 3.16) is clipped to 95.34.
    let mut v = vec![0.0; 10];
    v.extend([100.0, 50.0, 1e6, -1000.0]);
    let t = table(&[("x", &some(&v))]);
    let train: Vec<usize> = (0..11).collect();
    let (m, s) = mean_std(&v[..11]);
    let (lo, hi) = (m - 3.0 * s, m + 3.0 * s);
    assert!(hi < 100.0 && (hi - 95.335).abs() < 1e-3);
    let zscore = PrepareOptions { outliers: Outliers::Zscore, scale: Scale::MinMax, ..plain() };
    let p = fit(&t, &train, &zscore);
    let (.., clip, center, scale) = number(&p, "x");
    let (clo, chi) = clip.unwrap();
    assert!((clo - lo).abs() < TOL && (chi - hi).abs() < TOL, "{clip:?} vs ({lo}, {hi})");
    assert!(center == 0.0 && (scale - hi).abs() < TOL, "min-max of the clipped values: {center} {scale}");
    let want: Vec<Vec<f64>> =
        [0.0, 100.0, 50.0, 1e6, -1000.0].iter().map(|x: &f64| vec![x.clamp(lo, hi) / hi]).collect();
    assert_close(&prepared(&p, &t, &[0, 10, 11, 12, 13]), &want);
    // Standard scaling after clipping uses the clipped values' mean and deviation.
    let p = fit(&t, &train, &PrepareOptions { scale: Scale::Standard, ..zscore });
    let mut clipped = vec![0.0; 10];
    clipped.push(hi);
    let (cm, cs) = mean_std(&clipped);
    let (.., center, scale) = number(&p, "x");
    assert!((center - cm).abs() < TOL && (scale - cs).abs() < TOL);
    assert_close(&prepared(&p, &t, &[10, 0]), &[vec![(hi - cm) / cs], vec![-cm / cs]]);
}

#[test]
fn iqr_clipping_clips_to_the_linear_quartiles_plus_minus_one_and_a_half_iqr() {
    // Training 1..9 and 30: np.percentile → Q1 = 3.25, Q3 = 7.75, IQR 4.5, bounds [−3.5, 14.5]. Rows 10, 11
    // (not training): 5 and −10.
    let mut v: Vec<f64> = (1..10).map(f64::from).collect();
    v.extend([30.0, 5.0, -10.0]);
    let t = table(&[("x", &some(&v))]);
    let train: Vec<usize> = (0..10).collect();
    let iqr = PrepareOptions { outliers: Outliers::Iqr, scale: Scale::MinMax, ..plain() };
    let p = fit(&t, &train, &iqr);
    let (.., clip, center, scale) = number(&p, "x");
    let (lo, hi) = clip.unwrap();
    assert!((lo + 3.5).abs() < TOL && (hi - 14.5).abs() < TOL, "{clip:?}");
    assert!((center - 1.0).abs() < TOL && (scale - 13.5).abs() < TOL, "{center} {scale}");
    assert_close(&prepared(&p, &t, &[9, 10, 11]), &[vec![1.0], vec![4.0 / 13.5], vec![-4.5 / 13.5]]);
    // Robust scaling with IQR clipping: (clip(x) − 5.5) / 4.5.
    let p = fit(&t, &train, &PrepareOptions { scale: Scale::Robust, ..iqr });
    assert_close(&prepared(&p, &t, &[9, 10, 11]), &[vec![2.0], vec![-0.5 / 4.5], vec![-2.0]]);
}

#[test]
fn every_statistic_comes_from_the_training_rows_only() {
    // Fitting on some rows of a table gives the same preparation as fitting on a table of just those rows,
    // whatever the other rows hold (extreme values, missing cells, an unseen category).
    let x = [Some(3.0), Some(1.0), None, Some(7.0), Some(2.0), Some(-500.0), None, Some(1e5), Some(4.0), Some(8.0)];
    let z = [0.0, 1.0, 1.0, 40.0, 2.0, 0.0, 1.0, 0.0, 3.0, 2.0].map(Some);
    let mut t = table(&[("x", &x), ("z", &z)]);
    let k: Vec<Option<String>> = "r g r b r zz zz g b r".split(' ').map(|s| Some(s.to_string())).collect();
    t.columns.insert(2, Column { name: "k".into(), cells: k, declared: Some(ColumnType::Category) });
    let train = [0, 1, 2, 3, 4, 8, 9];
    let mut sub = t.clone();
    for c in &mut sub.columns {
        c.cells = train.iter().map(|&r| c.cells[r].clone()).collect();
    }
    for impute in [Impute::Mean, Impute::Median, Impute::MostFrequent, Impute::Constant] {
        for scale in [Scale::Standard, Scale::MinMax, Scale::Robust] {
            for outliers in [Outliers::Keep, Outliers::Iqr, Outliers::Zscore] {
                let opts = PrepareOptions { impute, scale, outliers, fill_value: 2.5, bins: 3, ..Default::default() };
                let (p, q) = (fit(&t, &train, &opts), fit(&sub, &(0..train.len()).collect::<Vec<_>>(), &opts));
                assert_eq!(p, q, "{opts:?}");
                let rows: Vec<usize> = (0..train.len()).collect();
                assert_eq!(prepared(&p, &t, &train), prepared(&q, &sub, &rows));
            }
        }
    }
}

#[test]
fn duplicate_rows_are_the_later_copies_among_the_given_rows() {
    let csv = "x,k,y\n1,r,a\n1,r,a\n1,r,b\n,g,a\n,g,a\n1,r,a\n2,r,a\n";
    let t = kiln::data::csv::parse_csv(csv, std::path::Path::new("t.csv"), &Default::default()).unwrap();
    // Row 1 repeats row 0; row 2 differs in the target; row 4 repeats row 3 (missing cells equal); row 5
    // repeats row 0; row 6 is new.
    assert_eq!(duplicate_rows(&t, &[0, 1, 2, 3, 4, 5, 6]), [1, 4, 5]);
    // Among other rows: the first of them in the given order is kept, rows not given do not count.
    assert_eq!(duplicate_rows(&t, &[5, 1, 2, 4, 6]), [1]);
    assert_eq!(duplicate_rows(&t, &[2, 3, 6]), Vec::<usize>::new());
    let a = audit(&t, &t.infer_types().unwrap(), Some("y")).unwrap();
    assert_eq!(a.duplicate_rows, 3);
    assert_eq!(a.balance, [("a".to_string(), 6), ("b".to_string(), 1)]);
}

#[test]
fn drop_duplicates_fits_the_preparation_on_the_rows_left() {
    let csv = "x,y\n1,a\n1,a\n1,a\n10,b\n3,b\n3,a\n";
    let t = kiln::data::csv::parse_csv(csv, std::path::Path::new("t.csv"), &Default::default()).unwrap();
    let types = t.infer_types().unwrap();
    let mut cfg = Config::for_table("t.csv", "y");
    (cfg.train.validation_split, cfg.train.epochs, cfg.model.hidden) = (Some(0.0), Some(1), vec![2]);
    cfg.data.prepare.log_skewed = false;
    let center = |cfg: &Config, rows: &[usize]| {
        let model = tabular::fit_rows(cfg, &t, &types, rows, false).unwrap();
        number(model.preparation().unwrap(), "x").4
    };
    // Standard scaling: the center is the mean of the training rows' x.
    assert!((center(&cfg, &[0, 1, 2, 3, 4, 5]) - 19.0 / 6.0).abs() < TOL, "all rows kept by default");
    cfg.data.prepare.drop_duplicates = true;
    // Rows 1 and 2 repeat row 0; row 5 differs from row 4 in its class: 1, 10, 3, 3 are left.
    assert!((center(&cfg, &[0, 1, 2, 3, 4, 5]) - 4.25).abs() < TOL);
    // Without row 0, row 1 is the first of its copies: 1, 10, 3, 3 again, from rows 1, 3, 4, 5.
    assert!((center(&cfg, &[1, 2, 3, 4, 5]) - 4.25).abs() < TOL);
    assert!((center(&cfg, &[2, 3]) - 5.5).abs() < TOL);
}

#[test]
fn the_audit_counts_values_outside_the_iqr_fences() {
    // 1..9 and 30: 30 is beyond Q3 + 1.5·IQR whichever quartiles are used (numpy's linear: 14.5).
    let mut v: Vec<f64> = (1..10).map(f64::from).collect();
    v.push(30.0);
    let t = table(&[("x", &some(&v))]);
    let a = audit(&t, &t.infer_types().unwrap(), Some("y")).unwrap();
    let x = &a.columns[0];
    assert_eq!((x.outliers, x.min, x.max), (Some(1), Some(1.0), Some(30.0)));
    assert_eq!(a.duplicate_rows, 0);
}

#[test]
fn the_audit_and_iqr_clipping_agree_on_what_is_an_outlier() {
    // 1..9 and 15: np.percentile gives Q1 = 3.25, Q3 = 7.75, so the upper fence is 14.5 and 15 is an
    // outlier, which `outliers = "iqr"` clips to 14.5. (The audit once took Q1 = v[2] = 3, Q3 = v[7] = 8,
    // upper fence 15.5, and counted none.)
    let mut v: Vec<f64> = (1..10).map(f64::from).collect();
    v.push(15.0);
    let t = table(&[("x", &some(&v))]);
    let p = fit(&t, &(0..10).collect::<Vec<_>>(), &PrepareOptions { outliers: Outliers::Iqr, ..plain() });
    assert_eq!(number(&p, "x").3, Some((-3.5, 14.5)));
    let a = audit(&t, &t.infer_types().unwrap(), Some("y")).unwrap();
    assert_eq!(a.columns[0].outliers, Some(1));
}

/// `bins` beyond the training values separates nothing more: a hundred million bins on ten values gives the
/// bins ten would (and is not a hundred million edges allocated first).
#[test]
fn more_bins_than_training_values_cost_nothing_more() {
    let x: Vec<f64> = (0..10).map(|i| (i * i) as f64).collect();
    let t = table(&[("x", &some(&x))]);
    let rows: Vec<usize> = (0..10).collect();
    let opts = |bins| PrepareOptions { bins, ..plain() };
    let (huge, ten) = (fit(&t, &rows, &opts(100_000_000)), fit(&t, &rows, &opts(10)));
    assert_eq!(huge, ten);
    assert!(huge.width() <= 1 + 1 + 10, "value, indicator and at most ten bins: {}", huge.width());
}

/// `bin_encoding = "piecewise_linear"` (Gorishniy et al. 2022, eq. 1): quartile bins of 0..=8 are [0, 2], [2, 4],
/// [4, 6], [6, 8]; a value is 1 in every bin below it, the fraction it has passed of its own, 0 above; the
/// first bin continues below the training values and the last above them; a missing value is its fill (the
/// mean, 4).
#[test]
fn piecewise_linear_bins_follow_the_paper() {
    let mut x: Vec<Option<f64>> = (0..=8).map(|i| Some(i as f64)).collect();
    x.extend([Some(3.0), Some(-2.0), Some(9.0), Some(6.0), None]);
    let t = table(&[("x", &x)]);
    let train: Vec<usize> = (0..9).collect();
    let opts = PrepareOptions { bins: 4, bin_encoding: kiln::data::prepare::BinEncoding::PiecewiseLinear, ..plain() };
    let p = fit(&t, &train, &opts);
    assert_eq!(p.width(), 1 + 4, "the value and four bins (no missing value in training: no indicator)");
    let got = p.transform(&t, &(9..14).collect::<Vec<_>>()).unwrap();
    let want: [[f32; 4]; 5] =
        [[1.0, 0.5, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.5], [1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]];
    for (r, w) in want.iter().enumerate() {
        assert_eq!(&got.data()[r * 5 + 1..r * 5 + 5], w, "row {r}");
    }
    // One-hot (the default) marks the bin alone.
    let onehot = fit(&t, &train, &PrepareOptions { bins: 4, ..plain() }).transform(&t, &[9]).unwrap();
    assert_eq!(&onehot.data()[1..5], &[0.0, 1.0, 0.0, 0.0]);
}
