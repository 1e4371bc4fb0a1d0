//! Recommenders: reading interactions (RecBole's headers, ties by file order), the leave-last-out split and
//! its files, negative sampling that never returns a positive, the three kinds learning a planted taste on a
//! small synthetic set, save and reload giving the same recommendations, unknown ids refused, config keys
//! checked. MovieLens-100K (fetched by tools/fetch_models.sh) trains BPR for a few epochs when present.

use kiln::config::Config;
use kiln::recommend::split::{sample_negative, sample_unseen};
use kiln::recommend::{
    Csr, InteractionOptions, Interactions, Protocol, Recommender, RecommenderConfig, RecommenderFit, RecommenderKind,
    Split,
};
use kiln_core::Rng;
use std::path::Path;

/// 60 users in two groups of taste: group A rates items 0..15, group B items 15..30, each user 12 of their
/// group's items in a random order (with timestamps), and one item of the other group. Side tables: a
/// user's group as a category, an item's group as a token.
fn planted(dir: &Path) -> InteractionOptions {
    let mut rng = Rng::new(7);
    let mut inter = String::from("user_id:token\titem_id:token\ttimestamp:float\n");
    let mut users = String::from("user_id:token\tgroup:token\tage:float\n");
    for u in 0..60 {
        let g = u % 2;
        users.push_str(&format!("u{u}\t{}\t{}\n", ["a", "b"][g], 20 + u));
        let mut mine: Vec<usize> = (0..15).map(|i| i + 15 * g).collect();
        rng.shuffle(&mut mine);
        let stray = rng.below(15) + 15 * (1 - g);
        for (t, i) in mine[..12].iter().chain([&stray]).enumerate() {
            // The stray item comes first in time, so the held-out items are of the user's group.
            let time = if *i == stray { 0 } else { t + 1 };
            inter.push_str(&format!("u{u}\ti{i}\t{time}\n"));
        }
    }
    let mut items = String::from("item_id:token\tclass:token_seq\n");
    for i in 0..30 {
        items.push_str(&format!("i{i}\t{} common\n", ["red", "blue"][i / 15]));
    }
    std::fs::write(dir.join("inter.tsv"), inter).unwrap();
    std::fs::write(dir.join("users.tsv"), users).unwrap();
    std::fs::write(dir.join("items.tsv"), items).unwrap();
    let mut o = InteractionOptions::new(dir.join("inter.tsv"));
    o.timestamp = Some("timestamp".into());
    o.users = Some(dir.join("users.tsv"));
    o.items = Some(dir.join("items.tsv"));
    o
}

fn trained(kind: RecommenderKind, dir: &Path, history: usize) -> (Recommender, Split, Interactions) {
    let data = Interactions::read(&planted(dir)).unwrap();
    let split = Split::leave_last_out(&data, true, 10, 3);
    let mut c = RecommenderConfig::new(kind);
    c.dim = 16;
    c.history = history;
    if kind == RecommenderKind::TwoTower {
        c.hidden = vec![32];
    } else if kind == RecommenderKind::Ncf {
        c.hidden = vec![32, 16];
    }
    let mut rec = Recommender::new(c, &data, &split, 1).unwrap();
    let mut fit = RecommenderFit { epochs: 40, batch_size: 32, ..Default::default() };
    fit.optimizer.set_learning_rate(0.01);
    rec.fit(&split, &fit, |_| {}).unwrap();
    (rec, split, data)
}

#[test]
fn interactions_read_recbole_headers_and_side_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Interactions::read(&planted(tmp.path())).unwrap();
    assert_eq!((d.users.len(), d.items.len(), d.len()), (60, 30, 60 * 13));
    let uf = d.user_features.as_ref().unwrap();
    // group: a category of 2 levels; age: a number.
    assert_eq!(uf.width(), 3);
    let itf = d.item_features.as_ref().unwrap();
    // class: tokens red, blue, common.
    assert_eq!(itf.width(), 3);
    let row = |f: &kiln::recommend::data::SideFeatures, i: u32| {
        f.rows[i as usize * f.width()..(i as usize + 1) * f.width()].to_vec()
    };
    let red = row(itf, d.items.get("i0").unwrap());
    assert_eq!(red.iter().sum::<f32>(), 2.0, "red and common: {red:?}");
    // The unknown slot's row is zeros.
    assert!(row(itf, 30).iter().all(|v| *v == 0.0));
}

#[test]
fn leave_last_out_holds_out_the_latest_with_ties_by_file_order() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("i.csv");
    // u1's two latest share a time: the later row (c) is the test item, b the validation item.
    std::fs::write(&f, "user,item,t\nu1,a,1\nu1,b,5\nu1,c,5\nu1,d,2\nu2,a,1\nu2,b,2\nu3,z z,9\n").unwrap();
    let mut o = InteractionOptions::new(&f);
    (o.user, o.item, o.timestamp) = ("user".into(), "item".into(), Some("t".into()));
    let d = Interactions::read(&o).unwrap();
    let s = Split::leave_last_out(&d, true, 2, 0);
    let id = |i: u32| d.items.id(i).to_string();
    let u1 = d.users.get("u1").unwrap();
    let test: Vec<_> = s.test.iter().map(|h| (d.users.id(h.user).to_string(), id(h.item))).collect();
    assert_eq!(test, [("u1".to_string(), "c".to_string()), ("u2".into(), "b".into())]);
    assert_eq!(s.valid.len(), 1, "u2 has two items: a test item and no validation item; u3 one: all train");
    assert_eq!((s.valid[0].user, id(s.valid[0].item)), (u1, "b".to_string()));
    // u1's training items in time order; u3's single item trains.
    let u1_train: Vec<String> = s.train.iter().filter(|p| p.0 == u1).map(|p| id(p.1)).collect();
    assert_eq!(u1_train, ["a", "d"]);
    assert!(s.train.iter().any(|p| d.users.id(p.0) == "u3" && id(p.1) == "z z"));
    // Negatives: none of the user's items, distinct, as many as asked when there are enough.
    let all = s.all_items(d.users.len());
    for h in s.valid.iter().chain(&s.test) {
        assert!(h.negatives.iter().all(|n| !all.contains(h.user, *n)), "{h:?}");
        let mut n = h.negatives.clone();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), h.negatives.len());
    }
    // u1 rated 4 of the 5 items: only one negative exists.
    assert_eq!(s.test[0].negatives.len(), 1);
    // The split's files read back the same.
    s.write(tmp.path(), &d.users, &d.items).unwrap();
    assert_eq!(Split::read(tmp.path(), &d.users, &d.items).unwrap(), s);
}

#[test]
fn histories_hold_only_what_came_before() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Interactions::read(&planted(tmp.path())).unwrap();
    let split = Split::leave_last_out(&data, true, 5, 0);
    let mut c = RecommenderConfig::new(RecommenderKind::TwoTower);
    c.history = 3;
    let rec = Recommender::new(c, &data, &split, 0).unwrap();
    let hist = |u: u32, before: Option<u32>| {
        let mut v = Vec::new();
        rec.history_of(u, before, &mut v);
        v.iter().map(|&x| x as u32).collect::<Vec<u32>>()
    };
    for (t, v) in split.test.iter().zip(&split.valid) {
        assert_eq!(t.user, v.user);
        let h = hist(t.user, Some(t.item));
        // The test item's history ends with the validation item, and never holds the test item.
        assert_eq!(*h.last().unwrap(), v.item + 1, "{h:?}");
        assert!(!h.contains(&(t.item + 1)));
        let hv = hist(v.user, Some(v.item));
        assert!(!hv.contains(&(v.item + 1)) && !hv.contains(&(t.item + 1)), "{hv:?}");
    }
    // A training pair's history: only training items before it, in the file's time order.
    let u0 = data.users.get("u0").unwrap();
    let mine: Vec<u32> = split.train.iter().filter(|p| p.0 == u0).map(|p| p.1).collect();
    assert_eq!(hist(u0, Some(mine[0])), [0, 0, 0]);
    assert_eq!(hist(u0, Some(mine[4])), [mine[1] + 1, mine[2] + 1, mine[3] + 1]);
    // An item the user never had gives no history.
    let other = (0..30).find(|i| !rec.timeline[u0 as usize].contains(i)).unwrap();
    assert_eq!(hist(u0, Some(other)), [0, 0, 0]);
}

#[test]
fn the_example_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/movielens");
    for name in ["bpr", "ncf", "two_tower"] {
        let c = Config::from_file(dir.join(format!("{name}.toml"))).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.kind().unwrap(), kiln::config::DataKind::Interactions);
    }
}

#[test]
fn negative_sampling_never_returns_a_positive() {
    let mut rng = Rng::new(1);
    // User 0 has 95 of 100 items, user 1 none, user 2 all of them.
    let pairs = (0..95).map(|i| (0u32, i as u32)).chain((0..100).map(|i| (2u32, i as u32)));
    let pos = Csr::new(3, pairs);
    let mut drawn = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let j = sample_negative(&pos, 0, 100, &mut rng).unwrap();
        assert!(!pos.contains(0, j), "drew positive {j}");
        drawn.insert(j);
    }
    assert_eq!(drawn.len(), 5, "every free item is drawn");
    assert!(sample_negative(&pos, 1, 100, &mut rng).is_some());
    // A user with 10 of 100 items: the rejection draws of both samplers.
    let light = Csr::new(1, (0..10).map(|i| (0u32, i * 7)));
    for _ in 0..500 {
        assert!(!light.contains(0, sample_negative(&light, 0, 100, &mut rng).unwrap()));
    }
    let v = sample_unseen(&light, 0, 100, 20, &mut rng);
    assert_eq!(v.len(), 20);
    assert!(
        v.iter().all(|j| !light.contains(0, *j)) && v.iter().collect::<std::collections::BTreeSet<_>>().len() == 20
    );
    assert_eq!(sample_negative(&pos, 2, 100, &mut rng), None);
    for n in [3, 5, 50] {
        let v = sample_unseen(&pos, 0, 100, n, &mut rng);
        assert_eq!(v.len(), n.min(5));
        assert!(v.iter().all(|j| !pos.contains(0, *j)));
    }
}

/// The held-out items rank high, a user's recommendations are mostly of their group, and none is an item
/// they rated.
fn check_taste(rec: &Recommender, split: &Split, data: &Interactions) {
    let r = rec.evaluate(&split.test, Protocol::Sampled, 3).unwrap();
    // 10 negatives of which ~half are of the user's group: chance is well under 0.5.
    assert!(r.hr > 0.8, "{:?}: {r}", rec.config.kind);
    let full = rec.evaluate(&split.test, Protocol::Full, 5).unwrap();
    assert!(full.hr > 0.7, "{:?}: {full}", rec.config.kind);
    for u in ["u0", "u1", "u7"] {
        let idx = rec.users.get(u).unwrap();
        let g = idx % 2;
        // Three of the group's items are left unrated: most of the top three are among them.
        let list = rec.recommend(u, 3).unwrap();
        let mine = list.iter().filter(|(item, _)| item[1..].parse::<usize>().unwrap() / 15 == g as usize).count();
        assert!(mine >= 2, "{:?}: {u} got {list:?}", rec.config.kind);
        // Against the file's rows, not the model's own record of them.
        let rated: Vec<&str> = (0..data.len())
            .filter(|&r| data.users.id(data.user[r]) == u)
            .map(|r| data.items.id(data.item[r]))
            .collect();
        assert_eq!(rated.len(), 13);
        let all = rec.recommend(u, 30).unwrap();
        assert_eq!(all.len(), 30 - 13);
        assert!(all.iter().all(|(item, _)| !rated.contains(&item.as_str())), "{u}: {all:?} vs {rated:?}");
    }
}

#[test]
fn bpr_learns_a_planted_taste_and_reloads_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let (rec, split, data) = trained(RecommenderKind::Bpr, tmp.path(), 0);
    check_taste(&rec, &split, &data);
    let path = tmp.path().join("bpr.safetensors");
    rec.save(&path).unwrap();
    let back = Recommender::load(&path).unwrap();
    assert_eq!(back.recommend("u3", 5).unwrap(), rec.recommend("u3", 5).unwrap());
    assert_eq!(back.similar_items("i4", 3).unwrap(), rec.similar_items("i4", 3).unwrap());
    let similar = rec.similar_items("i4", 3).unwrap();
    assert!(similar.iter().all(|(i, _)| i != "i4" && i[1..].parse::<usize>().unwrap() < 15), "{similar:?}");
}

/// BPR's fused step against the same training on the tape: the same weights after three epochs.
#[test]
fn bpr_fused_step_equals_the_tape() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Interactions::read(&planted(tmp.path())).unwrap();
    let split = Split::leave_last_out(&data, true, 10, 3);
    let mut c = RecommenderConfig::new(RecommenderKind::Bpr);
    (c.dim, c.l2, c.negatives) = (8, 0.01, 2);
    let weights = |reference: bool| {
        let mut rec = Recommender::new(c.clone(), &data, &split, 1).unwrap();
        let fit = RecommenderFit { epochs: 3, batch_size: 32, reference, ..Default::default() };
        let logs = rec.fit(&split, &fit, |_| {}).unwrap();
        (rec.model.get_weights(), logs.iter().map(|l| l.loss).collect::<Vec<f64>>())
    };
    let ((fused, lf), (tape, lt)) = (weights(false), weights(true));
    for (a, b) in lf.iter().zip(&lt) {
        assert!((a - b).abs() < 1e-5, "losses {lf:?} vs {lt:?}");
    }
    let mut worst = 0.0f32;
    for (a, b) in fused.iter().flatten().zip(tape.iter().flatten()) {
        worst = worst.max((a - b).abs());
    }
    assert!(worst < 1e-4, "largest weight difference {worst}");
    // And both trained: far from where they started.
    let start = Recommender::new(c.clone(), &data, &split, 1).unwrap().model.get_weights();
    let moved = start.iter().flatten().zip(fused.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(moved > 0.01, "the weights moved only {moved}");
}

#[test]
fn ncf_learns_a_planted_taste_and_reloads_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let (rec, split, data) = trained(RecommenderKind::Ncf, tmp.path(), 0);
    check_taste(&rec, &split, &data);
    let path = tmp.path().join("ncf.safetensors");
    rec.save(&path).unwrap();
    let back = Recommender::load(&path).unwrap();
    assert_eq!(back.recommend("u8", 4).unwrap(), rec.recommend("u8", 4).unwrap());
    let r = rec.evaluate(&split.test, Protocol::Full, 5).unwrap();
    assert_eq!(back.evaluate(&split.test, Protocol::Full, 5).unwrap(), r);
}

#[test]
fn two_tower_learns_places_new_users_by_features_and_reloads_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let (rec, split, data) = trained(RecommenderKind::TwoTower, tmp.path(), 4);
    check_taste(&rec, &split, &data);
    // A new user of group b gets group b's items, from features alone.
    let feats = [("group".to_string(), "b".to_string()), ("age".to_string(), "30".to_string())];
    let list = rec.recommend_new_user(&feats, 5).unwrap();
    let of_b = list.iter().filter(|(i, _)| i[1..].parse::<usize>().unwrap() >= 15).count();
    assert!(of_b >= 4, "{list:?}");
    let path = tmp.path().join("tt.safetensors");
    rec.save(&path).unwrap();
    let back = Recommender::load(&path).unwrap();
    assert_eq!(back.recommend("u5", 5).unwrap(), rec.recommend("u5", 5).unwrap());
    assert_eq!(back.recommend_new_user(&feats, 5).unwrap(), list);
    assert_eq!(back.timeline, rec.timeline);
}

#[test]
fn unknown_ids_and_features_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Interactions::read(&planted(tmp.path())).unwrap();
    let split = Split::leave_last_out(&data, false, 5, 0);
    let bpr = Recommender::new(RecommenderConfig::new(RecommenderKind::Bpr), &data, &split, 0).unwrap();
    let msg = |r: kiln::Result<Vec<(String, f32)>>| r.unwrap_err().to_string();
    assert!(msg(bpr.recommend("nobody", 3)).contains("user `nobody` is not one of the model's 60 users"));
    assert!(msg(bpr.similar_items("i99", 3)).contains("item `i99` is not one of the model's 30 items"));
    assert!(msg(bpr.recommend_new_user(&[("group".into(), "a".into())], 3)).contains("knows users only by their id"));
    let tt = Recommender::new(RecommenderConfig::new(RecommenderKind::TwoTower), &data, &split, 0).unwrap();
    let e = msg(tt.recommend_new_user(&[("grup".into(), "a".into())], 3));
    assert!(e.contains("`grup` is not a feature of this model; its features are: group, age"), "{e}");
    let e = msg(tt.recommend_new_user(&[("age".into(), "old".into())], 3));
    assert!(e.contains("feature `age` is `old`, not a number"), "{e}");
    let e = msg(tt.recommend_new_user(&[("group".into(), "c".into())], 3));
    assert!(e.contains("feature `group` = `c` is not one of the values the model knows: a, b"), "{e}");
    let e = msg(tt.recommend_new_user(&[("age".into(), "3".into()), ("age".into(), "4".into())], 3));
    assert!(e.contains("feature `age` is given twice"), "{e}");
    // Another kiln model is not a recommender.
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mnist/mnist_model.safetensors");
    if mnist.exists() {
        let e = Recommender::load(&mnist).err().unwrap().to_string();
        assert!(e.contains("not a recommender"), "{e}");
    }
}

#[test]
fn bad_interaction_files_name_the_file_row_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("i.csv");
    let read = |text: &str, ts: Option<&str>| {
        std::fs::write(&f, text).unwrap();
        let mut o = InteractionOptions::new(&f);
        o.timestamp = ts.map(String::from);
        Interactions::read(&o).unwrap_err().to_string()
    };
    let e = read("user,item\n1,2\n", None);
    assert!(e.contains("data.user") && e.contains("no column `user_id`") && e.contains("user, item"), "{e}");
    let e = read("user_id,item_id,t\n1,2,5\n1,3,soon\n", Some("t"));
    assert!(e.contains("row 3") && e.contains("timestamp `t` is `soon`"), "{e}");
    let e = read("user_id,item_id\n1,\n", None);
    assert!(e.contains("row 2") && e.contains("item_id cell is empty"), "{e}");
    std::fs::write(&f, "user_id,item_id,stars\n1,2,5\n1,3,good\n").unwrap();
    let mut o = InteractionOptions::new(&f);
    o.rating = Some("stars".into());
    let e = Interactions::read(&o).unwrap_err().to_string();
    assert!(e.contains("row 3: rating `stars` is `good`"), "{e}");
    o.item = "user_id".into();
    let e = Interactions::read(&o).unwrap_err().to_string();
    assert!(e.contains("data.item names the same column as data.user"), "{e}");
    let mut o = InteractionOptions::new(&f);
    o.min_rating = Some(4.0);
    std::fs::write(&f, "user_id,item_id\n1,2\n").unwrap();
    assert!(Interactions::read(&o).unwrap_err().to_string().contains("data.min_rating needs data.rating"));
}

#[test]
fn recommendation_configs_check_their_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = |extra: &str| {
        let p = tmp.path().join("c.toml");
        std::fs::write(&p, format!("[data]\nformat = \"interactions\"\npath = \"i.tsv\"\n{extra}")).unwrap();
        Config::from_file(&p).map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(cfg("[model]\nkind = \"bpr\"\n").is_ok());
    assert!(cfg("").unwrap_err().contains("[model] needs kind = \"bpr\", \"ncf\" or \"two_tower\""));
    assert!(cfg("target = \"x\"\n[model]\nkind = \"bpr\"\n").unwrap_err().contains("data.target is a key of tables"));
    assert!(cfg("[model]\nkind = \"bpr\"\nunits = 8\n").unwrap_err().contains("model.units does not apply"));
    assert!(cfg("[model]\nkind = \"bpr\"\nhistory = 5\n").unwrap_err().contains("model.history does not apply"));
    assert!(
        cfg("[model]\nkind = \"ncf\"\n[train]\nloss = \"mse\"\n").unwrap_err().contains("train.loss does not apply")
    );
    assert!(
        cfg("[model]\nkind = \"ncf\"\n[train]\nnegatives = 0\n").unwrap_err().contains("negatives must be at least 1")
    );
    assert!(cfg("[model]\nkind = \"mlp\"\n").unwrap_err().contains("[model] needs kind"));
    // And the other way: interaction keys on a table.
    let p = tmp.path().join("t.toml");
    std::fs::write(&p, "[data]\npath = \"t.csv\"\ntarget = \"y\"\nuser = \"u\"\n").unwrap();
    assert!(Config::from_file(&p).unwrap_err().to_string().contains("data.user is a key of interactions"));
    std::fs::write(&p, "[data]\npath = \"t.csv\"\ntarget = \"y\"\n[model]\nkind = \"bpr\"\n").unwrap();
    assert!(Config::from_file(&p).unwrap_err().to_string().contains("is a recommender"));
}

/// MovieLens-100K with BPR for a few epochs: well above popularity's HR@10 (0.40 on this split).
#[test]
fn movielens_bpr_beats_popularity() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/ml-100k");
    if !dir.join("ml-100k.inter").exists() {
        eprintln!("NOTICE: data/ml-100k is absent (run tools/fetch_models.sh); the MovieLens test was skipped");
        return;
    }
    let mut o = InteractionOptions::new(dir.join("ml-100k.inter"));
    o.timestamp = Some("timestamp".into());
    let data = Interactions::read(&o).unwrap();
    assert_eq!((data.users.len(), data.items.len(), data.len()), (943, 1682, 100_000));
    let split = Split::leave_last_out(&data, false, 99, 0);
    let mut rec = Recommender::new(RecommenderConfig::new(RecommenderKind::Bpr), &data, &split, 0).unwrap();
    rec.fit(&split, &RecommenderFit { epochs: 8, ..Default::default() }, |_| {}).unwrap();
    let r = rec.evaluate(&split.test, Protocol::Sampled, 10).unwrap();
    assert!(r.hr > 0.55, "{r}");
    assert_eq!(r.users, 943);
}
