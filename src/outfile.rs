//! Files a run writes when it ends (`--trace`): checked before the run starts, so that a bad
//! path fails at once instead of after minutes of generation, and written through a temporary
//! file in the same folder and a rename, so that a reader never sees half a file and a failed
//! write leaves the previous file in place.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::atomic_file::{self, folder_of};

#[derive(Debug, Error)]
pub enum OutFileError {
    #[error(
        "cannot write the {what} {}: the folder {} does not exist; create it or choose another {flag} path",
        file.display(),
        folder.display()
    )]
    NoFolder {
        what: &'static str,
        flag: &'static str,
        file: PathBuf,
        folder: PathBuf,
    },
    #[error("cannot write the {what} {}: it is a folder; give a file name to {flag}", path.display())]
    IsFolder {
        what: &'static str,
        flag: &'static str,
        path: PathBuf,
    },
    #[error(
        "cannot write the {what} {}: cannot create a file in {} ({source}); choose another {flag} path",
        file.display(),
        folder.display()
    )]
    NotWritable {
        what: &'static str,
        flag: &'static str,
        file: PathBuf,
        folder: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the {what} {}: {source}", path.display())]
    Write {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A file the run will write: what it is (`trace`) and the flag that named it (`--trace`).
#[derive(Debug, Clone, Copy)]
pub struct OutFile<'a> {
    pub what: &'static str,
    pub flag: &'static str,
    pub path: &'a Path,
}

impl OutFile<'_> {
    /// Checks that the file can be written, by creating (and removing) a file in its folder:
    /// that the folder exists says nothing of permissions or a read-only file system.
    pub fn check(&self) -> Result<(), OutFileError> {
        let folder = folder_of(self.path);
        if !folder.is_dir() {
            return Err(OutFileError::NoFolder {
                what: self.what,
                flag: self.flag,
                file: self.path.to_path_buf(),
                folder: folder.to_path_buf(),
            });
        }
        if self.path.is_dir() {
            return Err(OutFileError::IsFolder {
                what: self.what,
                flag: self.flag,
                path: self.path.to_path_buf(),
            });
        }
        match atomic_file::probe_writable(self.path) {
            Ok(()) => Ok(()),
            Err(source) => Err(OutFileError::NotWritable {
                what: self.what,
                flag: self.flag,
                file: self.path.to_path_buf(),
                folder: folder.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the file with `fill`, through a temporary file and a rename; returns the bytes
    /// written.
    pub fn write(
        &self,
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<u64, OutFileError> {
        atomic_file::write(self.path, fill).map_err(|source| OutFileError::Write {
            what: self.what,
            path: self.path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(path: &Path) -> OutFile<'_> {
        OutFile {
            what: "trace",
            flag: "--trace",
            path,
        }
    }

    #[test]
    fn writes_through_a_rename_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        trace(&path).check().unwrap();
        let n = trace(&path).write(|w| w.write_all(b"{}")).unwrap();
        assert_eq!(
            (n, std::fs::read_to_string(&path).unwrap()),
            (2, "{}".into())
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the file itself is left");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, "old").unwrap();
        let err = trace(&path)
            .write(|_| Err(std::io::Error::other("disk full")))
            .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn bad_paths_are_named_with_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope").join("t.json");
        let err = trace(&missing).check().unwrap_err().to_string();
        assert!(
            err.contains("does not exist") && err.contains("--trace"),
            "{err}"
        );
        let err = trace(dir.path()).check().unwrap_err().to_string();
        assert!(err.contains("is a folder"), "{err}");
    }
}
