//! Buffers are recycled between training steps: a step asks for the same sizes in the same order as the
//! one before, so after the first step every request is served from here and the heap is not touched.

pub(crate) struct Pool<E> {
    /// Free buffers by capacity: a recurrent step over 200 time steps holds tens of thousands, so finding
    /// the smallest that fits must not be a scan of them all (it was, and cost more than the arithmetic).
    free: std::collections::BTreeMap<usize, Vec<Vec<E>>>,
    bytes: usize,
}

impl<E: Copy + Default> Default for Pool<E> {
    fn default() -> Self {
        Pool::new()
    }
}

impl<E: Copy + Default> Pool<E> {
    pub fn new() -> Self {
        Pool { free: std::collections::BTreeMap::new(), bytes: 0 }
    }

    /// A buffer of `len` elements, all `E::default()` (zero).
    pub fn zeroed(&mut self, len: usize) -> Vec<E> {
        let mut v = self.take(len);
        v.resize(len, E::default());
        v
    }

    /// A buffer of `len` elements whose contents are unspecified (what the last user left, or zero): for
    /// outputs the caller overwrites completely. Saves a memset per op.
    pub fn scratch(&mut self, len: usize) -> Vec<E> {
        let mut v = self.pick(len);
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, E::default());
        }
        v
    }

    /// A buffer of `len` elements, filled with `value`.
    pub fn filled(&mut self, len: usize, value: E) -> Vec<E> {
        let mut v = self.take(len);
        v.resize(len, value);
        v
    }

    /// A buffer holding a copy of `src`.
    pub fn copied(&mut self, src: &[E]) -> Vec<E> {
        let mut v = self.take(src.len());
        v.extend_from_slice(src);
        v
    }

    /// An empty buffer with room for `len` elements.
    fn take(&mut self, len: usize) -> Vec<E> {
        let mut v = self.pick(len);
        v.clear();
        v
    }

    /// The smallest free buffer with room for `len` elements, contents as left, or a new one.
    fn pick(&mut self, len: usize) -> Vec<E> {
        // Emptied lists stay (with their room), so a steady state of takes and puts never allocates.
        let Some((&cap, list)) = self.free.range_mut(len..).find(|(_, l)| !l.is_empty()) else {
            return Vec::with_capacity(len);
        };
        self.bytes -= cap * std::mem::size_of::<E>();
        list.pop().expect("not empty")
    }

    pub fn put(&mut self, v: Vec<E>) {
        if v.capacity() > 0 {
            self.bytes += v.capacity() * std::mem::size_of::<E>();
            self.free.entry(v.capacity()).or_default().push(v);
        }
    }

    /// Bytes held by free buffers (for memory reports).
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }
}
