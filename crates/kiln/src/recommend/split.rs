//! Leave-last-out, as the NCF paper evaluates: each user's latest interaction is the test item (equal
//! timestamps: the row later in the file is the later one), the one before it the validation item (users
//! with three or more), the rest train. Each held-out item gets `negatives` items the user never
//! interacted with, drawn uniformly without replacement with the run's seed (the sampled protocol's
//! candidates). The split is written to the run folder as TSV with the file's ids, so that baselines score
//! exactly the same candidates.

use super::data::{Csr, IdMap, Interactions};
use kiln_core::{Error, Result, Rng};
use std::fmt::Write as _;
use std::path::Path;

/// One user's held-out item and its sampled negatives.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldOut {
    pub user: u32,
    pub item: u32,
    pub negatives: Vec<u32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    /// (user, item) pairs trained on.
    pub train: Vec<(u32, u32)>,
    pub valid: Vec<HeldOut>,
    pub test: Vec<HeldOut>,
}

pub const TRAIN: &str = "train.tsv";
pub const VALID: &str = "valid.tsv";
pub const TEST: &str = "test.tsv";

impl Split {
    /// Leave-last-out of `d` (see the header); `validation` holds out the second-latest too.
    pub fn leave_last_out(d: &Interactions, validation: bool, negatives: usize, seed: u64) -> Split {
        let mut rows: Vec<usize> = (0..d.len()).collect();
        rows.sort_by(|&a, &b| {
            d.user[a].cmp(&d.user[b]).then(d.time[a].total_cmp(&d.time[b])).then(d.row[a].cmp(&d.row[b]))
        });
        let all = d.by_user(0..d.len());
        let mut rng = Rng::new(seed ^ SPLIT_SEED);
        let mut split = Split::default();
        let n_items = d.items.len();
        let mut start = 0;
        while start < rows.len() {
            let u = d.user[rows[start]];
            let end = start + rows[start..].iter().take_while(|&&r| d.user[r] == u).count();
            let mine = &rows[start..end];
            // A user with every item has no candidate to rank the held-out one against: all train.
            let held = match mine.len() {
                n if n >= n_items => 0,
                1 => 0,
                2 => 1,
                _ => 1 + validation as usize,
            };
            let (keep, out) = mine.split_at(mine.len() - held);
            split.train.extend(keep.iter().map(|&r| (u, d.item[r])));
            let hold = |r: usize, rng: &mut Rng| HeldOut {
                user: u,
                item: d.item[r],
                negatives: sample_unseen(&all, u, n_items, negatives, rng),
            };
            match out {
                [t] => split.test.push(hold(*t, &mut rng)),
                [v, t] => {
                    split.valid.push(hold(*v, &mut rng));
                    split.test.push(hold(*t, &mut rng));
                }
                _ => {}
            }
            start = end;
        }
        split
    }

    /// Every item each user interacted with, train and held out (what the sampled negatives avoid).
    pub fn all_items(&self, users: usize) -> Csr {
        let held = self.valid.iter().chain(&self.test).map(|h| (h.user, h.item));
        Csr::new(users, self.train.iter().copied().chain(held))
    }

    /// Each user's items in time order: the training pairs (which `leave_last_out` lists in time order per
    /// user), then the validation item, then the test item.
    pub fn timelines(&self, users: usize) -> Vec<Vec<u32>> {
        let mut t = vec![Vec::new(); users];
        let held = self.valid.iter().chain(&self.test).map(|h| (h.user, h.item));
        for (u, i) in self.train.iter().copied().chain(held) {
            t[u as usize].push(i);
        }
        t
    }

    /// Writes train.tsv (user, item), valid.tsv and test.tsv (user, item, then the negatives, a column each)
    /// into `dir`, with the file's ids (an id holding a tab or a line break cannot be written so: refused).
    pub fn write(&self, dir: &Path, users: &IdMap, items: &IdMap) -> Result<()> {
        if let Some(bad) = users.ids().iter().chain(items.ids()).find(|i| i.contains(['\t', '\n', '\r'])) {
            return Err(Error::Data(format!(
                "the id {bad:?} holds a tab or line break: the split files cannot hold it"
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, &e))?;
        let mut s = String::from("user\titem\n");
        for &(u, i) in &self.train {
            let _ = writeln!(s, "{}\t{}", users.id(u), items.id(i));
        }
        crate::io::write_atomic(&dir.join(TRAIN), s.as_bytes())?;
        for (name, held) in [(VALID, &self.valid), (TEST, &self.test)] {
            let mut s = String::from("user\titem\tnegatives\n");
            for h in held {
                let _ = write!(s, "{}\t{}", users.id(h.user), items.id(h.item));
                for &i in &h.negatives {
                    let _ = write!(s, "\t{}", items.id(i));
                }
                s.push('\n');
            }
            crate::io::write_atomic(&dir.join(name), s.as_bytes())?;
        }
        Ok(())
    }

    /// Reads what `write` wrote, through the model's id maps (an id the model lacks is an error naming the
    /// file and line).
    pub fn read(dir: &Path, users: &IdMap, items: &IdMap) -> Result<Split> {
        if !dir.is_dir() {
            return Err(Error::format(dir, "not a folder: give the run folder (or its split folder) of the model"));
        }
        let text = |name: &str| -> Result<(String, std::path::PathBuf)> {
            let p = dir.join(name);
            let t = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, &e))?;
            Ok((t, p))
        };
        let id = |map: &IdMap, v: &str, what: &str, p: &Path, line: usize| {
            map.get(v).ok_or_else(|| {
                Error::format(p, format!("line {line}: {what} `{v}` is not one the model was trained with"))
            })
        };
        let mut split = Split::default();
        let (t, p) = text(TRAIN)?;
        for (n, line) in t.lines().enumerate().skip(1) {
            let mut f = line.split('\t');
            let (Some(u), Some(i)) = (f.next(), f.next()) else {
                return Err(Error::format(&p, format!("line {}: expected `user<TAB>item`", n + 1)));
            };
            split.train.push((id(users, u, "user", &p, n + 1)?, id(items, i, "item", &p, n + 1)?));
        }
        for (name, held) in [(VALID, &mut split.valid), (TEST, &mut split.test)] {
            let (t, p) = text(name)?;
            let mut users_seen = std::collections::HashSet::new();
            for (n, line) in t.lines().enumerate().skip(1) {
                let f: Vec<&str> = line.split('\t').collect();
                let [u, i, negs @ ..] = &f[..] else {
                    return Err(Error::format(
                        &p,
                        format!("line {}: expected `user<TAB>item<TAB>negatives...`", n + 1),
                    ));
                };
                let negatives = negs.iter().map(|v| id(items, v, "item", &p, n + 1)).collect::<Result<Vec<_>>>()?;
                let h = HeldOut {
                    user: id(users, u, "user", &p, n + 1)?,
                    item: id(items, i, "item", &p, n + 1)?,
                    negatives,
                };
                if !users_seen.insert(h.user) {
                    return Err(Error::format(&p, format!("line {}: user `{u}` is held out twice", n + 1)));
                }
                if h.negatives.contains(&h.item) {
                    return Err(Error::format(&p, format!("line {}: item `{i}` is among its own negatives", n + 1)));
                }
                held.push(h);
            }
        }
        Ok(split)
    }
}

/// A seed offset, so the split's draws differ from the weights' and the batches'.
const SPLIT_SEED: u64 = 0x5b11_7ca7;

/// One item drawn uniformly from those user `u` has no interaction with in `positives` (None when the user
/// has them all): the training negative of BPR and NCF.
pub fn sample_negative(positives: &Csr, u: u32, n_items: usize, rng: &mut Rng) -> Option<u32> {
    let seen = positives.row(u);
    if seen.len() >= n_items {
        return None;
    }
    if seen.len() * 2 > n_items {
        // Mostly seen: draw among the others directly rather than retrying.
        let free: Vec<u32> = (0..n_items as u32).filter(|i| seen.binary_search(i).is_err()).collect();
        return Some(free[rng.below(free.len())]);
    }
    loop {
        let j = rng.below(n_items) as u32;
        if seen.binary_search(&j).is_err() {
            return Some(j);
        }
    }
}

/// Up to `n` distinct items that user `u` never interacted with, uniformly (fewer when fewer exist).
pub fn sample_unseen(all: &Csr, u: u32, n_items: usize, n: usize, rng: &mut Rng) -> Vec<u32> {
    let seen = all.row(u);
    let free = n_items - seen.len();
    if n.saturating_mul(2) >= free {
        let mut all: Vec<u32> = (0..n_items as u32).filter(|i| seen.binary_search(i).is_err()).collect();
        rng.shuffle(&mut all);
        all.truncate(n);
        return all;
    }
    let mut out: Vec<u32> = Vec::with_capacity(n);
    while out.len() < n {
        let i = rng.below(n_items) as u32;
        if seen.binary_search(&i).is_err() && !out.contains(&i) {
            out.push(i);
        }
    }
    out
}
