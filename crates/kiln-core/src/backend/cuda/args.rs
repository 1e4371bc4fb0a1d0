//! The CUDA kernels' arguments as Rust builds them: the `#[repr(C)]` twins of prelude.cu's structs (window,
//! broadcast, permutation), the codes of activations, binary ops and losses, and how a strided matrix is
//! handed to cuBLAS.

use crate::ops::{BinaryOp, LossKind, RnnCell, UnaryOp, Window};
use crate::{MAX_RANK, Shape};
use cudarc::driver::DeviceRepr;

/// Window geometry as the kernels read it (prelude.cu: Win).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Win(pub [i64; 12]);
unsafe impl DeviceRepr for Win {}

impl From<&Window> for Win {
    fn from(g: &Window) -> Win {
        let v = [g.n, g.h, g.w, g.c, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.oh, g.ow];
        Win(v.map(|x| x as i64))
    }
}

/// A broadcast (prelude.cu: Bcast).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Bcast {
    n: i64,
    rank: i64,
    dims: [i64; MAX_RANK],
    sa: [i64; MAX_RANK],
    sb: [i64; MAX_RANK],
    da: [i64; MAX_RANK],
    db: [i64; MAX_RANK],
}
unsafe impl DeviceRepr for Bcast {}

impl Bcast {
    pub fn new(out: Shape, a: Shape, b: Shape) -> Bcast {
        let r = out.rank();
        let mut s = Bcast { n: out.numel() as i64, rank: r as i64, dims: [1; MAX_RANK], ..Bcast::zero() };
        for d in 0..r {
            s.dims[d] = out.dim(d) as i64;
        }
        // An input's strides in output axes (0 where it is broadcast) and its sizes there (1 where broadcast).
        let align = |x: Shape, st: &mut [i64; MAX_RANK], own: &mut [i64; MAX_RANK]| {
            *own = [1; MAX_RANK];
            for (i, (&size, &stride)) in x.dims().iter().zip(&x.strides()).enumerate() {
                let d = i + r - x.rank();
                if size != 1 {
                    st[d] = stride as i64;
                    own[d] = size as i64;
                }
            }
        };
        align(a, &mut s.sa, &mut s.da);
        align(b, &mut s.sb, &mut s.db);
        s
    }

    fn zero() -> Bcast {
        Bcast {
            n: 0,
            rank: 0,
            dims: [0; MAX_RANK],
            sa: [0; MAX_RANK],
            sb: [0; MAX_RANK],
            da: [0; MAX_RANK],
            db: [0; MAX_RANK],
        }
    }
}

/// A permutation (prelude.cu: Perm).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Perm {
    n: i64,
    rank: i64,
    dims: [i64; MAX_RANK],
    strides: [i64; MAX_RANK],
}
unsafe impl DeviceRepr for Perm {}

impl Perm {
    pub fn new(s: Shape, perm: &[u8; MAX_RANK]) -> Perm {
        let st = s.strides();
        let mut p = Perm { n: s.numel() as i64, rank: s.rank() as i64, dims: [1; MAX_RANK], strides: [0; MAX_RANK] };
        for i in 0..s.rank() {
            p.dims[i] = s.dim(perm[i] as usize) as i64;
            p.strides[i] = st[perm[i] as usize] as i64;
        }
        p
    }
}

/// The code of an activation in prelude.cu (act_f, act_d), and its parameter.
pub(super) fn unary_code(op: UnaryOp) -> (i32, f64) {
    match op {
        UnaryOp::Neg => (0, 0.0),
        UnaryOp::Exp => (1, 0.0),
        UnaryOp::Log => (2, 0.0),
        UnaryOp::Sqrt => (3, 0.0),
        UnaryOp::Pow(p) => (4, p),
        UnaryOp::Abs => (5, 0.0),
        UnaryOp::Relu => (6, 0.0),
        UnaryOp::LeakyRelu(a) => (7, a),
        UnaryOp::Sigmoid => (8, 0.0),
        UnaryOp::Tanh => (9, 0.0),
        UnaryOp::Gelu => (10, 0.0),
        UnaryOp::Sin => (11, 0.0),
        UnaryOp::Cos => (12, 0.0),
    }
}

/// (code, parameter), code −1 for none.
pub(super) fn act_code(act: Option<UnaryOp>) -> (i32, f64) {
    act.map_or((-1, 0.0), unary_code)
}

pub(super) fn binary_code(op: BinaryOp) -> i32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
    }
}

/// The code of a recurrent cell in kernels.cu (rnn_step).
pub(super) fn cell_code(cell: RnnCell) -> i32 {
    match cell {
        RnnCell::Lstm => 0,
        RnnCell::Gru => 1,
        RnnCell::Simple => 2,
    }
}

pub(super) fn loss_code(kind: LossKind) -> i32 {
    match kind {
        LossKind::SoftmaxCrossEntropy => 0,
        LossKind::SparseSoftmaxCrossEntropy => 1,
        LossKind::SigmoidBinaryCrossEntropy => 2,
        LossKind::BinaryCrossEntropy => 3,
        LossKind::CategoricalCrossEntropy => 4,
        LossKind::MeanSquaredError => 5,
    }
}

/// How cuBLAS reads our row-major-strided [rows, cols] matrix M (M[r, c] at r·rs + c·cs) as the
/// column-major operand X with op(X) = Mᵀ: (transpose X, leading dimension), or None when neither stride
/// is 1 (the operand is then copied contiguous first).
pub(super) fn blas_layout(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<(bool, usize)> {
    if (cs == 1 || cols == 1) && (rows == 1 || rs >= cols.max(1)) {
        return Some((false, if rows == 1 { cols.max(1) } else { rs }));
    }
    if (rs == 1 || rows == 1) && (cols == 1 || cs >= rows.max(1)) {
        return Some((true, if cols == 1 { rows.max(1) } else { cs }));
    }
    None
}

/// The elements a strided view reads: from its offset, (rows − 1)·rs + (cols − 1)·cs + 1 of them.
pub(super) fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 { 0 } else { (rows - 1) * rs + (cols - 1) * cs + 1 }
}

/// A device matrix operand: pointer to element (0, 0) and strides.
#[derive(Clone, Copy)]
pub(super) struct DMat {
    pub ptr: u64,
    pub rs: usize,
    pub cs: usize,
}
