//! The results of `kiln cv` and `kiln search`, not only their format, on small tables made here: the folds
//! partition the rows (stratified by class), a column equal to the label gives accuracy 1 and random labels
//! chance, each fold's printed scores equal scores recomputed by hand from that fold's predictions, the
//! mean ± std line is the mean and standard deviation of the fold lines, and search tries exactly the grid
//! asked (or that many draws from it), ranks by ROC-AUC, and writes the first one's settings.

use crate::common::{kiln, stdout};
use kiln::config::Config;
use kiln::data::prepare::Task;
use kiln::tabular;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// name → value of the "name: value" parts of a fold line ("fold 2/5: accuracy: 0.8000 - ... (30 rows)"),
/// and its row count.
fn fold_line(line: &str) -> (BTreeMap<String, f64>, usize) {
    let rest = line.split_once(": ").unwrap().1;
    let (scores, rows) = rest.rsplit_once(" (").unwrap();
    let rows = rows.strip_suffix(" rows)").unwrap().parse().unwrap();
    let map = scores
        .split(" - ")
        .map(|p| {
            let (n, v) = p.split_once(": ").unwrap();
            (n.to_string(), v.parse().unwrap_or_else(|_| panic!("`{v}` in {line}")))
        })
        .collect();
    (map, rows)
}

/// name → (mean, std) of a summary ("accuracy: 0.8000 ± 0.0100 - roc_auc: ...").
fn summary(s: &str) -> BTreeMap<String, (f64, f64)> {
    s.split(" - ")
        .map(|p| {
            let (n, v) = p.split_once(": ").unwrap();
            let (m, sd) = v.split_once(" ± ").unwrap_or_else(|| panic!("`{p}` in {s}"));
            let sd = sd.split(' ').next().unwrap();
            (n.to_string(), (m.parse().unwrap(), sd.parse().unwrap()))
        })
        .collect()
}

/// The fold lines and the summary of `kiln cv`'s output.
type Folds = Vec<(BTreeMap<String, f64>, usize)>;
type Summary = BTreeMap<String, (f64, f64)>;

fn cv_output(out: &str, k: usize) -> (Folds, Summary) {
    let folds: Vec<_> = out.lines().filter(|l| l.starts_with("fold ")).map(fold_line).collect();
    assert_eq!(folds.len(), k, "{out}");
    let head = format!("{k}-fold cross-validation: ");
    let last = out.lines().find_map(|l| l.strip_prefix(head.as_str())).unwrap_or_else(|| panic!("{out}"));
    (folds, summary(last.rsplit_once(" (").unwrap().0))
}

fn run_ok(args: &[&str]) -> String {
    let o = kiln(args);
    assert!(o.status.success(), "kiln {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    stdout(&o)
}

/// A tiny deterministic generator (uniform in [0, 1)).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` rows: x uniform in [-1, 1], noise, and label "b" when x > 0, flipped for a fifth of the rows, so
/// that scores are neither trivial nor chance.
fn write_mixed(path: &Path, n: usize) {
    let mut r = Lcg(11);
    let mut csv = String::from("x,noise,label\n");
    for _ in 0..n {
        let (x, z, flip) = (r.next() * 2.0 - 1.0, r.next(), r.next() < 0.2);
        let pos = (x > 0.0) != flip;
        csv += &format!("{x:.4},{z:.4},{}\n", if pos { "b" } else { "a" });
    }
    std::fs::write(path, csv).unwrap();
}

fn write_config(path: &Path, data: &Path, train: &str) {
    let text = format!(
        "[data]\npath = \"{}\"\ntarget = \"label\"\n\n[model]\nhidden = [8]\ndropout = 0.0\n\n[train]\n{train}\n",
        data.display()
    );
    std::fs::write(path, text).unwrap();
}

/// Area under the ROC curve by counting pairs (ties count half).
fn auc(p: &[f32], pos: &[bool]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for (i, &a) in p.iter().enumerate() {
        for (j, &b) in p.iter().enumerate() {
            if pos[i] && !pos[j] {
                pairs += 1.0;
                wins += if a > b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    wins / pairs
}

#[test]
fn cv_folds_and_scores_match_a_recomputation_from_each_folds_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cfg_path) = (tmp.path().join("mixed.csv"), tmp.path().join("mixed.toml"));
    let n = 157;
    write_mixed(&data, n);
    write_config(&cfg_path, &data, "epochs = 8\noptimizer = { type = \"adam\", learning_rate = 0.02 }\nseed = 5");
    let k = 4;
    let out = run_ok(&["cv", cfg_path.to_str().unwrap(), "--folds", &k.to_string()]);
    let (printed, summ) = cv_output(&out, k);

    // The folds, as cross-validation draws them: every row in exactly one, sizes n/k rounded either way,
    // each class spread as evenly (within one row).
    let cfg: Config = toml::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let table = cfg.read_table().unwrap();
    let types = cfg.types(&table).unwrap();
    let folds = tabular::stratified_folds(&table, &types, "label", k, cfg.train.seed).unwrap();
    let mut all: Vec<usize> = folds.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "every row in exactly one fold");
    let labels: Vec<String> = table.column("label").unwrap().cells.iter().map(|c| c.clone().unwrap()).collect();
    for class in ["a", "b"] {
        let per: Vec<usize> = folds.iter().map(|f| f.iter().filter(|&&r| labels[r] == class).count()).collect();
        let (lo, hi) = (per.iter().min().unwrap(), per.iter().max().unwrap());
        assert!(hi - lo <= 1, "class {class} per fold: {per:?}");
    }
    for (f, (_, rows)) in folds.iter().zip(&printed) {
        assert!(f.len() == n / k || f.len() == n / k + 1, "fold of {} rows", f.len());
        assert_eq!(f.len(), *rows, "the printed row count is the fold's");
    }

    // Each fold by hand: train on the other folds, predict the fold, score the predictions.
    for (i, test) in folds.iter().enumerate() {
        let train: Vec<usize> =
            folds.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, f)| f.iter().copied()).collect();
        let model = tabular::fit_rows(&cfg, &table, &types, &train, false).unwrap();
        let prep = model.preparation().cloned().unwrap();
        let Task::Binary { classes } = prep.task() else { panic!("two classes: {:?}", prep.task()) };
        let p = model.predict(&prep.transform(&table, test).unwrap(), 1024).unwrap();
        let pos: Vec<bool> = test.iter().map(|&r| labels[r] == classes[1]).collect();
        let correct = p.data().iter().zip(&pos).filter(|&(&q, &l)| (q > 0.5) == l).count();
        let accuracy = correct as f64 / test.len() as f64;
        let (tp, pp) = (
            p.data().iter().zip(&pos).filter(|&(&q, &l)| q > 0.5 && l).count() as f64,
            p.data().iter().filter(|&&q| q > 0.5).count() as f64,
        );
        let (precision, recall) = (tp / pp, tp / pos.iter().filter(|&&l| l).count() as f64);
        let want = [
            ("accuracy", accuracy),
            ("precision", precision),
            ("recall", recall),
            ("f1", 2.0 * precision * recall / (precision + recall)),
            ("roc_auc", auc(p.data(), &pos)),
        ];
        let got = &printed[i].0;
        for (name, w) in want {
            assert!((got[name] - w).abs() < 6e-5, "fold {}: {name} printed {}, by hand {w}", i + 1, got[name]);
        }
    }

    // The summary: mean and (population) standard deviation of the fold lines.
    for (name, (mean, sd)) in &summ {
        let v: Vec<f64> = printed.iter().map(|(s, _)| s[name]).collect();
        let m = v.iter().sum::<f64>() / k as f64;
        let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / k as f64).sqrt();
        // The fold values are printed rounded to 4 decimals: the recomputed mean is off by at most 5e-5.
        assert!((mean - m).abs() < 1.1e-4, "{name}: mean printed {mean}, of the folds {m}");
        assert!((sd - s).abs() < 1.1e-4, "{name}: std printed {sd}, of the folds {s}");
    }
    assert!(summ.contains_key("accuracy") && summ.contains_key("roc_auc"), "{summ:?}");
    let acc = summ["accuracy"].0;
    assert!(acc > 0.55 && acc < 0.95, "accuracy {acc}: neither chance nor trivial on this table");
}

#[test]
fn a_copy_of_the_label_scores_1_and_random_labels_score_chance() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Lcg(7);
    // 203 rows, 120 "yes": `copy` is the label in other words; `noise` is noise.
    let (mut easy, mut random) = (String::from("copy,noise,label\n"), String::from("u,v,label\n"));
    for i in 0..203 {
        let yes = (i * 11) % 203 < 120;
        easy += &format!("{},{:.4},{}\n", if yes { "p" } else { "q" }, r.next(), if yes { "yes" } else { "no" });
        random += &format!("{:.4},{:.4},{}\n", r.next(), r.next(), if r.next() < 0.5 { "yes" } else { "no" });
    }
    std::fs::write(tmp.path().join("easy.csv"), easy).unwrap();
    std::fs::write(tmp.path().join("random.csv"), random).unwrap();

    let easy = tmp.path().join("easy.csv");
    let out = run_ok(&[
        "cv",
        "--data",
        easy.to_str().unwrap(),
        "--target",
        "label",
        "--folds",
        "5",
        "--set",
        "train.optimizer.learning_rate=0.02",
        "--set",
        "train.epochs=15",
    ]);
    let (folds, summ) = cv_output(&out, 5);
    // Stratified round-robin over 83 "no" then 120 "yes": folds of 41, 41, 41, 40, 40 rows.
    assert_eq!(folds.iter().map(|f| f.1).collect::<Vec<_>>(), [41, 41, 41, 40, 40], "{out}");
    for (i, (s, _)) in folds.iter().enumerate() {
        assert_eq!((s["accuracy"], s["roc_auc"]), (1.0, 1.0), "fold {}: {out}", i + 1);
    }
    assert_eq!((summ["accuracy"], summ["roc_auc"]), ((1.0, 0.0), (1.0, 0.0)), "{out}");

    let random = tmp.path().join("random.csv");
    let out = run_ok(&["cv", "--data", random.to_str().unwrap(), "--target", "label", "--folds", "5"]);
    let (_, summ) = cv_output(&out, 5);
    // 203 test predictions of coin flips: accuracy 0.5 ± 0.035, ROC-AUC about as close to 0.5.
    let (acc, auc) = (summ["accuracy"].0, summ["roc_auc"].0);
    assert!((0.36..0.64).contains(&acc) && (0.34..0.66).contains(&auc), "chance expected: {out}");
}

/// The settings of a search line ("  accuracy: ... | model.hidden = [4], train.optimizer.learning_rate = 0.1").
fn settings(line: &str) -> (String, Vec<(String, String)>) {
    let (scores, set) = line.trim().split_once(" | ").unwrap_or_else(|| panic!("{line}"));
    let mut out = Vec::new();
    // Values may hold ", " (arrays): split on ", " before a key.
    for part in set.split(", ") {
        match part.split_once(" = ") {
            Some((k, v)) if k.contains('.') => out.push((k.to_string(), v.to_string())),
            _ => out.last_mut().unwrap().1 += &format!(", {part}"),
        }
    }
    (scores.to_string(), out)
}

#[test]
fn search_tries_exactly_the_grid_ranks_by_roc_auc_and_writes_the_best() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cfg_path) = (tmp.path().join("mixed.csv"), tmp.path().join("mixed.toml"));
    write_mixed(&data, 120);
    write_config(&cfg_path, &data, "epochs = 4\nseed = 1");
    let cfg = cfg_path.to_str().unwrap();
    let hidden = ["[4]", "[6, 3]"];
    let rates = ["0.001", "0.02", "0.3"];
    let out = run_ok(&[
        "search",
        cfg,
        "--set",
        "model.hidden=[4],[6, 3]",
        "--set",
        "train.optimizer.learning_rate=0.001,0.02,0.3",
        "--folds",
        "2",
    ]);
    // A line per config as it finishes, then the ranking.
    let progress: Vec<&str> = out.lines().take_while(|l| l.starts_with("config ")).collect();
    assert_eq!(progress.len(), 6, "{out}");
    assert!(progress[5].starts_with("config 6/6: "), "{out}");
    let mut lines = out.lines().skip(6);
    assert_eq!(lines.next(), Some("6 configs, 2-fold cross-validation each, best first by mean roc_auc:"), "{out}");
    let trials: Vec<(String, Vec<(String, String)>)> = lines.by_ref().take(6).map(settings).collect();
    // Exactly the grid, each combination once, nothing else changed.
    let tried: BTreeSet<(String, String)> = trials
        .iter()
        .map(|(_, s)| {
            assert_eq!(s.len(), 2, "{s:?}");
            assert_eq!((s[0].0.as_str(), s[1].0.as_str()), ("model.hidden", "train.optimizer.learning_rate"));
            (s[0].1.clone(), s[1].1.clone())
        })
        .collect();
    let grid: BTreeSet<(String, String)> =
        hidden.iter().flat_map(|h| rates.iter().map(|r| (h.to_string(), r.to_string()))).collect();
    assert_eq!(tried, grid, "{out}");
    assert_eq!(trials.len(), 6);
    // Best first by the mean ROC-AUC (two classes): the printed means do not increase down the list.
    let aucs: Vec<f64> = trials.iter().map(|(s, _)| summary(s)["roc_auc"].0).collect();
    assert!(aucs.windows(2).all(|w| w[0] >= w[1]), "not ranked by roc_auc: {aucs:?}\n{out}");
    assert!(aucs[0] > aucs[5], "the settings make a difference here: {aucs:?}");

    // The best config written is the first line's, and a trial's scores are those of `kiln cv` with its
    // settings (the same folds and training).
    let best: Config = toml::from_str(&std::fs::read_to_string(tmp.path().join("best.toml")).unwrap()).unwrap();
    let (h, lr) = (&trials[0].1[0].1, &trials[0].1[1].1);
    let want_hidden: Vec<usize> =
        h.trim_matches(|c| c == '[' || c == ']').split(", ").map(|v| v.parse().unwrap()).collect();
    assert_eq!(
        (best.model.hidden.clone(), best.train.optimizer.learning_rate()),
        (want_hidden, lr.parse::<f32>().unwrap())
    );
    assert_eq!((best.train.epochs, best.model.dropout), (Some(4), 0.0), "the rest is the config's");
    for (scores, s) in [&trials[0], &trials[5]] {
        let sets: Vec<String> = s.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let cv = run_ok(&["cv", cfg, "--folds", "2", "--set", &sets[0], "--set", &sets[1]]);
        let line = cv.lines().find_map(|l| l.strip_prefix("2-fold cross-validation: ")).unwrap();
        assert_eq!(summary(scores), summary(line.rsplit_once(" (").unwrap().0), "{sets:?}: search vs cv");
    }

    // A random search draws that many distinct combinations of the grid.
    let out = run_ok(&[
        "search",
        cfg,
        "--set",
        "model.hidden=[4],[6, 3]",
        "--set",
        "train.optimizer.learning_rate=0.001,0.02,0.3",
        "--folds",
        "2",
        "--random",
        "3",
        "--output",
        tmp.path().join("best3.toml").to_str().unwrap(),
    ]);
    let ranking: Vec<&str> = out.lines().skip_while(|l| l.starts_with("config ")).collect();
    assert!(ranking[0].starts_with("3 configs, 2-fold cross-validation each"), "{out}");
    let drawn: BTreeSet<(String, String)> =
        ranking.iter().skip(1).take(3).copied().map(settings).map(|(_, s)| (s[0].1.clone(), s[1].1.clone())).collect();
    assert_eq!(drawn.len(), 3, "distinct: {out}");
    assert!(drawn.is_subset(&grid), "{drawn:?} within the grid");
    assert!(tmp.path().join("best3.toml").exists());
    let progress: Vec<&str> = out.lines().take_while(|l| l.starts_with("config ")).collect();
    assert!(progress.len() == 3 && progress[2].starts_with("config 3/3: "), "{out}");

    // A trial's defaults follow its settings, as for a file that had them: without validation rows no default
    // patience is left behind to refuse (the config never named one).
    let out = run_ok(&["search", cfg, "--set", "train.validation_split=0.0,0.2", "--folds", "2"]);
    assert!(out.contains("2 configs, 2-fold cross-validation each"), "{out}");
}
