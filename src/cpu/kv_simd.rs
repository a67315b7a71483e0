//! The parallel attention's two loops over the f16 KV cache, reading the f16 bits directly
//! (AVX-512: one `vcvtph2ps` per 16 values inside the FMA loop), so the cache is read once at
//! half of f32's bytes and never widened into a buffer first. Each returns false where it has
//! no SIMD path (another CPU, a head size that is not a multiple of 16, a group of more than
//! [`MAX_GROUP`] query heads); the caller then widens and runs its portable loop.

/// Most query heads per KV head the SIMD loops keep accumulators for (Qwen3 uses 2 to 8).
pub const MAX_GROUP: usize = 8;

/// `scores[h * n + j] = scale * (key_j . q_h)` for the `n` keys in `keys` (`[n, hd]` f16 bits)
/// and the `q.len() / hd` query heads of `q`.
pub fn scores(keys: &[u16], q: &[f32], hd: usize, scale: f32, scores: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if usable(q.len(), hd) {
        // SAFETY: AVX-512F was detected; the lengths are checked in `x86::scores`.
        unsafe { x86::scores(keys, q, hd, scale, scores) };
        return true;
    }
    let _ = (keys, q, hd, scale, scores);
    false
}

/// `out[h * hd + d] += sum_j probs[h * n + j] * value_j[d]` for the `n` values in `values`.
pub fn weighted_values(values: &[u16], probs: &[f32], hd: usize, out: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if usable(out.len(), hd) {
        // SAFETY: AVX-512F was detected; the lengths are checked in `x86::weighted_values`.
        unsafe { x86::weighted_values(values, probs, hd, out) };
        return true;
    }
    let _ = (values, probs, hd, out);
    false
}

#[cfg(target_arch = "x86_64")]
fn usable(heads_len: usize, hd: usize) -> bool {
    hd > 0
        && hd.is_multiple_of(16)
        && heads_len / hd <= MAX_GROUP
        && std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::MAX_GROUP;

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load_f16(p: *const u16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn scores(keys: &[u16], q: &[f32], hd: usize, scale: f32, scores: &mut [f32]) {
        let group = q.len() / hd;
        let n = keys.len() / hd;
        assert!(scores.len() >= group * n && q.len() == group * hd);
        for j in 0..n {
            let k = keys.as_ptr().add(j * hd);
            let mut acc = [_mm512_setzero_ps(); MAX_GROUP];
            for c in (0..hd).step_by(16) {
                let kv = load_f16(k.add(c));
                for (h, a) in acc.iter_mut().enumerate().take(group) {
                    *a = _mm512_fmadd_ps(kv, _mm512_loadu_ps(q.as_ptr().add(h * hd + c)), *a);
                }
            }
            for (h, a) in acc.iter().enumerate().take(group) {
                scores[h * n + j] = _mm512_reduce_add_ps(*a) * scale;
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn weighted_values(values: &[u16], probs: &[f32], hd: usize, out: &mut [f32]) {
        let group = out.len() / hd;
        let n = values.len() / hd;
        assert!(probs.len() >= group * n && out.len() == group * hd);
        let o = out.as_mut_ptr();
        for j in 0..n {
            let v = values.as_ptr().add(j * hd);
            let p: [__m512; MAX_GROUP] = std::array::from_fn(|h| {
                _mm512_set1_ps(if h < group { probs[h * n + j] } else { 0.0 })
            });
            for c in (0..hd).step_by(16) {
                let vv = load_f16(v.add(c));
                for (h, ph) in p.iter().enumerate().take(group) {
                    let dst = o.add(h * hd + c);
                    _mm512_storeu_ps(dst, _mm512_fmadd_ps(vv, *ph, _mm512_loadu_ps(dst)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    fn bits(v: &[f32]) -> Vec<u16> {
        v.iter().map(|x| f16::from_f32(*x).to_bits()).collect()
    }

    fn widened(b: &[u16]) -> Vec<f32> {
        b.iter().map(|x| f16::from_bits(*x).to_f32()).collect()
    }

    fn wave(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37 + seed).sin()).collect()
    }

    #[test]
    fn simd_loops_match_the_portable_math() {
        let (hd, n, group) = (32, 7, 3);
        let keys = bits(&wave(n * hd, 1.0));
        let values = bits(&wave(n * hd, 2.0));
        let q = wave(group * hd, 3.0);
        let probs = wave(group * n, 4.0);
        let mut got = vec![0.0; group * n];
        let mut out = vec![0.0; group * hd];
        let simd = scores(&keys, &q, hd, 0.5, &mut got);
        assert_eq!(simd, weighted_values(&values, &probs, hd, &mut out));
        if !simd {
            return; // no AVX-512 here: the caller's portable loops run instead
        }
        let (k, v) = (widened(&keys), widened(&values));
        for h in 0..group {
            for j in 0..n {
                let dot: f32 = (0..hd).map(|d| k[j * hd + d] * q[h * hd + d]).sum();
                let want = dot * 0.5;
                assert!((got[h * n + j] - want).abs() < 1e-5, "score {h},{j}");
            }
            for d in 0..hd {
                let want: f32 = (0..n).map(|j| probs[h * n + j] * v[j * hd + d]).sum();
                assert!((out[h * hd + d] - want).abs() < 1e-5, "value {h},{d}");
            }
        }
    }

    #[test]
    fn unsupported_shapes_fall_back() {
        let mut s = vec![0.0; 4];
        assert!(!scores(&[0; 24], &[0.0; 24], 12, 1.0, &mut s));
        let mut out = vec![0.0; 16 * (MAX_GROUP + 1)];
        assert!(!weighted_values(&[0; 16], &[0.0; 9], 16, &mut out));
    }
}
