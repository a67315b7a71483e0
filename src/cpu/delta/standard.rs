//! The standard path's GDN steps in llama.cpp's order of operations, one function per ggml op
//! of its graph (`qwen35.cpp` `build_layer_attn_linear`, the CPU kernels `ssm_conv`, `silu`,
//! `rms_norm`, `softplus`, `sigmoid` and the fused `gated_delta_net`), so that f32 results
//! equal llama.cpp's in every bit the same sums allow: exact libm `expf`/`logf` where ggml calls
//! them, ggml's vectorised `exp` inside SiLU, f64 sums of squares in the norms, and its dot
//! product order ([`ggml_math`]).
//!
//! Single-threaded: the standard path runs one thread. Layouts are those of [`super::shape`].

use crate::cpu::ggml_math::{self, fma_dispatch, v_expf, LANES};

use super::shape::{len, GdnInputs, GdnShape, GdnState, GdnWeights, ShapeError};

/// Scratch of [`layer`], reused across calls.
#[derive(Debug, Default)]
pub struct StandardScratch {
    conv: Vec<f32>,
    g: Vec<f32>,
    beta: Vec<f32>,
    o: Vec<f32>,
}

/// One GDN layer over a run of tokens: [`conv_silu`], [`l2_norm_qk`], [`gates`],
/// [`recurrence`], [`gated_norm`]. `out` is `[n_tokens][value_dim]`, the input of `ssm_out`.
pub fn layer(
    shape: &GdnShape,
    weights: &GdnWeights<'_>,
    state: &mut GdnState,
    inputs: &GdnInputs<'_>,
    out: &mut [f32],
    scratch: &mut StandardScratch,
) -> Result<(), ShapeError> {
    weights.check(shape)?;
    state.check(shape)?;
    let n = inputs.check(shape)?;
    len("output", out, n * shape.value_dim())?;
    let StandardScratch { conv, g, beta, o } = scratch;
    conv.resize(n * shape.conv_dim(), 0.0);
    g.resize(n * shape.v_heads, 0.0);
    beta.resize(n * shape.v_heads, 0.0);
    o.resize(n * shape.value_dim(), 0.0);
    conv_silu(shape, weights.conv, &mut state.conv, inputs.qkv, conv);
    l2_norm_qk(shape, conv);
    gates(weights, inputs.alpha, inputs.beta, g, beta);
    recurrence(shape, conv, g, beta, &mut state.ssm, o);
    gated_norm(shape, weights.norm, o, inputs.z, out);
    Ok(())
}

fma_dispatch! {
    /// Causal depthwise convolution over the qkv channels, then SiLU (`ggml_ssm_conv`,
    /// `ggml_silu`): `out[t][c] = silu(sum_i w[c][i] * x[t - K + 1 + i][c])`, the taps summed in
    /// order by fused multiply-adds, where `x` before the run comes from `conv_state`
    /// (`[K - 1][conv_dim]`, oldest first), which is then advanced to the run's last inputs.
    /// `qkv` and `out` are `[n_tokens][conv_dim]`; `conv_w` is `[conv_dim][K]`.
    pub fn conv_silu(
        shape: &GdnShape,
        conv_w: &[f32],
        conv_state: &mut [f32],
        qkv: &[f32],
        out: &mut [f32],
    ) => conv_silu_body
}

#[inline(always)]
fn conv_silu_body(
    shape: &GdnShape,
    conv_w: &[f32],
    conv_state: &mut [f32],
    qkv: &[f32],
    out: &mut [f32],
) {
    let (c_dim, k) = (shape.conv_dim(), shape.conv_kernel);
    let n = qkv.len() / c_dim;
    assert!(conv_w.len() == c_dim * k && conv_state.len() == (k - 1) * c_dim);
    assert!(qkv.len() == n * c_dim && out.len() == n * c_dim);
    // The input as llama.cpp sees it: the kept rows, then the run's.
    let row = |i: usize| -> &[f32] {
        if i < k - 1 {
            &conv_state[i * c_dim..(i + 1) * c_dim]
        } else {
            &qkv[(i - (k - 1)) * c_dim..(i - (k - 2)) * c_dim]
        }
    };
    for t in 0..n {
        let y = &mut out[t * c_dim..(t + 1) * c_dim];
        for (c, yc) in y.iter_mut().enumerate() {
            let taps = &conv_w[c * k..(c + 1) * k];
            let mut sum = 0.0f32;
            for (i, w) in taps.iter().enumerate() {
                sum = row(t + i)[c].mul_add(*w, sum);
            }
            *yc = sum;
        }
        silu_in_place(y);
    }
    advance_conv_state(conv_state, qkv, c_dim);
}

/// Keeps the last `K - 1` rows of `[conv_state; qkv]` in `conv_state`.
pub(crate) fn advance_conv_state(conv_state: &mut [f32], qkv: &[f32], c_dim: usize) {
    let keep = conv_state.len() / c_dim;
    let n = qkv.len() / c_dim;
    if n >= keep {
        conv_state.copy_from_slice(&qkv[(n - keep) * c_dim..]);
    } else {
        conv_state.copy_within(n * c_dim.., 0);
        let at = (keep - n) * c_dim;
        conv_state[at..].copy_from_slice(qkv);
    }
}

/// `ggml_vec_silu_f32` on one row, in place: `x / (1 + exp(-x))` with ggml's vector `exp` on
/// whole 16-lane chunks from the row's start and libm's `expf` on the rest.
#[inline(always)]
fn silu_in_place(x: &mut [f32]) {
    let whole = x.len() / LANES * LANES;
    for v in &mut x[..whole] {
        *v /= 1.0 + v_expf(0.0 - *v);
    }
    for v in &mut x[whole..] {
        *v /= 1.0 + (-*v).exp();
    }
}

/// The scale ggml's `rms_norm` applies to row `x`: `1 / sqrt(mean(x^2) + eps)`, the squares
/// (rounded to f32) summed in f64 and the mean rounded to f32.
#[inline(always)]
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum: f64 = x.iter().map(|v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// L2 normalisation of every query and key head of `conv` (`[n_tokens][conv_dim]`, in place),
/// as llama.cpp's `build_gdn_l2_norm`: `rms_norm(x, eps / S)` then a scale by `1 / sqrt(S)`,
/// i.e. `x / sqrt(sum x^2 + eps)` up to rounding.
pub fn l2_norm_qk(shape: &GdnShape, conv: &mut [f32]) {
    let (s, c_dim) = (shape.head_dim, shape.conv_dim());
    let eps = shape.eps / s as f32;
    let post = 1.0 / (s as f32).sqrt();
    for row in conv.chunks_exact_mut(c_dim) {
        for head in row[..2 * shape.key_dim()].chunks_exact_mut(s) {
            let scale = rms_scale(head, eps);
            for v in head.iter_mut() {
                *v = (*v * scale) * post;
            }
        }
    }
}

/// Per token and value head: the log-decay `g = ssm_a * softplus(alpha + dt_bias)` (ggml's
/// `softplus`: `x` above 20, else `logf(1 + expf(x))`) and `beta = sigmoid(beta_in)` (`1 / (1 +
/// expf(-x))`). All `[n_tokens][v_heads]`.
pub fn gates(
    weights: &GdnWeights<'_>,
    alpha: &[f32],
    beta_in: &[f32],
    g: &mut [f32],
    beta: &mut [f32],
) {
    let nv = weights.a.len();
    for (t, (g_row, a_row)) in g
        .chunks_exact_mut(nv)
        .zip(alpha.chunks_exact(nv))
        .enumerate()
    {
        for j in 0..nv {
            g_row[j] = softplus(a_row[j] + weights.dt_bias[j]) * weights.a[j];
        }
        for j in 0..nv {
            beta[t * nv + j] = 1.0 / (1.0 + (-beta_in[t * nv + j]).exp());
        }
    }
}

/// ggml's `softplus`.
pub(crate) fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        (1.0 + x.exp()).ln()
    }
}

fma_dispatch! {
    /// The gated delta rule over a run of tokens, as `ggml_gated_delta_net` computes it: per
    /// value head `j` (key head by `shape.map`) and token, `S *= expf(g)`, then per row `v` of
    /// the state `delta = (v_t[v] - S[v]·k) * beta`, `S[v] += delta * k`, `o[v] = (S[v]·q) /
    /// sqrt(S)`. Rows are independent, so each row runs its own sequence of operations exactly
    /// as llama.cpp's (which goes operation by operation over all rows).
    ///
    /// `conv` is `[n_tokens][conv_dim]` (normalised q and k, v), `g` and `beta` `[n_tokens]
    /// [v_heads]`, `ssm` the state `[v_heads][S][S]`, `o` `[n_tokens][value_dim]`.
    pub fn recurrence(
        shape: &GdnShape,
        conv: &[f32],
        g: &[f32],
        beta: &[f32],
        ssm: &mut [f32],
        o: &mut [f32],
    ) => recurrence_body
}

#[inline(always)]
fn recurrence_body(
    shape: &GdnShape,
    conv: &[f32],
    g: &[f32],
    beta: &[f32],
    ssm: &mut [f32],
    o: &mut [f32],
) {
    let (s, c_dim, nv) = (shape.head_dim, shape.conv_dim(), shape.v_heads);
    let n = g.len() / nv;
    assert!(conv.len() == n * c_dim && beta.len() == n * nv);
    assert!(ssm.len() == shape.ssm_state_len() && o.len() == n * shape.value_dim());
    let scale = 1.0 / (s as f32).sqrt();
    for j in 0..nv {
        let kh = shape.key_head(j);
        let state = &mut ssm[j * s * s..(j + 1) * s * s];
        for t in 0..n {
            let x = &conv[t * c_dim..(t + 1) * c_dim];
            let (q, k, v) = (
                &x[shape.q_channels(kh)],
                &x[shape.k_channels(kh)],
                &x[shape.v_channels(j)],
            );
            let decay = g[t * nv + j].exp();
            let b = beta[t * nv + j];
            let out = &mut o[t * nv * s + j * s..t * nv * s + (j + 1) * s];
            for (r, row) in state.chunks_exact_mut(s).enumerate() {
                for e in row.iter_mut() {
                    *e *= decay;
                }
                let delta = (v[r] - ggml_math::vec_dot_f32(row, k)) * b;
                for (e, ki) in row.iter_mut().zip(k) {
                    *e = ki.mul_add(delta, *e);
                }
                out[r] = ggml_math::vec_dot_f32(row, q) * scale;
            }
        }
    }
}

fma_dispatch! {
    /// The output's gated RMSNorm, per token and value head: `rms_norm(o) * ssm_norm *
    /// silu(z)` (llama.cpp's `build_norm_gated`: a fused `rms_norm` + `mul`, then ggml's `silu`
    /// over each head's `S` values of z, then `mul`). `o`, `z` and `out` are `[n_tokens]
    /// [value_dim]`.
    pub fn gated_norm(shape: &GdnShape, norm: &[f32], o: &[f32], z: &[f32], out: &mut [f32])
        => gated_norm_body
}

#[inline(always)]
fn gated_norm_body(shape: &GdnShape, norm: &[f32], o: &[f32], z: &[f32], out: &mut [f32]) {
    let s = shape.head_dim;
    let mut gate = vec![0.0f32; s];
    for ((y, x), zh) in out
        .chunks_exact_mut(s)
        .zip(o.chunks_exact(s))
        .zip(z.chunks_exact(s))
    {
        let scale = rms_scale(x, shape.eps);
        gate.copy_from_slice(zh);
        silu_in_place(&mut gate);
        for i in 0..s {
            y[i] = ((x[i] * scale) * norm[i]) * gate[i];
        }
    }
}
