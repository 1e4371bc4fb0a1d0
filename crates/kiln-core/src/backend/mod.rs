//! The device seam: the kernels an op's forward and backward call, behind one object-safe trait.
//!
//! An op file keeps what is the same on every device: its shape checks, which buffers it needs, and its
//! backward formula (linear's "dz = dy ⊙ act'(z); db += Σₙ dz; dw += xᵀ·dz; dx += dz·wᵀ"). Each step of
//! the formula is one [`Backend`] call on buffer views ([`Buf`], [`BufMut`]) that say nothing about where
//! the memory is. [`Cpu`] is the backend every graph starts with (unless `set_default_backend` named
//! another); [`cuda::Cuda`] (feature `cuda`) implements the same methods with CUDA kernels, and no op's
//! formula changes for it. The test `tests/suite/backend.rs` runs every op behind the seam on a third,
//! deliberately naive backend written outside this crate, gradient-checks them there and compares them with
//! [`Cpu`]; `tests/suite/cuda.rs` does the same for CUDA.
//!
//! A view is of host memory or of a device backend's own ([`DevVec`], `dev.rs`): a graph whose backend
//! allocates memory ([`Backend::alloc`]) keeps its ops' values and gradients there (`tape_mem.rs`); what
//! stays on the host (parameters, inputs, what host code wrote) the CUDA backend copies up for the call.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod dev;

pub use cpu::Cpu;
pub use dev::{DevVec, DevView, DeviceMemory};

pub use crate::ops::Window;
use crate::ops::{BinaryOp, LossKind, ReduceOp, RnnDims, RnnStep, RnnStepGrad, RnnStepOut, UnaryOp};
use crate::pool::Pool;
use crate::quant::QMatrix;
use crate::{Float, MAX_RANK, Result, Shape};

pub use cpu::attention::softmax_rows;

/// dst [m, n] (row-major, contiguous) = a [m, k] · b [k, n], or += with `accumulate`, on the host and on the
/// calling thread alone: for callers that split their own work across threads (a language model's
/// attention, one task per head and block of tokens). Each operand is (values, row stride, column stride);
/// an operand or dst too short for its strides panics. `softmax_rows` is its companion for such callers.
pub fn matmul_on_this_thread(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    accumulate: bool,
) {
    use cpu::gemm::{Mat, gemm_serial};
    gemm_serial(m, n, k, dst, Mat { data: a.0, rs: a.1, cs: a.2 }, Mat { data: b.0, rs: b.1, cs: b.2 }, accumulate)
}

/// One optimizer step on one parameter, as kiln's optimizers (kiln/src/optim.rs, Keras's rules) take it on
/// the host, for a backend that keeps parameters in its own memory to take where they are
/// ([`Backend::update`], `Graph::update_on_backend`). The rates are the step's, computed on the host.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Update {
    /// SGD: w −= lr·g; with momentum μ (slot 1 holds the velocity v): v = μv − lr·g, then w += v, or with
    /// Nesterov w += μv − lr·g. Moments below f32's normal range flush to zero, as on the host.
    Sgd { lr: f64, momentum: f64, nesterov: bool },
    /// Adam: w *= decay (AdamW's weight decay; 1 for Adam), then m += (g − m)·c1, v += (g² − v)·c2 (slots 1
    /// and 2), w −= alpha·m / (√v + eps), with alpha the step's bias-corrected rate and c1, c2 = 1 − β₁, 1 − β₂.
    Adam { alpha: f64, c1: f64, c2: f64, eps: f64, decay: f64 },
    /// Lazy Adam on a matrix of `cols` columns: Adam (without decay) on the rows whose gradient has a non-zero
    /// value; the other rows, weights and slots, stay as they are.
    AdamRows { alpha: f64, c1: f64, c2: f64, eps: f64, cols: usize },
    /// RMSprop: v = ρv + (1 − ρ)g² (slot 1; `one_minus_rho` as the host rounds it), step = lr·g / √(v + eps);
    /// w −= step, or with momentum μ, m = μm + step (slot 2), w −= m.
    RmsProp { lr: f64, rho: f64, one_minus_rho: f64, momentum: f64, eps: f64 },
    /// Adagrad: a += g² (slot 1), w −= lr·g / √(a + eps).
    Adagrad { lr: f64, eps: f64 },
}

/// An optimizer's two slots per parameter in a backend's own memory (`Graph::update_on_backend`); None for a
/// parameter without them (not trainable).
pub type DeviceSlots<T> = Vec<Option<[DevVec<T>; 2]>>;

/// A weight matrix laid out once for a backend's products ([`Backend::prepack`]): the CPU's holds its matrix
/// kernel's packed panels. The parameter store keeps one beside a parameter for inference tapes
/// (`ParamStore::prepacked`) and drops it when the parameter changes.
pub struct Prepacked(pub(crate) cpu::sgemm::Packed);

impl std::fmt::Debug for Prepacked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prepacked [{}, {}]", self.0.k(), self.0.n())
    }
}

/// A read-only view of a buffer, wherever it lives: host memory, or a device backend's ([`DevVec`]).
#[derive(Clone, Copy, Debug)]
pub enum Buf<'a, T> {
    Host(&'a [T]),
    Dev(DevView<'a, T>),
}

/// A writable view of a buffer.
#[derive(Debug)]
pub enum BufMut<'a, T> {
    Host(&'a mut [T]),
    Dev(DevView<'a, T>),
}

/// A host kernel handed device memory: only a graph whose backend allocated it makes such a view, so this
/// is a bug in kiln, not a user's mistake.
fn not_host() -> ! {
    panic!("a host kernel was handed device memory (a graph's buffers belong to the backend that allocated them)")
}

impl<'a, T> Buf<'a, T> {
    /// The host slice; a device backend's views never reach a host kernel.
    pub fn host(self) -> &'a [T] {
        match self {
            Buf::Host(s) => s,
            Buf::Dev(_) => not_host(),
        }
    }

    /// Elements `r` of the view.
    pub fn slice(self, r: std::ops::Range<usize>) -> Self {
        match self {
            Buf::Host(s) => Buf::Host(&s[r]),
            Buf::Dev(d) => Buf::Dev(d.slice(r)),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Buf::Host(s) => s.len(),
            Buf::Dev(d) => d.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a, T> BufMut<'a, T> {
    pub fn host(self) -> &'a mut [T] {
        match self {
            BufMut::Host(s) => s,
            BufMut::Dev(_) => not_host(),
        }
    }

    /// Elements `r` of the view.
    pub fn slice(self, r: std::ops::Range<usize>) -> Self {
        match self {
            BufMut::Host(s) => BufMut::Host(&mut s[r]),
            BufMut::Dev(d) => BufMut::Dev(d.slice(r)),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            BufMut::Host(s) => s.len(),
            BufMut::Dev(d) => d.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The host slice, read-only, without giving the view up (to copy it to a device first).
    pub fn as_host(&self) -> &[T] {
        match self {
            BufMut::Host(s) => s,
            BufMut::Dev(_) => not_host(),
        }
    }

    /// A read-only view of the same memory (for a kernel that reads what it is about to update).
    pub fn as_buf(&self) -> Buf<'_, T> {
        match self {
            BufMut::Host(s) => Buf::Host(s),
            BufMut::Dev(d) => Buf::Dev(*d),
        }
    }
}

/// A strided matrix operand of a product: element (r, c) is at `offset + r * rs + c * cs` of `buf`, so a
/// transpose or one matrix of a batch is a view, not a copy.
#[derive(Clone, Copy, Debug)]
pub struct MatView<'a, T> {
    pub buf: Buf<'a, T>,
    pub offset: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> MatView<'a, T> {
    /// The row-major [rows, cols] matrix starting at `offset`.
    pub fn rows(buf: Buf<'a, T>, offset: usize, cols: usize) -> Self {
        MatView { buf, offset, rs: cols, cs: 1 }
    }

    /// The transpose of the row-major [rows, cols] matrix starting at `offset`.
    pub fn rows_t(buf: Buf<'a, T>, offset: usize, cols: usize) -> Self {
        MatView { buf, offset, rs: 1, cs: cols }
    }
}

/// Host memory a kernel may borrow for one call (patch tiles, per-thread partial sums), recycled between
/// steps from the graph's pool so that a training step stops allocating after its first. A device
/// backend keeps its own workspace instead.
pub struct Workspace<'a, T>(pub(crate) &'a mut Pool<T>);

impl<T: Float> Workspace<'_, T> {
    /// `len` elements with unspecified contents.
    pub fn scratch(&mut self, len: usize) -> Vec<T> {
        self.0.scratch(len)
    }

    /// `len` zeros.
    pub fn zeroed(&mut self, len: usize) -> Vec<T> {
        self.0.zeroed(len)
    }

    /// Gives a buffer back.
    pub fn put(&mut self, v: Vec<T>) {
        self.0.put(v)
    }
}

/// The kernels of one device. Shapes are checked by the op before it calls; a kernel may assume them.
/// Every method writes only its `BufMut` arguments.
pub trait Backend<T: Float>: Send + Sync + std::fmt::Debug {
    /// A short name for messages ("cpu").
    fn name(&self) -> &'static str;

    /// `len` elements of this backend's own memory with unspecified contents, for the tape to keep values
    /// and gradients where the kernels run; `None` (the default, and the CPU's): the tape uses host memory.
    fn alloc(&self, _len: usize) -> Option<DevVec<T>> {
        None
    }

    /// Identifies the memory `alloc` serves from (None: the backend has none of its own), unique among the
    /// memories alive: caches of device copies are keyed by it (`ParamStore::on_device`; a cached copy keeps
    /// its memory alive, so the key cannot be reused while the copy exists).
    fn memory_id(&self) -> Option<usize> {
        None
    }

    /// Whether this backend computes in memory of its own (a GPU's), where each call's latency rather than a
    /// cache's size bounds the speed, so callers should cut work into few large calls.
    fn has_own_memory(&self) -> bool {
        self.memory_id().is_some()
    }

    /// Like `alloc`, for indices (a max pool's argmax).
    fn alloc_idx(&self, _len: usize) -> Option<DevVec<u32>> {
        None
    }

    /// out[m, n] = a[m, k] · b[k, n] (or += when `accumulate`), `out` row-major from `out_offset`.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        out: BufMut<T>,
        out_offset: usize,
        a: MatView<T>,
        b: MatView<T>,
        accumulate: bool,
    );

    /// Whether a product of `rows` rows by a weight is faster from the weight laid out by `prepack` (and worth
    /// keeping that copy for): no by default.
    fn prepacks_for(&self, _rows: usize) -> bool {
        false
    }

    /// `w` [k, n] (row-major) laid out for `gemm_prepacked`, or None where this backend has no such layout
    /// (the default) or not for T.
    fn prepack(&self, _w: &[T], _k: usize, _n: usize) -> Option<Prepacked> {
        None
    }

    /// out[m, n] = a[m, k] · w[k, n] (or += when `accumulate`) where `packed` is this backend's `prepack` of
    /// `w`; by default the plain product of `w`.
    #[allow(clippy::too_many_arguments)]
    fn gemm_prepacked(
        &self,
        m: usize,
        n: usize,
        k: usize,
        out: BufMut<T>,
        out_offset: usize,
        a: MatView<T>,
        w: MatView<T>,
        _packed: &Prepacked,
        accumulate: bool,
    ) {
        self.gemm(m, n, k, out, out_offset, a, w, accumulate)
    }

    /// y[r, j] += bias[j] for rows of `cols`, then z = y (when `keep_z`) and y = act(y).
    fn bias_act(
        &self,
        y: BufMut<T>,
        cols: usize,
        bias: Option<Buf<T>>,
        act: Option<UnaryOp>,
        keep_z: Option<BufMut<T>>,
    );

    /// y = op(x), elementwise.
    fn unary(&self, op: UnaryOp, x: Buf<T>, y: BufMut<T>);

    /// gx = gy ⊙ op'(x, y), or += when `accumulate`; `x` is the op's input, `y` its output.
    fn unary_backward(&self, op: UnaryOp, gy: Buf<T>, x: Buf<T>, y: Buf<T>, gx: BufMut<T>, accumulate: bool);

    /// One step of a recurrent cell on every row (equations and layouts in ops/recurrent.rs): the gates
    /// from the step's projections, the new state, and what the backward needs.
    fn rnn_step(&self, d: RnnDims, step: RnnStep<T>, out: RnnStepOut<T>);

    /// The backward of `rnn_step`: gate gradients from the state's, which become the gradients before the
    /// step (a masked row passes them through unchanged).
    fn rnn_step_backward(&self, d: RnnDims, grad: RnnStepGrad<T>);

    /// out[j] += Σ_r x[r, j] over rows of `cols`.
    fn col_sum_add(&self, out: BufMut<T>, x: Buf<T>, cols: usize);

    /// y = a op b, with a of shape `sa` and b of `sb` broadcast (NumPy rules) to `out`.
    #[allow(clippy::too_many_arguments)]
    fn binary(&self, op: BinaryOp, out: Shape, a: Buf<T>, sa: Shape, b: Buf<T>, sb: Shape, y: BufMut<T>);

    /// g += Σ_broadcast gy ⊙ ∂(a op b)/∂a (or /∂b when `wrt_b`), g shaped as that input.
    #[allow(clippy::too_many_arguments)]
    fn binary_backward(
        &self,
        op: BinaryOp,
        wrt_b: bool,
        out: Shape,
        gy: Buf<T>,
        a: Buf<T>,
        sa: Shape,
        b: Buf<T>,
        sb: Shape,
        g: BufMut<T>,
    );

    /// y = softmax (or log_softmax) of x along the middle axis of [outer, n, inner].
    fn softmax(&self, x: Buf<T>, y: BufMut<T>, dims: (usize, usize, usize), log: bool);

    /// gx += dy ⊙ ... for softmax: y ⊙ (dy − Σ dy⊙y); for log_softmax: dy − exp(y) ⊙ Σ dy.
    fn softmax_backward(&self, gy: Buf<T>, y: Buf<T>, gx: BufMut<T>, dims: (usize, usize, usize), log: bool);

    // ---- movement ----

    /// `blocks` runs of `len` elements: dst[d0 + i·ds ..][..len] = src[s0 + i·ss ..][..len] (or +=), with
    /// (s0, ss) = `src_at` and (d0, ds) = `dst_at`. Concat, slice and a reshape's gradient are this.
    #[allow(clippy::too_many_arguments)]
    fn copy_blocks(
        &self,
        src: Buf<T>,
        src_at: (usize, usize),
        dst: BufMut<T>,
        dst_at: (usize, usize),
        blocks: usize,
        len: usize,
        accumulate: bool,
    );

    /// y = x (of shape `s`) with its axes permuted: output axis i is input axis perm[i].
    fn permute(&self, x: Buf<T>, s: Shape, perm: [u8; MAX_RANK], y: BufMut<T>);

    /// gx += the gradient of `permute` (gy put back in x's layout).
    fn permute_backward(&self, gy: Buf<T>, s: Shape, perm: [u8; MAX_RANK], gx: BufMut<T>);

    /// y[o, k, j] = x[o, idx[k], j] over x viewed as [outer, n, inner].
    fn gather(&self, x: Buf<T>, idx: Buf<u32>, dims: (usize, usize, usize), y: BufMut<T>);

    /// gx[o, idx[k], j] += gy[o, k, j] (repeated indices add up).
    fn scatter_add(&self, gy: Buf<T>, idx: Buf<u32>, dims: (usize, usize, usize), gx: BufMut<T>);

    /// y[b, j] = Σ_l w[b, l] · table[ids[b, l], j] for dims (n, L, D).
    fn embedding_bag(&self, table: Buf<T>, ids: Buf<u32>, w: Buf<T>, dims: (usize, usize, usize), y: BufMut<T>);

    /// gtable[ids[b, l], j] += w[b, l] · gy[b, j] (ids with weight 0 skipped).
    fn embedding_bag_backward(
        &self,
        gy: Buf<T>,
        ids: Buf<u32>,
        w: Buf<T>,
        dims: (usize, usize, usize),
        gtable: BufMut<T>,
    );

    // ---- reductions and losses ----

    /// y[o, j] = sum, mean or max over k of x[o, k, j] (x viewed as [outer, n, inner]); max also writes
    /// the position k of each maximum into `arg`.
    fn reduce(&self, op: ReduceOp, x: Buf<T>, y: BufMut<T>, arg: Option<BufMut<u32>>, dims: (usize, usize, usize));

    /// gx += dy broadcast over k (sum), dy / n (mean), or dy at the maximum's position (max, from `arg`).
    fn reduce_backward(&self, op: ReduceOp, gy: Buf<T>, arg: Buf<u32>, gx: BufMut<T>, dims: (usize, usize, usize));

    /// The mean loss of predictions `x` [rows, cols] against dense targets `t` or class `labels`, each row's
    /// loss times `w[row]` when given. The softmax kinds write the probabilities into `probs`.
    #[allow(clippy::too_many_arguments)]
    fn loss(
        &self,
        kind: LossKind,
        x: Buf<T>,
        t: Option<Buf<T>>,
        labels: Option<Buf<u32>>,
        w: Option<Buf<T>>,
        rows_cols: (usize, usize),
        probs: Option<BufMut<T>>,
    ) -> T;

    /// gx += dy · ∂loss/∂x, `dy` the loss's own gradient; `probs` as `loss` wrote them.
    #[allow(clippy::too_many_arguments)]
    fn loss_backward(
        &self,
        kind: LossKind,
        dy: T,
        x: Buf<T>,
        t: Option<Buf<T>>,
        labels: Option<Buf<u32>>,
        probs: Buf<T>,
        w: Option<Buf<T>>,
        rows_cols: (usize, usize),
        gx: BufMut<T>,
    );

    // ---- images (NHWC) ----

    /// y = the maximum of each window of x; `arg` the flat index in x of each maximum.
    fn max_pool2d(&self, g: &Window, x: Buf<T>, y: BufMut<T>, arg: BufMut<u32>);

    /// gx[arg[o]] += gy[o]; with `overwrite`, gx holds no gradient yet and is written whole.
    fn max_pool2d_backward(&self, g: &Window, gy: Buf<T>, arg: Buf<u32>, gx: BufMut<T>, overwrite: bool);

    /// y = the mean of each window of x over the positions inside the input.
    fn avg_pool2d(&self, g: &Window, x: Buf<T>, y: BufMut<T>);

    /// gx[i] += gy[o] / count(o) for every i in window o.
    fn avg_pool2d_backward(&self, g: &Window, gy: Buf<T>, gx: BufMut<T>);

    /// y = γ·(x − μ)·inv + β per channel (the last axis, `c` wide), inv = 1/√(σ² + eps); μ and σ² from
    /// `stats` or else the batch's (biased) ones. `saved` gets [μ (c), σ² (c), inv (c)].
    #[allow(clippy::too_many_arguments)]
    fn batch_norm(
        &self,
        x: Buf<T>,
        gamma: Buf<T>,
        beta: Buf<T>,
        stats: Option<(Buf<T>, Buf<T>)>,
        eps: f64,
        c: usize,
        saved: BufMut<T>,
        y: BufMut<T>,
    );

    /// sums = [Σ dy (c), Σ dy·x̂ (c)] over rows, x̂ = (x − μ)·inv from `saved`; overwritten.
    fn batch_norm_sums(&self, x: Buf<T>, gy: Buf<T>, saved: Buf<T>, c: usize, sums: BufMut<T>);

    /// gx += γ·inv/m · (m·dy − Σ dy − x̂·Σ dy·x̂) with batch statistics, γ·inv·dy with given ones.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward_x(
        &self,
        x: Buf<T>,
        gy: Buf<T>,
        gamma: Buf<T>,
        saved: Buf<T>,
        sums: Buf<T>,
        c: usize,
        given_stats: bool,
        gx: BufMut<T>,
    );

    /// For given statistics that need gradients: dμ −= γ·inv·Σ dy, or (`variance`) dσ² −= ½·γ·inv³·Σ dy·x̂·…
    /// (see ops/batchnorm.rs).
    fn batch_norm_backward_stat(
        &self,
        variance: bool,
        gamma: Buf<T>,
        saved: Buf<T>,
        sums: Buf<T>,
        c: usize,
        g: BufMut<T>,
    );

    /// y = γ·(x − μ)·r + β per row of `d` values, r = 1/√(σ² + eps) (biased σ²); `saved` gets [μ, r] per
    /// row (ops/layer_norm.rs).
    #[allow(clippy::too_many_arguments)]
    fn layer_norm(&self, x: Buf<T>, gamma: Buf<T>, beta: Buf<T>, eps: f64, d: usize, saved: BufMut<T>, y: BufMut<T>);

    /// sums = [Σ dy·x̂ (d), Σ dy (d)] over rows, x̂ from `saved`; overwritten.
    fn layer_norm_sums(&self, x: Buf<T>, gy: Buf<T>, saved: Buf<T>, d: usize, sums: BufMut<T>);

    /// gx += r·(g − mean(g) − x̂·mean(g·x̂)) per row, g = γ·dy.
    fn layer_norm_backward_x(&self, x: Buf<T>, gy: Buf<T>, gamma: Buf<T>, saved: Buf<T>, d: usize, gx: BufMut<T>);

    /// y = softmax(Q·Kᵀ/√dh + bias)·V per sequence and head, q, k, v and y [b·t, heads·dh], bias [b·t] per
    /// key; the weights P [b, heads, t, t] into `p` when given (ops/attention.rs).
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: Buf<T>,
        k: Buf<T>,
        v: Buf<T>,
        bias: Buf<T>,
        dims: crate::ops::AttentionDims,
        p: Option<BufMut<T>>,
        y: BufMut<T>,
    );

    /// grads = [dQ, dK, dV] (overwritten) from dO = gy and the kept weights P.
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        q: Buf<T>,
        k: Buf<T>,
        v: Buf<T>,
        p: Buf<T>,
        gy: Buf<T>,
        dims: crate::ops::AttentionDims,
        grads: BufMut<T>,
    );

    /// y = act(conv2d(x, w) + b): x [n, h, w, c], w [kh, kw, c, f], y [n, oh, ow, f] (ops/conv.rs).
    #[allow(clippy::too_many_arguments)]
    fn conv2d(
        &self,
        g: &Window,
        x: Buf<T>,
        w: Buf<T>,
        b: Option<Buf<T>>,
        act: Option<UnaryOp>,
        y: BufMut<T>,
        ws: &mut Workspace<T>,
    );

    /// The gradients of `conv2d` from gy: gx += dx when given; dwb [k·f + f] += [dw, db] (only the parts
    /// `need_w_b` asks for need be right).
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward(
        &self,
        g: &Window,
        x: Buf<T>,
        w: Buf<T>,
        b: Option<Buf<T>>,
        act: Option<UnaryOp>,
        y: Buf<T>,
        gy: Buf<T>,
        gx: Option<BufMut<T>>,
        dwb: BufMut<T>,
        need_w_b: (bool, bool),
        ws: &mut Workspace<T>,
    );

    /// max_pool2d(act(conv2d(x, w) + b)) with windows `pool` = strides: y, the conv-output index
    /// (row·f + channel) of each maximum in `arg`, and z there in `zs` when given.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_max_pool(
        &self,
        g: &Window,
        pool: (usize, usize),
        x: Buf<T>,
        w: Buf<T>,
        b: Option<Buf<T>>,
        act: Option<UnaryOp>,
        y: BufMut<T>,
        arg: BufMut<u32>,
        zs: Option<BufMut<T>>,
        ws: &mut Workspace<T>,
    );

    /// The gradients of `conv2d_max_pool`, as `conv2d_backward`.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_max_pool_backward(
        &self,
        g: &Window,
        pool: (usize, usize),
        x: Buf<T>,
        w: Buf<T>,
        b: Option<Buf<T>>,
        act: Option<UnaryOp>,
        y: Buf<T>,
        arg: Buf<u32>,
        zs: Buf<T>,
        gy: Buf<T>,
        gx: Option<BufMut<T>>,
        dwb: BufMut<T>,
        need_w_b: (bool, bool),
        ws: &mut Workspace<T>,
    );

    // ---- optimizer steps ----

    /// Whether `update` takes step `u`: false (the default, and the CPU's) where the backend leaves
    /// optimizers to the host, where kiln's optimizers run on the parameters directly.
    fn can_update(&self, _u: &Update) -> bool {
        false
    }

    /// Applies `u` to the parameter `w` in place, from its gradient `g` and the optimizer's two slots `s1`,
    /// `s2` (as long as `w`; updated in place). Called only where `can_update(&u)` said yes.
    fn update(&self, u: Update, _w: BufMut<T>, _g: Buf<T>, _s1: BufMut<T>, _s2: BufMut<T>) {
        unreachable!("{}: update({u:?}) on a backend that cannot take it (can_update)", self.name())
    }

    // ---- quantized weights ----

    /// y[n, rows] = x[n, cols] · Wᵀ for a block-quantized W (`QMatrix`); f32 only.
    fn matmul_q(&self, w: &QMatrix, x: Buf<T>, n: usize, y: BufMut<T>) -> Result<()>;
}
