//! Training a recommender: each batch of training positives gets its sampled negatives (never one of the
//! user's training positives), runs forward on the model's tape, and the kind's loss (`loss.rs`) hands its
//! gradient to the outputs as the surrogate Σ output ⊙ dL/doutput, whose backward is the true one. After
//! each epoch the validation items are ranked against their sampled negatives; the epoch with the best
//! NDCG@K is kept.

use super::loss::{bce_logits, bpr, softmax_candidates};
use super::ranking::{Protocol, Ranking};
use super::split::{Split, sample_negative};
use super::{Csr, Recommender, RecommenderKind};
use crate::loss::Loss;
use crate::model::CompileConfig;
use crate::optim::OptimizerConfig;
use crate::schedule::Schedule;
use kiln_core::{Error, ParamId, Result, Rng, Tensor, Var};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// How to train (the `[train]` keys of a recommendation config).
#[derive(Clone, Debug)]
pub struct RecommenderFit {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub schedule: Option<Schedule>,
    pub seed: u64,
    /// Stop after this many epochs without a better validation NDCG@K (the best epoch's weights kept).
    pub patience: Option<usize>,
    /// The K of the validation metrics.
    pub k: usize,
    /// Run BPR's step on the tape (the fused step's reference, for tests) rather than fused.
    pub reference: bool,
    /// Shuffle the training pairs each epoch (else their order, which is by user and time).
    pub shuffle: bool,
}

impl Default for RecommenderFit {
    fn default() -> Self {
        RecommenderFit {
            epochs: 20,
            batch_size: 256,
            optimizer: OptimizerConfig::default(),
            schedule: None,
            seed: 0,
            patience: None,
            k: 10,
            reference: false,
            shuffle: true,
        }
    }
}

/// One epoch: the mean training loss and the validation ranking (sampled protocol).
#[derive(Clone, Debug)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub valid: Option<Ranking>,
    pub seconds: f64,
}

/// The embedding tables and which ids index them (true: users), for the per-row L2 penalty.
fn tables(r: &Recommender) -> Vec<(ParamId, bool)> {
    r.model
        .layers()
        .iter()
        // The history table is indexed by item + 1: it is left to the optimizer alone.
        .filter(|l| l.name() != "history_items")
        .filter_map(|l| l.param("embeddings").map(|p| (p, l.name().contains("user"))))
        .collect()
}

impl Recommender {
    /// Trains on `split.train`, ranking `split.valid` after each epoch; `on_epoch` sees each epoch's log.
    /// Returns the logs; the model ends with the best validation epoch's weights (the last epoch's without
    /// validation items).
    pub fn fit(
        &mut self,
        split: &Split,
        o: &RecommenderFit,
        mut on_epoch: impl FnMut(&EpochLog),
    ) -> Result<Vec<EpochLog>> {
        if split.train.is_empty() {
            return Err(Error::Data("no training interactions".into()));
        }
        if o.batch_size == 0 || o.epochs == 0 {
            return Err(Error::Config("train.epochs and train.batch_size must be at least 1".into()));
        }
        let mut compile = CompileConfig::new(o.optimizer.clone(), Loss::BinaryCrossentropy, &[]);
        if let Some(s) = &o.schedule {
            compile = compile.schedule(s.clone());
        }
        self.model.compile_with(compile)?;
        self.model.graph_mut().seed(o.seed ^ 0xd50f);
        let positives = Csr::new(self.users.len(), split.train.iter().copied());
        let tables = tables(self);
        let mut rng = Rng::new(o.seed);
        // A user with every item in the catalogue has no negative to learn against.
        let n_items = self.items.len();
        let mut order: Vec<usize> =
            (0..split.train.len()).filter(|&r| positives.row(split.train[r].0).len() < n_items).collect();
        if order.is_empty() {
            return Err(Error::Data(
                "every user has interacted with every item: there is no negative to learn from".into(),
            ));
        }
        let mut logs: Vec<EpochLog> = Vec::new();
        // The best validation NDCG so far and its epoch's weights.
        let mut best: Option<(f64, Vec<Vec<f32>>)> = None;
        let mut since_best = 0;
        crate::train::stop_flag().store(false, Ordering::SeqCst);
        for epoch in 1..=o.epochs {
            let t0 = Instant::now();
            if o.shuffle {
                rng.shuffle(&mut order);
            }
            let (mut total, mut seen) = (0.0, 0usize);
            for batch in order.chunks(o.batch_size) {
                let pairs: Vec<(u32, u32)> = batch.iter().map(|&r| split.train[r]).collect();
                let loss = self.train_batch(&pairs, &positives, &tables, &mut rng, o.reference)?;
                if !loss.is_finite() {
                    return Err(Error::Stopped(format!(
                        "the loss became {loss} in epoch {epoch}: lower the learning rate or raise model.l2"
                    )));
                }
                total += loss * pairs.len() as f64;
                seen += pairs.len();
                if crate::train::stop_flag().load(Ordering::SeqCst) {
                    return Err(Error::Stopped(format!("stopped in epoch {epoch}")));
                }
            }
            let valid = if split.valid.is_empty() {
                None
            } else {
                Some(self.evaluate(&split.valid, Protocol::Sampled, o.k)?)
            };
            let log = EpochLog { epoch, loss: total / seen.max(1) as f64, valid, seconds: t0.elapsed().as_secs_f64() };
            on_epoch(&log);
            // A validation ranking of no user (none had a candidate) picks nothing.
            let score = log.valid.as_ref().filter(|v| v.users > 0).map(|v| v.ndcg);
            logs.push(log);
            if let Some(s) = score {
                if best.as_ref().is_none_or(|(b, _)| s > *b) {
                    best = Some((s, self.model.get_weights()));
                    since_best = 0;
                } else {
                    since_best += 1;
                    if o.patience.is_some_and(|p| since_best >= p) {
                        break;
                    }
                }
            }
        }
        if let Some((_, w)) = best {
            self.model.set_weights(&w)?;
        }
        Ok(logs)
    }

    /// One optimizer step on a batch of positive (user, item) pairs; returns the batch's loss.
    fn train_batch(
        &mut self,
        pairs: &[(u32, u32)],
        positives: &Csr,
        tables: &[(ParamId, bool)],
        rng: &mut Rng,
        reference: bool,
    ) -> Result<f64> {
        let (b, n_items, c) = (pairs.len(), self.items.len(), self.config.clone());
        let mut users: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let mut items: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        match c.kind {
            RecommenderKind::Bpr | RecommenderKind::Ncf => {
                for &(u, _) in pairs {
                    for _ in 0..c.negatives {
                        users.push(u);
                        // `fit` left out the users with every item, who have no negative.
                        items.push(sample_negative(positives, u, n_items, rng).expect("a user with a negative"));
                    }
                }
                if c.kind == RecommenderKind::Bpr && !reference {
                    return self.bpr_step(&users, &items, b, tables);
                }
                let xs = self.inputs(&users, &items, None, None, None)?;
                let per = c.negatives;
                self.step(&xs, &users, &items, tables, |outs| match c.kind {
                    RecommenderKind::Bpr => {
                        let (l, gp, gn) = bpr(&outs[0][..b], &outs[0][b..]);
                        (l, vec![[gp, gn].concat()])
                    }
                    _ => {
                        let y: Vec<f64> = (0..b * (1 + per)).map(|r| (r < b) as u8 as f64).collect();
                        let (l, g) = bce_logits(&outs[0], &y);
                        (l, vec![g])
                    }
                })
            }
            RecommenderKind::TwoTower => {
                let extra: Vec<u32> = (0..c.negatives).map(|_| rng.below(n_items) as u32).collect();
                items.extend_from_slice(&extra);
                // The extra rows only give item vectors: their user side is the unknown slot, without history.
                let unknown = self.users.len() as u32;
                users.extend(std::iter::repeat_n(unknown, extra.len()));
                // The ids the towers see: some users hidden behind the unknown slot, when features can stand in.
                let mut shown = users.clone();
                if self.user_features.is_some() && c.id_dropout > 0.0 {
                    for u in &mut shown[..b] {
                        if rng.uniform() < c.id_dropout {
                            *u = self.users.len() as u32;
                        }
                    }
                }
                // Each positive's history: the user's items before it (the extra rows' are unused).
                let mut hist = Vec::with_capacity(users.len() * c.history);
                // A row whose id is hidden stands for a new user: no history either.
                if c.history > 0 {
                    for (r, (&u, &i)) in users.iter().zip(&items).enumerate() {
                        let at = hist.len();
                        self.history_of(u, Some(i), &mut hist);
                        if shown[r] == unknown {
                            hist[at..].iter_mut().for_each(|h| *h = 0.0);
                        }
                    }
                }
                // Hidden ids keep their user's features; the extra rows' (the unknown slot's) are zeros.
                let xs = self.inputs(&shown, &items, None, Some(&hist), Some(&users))?;
                let total: f64 = self.popularity.iter().map(|&p| p as f64).sum::<f64>().max(1.0);
                let pop = &self.popularity;
                let correction: Vec<f64> = items
                    .iter()
                    .enumerate()
                    .map(|(r, &i)| {
                        if r < b {
                            (b as f64 * (pop[i as usize].max(1) as f64) / total).ln()
                        } else {
                            (extra.len() as f64 / n_items as f64).ln()
                        }
                    })
                    .collect();
                let (d, rows) = (c.dim, users.len());
                let (us, its) = (users.clone(), items.clone());
                self.step(&xs, &shown[..b], &items, tables, move |outs| {
                    let masked = |q: usize, k: usize| its[k] == its[q] || positives.contains(us[q], its[k]);
                    let (l, du, dv) = softmax_candidates(&outs[0][..b * d], &outs[1], d, &correction, masked);
                    let mut gu = du;
                    gu.resize(rows * d, 0.0);
                    (l, vec![gu, dv])
                })
            }
        }
    }

    /// Forward on the model's tape, the loss and its output gradients from `loss`, backward through the
    /// surrogate, the per-row L2 penalty on the tables' rows `users`/`items` use, and the optimizer step.
    fn step(
        &mut self,
        xs: &[Tensor],
        users: &[u32],
        items: &[u32],
        tables: &[(ParamId, bool)],
        loss: impl FnOnce(&[Vec<f64>]) -> (f64, Vec<Vec<f64>>),
    ) -> Result<f64> {
        let m = &mut self.model;
        let g = &mut m.graph;
        g.reset();
        g.set_recording(true);
        let flows = &mut m.scratch.flows;
        flows.outs.clear();
        for t in xs {
            let v = g.tensor(t)?;
            flows.outs.push((v, None));
        }
        m.net.forward(g, flows, true, &[])?;
        let outs: Vec<Var> = (0..m.net.outputs.len()).map(|k| m.net.output(flows, k)).collect();
        let values: Vec<Vec<f64>> = outs.iter().map(|&o| g.value(o).iter().map(|&x| x as f64).collect()).collect();
        let (value, grads) = loss(&values);
        let mut total: Option<Var> = None;
        for (&o, grad) in outs.iter().zip(&grads) {
            let dims = g.shape(o).dims().to_vec();
            let gv: Vec<f32> = grad.iter().map(|&x| x as f32).collect();
            let c = g.input(&dims, &gv)?;
            let p = g.mul(o, c)?;
            let s = g.sum(p, None, false)?;
            total = Some(match total {
                None => s,
                Some(t) => g.add(t, s)?,
            });
        }
        g.backward(total.expect("a model has outputs"))?;
        self.apply(users, items, tables);
        Ok(value)
    }

    /// BPR's step without the tape, for speed: the scores p_u·q_i + b_i of the batch's rows, the same loss
    /// and output gradients (`bpr`), and by hand their way into the tables: dP_u += g·q_i, dQ_i += g·p_u,
    /// db_i += g. The tape's step (`step`, `RecommenderFit::reference`) is the tested reference.
    fn bpr_step(&mut self, users: &[u32], items: &[u32], b: usize, tables: &[(ParamId, bool)]) -> Result<f64> {
        let (pu, qi, bi) = (self.table("user_factors").0, self.table("item_factors").0, self.table("item_bias").0);
        let d = self.config.dim;
        let g = &mut self.model.graph;
        let (params, grads) = g.params_and_grads_mut();
        let (p, q, bias) = (&params[pu].value, &params[qi].value, &params[bi].value);
        let dot = |u: u32, i: u32| -> f32 {
            let (a, c) = (&p[u as usize * d..(u as usize + 1) * d], &q[i as usize * d..(i as usize + 1) * d]);
            a.iter().zip(c).map(|(x, y)| x * y).sum::<f32>() + bias[i as usize]
        };
        let s: Vec<f64> = users.iter().zip(items).map(|(&u, &i)| dot(u, i) as f64).collect();
        let (value, gp, gn) = bpr(&s[..b], &s[b..]);
        for (r, (&u, &i)) in users.iter().zip(items).enumerate() {
            let gr = if r < b { gp[r] } else { gn[r - b] } as f32;
            let (ru, ri) = (u as usize * d..(u as usize + 1) * d, i as usize * d..(i as usize + 1) * d);
            grads[pu][ru.clone()].iter_mut().zip(&q[ri.clone()]).for_each(|(g, x)| *g += gr * x);
            grads[qi][ri].iter_mut().zip(&p[ru]).for_each(|(g, x)| *g += gr * x);
            grads[bi][i as usize] += gr;
        }
        self.apply(users, items, tables);
        Ok(value)
    }

    /// After the gradients: the per-row L2 penalty on the rows `users`/`items` used, the schedule's learning
    /// rate, the optimizer step, and the gradients back to zero.
    fn apply(&mut self, users: &[u32], items: &[u32], tables: &[(ParamId, bool)]) {
        let l2 = self.config.l2;
        let m = &mut self.model;
        let (config, opt) = m.compiled.as_mut().expect("compiled by fit");
        let g = &mut m.graph;
        let (params, grad) = g.params_and_grads_mut();
        if l2 > 0.0 {
            let scale = l2 / users.len().max(1) as f32;
            for &(p, user_side) in tables {
                let w = params[p.0].shape.dims()[1];
                let (value, gr) = (&params[p.0].value, &mut grad[p.0]);
                for &id in if user_side { users } else { items } {
                    let r = id as usize * w..(id as usize + 1) * w;
                    gr[r.clone()].iter_mut().zip(&value[r]).for_each(|(g, v)| *g += 2.0 * scale * v);
                }
            }
        }
        if let Some(s) = &config.schedule {
            opt.config.set_learning_rate(s.at(config.optimizer.learning_rate(), opt.iterations()));
        }
        opt.step(params, grad);
        g.zero_grads();
    }
}
