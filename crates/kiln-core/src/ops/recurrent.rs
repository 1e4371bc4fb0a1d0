//! Recurrent layers as one op over the whole sequence: the input projection of every step in one product,
//! then per step one product with the recurrent kernel and one elementwise pass over the gates (a backend
//! kernel, `Backend::rnn_step`), and the backward through time as one loop, with the weight gradients left
//! to two products at the end. Measured on textbench (LSTM 32 over 100 steps, batch 64, 2 cores): the same
//! cell written with the engine's ops spends most of its time in the tape (about 30 small nodes per step)
//! and in scalar exp; `rnn_unrolled` keeps that version as the tested reference.
//!
//! Shapes (llm.c style): x [n, T, F], kernel w [F, G·U], recurrent kernel r [U, G·U], bias b [G·U] (GRU:
//! [2, G·U], input and recurrent), mask [n, T] (1 = a real step); G = 4 gates for LSTM (i, f, g, o), 3 for
//! GRU (z, r, h), 1 for the simple cell. Steps run first to last, or last to first with `reverse`; a masked
//! step keeps the state (h and c) of the step before. Output: the last state [n, U], or with `seq` the
//! state after each step, in step order, [n, T, U].
//!
//! Per step, with zx = x_t·w + b and zh = h·r:
//! - LSTM: i, f, o = σ(zx + zh) of their gates, g = tanh(zx + zh); c' = f·c + i·g; h' = o·tanh(c').
//! - GRU (reset_after, as Keras and PyTorch): z = σ(zx_z + zh_z + b'_z), r = σ(zx_r + zh_r + b'_r),
//!   ĥ = tanh(zx_h + r·(zh_h + b'_h)); h' = ĥ + z·(h − ĥ), with b' the recurrent bias.
//! - simple: h' = tanh(zx + zh).
//!
//! Backward, per step from the last: the gate gradients dzx (into the input projection) and dzh (into the
//! recurrent one; they differ only for the GRU's candidate, by the factor r) come from dh' (and dc'); then
//! dh += dzh·rᵀ. After the loop: dr = Σ_t h_tᵀ·dzh_t as one product over all steps, dw = xᵀ·dzx,
//! dx = dzx·wᵀ, db = Σ dzx (GRU: and the recurrent half Σ dzh).

use crate::backend::{Buf, BufMut, MatView};
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, Result};

/// The cell a recurrent op runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RnnCell {
    Lstm,
    Gru,
    Simple,
}

impl RnnCell {
    /// Gates per unit: the width of the projections is gates·units.
    pub fn gates(self) -> usize {
        match self {
            RnnCell::Lstm => 4,
            RnnCell::Gru => 3,
            RnnCell::Simple => 1,
        }
    }

    /// The op's name in profiles.
    pub fn name(self) -> &'static str {
        match self {
            RnnCell::Lstm => "lstm",
            RnnCell::Gru => "gru",
            RnnCell::Simple => "simple_rnn",
        }
    }

    /// Values per unit a step keeps for the backward (LSTM: i, f, g, o, tanh c'; GRU: z, r, ĥ, zh_h + b'_h).
    pub fn saved(self) -> usize {
        match self {
            RnnCell::Lstm => 5,
            RnnCell::Gru => 4,
            RnnCell::Simple => 0,
        }
    }
}

/// The operands of a recurrent op, kept on its node.
#[derive(Clone, Copy, Debug)]
pub struct RnnArgs {
    pub cell: RnnCell,
    pub x: Var,
    pub w: Var,
    pub r: Var,
    pub b: Var,
    pub mask: Option<Var>,
    pub reverse: bool,
    pub seq: bool,
    /// The parts the forward cut the rows into (`Chunks`): its `aux_f` blocks are laid out by them, so the
    /// backward reads them with the same count, whatever the threading settings are by then.
    pub parts: usize,
}

/// The sizes of one recurrent op: rows, steps, units; `t` the step being computed.
#[derive(Clone, Copy, Debug)]
pub struct RnnDims {
    pub cell: RnnCell,
    pub n: usize,
    pub steps: usize,
    pub units: usize,
    pub t: usize,
}

/// What one forward step reads: xw [n·T, G·U] (row b·T + t is this step's input projection, bias included),
/// zh [n, G·U] = h·r, the GRU's recurrent bias [G·U], the mask [n, T], the state before the step.
pub struct RnnStep<'a, T> {
    pub xw: Buf<'a, T>,
    pub zh: Buf<'a, T>,
    pub b_rec: Option<Buf<'a, T>>,
    pub mask: Option<Buf<'a, T>>,
    pub h_prev: Buf<'a, T>,
    pub c_prev: Option<Buf<'a, T>>,
}

/// What one forward step writes: the state after it [n, U] (and the LSTM's cell state), and `saved`
/// [n, S·U] for the backward (`RnnCell::saved`).
pub struct RnnStepOut<'a, T> {
    pub h: BufMut<'a, T>,
    pub c: Option<BufMut<'a, T>>,
    pub saved: BufMut<'a, T>,
}

/// One backward step: reads what the forward step kept and the states around it; turns dh (and dc), the
/// gradients at the state after the step, into the gradients at the state before it (less dzh·rᵀ, which
/// the op adds), and writes the gate gradients: dzx rows b·T + t of [n·T, G·U], dzh [n, G·U], every row
/// (zeros for a masked one).
pub struct RnnStepGrad<'a, T> {
    pub saved: Buf<'a, T>,
    pub mask: Option<Buf<'a, T>>,
    pub h_prev: Buf<'a, T>,
    pub h: Buf<'a, T>,
    pub c_prev: Option<Buf<'a, T>>,
    pub dh: BufMut<'a, T>,
    pub dc: Option<BufMut<'a, T>>,
    pub dzx: BufMut<'a, T>,
    pub dzh: BufMut<'a, T>,
}

impl<T: Float> Graph<T> {
    /// A recurrent layer over x [n, T, F] as one op (see the file header for the equations and shapes).
    #[allow(clippy::too_many_arguments)]
    pub fn rnn(
        &mut self,
        cell: RnnCell,
        x: Var,
        w: Var,
        r: Var,
        b: Var,
        mask: Option<Var>,
        reverse: bool,
        seq: bool,
    ) -> Result<Var> {
        let (sx, sw, sr, sb) = (self.shape(x), self.shape(w), self.shape(r), self.shape(b));
        let gates = cell.gates();
        if sx.rank() != 3 || sr.rank() != 2 || sw.rank() != 2 {
            return Err(Error::Shape(format!(
                "rnn: input {sx}, kernel {sw}, recurrent kernel {sr}: want [n, T, F], [F, G·U], [U, G·U]"
            )));
        }
        let (n, steps, f, u) = (sx.dim(0), sx.dim(1), sx.dim(2), sr.dim(0));
        let gu = gates * u;
        let bias_len = if cell == RnnCell::Gru { 2 * gu } else { gu };
        if sw.dims() != [f, gu] || sr.dims() != [u, gu] || sb.numel() != bias_len || steps == 0 {
            return Err(Error::Shape(format!(
                "rnn ({cell:?}): input {sx}, kernel {sw}, recurrent kernel {sr}, bias {sb} do not fit: want \
                 [n, T ≥ 1, F], [F, {gates}·U], [U, {gates}·U], {bias_len} bias values"
            )));
        }
        if let Some(m) = mask
            && self.shape(m).numel() != n * steps
        {
            return Err(Error::Shape(format!("rnn: mask {} does not fit input {sx} (want [n, T])", self.shape(m))));
        }
        let rg = [x, w, r, b].iter().any(|&v| self.requires_grad(v));
        let chunks = Chunks::new(cell, n, steps, u);
        let mut aux = self.pool.scratch(chunks.aux_len(n));
        let mut xw = self.pool.scratch(n * steps * gu);
        let mut zh = self.pool.scratch(n * gu);
        let mut y = self.pool.scratch(if seq { n * steps * u } else { n * u });
        {
            let be = &*self.backend;
            let (xb, wb, rb, bias) = (self.buf(x), self.buf(w), self.buf(r), self.buf(b));
            // The input projection of every step: one product, bias added (the GRU's input half).
            be.gemm(
                n * steps,
                gu,
                f,
                BufMut::Host(&mut xw),
                0,
                MatView::rows(xb, 0, f),
                MatView::rows(wb, 0, gu),
                false,
            );
            be.bias_act(BufMut::Host(&mut xw), gu, Some(bias.slice(0..gu)), None, None);
            let mask = mask.map(|m| self.value(m));
            let b_rec = (cell == RnnCell::Gru).then(|| bias.slice(gu..2 * gu));
            let y_len = if seq { steps * u } else { u };
            let parts = chunks.split(&mut aux, |nc| chunks.aux_len(nc));
            let zhs = chunks.split(&mut zh, |nc| nc * gu);
            let ys = chunks.split(&mut y, |nc| nc * y_len);
            let work: Vec<_> = chunks.rows().zip(parts).zip(zhs).zip(ys).collect();
            chunks.run(work, |(((rows, block), zh), y)| {
                let nc = rows.len();
                let xw = &xw[rows.start * steps * gu..rows.end * steps * gu];
                let mask = mask.map(|m| Buf::Host(&m[rows.start * steps..rows.end * steps]));
                forward_rows(
                    be,
                    RnnDims { cell, n: nc, steps, units: u, t: 0 },
                    reverse,
                    seq,
                    xw,
                    rb,
                    b_rec,
                    mask,
                    block,
                    zh,
                    y,
                );
            });
        }
        self.pool.put(zh);
        self.pool.put(xw);
        let shape = if seq { sx.with_dim(2, u) } else { crate::Shape::new(&[n, u])? };
        let args = RnnArgs { cell, x, w, r, b, mask, reverse, seq, parts: chunks.parts };
        let v = self.push(Op::Rnn(args), shape, y, rg);
        self.keep_aux_f(v, aux);
        Ok(v)
    }
}

/// The rows of a batch cut into one contiguous part per thread: a row's recurrence needs no other row, so
/// each part runs every step on its own (per step, a product of its rows with r and the cell kernel).
/// Each part keeps its own block of `aux_f`: [states (T+1)·nc·U | cell states likewise (LSTM) | saved
/// T·nc·S·U], nc the part's rows.
struct Chunks {
    cell: RnnCell,
    n: usize,
    steps: usize,
    units: usize,
    parts: usize,
}

impl Chunks {
    fn new(cell: RnnCell, n: usize, steps: usize, units: usize) -> Chunks {
        // Per row: steps × (a product of 2·U·G·U flops and the gates' ~20 operations each).
        let work = steps * cell.gates() * units * (2 * units + 20);
        Chunks { cell, n, steps, units, parts: crate::par::parts_for(n, work) }
    }

    /// The rows of each part.
    fn rows(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        (0..self.parts).map(|p| p * self.n / self.parts..(p + 1) * self.n / self.parts)
    }

    /// Length of the `aux_f` block of `nc` rows.
    fn aux_len(&self, nc: usize) -> usize {
        block_lens(self.cell, self.steps, nc * self.units).iter().sum()
    }

    /// `buf` cut into one piece per part, `len(nc)` long for a part of nc rows.
    fn split<'a, T>(&self, mut buf: &'a mut [T], len: impl Fn(usize) -> usize) -> Vec<&'a mut [T]> {
        self.rows()
            .map(|r| {
                let (head, tail) = std::mem::take(&mut buf).split_at_mut(len(r.len()));
                buf = tail;
                head
            })
            .collect()
    }

    /// `buf` (read-only) cut likewise.
    fn split_ref<'a, T>(&self, mut buf: &'a [T], len: impl Fn(usize) -> usize) -> Vec<&'a [T]> {
        self.rows()
            .map(|r| {
                let (head, tail) = buf.split_at(len(r.len()));
                buf = tail;
                head
            })
            .collect()
    }

    /// Runs `f` on each part's work, on rayon's threads when there are several.
    fn run<W: Send>(&self, work: Vec<W>, f: impl Fn(W) + Sync) {
        if work.len() == 1 {
            work.into_iter().for_each(f);
        } else {
            use rayon::prelude::*;
            work.into_par_iter().for_each(&f);
        }
    }
}

/// The lengths of the three runs of a part's `aux_f` block, for `ns` = its rows × units: the states after
/// each step (slot 0 the zero state), the LSTM's cell states likewise (none for other cells), what each
/// step saved for the backward.
fn block_lens(cell: RnnCell, steps: usize, ns: usize) -> [usize; 3] {
    let states = (steps + 1) * ns;
    [states, if cell == RnnCell::Lstm { states } else { 0 }, steps * cell.saved() * ns]
}

/// The forward of one part's rows (`d.n` of them; `xw`, `mask` and `y` are theirs), into its `aux_f` block.
#[allow(clippy::too_many_arguments)]
fn forward_rows<T: Float>(
    be: &dyn crate::Backend<T>,
    d: RnnDims,
    reverse: bool,
    seq: bool,
    xw: &[T],
    r: Buf<T>,
    b_rec: Option<Buf<T>>,
    mask: Option<Buf<T>>,
    block: &mut [T],
    zh: &mut [T],
    y: &mut [T],
) {
    let RnnDims { cell, n, steps, units: u, .. } = d;
    let (gu, ns) = (cell.gates() * u, n * u);
    let sv = cell.saved() * ns;
    let [states, cells, _] = block_lens(cell, steps, ns);
    let (hs, rest) = block.split_at_mut(states);
    let (cs, saved) = rest.split_at_mut(cells);
    // The zero state; every step writes all of its own slot.
    hs[..ns].fill(T::ZERO);
    if cell == RnnCell::Lstm {
        cs[..ns].fill(T::ZERO);
    }
    for s in 0..steps {
        let t = if reverse { steps - 1 - s } else { s };
        let (done, next) = hs.split_at_mut((s + 1) * ns);
        let h_prev = &done[s * ns..];
        be.gemm(n, gu, u, BufMut::Host(zh), 0, MatView::rows(Buf::Host(h_prev), 0, u), MatView::rows(r, 0, gu), false);
        let (c_prev, c) = if cell == RnnCell::Lstm {
            let (cd, cn) = cs.split_at_mut((s + 1) * ns);
            (Some(Buf::Host(&cd[s * ns..])), Some(BufMut::Host(&mut cn[..ns])))
        } else {
            (None, None)
        };
        let step = RnnStep { xw: Buf::Host(xw), zh: Buf::Host(zh), b_rec, mask, h_prev: Buf::Host(h_prev), c_prev };
        let out =
            RnnStepOut { h: BufMut::Host(&mut next[..ns]), c, saved: BufMut::Host(&mut saved[s * sv..(s + 1) * sv]) };
        be.rnn_step(RnnDims { t, ..d }, step, out);
    }
    if seq {
        // y[b, t] is the state after step t, in step order whichever way the steps ran.
        for s in 0..steps {
            let t = if reverse { steps - 1 - s } else { s };
            for row in 0..n {
                let from = (s + 1) * ns + row * u;
                y[(row * steps + t) * u..][..u].copy_from_slice(&hs[from..from + u]);
            }
        }
    } else {
        y.copy_from_slice(&hs[steps * ns..]);
    }
}

/// The backward of `Graph::rnn` (see the file header).
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, i: usize, a: RnnArgs, gy: Buf<T>) {
    let RnnArgs { cell, x, w, r, b, mask, reverse, seq, parts } = a;
    let (sx, sr) = (ctx.shape(x), ctx.shape(r));
    let (n, steps, f, u) = (sx.dim(0), sx.dim(1), sx.dim(2), sr.dim(0));
    let gu = cell.gates() * u;
    let chunks = Chunks { cell, n, steps, units: u, parts };
    let blocks = chunks.split_ref(ctx.aux_f[i].host(), |nc| chunks.aux_len(nc));
    let gy = gy.host();
    // dh, dc: the gradients at the current state, per row. dzx and dzh: every row of both is written by its
    // step's kernel (zeros for a masked row); dzh is step-major within each part, [T, nc, G·U], so that dr is
    // one product per part over all its steps.
    let mut dh = ctx.pool.zeroed(n * u);
    let mut dc = ctx.pool.zeroed(if cell == RnnCell::Lstm { n * u } else { 0 });
    let mut dzx = ctx.pool.scratch(n * steps * gu);
    let mut dzh = ctx.pool.scratch(steps * n * gu);
    {
        let be = ctx.backend;
        let mask = mask.map(|m| ctx.value(m));
        let rv = Buf::Host(ctx.value(r));
        let gy_len = if seq { steps * u } else { u };
        let dhs = chunks.split(&mut dh, |nc| nc * u);
        let dcs = chunks.split(&mut dc, |nc| if cell == RnnCell::Lstm { nc * u } else { 0 });
        let dzxs = chunks.split(&mut dzx, |nc| nc * steps * gu);
        let dzhs = chunks.split(&mut dzh, |nc| steps * nc * gu);
        let work: Vec<_> = chunks
            .rows()
            .zip(blocks.iter().copied())
            .zip(dhs.into_iter().zip(dcs))
            .zip(dzxs.into_iter().zip(dzhs))
            .collect();
        chunks.run(work, |(((rows, block), (dh, dc)), (dzx, dzh))| {
            let nc = rows.len();
            let gy = &gy[rows.start * gy_len..rows.end * gy_len];
            let mask = mask.map(|m| Buf::Host(&m[rows.start * steps..rows.end * steps]));
            let d = RnnDims { cell, n: nc, steps, units: u, t: 0 };
            backward_rows(be, d, reverse, seq, block, gy, rv, mask, dh, dc, dzx, dzh);
        });
    }
    let be = ctx.backend;
    if ctx.needs(r) {
        // dr[U, G·U] += Σ_s h_sᵀ · dzh_s per part: its states before each step, [T·nc, U], transposed.
        let g = ctx.grad(r);
        let dzhs = chunks.split_ref(&dzh, |nc| steps * nc * gu);
        for ((rows, block), dzh) in chunks.rows().zip(&blocks).zip(dzhs) {
            let states = &block[..steps * rows.len() * u];
            let (a, b) = (MatView::rows_t(Buf::Host(states), 0, u), MatView::rows(Buf::Host(dzh), 0, gu));
            be.gemm(u, gu, steps * rows.len(), BufMut::Host(&mut *g), 0, a, b, true);
        }
    }
    if ctx.needs(w) {
        let xv = ctx.value(x);
        let g = ctx.grad(w);
        be.gemm(
            f,
            gu,
            n * steps,
            BufMut::Host(g),
            0,
            MatView::rows_t(Buf::Host(xv), 0, f),
            MatView::rows(Buf::Host(&dzx), 0, gu),
            true,
        );
    }
    if ctx.needs(b) {
        let g = ctx.grad(b);
        be.col_sum_add(BufMut::Host(&mut g[..gu]), Buf::Host(&dzx), gu);
        if cell == RnnCell::Gru {
            be.col_sum_add(BufMut::Host(&mut g[gu..]), Buf::Host(&dzh), gu);
        }
    }
    if ctx.needs(x) {
        let wv = ctx.value(w);
        let g = ctx.grad(x);
        be.gemm(
            n * steps,
            f,
            gu,
            BufMut::Host(g),
            0,
            MatView::rows(Buf::Host(&dzx), 0, gu),
            MatView::rows_t(Buf::Host(wv), 0, gu),
            true,
        );
    }
    for v in [dh, dc, dzx, dzh] {
        if v.capacity() > 0 {
            ctx.pool.put(v);
        }
    }
}

/// The backward through time of one part's rows (`d.n`; `gy`, `mask`, `dh`, `dc`, `dzx`, `dzh` are theirs),
/// from its `aux_f` block.
#[allow(clippy::too_many_arguments)]
fn backward_rows<T: Float>(
    be: &dyn crate::Backend<T>,
    d: RnnDims,
    reverse: bool,
    seq: bool,
    block: &[T],
    gy: &[T],
    r: Buf<T>,
    mask: Option<Buf<T>>,
    dh: &mut [T],
    dc: &mut [T],
    dzx: &mut [T],
    dzh: &mut [T],
) {
    let RnnDims { cell, n, steps, units: u, .. } = d;
    let (gu, ns) = (cell.gates() * u, n * u);
    let sv = cell.saved() * ns;
    let [states, cells, _] = block_lens(cell, steps, ns);
    let (hs, rest) = block.split_at(states);
    let (cs, saved) = rest.split_at(cells);
    if !seq {
        dh.copy_from_slice(gy);
    }
    for s in (0..steps).rev() {
        let t = if reverse { steps - 1 - s } else { s };
        if seq {
            for row in 0..n {
                let g = &gy[(row * steps + t) * u..][..u];
                dh[row * u..][..u].iter_mut().zip(g).for_each(|(d, &g)| *d += g);
            }
        }
        let dzh = &mut dzh[s * n * gu..(s + 1) * n * gu];
        let grad = RnnStepGrad {
            saved: Buf::Host(&saved[s * sv..(s + 1) * sv]),
            mask,
            h_prev: Buf::Host(&hs[s * ns..(s + 1) * ns]),
            h: Buf::Host(&hs[(s + 1) * ns..(s + 2) * ns]),
            c_prev: (cell == RnnCell::Lstm).then(|| Buf::Host(&cs[s * ns..(s + 1) * ns])),
            dh: BufMut::Host(&mut *dh),
            dc: (cell == RnnCell::Lstm).then_some(BufMut::Host(&mut *dc)),
            dzx: BufMut::Host(&mut *dzx),
            dzh: BufMut::Host(&mut *dzh),
        };
        be.rnn_step_backward(RnnDims { t, ..d }, grad);
        // dh (before the step) += dzh · rᵀ
        be.gemm(
            n,
            u,
            gu,
            BufMut::Host(&mut *dh),
            0,
            MatView::rows(Buf::Host(dzh), 0, gu),
            MatView::rows_t(r, 0, gu),
            true,
        );
    }
}

impl<T: Float> Graph<T> {
    /// The same layer as `rnn`, written with the engine's small ops (slice, linear, sigmoid, mul...) one step
    /// at a time: the reference the fused op is tested against, and what it replaced.
    #[allow(clippy::too_many_arguments)]
    pub fn rnn_unrolled(
        &mut self,
        cell: RnnCell,
        x: Var,
        w: Var,
        r: Var,
        b: Var,
        mask: Option<&[T]>,
        reverse: bool,
        seq: bool,
    ) -> Result<Var> {
        let (n, steps, f) = (self.shape(x).dim(0), self.shape(x).dim(1), self.shape(x).dim(2));
        let u = self.shape(r).dim(0);
        let gu = cell.gates() * u;
        let (b_in, b_rec) = if cell == RnnCell::Gru {
            let flat = self.reshape(b, &[2 * gu])?;
            (self.slice(flat, 0, 0, gu)?, Some(self.slice(flat, 0, gu, 2 * gu)?))
        } else {
            (self.reshape(b, &[gu])?, None)
        };
        let zero = vec![T::ZERO; n * u];
        let (mut h, mut c) = (self.input(&[n, u], &zero)?, self.input(&[n, u], &zero)?);
        let mut states = Vec::new();
        for s in 0..steps {
            let t = if reverse { steps - 1 - s } else { s };
            let xt = self.slice(x, 1, t, t + 1)?;
            let xt = self.reshape(xt, &[n, f])?;
            let zx = self.linear(xt, w, Some(b_in), None)?;
            let zh = self.linear(h, r, b_rec, None)?;
            let part = |g: &mut Graph<T>, v: Var, k: usize| g.slice(v, 1, k * u, (k + 1) * u);
            let (h_new, c_new) = match cell {
                RnnCell::Lstm => {
                    let z = self.add(zx, zh)?;
                    let (i, fg, cc, o) = (part(self, z, 0)?, part(self, z, 1)?, part(self, z, 2)?, part(self, z, 3)?);
                    let (i, fg, cc, o) = (self.sigmoid(i)?, self.sigmoid(fg)?, self.tanh(cc)?, self.sigmoid(o)?);
                    let keep = self.mul(fg, c)?;
                    let add = self.mul(i, cc)?;
                    let c_new = self.add(keep, add)?;
                    let tc = self.tanh(c_new)?;
                    (self.mul(o, tc)?, c_new)
                }
                RnnCell::Gru => {
                    let (zx0, zx1, zx2) = (part(self, zx, 0)?, part(self, zx, 1)?, part(self, zx, 2)?);
                    let (zh0, zh1, zh2) = (part(self, zh, 0)?, part(self, zh, 1)?, part(self, zh, 2)?);
                    let z = self.add(zx0, zh0)?;
                    let z = self.sigmoid(z)?;
                    let rr = self.add(zx1, zh1)?;
                    let rr = self.sigmoid(rr)?;
                    let gated = self.mul(rr, zh2)?;
                    let cand = self.add(zx2, gated)?;
                    let cand = self.tanh(cand)?;
                    let d = self.sub(h, cand)?;
                    let zd = self.mul(z, d)?;
                    (self.add(cand, zd)?, c)
                }
                RnnCell::Simple => {
                    let z = self.add(zx, zh)?;
                    (self.tanh(z)?, c)
                }
            };
            // A masked step keeps the state: new·m + old·(1 − m), m the step's mask per row.
            let (h2, c2) = match mask {
                Some(m) => {
                    let mv: Vec<T> = (0..n).map(|row| m[row * steps + t]).collect();
                    let inv: Vec<T> = mv.iter().map(|&v| T::ONE - v).collect();
                    let (mv, iv) = (self.input(&[n, 1], &mv)?, self.input(&[n, 1], &inv)?);
                    let keep = |g: &mut Graph<T>, new: Var, old: Var| -> Result<Var> {
                        let (a, b) = (g.mul(new, mv)?, g.mul(old, iv)?);
                        g.add(a, b)
                    };
                    (keep(self, h_new, h)?, if cell == RnnCell::Lstm { keep(self, c_new, c)? } else { c })
                }
                None => (h_new, c_new),
            };
            h = h2;
            c = c2;
            states.push(h);
        }
        if !seq {
            return Ok(h);
        }
        if reverse {
            states.reverse();
        }
        let cols: Vec<Var> = states.iter().map(|&h| self.reshape(h, &[n, 1, u])).collect::<Result<_>>()?;
        self.concat(&cols, 1)
    }
}
