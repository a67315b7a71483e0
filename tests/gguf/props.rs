//! Property tests: fixture files with flipped bytes, extreme counts, lengths, dims and offsets,
//! truncations, insertions and deletions read to a result or an error, never a panic or an
//! allocation out of proportion to the file. Also the fuzz seed corpus and fuzz regressions.
//!
//! A counting global allocator (this test binary only) records each thread's largest single
//! allocation, and refuses any above [`HARD_CAP`] so that a reader bug aborts the test at once
//! instead of exhausting the machine's memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::{fixture, qwen3, qwen3moe, TINY, TINY_MOE, V};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use qwen::gguf::{GgufError, GgufFile};
use qwen::inspect::Report;
use qwen::model::config::{ConfigError, Qwen3Config};

/// No allocation made while reading a file of a few hundred KB needs more.
const HARD_CAP: usize = 256 << 20;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

struct CappedAlloc;

fn note(size: usize) {
    // `try_with`: allocations during thread teardown must not panic.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator, except that requests above
// HARD_CAP get null, which the GlobalAlloc contract allows (the caller then reports the failure).
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > HARD_CAP {
            return std::ptr::null_mut();
        }
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > HARD_CAP {
            return std::ptr::null_mut();
        }
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > HARD_CAP {
            return std::ptr::null_mut();
        }
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// The reader holds a few small structs per field of the file: a single allocation above this
/// means some count was trusted. (Measured: at most 4 bytes per byte of file.)
fn allocation_budget(file_len: usize) -> usize {
    16 * file_len + (1 << 20)
}

/// What reading a file gave, when nothing panicked.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The reader refused the file.
    Unreadable,
    /// The file read, but is not a usable Qwen3 model.
    NotQwen3,
    Qwen3,
}

/// Reads `bytes` as `--inspect` does: the file, its tensors' data, its config and the report.
/// Fails the case on any broken invariant or oversized allocation; a panic fails it too.
fn read_all(bytes: Vec<u8>) -> Result<Outcome, TestCaseError> {
    let len = bytes.len();
    LARGEST.with(|l| l.set(0));
    let outcome = match GgufFile::from_bytes(bytes) {
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            Outcome::Unreadable
        }
        Ok(file) => {
            for t in file.tensors() {
                let data = file.data_of(t).map(<[u8]>::len);
                prop_assert_eq!(data, Some(t.n_bytes() as usize), "tensor {}", t.name());
            }
            let config = Qwen3Config::from_gguf(&file);
            let report = Report::new(&file, config.as_ref().ok(), config.as_ref().err());
            prop_assert!(report.to_text().contains("tensors"));
            match config {
                Ok(_) => Outcome::Qwen3,
                Err(_) => Outcome::NotQwen3,
            }
        }
    };
    let largest = LARGEST.with(Cell::get);
    prop_assert!(
        largest <= allocation_budget(len),
        "a {len}-byte file made an allocation of {largest} bytes"
    );
    Ok(outcome)
}

/// Offsets of the fields a corrupt file gets wrong: the u64 ones (tensor and key counts,
/// string and array lengths, dims, data offsets, u64 values) and the u32 ones (version, value
/// and tensor type ids, n_dims, u32 values such as `block_count`).
#[derive(Debug, Default)]
struct Fields {
    u64_at: Vec<usize>,
    u32_at: Vec<usize>,
}

/// Walks a well-formed GGUF file (a fixture, so indexing may panic) recording [`Fields`].
struct Walker<'a> {
    bytes: &'a [u8],
    pos: usize,
    fields: Fields,
}

impl Walker<'_> {
    fn u32(&mut self) -> u32 {
        self.fields.u32_at.push(self.pos);
        let v = u32::from_le_bytes(self.bytes[self.pos..self.pos + 4].try_into().unwrap());
        self.pos += 4;
        v
    }

    fn u64(&mut self) -> u64 {
        self.fields.u64_at.push(self.pos);
        let v = u64::from_le_bytes(self.bytes[self.pos..self.pos + 8].try_into().unwrap());
        self.pos += 8;
        v
    }

    fn string(&mut self) {
        self.pos += self.u64() as usize;
    }

    /// A value of GGUF type id `ty`.
    fn value(&mut self, ty: u32) {
        match ty {
            0 | 1 | 7 => self.pos += 1,
            2 | 3 => self.pos += 2,
            4 | 5 => _ = self.u32(),
            6 => self.pos += 4,
            8 => self.string(),
            9 => {
                let elem = self.u32();
                for _ in 0..self.u64() {
                    self.value(elem);
                }
            }
            10 | 11 => _ = self.u64(),
            12 => self.pos += 8,
            _ => panic!("fixture has unknown value type {ty}"),
        }
    }

    fn walk(bytes: &[u8]) -> Fields {
        let mut w = Walker {
            bytes,
            pos: 4,
            fields: Fields::default(),
        };
        w.u32();
        let (n_tensors, n_kv) = (w.u64(), w.u64());
        for _ in 0..n_kv {
            w.string();
            let ty = w.u32();
            w.value(ty);
        }
        for _ in 0..n_tensors {
            w.string();
            for _ in 0..w.u32() {
                w.u64();
            }
            w.u32();
            w.u64();
        }
        w.fields
    }
}

/// A fixture with its field map and the end of its last tensor's data.
struct Subject {
    name: String,
    bytes: Vec<u8>,
    fields: Fields,
    data_end: usize,
}

impl Subject {
    fn new(name: &str, bytes: Vec<u8>) -> Subject {
        let file = GgufFile::from_bytes(bytes.clone()).expect("fixture reads");
        let data_end = file
            .tensors()
            .iter()
            .map(|t| (t.file_offset() + t.n_bytes()) as usize)
            .max()
            .expect("fixture has tensors");
        Subject {
            name: name.to_string(),
            fields: Walker::walk(&bytes),
            bytes,
            data_end,
        }
    }
}

/// Two real fixtures (llama.cpp-written) and a synthetic one (every optional key present).
fn subjects() -> &'static [Subject] {
    static SUBJECTS: OnceLock<Vec<Subject>> = OnceLock::new();
    SUBJECTS.get_or_init(|| {
        let real = ["tiny-q4_0.gguf", "tiny-q8_0.gguf"].map(|name| {
            let bytes = std::fs::read(fixture(&format!("models/{name}"))).expect("fixture");
            Subject::new(name, bytes)
        });
        let synthetic = Subject::new("synthetic TINY", qwen3(TINY).build());
        let moe = Subject::new("synthetic TINY MoE", qwen3moe(TINY, TINY_MOE).build());
        real.into_iter().chain([synthetic, moe]).collect()
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR the byte at an offset with a non-zero mask.
    Flip(Index, u8),
    /// Overwrite one of the file's u64 fields.
    SetU64(Index, u64),
    /// Overwrite one of the file's u32 fields.
    SetU32(Index, u32),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
}

fn extreme_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(u64::MAX),
        Just(i64::MAX as u64),
        Just(1 << 63),
        Just(1 << 32),
        0..4096u64,
        any::<u64>(),
    ]
}

fn extreme_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(u32::MAX),
        Just(1 << 31),
        Just(1 << 24),
        0..64u32,
        any::<u32>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<Index>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        2 => (any::<Index>(), extreme_u64()).prop_map(|(at, v)| Mutation::SetU64(at, v)),
        2 => (any::<Index>(), extreme_u32()).prop_map(|(at, v)| Mutation::SetU32(at, v)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), vec(any::<u8>(), 1..16)).prop_map(|(at, b)| Mutation::Insert(at, b)),
        1 => (any::<Index>(), 1..64usize).prop_map(|(at, n)| Mutation::Delete(at, n)),
    ]
}

/// Applies `m`; field offsets are those of the unmutated file, so after an insertion or
/// deletion they may land beside the field, which is just another corruption.
fn apply(bytes: &mut Vec<u8>, fields: &Fields, m: &Mutation) {
    let put = |bytes: &mut Vec<u8>, at: usize, new: &[u8]| {
        if let Some(dst) = bytes.get_mut(at..at + new.len()) {
            dst.copy_from_slice(new);
        }
    };
    match m {
        Mutation::Flip(at, mask) if !bytes.is_empty() => {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        Mutation::SetU64(at, v) => put(bytes, *at.get(&fields.u64_at), &v.to_le_bytes()),
        Mutation::SetU32(at, v) => put(bytes, *at.get(&fields.u32_at), &v.to_le_bytes()),
        Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len() + 1)),
        Mutation::Insert(at, new) => {
            let i = at.index(bytes.len() + 1);
            bytes.splice(i..i, new.iter().copied());
        }
        Mutation::Delete(at, n) if !bytes.is_empty() => {
            let i = at.index(bytes.len());
            bytes.drain(i..(i + n).min(bytes.len()));
        }
        Mutation::Flip(..) | Mutation::Delete(..) => {}
    }
}

proptest! {
    #[test]
    fn mutated_fixtures_read_or_fail_cleanly(
        which in any::<Index>(),
        mutations in vec(mutation(), 1..=4),
    ) {
        let subject = which.get(subjects());
        let mut bytes = subject.bytes.clone();
        for m in &mutations {
            apply(&mut bytes, &subject.fields, m);
        }
        read_all(bytes)?;
    }

    #[test]
    fn a_file_truncated_anywhere_before_its_data_ends_is_unreadable(
        which in any::<Index>(),
        cut in any::<Index>(),
    ) {
        let subject = which.get(subjects());
        let bytes = subject.bytes[..cut.index(subject.data_end)].to_vec();
        let outcome = read_all(bytes)?;
        prop_assert_eq!(outcome, Outcome::Unreadable, "{}", &subject.name);
    }

    #[test]
    fn any_u64_field_set_to_an_extreme_is_survived(
        which in any::<Index>(),
        field in any::<Index>(),
        value in extreme_u64(),
    ) {
        let subject = which.get(subjects());
        let mut bytes = subject.bytes.clone();
        apply(&mut bytes, &subject.fields, &Mutation::SetU64(field, value));
        read_all(bytes)?;
    }

    #[test]
    fn any_u32_field_set_to_an_extreme_is_survived(
        which in any::<Index>(),
        field in any::<Index>(),
        value in extreme_u32(),
    ) {
        let subject = which.get(subjects());
        let mut bytes = subject.bytes.clone();
        apply(&mut bytes, &subject.fields, &Mutation::SetU32(field, value));
        read_all(bytes)?;
    }
}

#[test]
fn unmutated_subjects_are_qwen3_models() {
    for s in subjects() {
        assert_eq!(
            read_all(s.bytes.clone()).unwrap(),
            Outcome::Qwen3,
            "{}",
            s.name
        );
        // 3 header fields, then per tensor at least name length, n_dims, dims, type, offset.
        assert!(s.fields.u64_at.len() > 3 + 3 * 24, "{}", s.name);
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("directory")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

/// The outcome each committed seed was made for (fuzz/make_corpus.py and the tiny fixtures).
fn seed_outcome(name: &str) -> Outcome {
    if name.starts_with("min-qwen3-") || name.starts_with("tiny-") {
        Outcome::Qwen3
    } else if ["version1", "big-endian", "not-gguf", "nested-too-deep"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        Outcome::Unreadable
    } else {
        Outcome::NotQwen3
    }
}

#[test]
fn fuzz_seed_corpus_reads_as_its_names_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/gguf_config");
    let files = files_in(&dir);
    assert!(files.len() >= 10, "seed corpus has {} files", files.len());
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let outcome = read_all(std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(outcome, seed_outcome(&name), "{name}");
    }
}

/// Found by the fuzzer: `qwen3.block_count` = 4177526785 made the config check list every
/// tensor of every layer before looking for the first (out of memory). Now the first missing
/// tensor stops it: in the fuzzer's input, a renamed `blk.0.attn_output.geight`.
#[test]
fn fuzz_regression_huge_block_count_is_a_missing_tensor() {
    let bytes = std::fs::read(fixture("fuzz/oom-block-count.gguf")).unwrap();
    let file = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(file.get_u32("qwen3.block_count").unwrap(), 4_177_526_785);
    match Qwen3Config::from_gguf(&file) {
        Err(ConfigError::MissingTensor { tensor, .. }) => {
            assert_eq!(tensor, "blk.0.attn_output.weight")
        }
        other => panic!("expected a missing tensor, got {other:?}"),
    }
    let synthetic = qwen3(TINY)
        .set("qwen3.block_count", Some(V::U32(u32::MAX)))
        .build();
    let len = synthetic.len();
    let file = GgufFile::from_bytes(synthetic).unwrap();
    LARGEST.with(|l| l.set(0));
    let err = Qwen3Config::from_gguf(&file).unwrap_err();
    assert!(
        err.to_string()
            .contains("'blk.2.attn_norm.weight' not found"),
        "{err}"
    );
    assert!(LARGEST.with(Cell::get) <= allocation_budget(len));
}

/// Every GgufError display names a place or a value: spot-check the ones extreme fields give.
#[test]
fn extreme_header_counts_are_named_errors() {
    let mut bytes = subjects()[0].bytes.clone();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = GgufFile::from_bytes(bytes).unwrap_err();
    assert!(
        matches!(err, GgufError::CountTooLarge { offset: 8, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("tensor count at byte 8"), "{err}");
}
