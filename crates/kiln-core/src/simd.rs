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
