//! Runtime choice of vector instructions for hot loops: the same Rust loop is compiled a second time with
//! AVX2 + FMA enabled and that copy runs when the processor has them, so binaries stay portable.

/// Whether this processor has AVX2 and FMA (checked once).
#[inline]
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `f` in a function compiled with AVX2 + FMA when available; `f` is inlined there, so its loops
/// are vectorized for those instructions.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if has_avx2() {
            // SAFETY: the processor supports the features `avx2` was compiled for.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// Σ aᵢ·bᵢ over the shorter of the two, in 16 independent sums (a single running sum does not vectorize: the
/// compiler may not reorder float additions). Inlined, so that inside `vectorized` it takes AVX2.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for (s, (x, y)) in lanes.iter_mut().zip(x.iter().zip(y)) {
            *s += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `s` as f32 when T is f32: lets generic code hand its data to kernels written for f32.
pub fn as_f32<T: 'static>(s: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32, so the cast is the identity.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), s.len()) })
}

/// `s` as mutable f32 when T is f32.
pub fn as_f32_mut<T: 'static>(s: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: T is f32, so the cast is the identity.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len()) })
}

#[cfg(test)]
mod tests {
    /// The vectorized copies run wherever the processor has the features: a dispatch that never chose them
    /// would leave every result right and every loop slow.
    #[test]
    fn the_vectorized_copies_run_where_the_processor_has_avx2_and_fma() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(super::has_avx2(), is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"));
        #[cfg(not(target_arch = "x86_64"))]
        assert!(!super::has_avx2());
    }
}
