//! The fast path's gated delta rule over the rows of one value head's state, token by token.
//!
//! Every row `v` of the state (`[v][k]`, see [`super::shape::GdnState`]) evolves on its own:
//! per token it decays, is read against the key and the query, and takes a multiple of the key.
//! So the loops run rows outside and tokens inside: a block of [`ROWS`] rows stays in L1 (or in
//! registers) over a tile of tokens while their keys and queries stream past, instead of the
//! whole `S x S` state streaming from L2 once per token. The arithmetic of a row is fixed by the
//! row and its tokens alone, so results depend neither on the tile, the run length (a prompt
//! then decode steps equals one long prompt, bit for bit) nor the thread split.
//!
//! Per row and token, from the row `x` before the token (one pass reads it, one writes it):
//! `a = d * (x · k)`, `delta = beta * (v - a)`, `o = (d * (x · q) + delta * (k · q)) * scale`,
//! `x = x * d + delta * k` (with `d = exp(g)`; `x · q` after the update expands into the first
//! and `k · q`, computed once per token).
//!
//! Written once over the `Simd` vector trait and compiled per ISA by the callers' entry points.

use super::simd::Simd;

/// State rows computed together (their dot products share each load of the key and query).
pub const ROWS: usize = 4;

/// One value head's inputs over a run of `T` tokens.
#[derive(Clone, Copy)]
pub(crate) struct HeadRun<'a> {
    /// Head size `S`.
    pub s: usize,
    /// Normalised queries and keys, `[T][S]`.
    pub q: &'a [f32],
    pub k: &'a [f32],
    /// Token `t`'s value at `v[t * v_stride..][..S]`.
    pub v: &'a [f32],
    pub v_stride: usize,
    /// Per token: the decay `exp(g)`, `beta`, and `k · q`.
    pub decay: &'a [f32],
    pub beta: &'a [f32],
    pub kq: &'a [f32],
    /// `1 / sqrt(S)`.
    pub scale: f32,
}

impl HeadRun<'_> {
    pub fn n_tokens(&self) -> usize {
        self.decay.len()
    }
}

/// Runs `run` over `state` (`S x S`), writing token `t`'s output row to `o[t * o_stride..]
/// [..S]`, `tile` tokens at a time per block of rows.
///
/// # Safety
/// The CPU must support `S`'s ISA.
#[inline(always)]
pub(crate) unsafe fn run_rows<S: Simd>(
    run: &HeadRun<'_>,
    state: &mut [f32],
    o: &mut [f32],
    o_stride: usize,
    tile: usize,
) {
    let (s, n) = (run.s, run.n_tokens());
    assert!(state.len() == s * s && run.q.len() >= n * s && run.k.len() >= n * s);
    assert!(run.beta.len() == n && run.kq.len() == n);
    assert!(
        n == 0 || (run.v.len() >= (n - 1) * run.v_stride + s && o.len() >= (n - 1) * o_stride + s)
    );
    let tile = tile.max(1);
    let mut t0 = 0;
    while t0 < n {
        let t1 = (t0 + tile).min(n);
        let mut r0 = 0;
        while r0 + ROWS <= s {
            let rows = &mut state[r0 * s..(r0 + ROWS) * s];
            for t in t0..t1 {
                block::<S, ROWS>(rows, run, t, r0, &mut o[t * o_stride + r0..][..ROWS]);
            }
            r0 += ROWS;
        }
        while r0 < s {
            let rows = &mut state[r0 * s..(r0 + 1) * s];
            for t in t0..t1 {
                block::<S, 1>(rows, run, t, r0, &mut o[t * o_stride + r0..][..1]);
            }
            r0 += 1;
        }
        t0 = t1;
    }
}

/// Token `t` on the `R` rows `rows` (`[R][S]`, state rows `r0..r0 + R`); their outputs to `o`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // rows by index, as the registers are laid out
unsafe fn block<S: Simd, const R: usize>(
    rows: &mut [f32],
    run: &HeadRun<'_>,
    t: usize,
    r0: usize,
    o: &mut [f32],
) {
    let (s, l) = (run.s, S::LANES);
    let k = &run.k[t * s..(t + 1) * s];
    let q = &run.q[t * s..(t + 1) * s];
    let v = &run.v[t * run.v_stride + r0..][..R];
    let (decay, beta, kq) = (run.decay[t], run.beta[t], run.kq[t]);
    let main = s / l * l;
    let x = rows.as_mut_ptr();

    // Both dot products of every row, sharing the loads of k and q.
    let mut ak = [S::splat(0.0); R];
    let mut aq = [S::splat(0.0); R];
    let mut c = 0;
    while c < main {
        let kc = S::load(k.as_ptr().add(c));
        let qc = S::load(q.as_ptr().add(c));
        for r in 0..R {
            let xr = S::load(x.add(r * s + c));
            ak[r] = S::fma(xr, kc, ak[r]);
            aq[r] = S::fma(xr, qc, aq[r]);
        }
        c += l;
    }
    let mut delta = [0.0f32; R];
    for r in 0..R {
        let (mut sk, mut sq) = (S::hsum(ak[r]), S::hsum(aq[r]));
        for c in main..s {
            sk = S::fma1(rows[r * s + c], k[c], sk);
            sq = S::fma1(rows[r * s + c], q[c], sq);
        }
        delta[r] = beta * (v[r] - decay * sk);
        o[r] = S::fma1(decay, sq, delta[r] * kq) * run.scale;
    }

    // The update, one pass per row.
    let vd = S::splat(decay);
    let dv: [S::V; R] = std::array::from_fn(|r| S::splat(delta[r]));
    let mut c = 0;
    while c < main {
        let kc = S::load(k.as_ptr().add(c));
        for r in 0..R {
            let p = x.add(r * s + c);
            S::store(p, S::fma(kc, dv[r], S::mul(S::load(p), vd)));
        }
        c += l;
    }
    for c in main..s {
        for r in 0..R {
            rows[r * s + c] = S::fma1(k[c], delta[r], rows[r * s + c] * decay);
        }
    }
}
