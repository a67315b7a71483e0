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
//! Written once over `L` lanes of `[f32; L]` arrays and compiled per ISA (`L` = 8 for AVX2 and
//! portable code, which becomes NEON on aarch64; 16 for AVX-512): the arrays auto-vectorise.

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
/// [..S]`, `tile` tokens at a time per block of rows. Compiled inside the caller's ISA
/// function (see `super::fused`).
#[inline(always)]
pub(crate) fn run_lanes<const L: usize>(
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
                block::<L, ROWS>(rows, run, t, r0, &mut o[t * o_stride + r0..][..ROWS]);
            }
            r0 += ROWS;
        }
        while r0 < s {
            let rows = &mut state[r0 * s..(r0 + 1) * s];
            for t in t0..t1 {
                block::<L, 1>(rows, run, t, r0, &mut o[t * o_stride + r0..][..1]);
            }
            r0 += 1;
        }
        t0 = t1;
    }
}

/// Token `t` on the `R` rows `rows` (`[R][S]`, state rows `r0..r0 + R`); their outputs to `o`.
#[inline(always)]
fn block<const L: usize, const R: usize>(
    rows: &mut [f32],
    run: &HeadRun<'_>,
    t: usize,
    r0: usize,
    o: &mut [f32],
) {
    let s = run.s;
    let k = &run.k[t * s..(t + 1) * s];
    let q = &run.q[t * s..(t + 1) * s];
    let v = &run.v[t * run.v_stride + r0..][..R];
    let (decay, beta, kq) = (run.decay[t], run.beta[t], run.kq[t]);
    let main = s / L * L;

    // Both dot products of every row, sharing the loads of k and q.
    let mut ak = [[0.0f32; L]; R];
    let mut aq = [[0.0f32; L]; R];
    let mut c = 0;
    while c < main {
        let kc: &[f32; L] = k[c..c + L].try_into().expect("L lanes");
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
    let mut delta = [0.0f32; R];
    for r in 0..R {
        let (mut sk, mut sq) = (hsum(&ak[r]), hsum(&aq[r]));
        for c in main..s {
            sk = rows[r * s + c].mul_add(k[c], sk);
            sq = rows[r * s + c].mul_add(q[c], sq);
        }
        delta[r] = beta * (v[r] - decay * sk);
        o[r] = decay.mul_add(sq, delta[r] * kq) * run.scale;
    }

    // The update, one pass per row.
    for r in 0..R {
        let row = &mut rows[r * s..(r + 1) * s];
        for (x, kc) in row.iter_mut().zip(k) {
            *x = kc.mul_add(delta[r], *x * decay);
        }
    }
}

/// Sum of the lanes, pairwise.
#[inline(always)]
pub(crate) fn hsum<const L: usize>(v: &[f32; L]) -> f32 {
    let mut t = *v;
    let mut w = L;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            t[i] += t[i + w];
        }
    }
    t[0]
}
