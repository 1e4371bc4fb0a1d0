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
            let held = match mine.len() {
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

    /// Writes train.tsv (user, item), valid.tsv and test.tsv (user, item, negatives space-separated) into
    /// `dir`, with the file's ids.
    pub fn write(&self, dir: &Path, users: &IdMap, items: &IdMap) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, &e))?;
        let mut s = String::from("user\titem\n");
        for &(u, i) in &self.train {
            let _ = writeln!(s, "{}\t{}", users.id(u), items.id(i));
        }
        crate::io::write_atomic(&dir.join(TRAIN), s.as_bytes())?;
        for (name, held) in [(VALID, &self.valid), (TEST, &self.test)] {
            let mut s = String::from("user\titem\tnegatives\n");
            for h in held {
                let negs: Vec<&str> = h.negatives.iter().map(|&i| items.id(i)).collect();
                let _ = writeln!(s, "{}\t{}\t{}", users.id(h.user), items.id(h.item), negs.join(" "));
            }
            crate::io::write_atomic(&dir.join(name), s.as_bytes())?;
        }
        Ok(())
    }

    /// Reads what `write` wrote, through the model's id maps (an id the model lacks is an error naming the
    /// file and line).
    pub fn read(dir: &Path, users: &IdMap, items: &IdMap) -> Result<Split> {
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
            for (n, line) in t.lines().enumerate().skip(1) {
                let f: Vec<&str> = line.split('\t').collect();
                let [u, i, negs] = f[..] else {
                    return Err(Error::format(&p, format!("line {}: expected `user<TAB>item<TAB>negatives`", n + 1)));
                };
                let negatives =
                    negs.split_whitespace().map(|v| id(items, v, "item", &p, n + 1)).collect::<Result<Vec<_>>>()?;
                held.push(HeldOut {
                    user: id(users, u, "user", &p, n + 1)?,
                    item: id(items, i, "item", &p, n + 1)?,
                    negatives,
                });
            }
        }
        Ok(split)
    }
}

/// A seed offset, so the split's draws differ from the weights' and the batches'.
const SPLIT_SEED: u64 = 0x5b11_7ca7;

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
