//! Weights repacked into panels once ([`qwen::cpu::repack`]): the same bits as the panels
//! packed per call (Q8_0, Q4_K and Q6_K), at every token count and row count; which types are
//! repacked; where a panel's scales lie; one copy per matrix in a store; released pages of a
//! file map reading back unchanged; and a row's read giving its pages back.

use std::io::Write;
use std::sync::Arc;

use qwen::cpu::repack::{panel_block_bytes, release_pages, release_read};
use qwen::cpu::repack_store::RepackStore;
use qwen::cpu::synth::{random_input, random_weights, Rng};
use qwen::cpu::{cpu_features, matmul, Isa, MatmulPlan, Scratch, ThreadPool, WeightMatrix};
use qwen::quant::{GgmlType, SUPPORTED_TYPES};

fn has_avx512_vnni() -> bool {
    let ok = cpu_features().supports(Isa::Avx512Vnni);
    if !ok {
        eprintln!("skipped: repacked panels are for AVX-512 VNNI, which this CPU lacks");
    }
    ok
}

fn run(pool: &ThreadPool, w: &WeightMatrix, x: &[f32], n: usize, plan: &MatmulPlan) -> Vec<f32> {
    let mut y = vec![f32::NAN; n * w.rows];
    matmul(pool, w, x, n, &mut y, plan, &mut Scratch::default()).unwrap();
    y
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Each token's outputs from the copy are those of the panels packed per call, bit for bit: the
/// same kernels on the same bytes. The per-call panels only run batches, so the reference is a
/// call with one more token, whose first `n` tokens' outputs must not depend on it.
#[test]
fn repacked_panels_give_the_bits_of_panels_packed_per_call() {
    if !has_avx512_vnni() {
        return;
    }
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(8080);
    let in_place = MatmulPlan {
        panel: true,
        ..MatmulPlan::for_isa(Isa::Avx512Vnni)
    };
    let shapes = [
        (GgmlType::Q8_0, 1, 32),
        (GgmlType::Q8_0, 15, 64),
        (GgmlType::Q8_0, 16, 512),
        (GgmlType::Q8_0, 37, 512),
        (GgmlType::Q8_0, 100, 2560),
        (GgmlType::Q4_K, 1, 256),
        (GgmlType::Q4_K, 15, 512),
        (GgmlType::Q4_K, 37, 512),
        (GgmlType::Q4_K, 100, 2560),
        (GgmlType::Q6_K, 1, 256),
        (GgmlType::Q6_K, 15, 512),
        (GgmlType::Q6_K, 37, 512),
        (GgmlType::Q6_K, 100, 2560),
    ];
    for (ty, rows, cols) in shapes {
        let data = random_weights(&mut rng, ty, rows, cols);
        let w = WeightMatrix::new(ty, rows, cols, &data).unwrap();
        let rp = w.repack(&pool, Isa::Avx512Vnni, false).unwrap();
        let with = WeightMatrix {
            repacked: Some(&rp),
            ..w
        };
        for n in [1, 2, 5, 9, 17] {
            let x = random_input(&mut rng, (n + 1) * cols);
            let want = run(&pool, &w, &x, n + 1, &in_place);
            for (tt, chunk) in [(1, 0), (3, 32), (8, 0), (8, 16)] {
                let plan = MatmulPlan {
                    repacked: true,
                    token_tile: tt,
                    rows_per_chunk: chunk,
                    ..in_place
                };
                let got = run(&pool, &with, &x[..n * cols], n, &plan);
                assert!(
                    same_bits(&want[..n * rows], &got),
                    "{ty} {rows}x{cols} n={n} tile {tt} chunk {chunk}: not the per-call panels' bits"
                );
            }
        }
    }
}

/// The bytes a kernel prefetches as a Q8_0 panel's scales are its rows' block scales as the
/// rows store them (f16), `[block][row]` (the last panel repeating the matrix's last row):
/// prefetching the wrong lines would cost nothing but time, so the region is checked against
/// the rows themselves.
#[test]
fn a_panels_scales_are_its_rows_block_scales() {
    if !has_avx512_vnni() {
        return;
    }
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(77);
    // 8 blocks fill whole lines; 3 leave half a line of padding after the scales.
    for (rows, cols) in [(37, 256), (20, 96)] {
        let data = random_weights(&mut rng, GgmlType::Q8_0, rows, cols);
        let w = WeightMatrix::new(GgmlType::Q8_0, rows, cols, &data).unwrap();
        let rp = w.repack(&pool, Isa::Avx512Vnni, false).unwrap();
        let (blocks, row_bytes) = (cols / 32, cols / 32 * 34);
        for p in 0..rows.div_ceil(16) {
            let got = rp.scales(p);
            assert_eq!(got.len(), (blocks * 32).next_multiple_of(64), "panel {p}");
            for b in 0..blocks {
                for r in 0..16 {
                    let row = (16 * p + r).min(rows - 1);
                    let at = row * row_bytes + b * 34;
                    let o = (16 * b + r) * 2;
                    assert_eq!(
                        got[o..o + 2],
                        data[at..at + 2],
                        "panel {p} block {b} row {r}"
                    );
                }
            }
        }
    }
}

/// A plan that asks for the copy runs on a matrix without one (a cached plan, a copy dropped):
/// it reads in place with the plan's other fields.
#[test]
fn a_repacked_plan_without_a_copy_reads_in_place() {
    let isa = MatmulPlan::new().isa;
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(8181);
    let data = random_weights(&mut rng, GgmlType::Q8_0, 24, 256);
    let w = WeightMatrix::new(GgmlType::Q8_0, 24, 256, &data).unwrap();
    for n in [1, 3] {
        let x = random_input(&mut rng, n * 256);
        let plan = MatmulPlan::for_isa(isa);
        let want = run(&pool, &w, &x, n, &plan);
        let got = run(
            &pool,
            &w,
            &x,
            n,
            &MatmulPlan {
                repacked: true,
                ..plan
            },
        );
        assert!(
            same_bits(&want, &got),
            "n={n}: a copy that is not there changed the result"
        );
    }
}

/// Only Q8_0, Q4_K and Q6_K on AVX-512 VNNI, whose panels are about the size of their rows;
/// the other types' per-call panels would double them or more. The copy of a matrix is its
/// rows' bytes (Q4_K: 3% more) and a line of padding per panel at most.
#[test]
fn only_matrices_whose_panels_fit_their_rows_are_repacked() {
    for ty in SUPPORTED_TYPES {
        for isa in [Isa::Avx512Vnni, Isa::Avx2, Isa::Scalar] {
            let expected = matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_K | GgmlType::Q6_K)
                && isa == Isa::Avx512Vnni;
            assert_eq!(
                panel_block_bytes(ty, isa).is_some(),
                expected && cfg!(target_arch = "x86_64"),
                "{ty} on {isa}"
            );
        }
    }
    if !has_avx512_vnni() {
        return;
    }
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(8282);
    for rows in [16, 160, 161] {
        let data = random_weights(&mut rng, GgmlType::Q8_0, rows, 2560);
        let w = WeightMatrix::new(GgmlType::Q8_0, rows, 2560, &data).unwrap();
        assert!(w.repackable(Isa::Avx512Vnni));
        let rp = w.repack(&pool, Isa::Avx512Vnni, false).unwrap();
        // The rows' own bytes (the last panel whole), and a line of padding per panel at most.
        let bound = rows.div_ceil(16) * (16 * data.len() / rows + 64);
        assert!(rp.bytes() <= bound, "{rows} rows: {} bytes", rp.bytes());
    }
    // Q4_K: 296 bytes per 16 rows x 32 quants where the rows take 288.
    for rows in [16, 161] {
        let data = random_weights(&mut rng, GgmlType::Q4_K, rows, 2560);
        let w = WeightMatrix::new(GgmlType::Q4_K, rows, 2560, &data).unwrap();
        let rp = w.repack(&pool, Isa::Avx512Vnni, false).unwrap();
        let panel_rows = rows.div_ceil(16) * 16 * data.len() / rows;
        assert!(
            rp.bytes() * 288 <= panel_rows * 296,
            "{rows} rows: {}",
            rp.bytes()
        );
    }
    // Q6_K: the rows' 420 bytes per 16 rows x 32 quants, a line of padding per panel at most.
    for rows in [16, 161] {
        let data = random_weights(&mut rng, GgmlType::Q6_K, rows, 2560);
        let w = WeightMatrix::new(GgmlType::Q6_K, rows, 2560, &data).unwrap();
        let rp = w.repack(&pool, Isa::Avx512Vnni, false).unwrap();
        let bound = rows.div_ceil(16) * (16 * data.len() / rows + 64);
        assert!(rp.bytes() <= bound, "{rows} rows: {}", rp.bytes());
    }
    let data = random_weights(&mut rng, GgmlType::Q5_K, 16, 256);
    let w = WeightMatrix::new(GgmlType::Q5_K, 16, 256, &data).unwrap();
    assert!(!w.repackable(Isa::Avx512Vnni));
    assert!(w.repack(&pool, Isa::Avx512Vnni, false).is_err());
}

/// A store packs each matrix once (the trunk and a draft head share the LM head), all of a
/// part or none, and forgets what the search chose to read in place.
#[test]
fn a_store_holds_one_copy_per_matrix_and_forgets_on_request() {
    if !has_avx512_vnni() {
        return;
    }
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(8383);
    let a_bytes = random_weights(&mut rng, GgmlType::Q8_0, 32, 512);
    let b_bytes = random_weights(&mut rng, GgmlType::Q8_0, 48, 512);
    let k_bytes = random_weights(&mut rng, GgmlType::Q5_K, 32, 512);
    let a = WeightMatrix::new(GgmlType::Q8_0, 32, 512, &a_bytes).unwrap();
    let b = WeightMatrix::new(GgmlType::Q8_0, 48, 512, &b_bytes).unwrap();
    let k = WeightMatrix::new(GgmlType::Q5_K, 32, 512, &k_bytes).unwrap();
    let store = RepackStore::default();
    assert!(store
        .pack_all(&pool, Isa::Avx512Vnni, &[a, k], false)
        .is_none());
    let first = store
        .pack_all(&pool, Isa::Avx512Vnni, &[a, b], false)
        .unwrap();
    let again = store.pack_all(&pool, Isa::Avx512Vnni, &[a], false).unwrap();
    assert!(Arc::ptr_eq(&first[0], &again[0]), "a held copy is reused");
    let totals = store.totals();
    assert_eq!(totals.matrices, 2);
    assert_eq!(totals.source_bytes, a_bytes.len() + b_bytes.len());
    assert_eq!(totals.bytes, first[0].bytes() + first[1].bytes());
    store.forget(&[b]);
    assert_eq!(store.totals().matrices, 1);
    assert_eq!(store.totals().source_bytes, a_bytes.len());
    assert_eq!(
        store.totals().released_bytes,
        0,
        "nothing released unless asked"
    );
}

/// `data` written to a file in a directory of this test's own (`stem` and the process id) and
/// mapped read-only: the directory, to remove, and the map.
fn mapped_file(stem: &str, data: &[u8]) -> (std::path::PathBuf, memmap2::Mmap) {
    let dir = std::env::temp_dir().join(format!("{stem}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weights.bin");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(data)
        .unwrap();
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: a file of this test's own, not changed while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    (dir, map)
}

/// Released pages of a read-only file map are read again from the file: the bytes, and a
/// matrix read in place after its copy was made, are unchanged.
#[test]
fn released_pages_of_a_file_map_read_back_unchanged() {
    let mut rng = Rng::new(8484);
    let (rows, cols) = (300, 1024);
    let data = random_weights(&mut rng, GgmlType::Q8_0, rows, cols);
    let (dir, map) = mapped_file("qwen-repack", &data);
    let w = WeightMatrix::new(GgmlType::Q8_0, rows, cols, &map).unwrap();
    let pool = ThreadPool::new(2).unwrap();
    let x = random_input(&mut rng, 3 * cols);
    let plan = MatmulPlan::new();
    let before = run(&pool, &w, &x, 3, &plan);
    if w.repackable(plan.isa) {
        let rp = w.repack(&pool, plan.isa, true).unwrap();
        let with = WeightMatrix {
            repacked: Some(&rp),
            ..w
        };
        let copy = run(
            &pool,
            &with,
            &x,
            3,
            &MatmulPlan {
                repacked: true,
                ..plan
            },
        );
        // The default plan runs these 3 tokens on panels packed per call: the same bits.
        assert!(
            same_bits(&before, &copy),
            "the copy made while releasing differs"
        );
    }
    release_pages(&map);
    assert!(map[..] == data[..], "the bytes read back after a release");
    let after = run(&pool, &w, &x, 3, &plan);
    assert!(same_bits(&before, &after));
    drop(map);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The resident kilobytes of the mapping that starts at `at` (`/proc/self/smaps`), or `None`
/// where there is no such file.
fn mapping_rss_kb(at: *const u8) -> Option<usize> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let start = format!("{:x}-", at as usize);
    let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start)).skip(1);
    let rss = lines.find(|l| l.starts_with("Rss:"))?;
    rss.split_whitespace().nth(1)?.parse().ok()
}

/// Reading a row of a released table maps the pages around it again (Linux maps a read fault's
/// neighbours too); `release_read` gives all of them back, and the bytes read back unchanged.
#[test]
fn a_rows_read_gives_its_pages_back() {
    let mut rng = Rng::new(8585);
    let data = random_weights(&mut rng, GgmlType::Q8_0, 1024, 1024);
    let (dir, map) = mapped_file("qwen-release-read", &data);
    let sum = |b: &[u8]| b.iter().map(|&x| x as u64).sum::<u64>();
    assert_eq!(sum(&map), sum(&data));
    let Some(full) = mapping_rss_kb(map.as_ptr()) else {
        eprintln!("skipped: no /proc/self/smaps to read resident pages from");
        return;
    };
    release_pages(&map);
    let released = mapping_rss_kb(map.as_ptr()).unwrap();
    let row_bytes = 1024 / 32 * 34;
    let row = &map[517 * row_bytes..518 * row_bytes];
    assert_eq!(row, &data[517 * row_bytes..518 * row_bytes]);
    let read = mapping_rss_kb(map.as_ptr()).unwrap();
    release_read(row, &map);
    let given_back = mapping_rss_kb(map.as_ptr()).unwrap();
    assert!(
        full > released && read > released,
        "resident {full} kB, released {released}, a row read {read}: the setting is not measured"
    );
    assert_eq!(given_back, released, "a row's read left pages mapped");
    assert_eq!(
        sum(&map),
        sum(&data),
        "the bytes read back after the release"
    );
    drop(map);
    let _ = std::fs::remove_dir_all(&dir);
}
