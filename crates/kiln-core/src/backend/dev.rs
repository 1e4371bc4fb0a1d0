//! Memory a device backend owns, held by the tape: [`DevVec`] is an address on the device and a length,
//! given back to its backend's [`DeviceMemory`] (a caching allocator) when dropped. The tape keeps its
//! values and gradients in these when its backend allocates them ([`super::Backend::alloc`]), so that an op
//! on the device reads its inputs where the previous op wrote them instead of copying them up and down
//! (what the CUDA backend did for every call before: it still does for views of host memory).

use std::marker::PhantomData;
use std::sync::Arc;

/// What a device backend gives the tape for its memory.
pub trait DeviceMemory: Send + Sync {
    /// Takes back `bytes` at `ptr` (allocated by this memory); work queued on it may still be running.
    fn free(&self, ptr: u64, bytes: usize);
    /// Sets `bytes` at `ptr` to zero, after the work queued before.
    fn zero(&self, ptr: u64, bytes: usize);
    /// Copies `dst.len()` bytes at `ptr` to the host, after the work queued before.
    fn download(&self, ptr: u64, dst: &mut [u8]);
    /// Copies `src` to `ptr`, ordered after the work queued before.
    fn upload(&self, ptr: u64, src: &[u8]);
}

/// `len` elements of type `E` in device memory (see the module header). The contents are whatever the
/// backend's last writer left until a kernel writes them.
pub struct DevVec<E> {
    ptr: u64,
    len: usize,
    bytes: usize,
    home: Arc<dyn DeviceMemory>,
    _e: PhantomData<E>,
}

impl<E> std::fmt::Debug for DevVec<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DevVec({} elements at {:#x})", self.len, self.ptr)
    }
}

impl<E: Copy + Default> DevVec<E> {
    /// Wraps `len` elements at `ptr`, `bytes` long (at least len * size_of::<E>()), which `home` takes back.
    pub fn new(ptr: u64, len: usize, bytes: usize, home: Arc<dyn DeviceMemory>) -> Self {
        debug_assert!(bytes >= len * std::mem::size_of::<E>());
        DevVec { ptr, len, bytes, home, _e: PhantomData }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device address of the first element.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Makes every element zero.
    pub fn zero(&mut self) {
        self.home.zero(self.ptr, self.len * std::mem::size_of::<E>());
    }

    /// Copies the elements into `dst` (of the same length), after the work queued before.
    pub fn copy_to(&self, dst: &mut [E]) {
        assert_eq!(dst.len(), self.len, "copy_to: lengths differ");
        let bytes = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u8, std::mem::size_of_val(dst)) };
        self.home.download(self.ptr, bytes);
    }

    /// A host copy, after the work queued before.
    pub fn to_vec(&self) -> Vec<E> {
        let mut v = vec![E::default(); self.len];
        // E is plain data (f32, f64, u32): its bytes are the copy.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, self.len * std::mem::size_of::<E>()) };
        self.home.download(self.ptr, bytes);
        v
    }

    /// Overwrites the elements with `src` (of the same length).
    pub fn copy_from(&mut self, src: &[E]) {
        assert_eq!(src.len(), self.len, "copy_from: lengths differ");
        let bytes = unsafe { std::slice::from_raw_parts(src.as_ptr() as *const u8, std::mem::size_of_val(src)) };
        self.home.upload(self.ptr, bytes);
    }

    pub fn view(&self) -> DevView<'_, E> {
        DevView { ptr: self.ptr, len: self.len, _life: PhantomData }
    }

    pub fn view_mut(&mut self) -> DevView<'_, E> {
        self.view()
    }
}

impl<E> Drop for DevVec<E> {
    fn drop(&mut self) {
        self.home.free(self.ptr, self.bytes);
    }
}

/// A borrowed span of device memory: `len` elements from `ptr`.
#[derive(Debug)]
pub struct DevView<'a, E> {
    pub ptr: u64,
    pub len: usize,
    _life: PhantomData<&'a E>,
}

impl<E> Clone for DevView<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for DevView<'_, E> {}

impl<'a, E> DevView<'a, E> {
    /// Elements `r` of the span.
    pub fn slice(self, r: std::ops::Range<usize>) -> Self {
        assert!(r.start <= r.end && r.end <= self.len, "device view {r:?} out of 0..{}", self.len);
        DevView {
            ptr: self.ptr + (r.start * std::mem::size_of::<E>()) as u64,
            len: r.end - r.start,
            _life: PhantomData,
        }
    }
}
