//! One step's gradients summed over the ranks: dense parameters in one all-reduce, and embedding tables, when
//! a step's batch leaves most of their gradient rows at zero, as the rows each rank has (an all-gather of ids
//! and values, then added in rank order).
//!
//! Why: the reviews bag's table is 50,002 x 64 (12.8 MB), and the 64 reviews of a step use about 3,600 of its
//! rows over two ranks (`kiln-bench --bin distcost` counts them on the real batches): 0.9 MB gathered against
//! a ring all-reduce that moves the 12.8 MB twice. Its cost model puts the gathered rows at 0.05-0.25x the
//! dense sum's time on 10-100 Gb/s networks.
//!
//! Which tables go as rows is decided each step from every rank's count of non-zero rows, summed with the
//! loss in the one small sum the step already made, so every rank takes the same decision.

use super::Collective;
use kiln_core::Param;
use kiln_core::Result;

/// Tables of fewer rows are always summed dense (their rows are few and dense anyway).
const MIN_ROWS: usize = 256;
/// Row ids travel as f32, exact up to 2^24.
const MAX_ROWS: usize = 1 << 24;

/// Buffers kept from step to step, so that a steady step does not allocate.
#[derive(Default)]
pub(crate) struct GradSums {
    /// Dense gradients of every rank, one after another.
    flat: Vec<f32>,
    /// The step's small sums: the caller's values, then each candidate table's non-zero rows per rank.
    small: Vec<f64>,
    /// Parameters that may go as rows (trainable matrices of MIN_ROWS..MAX_ROWS rows).
    tables: Vec<usize>,
    /// Per table, this rank's non-zero rows (found once: the scan of a large table is most of this path's
    /// own work).
    used: Vec<Vec<u32>>,
    /// Of `tables`, the positions that go as rows this step.
    as_rows: Vec<usize>,
    /// This rank's rows (per table: ids, then values) and every rank's, gathered.
    mine: Vec<f32>,
    all: Vec<f32>,
    lens: Vec<usize>,
}

/// Rows of `g` (of `cols` values each) that hold any value other than zero.
fn nonzero_rows(g: &[f32], cols: usize) -> impl Iterator<Item = usize> + '_ {
    g.chunks(cols).enumerate().filter(|(_, row)| row.iter().any(|&v| v != 0.0)).map(|(i, _)| i)
}

impl GradSums {
    /// Sums `weight` x each trainable gradient over the ranks, in place, and `small` with them.
    pub(crate) fn sum(
        &mut self,
        peers: &dyn Collective,
        params: &[Param<f32>],
        grads: &mut [Vec<f32>],
        weight: f32,
        small: &mut [f64],
    ) -> Result<()> {
        let (ranks, me) = (peers.size(), peers.rank());
        self.tables.clear();
        self.tables.extend(params.iter().enumerate().filter_map(|(i, p)| {
            (p.trainable && p.shape.rank() == 2 && (MIN_ROWS..MAX_ROWS).contains(&p.shape.dims()[0])).then_some(i)
        }));
        self.small.clear();
        self.small.extend_from_slice(small);
        self.small.resize(small.len() + self.tables.len() * ranks, 0.0);
        self.used.resize_with(self.tables.len(), Vec::new);
        for (k, &i) in self.tables.iter().enumerate() {
            let cols = params[i].shape.dims()[1];
            self.used[k].clear();
            self.used[k].extend(nonzero_rows(&grads[i], cols).map(|r| r as u32));
            self.small[small.len() + k * ranks + me] = self.used[k].len() as f64;
        }
        peers.sum_f64(&mut self.small)?;
        small.copy_from_slice(&self.small[..small.len()]);
        let counts = &self.small[small.len()..];
        let count = |k: usize, r: usize| counts[k * ranks + r] as usize;

        // A table goes as rows when they are fewer values than it: an all-gather moves every rank's rows
        // once, a ring all-reduce the whole table twice.
        self.as_rows.clear();
        for (k, &i) in self.tables.iter().enumerate() {
            let (rows, cols) = (params[i].shape.dims()[0], params[i].shape.dims()[1]);
            let used: usize = (0..ranks).map(|r| count(k, r)).sum();
            if used * (cols + 1) < rows * cols {
                self.as_rows.push(k);
            }
        }
        let by_rows = |i: usize, as_rows: &[usize], tables: &[usize]| as_rows.iter().any(|&k| tables[k] == i);

        self.flat.clear();
        for (i, (p, g)) in params.iter().zip(grads.iter()).enumerate() {
            if p.trainable && !by_rows(i, &self.as_rows, &self.tables) {
                self.flat.extend(g.iter().map(|v| v * weight));
            }
        }
        peers.sum_f32(&mut self.flat)?;
        let mut at = 0;
        for (i, (p, g)) in params.iter().zip(grads.iter_mut()).enumerate() {
            if p.trainable && !by_rows(i, &self.as_rows, &self.tables) {
                let len = g.len();
                g.copy_from_slice(&self.flat[at..at + len]);
                at += len;
            }
        }
        if self.as_rows.is_empty() {
            return Ok(());
        }

        // Each rank's part: per table, the ids of its non-zero rows, then those rows times `weight`.
        self.mine.clear();
        for &k in &self.as_rows {
            let i = self.tables[k];
            let cols = params[i].shape.dims()[1];
            self.mine.extend(self.used[k].iter().map(|&r| r as f32));
            for r in self.used[k].iter().map(|&r| r as usize) {
                self.mine.extend(grads[i][r * cols..(r + 1) * cols].iter().map(|v| v * weight));
            }
        }
        self.lens.clear();
        for r in 0..ranks {
            let len = self.as_rows.iter().map(|&k| count(k, r) * (params[self.tables[k]].shape.dims()[1] + 1)).sum();
            self.lens.push(len);
        }
        peers.gather_f32(&self.mine, &self.lens, &mut self.all)?;
        // Only this rank's own rows were not zero.
        for &k in &self.as_rows {
            let (i, cols) = (self.tables[k], params[self.tables[k]].shape.dims()[1]);
            for &r in &self.used[k] {
                grads[i][r as usize * cols..(r as usize + 1) * cols].fill(0.0);
            }
        }
        let mut at = 0;
        for r in 0..ranks {
            for &k in &self.as_rows {
                let i = self.tables[k];
                let (cols, c) = (params[i].shape.dims()[1], count(k, r));
                let (ids, values) = self.all[at..at + c * (cols + 1)].split_at(c);
                for (&id, row) in ids.iter().zip(values.chunks(cols)) {
                    let id = id as usize;
                    grads[i][id * cols..(id + 1) * cols].iter_mut().zip(row).for_each(|(g, v)| *g += v);
                }
                at += c * (cols + 1);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::Error;
    use std::sync::{Arc, Barrier, Mutex};

    /// Ranks as threads of one process, for testing the sums without MPI.
    #[derive(Debug)]
    struct Threads {
        rank: usize,
        size: usize,
        shared: Arc<(Barrier, Mutex<Vec<Vec<f64>>>)>,
        gathers: Arc<Mutex<usize>>,
    }

    impl Threads {
        /// Every rank's `v`, after all have put theirs.
        fn exchange(&self, v: Vec<f64>) -> Vec<Vec<f64>> {
            let (barrier, slots) = &*self.shared;
            slots.lock().unwrap()[self.rank] = v;
            barrier.wait();
            let all = slots.lock().unwrap().clone();
            barrier.wait();
            all
        }
    }

    impl Collective for Threads {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.size
        }
        fn sum_f32(&self, buf: &mut [f32]) -> Result<()> {
            let all = self.exchange(buf.iter().map(|&v| f64::from(v)).collect());
            for (j, b) in buf.iter_mut().enumerate() {
                *b = all.iter().map(|v| v[j] as f32).sum();
            }
            Ok(())
        }
        fn sum_f64(&self, buf: &mut [f64]) -> Result<()> {
            let all = self.exchange(buf.to_vec());
            for (j, b) in buf.iter_mut().enumerate() {
                *b = all.iter().map(|v| v[j]).sum();
            }
            Ok(())
        }
        fn gather_f32(&self, mine: &[f32], lens: &[usize], all: &mut Vec<f32>) -> Result<()> {
            if mine.len() != lens[self.rank] {
                return Err(Error::Config(format!("rank {} sends {} for {}", self.rank, mine.len(), lens[self.rank])));
            }
            *self.gathers.lock().unwrap() += 1;
            let parts = self.exchange(mine.iter().map(|&v| f64::from(v)).collect());
            all.clear();
            all.extend(parts.iter().flatten().map(|&v| v as f32));
            Ok(())
        }
        fn abort(&self, code: i32) -> ! {
            std::process::exit(code)
        }
    }

    fn param(name: &str, dims: &[usize]) -> Param<f32> {
        let n = dims.iter().product();
        Param {
            name: name.into(),
            shape: kiln_core::Shape::new(dims).unwrap(),
            value: vec![0.0; n],
            trainable: true,
            quant: None,
        }
    }

    /// Rank r's gradients: a table of 300 x 4 with rows {r, 7, 100 + r} set (few: they go as rows), a second
    /// table of 300 x 2 with every row set (dense), a bias.
    fn grads_of(r: usize) -> Vec<Vec<f32>> {
        let mut table = vec![0.0; 300 * 4];
        for (k, row) in [r, 7, 100 + r].into_iter().enumerate() {
            table[row * 4..row * 4 + 4].iter_mut().enumerate().for_each(|(j, v)| *v = (r * 10 + k + j) as f32 + 0.5);
        }
        let dense = (0..600).map(|j| (j + r) as f32 * 0.25).collect();
        vec![table, dense, vec![r as f32 + 1.0; 3]]
    }

    #[test]
    fn gathered_rows_sum_as_the_dense_sum_does() {
        let params = vec![param("emb/embeddings", &[300, 4]), param("d/kernel", &[300, 2]), param("d/bias", &[3])];
        for size in [2usize, 3] {
            let shared = Arc::new((Barrier::new(size), Mutex::new(vec![Vec::new(); size])));
            let gathers = Arc::new(Mutex::new(0));
            let weight = 0.5f32;
            let results: Vec<(Vec<Vec<f32>>, Vec<f64>)> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..size)
                    .map(|rank| {
                        let peers = Threads { rank, size, shared: shared.clone(), gathers: gathers.clone() };
                        let params = &params;
                        s.spawn(move || {
                            let mut grads = grads_of(rank);
                            let mut small = [rank as f64, 1.0];
                            GradSums::default().sum(&peers, params, &mut grads, weight, &mut small).unwrap();
                            (grads, small.to_vec())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            // What one dense sum gives.
            let mut want =
                grads_of(0).into_iter().map(|g| g.iter().map(|v| v * weight).collect::<Vec<_>>()).collect::<Vec<_>>();
            for r in 1..size {
                for (w, g) in want.iter_mut().zip(grads_of(r)) {
                    w.iter_mut().zip(g).for_each(|(w, g)| *w += g * weight);
                }
            }
            for (rank, (grads, small)) in results.iter().enumerate() {
                assert_eq!(grads, &want, "{size} ranks, rank {rank}");
                assert_eq!(small, &[(0..size).sum::<usize>() as f64, size as f64]);
            }
            // One gather per rank: the first table went as rows, the second (every row used) dense.
            assert_eq!(*gathers.lock().unwrap(), size);
        }
    }
}
