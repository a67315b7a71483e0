//! Where a test finds a fixture file. The largest text fixtures (llama.cpp's references, Qwen3's
//! tokenizer) and the full-vocabulary model are committed gzipped (`NAME.gz`), which keeps the
//! checkout small enough to travel to a GPU machine (the device tool sends at most 64 MiB, the
//! checkout's tracked files included): [`fixture`] unpacks such a file once into a folder under
//! the build's temporary directory, beside copies of its folder's other files (a tokenizer's
//! `tokenizer_config.json` is looked for next to it), and returns that path.
//!
//! Included by path (`#[path]`) from the test helpers of both test families and from the
//! benches, so it uses nothing beyond `std` and `flate2`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The fixtures folder: `QWEN_FIXTURES` when set (a GPU machine running carried test binaries
/// without this checkout at its build path), else this checkout's `tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("QWEN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
}

/// The path of fixture `name` (`models/tiny-f32.gguf`, `refs/small-q6_k.json`), unpacked first
/// if it is committed as `name.gz`.
pub fn fixture(name: &str) -> PathBuf {
    let plain = fixtures_dir().join(name);
    let packed = gz_path(&plain);
    if plain.exists() || !packed.exists() {
        return plain;
    }
    let unpacked = unpack_dir().join(name);
    if !is_fresh(&unpacked, &packed) {
        unpack(&packed, &unpacked);
    }
    copy_siblings(&plain, &unpacked);
    unpacked
}

fn gz_path(plain: &Path) -> PathBuf {
    let mut s = plain.as_os_str().to_owned();
    s.push(".gz");
    PathBuf::from(s)
}

/// Cargo's temporary folder for tests when it exists on this machine (it is a build-time path),
/// else the system's.
fn unpack_dir() -> PathBuf {
    option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir)
        .join("qwen-fixtures")
}

/// Unpacked already? Not empty and newer than the archive (a checkout that changes the archive
/// gives it a newer time).
fn is_fresh(unpacked: &Path, packed: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let non_empty = std::fs::metadata(unpacked).is_ok_and(|m| m.len() > 0);
    non_empty && matches!((modified(unpacked), modified(packed)), (Some(u), Some(p)) if u >= p)
}

/// Unpacks `packed` to `to` through a file of this process and thread, renamed into place, so
/// that tests running at once never read a half-written file.
fn unpack(packed: &Path, to: &Path) {
    use std::io::Read;
    let mut bytes = Vec::new();
    let file = std::fs::File::open(packed).unwrap_or_else(|e| panic!("{}: {e}", packed.display()));
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("{} does not unpack: {e}", packed.display()));
    write_atomically(to, &bytes);
}

/// Writes `bytes` to `to` through a file of this process and thread, renamed into place.
pub fn write_atomically(to: &Path, bytes: &[u8]) {
    let dir = to.parent().expect("a fixture path has a folder");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let tmp = dir.join(format!(
        ".{}.{}.{:?}",
        to.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    std::fs::rename(&tmp, to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
}

/// Siblings copied beside an unpacked file are at most this large (configs, not models).
const SIBLING_MAX_BYTES: u64 = 1 << 20;

/// Copies the small plain files beside `plain` in the fixtures folder to beside `unpacked`.
fn copy_siblings(plain: &Path, unpacked: &Path) {
    let (Some(from), Some(to)) = (plain.parent(), unpacked.parent()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let small = entry
            .metadata()
            .is_ok_and(|m| m.is_file() && m.len() <= SIBLING_MAX_BYTES);
        let is_plain = small && path.extension().is_none_or(|e| e != "gz");
        let dest = to.join(entry.file_name());
        if is_plain && !dest.exists() {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            write_atomically(&dest, &bytes);
        }
    }
}

/// The names of the fixtures in folder `dir` (`models`), gzipped ones under their plain name,
/// sorted.
pub fn fixture_names(dir: &str) -> Vec<String> {
    let folder = fixtures_dir().join(dir);
    let entries =
        std::fs::read_dir(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display()));
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .map(|n| {
            n.strip_suffix(".gz")
                .map_or_else(|| n.clone(), str::to_string)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}
