//! Output records as JSONL, CSV or Parquet, to stdout or to a file written atomically. Records
//! are anything that serialises to a JSON object; JSONL writes them as serde writes them, CSV and
//! Parquet flatten nested objects into `parent.child` columns and store arrays as JSON text. The
//! columns are given by the caller when the writer is created (from the output schema), never
//! guessed from a record, so every row has the same columns whatever the first one held. A
//! number keeps its exact token (an id like `1e3` stays `1e3`) unless Parquet can type it exactly.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::atomic::{sibling, AtomicFile};
use super::json::{Kind, Members};
use super::{OutputFormat, Target};
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
        header: Header,
        /// Whether the header line is written yet: it goes out with the first rows (or at the
        /// end, for no rows), so a run that fails before its first record writes nothing.
        started: bool,
    },
    Parquet {
        dest: Box<AtomicParquet>,
        header: Header,
        rows: Vec<Vec<Cell>>,
    },
}

/// The CSV and Parquet columns, in order, and where each flattened key goes.
struct Header {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Header {
    fn new(names: Vec<String>) -> Header {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Header { names, index }
    }

    /// A record as one row of cells in column order; a column the record lacks is null. An
    /// object whose key is itself a column (a kept input column holding an object) is written
    /// whole as JSON text. A key with no column is an error rather than a value silently lost.
    fn row<T: Serialize>(&self, record: &T, path: &Path) -> Result<Vec<Cell>> {
        let mut row = vec![Cell::Null; self.names.len()];
        for (k, cell) in flat_record(record, path, &|k| self.index.contains_key(k))? {
            let j = *self.index.get(&k).ok_or_else(|| Error::Output {
                path: path.to_path_buf(),
                message: format!("cannot write a record: its field `{k}` has no column"),
            })?;
            row[j] = cell;
        }
        Ok(row)
    }
}

/// A Parquet file being written in row groups, renamed into place on `finish`.
struct AtomicParquet {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<polars::io::parquet::write::BatchedWriter<File>>,
    /// The column types, fixed by the first row group: the file has one schema.
    dtypes: Vec<DataType>,
    /// Rows written so far.
    written: usize,
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
    /// The writer for `target` (`-o FILE` or stdout) in `format`, else the format `-o FILE`'s
    /// extension names, else JSONL. `columns` are the CSV and Parquet columns, flattened
    /// (`parent.child`), in order; JSONL writes each record as it is and ignores them.
    pub fn create(
        target: &Target,
        format: Option<OutputFormat>,
        columns: Vec<String>,
    ) -> Result<RecordWriter> {
        let format = OutputFormat::resolve(format, target)?;
        let sink = || -> Result<Sink> {
            Ok(match target {
                Target::Std => Sink::Stdout(BufWriter::with_capacity(1 << 16, std::io::stdout())),
                Target::Path(p) => Sink::File(AtomicFile::create(p)?),
            })
        };
        let inner = match format {
            OutputFormat::Jsonl => Inner::Jsonl(sink()?),
            OutputFormat::Csv => Inner::Csv {
                sink: sink()?,
                header: Header::new(columns),
                started: false,
            },
            OutputFormat::Parquet => match target {
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
                        dtypes: Vec::new(),
                        written: 0,
                        committed: false,
                    }),
                    header: Header::new(columns),
                    rows: Vec::new(),
                },
            },
        };
        Ok(RecordWriter { inner })
    }

    /// Writes a batch of records and flushes stdout, so a pipeline sees answers as soon as they
    /// exist.
    pub fn write_batch<T: Serialize>(&mut self, records: &[T]) -> Result<()> {
        match &mut self.inner {
            Inner::Jsonl(sink) => {
                let name = sink.name();
                let mut buf = Vec::with_capacity(records.len() * 512);
                for r in records {
                    serde_json::to_writer(&mut buf, r).map_err(|e| unserialisable(&name, e))?;
                    buf.push(b'\n');
                }
                sink.write_all(&buf).map_err(|e| Error::io(&name, e))?;
                if let Sink::Stdout(_) = sink {
                    sink.flush().map_err(|e| Error::io(&name, e))?;
                }
            }
            Inner::Csv {
                sink,
                header,
                started,
            } => {
                let name = sink.name();
                let mut buf = Vec::new();
                {
                    let mut w = csv::WriterBuilder::new()
                        .has_headers(false)
                        .from_writer(&mut buf);
                    if !*started {
                        w.write_record(&header.names)
                            .map_err(|e| Error::io(&name, e.into()))?;
                        *started = true;
                    }
                    for r in records {
                        let row = header.row(r, &name)?;
                        w.write_record(row.iter().map(Cell::text))
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
                    rows.push(header.row(r, &dest.path)?);
                }
                if rows.len() >= PARQUET_ROW_GROUP {
                    flush_parquet(dest, &header.names, rows)?;
                }
            }
        }
        Ok(())
    }

    /// Completes the output: flushes stdout, or renames the finished file into place.
    pub fn finish(self) -> Result<()> {
        match self.inner {
            Inner::Jsonl(sink) => sink.finish(),
            Inner::Csv {
                mut sink,
                header,
                started,
            } => {
                if !started {
                    // No records: the header alone says what the columns would have been.
                    let name = sink.name();
                    let mut w = csv::WriterBuilder::new()
                        .has_headers(false)
                        .from_writer(&mut sink);
                    w.write_record(&header.names)
                        .map_err(|e| Error::io(&name, e.into()))?;
                    w.flush().map_err(|e| Error::io(&name, e))?;
                }
                sink.finish()
            }
            Inner::Parquet {
                mut dest,
                header,
                mut rows,
            } => {
                if !rows.is_empty() || dest.writer.is_none() {
                    flush_parquet(&mut dest, &header.names, &mut rows)?;
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
    rows: &mut Vec<Vec<Cell>>,
) -> Result<()> {
    let err = |e: PolarsError| Error::Output {
        path: dest.path.clone(),
        message: format!("writing Parquet: {e}"),
    };
    let mut columns = Vec::with_capacity(header.len());
    for (j, name) in header.iter().enumerate() {
        let values = rows.iter().map(|r| &r[j]);
        let column = match dest.dtypes.get(j) {
            // A later row group must match the first one's types, or the writer garbles it.
            Some(dtype) => {
                typed_column(name, values.clone(), dtype).ok_or_else(|| Error::Output {
                    path: dest.path.clone(),
                    message: format!(
                        "writing Parquet: column `{name}` has {} values after row {}, where \
                         the rows before made it {dtype}",
                        to_column(name, values).dtype(),
                        dest.written
                    ),
                })?
            }
            None => to_column(name, values),
        };
        columns.push(column);
    }
    let df = DataFrame::new(rows.len(), columns).map_err(err)?;
    if dest.writer.is_none() {
        let f = File::create(&dest.tmp).map_err(|e| Error::io(&dest.tmp, e))?;
        dest.writer = Some(ParquetWriter::new(f).batched(df.schema()).map_err(err)?);
        dest.dtypes = df.dtypes();
    }
    dest.writer
        .as_mut()
        .expect("opened above")
        .write_batch(&df)
        .map_err(err)?;
    dest.written += rows.len();
    rows.clear();
    Ok(())
}

/// A column of `dtype` holding `values` exactly, or `None` when one of them does not fit.
fn typed_column<'a>(
    name: &str,
    values: impl Iterator<Item = &'a Cell> + Clone,
    dtype: &DataType,
) -> Option<Column> {
    fits(values.clone(), dtype).then(|| build_column(name, values, dtype))
}

/// Whether every value is null or fits a column of `dtype` exactly; any value fits as text.
fn fits<'a>(mut values: impl Iterator<Item = &'a Cell>, dtype: &DataType) -> bool {
    values.all(|v| {
        *v == Cell::Null
            || match dtype {
                DataType::String => true,
                DataType::Boolean => matches!(v, Cell::Bool(_)),
                DataType::Int64 => v.exact_i64().is_some(),
                DataType::Float64 => v.exact_f64().is_some(),
                _ => false,
            }
    })
}

/// A column of `dtype` (booleans, integers, floats, else strings); a value that does not fit
/// it is null.
fn build_column<'a>(
    name: &str,
    values: impl Iterator<Item = &'a Cell>,
    dtype: &DataType,
) -> Column {
    let name = PlSmallStr::from(name);
    match dtype {
        DataType::Boolean => Column::new(
            name,
            values
                .map(|v| match v {
                    Cell::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        DataType::Int64 => Column::new(name, values.map(Cell::exact_i64).collect::<Vec<_>>()),
        DataType::Float64 => Column::new(name, values.map(Cell::exact_f64).collect::<Vec<_>>()),
        _ => Column::new(
            name,
            values
                .map(|v| (*v != Cell::Null).then(|| v.text().to_string()))
                .collect::<Vec<_>>(),
        ),
    }
}

/// A flattened output value. Numbers keep their JSON token.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Bool(bool),
    Number(String),
    Text(String),
    /// An array, as JSON text.
    Json(String),
}

impl Cell {
    /// The CSV cell: empty for null, text as is, anything else as JSON.
    fn text(&self) -> &str {
        match self {
            Cell::Null => "",
            Cell::Bool(true) => "true",
            Cell::Bool(false) => "false",
            Cell::Number(s) | Cell::Text(s) | Cell::Json(s) => s,
        }
    }

    /// The number as an `i64`, when that writes back as the same token.
    fn exact_i64(&self) -> Option<i64> {
        let Cell::Number(t) = self else { return None };
        t.parse::<i64>().ok().filter(|n| n.to_string() == *t)
    }

    /// The number as an `f64`, when that loses nothing: an exact `i64`, or a token that serde
    /// writes back unchanged.
    fn exact_f64(&self) -> Option<f64> {
        if let Some(n) = self.exact_i64() {
            return Some(n as f64);
        }
        let Cell::Number(t) = self else { return None };
        let f = t.parse::<f64>().ok()?;
        (serde_json::Number::from_f64(f)?.to_string() == *t).then_some(f)
    }
}

fn unserialisable(path: &Path, e: serde_json::Error) -> Error {
    Error::Output {
        path: path.to_path_buf(),
        message: format!("cannot write a record: {e}"),
    }
}

/// A record flattened into dotted keys, through its JSON text so that raw numbers stay exact.
/// An object under a key for which `whole` holds stays one cell of JSON text.
fn flat_record<T: Serialize>(
    record: &T,
    path: &Path,
    whole: &dyn Fn(&str) -> bool,
) -> Result<Vec<(String, Cell)>> {
    let json = serde_json::to_string(record).map_err(|e| unserialisable(path, e))?;
    let raw: &RawValue = serde_json::from_str(&json).map_err(|e| unserialisable(path, e))?;
    let mut out = Vec::new();
    flatten_raw("", raw, whole, &mut out).map_err(|e| unserialisable(path, e))?;
    Ok(out)
}

fn flatten_raw(
    key: &str,
    raw: &RawValue,
    whole: &dyn Fn(&str) -> bool,
    out: &mut Vec<(String, Cell)>,
) -> serde_json::Result<()> {
    let cell = match Kind::of(raw) {
        Kind::Object if key.is_empty() || !whole(key) => {
            for (k, v) in Members::parse(raw.get())?.iter() {
                if key.is_empty() {
                    flatten_raw(k, v, whole, out)?;
                } else {
                    flatten_raw(&format!("{key}.{k}"), v, whole, out)?;
                }
            }
            return Ok(());
        }
        Kind::Object => Cell::Json(raw.get().to_string()),
        Kind::Null => Cell::Null,
        Kind::Bool => Cell::Bool(raw.get() == "true"),
        Kind::Number => Cell::Number(raw.get().to_string()),
        Kind::String => Cell::Text(serde_json::from_str(raw.get())?),
        Kind::Array => Cell::Json(raw.get().to_string()),
    };
    let key = if key.is_empty() { "value" } else { key };
    out.push((key.to_string(), cell));
    Ok(())
}

/// A typed column: booleans, integers, floats or strings by the first non-null value. Numbers
/// that neither `i64` nor `f64` holds exactly (`1e3`, `-0`, 2^64 + 1) make a string column, so
/// no id is rounded.
fn to_column<'a>(name: &str, values: impl Iterator<Item = &'a Cell> + Clone) -> Column {
    let dtype = match values.clone().find(|v| **v != Cell::Null) {
        Some(Cell::Bool(_)) => DataType::Boolean,
        Some(Cell::Number(_)) if fits(values.clone(), &DataType::Int64) => DataType::Int64,
        Some(Cell::Number(_)) if fits(values.clone(), &DataType::Float64) => DataType::Float64,
        _ => DataType::String,
    };
    build_column(name, values, &dtype)
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

/// Writes bytes to a path atomically (reports, JSON summaries).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::read::RecordId;
    use serde_json::json;

    #[test]
    fn flatten_nested_and_arrays() {
        let v = json!({"id": 1, "u": {"a": 0.5, "b": {"c": true}}, "top": [1, 2]});
        let f = flatten(&v);
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["id", "u.a", "u.b.c", "top"]);
        let cells = flat_record(&v, Path::new("x"), &|_| false).unwrap();
        let shown: Vec<(&str, &str)> = cells.iter().map(|(k, c)| (k.as_str(), c.text())).collect();
        assert_eq!(
            shown,
            [
                ("id", "1"),
                ("u.a", "0.5"),
                ("u.b.c", "true"),
                ("top", "[1,2]")
            ]
        );
    }

    #[derive(Serialize)]
    struct Out {
        id: RecordId,
        #[serde(flatten)]
        rest: Map<String, Value>,
    }

    /// Records whose ids no `f64` or `u64` holds exactly, read from JSON as a user wrote them.
    fn awkward_ids() -> Vec<Out> {
        ["1e3", "-0", "18446744073709551617", "18446744073709551618"]
            .iter()
            .enumerate()
            .map(|(i, tok)| {
                let raw: &RawValue = serde_json::from_str(tok).unwrap();
                let mut rest = Map::new();
                rest.insert("n".into(), json!(i));
                rest.insert("p".into(), json!({"score": 0.25 * i as f64}));
                Out {
                    id: RecordId::Number(raw.to_owned()),
                    rest,
                }
            })
            .collect()
    }

    fn write_to(path: &Path, recs: &[Out]) {
        let columns = ["id", "n", "p.score"].map(String::from).to_vec();
        let mut w = RecordWriter::create(&Target::Path(path.to_path_buf()), None, columns).unwrap();
        w.write_batch(&recs[..2]).unwrap();
        w.write_batch(&recs[2..]).unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn ids_are_written_exactly_in_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let recs = awkward_ids();
        let p = dir.path().join("o.jsonl");
        write_to(&p, &recs);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"id\":1e3,\"n\":0,\"p\":{\"score\":0.0}}\n\
             {\"id\":-0,\"n\":1,\"p\":{\"score\":0.25}}\n\
             {\"id\":18446744073709551617,\"n\":2,\"p\":{\"score\":0.5}}\n\
             {\"id\":18446744073709551618,\"n\":3,\"p\":{\"score\":0.75}}\n"
        );
        let p = dir.path().join("o.csv");
        write_to(&p, &recs);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "id,n,p.score\n1e3,0,0.0\n-0,1,0.25\n18446744073709551617,2,0.5\n\
             18446744073709551618,3,0.75\n"
        );
        let p = dir.path().join("o.parquet");
        write_to(&p, &recs);
        let df = ParquetReader::new(File::open(&p).unwrap())
            .finish()
            .unwrap();
        let ids: Vec<Option<&str>> = df.column("id").unwrap().str().unwrap().iter().collect();
        assert_eq!(
            ids,
            [
                Some("1e3"),
                Some("-0"),
                Some("18446744073709551617"),
                Some("18446744073709551618")
            ]
        );
        assert_eq!(df.column("n").unwrap().dtype(), &DataType::Int64);
        assert_eq!(df.column("p.score").unwrap().dtype(), &DataType::Float64);
    }

    #[test]
    fn parquet_columns_are_typed_only_when_exact() {
        let col = |tokens: &[&str]| {
            let cells: Vec<Cell> = tokens
                .iter()
                .map(|t| match *t {
                    "" => Cell::Null,
                    t => Cell::Number(t.to_string()),
                })
                .collect();
            to_column("c", cells.iter()).dtype().clone()
        };
        assert_eq!(col(&["1", "", "-7"]), DataType::Int64);
        let big = serde_json::to_string(&1e20).unwrap();
        assert_eq!(col(&["1", "0.5", &big]), DataType::Float64);
        assert_eq!(col(&["1", "0.5", "1e20"]), DataType::String);
        assert_eq!(col(&["1", "1.50"]), DataType::String);
        assert_eq!(col(&["9223372036854775808"]), DataType::String);
        assert_eq!(col(&["-0"]), DataType::String);
    }

    #[test]
    fn json_values_are_written_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.jsonl");
        let v = vec![
            json!({"id": 1, "x": [1.5, null], "s": "a\"b"}),
            json!({"id": "z"}),
        ];
        let mut w = RecordWriter::create(&Target::Path(p.clone()), None, Vec::new()).unwrap();
        w.write_batch(&v).unwrap();
        w.finish().unwrap();
        let want: String = v.iter().map(|r| format!("{r}\n")).collect();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), want);
    }

    #[test]
    fn output_format_follows_the_flag_then_the_extension() {
        let t = |p: &str| Target::Path(p.into());
        assert_eq!(
            OutputFormat::resolve(None, &Target::Std).unwrap(),
            OutputFormat::Jsonl
        );
        assert_eq!(
            OutputFormat::resolve(None, &t("a.ndjson")).unwrap(),
            OutputFormat::Jsonl
        );
        assert_eq!(
            OutputFormat::resolve(None, &t("a.CSV")).unwrap(),
            OutputFormat::Csv
        );
        assert_eq!(
            OutputFormat::resolve(Some(OutputFormat::Csv), &t("a.txt")).unwrap(),
            OutputFormat::Csv
        );
        let e = OutputFormat::resolve(None, &t("out.txt"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "-o out.txt: cannot tell the output format from its extension `.txt`; name the file \
             .jsonl, .ndjson, .csv or .parquet, or pass --output-format jsonl|csv|parquet"
        );
        let e = OutputFormat::resolve(None, &t("out"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("-o out: cannot tell the output format from a name without an extension"),
            "{e}"
        );
        let e = RecordWriter::create(&Target::Std, Some(OutputFormat::Parquet), Vec::new())
            .err()
            .unwrap();
        assert!(e.to_string().contains("-o FILE.parquet"), "{e}");
    }

    #[test]
    fn parquet_round_trip_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.parquet");
        let columns = ["id", "confidence", "abstained", "n"]
            .map(String::from)
            .to_vec();
        let mut w = RecordWriter::create(&Target::Path(p.clone()), None, columns).unwrap();
        w.write_batch(&[json!({"id": "a", "confidence": 0.5, "abstained": false, "n": 3})])
            .unwrap();
        assert!(!p.exists());
        w.finish().unwrap();
        let df = ParquetReader::new(File::open(&p).unwrap())
            .finish()
            .unwrap();
        assert_eq!(df.height(), 1);
        assert_eq!(df.column("id").unwrap().str().unwrap().get(0), Some("a"));
        assert_eq!(df.column("abstained").unwrap().dtype(), &DataType::Boolean);
        assert_eq!(df.column("confidence").unwrap().dtype(), &DataType::Float64);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// Writes `batches` to `name` in `dir` with the columns `a`, `b.c`, `b.d`, `k`.
    fn write_columns(dir: &Path, name: &str, batches: &[Vec<Value>]) -> Result<PathBuf> {
        let p = dir.join(name);
        let columns = ["a", "b.c", "b.d", "k"].map(String::from).to_vec();
        let mut w = RecordWriter::create(&Target::Path(p.clone()), None, columns)?;
        for b in batches {
            w.write_batch(b)?;
        }
        w.finish()?;
        Ok(p)
    }

    #[test]
    fn columns_come_from_the_writer_not_the_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let batches = [
            vec![json!({"a": 1})],
            vec![json!({"a": 2, "b": {"c": 0.5, "d": "x"}, "k": {"z": [1]}})],
        ];
        let p = write_columns(dir.path(), "o.csv", &batches).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "a,b.c,b.d,k\n1,,,\n2,0.5,x,\"{\"\"z\"\":[1]}\"\n"
        );
        let p = write_columns(dir.path(), "o.parquet", &batches).unwrap();
        let df = ParquetReader::new(File::open(&p).unwrap())
            .finish()
            .unwrap();
        assert_eq!(df.get_column_names(), ["a", "b.c", "b.d", "k"]);
        let c: Vec<Option<f64>> = df.column("b.c").unwrap().f64().unwrap().iter().collect();
        assert_eq!(c, [None, Some(0.5)]);

        let p = write_columns(dir.path(), "none.csv", &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a,b.c,b.d,k\n");
    }

    #[test]
    fn a_field_without_a_column_is_an_error_not_a_loss() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["o.csv", "o.parquet"] {
            let e = write_columns(dir.path(), name, &[vec![json!({"a": 1, "b": {"e": 2}})]])
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("its field `b.e` has no column"), "{e}");
            assert!(!dir.path().join(name).exists());
        }
    }

    /// Every row group has the first one's column types: a column that was all null there
    /// still holds later values (as text), and a value its type cannot hold is an error rather
    /// than a garbled cell.
    #[test]
    fn later_row_groups_keep_the_first_ones_types() {
        let dir = tempfile::tempdir().unwrap();
        let ints: Vec<Value> = (0..PARQUET_ROW_GROUP).map(|i| json!({"a": i})).collect();
        let later = vec![json!({"a": 7, "b": {"c": 2.5}})];
        let p = write_columns(dir.path(), "o.parquet", &[ints.clone(), later]).unwrap();
        let df = ParquetReader::new(File::open(&p).unwrap())
            .finish()
            .unwrap();
        assert_eq!(df.column("a").unwrap().dtype(), &DataType::Int64);
        let c: Vec<Option<&str>> = df.column("b.c").unwrap().str().unwrap().iter().collect();
        assert_eq!(c[PARQUET_ROW_GROUP - 1..], [None, Some("2.5")]);

        let e = write_columns(dir.path(), "f.parquet", &[ints, vec![json!({"a": 0.5})]])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(
                "column `a` has f64 values after row 65536, where the rows before made it i64"
            ),
            "{e}"
        );
    }
}
