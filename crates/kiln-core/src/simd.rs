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
