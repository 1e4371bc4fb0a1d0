//! The tape: every op appends a node holding its result; `backward` walks the nodes in reverse and each
//! op's backward (in the op's own file, next to its forward) adds its input gradients.
//!
//! Values and gradients live in flat arenas indexed by node id. A `Var` is a `Copy` handle into them, valid
//! until the next `reset`. Parameters persist across resets; everything else goes back to the pool.

use crate::backend::{Backend, Buf, BufMut, Cpu};
use crate::ops::{BinaryOp, Conv2dArgs, LossKind, PoolArgs, ReduceOp, RnnArgs, UnaryOp, backward_node};
use crate::params::{Param, ParamId, ParamStore};
use crate::pool::Pool;
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
    /// Gradients that are logically zero but not yet written: the first op to write one overwrites it
    /// instead of adding to zeros, which saves a pass over memory per parameter and step.
    param_fresh: Vec<bool>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) values: Vec<Vec<T>>,
    grads: Vec<Vec<T>>,
    pub(crate) aux_f: Vec<Vec<T>>,
    pub(crate) aux_i: Vec<Vec<u32>>,
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
            self.pool.put(v);
        }
        for v in self.aux_i.drain(..) {
            self.ipool.put(v);
        }
        self.nodes.clear();
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
        (Arc::make_mut(&mut self.params).all_mut(), &mut self.param_grads)
    }

    /// Makes every gradient zero. Cheap: the buffers are only marked, and the next backward overwrites them.
    pub fn zero_grads(&mut self) {
        self.param_fresh.fill(true);
    }

    /// Writes the zeros a marked gradient stands for, before anyone reads it.
    fn settle(&mut self, i: usize) {
        if std::mem::take(&mut self.param_fresh[i]) {
            self.param_grads[i].fill(T::ZERO);
        }
    }

    // ---- leaves ----

    /// Puts a parameter on the tape without copying it.
    pub fn use_param(&mut self, p: ParamId) -> Var {
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
        let v = self.pool.copied(data);
        Ok(self.push(Op::Leaf, shape, v, false))
    }

    /// Like `input`, but fills the buffer in place (saves a copy when gathering a batch).
    pub fn input_with(&mut self, shape: &[usize], fill: impl FnOnce(&mut [T])) -> Result<Var> {
        let shape = Shape::new(shape)?;
        let mut v = self.pool.zeroed(shape.numel());
        fill(&mut v);
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
        if g.is_empty() { vec![T::ZERO; self.nodes[v.id()].shape.numel()] } else { g.clone() }
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
        Buf::Host(self.value(v))
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
    pub(crate) fn push(&mut self, op: Op, shape: Shape, value: Vec<T>, requires_grad: bool) -> Var {
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
        self.grads.push(Vec::new());
        self.aux_f.push(Vec::new());
        self.aux_i.push(Vec::new());
        Var((self.nodes.len() - 1) as u32)
    }

    /// Gives a float buffer back to the pool, or keeps it on the node for backward when recording.
    pub(crate) fn keep_aux_f(&mut self, v: Var, buf: Vec<T>) {
        if self.nodes[v.id()].requires_grad {
            self.aux_f[v.id()] = buf;
        } else {
            self.pool.put(buf);
        }
    }

    pub(crate) fn keep_aux_i(&mut self, v: Var, buf: Vec<u32>) {
        if self.nodes[v.id()].requires_grad {
            self.aux_i[v.id()] = buf;
        } else {
            self.ipool.put(buf);
        }
    }

    /// Extra floats an op saved (batch-norm keeps its batch mean and variance here).
    pub fn saved(&self, v: Var) -> &[T] {
        &self.aux_f[v.id()]
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
        let seed = self.pool.filled(1, T::ONE);
        let old = std::mem::replace(&mut self.grads[loss.id()], seed);
        self.pool.put(old);
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
                aux_f: &self.aux_f,
                aux_i: &self.aux_i,
                grads: &mut self.grads,
                param_grads: &mut self.param_grads,
                param_fresh: &mut self.param_fresh,
                pool: &mut self.pool,
            };
            backward_node(&mut ctx, i, &gy);
            if let (Some((p, _)), Some(t)) = (&mut self.profile, t) {
                p.backward[self.nodes[i].op.kind().0] += t.elapsed().as_secs_f64();
            }
            self.pool.put(gy);
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
        if let Some(g) = self.param_grads.get_mut(p.0) {
            *g = Vec::new();
        }
        Ok(())
    }
}

fn value_of<'a, T: Float>(nodes: &[Node], values: &'a [Vec<T>], params: &'a [Param<T>], id: usize) -> &'a [T] {
    match nodes[id].op {
        Op::Param(p) => &params[p].value,
        Op::Reshape(a) => value_of(nodes, values, params, a.id()),
        _ => &values[id],
    }
}

/// What an op's backward sees: values read-only, gradients writable.
pub(crate) struct BackCtx<'a, T: Float> {
    pub backend: &'a dyn Backend<T>,
    pub nodes: &'a [Node],
    values: &'a [Vec<T>],
    params: &'a [Param<T>],
    pub aux_f: &'a [Vec<T>],
    pub aux_i: &'a [Vec<u32>],
    grads: &'a mut [Vec<T>],
    param_grads: &'a mut [Vec<T>],
    param_fresh: &'a mut [bool],
    pub pool: &'a mut Pool<T>,
}

impl<'a, T: Float> BackCtx<'a, T> {
    pub fn value(&self, v: Var) -> &'a [T] {
        value_of(self.nodes, self.values, self.params, v.id())
    }

    pub fn out(&self, node: usize) -> &'a [T] {
        value_of(self.nodes, self.values, self.params, node)
    }

    pub fn buf(&self, v: Var) -> Buf<'a, T> {
        Buf::Host(self.value(v))
    }

    pub fn out_buf(&self, node: usize) -> Buf<'a, T> {
        Buf::Host(self.out(node))
    }

    /// What the op of `node` kept for its backward (`keep_aux_f`).
    pub fn aux_buf(&self, node: usize) -> Buf<'a, T> {
        Buf::Host(&self.aux_f[node])
    }

    /// The indices the op of `node` kept for its backward (`keep_aux_i`).
    pub fn aux_i_buf(&self, node: usize) -> Buf<'a, u32> {
        Buf::Host(&self.aux_i[node])
    }

    /// `grad` as a buffer view.
    pub fn grad_buf(&mut self, v: Var) -> BufMut<'_, T> {
        BufMut::Host(self.grad(v))
    }

    /// `grad_overwrite` as a buffer view.
    pub fn grad_overwrite_buf(&mut self, v: Var) -> (BufMut<'_, T>, bool) {
        let (g, fresh) = self.grad_overwrite(v);
        (BufMut::Host(g), fresh)
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
            if std::mem::take(&mut self.param_fresh[p]) {
                self.param_grads[p].fill(T::ZERO);
            }
            return &mut self.param_grads[p];
        }
        if self.grads[id].is_empty() {
            self.grads[id] = self.pool.zeroed(self.nodes[id].shape.numel());
        }
        &mut self.grads[id]
    }

    /// The gradient buffer of `v` for an op that may overwrite it: with `true`, the buffer holds no gradient
    /// yet (its contents are arbitrary) and the caller must write every element; with `false`, add to it.
    pub fn grad_overwrite(&mut self, v: Var) -> (&mut [T], bool) {
        let id = v.id();
        if let Op::Param(p) = self.nodes[id].op {
            let fresh = std::mem::take(&mut self.param_fresh[p]);
            return (&mut self.param_grads[p], fresh);
        }
        let fresh = self.grads[id].is_empty();
        if fresh {
            self.grads[id] = self.pool.scratch(self.nodes[id].shape.numel());
        }
        (&mut self.grads[id], fresh)
    }
}
