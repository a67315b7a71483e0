//! The gated delta rule over chunks of tokens in closed form (the "WY" form of llama.cpp's
//! graph fallback `build_delta_net_chunking`), for prompts.
//!
//! Within a chunk of `C` tokens, with `gc` the cumulative log-decay from the chunk's start,
//! `D[i][j] = exp(gc_i - gc_j)` (`j <= i`), and `M` the state at the chunk's start (`[v][k]`):
//! - `A[i][j] = beta_i (k_i · k_j) D[i][j]` for `j < i`; `(I + A) X = [beta v | beta exp(gc) k]`
//!   solved by forward substitution gives `v'` and `k_cd`;
//! - per state row `v`: `delta_i = v'_i[v] - M[v] · k_cd_i`, the output `o_i[v] = exp(gc_i)
//!   M[v] · q_i + sum_{j <= i} D[i][j] (q_i · k_j) delta_j`, and the new row
//!   `exp(gc_last) M[v] + sum_j exp(gc_last - gc_j) delta_j k_j`.
//!
//! Every exponent is a difference `gc_i - gc_j <= 0`, so nothing overflows however strong the
//! decay. Mathematically the recurrence; numerically within rounding of it (tests bound it).
//! Rows stay independent, so the per-row work runs in blocks of rows as in [`super::rows`],
//! and the state is read and written once per chunk.

use super::rows::{hsum, ROWS};
use super::vmath;

/// The largest chunk (the per-row buffers of a chunk live on the stack).
pub const MAX_CHUNK: usize = 128;

/// One value head's inputs over a run of `T` tokens.
#[derive(Clone, Copy)]
pub(crate) struct ChunkRun<'a> {
    pub s: usize,
    /// Normalised queries and keys, `[T][S]`.
    pub q: &'a [f32],
    pub k: &'a [f32],
    /// Token `t`'s value at `v[t * v_stride..][..S]`.
    pub v: &'a [f32],
    pub v_stride: usize,
    /// Per token: the log-decay `g` and `beta`.
    pub g: &'a [f32],
    pub beta: &'a [f32],
    pub scale: f32,
}

/// Buffers of one chunk.
#[derive(Debug, Default)]
pub(crate) struct ChunkScratch {
    /// Cumulative log-decay, its exponential, and `exp(gc_last - gc_j)`, `[C]`.
    gc: Vec<f32>,
    eg: Vec<f32>,
    w: Vec<f32>,
    /// `A` (strictly lower) and `P = D ⊙ (Q Kᵀ)` (lower with the diagonal), `[C][C]`.
    a: Vec<f32>,
    p: Vec<f32>,
    /// The solve's result `[C][2S]`: `v'` then `k_cd` in each row.
    x: Vec<f32>,
    /// `exp(gc_last - gc_j) k_j`, `[C][S]`.
    kw: Vec<f32>,
}

/// Runs `run` over `state` (`S x S`) in chunks of `size`, token `t`'s output to
/// `o[t * o_stride..][..S]`.
#[inline(always)]
pub(crate) fn run_head<const L: usize>(
    run: &ChunkRun<'_>,
    state: &mut [f32],
    o: &mut [f32],
    o_stride: usize,
    size: usize,
    sc: &mut ChunkScratch,
) {
    let n = run.g.len();
    let size = size.clamp(1, MAX_CHUNK);
    let mut t0 = 0;
    while t0 < n {
        let len = size.min(n - t0);
        prepare::<L>(run, t0, len, sc);
        let mut r0 = 0;
        while r0 + ROWS <= run.s {
            rows_block::<L, ROWS>(run, t0, len, r0, state, o, o_stride, sc);
            r0 += ROWS;
        }
        while r0 < run.s {
            rows_block::<L, 1>(run, t0, len, r0, state, o, o_stride, sc);
            r0 += 1;
        }
        t0 += len;
    }
}

/// The chunk's shared quantities: decays, `A`, `P`, the solve, the weighted keys.
#[inline(always)]
fn prepare<const L: usize>(run: &ChunkRun<'_>, t0: usize, len: usize, sc: &mut ChunkScratch) {
    let s = run.s;
    for buf in [&mut sc.gc, &mut sc.eg, &mut sc.w] {
        buf.resize(len, 0.0);
    }
    for buf in [&mut sc.a, &mut sc.p] {
        buf.resize(len * len, 0.0);
    }
    sc.x.resize(len * 2 * s, 0.0);
    sc.kw.resize(len * s, 0.0);

    let mut acc = 0.0f32;
    for i in 0..len {
        acc += run.g[t0 + i];
        sc.gc[i] = acc;
    }
    let last = sc.gc[len - 1];
    for i in 0..len {
        sc.eg[i] = vmath::exp(sc.gc[i]);
        sc.w[i] = vmath::exp(last - sc.gc[i]);
    }
    let key = |t: usize| &run.k[(t0 + t) * s..(t0 + t + 1) * s];
    let query = |t: usize| &run.q[(t0 + t) * s..(t0 + t + 1) * s];
    for i in 0..len {
        let b = run.beta[t0 + i];
        for j in 0..=i {
            let d = vmath::exp(sc.gc[i] - sc.gc[j]);
            sc.p[i * len + j] = vmath::dot::<L>(query(i), key(j)) * d;
            if j < i {
                sc.a[i * len + j] = b * vmath::dot::<L>(key(i), key(j)) * d;
            }
        }
    }
    // (I + A) X = B by forward substitution, B_i = [beta_i v_i | beta_i exp(gc_i) k_i]
    for i in 0..len {
        let b = run.beta[t0 + i];
        let (done, rest) = sc.x.split_at_mut(i * 2 * s);
        let xi = &mut rest[..2 * s];
        let v = &run.v[(t0 + i) * run.v_stride..][..s];
        for c in 0..s {
            xi[c] = b * v[c];
        }
        let bk = b * sc.eg[i];
        for (x, k) in xi[s..].iter_mut().zip(key(i)) {
            *x = bk * k;
        }
        for j in 0..i {
            vmath::axpy(xi, -sc.a[i * len + j], &done[j * 2 * s..(j + 1) * 2 * s]);
        }
    }
    for j in 0..len {
        let wj = sc.w[j];
        for (kw, k) in sc.kw[j * s..(j + 1) * s].iter_mut().zip(key(j)) {
            *kw = wj * k;
        }
    }
}

/// State rows `r0..r0 + R` through the chunk: their deltas, outputs and new values.
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // lanes and rows by index
fn rows_block<const L: usize, const R: usize>(
    run: &ChunkRun<'_>,
    t0: usize,
    len: usize,
    r0: usize,
    state: &mut [f32],
    o: &mut [f32],
    o_stride: usize,
    sc: &ChunkScratch,
) {
    let s = run.s;
    let rows = &mut state[r0 * s..(r0 + R) * s];
    let main = s / L * L;
    // delta[r][i], then the outputs: needs M[v] · k_cd_i and M[v] · q_i for every token.
    let mut delta = [[0.0f32; MAX_CHUNK]; R];
    let mut mq = [[0.0f32; MAX_CHUNK]; R];
    debug_assert!(len <= MAX_CHUNK);
    for i in 0..len {
        let kcd = &sc.x[i * 2 * s + s..(i + 1) * 2 * s];
        let q = &run.q[(t0 + i) * s..(t0 + i + 1) * s];
        let mut ak = [[0.0f32; L]; R];
        let mut aq = [[0.0f32; L]; R];
        let mut c = 0;
        while c < main {
            let kc: &[f32; L] = kcd[c..c + L].try_into().expect("L lanes");
            let qc: &[f32; L] = q[c..c + L].try_into().expect("L lanes");
            for r in 0..R {
                let x: &[f32; L] = rows[r * s + c..r * s + c + L].try_into().expect("L lanes");
                for l in 0..L {
                    ak[r][l] = x[l].mul_add(kc[l], ak[r][l]);
                    aq[r][l] = x[l].mul_add(qc[l], aq[r][l]);
                }
            }
            c += L;
        }
        for r in 0..R {
            let (mut sk, mut sq) = (hsum(&ak[r]), hsum(&aq[r]));
            for c in main..s {
                sk = rows[r * s + c].mul_add(kcd[c], sk);
                sq = rows[r * s + c].mul_add(q[c], sq);
            }
            delta[r][i] = sc.x[i * 2 * s + r0 + r] - sk;
            mq[r][i] = sq;
        }
    }
    for r in 0..R {
        for i in 0..len {
            let p = &sc.p[i * len..i * len + i + 1];
            let mut intra = 0.0f32;
            for (pij, d) in p.iter().zip(&delta[r][..=i]) {
                intra = pij.mul_add(*d, intra);
            }
            o[(t0 + i) * o_stride + r0 + r] = sc.eg[i].mul_add(mq[r][i], intra) * run.scale;
        }
    }
    // the new rows: exp(gc_last) M[v] + sum_j delta_j[v] kw_j, each lane chunk in registers
    let e_last = sc.eg[len - 1];
    let mut c = 0;
    while c < main {
        let mut acc = [[0.0f32; L]; R];
        for r in 0..R {
            for l in 0..L {
                acc[r][l] = rows[r * s + c + l] * e_last;
            }
        }
        for j in 0..len {
            let kw: &[f32; L] = sc.kw[j * s + c..j * s + c + L].try_into().expect("L lanes");
            for r in 0..R {
                let d = delta[r][j];
                for l in 0..L {
                    acc[r][l] = kw[l].mul_add(d, acc[r][l]);
                }
            }
        }
        for r in 0..R {
            rows[r * s + c..r * s + c + L].copy_from_slice(&acc[r]);
        }
        c += L;
    }
    for c in main..s {
        for r in 0..R {
            let mut x = rows[r * s + c] * e_last;
            for j in 0..len {
                x = sc.kw[j * s + c].mul_add(delta[r][j], x);
            }
            rows[r * s + c] = x;
        }
    }
}
