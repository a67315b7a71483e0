//! ggml's CPU arithmetic, reproduced: the summation orders, fused multiply-adds and `exp` that
//! llama.cpp's x86 kernels use, so that our f32 results equal llama.cpp's bit for bit.
//!
//! Why bother: llama.cpp rounds attention inputs and probabilities to f16 (its default KV cache).
//! A last-bit difference upstream of such a rounding flips it now and then, and each flip moves the
//! logits of a small random model by ~0.005. Matching the order of every sum removes the flips.
//! The orders (read from ggml 0.25.3, the version of the reference kit, as compiled for AVX-512):
//! - one token (`ggml_vec_dot_f32` / `_f16`): four 16-lane FMA accumulators over the first
//!   `n & !63` elements, combined `(a0 + a2) + (a1 + a3)` and summed across lanes, then leftovers;
//! - a batch (llamafile's tinyBLAS, when `k % 16 == 0` and `m % 4 == 0`): one 16-lane FMA
//!   accumulator per output, summed across lanes;
//! - across 16 lanes: `_mm512_reduce_add_ps` as GCC expands it ([`reduce16`]).
//!
//! `f32::mul_add` is a correctly rounded FMA: one instruction where the CPU has FMA (the hot loops
//! are compiled for it and chosen at run time), a slower libm call elsewhere; same bits either way.

/// Defines `pub fn $name(args) -> ret` that runs `$body(args)` compiled with FMA and AVX2 where
/// the CPU has them (chosen at run time), so that the `mul_add`s inlined into it are single
/// instructions rather than libm calls. `$body` must be `#[inline(always)]`. Results are the same
/// either way. (A closure-taking helper does not work: the closure's body is compiled separately,
/// without the features, and every `mul_add` becomes a call.)
macro_rules! fma_dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn with_fma($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `with_fma` is compiled for.
                    return unsafe { with_fma($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use fma_dispatch;

/// Lanes of an AVX-512 f32 vector, ggml's accumulator width on this kind of CPU.
pub const LANES: usize = 16;

/// `_mm512_reduce_add_ps` as GCC expands it: halves added pairwise, then `(t0 + t2) + (t1 + t3)`.
#[inline(always)]
pub fn reduce16(v: &[f32; LANES]) -> f32 {
    let mut t8 = [0.0f32; 8];
    for i in 0..8 {
        t8[i] = v[i + 8] + v[i];
    }
    let mut t4 = [0.0f32; 4];
    for i in 0..4 {
        t4[i] = t8[i + 4] + t8[i];
    }
    (t4[0] + t4[2]) + (t4[1] + t4[3])
}

/// `acc[l] = fma(a[l], b[l], acc[l])` over one 16-element block.
#[inline(always)]
fn fma16(acc: &mut [f32; LANES], a: &[f32], b: &[f32]) {
    for l in 0..LANES {
        acc[l] = a[l].mul_add(b[l], acc[l]);
    }
}

/// The state of one `ggml_vec_dot_f32`: fed in chunks whose lengths are multiples of 64 until the
/// last, which may hold the leftovers.
#[derive(Clone, Copy)]
pub struct VecDot {
    acc: [[f32; LANES]; 4],
}

impl Default for VecDot {
    fn default() -> Self {
        Self {
            acc: [[0.0; LANES]; 4],
        }
    }
}

impl VecDot {
    /// Accumulates whole 64-element steps of `x · y`; returns how many elements it took.
    #[inline(always)]
    pub fn feed(&mut self, x: &[f32], y: &[f32]) -> usize {
        let main = x.len() & !63;
        for (xs, ys) in x[..main].chunks_exact(64).zip(y[..main].chunks_exact(64)) {
            for j in 0..4 {
                let r = j * LANES..(j + 1) * LANES;
                fma16(&mut self.acc[j], &xs[r.clone()], &ys[r]);
            }
        }
        main
    }

    /// The main part's sum: `(a0 + a2) + (a1 + a3)` lane-wise, then across lanes.
    #[inline(always)]
    fn main_sum(&self) -> f32 {
        let mut v = [0.0f32; LANES];
        for (l, out) in v.iter_mut().enumerate() {
            *out = (self.acc[0][l] + self.acc[2][l]) + (self.acc[1][l] + self.acc[3][l]);
        }
        reduce16(&v)
    }

    /// `ggml_vec_dot_f32`'s result, with `x`, `y` the leftovers (fewer than 64 elements): blocks of
    /// 16, then 8, of rounded products added one by one, the last few by scalar FMA (as GCC 12
    /// compiles the leftover loop).
    #[inline(always)]
    pub fn finish_f32(&self, x: &[f32], y: &[f32]) -> f32 {
        let mut s = self.main_sum();
        let mut i = 0;
        while x.len() - i >= 16 {
            for t in i..i + 16 {
                s += x[t] * y[t];
            }
            i += 16;
        }
        if x.len() - i >= 8 {
            for t in i..i + 8 {
                s += x[t] * y[t];
            }
            i += 8;
        }
        for t in i..x.len() {
            s = x[t].mul_add(y[t], s);
        }
        s
    }

    /// `ggml_vec_dot_f16`'s result (inputs hold f16 values): the main sum widened to f64, the
    /// leftovers' products (exact) added in f64, one final rounding.
    #[inline(always)]
    pub fn finish_f16(&self, x: &[f32], y: &[f32]) -> f32 {
        let mut s = f64::from(self.main_sum());
        for (a, b) in x.iter().zip(y) {
            s += f64::from(a * b);
        }
        s as f32
    }
}

/// `ggml_vec_dot_f32(x, y)`.
#[inline(always)]
pub fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    let mut d = VecDot::default();
    let n = d.feed(x, y);
    d.finish_f32(&x[n..], &y[n..])
}

/// `ggml_vec_dot_f16(x, y)` on f16 values held as f32.
#[inline(always)]
pub fn vec_dot_f16(x: &[f32], y: &[f32]) -> f32 {
    let mut d = VecDot::default();
    let n = d.feed(x, y);
    d.finish_f16(&x[n..], &y[n..])
}

/// One output of tinyBLAS: a 16-lane FMA accumulator over `k` (a multiple of 16), summed across
/// lanes. `acc` carries the state when the row arrives in chunks.
#[inline(always)]
pub fn tinyblas_feed(acc: &mut [f32; LANES], x: &[f32], y: &[f32]) {
    for (xs, ys) in x.chunks_exact(LANES).zip(y.chunks_exact(LANES)) {
        fma16(acc, xs, ys);
    }
}

/// Whether llama.cpp computes an `m x k` by `k x n` product with tinyBLAS: batches of two or more,
/// `k % 16 == 0` and `m % 4 == 0` (`llamafile_sgemm`'s conditions for AVX-512 f32/f16).
pub fn uses_tinyblas(m: usize, k: usize, n: usize) -> bool {
    n >= 2 && k.is_multiple_of(LANES) && m.is_multiple_of(4)
}

/// `ggml_v_expf`, the AVX-512 `exp` of ggml's softmax and SwiGLU, one lane at a time.
#[inline(always)]
pub fn v_expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23: adding it rounds to an integer
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r); // log2(e)
    let n = z - r;
    let ln2_hi = f32::from_bits(0x3f31_7200); // 0x1.62e4p-1
    let ln2_lo = f32::from_bits(0x35bf_be8e); // 0x1.7f7d1cp-20
    let b = (-n).mul_add(ln2_lo, (-n).mul_add(ln2_hi, x));
    let u = b * b;
    let c = |bits: u32| f32::from_bits(bits);
    let p = c(0x3c07_2010) // 0x1.0e4020p-7
        .mul_add(b, c(0x3d2b_9f17)) // 0x1.573e2ep-5
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb))); // 0x1.555e66p-3, 0x1.fffdb6p-2
    let j = p.mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0)); // 0x1.ffffecp-1
    if n.abs() > 192.0 || !n.is_finite() {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    scale_by_pow2(j, n as i32)
}

/// `j * 2^n` with one rounding, as `_mm512_scalef_ps` does.
#[inline(always)]
fn scale_by_pow2(j: f32, n: i32) -> f32 {
    // Two steps keep each factor a normal f32; the product rounds once at the end (the first
    // step is exact: |n| <= 192 splits into factors of at most 2^96 and 2^-96).
    let half = n / 2;
    (j * pow2(half)) * pow2(n - half)
}

/// `2^k` for `|k| <= 126`, built from its exponent bits (`powi` is a libm call).
#[inline(always)]
fn pow2(k: i32) -> f32 {
    f32::from_bits(((k + 127) as u32) << 23)
}

/// ggml's `soft_max` of one row of scores: `e = v_expf(s - max)` in 16-element chunks from the
/// row's start, the chunk sums (across lanes) added in f64, then `p = e * (float)(1 / sum)`.
/// Scores past `scores.len()` are masked (-inf) in llama.cpp's padded row and contribute zeros.
#[inline(always)]
pub fn soft_max(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for chunk in scores.chunks_mut(LANES) {
        let mut e = [0.0f32; LANES];
        for (o, s) in e.iter_mut().zip(chunk.iter_mut()) {
            *o = v_expf(*s - max);
            *s = *o;
        }
        sum += f64::from(reduce16(&e));
    }
    let inv = (1.0 / sum) as f32;
    for s in scores.iter_mut() {
        *s *= inv;
    }
}

/// The AVX-512 forms of the functions above, with the same bits.
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use std::arch::x86_64::*;

    /// ggml's `v_expf` on sixteen lanes: lane for lane what [`super::v_expf`] computes (the
    /// scalar version follows this one).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn v_expf_512(x: __m512) -> __m512 {
        let c = |bits: u32| _mm512_set1_ps(f32::from_bits(bits));
        let r = c(0x4b40_0000);
        let z = _mm512_fmadd_ps(x, c(0x3fb8_aa3b), r);
        let n = _mm512_sub_ps(z, r);
        let b = _mm512_fnmadd_ps(n, c(0x35bf_be8e), _mm512_fnmadd_ps(n, c(0x3f31_7200), x));
        let u = _mm512_mul_ps(b, b);
        let p = _mm512_fmadd_ps(
            _mm512_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
            u,
            _mm512_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
        );
        let j = _mm512_fmadd_ps(
            p,
            u,
            _mm512_fmadd_ps(c(0x3f7f_fff6), b, _mm512_set1_ps(1.0)),
        );
        let res = _mm512_scalef_ps(j, n);
        // |n| > 192 (or not finite): 0 below, infinity above.
        let big = _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
        if big == 0 {
            return res;
        }
        let low = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps());
        let alt = _mm512_mask_blend_ps(low, _mm512_set1_ps(f32::INFINITY), _mm512_setzero_ps());
        _mm512_mask_blend_ps(big, res, alt)
    }

    /// ggml's `v_expf` on eight lanes, lane for lane what [`super::v_expf`] computes: AVX2 has
    /// no `scalef`, so `j * 2^n` is the scalar version's two exact power-of-two factors.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn v_expf_256(x: __m256) -> __m256 {
        let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
        let r = c(0x4b40_0000);
        let z = _mm256_fmadd_ps(x, c(0x3fb8_aa3b), r);
        let n = _mm256_sub_ps(z, r);
        let b = _mm256_fnmadd_ps(n, c(0x35bf_be8e), _mm256_fnmadd_ps(n, c(0x3f31_7200), x));
        let u = _mm256_mul_ps(b, b);
        let p = _mm256_fmadd_ps(
            _mm256_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
            u,
            _mm256_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
        );
        let j = _mm256_fmadd_ps(
            p,
            u,
            _mm256_fmadd_ps(c(0x3f7f_fff6), b, _mm256_set1_ps(1.0)),
        );
        // |n| > 192 (or not finite): 0 below, infinity above. Otherwise n is an integer that
        // converts exactly; `half` is n / 2 rounded toward zero, as the scalar `n / 2`.
        let abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
        let big = _mm256_cmp_ps::<_CMP_NLE_UQ>(abs, _mm256_set1_ps(192.0));
        let ni = _mm256_cvttps_epi32(_mm256_blendv_ps(n, _mm256_setzero_ps(), big));
        let half = _mm256_srai_epi32::<1>(_mm256_sub_epi32(ni, _mm256_srai_epi32::<31>(ni)));
        let pow2 = |k: __m256i| {
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                k,
                _mm256_set1_epi32(127),
            )))
        };
        let res = _mm256_mul_ps(
            _mm256_mul_ps(j, pow2(half)),
            pow2(_mm256_sub_epi32(ni, half)),
        );
        if _mm256_movemask_ps(big) == 0 {
            return res;
        }
        let low = _mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps());
        let alt = _mm256_blendv_ps(_mm256_set1_ps(f32::INFINITY), _mm256_setzero_ps(), low);
        _mm256_blendv_ps(res, alt, big)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vector_exp_is_the_scalar_exp_lane_for_lane() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let special = [
            f32::NEG_INFINITY,
            f32::INFINITY,
            0.0,
            -0.0,
            -87.0,
            88.0,
            -200.0,
            1e-9,
        ];
        for i in -700..=700 {
            let x: [f32; 16] = std::array::from_fn(|l| match (i, l) {
                (0, l) if l < special.len() => special[l],
                _ => (i * 16 + l as i32) as f32 * 0.0131,
            });
            let mut got = [0.0f32; 16];
            // SAFETY: AVX-512F was detected above.
            unsafe {
                use std::arch::x86_64::*;
                _mm512_storeu_ps(
                    got.as_mut_ptr(),
                    x86::v_expf_512(_mm512_loadu_ps(x.as_ptr())),
                );
            }
            for l in 0..16 {
                let want = v_expf(x[l]);
                assert_eq!(got[l].to_bits(), want.to_bits(), "exp({})", x[l]);
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn eight_lane_exp_is_the_scalar_exp_lane_for_lane() {
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            return;
        }
        let special = [
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            0.0,
            -87.0,
            88.0,
            -200.0,
            1e-9,
        ];
        for i in -1400..=1400 {
            let x: [f32; 8] = std::array::from_fn(|l| match (i, l) {
                (0, l) => special[l],
                _ => (i * 8 + l as i32) as f32 * 0.0131,
            });
            let mut got = [0.0f32; 8];
            // SAFETY: AVX2 and FMA were detected above.
            unsafe {
                use std::arch::x86_64::*;
                _mm256_storeu_ps(
                    got.as_mut_ptr(),
                    x86::v_expf_256(_mm256_loadu_ps(x.as_ptr())),
                );
            }
            for l in 0..8 {
                let want = v_expf(x[l]);
                let same = got[l].to_bits() == want.to_bits() || (got[l].is_nan() && want.is_nan());
                assert!(same, "exp({}): {} vs {}", x[l], got[l], want);
            }
        }
    }

    #[test]
    fn v_expf_is_within_two_ulps_of_exp() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.043;
            let (ours, exact) = (v_expf(x), (x as f64).exp() as f32);
            let ulps = (ours.to_bits() as i64 - exact.to_bits() as i64).abs();
            assert!(ulps <= 2, "v_expf({x}) = {ours}, exp = {exact}");
        }
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(v_expf(0.0), 1.0);
    }

    #[test]
    fn vec_dot_orders_sum_everything() {
        let x: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let y: Vec<f32> = (0..100).map(|i| (i as f32 * 0.11).cos()).collect();
        let exact: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        assert!((f64::from(vec_dot_f32(&x, &y)) - exact).abs() < 1e-4);
        let mut acc = [0.0; LANES];
        tinyblas_feed(&mut acc, &x[..96], &y[..96]);
        let exact96: f64 = x[..96]
            .iter()
            .zip(&y[..96])
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        assert!((f64::from(reduce16(&acc)) - exact96).abs() < 1e-4);
    }

    #[test]
    fn reduce16_adds_in_gcc_order() {
        // 1e8 + 1 - 1e8 depends on the order; GCC's pairing adds lanes i and i + 8 first.
        let mut v = [0.0f32; LANES];
        v[0] = 1e8;
        v[8] = -1e8;
        v[1] = 1.0;
        assert_eq!(reduce16(&v), 1.0);
    }

    #[test]
    fn soft_max_sums_to_one() {
        let mut s: Vec<f32> = (0..37).map(|i| i as f32 * 0.3 - 4.0).collect();
        soft_max(&mut s);
        let total: f32 = s.iter().sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }
}
