//! Writing a file whole: through a temporary file beside it (named for this process and call)
//! and a rename, so that a reader never sees half a file, a failed write leaves the previous
//! file in place, and concurrent writers (runs sharing a cache) never share a temporary file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `path` with `fill`, synced, then renamed into place; the bytes written. On failure
/// the temporary file is removed and `path` is as it was.
pub fn write(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let tmp = temporary_beside(path);
    let written = write_then_rename(&tmp, path, fill);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// [`write`] of bytes already in memory.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<u64> {
    write(path, |out| out.write_all(bytes))
}

fn write_then_rename(
    tmp: &Path,
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut out = BufWriter::new(File::create(tmp)?);
    fill(&mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    std::fs::rename(tmp, path)?;
    Ok(bytes)
}

/// Whether a file can be created beside `path` (created and removed at once): that its folder
/// exists says nothing of permissions or a read-only file system.
pub fn probe_writable(path: &Path) -> std::io::Result<()> {
    let probe = temporary_beside(path);
    File::options().write(true).create_new(true).open(&probe)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The folder `path` goes in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A hidden temporary file next to `path`, unique to this process and call.
fn temporary_beside(path: &Path) -> PathBuf {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().to_string());
    folder_of(path).join(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        assert_eq!(write_bytes(&path, b"{}").unwrap(), 2);
        assert_eq!(write_bytes(&path, b"[1]").unwrap(), 3);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[1]");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_fill_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_bytes(&path, b"old").unwrap();
        let failed = write(&path, |out| {
            out.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temporaries_differ_per_call() {
        let p = Path::new("x.json");
        assert_ne!(temporary_beside(p), temporary_beside(p));
        assert_eq!(temporary_beside(p).parent(), Some(Path::new(".")));
    }
}
