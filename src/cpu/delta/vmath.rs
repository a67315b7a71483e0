//! Element-wise helpers of the fast path written to auto-vectorise: a branch-free `exp`, SiLU,
//! sums of squares and dot products over `[f32; L]` lanes. Compiled inside the callers' ISA
//! functions (they are `#[inline(always)]`).

/// `exp(x)` without branches, for SiLU: the input clamped to [-87, 88] (SiLU's results are
/// unchanged by it at f32 precision), ggml's range reduction and polynomial (its `v_expf`),
/// within 2 ulp of `exp` on that range.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23: adding it rounds to an integer
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r); // log2(e)
    let n = z - r;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),
        (-n).mul_add(f32::from_bits(0x3f31_7200), x),
    );
    let u = b * b;
    let c = f32::from_bits;
    let p = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)));
    let j = p.mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    // 2^n from its exponent bits: n is within [-126, 127] after the clamp.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    j * scale
}

/// `x / (1 + exp(-x))`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// SiLU of every element, in place.
#[inline(always)]
pub fn silu_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = silu(*v);
    }
}

/// `a · b` over `L` lane accumulators (same length slices).
#[inline(always)]
pub fn dot<const L: usize>(a: &[f32], b: &[f32]) -> f32 {
    let main = a.len() / L * L;
    let mut acc = [0.0f32; L];
    for (x, y) in a[..main].chunks_exact(L).zip(b[..main].chunks_exact(L)) {
        for l in 0..L {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    let mut sum = super::rows::hsum(&acc);
    for (x, y) in a[main..].iter().zip(&b[main..]) {
        sum = x.mul_add(*y, sum);
    }
    sum
}

/// `y += a * x`.
#[inline(always)]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = x.mul_add(a, *y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_close_to_libm_on_the_silu_range() {
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let (ours, libm) = (exp(x), x.exp());
            let ulps = (ours.to_bits() as i64 - libm.to_bits() as i64).abs();
            assert!(ulps <= 2, "exp({x}) = {ours}, libm {libm}");
        }
        assert!(silu(-200.0).abs() < 1e-30);
        assert_eq!(silu(200.0), 200.0);
        assert_eq!(silu(0.0), 0.0);
    }

    #[test]
    fn dot_sums_every_element() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.01).collect();
        let exact: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        assert!((f64::from(dot::<8>(&a, &b)) - exact).abs() < 1e-3);
    }
}
