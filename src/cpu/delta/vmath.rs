//! Vector helpers of the fused GDN kernels over [`Simd`]: dot products, `y += a x`, SiLU,
//! scaling; each a vector loop and a scalar tail. `#[inline(always)]`, so they compile inside
//! the callers' ISA entry points.

use super::simd::{exp_plain, Simd};

/// `a · b` (same lengths): four accumulators, so that a head-sized dot product is not one
/// chain of dependent FMAs.
#[inline(always)]
pub unsafe fn dot<S: Simd>(a: &[f32], b: &[f32]) -> f32 {
    let (n, l) = (a.len().min(b.len()), S::LANES);
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [S::splat(0.0); 4];
    let mut i = 0;
    while i + 4 * l <= n {
        for (u, acc) in acc.iter_mut().enumerate() {
            let at = i + u * l;
            *acc = S::fma(S::load(pa.add(at)), S::load(pb.add(at)), *acc);
        }
        i += 4 * l;
    }
    while i + l <= n {
        acc[0] = S::fma(S::load(pa.add(i)), S::load(pb.add(i)), acc[0]);
        i += l;
    }
    let mut sum = S::hsum(S::add(S::add(acc[0], acc[1]), S::add(acc[2], acc[3])));
    for j in i..n {
        sum = S::fma1(a[j], b[j], sum);
    }
    sum
}

/// `y += a * x`.
#[inline(always)]
pub unsafe fn axpy<S: Simd>(y: &mut [f32], a: f32, x: &[f32]) {
    let (n, l) = (y.len().min(x.len()), S::LANES);
    let main = n / l * l;
    let va = S::splat(a);
    let mut i = 0;
    while i < main {
        let p = y.as_mut_ptr().add(i);
        S::store(p, S::fma(S::load(x.as_ptr().add(i)), va, S::load(p)));
        i += l;
    }
    for i in main..n {
        y[i] = S::fma1(x[i], a, y[i]);
    }
}

/// `y += x * w`, element by element.
#[inline(always)]
pub unsafe fn fma_into<S: Simd>(y: &mut [f32], x: &[f32], w: &[f32]) {
    let (n, l) = (y.len().min(x.len()).min(w.len()), S::LANES);
    let main = n / l * l;
    let mut i = 0;
    while i < main {
        let p = y.as_mut_ptr().add(i);
        let prod = S::fma(
            S::load(x.as_ptr().add(i)),
            S::load(w.as_ptr().add(i)),
            S::load(p),
        );
        S::store(p, prod);
        i += l;
    }
    for i in main..n {
        y[i] = S::fma1(x[i], w[i], y[i]);
    }
}

/// `x *= a`.
#[inline(always)]
pub unsafe fn scale<S: Simd>(x: &mut [f32], a: f32) {
    let (n, l) = (x.len(), S::LANES);
    let main = n / l * l;
    let va = S::splat(a);
    let mut i = 0;
    while i < main {
        let p = x.as_mut_ptr().add(i);
        S::store(p, S::mul(S::load(p), va));
        i += l;
    }
    for v in &mut x[main..] {
        *v *= a;
    }
}

/// SiLU, `x / (1 + exp(-x))`, in place.
#[inline(always)]
pub unsafe fn silu_in_place<S: Simd>(x: &mut [f32]) {
    let (n, l) = (x.len(), S::LANES);
    let main = n / l * l;
    let (zero, one) = (S::splat(0.0), S::splat(1.0));
    let mut i = 0;
    while i < main {
        let p = x.as_mut_ptr().add(i);
        let v = S::load(p);
        let e = S::exp(S::fma(v, S::splat(-1.0), zero));
        S::store(p, S::div(v, S::add(one, e)));
        i += l;
    }
    for v in &mut x[main..] {
        *v /= 1.0 + exp_plain(-*v);
    }
}

/// `y = x * s * w * silu(z)`: the gated norm's output for one head.
#[inline(always)]
pub unsafe fn gated_out<S: Simd>(y: &mut [f32], x: &[f32], s: f32, w: &[f32], z: &[f32]) {
    let (n, l) = (y.len(), S::LANES);
    let main = n / l * l;
    let (vs, one) = (S::splat(s), S::splat(1.0));
    let mut i = 0;
    while i < main {
        let zv = S::load(z.as_ptr().add(i));
        let e = S::exp(S::mul(zv, S::splat(-1.0)));
        let gate = S::div(zv, S::add(one, e));
        let xs = S::mul(
            S::mul(S::load(x.as_ptr().add(i)), vs),
            S::load(w.as_ptr().add(i)),
        );
        S::store(y.as_mut_ptr().add(i), S::mul(xs, gate));
        i += l;
    }
    for i in main..n {
        let gate = z[i] / (1.0 + exp_plain(-z[i]));
        y[i] = x[i] * s * w[i] * gate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::delta::simd::Portable;

    #[test]
    fn exp_is_close_to_libm_on_the_silu_range() {
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let (ours, libm) = (exp_plain(x), x.exp());
            let ulps = (ours.to_bits() as i64 - libm.to_bits() as i64).abs();
            assert!(ulps <= 2, "exp({x}) = {ours}, libm {libm}");
        }
    }

    #[test]
    fn vector_helpers_agree_with_plain_loops() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 9.0).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.01).collect();
        let exact: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        // SAFETY: the portable vector runs anywhere.
        unsafe {
            assert!((f64::from(dot::<Portable>(&a, &b)) - exact).abs() < 1e-3);
            let mut s = a.clone();
            silu_in_place::<Portable>(&mut s);
            for (x, y) in a.iter().zip(&s) {
                assert!((x / (1.0 + (-x).exp()) - y).abs() < 1e-5);
            }
        }
    }
}
