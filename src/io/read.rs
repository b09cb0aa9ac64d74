//! Input records from CSV, JSONL, raw lines or Parquet, file or stdin, one at a time. Each
//! record carries its position so any later complaint can name the line and row. Errors name the
//! source, the line (or row) and the field.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use polars::prelude::*;
use serde_json::{Map, Value};

use super::{Format, Target};
use crate::error::{Error, Location, Result};

/// What to read and which columns matter.
#[derive(Debug, Clone)]
pub struct ReadSpec {
    pub target: Target,
    pub format: Option<Format>,
    pub text_col: String,
    /// The label column named with `--label-col`; `None` falls back to `label`, `intent`, `category`.
    pub label_col: Option<String>,
    pub need_label: bool,
    pub id_col: Option<String>,
    pub keep: Vec<String>,
    /// Columns read into `Record::keep` when the input has them (e.g. `customer_tier`), and
    /// silently skipped when it does not.
    pub optional: Vec<String>,
}

impl ReadSpec {
    pub fn new(target: Target) -> ReadSpec {
        ReadSpec {
            target,
            format: None,
            text_col: "text".into(),
            label_col: None,
            need_label: false,
            id_col: None,
            keep: Vec::new(),
            optional: Vec::new(),
        }
    }
}

/// One input record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Physical line where the record starts (CSV, JSONL, lines); `None` for Parquet.
    pub line: Option<u64>,
    /// 1-based data row (header excluded).
    pub row: u64,
    pub id: Value,
    pub text: String,
    pub label: Option<String>,
    pub keep: Vec<(String, Value)>,
    /// Why the record cannot be scored (its text is empty), when the reader was asked to pass
    /// such records on instead of failing.
    pub skip: Option<String>,
}

impl Record {
    pub fn location(&self, source: &str) -> Location {
        let l = Location::new(source).row(self.row);
        match self.line {
            Some(line) => l.line(line),
            None => l,
        }
    }
}

pub type Records = Box<dyn Iterator<Item = Result<Record>> + Send>;

const LABEL_FALLBACKS: [&str; 3] = ["label", "intent", "category"];

/// The columns resolved against what the input actually has.
#[derive(Debug, Clone)]
struct Plan {
    text: String,
    label: Option<String>,
    id: Option<String>,
    keep: Vec<String>,
}

fn plan(source: &str, columns: &[String], spec: &ReadSpec) -> Result<Plan> {
    let has = |c: &str| columns.iter().any(|x| x == c);
    let missing = |column: &str, what: &str| Error::MissingColumn {
        source_name: source.to_string(),
        column: column.to_string(),
        what: what.to_string(),
        available: if columns.is_empty() {
            "(none)".into()
        } else {
            columns
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        },
    };
    if !has(&spec.text_col) {
        return Err(missing(
            &spec.text_col,
            "the query text; choose another with --text-col",
        ));
    }
    let label = if !spec.need_label {
        None
    } else if let Some(l) = &spec.label_col {
        if !has(l) {
            return Err(missing(l, "the labels named with --label-col"));
        }
        Some(l.clone())
    } else {
        match LABEL_FALLBACKS.iter().find(|c| has(c)) {
            Some(c) => Some(c.to_string()),
            None => {
                return Err(missing(
                    "label",
                    "the intent labels; `intent` and `category` were looked for too; choose one with --label-col",
                ))
            }
        }
    };
    let id = match &spec.id_col {
        Some(i) if !has(i) => return Err(missing(i, "the record ids named with --id-col")),
        Some(i) => Some(i.clone()),
        None if has("id") && spec.text_col != "id" => Some("id".to_string()),
        None => None,
    };
    for k in &spec.keep {
        if !has(k) {
            return Err(missing(k, "asked for with --keep"));
        }
    }
    let mut keep = spec.keep.clone();
    for o in &spec.optional {
        if has(o) && !keep.contains(o) {
            keep.push(o.clone());
        }
    }
    Ok(Plan {
        text: spec.text_col.clone(),
        label,
        id,
        keep,
    })
}

fn check_text(text: &str, loc: Location) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::input(loc, "the text is empty"));
    }
    Ok(())
}

fn check_label(label: &str, loc: Location) -> Result<()> {
    if label.trim().is_empty() {
        return Err(Error::input(loc, "the label is empty"));
    }
    Ok(())
}

/// Opens the records of `spec.target`. A file that yields no record ends with an error; stdin may
/// be empty (a pipeline with nothing to classify is not a failure).
pub fn open(spec: &ReadSpec) -> Result<Records> {
    let format = Format::resolve(spec.format, &spec.target, Format::Jsonl)?;
    let source = spec.target.name();
    let reader: Box<dyn Read + Send> = match &spec.target {
        Target::Std => Box::new(std::io::stdin()),
        Target::Path(p) => {
            if format == Format::Parquet {
                return parquet_records(p, spec).map(|r| non_empty(r, source, true));
            }
            Box::new(File::open(p).map_err(|e| Error::io(p, e))?)
        }
    };
    let buffered = BufReader::with_capacity(1 << 16, reader);
    let records: Records = match format {
        Format::Csv => csv_records(buffered, source.clone(), spec)?,
        Format::Jsonl => Box::new(JsonlRecords {
            inner: buffered,
            source: source.clone(),
            spec: spec.clone(),
            plan: None,
            line: 0,
            row: 0,
            buf: Vec::new(),
            done: false,
        }),
        Format::Lines => {
            if !spec.keep.is_empty() || spec.need_label {
                return Err(Error::Usage(
                    "--format lines has one raw query per line and no columns to label or keep"
                        .into(),
                ));
            }
            Box::new(LineRecords {
                inner: buffered,
                source: source.clone(),
                line: 0,
                buf: Vec::new(),
                done: false,
            })
        }
        Format::Parquet => {
            return Err(Error::Usage(
                "Parquet cannot be read from stdin: it needs a seekable file; pass the path".into(),
            ))
        }
    };
    Ok(non_empty(records, source, spec.target != Target::Std))
}

/// Reads every record (training and evaluation data).
pub fn read_all(spec: &ReadSpec) -> Result<Vec<Record>> {
    let out: Vec<Record> = open(spec)?.collect::<Result<_>>()?;
    if out.is_empty() {
        return Err(Error::Empty {
            source_name: spec.target.name(),
            why: "the input is empty".into(),
        });
    }
    Ok(out)
}

/// Ends a file's records with a clear error when there were none.
fn non_empty(inner: Records, source: String, required: bool) -> Records {
    Box::new(NonEmpty {
        inner,
        source,
        required,
        seen: false,
        done: false,
    })
}

struct NonEmpty {
    inner: Records,
    source: String,
    required: bool,
    seen: bool,
    done: bool,
}

impl Iterator for NonEmpty {
    type Item = Result<Record>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.inner.next() {
            Some(r) => {
                self.seen = true;
                self.done = r.is_err();
                Some(r)
            }
            None => {
                self.done = true;
                (self.required && !self.seen).then(|| {
                    Err(Error::Empty {
                        source_name: self.source.clone(),
                        why: "the file holds no data rows".into(),
                    })
                })
            }
        }
    }
}

// ---------------------------------------------------------------------------------------- CSV

fn csv_error(source: &str, headers: &[String], e: csv::Error) -> Error {
    use csv::ErrorKind;
    let loc = |pos: Option<&csv::Position>| {
        let l = Location::new(source);
        match pos {
            Some(p) => l.line(p.line()).row(p.record().max(1)),
            None => l,
        }
    };
    match e.into_kind() {
        ErrorKind::Io(io) => Error::io(source, io),
        ErrorKind::Utf8 { pos, err } => {
            let field = headers
                .get(err.field())
                .cloned()
                .unwrap_or_else(|| format!("#{}", err.field() + 1));
            Error::input(
                loc(pos.as_ref()).field(field),
                format!(
                    "invalid UTF-8 after byte {} of the field",
                    err.valid_up_to()
                ),
            )
        }
        ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => Error::input(
            loc(pos.as_ref()),
            format!(
                "malformed row: {len} fields where the header has {expected_len} (check quoting)"
            ),
        ),
        other => Error::input(Location::new(source), format!("CSV error: {other:?}")),
    }
}

fn csv_records(
    inner: impl Read + Send + 'static,
    source: String,
    spec: &ReadSpec,
) -> Result<Records> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(inner);
    let headers: Vec<String> = match rdr.headers() {
        Ok(h) => h.iter().map(|s| s.to_string()).collect(),
        Err(e) => return Err(csv_error(&source, &[], e)),
    };
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(Error::Empty {
            source_name: source,
            why: "the file is empty (not even a header line)".into(),
        });
    }
    let plan = plan(&source, &headers, spec)?;
    let idx = |c: &str| {
        headers
            .iter()
            .position(|h| h == c)
            .expect("planned columns exist")
    };
    let text = idx(&plan.text);
    let label = plan.label.as_deref().map(idx);
    let id = plan.id.as_deref().map(idx);
    let keep: Vec<(String, usize)> = plan.keep.iter().map(|k| (k.clone(), idx(k))).collect();
    let label_name = plan.label.clone().unwrap_or_default();
    let mut rec = csv::StringRecord::new();
    let mut row = 0u64;
    let mut done = false;
    Ok(Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        match rdr.read_record(&mut rec) {
            Ok(false) => {
                done = true;
                None
            }
            Err(e) => {
                done = true;
                Some(Err(csv_error(&source, &headers, e)))
            }
            Ok(true) => {
                row += 1;
                let line = rec.position().map(|p| p.line()).unwrap_or(0);
                let loc = || Location::new(&source).line(line).row(row);
                let result = (|| {
                    let t = &rec[text];
                    check_text(t, loc().field(&plan.text))?;
                    let lab = match label {
                        Some(i) => {
                            check_label(&rec[i], loc().field(&label_name))?;
                            Some(rec[i].to_string())
                        }
                        None => None,
                    };
                    Ok(Record {
                        line: Some(line),
                        row,
                        id: id
                            .map(|i| Value::String(rec[i].to_string()))
                            .unwrap_or(Value::from(row)),
                        text: t.to_string(),
                        label: lab,
                        keep: keep
                            .iter()
                            .map(|(k, i)| (k.clone(), Value::String(rec[*i].to_string())))
                            .collect(),
                        skip: None,
                    })
                })();
                done = result.is_err();
                Some(result)
            }
        }
    })))
}

// -------------------------------------------------------------------------------------- JSONL

/// Reads one line into `buf` (without its terminator); `false` at end of input.
fn next_line(inner: &mut impl BufRead, buf: &mut Vec<u8>, source: &str) -> Result<bool> {
    buf.clear();
    let n = inner
        .read_until(b'\n', buf)
        .map_err(|e| Error::io(source, e))?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(true)
}

fn utf8_line(buf: &[u8], loc: Location) -> Result<&str> {
    std::str::from_utf8(buf).map_err(|e| {
        let col = String::from_utf8_lossy(&buf[..e.valid_up_to()])
            .chars()
            .count() as u64
            + 1;
        Error::input(loc.column(col), "invalid UTF-8")
    })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

struct JsonlRecords<R> {
    inner: R,
    source: String,
    spec: ReadSpec,
    plan: Option<Plan>,
    line: u64,
    row: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> JsonlRecords<R> {
    fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            if !next_line(&mut self.inner, &mut self.buf, &self.source)? {
                return Ok(None);
            }
            self.line += 1;
            let loc = Location::new(&self.source).line(self.line);
            let text = utf8_line(&self.buf, loc.clone())?;
            if text.trim().is_empty() {
                continue;
            }
            self.row += 1;
            let loc = loc.row(self.row);
            let obj: Map<String, Value> = match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m,
                Ok(other) => {
                    return Err(Error::input(
                        loc,
                        format!("expected a JSON object, found {}", json_type(&other)),
                    ))
                }
                Err(e) => {
                    return Err(Error::input(
                        loc.column(e.column() as u64),
                        format!("invalid JSON: {e}"),
                    ))
                }
            };
            if self.plan.is_none() {
                let keys: Vec<String> = obj.keys().cloned().collect();
                self.plan = Some(plan(
                    &format!("{} (line {})", self.source, self.line),
                    &keys,
                    &self.spec,
                )?);
            }
            let plan = self.plan.as_ref().expect("planned above");
            let field = |name: &str| -> Result<&Value> {
                obj.get(name).ok_or_else(|| {
                    Error::input(
                        loc.clone().field(name),
                        "the field is missing from this record",
                    )
                })
            };
            let text = match field(&plan.text)? {
                Value::String(s) => s.clone(),
                other => {
                    return Err(Error::input(
                        loc.field(&plan.text),
                        format!("the text must be a string, found {}", json_type(other)),
                    ))
                }
            };
            check_text(&text, loc.clone().field(&plan.text))?;
            let label = match &plan.label {
                None => None,
                Some(l) => {
                    let s = match field(l)? {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        other => {
                            return Err(Error::input(
                                loc.field(l),
                                format!(
                                    "the label must be a string or a number, found {}",
                                    json_type(other)
                                ),
                            ))
                        }
                    };
                    check_label(&s, loc.clone().field(l))?;
                    Some(s)
                }
            };
            let id = match &plan.id {
                Some(i) => field(i)?.clone(),
                None => Value::from(self.row),
            };
            let keep = plan
                .keep
                .iter()
                .map(|k| (k.clone(), obj.get(k).cloned().unwrap_or(Value::Null)))
                .collect();
            return Ok(Some(Record {
                line: Some(self.line),
                row: self.row,
                id,
                text,
                label,
                keep,
                skip: None,
            }));
        }
    }
}

impl<R: BufRead> Iterator for JsonlRecords<R> {
    type Item = Result<Record>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_record().transpose();
        self.done = !matches!(r, Some(Ok(_)));
        r
    }
}

// -------------------------------------------------------------------------------------- lines

struct LineRecords<R> {
    inner: R,
    source: String,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> LineRecords<R> {
    fn next_record(&mut self) -> Result<Option<Record>> {
        if !next_line(&mut self.inner, &mut self.buf, &self.source)? {
            return Ok(None);
        }
        self.line += 1;
        let loc = Location::new(&self.source).line(self.line);
        let text = utf8_line(&self.buf, loc.clone())?;
        check_text(text, loc)?;
        Ok(Some(Record {
            line: Some(self.line),
            row: self.line,
            id: Value::from(self.line),
            text: text.to_string(),
            label: None,
            keep: Vec::new(),
            skip: None,
        }))
    }
}

impl<R: BufRead> Iterator for LineRecords<R> {
    type Item = Result<Record>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_record().transpose();
        self.done = !matches!(r, Some(Ok(_)));
        r
    }
}

// ------------------------------------------------------------------------------------ Parquet

const PARQUET_SLICE: usize = 16_384;

fn polars_err(path: &std::path::Path, e: PolarsError) -> Error {
    Error::input(
        Location::new(path.display().to_string()),
        format!("cannot read Parquet: {e}"),
    )
}

fn any_to_json(v: AnyValue<'_>) -> Value {
    match v {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(b),
        AnyValue::String(s) => Value::String(s.to_string()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        AnyValue::Int8(i) => Value::from(i),
        AnyValue::Int16(i) => Value::from(i),
        AnyValue::Int32(i) => Value::from(i),
        AnyValue::Int64(i) => Value::from(i),
        AnyValue::UInt8(i) => Value::from(i),
        AnyValue::UInt16(i) => Value::from(i),
        AnyValue::UInt32(i) => Value::from(i),
        AnyValue::UInt64(i) => Value::from(i),
        AnyValue::Float32(f) => serde_json::Number::from_f64(f as f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        AnyValue::Float64(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        other => Value::String(other.to_string()),
    }
}

fn parquet_records(path: &std::path::Path, spec: &ReadSpec) -> Result<Records> {
    let source = path.display().to_string();
    let open = || -> Result<ParquetReader<File>> {
        Ok(ParquetReader::new(
            File::open(path).map_err(|e| Error::io(path, e))?,
        ))
    };
    let mut reader = open()?;
    let schema = reader.schema().map_err(|e| polars_err(path, e))?;
    let total = reader.num_rows().map_err(|e| polars_err(path, e))?;
    let columns: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
    let plan = plan(&source, &columns, spec)?;
    // Labels may be numbers (they are cast to text); the text itself must be strings.
    let dtype = schema.get(plan.text.as_str()).map(|f| f.dtype().clone());
    if !matches!(
        dtype,
        Some(ArrowDataType::Utf8View | ArrowDataType::LargeUtf8 | ArrowDataType::Utf8)
    ) {
        return Err(Error::input(
            Location::new(&source).field(&plan.text),
            format!("the column has type {dtype:?}; expected strings"),
        ));
    }
    let mut wanted: Vec<String> = vec![plan.text.clone()];
    wanted.extend(plan.label.iter().cloned());
    wanted.extend(plan.id.iter().cloned());
    wanted.extend(plan.keep.iter().cloned());
    wanted.dedup();
    let path = path.to_path_buf();
    let mut offset = 0usize;
    let mut pending: std::vec::IntoIter<Result<Record>> = Vec::new().into_iter();
    let mut failed = false;
    Ok(Box::new(std::iter::from_fn(move || loop {
        if let Some(r) = pending.next() {
            failed |= r.is_err();
            return Some(r);
        }
        if failed || offset >= total {
            return None;
        }
        let len = PARQUET_SLICE.min(total - offset);
        let batch = (|| -> Result<Vec<Result<Record>>> {
            let mut uniq = wanted.clone();
            uniq.sort();
            uniq.dedup();
            let df = ParquetReader::new(File::open(&path).map_err(|e| Error::io(&path, e))?)
                .with_columns(Some(uniq))
                .with_slice(Some((offset, len)))
                .finish()
                .map_err(|e| polars_err(&path, e))?;
            let col = |n: &str| df.column(n).map_err(|e| polars_err(&path, e));
            let text = col(&plan.text)?
                .str()
                .map_err(|e| polars_err(&path, e))?
                .clone();
            let label = match &plan.label {
                Some(l) => Some(
                    col(l)?
                        .cast(&DataType::String)
                        .map_err(|e| polars_err(&path, e))?
                        .str()
                        .map_err(|e| polars_err(&path, e))?
                        .clone(),
                ),
                None => None,
            };
            let mut out = Vec::with_capacity(len);
            for i in 0..df.height() {
                let row = (offset + i + 1) as u64;
                let loc = || Location::new(&source).row(row);
                let rec = (|| -> Result<Record> {
                    let t = text.get(i).unwrap_or("");
                    check_text(t, loc().field(&plan.text))?;
                    let lab = match (&label, &plan.label) {
                        (Some(ca), Some(name)) => {
                            let v = ca.get(i).unwrap_or("");
                            check_label(v, loc().field(name))?;
                            Some(v.to_string())
                        }
                        _ => None,
                    };
                    let id = match &plan.id {
                        Some(n) => any_to_json(col(n)?.get(i).map_err(|e| polars_err(&path, e))?),
                        None => Value::from(row),
                    };
                    let mut keep = Vec::with_capacity(plan.keep.len());
                    for k in &plan.keep {
                        keep.push((
                            k.clone(),
                            any_to_json(col(k)?.get(i).map_err(|e| polars_err(&path, e))?),
                        ));
                    }
                    Ok(Record {
                        line: None,
                        row,
                        id,
                        text: t.to_string(),
                        label: lab,
                        keep,
                        skip: None,
                    })
                })();
                let stop = rec.is_err();
                out.push(rec);
                if stop {
                    break;
                }
            }
            Ok(out)
        })();
        offset += len;
        match batch {
            Ok(v) => pending = v.into_iter(),
            Err(e) => pending = vec![Err(e)].into_iter(),
        }
    })))
}

// ------------------------------------------------------------------------------------ batches

/// Groups records into batches on a background thread, so reading overlaps scoring and a slow
/// producer (a person typing into a pipe) never holds an answer back for more than `max_wait`.
/// The channel is bounded: memory stays flat whatever the input size.
pub struct Batcher {
    rx: Receiver<Result<Record>>,
    pending_error: Option<Error>,
    finished: bool,
}

impl Batcher {
    pub fn spawn(records: Records, capacity: usize) -> Batcher {
        let (tx, rx) = sync_channel(capacity.max(1));
        std::thread::Builder::new()
            .name("cqr-reader".into())
            .spawn(move || {
                for r in records {
                    let stop = r.is_err();
                    if tx.send(r).is_err() || stop {
                        break;
                    }
                }
            })
            .expect("spawning the reader thread");
        Batcher {
            rx,
            pending_error: None,
            finished: false,
        }
    }

    /// The next batch of up to `max` records; `Ok(None)` at the end. A record error is returned
    /// after the records read before it.
    pub fn next_batch(&mut self, max: usize, max_wait: Duration) -> Result<Option<Vec<Record>>> {
        if let Some(e) = self.pending_error.take() {
            self.finished = true;
            return Err(e);
        }
        if self.finished {
            return Ok(None);
        }
        let mut batch = Vec::new();
        let first = match self.rx.recv() {
            Ok(r) => r,
            Err(_) => {
                self.finished = true;
                return Ok(None);
            }
        };
        match first {
            Ok(r) => batch.push(r),
            Err(e) => {
                self.finished = true;
                return Err(e);
            }
        }
        let deadline = Instant::now() + max_wait;
        while batch.len() < max {
            let item = match self.rx.try_recv() {
                Ok(item) => item,
                Err(_) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match self.rx.recv_timeout(deadline - now) {
                        Ok(item) => item,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => {
                            self.finished = true;
                            break;
                        }
                    }
                }
            };
            match item {
                Ok(r) => batch.push(r),
                Err(e) => {
                    self.pending_error = Some(e);
                    break;
                }
            }
        }
        Ok(Some(batch))
    }
}
