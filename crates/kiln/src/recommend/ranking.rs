//! Ranking metrics for one held-out item per user, as the literature reports them. The held-out item's rank
//! is the number of candidates scored at least as high (ties count against it, so a model that scores
//! everything alike earns nothing). HR@K: the share of users whose item ranks in the top K; NDCG@K: 1 /
//! log2(rank + 2) when it does, else 0; recall@K: the share of held-out items in the top K, which with one
//! item per user equals HR@K; MRR: 1 / (rank + 1), not cut at K; coverage: the share of the catalogue that
//! appears in some user's top K (under the sampled protocol, the top K of each user's ~100 candidates: read
//! it from the full protocol).
//!
//! Two protocols: `sampled` ranks the item among its 99 sampled negatives (NCF, He et al. 2017); `full`
//! among every item the user has not interacted with, which is harder and free of the sampling's bias
//! (Krichene and Rendle 2020).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Sampled,
    Full,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Sampled => "sampled",
            Protocol::Full => "full",
        }
    }

    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "sampled" => Some(Protocol::Sampled),
            "full" => Some(Protocol::Full),
            _ => None,
        }
    }
}

/// The metrics of one protocol at one K, averaged over users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    pub protocol: Protocol,
    pub k: usize,
    pub users: usize,
    pub hr: f64,
    pub ndcg: f64,
    pub recall: f64,
    pub mrr: f64,
    pub coverage: f64,
}

/// The held-out item's rank among `others` (0 is first); ties and a score that is not a number count
/// against it.
pub fn rank_of(item: f32, others: &[f32]) -> usize {
    if item.is_nan() {
        return others.len();
    }
    others.iter().filter(|&&s| s >= item || s.is_nan()).count()
}

/// The indices of the `k` highest scores, best first (equal scores: the lower index first).
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    let by = |a: &usize, b: &usize| key(scores[*b]).total_cmp(&key(scores[*a])).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k, by);
        idx.truncate(k);
    }
    idx.sort_unstable_by(by);
    idx
}

/// Sums users' ranks and top-K lists into the metrics.
pub struct RankingSums {
    protocol: Protocol,
    k: usize,
    users: usize,
    hits: f64,
    ndcg: f64,
    mrr: f64,
    shown: Vec<bool>,
}

impl RankingSums {
    pub fn new(protocol: Protocol, k: usize, items: usize) -> Self {
        RankingSums { protocol, k, users: 0, hits: 0.0, ndcg: 0.0, mrr: 0.0, shown: vec![false; items] }
    }

    /// One user: the held-out item's rank and the items of the user's top K.
    pub fn add(&mut self, rank: usize, top: &[u32]) {
        self.users += 1;
        if rank < self.k {
            self.hits += 1.0;
            self.ndcg += 1.0 / ((rank + 2) as f64).log2();
        }
        self.mrr += 1.0 / (rank + 1) as f64;
        for &i in top {
            self.shown[i as usize] = true;
        }
    }

    pub fn finish(self) -> Ranking {
        let n = self.users.max(1) as f64;
        let shown = self.shown.iter().filter(|s| **s).count() as f64;
        Ranking {
            protocol: self.protocol,
            k: self.k,
            users: self.users,
            hr: self.hits / n,
            ndcg: self.ndcg / n,
            recall: self.hits / n,
            mrr: self.mrr / n,
            coverage: shown / self.shown.len().max(1) as f64,
        }
    }
}

impl std::fmt::Display for Ranking {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let k = self.k;
        write!(
            f,
            "{} protocol, {} users: HR@{k} {:.4}  NDCG@{k} {:.4}  recall@{k} {:.4}  MRR {:.4}  coverage@{k} {:.4}",
            self.protocol.name(),
            self.users,
            self.hr,
            self.ndcg,
            self.recall,
            self.mrr,
            self.coverage
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_count_ties_against_the_item() {
        assert_eq!(rank_of(0.5, &[0.1, 0.9, 0.5, 0.2]), 2);
        assert_eq!(rank_of(1.0, &[0.1, 0.2]), 0);
        assert_eq!(rank_of(0.3, &[0.3, 0.3, 0.3]), 3);
        assert_eq!(rank_of(f32::NAN, &[0.1, 0.2]), 2);
        assert_eq!(rank_of(0.3, &[f32::NAN]), 1);
    }

    #[test]
    fn top_k_is_best_first_with_stable_ties() {
        assert_eq!(top_k(&[0.1, 0.9, 0.5, 0.9, f32::NAN], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[0.2, 0.1], 5), vec![0, 1]);
    }

    #[test]
    fn metrics_match_hand_computed_rankings() {
        // Three users over 6 items, K = 2: ranks 0, 1 and 4.
        let mut s = RankingSums::new(Protocol::Sampled, 2, 6);
        s.add(0, &[3, 1]);
        s.add(1, &[1, 2]);
        s.add(4, &[1, 5]);
        let r = s.finish();
        assert_eq!(r.users, 3);
        assert!((r.hr - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.recall, r.hr);
        // NDCG: (1/log2(2) + 1/log2(3) + 0) / 3.
        assert!((r.ndcg - (1.0 + 1.0 / 3f64.log2()) / 3.0).abs() < 1e-12);
        // MRR: (1 + 1/2 + 1/5) / 3.
        assert!((r.mrr - (1.0 + 0.5 + 0.2) / 3.0).abs() < 1e-12);
        // Items 1, 2, 3 and 5 shown of 6.
        assert!((r.coverage - 4.0 / 6.0).abs() < 1e-12);
    }
}
