//! Output records as JSONL, CSV or Parquet, to stdout or to a file written atomically. Records
//! arrive as JSON objects; CSV and Parquet flatten nested objects into `parent.child` columns and
//! store arrays as JSON text.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use rayon::prelude::*;
use serde_json::{Map, Value};

use super::atomic::{sibling, AtomicFile};
use super::{Format, Target};
use crate::error::{Error, Result};

/// Where bytes go: stdout (flushed per batch) or a temporary file renamed on `finish`.
enum Sink {
    Stdout(BufWriter<std::io::Stdout>),
    File(AtomicFile),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(buf),
            Sink::File(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::File(f) => f.flush(),
        }
    }
}

impl Sink {
    fn name(&self) -> PathBuf {
        match self {
            Sink::Stdout(_) => PathBuf::from("<stdout>"),
            Sink::File(f) => f.dest().to_path_buf(),
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Sink::Stdout(mut w) => w.flush().map_err(|e| Error::io("<stdout>", e)),
            Sink::File(f) => f.commit(),
        }
    }
}

enum Inner {
    Jsonl(Sink),
    Csv {
        sink: Sink,
        header: Option<Vec<String>>,
    },
    Parquet {
        dest: Box<AtomicParquet>,
        header: Option<Vec<String>>,
        rows: Vec<Vec<Value>>,
    },
}

/// A Parquet file being written in row groups, renamed into place on `finish`.
struct AtomicParquet {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<polars::io::parquet::write::BatchedWriter<File>>,
    committed: bool,
}

impl Drop for AtomicParquet {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

const PARQUET_ROW_GROUP: usize = 65_536;

/// Writes output records in one format.
pub struct RecordWriter {
    inner: Inner,
}

impl RecordWriter {
    pub fn create(target: &Target, format: Option<Format>) -> Result<RecordWriter> {
        let format = Format::resolve(format, target, Format::Jsonl)?;
        let sink = || -> Result<Sink> {
            Ok(match target {
                Target::Std => Sink::Stdout(BufWriter::with_capacity(1 << 16, std::io::stdout())),
                Target::Path(p) => Sink::File(AtomicFile::create(p)?),
            })
        };
        let inner = match format {
            Format::Jsonl => Inner::Jsonl(sink()?),
            Format::Csv => Inner::Csv {
                sink: sink()?,
                header: None,
            },
            Format::Parquet => match target {
                Target::Std => {
                    return Err(Error::Usage(
                        "Parquet output needs a file: pass -o FILE.parquet".into(),
                    ))
                }
                Target::Path(p) => Inner::Parquet {
                    dest: Box::new(AtomicParquet {
                        path: p.clone(),
                        tmp: sibling(p, "tmp")?,
                        writer: None,
                        committed: false,
                    }),
                    header: None,
                    rows: Vec::new(),
                },
            },
            Format::Lines => return Err(Error::Usage("--format lines is for input only".into())),
        };
        Ok(RecordWriter { inner })
    }

    /// Writes a batch of records (JSON objects) and flushes stdout, so a pipeline sees answers
    /// as soon as they exist.
    pub fn write_batch(&mut self, records: &[Value]) -> Result<()> {
        match &mut self.inner {
            Inner::Jsonl(sink) => {
                let lines: Vec<String> = records
                    .par_iter()
                    .with_min_len(64)
                    .map(|r| serde_json::to_string(r).expect("JSON values always serialise"))
                    .collect();
                let name = sink.name();
                for l in lines {
                    sink.write_all(l.as_bytes())
                        .map_err(|e| Error::io(&name, e))?;
                    sink.write_all(b"\n").map_err(|e| Error::io(&name, e))?;
                }
                if let Sink::Stdout(_) = sink {
                    sink.flush().map_err(|e| Error::io(&name, e))?;
                }
            }
            Inner::Csv { sink, header } => {
                let name = sink.name();
                let mut buf = Vec::new();
                {
                    let mut w = csv::WriterBuilder::new()
                        .has_headers(false)
                        .from_writer(&mut buf);
                    for r in records {
                        let flat = flatten(r);
                        if header.is_none() {
                            let h: Vec<String> = flat.iter().map(|(k, _)| k.clone()).collect();
                            w.write_record(&h).map_err(|e| Error::io(&name, e.into()))?;
                            *header = Some(h);
                        }
                        let h = header.as_ref().expect("set above");
                        let row: Vec<String> = h.iter().map(|k| cell(&flat, k)).collect();
                        w.write_record(&row)
                            .map_err(|e| Error::io(&name, e.into()))?;
                    }
                    w.flush().map_err(|e| Error::io(&name, e))?;
                }
                sink.write_all(&buf).map_err(|e| Error::io(&name, e))?;
                if let Sink::Stdout(_) = sink {
                    sink.flush().map_err(|e| Error::io(&name, e))?;
                }
            }
            Inner::Parquet { dest, header, rows } => {
                for r in records {
                    let flat = flatten(r);
                    if header.is_none() {
                        *header = Some(flat.iter().map(|(k, _)| k.clone()).collect());
                    }
                    let h = header.as_ref().expect("set above");
                    rows.push(h.iter().map(|k| lookup(&flat, k)).collect());
                }
                if rows.len() >= PARQUET_ROW_GROUP {
                    flush_parquet(dest, header.as_ref().expect("rows imply a header"), rows)?;
                }
            }
        }
        Ok(())
    }

    /// Completes the output: flushes stdout, or renames the finished file into place.
    pub fn finish(self) -> Result<()> {
        match self.inner {
            Inner::Jsonl(sink) | Inner::Csv { sink, .. } => sink.finish(),
            Inner::Parquet {
                mut dest,
                header,
                mut rows,
            } => {
                let header = header.unwrap_or_default();
                if !rows.is_empty() || dest.writer.is_none() {
                    flush_parquet(&mut dest, &header, &mut rows)?;
                }
                let w = dest.writer.take().expect("flush_parquet opened the writer");
                w.finish().map_err(|e| Error::Output {
                    path: dest.path.clone(),
                    message: format!("writing Parquet: {e}"),
                })?;
                drop(w);
                std::fs::rename(&dest.tmp, &dest.path).map_err(|e| Error::io(&dest.path, e))?;
                dest.committed = true;
                Ok(())
            }
        }
    }
}

fn flush_parquet(
    dest: &mut AtomicParquet,
    header: &[String],
    rows: &mut Vec<Vec<Value>>,
) -> Result<()> {
    let err = |e: PolarsError| Error::Output {
        path: dest.path.clone(),
        message: format!("writing Parquet: {e}"),
    };
    let columns: Vec<Column> = header
        .iter()
        .enumerate()
        .map(|(j, name)| to_column(name, rows.iter().map(|r| &r[j])))
        .collect();
    let df = DataFrame::new(rows.len(), columns).map_err(err)?;
    if dest.writer.is_none() {
        let f = File::create(&dest.tmp).map_err(|e| Error::io(&dest.tmp, e))?;
        dest.writer = Some(ParquetWriter::new(f).batched(df.schema()).map_err(err)?);
    }
    dest.writer
        .as_mut()
        .expect("opened above")
        .write_batch(&df)
        .map_err(err)?;
    rows.clear();
    Ok(())
}

/// A typed column from JSON values: integers, floats, booleans or strings (anything else as JSON
/// text), by the first non-null value.
fn to_column<'a>(name: &str, values: impl Iterator<Item = &'a Value> + Clone) -> Column {
    let first = values.clone().find(|v| !v.is_null());
    let name = PlSmallStr::from(name);
    match first {
        Some(Value::Bool(_)) => Column::new(name, values.map(|v| v.as_bool()).collect::<Vec<_>>()),
        Some(Value::Number(_)) if values.clone().all(|v| v.is_null() || v.is_i64()) => {
            Column::new(name, values.map(|v| v.as_i64()).collect::<Vec<_>>())
        }
        Some(Value::Number(_)) if values.clone().all(|v| v.is_null() || v.is_number()) => {
            Column::new(name, values.map(|v| v.as_f64()).collect::<Vec<_>>())
        }
        _ => Column::new(
            name,
            values
                .map(|v| match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect::<Vec<_>>(),
        ),
    }
}

/// Flattens nested objects into dotted keys; arrays stay whole (written as JSON text).
pub fn flatten(v: &Value) -> Vec<(String, Value)> {
    fn walk(prefix: &str, m: &Map<String, Value>, out: &mut Vec<(String, Value)>) {
        for (k, v) in m {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Object(inner) => walk(&key, inner, out),
                other => out.push((key, other.clone())),
            }
        }
    }
    let mut out = Vec::new();
    match v {
        Value::Object(m) => walk("", m, &mut out),
        other => out.push(("value".into(), other.clone())),
    }
    out
}

fn lookup(flat: &[(String, Value)], key: &str) -> Value {
    flat.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or(Value::Null)
}

fn cell(flat: &[(String, Value)], key: &str) -> String {
    match lookup(flat, key) {
        Value::Null => String::new(),
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Writes bytes to a path atomically (reports, JSON summaries).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flatten_nested_and_arrays() {
        let v = json!({"id": 1, "u": {"a": 0.5, "b": {"c": true}}, "top": [1, 2]});
        let f = flatten(&v);
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["id", "u.a", "u.b.c", "top"]);
        assert_eq!(cell(&f, "top"), "[1,2]");
    }

    #[test]
    fn parquet_round_trip_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.parquet");
        let mut w = RecordWriter::create(&Target::Path(p.clone()), None).unwrap();
        w.write_batch(&[json!({"id": "a", "confidence": 0.5, "abstained": false, "n": 3})])
            .unwrap();
        assert!(!p.exists());
        w.finish().unwrap();
        let df = ParquetReader::new(File::open(&p).unwrap())
            .finish()
            .unwrap();
        assert_eq!(df.height(), 1);
        assert_eq!(df.column("id").unwrap().str().unwrap().get(0), Some("a"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
