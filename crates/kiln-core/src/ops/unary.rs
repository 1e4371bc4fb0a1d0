//! Elementwise functions of one input. Each is defined once, as a value and a derivative, and the same
//! definitions serve the fused bias+activation in `linear` and `conv`.

use crate::backend::Buf;
use crate::graph::{BackCtx, Op, Var};
use crate::{Float, Graph, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Pow(f64),
    Abs,
    Relu,
    LeakyRelu(f64),
    Sigmoid,
    Tanh,
    /// The exact form, x·Φ(x) = 0.5·x·(1 + erf(x/√2)), as PyTorch's default and Keras's `approximate=False`.
    Gelu,
    /// sin and cos: the periodic encoding of numbers (Gorishniy et al. 2022) reads sin(2πc·x), cos(2πc·x).
    Sin,
    Cos,
}

impl UnaryOp {
    #[inline]
    pub fn apply<T: Float>(self, x: T) -> T {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Pow(p) => x.powf(T::from_f64(p)),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Relu => x.max(T::ZERO),
            UnaryOp::LeakyRelu(a) => {
                if x > T::ZERO {
                    x
                } else {
                    x * T::from_f64(a)
                }
            }
            UnaryOp::Sigmoid => sigmoid(x),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Gelu => x * x.normal_cdf(),
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
        }
    }

    /// dy/dx at input `x` with output `y`. When `needs_input()` is false, `x` is not read beyond its sign,
    /// so callers that kept only `y` may pass `y` for `x`.
    #[inline]
    pub fn deriv<T: Float>(self, x: T, y: T) -> T {
        match self {
            UnaryOp::Neg => -T::ONE,
            UnaryOp::Exp => y,
            UnaryOp::Log => T::ONE / x,
            UnaryOp::Sqrt => T::from_f64(0.5) / y,
            UnaryOp::Pow(p) => T::from_f64(p) * x.powf(T::from_f64(p - 1.0)),
            UnaryOp::Abs => {
                if x > T::ZERO {
                    T::ONE
                } else if x < T::ZERO {
                    -T::ONE
                } else {
                    T::ZERO
                }
            }
            UnaryOp::Relu => {
                if x > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
            UnaryOp::LeakyRelu(a) => {
                if x > T::ZERO {
                    T::ONE
                } else {
                    T::from_f64(a)
                }
            }
            UnaryOp::Sigmoid => y * (T::ONE - y),
            UnaryOp::Tanh => T::ONE - y * y,
            UnaryOp::Gelu => {
                let cdf = x.normal_cdf();
                let pdf = (-(x * x) * T::from_f64(0.5)).exp_fast() * T::from_f64(0.398_942_280_401_432_7);
                cdf + x * pdf
            }
            UnaryOp::Sin => x.cos(),
            UnaryOp::Cos => -x.sin(),
        }
    }

    /// Whether the derivative needs the input itself rather than the output (or the sign they share).
    pub fn needs_input(self) -> bool {
        matches!(
            self,
            UnaryOp::Log | UnaryOp::Pow(_) | UnaryOp::Abs | UnaryOp::Gelu | UnaryOp::Neg | UnaryOp::Sin | UnaryOp::Cos
        )
    }
}

/// Expands `$each!(op)` once per variant with the variant spelled out, so inside each expansion the op is a
/// constant and `apply`/`deriv` fold to straight-line code that vectorizes.
macro_rules! per_op {
    ($op:expr, $each:ident) => {
        match $op {
            UnaryOp::Neg => $each!(UnaryOp::Neg),
            UnaryOp::Exp => $each!(UnaryOp::Exp),
            UnaryOp::Log => $each!(UnaryOp::Log),
            UnaryOp::Sqrt => $each!(UnaryOp::Sqrt),
            UnaryOp::Pow(p) => $each!(UnaryOp::Pow(p)),
            UnaryOp::Abs => $each!(UnaryOp::Abs),
            UnaryOp::Relu => $each!(UnaryOp::Relu),
            UnaryOp::LeakyRelu(a) => $each!(UnaryOp::LeakyRelu(a)),
            UnaryOp::Sigmoid => $each!(UnaryOp::Sigmoid),
            UnaryOp::Tanh => $each!(UnaryOp::Tanh),
            UnaryOp::Gelu => $each!(UnaryOp::Gelu),
            UnaryOp::Sin => $each!(UnaryOp::Sin),
            UnaryOp::Cos => $each!(UnaryOp::Cos),
        }
    };
}

impl UnaryOp {
    /// ys = op(xs)
    pub(crate) fn apply_slice<T: Float>(self, xs: &[T], ys: &mut [T]) {
        macro_rules! each {
            ($k:expr) => {{
                let k = $k;
                for (y, &x) in ys.iter_mut().zip(xs) {
                    *y = k.apply(x);
                }
            }};
        }
        crate::simd::vectorized(
            #[inline(always)]
            || per_op!(self, each),
        )
    }

    /// ys = op(ys), in place.
    pub(crate) fn apply_in_place<T: Float>(self, ys: &mut [T]) {
        macro_rules! each {
            ($k:expr) => {{
                let k = $k;
                for y in ys.iter_mut() {
                    *y = k.apply(*y);
                }
            }};
        }
        crate::simd::vectorized(
            #[inline(always)]
            || per_op!(self, each),
        )
    }

    /// out = gy ⊙ op'(x, y); or out += when `accumulate`.
    pub(crate) fn deriv_slice<T: Float>(self, gy: &[T], xs: &[T], ys: &[T], out: &mut [T], accumulate: bool) {
        macro_rules! each {
            ($k:expr) => {{
                let k = $k;
                let it = out.iter_mut().zip(gy).zip(xs.iter().zip(ys));
                if accumulate {
                    it.for_each(|((o, &g), (&x, &y))| *o += g * k.deriv(x, y));
                } else {
                    it.for_each(|((o, &g), (&x, &y))| *o = g * k.deriv(x, y));
                }
            }};
        }
        crate::simd::vectorized(
            #[inline(always)]
            || per_op!(self, each),
        )
    }
}

#[inline]
pub(crate) fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

impl<T: Float> Graph<T> {
    /// y = op(x), elementwise.
    pub fn unary(&mut self, a: Var, op: UnaryOp) -> Result<Var> {
        let shape = self.shape(a);
        let mut y = self.out(shape.numel());
        self.backend.unary(op, self.buf(a), y.view_mut());
        let rg = self.requires_grad(a);
        Ok(self.push(Op::Unary(a, op), shape, y, rg))
    }

    pub fn neg(&mut self, a: Var) -> Result<Var> {
        self.unary(a, UnaryOp::Neg)
    }
    pub fn exp(&mut self, a: Var) -> Result<Var> {
        self.unary(a, UnaryOp::Exp)
    }
    pub fn log(&mut self, a: Var) -> Result<Var> {
        self.unary(a, UnaryOp::Log)
    }
    pub fn sqrt(&mut self, a: Var) -> Result<Var> {
        self.unary(a, UnaryOp::Sqrt)
    }
    pub fn pow(&mut self, a: Var, p: f64) -> Result<Var> {
        self.unary(a, UnaryOp::Pow(p))
    }
    pub fn abs(&mut self, a: Var) -> Result<Var> {
        self.unary(a, UnaryOp::Abs)
    }
    pub fn relu(&mut self, a: Var) -> Result<Var> {
        self.unary(a, UnaryOp::Relu)
    }
    pub fn leaky_relu(&mut self, a: Var, alpha: f64) -> Result<Var> {
        self.unary(a, UnaryOp::LeakyRelu(alpha))
    }
    pub fn sigmoid(&mut self, a: Var) -> Result<Var> {
        self.unary(a, UnaryOp::Sigmoid)
    }
    pub fn tanh(&mut self, a: Var) -> Result<Var> {
        self.unary(a, UnaryOp::Tanh)
    }
    pub fn sin(&mut self, a: Var) -> Result<Var> {
        self.unary(a, UnaryOp::Sin)
    }
    pub fn cos(&mut self, a: Var) -> Result<Var> {
        self.unary(a, UnaryOp::Cos)
    }
    pub fn gelu(&mut self, a: Var) -> Result<Var> {
        self.unary(a, UnaryOp::Gelu)
    }
}

/// dx += dy · op'(x)
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, node: usize, a: Var, op: UnaryOp, gy: Buf<T>) {
    if !ctx.needs(a) {
        return;
    }
    let (be, x, y) = (ctx.backend, ctx.buf(a), ctx.out_buf(node));
    let (gx, fresh) = ctx.grad_overwrite_buf(a);
    be.unary_backward(op, gy, x, y, gx, !fresh);
}
