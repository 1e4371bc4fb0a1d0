//! Recommendation from implicit feedback: learn from what users did, rank what they will want next.
//!
//! Three models, each a kiln graph model with the inputs `user` and `item` (indices) and, for the two-tower
//! model, `user_features` and `item_features` from the side tables:
//! - `bpr`: matrix factorization, score = p_u·q_i + b_i, trained with BPR's pairwise loss (Rendle et al.
//!   2009) on one sampled negative per positive;
//! - `ncf`: NeuMF (He et al. 2017), a GMF branch (p_u ⊙ q_i) beside an MLP over [p'_u, q'_i], joined by a
//!   Dense(1) logit, trained pointwise with binary cross-entropy on 4 sampled negatives per positive;
//! - `two_tower`: a user tower (id embedding and features, Dense layers) and an item tower, score = their
//!   dot product, trained with a softmax over the batch's items (and `negatives` shared sampled items), with
//!   the log-frequency correction of Yi et al. 2019. A share of training rows (`id_dropout`) hides the user's
//!   id, so the tower learns to place a new user from features alone (cold start).
//!
//! Negative samplers never return one of the user's training positives; the two-tower softmax masks them.
//! Every id table has one row more than the ids seen: the slot of an unknown id.

pub mod data;
pub mod loss;
pub mod ranking;
pub mod split;
mod store;
mod train;

pub use data::{Csr, FeatureEncoder, IdMap, InteractionOptions, Interactions};
pub use ranking::{Protocol, Ranking};
pub use split::{HeldOut, Split};
pub use store::is_recommender;
pub use train::{EpochLog, RecommenderFit};

use crate::model::Model;
use crate::nn::{Activation, Concatenate, Dense, Dot, Dropout, Embedding, Flatten, GlobalAveragePooling1D, Multiply};
use kiln_core::{Error, Result, Tensor};
use ranking::{RankingSums, rank_of, top_k};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecommenderKind {
    Bpr,
    Ncf,
    TwoTower,
}

impl RecommenderKind {
    pub fn name(self) -> &'static str {
        match self {
            RecommenderKind::Bpr => "bpr",
            RecommenderKind::Ncf => "ncf",
            RecommenderKind::TwoTower => "two_tower",
        }
    }
}

/// The model's shape and how it trains (the `[model]` and `[train]` keys of a recommendation config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommenderConfig {
    pub kind: RecommenderKind,
    /// Factors (bpr), the GMF and MLP embedding width (ncf), the towers' output width (two_tower).
    pub dim: usize,
    /// The MLP's (ncf) or each tower's (two_tower) hidden Dense widths, ReLU.
    pub hidden: Vec<usize>,
    /// Dropout after each hidden layer.
    pub dropout: f64,
    /// L2 penalty on the embedding rows a batch uses, per use (BPR's regularization).
    pub l2: f32,
    /// Sampled negatives per positive (bpr, ncf), or shared sampled items added to the batch's (two_tower).
    pub negatives: usize,
    /// two_tower with user features: the share of training rows whose user id is hidden.
    pub id_dropout: f64,
    /// two_tower: the user tower also reads the user's last `history` items before the one scored (their
    /// embeddings averaged), as YouTube's two towers read the watch history; 0 leaves it out.
    #[serde(default)]
    pub history: usize,
}

impl RecommenderConfig {
    /// The defaults of a kind: BPR with 64 factors and one negative; NeuMF with 32-wide embeddings, an MLP
    /// of 64, 32, 16 and four negatives; two towers of 64 → 64 outputs, in-batch negatives only.
    pub fn new(kind: RecommenderKind) -> Self {
        let (dim, hidden, negatives) = match kind {
            RecommenderKind::Bpr => (64, vec![], 1),
            RecommenderKind::Ncf => (32, vec![64, 32, 16], 4),
            RecommenderKind::TwoTower => (64, vec![128], 0),
        };
        RecommenderConfig { kind, dim, hidden, dropout: 0.0, l2: 0.0, negatives, id_dropout: 0.1, history: 0 }
    }

    pub fn check(&self) -> Result<()> {
        if self.dim == 0 || self.hidden.contains(&0) {
            return Err(Error::Config("model.dim and model.hidden must be at least 1".into()));
        }
        if self.history > 0 && self.kind != RecommenderKind::TwoTower {
            return Err(Error::Config(format!(
                "model.history is the two-tower user tower's input; kind = \"{}\" does not read it",
                self.kind.name()
            )));
        }
        if self.negatives == 0 && self.kind != RecommenderKind::TwoTower {
            return Err(Error::Config(format!(
                "train.negatives must be at least 1 for kind = \"{}\" (it learns from positives against negatives)",
                self.kind.name()
            )));
        }
        for (key, v) in [("model.dropout", self.dropout), ("model.id_dropout", self.id_dropout)] {
            if !(0.0..1.0).contains(&v) {
                return Err(Error::Config(format!("{key} must be in [0, 1), got {v}")));
            }
        }
        if !(self.l2 >= 0.0 && self.l2.is_finite()) {
            return Err(Error::Config(format!("model.l2 must be a number >= 0, got {}", self.l2)));
        }
        Ok(())
    }
}

/// A trained (or untrained) recommender: the network and what maps the file's ids and features onto it.
pub struct Recommender {
    pub model: Model,
    pub config: RecommenderConfig,
    pub users: IdMap,
    pub items: IdMap,
    /// How a side-table row becomes features, and the known users' (items') rows, one more for unknown.
    pub user_features: Option<(FeatureEncoder, Vec<f32>)>,
    pub item_features: Option<(FeatureEncoder, Vec<f32>)>,
    /// Every item each user interacted with (left out of their recommendations), as a set...
    pub seen: Csr,
    /// ...and in time order (the two-tower model's history).
    pub timeline: Vec<Vec<u32>>,
    /// Each item's training interactions (the two-tower softmax's correction).
    pub popularity: Vec<u32>,
}

/// Rows scored per forward pass.
const CHUNK: usize = 16384;

impl Recommender {
    /// An untrained recommender for the users, items and features of `d`, with `seen` from the split.
    pub fn new(config: RecommenderConfig, d: &Interactions, split: &Split, seed: u64) -> Result<Recommender> {
        config.check()?;
        // Ids reach the embeddings as f32, exact below 2^24.
        if d.users.len().max(d.items.len()) >= 1 << 24 {
            return Err(Error::Data(format!(
                "{} users and {} items: kiln's recommenders take fewer than 16,777,216 of each",
                d.users.len(),
                d.items.len()
            )));
        }
        let two = config.kind == RecommenderKind::TwoTower;
        let features =
            |f: &Option<data::SideFeatures>| f.as_ref().filter(|_| two).map(|f| (f.encoder.clone(), f.rows.clone()));
        let (uf, itf) = (features(&d.user_features), features(&d.item_features));
        let mut popularity = vec![0; d.items.len()];
        split.train.iter().for_each(|&(_, i)| popularity[i as usize] += 1);
        let model = build(&config, d.users.len(), d.items.len(), width(&uf), width(&itf), seed)?;
        let timeline = split.timelines(d.users.len());
        Ok(Recommender {
            model,
            config,
            users: d.users.clone(),
            items: d.items.clone(),
            user_features: uf,
            item_features: itf,
            seen: split.all_items(d.users.len()),
            timeline,
            popularity,
        })
    }

    /// The user's last `history` items before `before` (or their last ones), as the history input's ids
    /// (item index + 1; 0 pads the front). An item the user never had gives no history, never a later one.
    pub fn history_of(&self, u: u32, before: Option<u32>, out: &mut Vec<f32>) {
        let n = self.config.history;
        let t = match before {
            Some(b) => self.before(u, b).unwrap_or(&[]),
            None => self.timeline.get(u as usize).map_or(&[][..], |t| &t[..]),
        };
        let from = t.len().saturating_sub(n);
        out.extend(std::iter::repeat_n(0.0, n - (t.len() - from)));
        out.extend(t[from..].iter().map(|&i| (i + 1) as f32));
    }

    /// The user's items before `item`, in time order (None: the user never had it).
    fn before(&self, u: u32, item: u32) -> Option<&[u32]> {
        let t = self.timeline.get(u as usize)?;
        t.iter().position(|&i| i == item).map(|at| &t[..at])
    }

    /// The parameter of the embedding layer `layer`, which the kind's network was built with.
    pub(crate) fn table(&self, layer: &str) -> kiln_core::ParamId {
        let l = self.model.layers().iter().find(|l| l.name() == layer).expect("built with it");
        l.param("embeddings").expect("an embedding")
    }

    /// The model's inputs for (user, item) index pairs (index `len` is the unknown slot); `user_rows`
    /// replaces the users' feature rows (a new user's); `history` gives each row's history ids (else each
    /// user's latest items); `featured` names whose feature rows to read when not the ids' own (training
    /// rows whose id is hidden keep their features).
    pub(crate) fn inputs(
        &self,
        users: &[u32],
        items: &[u32],
        user_rows: Option<&[f32]>,
        history: Option<&[f32]>,
        featured: Option<&[u32]>,
    ) -> Result<Vec<Tensor>> {
        let n = users.len();
        let ids = |v: &[u32]| Tensor::new(&[n, 1], v.iter().map(|&x| x as f32).collect());
        let mut xs = vec![ids(users)?, ids(items)?];
        let h = self.config.history;
        if h > 0 {
            let v = match history {
                Some(v) => v.to_vec(),
                None => {
                    let mut v = Vec::with_capacity(n * h);
                    for &u in users {
                        self.history_of(u, None, &mut v);
                    }
                    v
                }
            };
            xs.push(Tensor::new(&[n, h], v)?);
        }
        let gather =
            |f: &Option<(FeatureEncoder, Vec<f32>)>, idx: &[u32], own: Option<&[f32]>| -> Result<Option<Tensor>> {
                let Some((enc, rows)) = f else { return Ok(None) };
                let w = enc.width();
                if w == 0 {
                    return Ok(None);
                }
                let mut out = Vec::with_capacity(n * w);
                for &i in idx {
                    match own {
                        Some(r) => out.extend_from_slice(r),
                        None => out.extend_from_slice(&rows[i as usize * w..(i as usize + 1) * w]),
                    }
                }
                Ok(Some(Tensor::new(&[n, w], out)?))
            };
        xs.extend(gather(&self.user_features, featured.unwrap_or(users), user_rows)?);
        xs.extend(gather(&self.item_features, items, None)?);
        Ok(xs)
    }

    /// Scores of (user, item) index pairs: higher is more likely wanted. A two-tower model with a history reads
    /// each user's latest items, all of them: to rank a held-out item, `evaluate` cuts the history before it.
    pub fn score_pairs(&self, users: &[u32], items: &[u32]) -> Result<Vec<f32>> {
        self.score_with(users, items, None, None)
    }

    fn score_with(
        &self,
        users: &[u32],
        items: &[u32],
        user_rows: Option<&[f32]>,
        history: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(users.len());
        let h = self.config.history;
        for (k, (u, i)) in users.chunks(CHUNK).zip(items.chunks(CHUNK)).enumerate() {
            let hist = history.map(|v| &v[k * CHUNK * h..(k * CHUNK + u.len()) * h]);
            let xs = self.inputs(u, i, user_rows, hist, None)?;
            let refs: Vec<&Tensor> = xs.iter().collect();
            let ys = self.model.predict_outputs(&refs[..], CHUNK)?;
            match self.config.kind {
                RecommenderKind::TwoTower => {
                    let d = self.config.dim;
                    let (a, b) = (ys[0].data(), ys[1].data());
                    out.extend((0..u.len()).map(|r| dot(&a[r * d..(r + 1) * d], &b[r * d..(r + 1) * d])));
                }
                _ => out.extend_from_slice(ys[0].data()),
            }
        }
        Ok(out)
    }

    fn user_index(&self, user: &str) -> Result<u32> {
        self.users.get(user).ok_or_else(|| {
            let new = if self.config.kind == RecommenderKind::TwoTower && self.user_features.is_some() {
                "describe a new user by their features instead"
            } else {
                "a model of kind two_tower with user features can take a new user described by features"
            };
            Error::Invalid(format!("user `{user}` is not one of the model's {} users; {new}", self.users.len()))
        })
    }

    fn item_index(&self, item: &str) -> Result<u32> {
        self.items.get(item).ok_or_else(|| {
            Error::Invalid(format!("item `{item}` is not one of the model's {} items", self.items.len()))
        })
    }

    /// The `k` items the user is most likely to want next, best first, leaving out what they already did.
    pub fn recommend(&self, user: &str, k: usize) -> Result<Vec<(String, f32)>> {
        let u = self.user_index(user)?;
        self.best_items(u, None, self.seen.row(u), k)
    }

    /// Recommendations for a user the model has not seen, described by side-table values (two_tower).
    pub fn recommend_new_user(&self, features: &[(String, String)], k: usize) -> Result<Vec<(String, f32)>> {
        let Some((enc, _)) = self.user_features.as_ref().filter(|_| self.config.kind == RecommenderKind::TwoTower)
        else {
            return Err(Error::Invalid(format!(
                "this model (kind {}) knows users only by their id; recommending for a new user described by \
                 features takes kind = \"two_tower\" trained with data.users",
                self.config.kind.name()
            )));
        };
        let row = enc.encode(features)?;
        self.best_items(self.users.len() as u32, Some(&row), &[], k)
    }

    fn best_items(&self, u: u32, row: Option<&[f32]>, skip: &[u32], k: usize) -> Result<Vec<(String, f32)>> {
        let items: Vec<u32> = (0..self.items.len() as u32).filter(|i| skip.binary_search(i).is_err()).collect();
        let scores = self.score_with(&vec![u; items.len()], &items, row, None)?;
        Ok(top_k(&scores, k).into_iter().map(|j| (self.items.id(items[j]).to_string(), scores[j])).collect())
    }

    /// Each item's vector (bpr: its factors; ncf: its GMF and MLP embeddings; two_tower: the item tower's
    /// output), row-major.
    pub fn item_vectors(&self) -> Result<(Vec<f32>, usize)> {
        let n = self.items.len();
        let table = |layer: &str| -> Result<(Vec<f32>, usize)> {
            let p = self.model.graph().param(self.table(layer));
            let w = p.shape.dims()[1];
            Ok((p.value[..n * w].to_vec(), w))
        };
        match self.config.kind {
            RecommenderKind::Bpr => table("item_factors"),
            RecommenderKind::Ncf => {
                let ((a, wa), (b, wb)) = (table("gmf_item")?, table("mlp_item")?);
                let mut v = Vec::with_capacity(n * (wa + wb));
                for i in 0..n {
                    v.extend_from_slice(&a[i * wa..(i + 1) * wa]);
                    v.extend_from_slice(&b[i * wb..(i + 1) * wb]);
                }
                Ok((v, wa + wb))
            }
            RecommenderKind::TwoTower => {
                let items: Vec<u32> = (0..n as u32).collect();
                let xs = self.inputs(&vec![self.users.len() as u32; n], &items, None, None, None)?;
                let refs: Vec<&Tensor> = xs.iter().collect();
                let ys = self.model.predict_outputs(&refs[..], CHUNK)?;
                Ok((ys[1].data().to_vec(), self.config.dim))
            }
        }
    }

    /// The `k` items whose vectors are closest to the item's by cosine, best first.
    pub fn similar_items(&self, item: &str, k: usize) -> Result<Vec<(String, f32)>> {
        let i = self.item_index(item)? as usize;
        let (v, w) = self.item_vectors()?;
        let norm = |r: &[f32]| dot(r, r).sqrt().max(1e-12);
        let q = &v[i * w..(i + 1) * w];
        let qn = norm(q);
        let mut cos: Vec<f32> = v.chunks_exact(w).map(|r| dot(q, r) / (qn * norm(r))).collect();
        cos[i] = f32::NEG_INFINITY;
        let top = top_k(&cos, k.min(self.items.len() - 1));
        Ok(top.into_iter().map(|j| (self.items.id(j as u32).to_string(), cos[j])).collect())
    }

    /// Ranks each held-out item (see `ranking`): among its sampled negatives, or among every item the
    /// user has not interacted with.
    pub fn evaluate(&self, held: &[HeldOut], protocol: Protocol, k: usize) -> Result<Ranking> {
        let mut sums = RankingSums::new(protocol, k, self.items.len());
        let n_items = self.items.len() as u32;
        // Users a chunk at a time, so a full ranking of a large catalogue stays in memory.
        let per = match protocol {
            Protocol::Sampled => held.first().map_or(1, |h| h.negatives.len() + 1),
            Protocol::Full => n_items as usize,
        };
        for group in held.chunks((CHUNK * 4 / per.max(1)).max(1)) {
            let (mut users, mut items, mut spans, mut hist) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut one = Vec::new();
            for h in group {
                let start = items.len();
                one.clear();
                self.history_of(h.user, Some(h.item), &mut one);
                items.push(h.item);
                match protocol {
                    Protocol::Sampled => items.extend_from_slice(&h.negatives),
                    Protocol::Full => {
                        // Every item but those the user had before this one (a later one, such as the test
                        // item when ranking the validation item, is a candidate as the user had not yet had it).
                        let mut before: Vec<u32> =
                            self.before(h.user, h.item).unwrap_or_else(|| self.seen.row(h.user)).to_vec();
                        before.sort_unstable();
                        items.extend((0..n_items).filter(|&i| i != h.item && before.binary_search(&i).is_err()));
                    }
                }
                users.resize(items.len(), h.user);
                for _ in start..items.len() {
                    hist.extend_from_slice(&one);
                }
                spans.push(start..items.len());
            }
            let scores = self.score_with(&users, &items, None, Some(&hist))?;
            for span in spans {
                // A user with no other candidate has nothing to be ranked against: not counted.
                if span.len() < 2 {
                    continue;
                }
                let (s, c) = (&scores[span.clone()], &items[span]);
                let top: Vec<u32> = top_k(s, k).into_iter().map(|j| c[j]).collect();
                sums.add(rank_of(s[0], &s[1..]), &top);
            }
        }
        Ok(sums.finish())
    }
}

fn width(f: &Option<(FeatureEncoder, Vec<f32>)>) -> usize {
    f.as_ref().map_or(0, |(e, _)| e.width())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The network of a kind for `users` and `items` ids (each table one row longer: the unknown slot), with
/// feature inputs of the given widths (two_tower; 0 leaves the input out).
fn build(c: &RecommenderConfig, users: usize, items: usize, uw: usize, iw: usize, seed: u64) -> Result<Model> {
    let mut inputs: Vec<(&str, Vec<usize>)> = vec![("user", vec![1]), ("item", vec![1])];
    if c.history > 0 {
        inputs.push(("history", vec![c.history]));
    }
    if uw > 0 {
        inputs.push(("user_features", vec![uw]));
    }
    if iw > 0 {
        inputs.push(("item_features", vec![iw]));
    }
    let named: Vec<(&str, &[usize])> = inputs.iter().map(|(n, s)| (*n, &s[..])).collect();
    let mut m = Model::with_inputs(&named).seed(seed).named(c.kind.name());
    let (nu, ni, d) = (users + 1, items + 1, c.dim);
    let embed = |m: &mut Model, name: &str, from: &str, rows: usize, w: usize| -> Result<String> {
        let e = m.apply(Embedding::new(rows, w).name(name), &[from])?;
        m.apply(Flatten::new().name(&format!("{name}_flat")), &[&e])
    };
    let dense_stack = |m: &mut Model, mut x: String, prefix: &str| -> Result<String> {
        for (j, &h) in c.hidden.iter().enumerate() {
            x = m.apply(Dense::new(h).activation(Activation::Relu).name(&format!("{prefix}_dense{}", j + 1)), &[&x])?;
            if c.dropout > 0.0 {
                x = m.apply(Dropout::new(c.dropout).name(&format!("{prefix}_dropout{}", j + 1)), &[&x])?;
            }
        }
        Ok(x)
    };
    match c.kind {
        RecommenderKind::Bpr => {
            let p = embed(&mut m, "user_factors", "user", nu, d)?;
            let q = embed(&mut m, "item_factors", "item", ni, d)?;
            let b = embed(&mut m, "item_bias", "item", ni, 1)?;
            let s = m.apply(Dot::new().name("interaction"), &[&p, &q])?;
            m.apply(crate::nn::Add::new().name("score"), &[&s, &b])?;
        }
        RecommenderKind::Ncf => {
            let (gu, gi) = (embed(&mut m, "gmf_user", "user", nu, d)?, embed(&mut m, "gmf_item", "item", ni, d)?);
            let gmf = m.apply(Multiply::new().name("gmf"), &[&gu, &gi])?;
            let (mu, mi) = (embed(&mut m, "mlp_user", "user", nu, d)?, embed(&mut m, "mlp_item", "item", ni, d)?);
            let x = m.apply(Concatenate::new().name("mlp_in"), &[&mu, &mi])?;
            let x = dense_stack(&mut m, x, "mlp")?;
            let joined = m.apply(Concatenate::new().name("neumf"), &[&gmf, &x])?;
            m.apply(Dense::new(1).name("score"), &[&joined])?;
        }
        RecommenderKind::TwoTower => {
            let tower = |m: &mut Model, side: &str, rows: usize, fw: usize| -> Result<String> {
                let mut parts = vec![embed(m, &format!("{side}_id"), side, rows, d)?];
                if side == "user" && c.history > 0 {
                    let e =
                        m.apply(Embedding::new(items + 1, d).mask_zero(true).name("history_items"), &["history"])?;
                    parts.push(m.apply(GlobalAveragePooling1D::new().name("history_mean"), &[&e])?);
                }
                if fw > 0 {
                    parts.push(format!("{side}_features"));
                }
                let mut x = parts[0].clone();
                if parts.len() > 1 {
                    let from: Vec<&str> = parts.iter().map(String::as_str).collect();
                    x = m.apply(Concatenate::new().name(&format!("{side}_in")), &from)?;
                }
                let x = dense_stack(m, x, side)?;
                m.apply(Dense::new(d).name(&format!("{side}_vector")), &[&x])
            };
            let u = tower(&mut m, "user", nu, uw)?;
            let i = tower(&mut m, "item", ni, iw)?;
            m.set_outputs(&[&u, &i])?;
        }
    }
    Ok(m)
}
