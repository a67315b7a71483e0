//! The portable kernels of the tiled attention: the same steps as the AVX-512 ones in plain f32
//! (their own rounding), on blocks widened into the scratch.

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::block::{FlashScratch, HeadCache, KeyBlock, Partial, KEY_BLOCK, PV_ROWS};

const LANES: usize = 16;

pub fn scores(
    q: &[f32],
    keys: &[f32],
    hd: usize,
    scale: f32,
    visible: usize,
    out: &mut [f32; KEY_BLOCK],
) {
    for (j, s) in out.iter_mut().enumerate() {
        *s = if j < visible {
            dot(q, &keys[j * hd..(j + 1) * hd]) * scale
        } else {
            f32::NEG_INFINITY
        };
    }
}

/// Sixteen partial sums (vector lanes where the compiler finds them), then the tail.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let mut tail = 0.0f32;
    for (x, y) in ac.remainder().iter().zip(bc.remainder()) {
        tail += x * y;
    }
    for (x, y) in ac.zip(bc) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

pub fn softmax_step(p: &mut [f32; KEY_BLOCK], m: &mut f32, l: &mut f32) -> f32 {
    let m_new = p.iter().copied().fold(*m, f32::max);
    let alpha = exp(*m - m_new);
    let mut sum = 0.0f32;
    for v in p.iter_mut() {
        *v = exp(*v - m_new);
        sum += *v;
    }
    *l = *l * alpha + sum;
    *m = m_new;
    alpha
}

pub fn pv(n: usize, p: &[f32], alpha: &[f32], values: &[f32], hd: usize, o: &mut [f32]) {
    for r in 0..n {
        let probs = &p[r * KEY_BLOCK..(r + 1) * KEY_BLOCK];
        let row = &mut o[r * hd..(r + 1) * hd];
        for v in row.iter_mut() {
            *v *= alpha[r];
        }
        for (j, pj) in probs.iter().enumerate() {
            for (v, x) in row.iter_mut().zip(&values[j * hd..(j + 1) * hd]) {
                *v += pj * x;
            }
        }
    }
}

/// The portable step over one block: the keys and values widened into the scratch, then
/// each row's scores and softmax step, then `P·V` a few rows at a time.
pub(super) fn block(
    kv: HeadCache<'_>,
    q: &[f32],
    last: &[usize],
    block: &KeyBlock,
    scale: f32,
    s: &mut FlashScratch,
    part: &mut Partial<'_>,
) {
    let hd = kv.head_dim;
    widen_block(kv.keys, block, hd, &mut s.keys);
    widen_block(kv.values, block, hd, &mut s.values);
    for r in block.first..last.len() {
        let probs: &mut [f32; KEY_BLOCK] = (&mut s.probs[r * KEY_BLOCK..][..KEY_BLOCK])
            .try_into()
            .expect("KEY_BLOCK probabilities");
        let visible = block.visible(last[r]);
        scores(&q[r * hd..(r + 1) * hd], &s.keys, hd, scale, visible, probs);
        s.alpha[r] = softmax_step(probs, &mut part.m[r], &mut part.l[r]);
    }
    let mut r = block.first;
    while r < last.len() {
        let n = PV_ROWS.min(last.len() - r);
        let (p, a) = (&s.probs[r * KEY_BLOCK..], &s.alpha[r..]);
        pv(n, p, a, &s.values, hd, &mut part.o[r * hd..(r + n) * hd]);
        r += n;
    }
}

/// The block's positions of `bits` widened into `out` (`[KEY_BLOCK, hd]`), zero past
/// `valid`: masked keys then weigh zero times zero, whatever stale bits lie there.
fn widen_block(bits: &[u16], block: &KeyBlock, hd: usize, out: &mut Vec<f32>) {
    out.resize(KEY_BLOCK * hd, 0.0);
    let src = &bits[block.start * hd..(block.start + block.valid) * hd];
    let halves: &[f16] = half::slice::HalfBitsSliceExt::reinterpret_cast(src);
    halves.convert_to_f32_slice(&mut out[..block.valid * hd]);
    out[block.valid * hd..].fill(0.0);
}

/// ggml's `exp` (the vector kernels' lanes compute exactly this).
pub(super) fn exp(x: f32) -> f32 {
    crate::cpu::ggml_math::v_expf(x)
}
