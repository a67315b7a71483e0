//! Matmul kernel benchmark: prints figures, asserts nothing.
//!
//! `cargo bench --bench matmul [-- FILTER...]`: FILTER words pick weight types (`Q8_0`,
//! `Q4_K`, ...) or sections (`bandwidth`, `pool`, `shapes`, `model`, `prompt`, `warm`); none means
//! everything.
//! Decode runs on cold weights (enough copies to overflow the caches, as in a real decode
//! step); prefill on warm weights. Baselines are measured in the same run: the machine's read
//! bandwidth, and a naive single-thread dequantize-row-then-f32-dot.

// Outputs are compared and reported by index; iterator chains would hide which one.
#![allow(clippy::needless_range_loop)]

use std::hint::black_box;
use std::time::{Duration, Instant};

#[path = "common/per_call.rs"]
mod per_call;
use per_call::per_call;

use qwen::cpu::repack::RepackedMatrix;
use qwen::cpu::synth::{random_input, random_weights, Rng};
use qwen::cpu::{
    cpu_features, dequantize_row, matmul, matmul_multi, MatmulPlan, Scratch, ThreadPool,
    WeightMatrix,
};
use qwen::quant::{GgmlType, SUPPORTED_TYPES};

const SHAPES: [(usize, usize); 5] = [
    (1024, 1024),
    (3072, 1024),
    (1024, 3072),
    (151_936, 1024),
    (9728, 2560),
];
const PREFILL: usize = 64;

/// Sums `part` with 256-bit loads where the CPU has AVX2, so the loop is never the limit:
/// as one sequential stream, or as four streams (four stretches read side by side, with
/// prefetch 256 bytes ahead, as the decode kernels read).
fn sum_words(part: &[u64], four: bool) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was just detected.
        return unsafe {
            if four {
                sum4_avx2(part)
            } else {
                sum_avx2(part)
            }
        };
    }
    let _ = four;
    let mut acc = [0u64; 8];
    for c in part.chunks_exact(8) {
        for k in 0..8 {
            acc[k] = acc[k].wrapping_add(c[k]);
        }
    }
    acc.iter().fold(0, |a, b| a.wrapping_add(*b))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2(part: &[u64]) -> u64 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_si256(); 4];
    for c in part.chunks_exact(16) {
        for (k, a) in acc.iter_mut().enumerate() {
            let v = _mm256_loadu_si256(c.as_ptr().add(4 * k) as *const __m256i);
            *a = _mm256_add_epi64(*a, v);
        }
    }
    let mut out = [0u64; 4];
    let s = _mm256_add_epi64(
        _mm256_add_epi64(acc[0], acc[1]),
        _mm256_add_epi64(acc[2], acc[3]),
    );
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, s);
    out.iter().fold(0, |a, b| a.wrapping_add(*b))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum4_avx2(part: &[u64]) -> u64 {
    use std::arch::x86_64::*;
    let len = part.len() / 4 / 8 * 8;
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut i = 0;
    while i < len {
        for (k, a) in acc.iter_mut().enumerate() {
            let p = part.as_ptr().add(k * len + i);
            _mm_prefetch::<_MM_HINT_T0>(p.add(32) as *const i8);
            let v = _mm256_add_epi64(
                _mm256_loadu_si256(p as *const __m256i),
                _mm256_loadu_si256(p.add(4) as *const __m256i),
            );
            *a = _mm256_add_epi64(*a, v);
        }
        i += 8;
    }
    let mut out = [0u64; 4];
    let s = _mm256_add_epi64(
        _mm256_add_epi64(acc[0], acc[1]),
        _mm256_add_epi64(acc[2], acc[3]),
    );
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, s);
    out.iter().fold(0, |a, b| a.wrapping_add(*b))
}

/// Read bandwidth in GB/s: `threads` threads summing disjoint parts of `buf`, best of 5
/// rounds of each access pattern.
fn read_bandwidth(pool: &ThreadPool, threads: usize, buf: &[u64]) -> f64 {
    let mut best = f64::MAX;
    for round in 0..10 {
        let t = Instant::now();
        pool.run(threads, |i| {
            let part = &buf[buf.len() * i / threads..buf.len() * (i + 1) / threads];
            black_box(sum_words(part, round % 2 == 1));
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    (buf.len() * 8) as f64 / best / 1e9
}

fn section_bandwidth(pool: &ThreadPool, max_threads: usize) -> Vec<f64> {
    let buf: Vec<u64> = (0..(1u64 << 27)).collect();
    let mut bw = vec![0.0];
    for threads in 1..=max_threads {
        let gbs = read_bandwidth(pool, threads, &buf);
        println!("memory read bandwidth, 1 GiB, {threads} thread(s): {gbs:.1} GB/s");
        bw.push(gbs);
    }
    bw
}

fn section_pool(max_threads: usize) {
    let n = 20_000;
    let ours = ThreadPool::new(max_threads).expect("thread pool");
    let per = per_call(Duration::from_millis(300), || {
        for _ in 0..100 {
            ours.run(max_threads, |i| {
                black_box(i);
            });
        }
    }) / 100.0;
    println!(
        "empty job, {max_threads} threads: our pool {:.2} us/call",
        per * 1e6
    );
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(max_threads)
        .build()
        .expect("rayon pool");
    let t = Instant::now();
    for _ in 0..n {
        rayon.broadcast(|c| {
            black_box(c.index());
        });
    }
    let per_r = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "empty job, {max_threads} threads: rayon broadcast {:.2} us/call",
        per_r * 1e6
    );
    // A matmul too small to matter: what one call costs beyond its arithmetic.
    let mut rng = Rng::new(3);
    let data = random_weights(&mut rng, GgmlType::Q8_0, 8, 1024);
    let w = WeightMatrix::new(GgmlType::Q8_0, 8, 1024, &data).expect("valid");
    let x = random_input(&mut rng, 1024);
    let mut y = vec![0.0; 8];
    let mut s = Scratch::default();
    for threads in 1..=max_threads {
        let plan = MatmulPlan {
            threads,
            rows_per_chunk: 4,
            ..MatmulPlan::new()
        };
        let per = per_call(Duration::from_millis(300), || {
            matmul(&ours, &w, &x, 1, &mut y, &plan, &mut s).expect("matmul");
        });
        println!(
            "8x1024 Q8_0 decode matmul, {threads} thread(s): {:.2} us/call",
            per * 1e6
        );
    }
}

/// Seconds per call of the naive baseline on `w`: dequantize each row, sequential f32 dots.
/// Timed on at most 1024 rows and scaled to all rows.
fn naive(w: &WeightMatrix, x: &[f32], n_tokens: usize) -> f64 {
    let rows = w.rows.min(1024);
    let rb = w.data.len() / w.rows;
    let mut row = vec![0.0f32; w.cols];
    let mut y = vec![0.0f32; n_tokens * rows];
    let secs = per_call(Duration::from_millis(200), || {
        for r in 0..rows {
            dequantize_row(w.ty, &w.data[r * rb..(r + 1) * rb], &mut row).expect("valid row");
            for t in 0..n_tokens {
                let xt = &x[t * w.cols..(t + 1) * w.cols];
                y[t * rows + r] = row.iter().zip(xt).map(|(a, b)| a * b).sum();
            }
        }
        black_box(&y);
    });
    secs * w.rows as f64 / rows as f64
}

struct Figures {
    decode_s: f64,
    prefill_s: f64,
}

fn measure(
    pool: &ThreadPool,
    threads: usize,
    mats: &[WeightMatrix],
    x1: &[f32],
    xp: &[f32],
) -> Figures {
    let w0 = &mats[0];
    let plan = MatmulPlan {
        threads,
        ..MatmulPlan::new()
    };
    let mut s = Scratch::default();
    let mut y1 = vec![0.0; w0.rows];
    let mut k = 0;
    let decode_s = per_call(Duration::from_millis(300), || {
        k = (k + 1) % mats.len();
        matmul(pool, &mats[k], x1, 1, &mut y1, &plan, &mut s).expect("matmul");
    });
    let mut yp = vec![0.0; w0.rows * PREFILL];
    let prefill_s = per_call(Duration::from_millis(300), || {
        matmul(pool, w0, xp, PREFILL, &mut yp, &plan, &mut s).expect("matmul");
    });
    Figures {
        decode_s,
        prefill_s,
    }
}

fn section_shapes(pool: &ThreadPool, max_threads: usize, bw: &[f64], types: &[GgmlType]) {
    println!();
    println!("decode = 1 token, cold weights: us/call, GB/s of weight bytes, % of read bandwidth");
    println!("prefill = {PREFILL} tokens, warm weights: GFLOP/s; x = speed-up over naive 1-thread");
    print!("{:<6} {:>13} {:>9}", "type", "rows x cols", "MB");
    for t in 1..=max_threads {
        print!(" | {t}t dec us   GB/s   %bw  pf GF/s");
    }
    println!(" | naive dec us  pf GF/s | best x dec   x pf");
    let mut rng = Rng::new(42);
    for &ty in types {
        for &(rows, cols) in &SHAPES {
            let data = random_weights(&mut rng, ty, rows, cols);
            let bytes = data.len();
            // Copies so that decode streams >= 256 MB before reusing a matrix.
            let copies = (256usize << 20).div_ceil(bytes).clamp(1, 64);
            let store: Vec<Vec<u8>> = (1..copies).map(|_| data.clone()).collect();
            let mut mats = vec![WeightMatrix::new(ty, rows, cols, &data).expect("valid")];
            for c in &store {
                mats.push(WeightMatrix::new(ty, rows, cols, c).expect("valid"));
            }
            let x1 = random_input(&mut rng, cols);
            let xp = random_input(&mut rng, cols * PREFILL);
            let flops = 2.0 * (rows * cols * PREFILL) as f64;
            print!(
                "{:<6} {:>13} {:>9.1}",
                ty.name(),
                format!("{rows}x{cols}"),
                bytes as f64 / 1e6
            );
            let mut best = Figures {
                decode_s: f64::MAX,
                prefill_s: f64::MAX,
            };
            for t in 1..=max_threads {
                let f = measure(pool, t, &mats, &x1, &xp);
                let gbs = bytes as f64 / f.decode_s / 1e9;
                print!(
                    " | {:>9.1} {:>6.1} {:>5.0} {:>8.1}",
                    f.decode_s * 1e6,
                    gbs,
                    100.0 * gbs / bw[t],
                    flops / f.prefill_s / 1e9
                );
                best.decode_s = best.decode_s.min(f.decode_s);
                best.prefill_s = best.prefill_s.min(f.prefill_s);
            }
            let nd = naive(&mats[0], &x1, 1);
            let np = naive(&mats[0], &xp, PREFILL);
            println!(
                " | {:>12.1} {:>8.2} | {:>9.1} {:>6.1}",
                nd * 1e6,
                flops / np / 1e9,
                nd / best.decode_s,
                np / best.prefill_s
            );
        }
    }
}

/// Per layer of Qwen3-0.6B: q, k, v, o, gate, up, down as (rows, cols); 28 layers + LM head.
const QWEN06_LAYER: [(usize, usize); 7] = [
    (2048, 1024),
    (1024, 1024),
    (1024, 1024),
    (1024, 2048),
    (3072, 1024),
    (3072, 1024),
    (1024, 3072),
];

fn section_model(pool: &ThreadPool, max_threads: usize, bw: &[f64], types: &[GgmlType]) {
    println!();
    println!("Qwen3-0.6B-shaped matmuls only (28 layers x 7 + LM head 151936x1024):");
    let mut rng = Rng::new(7);
    for &(ty, head_ty) in &[
        (GgmlType::Q8_0, GgmlType::Q8_0),
        (GgmlType::Q4_K, GgmlType::Q6_K),
    ] {
        if !types.contains(&ty) {
            continue;
        }
        let mut shapes: Vec<(GgmlType, usize, usize)> = Vec::new();
        for _ in 0..28 {
            shapes.extend(QWEN06_LAYER.iter().map(|&(r, c)| (ty, r, c)));
        }
        shapes.push((head_ty, 151_936, 1024));
        let store: Vec<Vec<u8>> = shapes
            .iter()
            .map(|&(t, r, c)| random_weights(&mut rng, t, r, c))
            .collect();
        let mats: Vec<WeightMatrix> = shapes
            .iter()
            .zip(&store)
            .map(|(&(t, r, c), d)| WeightMatrix::new(t, r, c, d).expect("valid"))
            .collect();
        let bytes: usize = store.iter().map(Vec::len).sum();
        let x = random_input(&mut rng, 3072 * PREFILL);
        let mut y = vec![0.0; 151_936 * PREFILL.max(1)];
        let mut s = Scratch::default();
        for threads in 1..=max_threads {
            let plan = MatmulPlan {
                threads,
                ..MatmulPlan::new()
            };
            let mut yb = vec![0.0; 3072 * PREFILL];
            let mut run_step = |n: usize| {
                let mut i = 0;
                while i < mats.len() {
                    // Per layer: q, k, v in one call, o, gate and up in one call, down.
                    let group = match i % 7 {
                        _ if i == mats.len() - 1 => 1,
                        0 => 3,
                        4 => 2,
                        _ => 1,
                    };
                    // Prefill computes logits for the last token only, as llama.cpp does.
                    let n = if i == mats.len() - 1 { 1 } else { n };
                    let ws = &mats[i..i + group];
                    let xs = &x[..n * ws[0].cols];
                    if group == 1 {
                        let ys = &mut y[..n * ws[0].rows];
                        matmul(pool, &ws[0], xs, n, ys, &plan, &mut s).expect("matmul");
                    } else {
                        let (a, b) = y.split_at_mut(n * ws[0].rows);
                        let (b, c) = b.split_at_mut(n * ws[1].rows);
                        let mut ys: [&mut [f32]; 3] = [a, b, &mut c[..]];
                        if group == 3 {
                            ys[2] = &mut yb[..n * ws[2].rows];
                        }
                        matmul_multi(pool, ws, xs, n, &mut ys[..group], &plan, &mut s)
                            .expect("matmul");
                    }
                    i += group;
                }
            };
            let dec = per_call(Duration::from_secs(2), || run_step(1));
            let pf = per_call(Duration::from_secs(2), || run_step(PREFILL));
            let gbs = bytes as f64 / dec / 1e9;
            println!(
                "{}/{} {:.0} MB, {threads} thread(s): decode {:.2} ms/token = {:.1} tok/s, {:.1} GB/s = {:.0}% of bandwidth; prefill {PREFILL}: {:.1} ms = {:.0} tok/s",
                ty.name(),
                head_ty.name(),
                bytes as f64 / 1e6,
                dec * 1e3,
                1.0 / dec,
                gbs,
                100.0 * gbs / bw[threads],
                pf * 1e3,
                PREFILL as f64 / pf
            );
        }
    }
}

/// CPU time of the calling thread (Linux; elsewhere wall time): what a one-thread kernel
/// costs, nearly unmoved by other processes taking turns on the cores.
fn thread_cpu_time() -> Duration {
    #[cfg(target_os = "linux")]
    {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: `ts` is a valid timespec for the call to fill.
        if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return Duration::new(ts.sec as u64, ts.nsec as u32);
        }
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// Prompt matmuls of Qwen3-0.6B's layer shapes on one thread, timed in thread CPU time (the
/// least of several calls): GMAC/s per core for 64 and 512 tokens, panels and tiles.
/// Whether panels run on AMX tiles in this process.
fn amx_runs() -> bool {
    #[cfg(target_arch = "x86_64")]
    return qwen::cpu::dot::panel::amx::usable();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

fn section_prompt(pool: &ThreadPool, types: &[GgmlType]) {
    println!();
    println!("prompt matmuls, 1 thread, thread CPU time (least of 7 calls): GMAC/s per core");
    let mut rng = Rng::new(11);
    for &ty in types {
        let plan = MatmulPlan {
            threads: 1,
            ..MatmulPlan::new()
        };
        for &(rows, cols) in &QWEN06_LAYER[3..] {
            let data = random_weights(&mut rng, ty, rows, cols);
            let w = WeightMatrix::new(ty, rows, cols, &data).expect("valid");
            print!("{:<6} {:>10}", ty.name(), format!("{rows}x{cols}"));
            for n in [64, 512] {
                let x = random_input(&mut rng, cols * n);
                let mut y = vec![0.0; rows * n];
                let mut s = Scratch::default();
                // (panel, AMX tiles): the tiles where this process runs them.
                let variants = [(true, false), (false, false)]
                    .into_iter()
                    .chain(amx_runs().then_some((true, true)));
                for (panel, amx) in variants {
                    let plan = MatmulPlan {
                        panel,
                        amx,
                        token_tile: if amx { 16 } else { plan.token_tile },
                        ..plan
                    };
                    let mut best = Duration::MAX;
                    for _ in 0..7 {
                        let t = thread_cpu_time();
                        matmul(pool, &w, &x, n, &mut y, &plan, &mut s).expect("matmul");
                        best = best.min(thread_cpu_time() - t);
                    }
                    let macs = (rows * cols * n) as f64;
                    let name = match (panel, amx) {
                        (_, true) => "amx",
                        (true, _) => "panel",
                        _ => "tiles",
                    };
                    print!(" | {n:>3} {name} {:>6.1}", macs / best.as_secs_f64() / 1e9);
                }
            }
            println!();
        }
    }
}

/// Decode kernels on warm weights (a matrix of about 200 KB, in L2), one thread, for each row
/// tile: the compute rate of the tile kernels alone, in weights per nanosecond, where the cold
/// `shapes` figures mix it with the memory's.
fn section_warm(pool: &ThreadPool, types: &[GgmlType]) {
    println!();
    println!("decode on warm weights, 1 thread, thread CPU time (least of 200 calls): weights/ns per row tile");
    let mut rng = Rng::new(5);
    let cols = 1024;
    for &ty in types {
        let row_bytes = cols / ty.block_size() * ty.type_size();
        let rows = ((200 << 10) / row_bytes).clamp(16, 4096) / 16 * 16;
        let data = random_weights(&mut rng, ty, rows, cols);
        let w = WeightMatrix::new(ty, rows, cols, &data).expect("valid");
        let x = random_input(&mut rng, cols);
        let mut y = vec![0.0; rows];
        let mut s = Scratch::default();
        print!("{:<7} {:>9}", ty.name(), format!("{rows}x{cols}"));
        for row_tile in [1, 2, 4] {
            let plan = MatmulPlan {
                threads: 1,
                row_tile,
                token_tile: 1,
                ..MatmulPlan::new()
            };
            let mut best = Duration::MAX;
            for _ in 0..200 {
                let t = thread_cpu_time();
                matmul(pool, &w, &x, 1, &mut y, &plan, &mut s).expect("matmul");
                best = best.min(thread_cpu_time() - t);
            }
            let rate = (rows * cols) as f64 / best.as_secs_f64() / 1e9;
            print!(" | r{row_tile} {rate:>6.2}");
        }
        println!();
    }
}

/// Calls of 1..=8 tokens on cold weights (Qwen3.5-4B FFN matrices, up and down, enough copies to
/// overflow the caches), all threads: the cost of a speculative verification pass, per plan
/// family, as a multiple of the one-token call.
fn section_verify(pool: &ThreadPool, types: &[GgmlType]) {
    println!();
    println!("few-token calls on cold weights, all threads: us/call (x the 1-token call)");
    for &ty in types {
        for (rows, cols) in [(9216, 2560), (2560, 9216)] {
            verify_shape(pool, ty, rows, cols);
        }
    }
}

fn verify_shape(pool: &ThreadPool, ty: GgmlType, rows: usize, cols: usize) {
    let mut rng = Rng::new(13);
    let base = MatmulPlan::new();
    {
        let data = random_weights(&mut rng, ty, rows, cols);
        let copies = (256 << 20) / data.len().max(1) + 1;
        let all: Vec<Vec<u8>> = (0..copies).map(|_| data.clone()).collect();
        let mut mats: Vec<WeightMatrix> = all
            .iter()
            .map(|d| WeightMatrix::new(ty, rows, cols, d).expect("valid"))
            .collect();
        let repacked: Vec<RepackedMatrix> = mats
            .iter()
            .filter(|w| w.repackable(base.isa))
            .map(|w| w.repack(pool, base.isa, false).expect("repack"))
            .collect();
        for (w, rp) in mats.iter_mut().zip(&repacked) {
            w.repacked = Some(rp);
        }
        let mut plans = vec![
            (
                "tiles 4x4",
                MatmulPlan {
                    panel: false,
                    row_tile: 4,
                    token_tile: 4,
                    ..base
                },
            ),
            (
                "tiles 2x4",
                MatmulPlan {
                    panel: false,
                    row_tile: 2,
                    token_tile: 4,
                    ..base
                },
            ),
            (
                "panel",
                MatmulPlan {
                    panel: true,
                    token_tile: 8,
                    ..base
                },
            ),
        ];
        if !repacked.is_empty() {
            plans.push((
                "repacked",
                MatmulPlan {
                    repacked: true,
                    token_tile: 8,
                    ..base
                },
            ));
        }
        let x = random_input(&mut rng, cols * 8);
        let mut y = vec![0.0; rows * 8];
        let mut s = Scratch::default();
        let mut k = 0;
        let mut time = |plan: &MatmulPlan, n: usize| {
            per_call(Duration::from_millis(300), || {
                k = (k + 1) % mats.len();
                matmul(
                    pool,
                    &mats[k],
                    &x[..cols * n],
                    n,
                    &mut y[..rows * n],
                    plan,
                    &mut s,
                )
                .expect("matmul");
            })
        };
        let one = time(&base, 1);
        println!(
            "{:<6} {rows}x{cols}: 1 token {:.1} us",
            ty.name(),
            one * 1e6
        );
        for (name, plan) in plans {
            print!("  {name:<10}");
            for n in 1..=8 {
                if n == 1 && !plan.repacked {
                    continue;
                }
                let t = time(&plan, n);
                print!(" | {n} {:>7.1} ({:.2}x)", t * 1e6, t / one);
            }
            println!();
        }
    }
}

fn main() {
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |w: &str| words.is_empty() || words.iter().any(|a| a.eq_ignore_ascii_case(w));
    let mut types: Vec<GgmlType> = SUPPORTED_TYPES
        .into_iter()
        .filter(|t| words.iter().any(|a| a == t.name()))
        .collect();
    let only_types = !types.is_empty();
    if !only_types {
        types = SUPPORTED_TYPES.to_vec();
    }
    let max_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("kernels: {}", cpu_features().describe());
    println!("plan: {}", MatmulPlan::new().describe());
    let pool = ThreadPool::new(max_threads).expect("thread pool");
    if words.iter().any(|a| a.eq_ignore_ascii_case("warm")) {
        return section_warm(&pool, &types);
    }
    if words.iter().any(|a| a.eq_ignore_ascii_case("verify")) {
        if !only_types {
            types = vec![GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K];
        }
        return section_verify(&pool, &types);
    }
    if words.iter().any(|a| a.eq_ignore_ascii_case("prompt")) {
        // Alone: no bandwidth section first; the types of a Q8_0 and a Q4_K_M file by default.
        if !only_types {
            types = vec![GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K];
        }
        return section_prompt(&pool, &types);
    }
    let bw = section_bandwidth(&pool, max_threads);
    if wants("pool") && !only_types {
        section_pool(max_threads);
    }
    if wants("shapes") || only_types {
        section_shapes(&pool, max_threads, &bw, &types);
    }
    if wants("model") || only_types {
        section_model(&pool, max_threads, &bw, &types);
    }
    if wants("prompt") {
        section_prompt(&pool, &types);
    }
}
