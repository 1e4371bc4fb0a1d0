//! Splitting work across threads only where it pays: large ops are cut into one contiguous part per
//! thread (never more), small ones run on the calling thread, since small ops split across threads get
//! slower on this kind of machine.

use crate::backend::cpu::gemm::num_threads;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Below this many element-operations an op runs on the calling thread.
pub const MIN_PARALLEL_WORK: usize = 200_000;

static MIN_WORK: AtomicUsize = AtomicUsize::new(MIN_PARALLEL_WORK);

/// Sets the work below which ops run on the calling thread (`MIN_PARALLEL_WORK` by default). Tests set it to
/// 1 so that shapes small enough to check against a reference still take the threaded paths.
pub fn set_min_parallel_work(work: usize) {
    MIN_WORK.store(work, Ordering::Relaxed);
}

/// How many parts to cut `items` of `work_per_item` each into.
pub fn parts_for(items: usize, work_per_item: usize) -> usize {
    if items.saturating_mul(work_per_item) < MIN_WORK.load(Ordering::Relaxed) {
        1
    } else {
        num_threads().min(items).max(1)
    }
}

/// The work of one part: (its items, its slice of the output, its accumulator).
pub type PartFn<'a, T, A> = dyn Fn(std::ops::Range<usize>, &mut [T], &mut [A]) + Sync + 'a;

/// Runs `f(items, out_part, acc_part)` on `parts` contiguous ranges of `0..n` in parallel. `out` holds
/// `stride` elements per item and is cut at the same item boundaries; `acc` holds `acc_len` elements per
/// part (scratch or partial sums private to each part).
#[allow(clippy::too_many_arguments)]
pub fn for_parts<T: Send, A: Send>(
    n: usize,
    parts: usize,
    out: &mut [T],
    stride: usize,
    acc: &mut [A],
    acc_len: usize,
    f: &PartFn<'_, T, A>,
) {
    fn go<T: Send, A: Send>(
        lo: usize,
        hi: usize,
        parts: usize,
        out: &mut [T],
        stride: usize,
        acc: &mut [A],
        acc_len: usize,
        f: &PartFn<'_, T, A>,
    ) {
        if parts <= 1 {
            f(lo..hi, out, &mut acc[..acc_len]);
            return;
        }
        let p1 = parts / 2;
        let mid = lo + (hi - lo) * p1 / parts;
        let (o1, o2) = out.split_at_mut(((mid - lo) * stride).min(out.len()));
        let (a1, a2) = acc.split_at_mut(p1 * acc_len);
        rayon::join(
            || go(lo, mid, p1, o1, stride, a1, acc_len, f),
            || go(mid, hi, parts - p1, o2, stride, a2, acc_len, f),
        );
    }
    go(0, n, parts.max(1), out, stride, acc, acc_len, f)
}

/// A mutable buffer that parallel parts write to at disjoint positions they work out themselves (a second
/// output of `for_parts`).
pub struct Disjoint<T>(*mut T, usize);

// SAFETY: users promise that parts touch disjoint elements (see `part`).
unsafe impl<T: Send> Send for Disjoint<T> {}
unsafe impl<T: Send> Sync for Disjoint<T> {}

impl<T> Disjoint<T> {
    pub fn new(v: &mut [T]) -> Self {
        Disjoint(v.as_mut_ptr(), v.len())
    }

    /// The buffer's first element, for a part that writes a strided region it owns (columns of a matrix's
    /// rows), and its length.
    pub fn raw(&self) -> (*mut T, usize) {
        (self.0, self.1)
    }

    /// Elements `range` of the buffer.
    ///
    /// # Safety
    /// No two live slices handed out may overlap.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn part(&self, range: std::ops::Range<usize>) -> &mut [T] {
        assert!(range.start <= range.end && range.end <= self.1);
        unsafe { std::slice::from_raw_parts_mut(self.0.add(range.start), range.end - range.start) }
    }
}
