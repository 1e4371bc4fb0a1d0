//! One buffer of the tape (a value, a gradient, what an op saved for its backward): host memory, or its
//! backend's device memory (backend/dev.rs) when the backend allocates it. Host code reads either: a
//! device buffer is copied down once when first read (`host`) and the copy kept until the buffer is next
//! written through `view_mut` or `host_mut`, which is what keeps the copy true.

use crate::backend::{Buf, BufMut, DevVec};
use crate::pool::Pool;
use std::sync::OnceLock;

#[derive(Debug)]
pub(crate) enum Mem<E> {
    Host(Vec<E>),
    Dev(DevVec<E>, OnceLock<Vec<E>>),
}

impl<E> Default for Mem<E> {
    fn default() -> Self {
        Mem::Host(Vec::new())
    }
}

impl<E> From<Vec<E>> for Mem<E> {
    fn from(v: Vec<E>) -> Self {
        Mem::Host(v)
    }
}

impl<E> From<DevVec<E>> for Mem<E> {
    fn from(d: DevVec<E>) -> Self {
        Mem::Dev(d, OnceLock::new())
    }
}

impl<E: Copy + Default> Mem<E> {
    pub fn len(&self) -> usize {
        match self {
            Mem::Host(v) => v.len(),
            Mem::Dev(d, _) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements on the host (a device buffer is copied down on the first read).
    pub fn host(&self) -> &[E] {
        match self {
            Mem::Host(v) => v,
            Mem::Dev(d, copy) => copy.get_or_init(|| d.to_vec()),
        }
    }

    /// The elements on the host, writable: a device buffer becomes a host one (for host code that updates
    /// it, such as a recurrent layer's backward).
    pub fn host_mut(&mut self) -> &mut [E] {
        if let Mem::Dev(d, _) = self {
            *self = Mem::Host(d.to_vec());
        }
        match self {
            Mem::Host(v) => v,
            Mem::Dev(..) => unreachable!("made a host buffer above"),
        }
    }

    /// A view for a backend call.
    pub fn view(&self) -> Buf<'_, E> {
        match self {
            Mem::Host(v) => Buf::Host(v),
            Mem::Dev(d, _) => Buf::Dev(d.view()),
        }
    }

    /// A writable view for a backend call; drops the host copy of a device buffer.
    pub fn view_mut(&mut self) -> BufMut<'_, E> {
        match self {
            Mem::Host(v) => BufMut::Host(v),
            Mem::Dev(d, copy) => {
                copy.take();
                BufMut::Dev(d.view_mut())
            }
        }
    }

    /// Every element zero.
    pub fn zero(&mut self) {
        match self {
            Mem::Host(v) => v.fill(E::default()),
            Mem::Dev(d, copy) => {
                copy.take();
                d.zero()
            }
        }
    }

    /// Gives host memory back to `pool`; device memory goes back to its backend when dropped.
    pub fn recycle(self, pool: &mut Pool<E>) {
        if let Mem::Host(v) = self {
            pool.put(v)
        }
    }
}
