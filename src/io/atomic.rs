//! Atomic outputs: a file or directory is written under a temporary name beside its destination
//! and renamed into place only once complete, so a failure never leaves half an output behind.
//! Dropping an uncommitted temporary removes it.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique hidden path beside `dest` (same directory, so a rename is atomic); creates the
/// directory if needed.
pub fn sibling(dest: &Path, tag: &str) -> Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| Error::Output {
            path: dest.to_path_buf(),
            message: "has no file name".into(),
        })?
        .to_string_lossy();
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(parent.join(format!(".{name}.cqr-{tag}-{}-{n}", std::process::id())))
}

/// A file being written; renamed to its destination by [`AtomicFile::commit`].
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        if dest.is_dir() {
            return Err(Error::Output {
                path: dest.to_path_buf(),
                message: "is a directory".into(),
            });
        }
        let tmp = sibling(dest, "tmp")?;
        let f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
            writer: Some(BufWriter::with_capacity(1 << 16, f)),
        })
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    pub fn commit(mut self) -> Result<()> {
        let w = self.writer.take().expect("a file is committed once");
        let f = w
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.as_mut().expect("not yet committed").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.as_mut().expect("not yet committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A directory being filled; renamed to its destination by [`TempDir::commit`].
pub struct TempDir {
    path: PathBuf,
    committed: bool,
}

impl TempDir {
    pub fn beside(dest: &Path) -> Result<TempDir> {
        let path = sibling(dest, "tmp")?;
        fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        Ok(TempDir {
            path,
            committed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the directory to `dest`; with `replace`, an existing `dest` is swapped out and
    /// removed only after the new one is in place.
    pub fn commit(mut self, dest: &Path, replace: bool) -> Result<()> {
        let old = if dest.exists() {
            if !replace {
                return Err(Error::Exists {
                    path: dest.to_path_buf(),
                });
            }
            let old = sibling(dest, "old")?;
            fs::rename(dest, &old).map_err(|e| Error::io(dest, e))?;
            Some(old)
        } else {
            None
        };
        if let Err(e) = fs::rename(&self.path, dest) {
            if let Some(old) = &old {
                let _ = fs::rename(old, dest);
            }
            return Err(Error::io(dest, e));
        }
        self.committed = true;
        if let Some(old) = old {
            let _ = if old.is_dir() {
                fs::remove_dir_all(&old)
            } else {
                fs::remove_file(&old)
            };
        }
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.jsonl");
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            writeln!(f, "partial").unwrap();
        }
        assert!(!dest.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut f = AtomicFile::create(&dest).unwrap();
        writeln!(f, "whole").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read_to_string(&dest).unwrap(), "whole\n");
    }

    #[test]
    fn dir_commit_refuses_or_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("model");
        let t = TempDir::beside(&dest).unwrap();
        fs::write(t.path().join("a"), "1").unwrap();
        t.commit(&dest, false).unwrap();
        let t = TempDir::beside(&dest).unwrap();
        fs::write(t.path().join("a"), "2").unwrap();
        assert!(matches!(t.commit(&dest, false), Err(Error::Exists { .. })));
        let t = TempDir::beside(&dest).unwrap();
        fs::write(t.path().join("a"), "3").unwrap();
        t.commit(&dest, true).unwrap();
        assert_eq!(fs::read_to_string(dest.join("a")).unwrap(), "3");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
