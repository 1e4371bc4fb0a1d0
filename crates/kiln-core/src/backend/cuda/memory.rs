//! The CUDA backend's caching allocator: the memory a tape keeps on the device (`Backend::alloc`,
//! backend/dev.rs). Freed blocks go to a free list by size and serve the next request of that size, so a
//! training step, which asks for the same sizes in the same order as the step before, allocates nothing from
//! the driver after its first (PyTorch's caching allocator does the same). Every copy and memset is queued on
//! the engine's one stream, so a block freed while a kernel still reads it is only reused by work queued
//! after that kernel.

use crate::backend::DeviceMemory;
use cudarc::driver::CudaStream;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Blocks are rounded up to this many bytes (CUDA's own allocation granularity for small blocks).
const ROUND: usize = 256;

/// Where the blocks come from: the GPU's stream, or host memory under the simulation.
pub(super) enum Home {
    Gpu(Arc<CudaStream>),
    #[cfg(feature = "cuda-sim")]
    Sim,
}

pub(super) struct DevicePool {
    home: Home,
    /// Free blocks by size in bytes.
    free: Mutex<HashMap<usize, Vec<u64>>>,
    /// Bytes allocated from the driver (held by tapes or free here).
    held: Mutex<usize>,
    /// Bytes copied between host and device, here and by the backend's staging (`Cuda::staged_bytes`).
    pub moved: AtomicUsize,
}

fn cuda<R>(what: &str, r: std::result::Result<R, cudarc::driver::DriverError>) -> R {
    r.unwrap_or_else(|e| panic!("CUDA: {what}: {e}"))
}

impl DevicePool {
    pub fn new(home: Home) -> Self {
        DevicePool { home, free: Mutex::default(), held: Mutex::default(), moved: AtomicUsize::new(0) }
    }

    /// The size a request of `bytes` is served with.
    pub fn block(bytes: usize) -> usize {
        bytes.max(1).next_multiple_of(ROUND)
    }

    /// A block of `bytes` (a size from `block`), from the free list or the driver.
    pub fn take(&self, bytes: usize) -> u64 {
        if let Some(p) = self.free.lock().unwrap().get_mut(&bytes).and_then(Vec::pop) {
            return p;
        }
        *self.held.lock().unwrap() += bytes;
        match &self.home {
            Home::Gpu(s) => {
                cuda("binding the context", s.context().bind_to_thread());
                cuda(&format!("allocating {bytes} bytes"), unsafe {
                    cudarc::driver::result::malloc_async(s.cu_stream(), bytes)
                })
            }
            #[cfg(feature = "cuda-sim")]
            Home::Sim => Box::into_raw(vec![0u64; bytes / 8].into_boxed_slice()) as *mut u64 as u64,
        }
    }

    /// Bytes taken from the driver so far.
    pub fn held_bytes(&self) -> usize {
        *self.held.lock().unwrap()
    }
}

impl DeviceMemory for DevicePool {
    fn free(&self, ptr: u64, bytes: usize) {
        self.free.lock().unwrap().entry(bytes).or_default().push(ptr);
    }

    fn zero(&self, ptr: u64, bytes: usize) {
        match &self.home {
            Home::Gpu(s) => {
                cuda("binding the context", s.context().bind_to_thread());
                cuda("memset", unsafe { cudarc::driver::result::memset_d8_async(ptr, 0, bytes, s.cu_stream()) });
            }
            #[cfg(feature = "cuda-sim")]
            Home::Sim => unsafe { std::ptr::write_bytes(ptr as *mut u8, 0, bytes) },
        }
    }

    fn download(&self, ptr: u64, dst: &mut [u8]) {
        if dst.is_empty() {
            return;
        }
        self.moved.fetch_add(dst.len(), Ordering::Relaxed);
        match &self.home {
            Home::Gpu(s) => {
                cuda("binding the context", s.context().bind_to_thread());
                cuda("copy from the GPU", unsafe {
                    cudarc::driver::result::memcpy_dtoh_async(dst, ptr, s.cu_stream())
                });
                cuda("a kernel failed", s.synchronize());
            }
            #[cfg(feature = "cuda-sim")]
            Home::Sim => unsafe { std::ptr::copy_nonoverlapping(ptr as *const u8, dst.as_mut_ptr(), dst.len()) },
        }
    }

    fn upload(&self, ptr: u64, src: &[u8]) {
        if src.is_empty() {
            return;
        }
        self.moved.fetch_add(src.len(), Ordering::Relaxed);
        match &self.home {
            Home::Gpu(s) => {
                cuda("binding the context", s.context().bind_to_thread());
                // From pageable memory the driver has taken its copy of `src` when this returns.
                cuda("copy to the GPU", unsafe { cudarc::driver::result::memcpy_htod_async(ptr, src, s.cu_stream()) });
            }
            #[cfg(feature = "cuda-sim")]
            Home::Sim => unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), ptr as *mut u8, src.len()) },
        }
    }
}

impl Drop for DevicePool {
    fn drop(&mut self) {
        let free = std::mem::take(&mut *self.free.lock().unwrap());
        #[cfg_attr(not(feature = "cuda-sim"), allow(unused_variables))]
        for (bytes, ptrs) in free {
            for p in ptrs {
                match &self.home {
                    Home::Gpu(s) => {
                        let _ = s.context().bind_to_thread();
                        let _ = unsafe { cudarc::driver::result::free_async(p, s.cu_stream()) };
                    }
                    #[cfg(feature = "cuda-sim")]
                    Home::Sim => {
                        let words = bytes / 8;
                        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p as *mut u64, words)) });
                    }
                }
            }
        }
    }
}
