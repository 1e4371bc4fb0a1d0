//! How the CUDA backend's methods reach their views: device memory the tape holds is used as it is, a view of
//! host memory is copied up for the call and, when written, back (`up`, `out`, `inout`, `down`); every
//! buffer comes from the caching allocator (memory.rs), and every byte that crosses is counted
//! (`Cuda::staged_bytes`). Also the end the two convolution backwards share.

use super::Cuda;
use super::device::{CudaFloat, Elem, launch};
use super::memory::DevicePool;
use crate::backend::{Buf, BufMut, DevVec};
use crate::ops::Window;
use std::sync::atomic::Ordering;

impl Cuda {
    /// `b` for a kernel: device memory as it is; host memory copied up (a placeholder element when empty).
    pub(super) fn up<E: Elem>(&self, b: Buf<E>) -> Arg<E> {
        match b {
            Buf::Host([]) => Arg::Staged(self.zeros(1)),
            // The copy counts itself in `staged_bytes` (memory.rs).
            Buf::Host(h) => {
                let mut d = self.scratch(h.len());
                d.copy_from(h);
                Arg::Staged(d)
            }
            Buf::Dev(d) => Arg::Dev(d.ptr),
        }
    }

    /// `up` of an optional view (a placeholder element when absent).
    pub(super) fn up_opt<E: Elem>(&self, b: Option<Buf<E>>) -> Arg<E> {
        self.up(b.unwrap_or(Buf::Host(&[])))
    }

    /// Where a kernel writes `b` whole: device memory as it is, else a device buffer that `down` copies back.
    pub(super) fn out<E: Elem>(&self, b: &BufMut<E>) -> Arg<E> {
        match b {
            BufMut::Host(h) => Arg::Staged(self.zeros(h.len())),
            BufMut::Dev(d) => Arg::Dev(d.ptr),
        }
    }

    /// `out` of an optional view (a placeholder element when absent).
    pub(super) fn out_opt<E: Elem>(&self, b: &Option<BufMut<E>>) -> Arg<E> {
        b.as_ref().map_or_else(|| Arg::Staged(self.zeros(1)), |b| self.out(b))
    }

    /// `inout` of an optional view (a placeholder element when absent).
    pub(super) fn inout_opt<E: Elem>(&self, b: &Option<BufMut<E>>) -> Arg<E> {
        b.as_ref().map_or_else(|| Arg::Staged(self.zeros(1)), |b| self.inout(b))
    }

    /// What a kernel updates in place (adds to): `up` of `b`'s current contents.
    pub(super) fn inout<E: Elem>(&self, b: &BufMut<E>) -> Arg<E> {
        self.up(b.as_buf())
    }

    /// Puts what a kernel wrote at `a` into `b`: nothing to do when `a` is `b`'s device memory, a copy down
    /// for host memory (which waits for the kernels queued before), a copy on the device otherwise.
    pub(super) fn down<E: Elem>(&self, a: &Arg<E>, b: BufMut<E>) {
        let src = self.ptr(a);
        match b {
            BufMut::Host(h) => {
                self.mem.moved.fetch_add(std::mem::size_of_val(h), Ordering::Relaxed);
                self.engine.down_from(src, h)
            }
            BufMut::Dev(d) => self.engine.copy_on_device(src, d.ptr, d.len * std::mem::size_of::<E>()),
        }
    }

    /// Device memory for `len` elements (at least one) from the caching allocator, contents unspecified:
    /// a kernel's temporary, given back when dropped.
    pub(super) fn scratch<E: Elem>(&self, len: usize) -> DevVec<E> {
        let bytes = DevicePool::block(len.max(1) * std::mem::size_of::<E>());
        DevVec::new(self.mem.take(bytes), len.max(1), bytes, self.mem.clone())
    }

    /// `scratch` of zeros.
    pub(super) fn zeros<E: Elem>(&self, len: usize) -> DevVec<E> {
        let mut d = self.scratch(len);
        d.zero();
        d
    }

    /// Zeros `len` elements of `a` (a kernel's output it only partly writes).
    pub(super) fn zero<T: CudaFloat>(&self, a: &Arg<T>, len: usize) {
        launch!(self, T, "fill_zero", len; self.ptr(a), len as i64);
    }

    /// The device address of an operand or temporary.
    pub(super) fn ptr<E: Elem>(&self, d: &impl Addr<E>) -> u64 {
        d.addr()
    }

    /// The end the convolutions' backwards share, on views: dwb += [colsᵀ·dz, Σ dz] and, when `gx` is given,
    /// gx += col2im(dz·wᵀ), from dz [rows, f] and the patches (needed for dw).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv_grads_into<T: CudaFloat>(
        &self,
        g: &Window,
        f: usize,
        dz: u64,
        cols: Option<&DevVec<T>>,
        w: u64,
        need_w_b: (bool, bool),
        gx: Option<BufMut<T>>,
        dwb: BufMut<T>,
    ) {
        let ddwb = self.inout(&dwb);
        let dgx = gx.as_ref().map(|h| self.inout(h));
        let (pcols, pgx) = (cols.map(DevVec::ptr), dgx.as_ref().map(|d| self.ptr(d)));
        self.dev_conv_grads::<T>(g, f, dz, pcols, w, self.ptr(&ddwb), need_w_b, pgx);
        if let (Some(gx), Some(dgx)) = (gx, dgx) {
            self.down(&dgx, gx);
        }
        self.down(&ddwb, dwb);
    }
}

/// A kernel's operand: memory the tape keeps on the device, or a staged device copy of host memory.
pub(super) enum Arg<E: Elem> {
    Dev(u64),
    Staged(DevVec<E>),
}

/// What has a device address.
pub(super) trait Addr<E: Elem> {
    fn addr(&self) -> u64;
}

impl<E: Elem> Addr<E> for DevVec<E> {
    fn addr(&self) -> u64 {
        self.ptr()
    }
}

impl<E: Elem> Addr<E> for Arg<E> {
    fn addr(&self) -> u64 {
        match self {
            Arg::Dev(p) => *p,
            Arg::Staged(d) => d.ptr(),
        }
    }
}
