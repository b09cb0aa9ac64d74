//! The audit trail (`classify --audit-log FILE`): one JSON line per decision, appended. The file
//! is opened in append mode and each batch's lines go out in one write under an exclusive
//! lock, so concurrent cqr processes writing the same file never interleave partial lines.
//! What goes into a line (masked text, hashes) is the caller's business.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

pub struct AuditLog {
    path: PathBuf,
    file: File,
}

impl AuditLog {
    pub fn open(path: &Path) -> Result<AuditLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one line per entry, all whole.
    pub fn append<T: Serialize>(&mut self, entries: &[T]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(entries.len() * 512);
        for e in entries {
            serde_json::to_writer(&mut buf, e).expect("audit entries always serialise");
            buf.push(b'\n');
        }
        let err = |e| Error::io(&self.path, e);
        self.file.lock().map_err(err)?;
        let written = self.file.write_all(&buf).and_then(|_| self.file.flush());
        let _ = self.file.unlock();
        written.map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn concurrent_writers_never_interleave_lines() {
        let dir = std::env::temp_dir().join(format!("cqr-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    // Separate opens behave like separate processes.
                    let mut log = AuditLog::open(&path).unwrap();
                    for i in 0..50 {
                        let big = "x".repeat(5000 + i * 37);
                        let batch: Vec<Value> = (0..3)
                            .map(|k| serde_json::json!({"t": t, "i": i, "k": k, "pad": big}))
                            .collect();
                        log.append(&batch).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4 * 50 * 3);
        for l in lines {
            let v: Value = serde_json::from_str(l).expect("every line is whole JSON");
            assert!(v["pad"].as_str().unwrap().len() >= 5000);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
