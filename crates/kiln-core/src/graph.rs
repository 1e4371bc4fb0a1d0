//! The tape: every op appends a node holding its result; `backward` walks the nodes in reverse and each
//! op's backward (in the op's own file, next to its forward) adds its input gradients.
//!
//! Values and gradients live in flat arenas indexed by node id. A `Var` is a `Copy` handle into them, valid
//! until the next `reset`. Parameters persist across resets; everything else goes back to the pool.
//!
//! With a backend that has its own memory (CUDA), the ops that run there keep their outputs and gradients
//! in it (`tape_mem.rs`), and each parameter is copied to it once per change (`use_param`), so a training
//! step moves only its inputs, the parameters' gradients (for the optimizer, on the host) and the loss; or,
//! with the optimizer's step taken there (`update_on_backend`, graph/update.rs), its inputs, the parameters
//! coming down and the loss.

mod update;

use crate::backend::{Backend, Buf, BufMut, Cpu, DevVec};
use crate::ops::{BinaryOp, Conv2dArgs, LossKind, PoolArgs, ReduceOp, RnnArgs, UnaryOp, backward_node};
use crate::params::{Param, ParamId, ParamStore};
use crate::pool::Pool;
use crate::tape_mem::Mem;
use crate::{Error, Float, Result, Rng, Shape, Tensor};
use std::sync::Arc;

/// A handle to a value on the tape of one `Graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(pub(crate) u32);

impl Var {
    pub(crate) fn id(self) -> usize {
        self.0 as usize
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Leaf,
    Param(usize),
    Unary(Var, UnaryOp),
    Binary(Var, Var, BinaryOp),
    MatMul(Var, Var),
    Reduce(Var, ReduceOp, Option<usize>),
    Reshape(Var),
    Permute(Var, [u8; crate::MAX_RANK]),
    /// Inputs are listed in `aux_i`.
    Concat(usize),
    Slice(Var, usize, usize),
    /// Indices are in `aux_i`.
    IndexSelect(Var, usize),
    Softmax(Var, usize),
    LogSoftmax(Var, usize),
    Linear(Var, Var, Option<Var>, Option<UnaryOp>),
    Conv2d(Conv2dArgs),
    /// Pool window (= strides); argmax in `aux_i`, z at the argmax in `aux_f` when the activation needs it.
    Conv2dMaxPool(Conv2dArgs, (usize, usize)),
    MaxPool2d(Var, PoolArgs),
    AvgPool2d(Var, PoolArgs),
    /// The scaled keep-mask is in `aux_f`.
    Dropout(Var),
    /// x, gamma, beta, and in inference mode the moving mean and variance.
    BatchNorm(Var, Var, Var, Option<(Var, Var)>, f64),
    Loss(LossKind, Var, Option<Var>),
    /// A recurrent layer over a whole sequence; states and saved gates in `aux_f`.
    Rnn(RnnArgs),
    /// The table and the bag length; ids in `aux_i`, weights in `aux_f`.
    EmbeddingBag(Var, usize),
    /// x, gamma, beta; each row's mean and 1/std in `aux_f`.
    LayerNorm(Var, Var, Var),
    /// q, k, v; the attention weights in `aux_f` when recorded.
    Attention(Var, Var, Var, crate::ops::AttentionDims),
}

impl Op {
    /// A short name per kind of op, for profiles.
    pub(crate) fn kind(&self) -> (usize, &'static str) {
        match self {
            Op::Leaf => (0, "input"),
            Op::Param(_) => (1, "param"),
            Op::Unary(..) => (2, "unary"),
            Op::Binary(..) => (3, "binary"),
            Op::MatMul(..) => (4, "matmul"),
            Op::Reduce(..) => (5, "reduce"),
            Op::Reshape(_) => (6, "reshape"),
            Op::Permute(..) => (7, "permute"),
            Op::Concat(_) => (8, "concat"),
            Op::Slice(..) => (9, "slice"),
            Op::IndexSelect(..) => (10, "index_select"),
            Op::Softmax(..) => (11, "softmax"),
            Op::LogSoftmax(..) => (12, "log_softmax"),
            Op::Linear(..) => (13, "linear"),
            Op::Conv2d(_) => (14, "conv2d"),
            Op::MaxPool2d(..) => (15, "max_pool2d"),
            Op::AvgPool2d(..) => (16, "avg_pool2d"),
            Op::Dropout(_) => (17, "dropout"),
            Op::BatchNorm(..) => (18, "batch_norm"),
            Op::Loss(..) => (19, "loss"),
            Op::Conv2dMaxPool(..) => (20, "conv2d+max_pool2d"),
            Op::Rnn(a) => (21, a.cell.name()),
            Op::EmbeddingBag(..) => (22, "embedding_bag"),
            Op::LayerNorm(..) => (23, "layer_norm"),
            Op::Attention(..) => (24, "attention"),
        }
    }
}

const OP_KINDS: usize = 25;

/// Seconds spent per kind of op, forward and backward, while profiling is on.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    names: [&'static str; OP_KINDS],
    forward: [f64; OP_KINDS],
    backward: [f64; OP_KINDS],
    calls: [u64; OP_KINDS],
}

impl Profile {
    /// (op, forward seconds, backward seconds, forward calls), slowest first.
    pub fn rows(&self) -> Vec<(&'static str, f64, f64, u64)> {
        let mut r: Vec<_> = (0..OP_KINDS)
            .filter(|&i| self.calls[i] > 0)
            .map(|i| (self.names[i], self.forward[i], self.backward[i], self.calls[i]))
            .collect();
        r.sort_by(|a, b| (b.1 + b.2).total_cmp(&(a.1 + a.2)));
        r
    }
}

pub(crate) struct Node {
    pub op: Op,
    pub shape: Shape,
    pub requires_grad: bool,
}

pub struct Graph<T: Float> {
    /// Shared with inference tapes (see params.rs); written only through `Arc::make_mut`.
    params: Arc<ParamStore<T>>,
    param_grads: Vec<Vec<T>>,
    /// The parameters' copies in the backend's memory that this step's ops read (`use_param` takes them from
    /// the store, which makes one per change of the parameter and shares it between tapes).
    param_dev: Vec<Option<Arc<DevVec<T>>>>,
    /// A parameter's gradient while it is in the backend's memory (backward wrote it there): copied into
    /// `param_grads` when the host reads it (`settle`), so a step copies each gradient down once.
    param_gdev: Vec<Option<DevVec<T>>>,
    /// Gradients that are logically zero but not yet written: the first op to write one overwrites it
    /// instead of adding to zeros, which saves a pass over memory per parameter and step.
    param_fresh: Vec<bool>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) values: Vec<Mem<T>>,
    grads: Vec<Mem<T>>,
    pub(crate) aux_f: Vec<Mem<T>>,
    pub(crate) aux_i: Vec<Mem<u32>>,
    pub(crate) pool: Pool<T>,
    pub(crate) ipool: Pool<u32>,
    record: bool,
    pub(crate) rng: Rng,
    profile: Option<(Profile, Option<std::time::Instant>)>,
    /// The kernels the ops behind the seam call (see backend/mod.rs).
    pub(crate) backend: Arc<dyn Backend<T>>,
}

/// The backend new f32 graphs start with (None: the CPU): the command line's `--device` (kiln/src/device.rs).
static DEFAULT_F32: std::sync::RwLock<Option<Arc<dyn Backend<f32>>>> = std::sync::RwLock::new(None);

/// Makes every f32 graph created from now on run on `backend` (None: the CPU), as `--threads` sizes every
/// later computation. f64 graphs (gradient checks) stay on the CPU.
pub fn set_default_backend(backend: Option<Arc<dyn Backend<f32>>>) {
    *DEFAULT_F32.write().unwrap_or_else(|e| e.into_inner()) = backend;
}

fn default_backend<T: Float>() -> Arc<dyn Backend<T>> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        && let Some(b) = DEFAULT_F32.read().unwrap_or_else(|e| e.into_inner()).clone()
    {
        // T is f32, so this is the same type.
        let any: Box<dyn std::any::Any> = Box::new(b);
        return *any.downcast::<Arc<dyn Backend<T>>>().expect("T is f32");
    }
    Arc::new(Cpu)
}

impl<T: Float> Default for Graph<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Graph<T> {
    pub fn new() -> Self {
        Graph {
            params: Arc::new(ParamStore::new()),
            param_grads: Vec::new(),
            param_dev: Vec::new(),
            param_gdev: Vec::new(),
            param_fresh: Vec::new(),
            nodes: Vec::new(),
            values: Vec::new(),
            grads: Vec::new(),
            aux_f: Vec::new(),
            aux_i: Vec::new(),
            pool: Pool::new(),
            ipool: Pool::new(),
            record: true,
            rng: Rng::new(0),
            profile: None,
            backend: default_backend(),
        }
    }

    /// Runs the ops behind the device seam on `backend` from now on (a new graph uses the process's default:
    /// [`Cpu`], or for f32 what [`set_default_backend`] set).
    pub fn set_backend(&mut self, backend: Arc<dyn Backend<T>>) {
        self.reset();
        // Gradients still in the old backend's memory come to the host, where every backend can add to them.
        for i in 0..self.param_gdev.len() {
            self.settle(i);
        }
        self.backend = backend;
    }

    pub fn backend(&self) -> &dyn Backend<T> {
        &*self.backend
    }

    /// Whether new ops are recorded for `backward`. With recording off (inference), no op keeps what only
    /// its backward would need, and nothing gets a gradient.
    pub fn set_recording(&mut self, on: bool) {
        self.record = on;
    }

    pub fn is_recording(&self) -> bool {
        self.record
    }

    /// Turns per-op timers on or off. Forward time of an op is measured from the previous op's end, so it
    /// includes whatever the caller did in between (gathering a batch, for inputs).
    pub fn set_profiling(&mut self, on: bool) {
        self.profile = if on { Some((Profile::default(), None)) } else { None };
    }

    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_ref().map(|p| &p.0)
    }

    /// Seeds the generator used by random ops (dropout).
    pub fn seed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Drops every node; parameters stay. All buffers go back to the pool for the next step.
    pub fn reset(&mut self) {
        for v in self.values.drain(..).chain(self.grads.drain(..)).chain(self.aux_f.drain(..)) {
            v.recycle(&mut self.pool);
        }
        for v in self.aux_i.drain(..) {
            v.recycle(&mut self.ipool);
        }
        self.nodes.clear();
        self.param_dev.iter_mut().for_each(|d| *d = None);
        if let Some((_, last)) = &mut self.profile {
            *last = None;
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    // ---- parameters ----

    pub fn add_param(&mut self, name: &str, shape: &[usize], value: Vec<T>, trainable: bool) -> Result<ParamId> {
        let n = value.len();
        let id = Arc::make_mut(&mut self.params).add(name, shape, value, trainable)?;
        self.param_grads.resize_with(id.0, Vec::new);
        self.param_grads.push(vec![T::ZERO; if trainable { n } else { 0 }]);
        self.param_fresh.resize(id.0 + 1, false);
        self.param_dev.resize_with(id.0 + 1, || None);
        self.param_gdev.resize_with(id.0 + 1, || None);
        Ok(id)
    }

    pub fn params(&self) -> &[Param<T>] {
        self.params.all()
    }

    /// The parameter store, by name as well as by id.
    pub fn store(&self) -> &ParamStore<T> {
        &self.params
    }

    /// Another handle on this graph's parameters, for an inference tape (`attach`).
    pub fn shared_params(&self) -> Arc<ParamStore<T>> {
        Arc::clone(&self.params)
    }

    /// Makes this tape read `params` (another graph's, shared): for inference from several threads at once.
    /// Parameters get no gradients on such a tape. Call `detach` when done, so that the owner's next
    /// training step does not have to copy the store.
    pub fn attach(&mut self, params: Arc<ParamStore<T>>) {
        self.reset();
        self.params = params;
        self.param_gdev.clear();
        self.param_grads.clear();
        self.param_fresh.clear();
    }

    /// Lets go of an attached store (see `attach`).
    pub fn detach(&mut self) {
        self.reset();
        self.params = Arc::new(ParamStore::new());
    }

    pub fn param(&self, p: ParamId) -> &Param<T> {
        self.params.get(p)
    }

    /// Changes a parameter in place (copy-on-write when an inference tape still shares the store).
    pub fn param_mut(&mut self, p: ParamId) -> &mut Param<T> {
        // The ops after this read the new values (the store forgets its device copy too).
        if let Some(d) = self.param_dev.get_mut(p.0) {
            *d = None;
        }
        Arc::make_mut(&mut self.params).get_mut(p)
    }

    /// The gradient accumulated for `p` since the last `zero_grads`.
    pub fn param_grad(&mut self, p: ParamId) -> &[T] {
        self.settle(p.0);
        &self.param_grads[p.0]
    }

    /// Parameters and their gradients together, for optimizers.
    pub fn params_and_grads_mut(&mut self) -> (&mut [Param<T>], &mut [Vec<T>]) {
        for i in 0..self.param_grads.len() {
            self.settle(i);
        }
        self.param_dev.iter_mut().for_each(|d| *d = None);
        (Arc::make_mut(&mut self.params).all_mut(), &mut self.param_grads)
    }

    /// Makes every gradient zero. Cheap: the buffers are only marked, and the next backward overwrites them.
    pub fn zero_grads(&mut self) {
        self.param_fresh.fill(true);
        self.param_gdev.iter_mut().for_each(|d| *d = None);
    }

    /// Brings a gradient to the host (from the backend's memory, or the zeros a marked one stands for)
    /// before anyone reads it there.
    fn settle(&mut self, i: usize) {
        settle_grad(&mut self.param_gdev[i], &mut self.param_fresh[i], &mut self.param_grads[i]);
    }

    // ---- leaves ----

    /// Puts a parameter on the tape without copying it.
    pub fn use_param(&mut self, p: ParamId) -> Var {
        if self.param_dev.len() <= p.0 {
            self.param_dev.resize_with(p.0 + 1, || None);
        }
        // The backend's memory tags the store's copy: another backend reading the store makes its own.
        let copy = self.backend.memory_id().and_then(|key| self.params.on_device(p, key, |w| self.upload(&w.value)));
        self.param_dev[p.0] = copy;
        let param = self.params.get(p);
        // Only the store's owner keeps gradients (an attached inference tape has none).
        let (shape, trainable) = (param.shape, param.trainable && p.0 < self.param_grads.len());
        self.push(Op::Param(p.0), shape, Vec::new(), trainable)
    }

    /// A value that gets no gradient (a batch of inputs or targets).
    pub fn input(&mut self, shape: &[usize], data: &[T]) -> Result<Var> {
        let shape = Shape::new(shape)?;
        if data.len() != shape.numel() {
            return Err(Error::Shape(format!("input: {} values given for shape {shape}", data.len())));
        }
        // Straight from `data` to the backend's memory when it has some (no host copy on the way).
        let v: Mem<T> = match self.upload(data) {
            Some(d) => d.into(),
            None => self.pool.copied(data).into(),
        };
        Ok(self.push(Op::Leaf, shape, v, false))
    }

    /// Like `input`, but fills the buffer in place (saves a copy when gathering a batch).
    pub fn input_with(&mut self, shape: &[usize], fill: impl FnOnce(&mut [T])) -> Result<Var> {
        let shape = Shape::new(shape)?;
        let mut v = self.pool.zeroed(shape.numel());
        fill(&mut v);
        let v = self.put_on_backend(v);
        Ok(self.push(Op::Leaf, shape, v, false))
    }

    /// A value that gets a gradient, read after `backward` by `input_grad`: what attributions differentiate
    /// by (an image, or a layer's output put in its place). Recording must be on.
    pub fn input_needing_grad(&mut self, shape: &[usize], data: &[T]) -> Result<Var> {
        let v = self.input(shape, data)?;
        self.nodes[v.id()].requires_grad = self.record;
        Ok(v)
    }

    /// The gradient `backward` left on a value made by `input_needing_grad` (zeros where nothing reached it).
    pub fn input_grad(&self, v: Var) -> Vec<T> {
        let g = &self.grads[v.id()];
        if g.is_empty() { vec![T::ZERO; self.nodes[v.id()].shape.numel()] } else { g.host().to_vec() }
    }

    pub fn tensor(&mut self, t: &Tensor<T>) -> Result<Var> {
        self.input(t.shape(), t.data())
    }

    // ---- reading results ----

    pub fn shape(&self, v: Var) -> Shape {
        self.nodes[v.id()].shape
    }

    pub fn value(&self, v: Var) -> &[T] {
        value_of(&self.nodes, &self.values, self.params.all(), v.id())
    }

    /// The value of `v` as a buffer view, for a `Backend` call.
    pub(crate) fn buf(&self, v: Var) -> Buf<'_, T> {
        buf_of(&self.nodes, &self.values, self.params.all(), &self.param_dev, v.id())
    }

    /// An output buffer of `len` elements with unspecified contents, in the backend's memory when it has
    /// its own (see the module header), for an op to fill through a backend call and `push`.
    pub(crate) fn out(&mut self, len: usize) -> Mem<T> {
        backend_mem(&*self.backend, &mut self.pool, len)
    }

    /// `v` where the backend computes: copied into its own memory when it has some (and `v` goes back to
    /// the pool), else `v` itself.
    pub(crate) fn put_on_backend(&mut self, v: Vec<T>) -> Mem<T> {
        match self.upload(&v) {
            Some(d) => {
                self.pool.put(v);
                d.into()
            }
            None => v.into(),
        }
    }

    /// A copy of `data` in the backend's memory; None when it has none of its own (or `data` is empty).
    fn upload(&self, data: &[T]) -> Option<DevVec<T>> {
        upload_to(&*self.backend, data)
    }

    /// `out` for indices.
    pub(crate) fn out_idx(&mut self, len: usize) -> Mem<u32> {
        match self.backend.alloc_idx(len) {
            Some(d) => d.into(),
            None => self.ipool.scratch(len).into(),
        }
    }

    pub fn to_tensor(&self, v: Var) -> Tensor<T> {
        Tensor::new(self.shape(v).dims(), self.value(v).to_vec()).expect("node shape matches its value")
    }

    /// The scalar held by a one-element node (a loss).
    pub fn scalar(&self, v: Var) -> T {
        self.value(v)[0]
    }

    /// The parameter `v` reads, when it is a parameter's node (`use_param`).
    pub(crate) fn param_of(&self, v: Var) -> Option<ParamId> {
        match self.nodes[v.id()].op {
            Op::Param(i) => Some(ParamId(i)),
            _ => None,
        }
    }

    pub(crate) fn requires_grad(&self, v: Var) -> bool {
        self.nodes[v.id()].requires_grad
    }

    /// Appends a node. `requires_grad` is dropped when recording is off.
    pub(crate) fn push(&mut self, op: Op, shape: Shape, value: impl Into<Mem<T>>, requires_grad: bool) -> Var {
        let value = value.into();
        debug_assert!(matches!(op, Op::Param(_) | Op::Reshape(_)) || value.len() == shape.numel());
        if let Some((p, last)) = &mut self.profile {
            let now = std::time::Instant::now();
            let (k, name) = op.kind();
            p.names[k] = name;
            p.calls[k] += 1;
            if let Some(t) = last {
                p.forward[k] += (now - *t).as_secs_f64();
            }
            *last = Some(now);
        }
        self.nodes.push(Node { op, shape, requires_grad: requires_grad && self.record });
        self.values.push(value);
        self.grads.push(Mem::default());
        self.aux_f.push(Mem::default());
        self.aux_i.push(Mem::default());
        Var((self.nodes.len() - 1) as u32)
    }

    /// Gives a float buffer back to the pool, or keeps it on the node for backward when recording.
    pub(crate) fn keep_aux_f(&mut self, v: Var, buf: impl Into<Mem<T>>) {
        let buf = buf.into();
        if self.nodes[v.id()].requires_grad {
            self.aux_f[v.id()] = buf;
        } else {
            buf.recycle(&mut self.pool);
        }
    }

    pub(crate) fn keep_aux_i(&mut self, v: Var, buf: impl Into<Mem<u32>>) {
        let buf = buf.into();
        if self.nodes[v.id()].requires_grad {
            self.aux_i[v.id()] = buf;
        } else {
            buf.recycle(&mut self.ipool);
        }
    }

    /// Extra floats an op saved (batch-norm keeps its batch mean and variance here).
    pub fn saved(&self, v: Var) -> &[T] {
        self.aux_f[v.id()].host()
    }

    // ---- backward ----

    /// Adds d`loss`/d`param` into every trainable parameter's gradient. `loss` must hold one value.
    pub fn backward(&mut self, loss: Var) -> Result<()> {
        let shape = self.shape(loss);
        if shape.numel() != 1 {
            return Err(Error::Shape(format!("backward needs a scalar loss, got shape {shape}")));
        }
        if !self.requires_grad(loss) {
            return Err(Error::Invalid(
                "backward: the loss does not depend on any trainable parameter (or recording is off)".into(),
            ));
        }
        let seed = self.pool.filled(1, T::ONE).into();
        let old = std::mem::replace(&mut self.grads[loss.id()], seed);
        old.recycle(&mut self.pool);
        for i in (0..=loss.id()).rev() {
            if !self.nodes[i].requires_grad || self.grads[i].is_empty() {
                continue;
            }
            if matches!(self.nodes[i].op, Op::Param(_) | Op::Leaf) {
                continue;
            }
            let t = self.profile.as_ref().map(|_| std::time::Instant::now());
            // A reshape's gradient is its output's gradient, reshaped: hand the buffer over when the input
            // has none yet, instead of copying it.
            if let Op::Reshape(a) = self.nodes[i].op
                && self.nodes[a.id()].requires_grad
                && !matches!(self.nodes[a.id()].op, Op::Param(_))
                && self.grads[a.id()].is_empty()
            {
                self.grads[a.id()] = std::mem::take(&mut self.grads[i]);
                continue;
            }
            let gy = std::mem::take(&mut self.grads[i]);
            let mut ctx = BackCtx {
                backend: &*self.backend,
                nodes: &self.nodes,
                values: &self.values,
                params: self.params.all(),
                param_dev: &self.param_dev,
                aux_f: &self.aux_f,
                aux_i: &self.aux_i,
                grads: &mut self.grads,
                param_grads: &mut self.param_grads,
                param_gdev: &mut self.param_gdev,
                param_fresh: &mut self.param_fresh,
                pool: &mut self.pool,
            };
            backward_node(&mut ctx, i, &gy);
            if let (Some((p, _)), Some(t)) = (&mut self.profile, t) {
                p.backward[self.nodes[i].op.kind().0] += t.elapsed().as_secs_f64();
            }
            gy.recycle(&mut self.pool);
        }
        Ok(())
    }

    /// Bytes the pool holds (values of the last step are counted once they are reset).
    pub fn pooled_bytes(&self) -> usize {
        self.pool.held_bytes() + self.ipool.held_bytes()
    }
}

impl Graph<f32> {
    /// Stores the kernel `p` as `dtype`, block-quantized or halves (see `ParamStore::quantize`): inference only.
    pub fn quantize_param(&mut self, p: ParamId, dtype: crate::DType) -> Result<()> {
        Arc::make_mut(&mut self.params).quantize(p, dtype)?;
        if let Some(d) = self.param_dev.get_mut(p.0) {
            *d = None;
        }
        if let Some(g) = self.param_grads.get_mut(p.0) {
            *g = Vec::new();
        }
        if let Some(g) = self.param_gdev.get_mut(p.0) {
            *g = None;
        }
        Ok(())
    }
}

fn value_of<'a, T: Float>(nodes: &[Node], values: &'a [Mem<T>], params: &'a [Param<T>], id: usize) -> &'a [T] {
    match nodes[id].op {
        Op::Param(p) => &params[p].value,
        Op::Reshape(a) => value_of(nodes, values, params, a.id()),
        _ => values[id].host(),
    }
}

/// A buffer of `len` elements (unspecified contents) where `backend` computes: its own memory when it has
/// some, else host memory from `pool`.
fn backend_mem<T: Float>(backend: &dyn Backend<T>, pool: &mut Pool<T>, len: usize) -> Mem<T> {
    match backend.alloc(len) {
        Some(d) => d.into(),
        None => pool.scratch(len).into(),
    }
}

/// A copy of `data` in `backend`'s memory; None when it has none of its own (or `data` is empty).
fn upload_to<T: Float>(backend: &dyn Backend<T>, data: &[T]) -> Option<DevVec<T>> {
    let mut d = backend.alloc(data.len()).filter(|_| !data.is_empty())?;
    d.copy_from(data);
    Some(d)
}

/// Moves a parameter's gradient into `backend`'s memory (`dev`) when it is not there yet and the backend has
/// memory of its own: a fresh one (logically zero) as zeros, unless the caller `overwrite`s it whole, else
/// the host's values. Without backend memory a fresh one is zeroed on the host (unless `overwrite`). Takes
/// the fresh mark and returns it.
fn grad_to_backend<T: Float>(
    backend: &dyn Backend<T>,
    dev: &mut Option<DevVec<T>>,
    fresh: &mut bool,
    host: &mut [T],
    overwrite: bool,
) -> bool {
    let fresh = std::mem::take(fresh);
    let zero = fresh && !overwrite;
    if dev.is_none()
        && let Some(mut d) = backend.alloc(host.len())
    {
        if zero {
            d.zero()
        } else if !fresh {
            d.copy_from(host)
        }
        *dev = Some(d);
    }
    if dev.is_none() && zero {
        host.fill(T::ZERO);
    }
    fresh
}

/// Brings a parameter's gradient to the host: from the backend's memory when it is there, or as the zeros a
/// fresh one stands for.
fn settle_grad<T: Float>(dev: &mut Option<DevVec<T>>, fresh: &mut bool, host: &mut [T]) {
    if let Some(d) = dev.take() {
        d.copy_to(host);
    }
    if std::mem::take(fresh) {
        host.fill(T::ZERO);
    }
}

/// `value_of` as a view for a backend call: where the value lives (a parameter's device copy when it has
/// one).
fn buf_of<'a, T: Float>(
    nodes: &[Node],
    values: &'a [Mem<T>],
    params: &'a [Param<T>],
    param_dev: &'a [Option<Arc<DevVec<T>>>],
    id: usize,
) -> Buf<'a, T> {
    match nodes[id].op {
        Op::Param(p) => match param_dev.get(p).and_then(Option::as_ref) {
            Some(d) => Buf::Dev(d.view()),
            None => Buf::Host(&params[p].value),
        },
        Op::Reshape(a) => buf_of(nodes, values, params, param_dev, a.id()),
        _ => values[id].view(),
    }
}

/// What an op's backward sees: values read-only, gradients writable.
pub(crate) struct BackCtx<'a, T: Float> {
    pub backend: &'a dyn Backend<T>,
    pub nodes: &'a [Node],
    values: &'a [Mem<T>],
    params: &'a [Param<T>],
    param_dev: &'a [Option<Arc<DevVec<T>>>],
    pub aux_f: &'a [Mem<T>],
    pub aux_i: &'a [Mem<u32>],
    grads: &'a mut [Mem<T>],
    param_grads: &'a mut [Vec<T>],
    param_gdev: &'a mut [Option<DevVec<T>>],
    param_fresh: &'a mut [bool],
    pub pool: &'a mut Pool<T>,
}

impl<'a, T: Float> BackCtx<'a, T> {
    pub fn value(&self, v: Var) -> &'a [T] {
        value_of(self.nodes, self.values, self.params, v.id())
    }

    pub fn buf(&self, v: Var) -> Buf<'a, T> {
        buf_of(self.nodes, self.values, self.params, self.param_dev, v.id())
    }

    pub fn out_buf(&self, node: usize) -> Buf<'a, T> {
        buf_of(self.nodes, self.values, self.params, self.param_dev, node)
    }

    /// What the op of `node` kept for its backward (`keep_aux_f`).
    pub fn aux_buf(&self, node: usize) -> Buf<'a, T> {
        self.aux_f[node].view()
    }

    /// The indices the op of `node` kept for its backward (`keep_aux_i`).
    pub fn aux_i_buf(&self, node: usize) -> Buf<'a, u32> {
        self.aux_i[node].view()
    }

    /// A scratch buffer of `len` elements (unspecified contents) where the backend computes: its own memory
    /// when it has some, else from the pool. Give it back with `put`.
    pub fn scratch(&mut self, len: usize) -> Mem<T> {
        backend_mem(self.backend, self.pool, len)
    }

    /// Gives back a buffer from `scratch`.
    pub fn put(&mut self, m: Mem<T>) {
        m.recycle(self.pool)
    }

    /// Parameter `p`'s gradient as a view, in the backend's memory when it has its own (the gradient is moved
    /// there on first use in a step), and whether it was fresh (logically zero). A fresh one is written as
    /// zeros first unless the caller `overwrite`s it whole.
    fn param_grad_buf(&mut self, p: usize, overwrite: bool) -> (BufMut<'_, T>, bool) {
        let (dev, host) = (&mut self.param_gdev[p], &mut self.param_grads[p]);
        let fresh = grad_to_backend(self.backend, dev, &mut self.param_fresh[p], host, overwrite);
        match dev {
            Some(d) => (BufMut::Dev(d.view_mut()), fresh),
            None => (BufMut::Host(host), fresh),
        }
    }

    /// `grad` as a buffer view, in the backend's memory when it has its own and the gradient is new.
    pub fn grad_buf(&mut self, v: Var) -> BufMut<'_, T> {
        let id = v.id();
        if let Op::Param(p) = self.nodes[id].op {
            return self.param_grad_buf(p, false).0;
        }
        if self.grads[id].is_empty() {
            let mut g = self.scratch(self.nodes[id].shape.numel());
            g.zero();
            self.grads[id] = g;
        }
        self.grads[id].view_mut()
    }

    /// `grad_overwrite` as a buffer view, in the backend's memory when it has its own and the gradient is
    /// new.
    pub fn grad_overwrite_buf(&mut self, v: Var) -> (BufMut<'_, T>, bool) {
        let id = v.id();
        if let Op::Param(p) = self.nodes[id].op {
            return self.param_grad_buf(p, true);
        }
        let fresh = self.grads[id].is_empty();
        if fresh {
            self.grads[id] = self.scratch(self.nodes[id].shape.numel());
        }
        (self.grads[id].view_mut(), fresh)
    }

    pub fn shape(&self, v: Var) -> Shape {
        self.nodes[v.id()].shape
    }

    pub fn needs(&self, v: Var) -> bool {
        self.nodes[v.id()].requires_grad
    }

    /// The gradient buffer of `v`, created zeroed on first use. Only call when `needs(v)`.
    pub fn grad(&mut self, v: Var) -> &mut [T] {
        let id = v.id();
        if let Op::Param(p) = self.nodes[id].op {
            settle_grad(&mut self.param_gdev[p], &mut self.param_fresh[p], &mut self.param_grads[p]);
            return &mut self.param_grads[p];
        }
        if self.grads[id].is_empty() {
            self.grads[id] = self.pool.zeroed(self.nodes[id].shape.numel()).into();
        }
        self.grads[id].host_mut()
    }
}
