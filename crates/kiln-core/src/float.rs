//! The element types the engine computes in: f32 for training, f64 for gradient checks.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

pub trait Float:
    Copy
    + Send
    + Sync
    + 'static
    + PartialOrd
    + Debug
    + Display
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    /// Name used in file formats ("F32", "F64").
    const DTYPE: &'static str;

    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn powf(self, p: Self) -> Self;
    fn abs(self) -> Self;
    fn tanh(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    /// Φ(x), the standard normal distribution function, ½·erfc(−x/√2): GELU's weight. For f32 a
    /// vectorizable form whose error is relative in both tails (`normal_cdf_f32`); libm's erfc for f64.
    fn normal_cdf(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn min(self, other: Self) -> Self;
    fn is_finite(self) -> bool;
    /// σ(x) = 1 / (1 + e^−x), in a form the compiler vectorizes for f32 (`fast_exp_f32`, within 2e-7 of
    /// libm's); exact for f64, where gradient checks need it.
    fn sigmoid_fast(self) -> Self;
    /// tanh(x) = 2σ(2x) − 1, likewise (absolute error under 3e-7 for f32).
    fn tanh_fast(self) -> Self;
    /// e^x, vectorizable for f32 (`fast_exp_f32`: relative error about 1e-7, and 0 for x < −87); exact
    /// for f64.
    fn exp_fast(self) -> Self;

    fn from_usize(n: usize) -> Self {
        Self::from_f64(n as f64)
    }
}

macro_rules! impl_float {
    ($t:ty, $cdf:path, $name:literal, $sigmoid:path, $tanh:path, $exp_fast:path) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            const DTYPE: &'static str = $name;
            #[inline]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn powf(self, p: Self) -> Self {
                <$t>::powf(self, p)
            }
            #[inline]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn normal_cdf(self) -> Self {
                $cdf(self)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline]
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            #[inline]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn sigmoid_fast(self) -> Self {
                $sigmoid(self)
            }
            #[inline(always)]
            fn tanh_fast(self) -> Self {
                $tanh(self)
            }
            #[inline(always)]
            fn exp_fast(self) -> Self {
                $exp_fast(self)
            }
        }
    };
}

impl_float!(f32, normal_cdf_f32, "F32", sigmoid_f32, tanh_f32, fast_exp_f32);
impl_float!(f64, normal_cdf_f64, "F64", crate::ops::unary::sigmoid, f64::tanh, f64::exp);

/// Φ(x) = ½·erfc(−x/√2) in f64, through libm's erfc: the reference the f32 form and gradient checks use.
#[inline]
pub fn normal_cdf_f64(x: f64) -> f64 {
    0.5 * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2)
}

/// e^x for f32 without a branch or a call, so that a loop of it vectorizes: x = n·ln2 + r with |r| ≤ ln2/2,
/// e^r by Cephes' degree-6 polynomial (relative error about 1e-7), 2^n put into the exponent bits. x is
/// clamped to [−87, 88], where e^x is a normal f32, and below −87 the result is 0: e^−87 would turn into
/// subnormal numbers in what follows (a masked attention weight divided by its row's sum, and every
/// gradient through it), which x86 computes on about a hundred times slower (measured: a transformer's
/// training step 2.5x slower with the clamped value).
#[inline(always)]
pub fn fast_exp_f32(x: f32) -> f32 {
    let under = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    // Rounded to the nearest integer by adding 1.5·2^23, whose bits then hold n + 0x4B40_0000: both the
    // float n and the exponent bits come without a float-to-int cast (Rust's saturating `as i32` did not
    // vectorize).
    const MAGIC: f32 = 12_582_912.0;
    let kn = x * std::f32::consts::LOG2_E + MAGIC;
    let n = kn - MAGIC;
    // ln 2 in two parts, so that n·ln2 is subtracted without losing r's low bits.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let y = e * f32::from_bits(kn.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23);
    if under { 0.0 } else { y }
}

/// Φ(x) = ½·erfc(−x/√2) for f32 without a branch or a call, so that a loop of it vectorizes (libm's erff,
/// a call per value, was 16% of a MiniLM pass). erfc(z) for z ≥ 0 by the Chebyshev fit of Numerical Recipes'
/// erfcc, t·e^(−z² + P(t)) with t = 1/(1 + z/2) and P of degree 9, whose error is under 1.2e-7 relative to
/// erfc itself: so Φ keeps its relative precision in the negative tail, where ½·(1 + erf(x/√2)) cancels (an
/// erf good to 5e-7 absolute put GELU at −3.75 off PyTorch's f64 value by 4e-4 relative). For z < 0,
/// erfc(z) = 2 − erfc(−z). Below about −12.95, Φ is under f32's smallest normal number and this gives 0,
/// for the reason `fast_exp_f32` does (subnormals are slow in everything downstream).
#[inline(always)]
pub fn normal_cdf_f32(x: f32) -> f32 {
    // z = |x|/√2, so z² = x²/2.
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = 0.170_872_77f32;
    p = p * t - 0.822_152_23;
    p = p * t + 1.488_515_9;
    p = p * t - 1.135_204;
    p = p * t + 0.278_868_07;
    p = p * t - 0.186_288_06;
    p = p * t + 0.096_784_18;
    p = p * t + 0.374_091_96;
    p = p * t + 1.000_023_7;
    let half_erfc = 0.5 * t * fast_exp_f32(-0.5 * x * x - 1.265_512_2 + t * p);
    // The exponential stays normal to x ≈ −13.1, the product with t/2 not quite so far.
    let half_erfc = if half_erfc < f32::MIN_POSITIVE { 0.0 } else { half_erfc };
    if x < 0.0 { half_erfc } else { 1.0 - half_erfc }
}

#[inline(always)]
fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + fast_exp_f32(-x))
}

#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    2.0 * sigmoid_f32(2.0 * x) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectorizable exp, sigmoid and tanh against libm's over the range the gates see and beyond.
    #[test]
    fn fast_exp_sigmoid_and_tanh_are_within_a_few_ulps() {
        let (mut worst_exp, mut worst_sig, mut worst_tanh) = (0f64, 0f64, 0f64);
        for k in -200_000..=200_000 {
            let x = k as f32 * 4.3e-4;
            let e = (x as f64).exp();
            worst_exp = worst_exp.max(((fast_exp_f32(x) as f64) - e).abs() / e);
            let s = 1.0 / (1.0 + (-(x as f64)).exp());
            worst_sig = worst_sig.max(((x.sigmoid_fast() as f64) - s).abs());
            worst_tanh = worst_tanh.max(((x.tanh_fast() as f64) - (x as f64).tanh()).abs());
        }
        assert!(worst_exp < 3e-7, "exp relative error {worst_exp}");
        assert!(worst_sig < 2e-7, "sigmoid error {worst_sig}");
        assert!(worst_tanh < 3e-7, "tanh error {worst_tanh}");
        // Below −87 the result is 0 (no subnormals), just above it a normal number; the top end stays finite;
        // NaN stays NaN (clamp passes it through).
        assert!(fast_exp_f32(-1e30) == 0.0 && fast_exp_f32(-87.5) == 0.0 && fast_exp_f32(1e30).is_finite());
        assert!(fast_exp_f32(-86.9).is_normal() && fast_exp_f32(f32::NAN).is_nan());
        assert!((-1e30f32).sigmoid_fast() < 1e-30 && (1e30f32).sigmoid_fast() == 1.0);
        assert!((1e30f32).tanh_fast() == 1.0 && (-1e30f32).tanh_fast() == -1.0);
        assert!((f32::NAN).sigmoid_fast().is_nan());
    }

    /// Φ for f32 against libm's erfc in f64: relative error in both tails (what GELU's negative side needs),
    /// over every x where Φ is a normal f32 (from −12.95 up), and 0 below.
    #[test]
    fn normal_cdf_f32_is_relatively_precise_in_both_tails() {
        let (mut worst_rel, mut worst_abs) = ((0f64, 0f32), (0f64, 0f32));
        for k in -130_000..=130_000 {
            let x = k as f32 * 1e-4;
            let want = normal_cdf_f64(x as f64);
            let got = normal_cdf_f32(x) as f64;
            let min = f32::MIN_POSITIVE as f64;
            if want < min * (1.0 + 2e-5) {
                // Below x ≈ −12.95: 0 rather than a subnormal number (either, within the relative error of
                // the boundary).
                assert!(got == 0.0 || (want > min * (1.0 - 2e-5) && got >= min), "Φ({x}) = {got} should flush to 0");
                continue;
            }
            let (rel, abs) = (((got - want) / want).abs(), (got - want).abs());
            if rel > worst_rel.0 {
                worst_rel = (rel, x);
            }
            if abs > worst_abs.0 {
                worst_abs = (abs, x);
            }
        }
        eprintln!("Φ in f32: relative error {worst_rel:?}, absolute {worst_abs:?} (error, x)");
        // Relative: the fit's 1.2e-7 plus f32's rounding of the exponent's argument, which grows as x²/2 (9.3e-6
        // at x = −12.3 measured). Absolute: a few of f32's steps near 0.5 (2.1e-7 measured), and near 1, where
        // the upper tail stays.
        assert!(worst_rel.0 < 1.5e-5, "relative error {worst_rel:?}");
        assert!(worst_abs.0 < 3e-7, "absolute error {worst_abs:?}");
        let x = -3.75f32;
        let rel = (normal_cdf_f32(x) as f64 / normal_cdf_f64(x as f64) - 1.0).abs();
        assert!(rel < 1e-6, "Φ(−3.75) relative error {rel}");
        assert!(normal_cdf_f32(-20.0) == 0.0 && normal_cdf_f32(20.0) == 1.0 && normal_cdf_f32(f32::NAN).is_nan());
        assert_eq!(normal_cdf_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(normal_cdf_f32(f32::INFINITY), 1.0);
    }
}
