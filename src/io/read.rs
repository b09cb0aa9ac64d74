//! Input records from CSV, JSONL, raw lines or Parquet, file or stdin, one at a time in bounded
//! memory. Each record carries its position, so any later complaint can name the line and row;
//! errors name the source, the line (or row) and the field. Rules shared by every format: a UTF-8
//! byte-order mark at the start is dropped (character spans start at 0); in the line-oriented
//! formats (JSONL and `--format lines`) an empty or whitespace-only line is not a record and is
//! skipped, though line numbers still count it; `row` counts records (a CSV header is not one) and
//! is the id of a record that has none; an id is kept exactly as written ([`RecordId`]); no
//! records at all is not an error here ([`read_all`] makes it one), but a CSV file without even a
//! header line is; a CSV quoted field still open at the end of the input is an error naming the
//! line where it opened.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use polars::prelude::*;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use super::json::{Kind, Members};
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
    /// An empty or whitespace-only text yields a record marked `skip` instead of an error, so an
    /// export can write one row out per row in.
    pub skip_bad_text: bool,
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
            skip_bad_text: false,
        }
    }
}

/// A record's id exactly as the input gave it.
#[derive(Debug, Clone)]
pub enum RecordId {
    /// No id in the input: the record's 1-based row.
    Row(u64),
    /// A CSV cell or a JSON string.
    Text(String),
    /// A JSON number, kept as the token written (`1e3`, `-0`, `18446744073709551617`).
    Number(Box<RawValue>),
    /// Any other JSON value, or a typed Parquet cell.
    Other(Value),
}

impl RecordId {
    fn from_json(raw: &RawValue) -> serde_json::Result<RecordId> {
        Ok(match Kind::of(raw) {
            Kind::String => RecordId::Text(serde_json::from_str(raw.get())?),
            Kind::Number => RecordId::Number(raw.to_owned()),
            _ => RecordId::Other(serde_json::from_str(raw.get())?),
        })
    }

    fn from_value(v: Value) -> RecordId {
        match v {
            Value::String(s) => RecordId::Text(s),
            other => RecordId::Other(other),
        }
    }
}

impl PartialEq for RecordId {
    fn eq(&self, other: &RecordId) -> bool {
        use RecordId::*;
        match (self, other) {
            (Row(a), Row(b)) => a == b,
            (Text(a), Text(b)) => a == b,
            (Number(a), Number(b)) => a.get() == b.get(),
            (Other(a), Other(b)) => a == b,
            _ => false,
        }
    }
}

/// The id as a CSV cell or a message shows it: text as is, anything else as JSON.
impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordId::Row(n) => write!(f, "{n}"),
            RecordId::Text(s) => f.write_str(s),
            RecordId::Number(raw) => f.write_str(raw.get()),
            RecordId::Other(v) => write!(f, "{v}"),
        }
    }
}

impl Serialize for RecordId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            RecordId::Row(n) => s.serialize_u64(*n),
            RecordId::Text(t) => s.serialize_str(t),
            RecordId::Number(raw) => raw.serialize(s),
            RecordId::Other(v) => v.serialize(s),
        }
    }
}

/// One input record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Physical line where the record starts (CSV, JSONL, lines); `None` for Parquet.
    pub line: Option<u64>,
    /// 1-based data row (header and blank lines excluded).
    pub row: u64,
    pub id: RecordId,
    /// The text; empty when the record is skipped.
    pub text: String,
    pub label: Option<String>,
    pub keep: Vec<(String, Value)>,
    /// Why the record is not to be scored (`ReadSpec::skip_bad_text`), e.g. "the text is empty".
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

const EMPTY_TEXT: &str = "the text is empty";

/// `None` for a usable text; for an empty one, the reason to skip the record when the spec allows
/// skipping, else an error. The checks here take the location as a closure: it copies the
/// source and field names, and is built only for an error.
fn check_text(
    text: &str,
    loc: impl FnOnce() -> Location,
    spec: &ReadSpec,
) -> Result<Option<String>> {
    if !text.trim().is_empty() {
        Ok(None)
    } else if spec.skip_bad_text {
        Ok(Some(EMPTY_TEXT.to_string()))
    } else {
        Err(Error::input(loc(), EMPTY_TEXT))
    }
}

fn check_label(label: &str, loc: impl FnOnce() -> Location) -> Result<()> {
    if label.trim().is_empty() {
        return Err(Error::input(loc(), "the label is empty"));
    }
    Ok(())
}

/// Opens the records of `spec.target`. No records at all is not an error here, for a file or
/// stdin alike; a CSV file without even a header line is.
pub fn open(spec: &ReadSpec) -> Result<Records> {
    let format = Format::resolve(spec.format, &spec.target, Format::Jsonl)?;
    let source = spec.target.name();
    let raw: Box<dyn Read + Send> = match &spec.target {
        Target::Std => Box::new(std::io::stdin()),
        Target::Path(p) => {
            if format == Format::Parquet {
                return parquet_records(p, spec);
            }
            Box::new(File::open(p).map_err(|e| Error::io(p, e))?)
        }
    };
    from_reader(raw, format, source, spec)
}

/// The records of an open byte stream in a line-oriented format or CSV.
fn from_reader(
    raw: Box<dyn Read + Send>,
    format: Format,
    source: String,
    spec: &ReadSpec,
) -> Result<Records> {
    let input = BomStripped::new(raw);
    match format {
        Format::Csv => csv_records(input, source, spec),
        Format::Jsonl => {
            let mut jsonl = JsonlRecords {
                lines: Lines::new(input, source),
                spec: spec.clone(),
                plan: None,
            };
            Ok(until_error(move || jsonl.next_record()))
        }
        Format::Lines => {
            if !spec.keep.is_empty() || spec.need_label {
                return Err(Error::Usage(
                    "--format lines has one raw query per line and no columns to label or keep"
                        .into(),
                ));
            }
            let mut lines = Lines::new(input, source);
            Ok(until_error(move || {
                Ok(lines.next()?.map(|l| Record {
                    line: Some(l.line),
                    row: l.row,
                    id: RecordId::Row(l.row),
                    text: l.text.to_string(),
                    label: None,
                    keep: Vec::new(),
                    skip: None,
                }))
            }))
        }
        Format::Parquet => Err(Error::Usage(
            "Parquet cannot be read from stdin: it needs a seekable file; pass the path".into(),
        )),
    }
}

/// Reads every record (training and evaluation data); no records is an error.
pub fn read_all(spec: &ReadSpec) -> Result<Vec<Record>> {
    let out: Vec<Record> = open(spec)?.collect::<Result<_>>()?;
    if out.is_empty() {
        return Err(Error::Empty {
            source_name: spec.target.name(),
            why: "the input holds no data rows".into(),
        });
    }
    Ok(out)
}

/// Records from `next` until its end or its first error, which is the last item.
fn until_error(mut next: impl FnMut() -> Result<Option<Record>> + Send + 'static) -> Records {
    let mut done = false;
    Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let r = next().transpose();
        done = !matches!(r, Some(Ok(_)));
        r
    }))
}

// ------------------------------------------------------------------------------- byte streams

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Drops a UTF-8 byte-order mark at the start of the input. It reads past the first read only
/// while the bytes so far could still be the start of a mark, so a slow pipe is never held up.
struct BomStripped<R> {
    inner: R,
    head: [u8; 3],
    /// `head[at..len]` is still to be handed out.
    at: usize,
    len: usize,
    checked: bool,
}

impl<R: Read> BomStripped<R> {
    fn new(inner: R) -> BomStripped<R> {
        BomStripped {
            inner,
            head: [0; 3],
            at: 0,
            len: 0,
            checked: false,
        }
    }

    fn check(&mut self) -> std::io::Result<()> {
        while self.len < 3 {
            let n = match self.inner.read(&mut self.head[self.len..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.len += n;
            if n == 0 || self.head[..self.len] != BOM[..self.len] {
                break;
            }
        }
        if self.head[..self.len] == BOM {
            self.at = 3;
        }
        self.checked = true;
        Ok(())
    }
}

impl<R: Read> Read for BomStripped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.checked {
            self.check()?;
        }
        if self.at < self.len {
            let n = buf.len().min(self.len - self.at);
            buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

// ---------------------------------------------------------------------------------------- CSV

/// Where a quoted CSV field opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenQuote {
    line: u64,
    /// Byte offset of the quote (after any byte-order mark).
    byte: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Outside,
    Quoted,
    /// A quote inside a quoted field: the field's end, or the first half of `""`.
    QuoteInQuoted,
}

/// Follows the quoting of the CSV bytes read through it, as the csv crate parses them (a quote
/// opens a field only at its start; `""` inside is a quote), because the crate silently closes a
/// quoted field still open at the end of the input, which swallows every line after the quote.
/// Only quotes stop its scan, so it costs little beside the parser.
struct QuoteTracker<R> {
    inner: R,
    state: Quoting,
    /// The last byte seen; `None` at the start, which is a field's start too.
    prev: Option<u8>,
    line: u64,
    byte: u64,
    open: Option<OpenQuote>,
    eof: bool,
}

impl<R> QuoteTracker<R> {
    fn new(inner: R) -> QuoteTracker<R> {
        QuoteTracker {
            inner,
            state: Quoting::Outside,
            prev: None,
            line: 1,
            byte: 0,
            open: None,
            eof: false,
        }
    }

    fn track(&mut self, bytes: &[u8]) {
        // Summed in bytes, 255 at a time, so that it runs on vector lanes.
        let newlines = |s: &[u8]| -> u64 {
            s.chunks(255)
                .map(|c| c.iter().map(|&b| u8::from(b == b'\n')).sum::<u8>() as u64)
                .sum()
        };
        // Lines are counted in bulk, up to an opening quote and at the end of the chunk.
        let mut counted = 0;
        let mut i = 0;
        while i < bytes.len() {
            if self.state == Quoting::QuoteInQuoted {
                self.state = match bytes[i] {
                    b'"' => Quoting::Quoted,
                    _ => Quoting::Outside,
                };
                i += 1;
                continue;
            }
            let q = i + find_quote(&bytes[i..]);
            if q == bytes.len() {
                break;
            }
            if self.state == Quoting::Quoted {
                self.state = Quoting::QuoteInQuoted;
            } else {
                // Outside quotes, a quote right after a delimiter or line end opens a field;
                // anywhere else it is a plain character.
                let before = if q > 0 { Some(bytes[q - 1]) } else { self.prev };
                if matches!(before, None | Some(b',' | b'\n' | b'\r')) {
                    self.line += newlines(&bytes[counted..q]);
                    counted = q;
                    self.open = Some(OpenQuote {
                        line: self.line,
                        byte: self.byte + q as u64,
                    });
                    self.state = Quoting::Quoted;
                }
            }
            i = q + 1;
        }
        self.line += newlines(&bytes[counted..]);
        self.byte += bytes.len() as u64;
        if let Some(&b) = bytes.last() {
            self.prev = Some(b);
        }
    }

    /// The quote still open once the whole input has been read.
    fn unclosed(&self) -> Option<OpenQuote> {
        (self.eof && self.state == Quoting::Quoted)
            .then_some(self.open)
            .flatten()
    }
}

impl<R: Read> Read for QuoteTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        self.track(&buf[..n]);
        Ok(n)
    }
}

/// The index of the first `"` in `s`, else `s.len()`. It tests 32 bytes at a time, in a loop
/// the compiler turns into vector compares: the CSV reader would otherwise spend a third of its
/// time here.
fn find_quote(s: &[u8]) -> usize {
    let mut i = 0;
    while let Some(chunk) = s.get(i..i + 32) {
        if chunk.iter().fold(false, |any, &b| any | (b == b'"')) {
            return i + first_quote_in(chunk);
        }
        i += 32;
    }
    i + s[i..]
        .iter()
        .position(|&b| b == b'"')
        .unwrap_or(s.len() - i)
}

/// The first `"` of a 32-byte chunk that holds one, found eight bytes at a time.
fn first_quote_in(chunk: &[u8]) -> usize {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    for (k, word) in chunk.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes")) ^ (LOW * b'"' as u64);
        // The lowest zero byte of `x` (a quote) sets the lowest of these bits.
        let zeros = x.wrapping_sub(LOW) & !x & HIGH;
        if zeros != 0 {
            return k * 8 + zeros.trailing_zeros() as usize / 8;
        }
    }
    chunk.len()
}

type CsvReader = csv::Reader<QuoteTracker<BomStripped<Box<dyn Read + Send>>>>;

/// The error for a quoted field that opened in the record just read (of `fields` fields, its
/// last the open one) and never closed, if so.
fn unclosed_quote(
    rdr: &CsvReader,
    source: &str,
    headers: &[String],
    row: u64,
    fields: usize,
) -> Option<Error> {
    let q = rdr.get_ref().unclosed()?;
    // Records end in order; the first whose end lies past the quote holds it.
    if rdr.position().byte() <= q.byte {
        return None;
    }
    let mut loc = Location::new(source).line(q.line);
    if row > 0 {
        loc = loc.row(row);
    }
    // The open field runs to the end of the input, so it is the record's last.
    if let Some(last) = fields.checked_sub(1) {
        let name = match headers.get(last) {
            Some(h) if row > 0 => h.clone(),
            _ => format!("#{}", last + 1),
        };
        loc = loc.field(name);
    }
    Some(Error::input(
        loc,
        "a quoted field opened here is never closed (a `\"` is missing, or a quote inside a \
         field is not doubled as `\"\"`)",
    ))
}

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
    input: BomStripped<Box<dyn Read + Send>>,
    source: String,
    spec: &ReadSpec,
) -> Result<Records> {
    let mut rdr: CsvReader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .buffer_capacity(1 << 16)
        .from_reader(QuoteTracker::new(input));
    let headers: Vec<String> = match rdr.headers() {
        Ok(h) => h.iter().map(|s| s.to_string()).collect(),
        Err(e) => return Err(csv_error(&source, &[], e)),
    };
    if let Some(e) = unclosed_quote(&rdr, &source, &headers, 0, headers.len()) {
        return Err(e);
    }
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        if spec.target == Target::Std {
            return Ok(Box::new(std::iter::empty()));
        }
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
    let spec = spec.clone();
    let mut rec = csv::StringRecord::new();
    let mut row = 0u64;
    Ok(until_error(move || {
        let read = rdr.read_record(&mut rec);
        if let Some(e) = unclosed_quote(&rdr, &source, &headers, row + 1, rec.len()) {
            return Err(e);
        }
        match read {
            Ok(false) => return Ok(None),
            Err(e) => return Err(csv_error(&source, &headers, e)),
            Ok(true) => row += 1,
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let loc = || Location::new(&source).line(line).row(row);
        let t = &rec[text];
        let skip = check_text(t, || loc().field(&plan.text), &spec)?;
        let lab = match label {
            Some(i) => {
                check_label(&rec[i], || loc().field(&label_name))?;
                Some(rec[i].to_string())
            }
            None => None,
        };
        Ok(Some(Record {
            line: Some(line),
            row,
            id: match id {
                Some(i) => RecordId::Text(rec[i].to_string()),
                None => RecordId::Row(row),
            },
            text: if skip.is_some() {
                String::new()
            } else {
                t.to_string()
            },
            label: lab,
            keep: keep
                .iter()
                .map(|(k, i)| (k.clone(), Value::String(rec[*i].to_string())))
                .collect(),
            skip,
        }))
    }))
}

// ------------------------------------------------------------------------------ line-oriented

/// The non-blank lines of a line-oriented input (JSONL, raw lines), numbered.
struct Lines<R> {
    inner: BufReader<R>,
    source: String,
    line: u64,
    row: u64,
    buf: Vec<u8>,
}

/// One non-blank line, without its terminator.
struct Line<'a> {
    text: &'a str,
    line: u64,
    row: u64,
    source: &'a str,
}

impl Line<'_> {
    fn location(&self) -> Location {
        Location::new(self.source).line(self.line).row(self.row)
    }
}

impl<R: Read> Lines<R> {
    fn new(inner: R, source: String) -> Lines<R> {
        Lines {
            inner: BufReader::with_capacity(1 << 16, inner),
            source,
            line: 0,
            row: 0,
            buf: Vec::new(),
        }
    }

    /// The next line that is not blank; `None` at the end of the input.
    fn next(&mut self) -> Result<Option<Line<'_>>> {
        loop {
            self.buf.clear();
            let n = self
                .inner
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Error::io(&self.source, e))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.last() == Some(&b'\n') {
                self.buf.pop();
            }
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            let blank = std::str::from_utf8(&self.buf).is_ok_and(|s| s.trim().is_empty());
            if !blank {
                break;
            }
        }
        self.row += 1;
        let text = std::str::from_utf8(&self.buf).map_err(|e| {
            let col = String::from_utf8_lossy(&self.buf[..e.valid_up_to()])
                .chars()
                .count() as u64
                + 1;
            Error::input(
                Location::new(&self.source).line(self.line).column(col),
                "invalid UTF-8",
            )
        })?;
        Ok(Some(Line {
            text,
            line: self.line,
            row: self.row,
            source: &self.source,
        }))
    }
}

struct JsonlRecords<R> {
    lines: Lines<R>,
    spec: ReadSpec,
    /// The columns, checked against the first record's keys.
    plan: Option<Plan>,
}

/// Decodes a JSON value already known to be well formed; `loc` is called only on an error.
fn decode<T: serde::de::DeserializeOwned>(
    raw: &RawValue,
    loc: impl FnOnce() -> Location,
) -> Result<T> {
    serde_json::from_str(raw.get()).map_err(|e| Error::input(loc(), format!("invalid JSON: {e}")))
}

impl<R: Read> JsonlRecords<R> {
    fn next_record(&mut self) -> Result<Option<Record>> {
        let Some(l) = self.lines.next()? else {
            return Ok(None);
        };
        let (line, row) = (l.line, l.row);
        // Built only for an error: a location copies the source and field names.
        let loc = || l.location();
        let obj = match Members::parse(l.text) {
            Ok(m) => m,
            Err(e) => {
                let invalid = |e: serde_json::Error| {
                    Error::input(
                        loc().column(e.column() as u64),
                        format!("invalid JSON: {e}"),
                    )
                };
                return Err(match serde_json::from_str::<&RawValue>(l.text) {
                    Ok(raw) if e.is_data() => Error::input(
                        loc(),
                        format!(
                            "expected a JSON object, found {}",
                            Kind::of(raw).described()
                        ),
                    ),
                    Ok(_) => invalid(e),
                    Err(e) => invalid(e),
                });
            }
        };
        if self.plan.is_none() {
            let source = format!("{} (line {line})", l.source);
            self.plan = Some(plan(&source, &obj.keys(), &self.spec)?);
        }
        let plan = self.plan.as_ref().expect("planned above");
        let spec = &self.spec;
        let field = |name: &str| -> Result<&RawValue> {
            obj.get(name).ok_or_else(|| {
                Error::input(loc().field(name), "the field is missing from this record")
            })
        };
        let raw = field(&plan.text)?;
        let text_loc = || loc().field(&plan.text);
        let text: String = match Kind::of(raw) {
            Kind::String => decode(raw, text_loc)?,
            other => {
                return Err(Error::input(
                    text_loc(),
                    format!("the text must be a string, found {}", other.described()),
                ))
            }
        };
        let skip = check_text(&text, text_loc, spec)?;
        let label = match &plan.label {
            None => None,
            Some(l) => {
                let raw = field(l)?;
                let l_loc = || loc().field(l);
                let s = match Kind::of(raw) {
                    Kind::String => decode(raw, l_loc)?,
                    Kind::Number => decode::<serde_json::Number>(raw, l_loc)?.to_string(),
                    other => {
                        return Err(Error::input(
                            l_loc(),
                            format!(
                                "the label must be a string or a number, found {}",
                                other.described()
                            ),
                        ))
                    }
                };
                check_label(&s, l_loc)?;
                Some(s)
            }
        };
        // The id is decided per record: a record without one gets its row.
        let id_raw = match &spec.id_col {
            Some(name) => Some((field(name)?, name.as_str())),
            None if plan.text != "id" => obj.get("id").map(|raw| (raw, "id")),
            None => None,
        };
        let id = match id_raw {
            Some((raw, name)) => RecordId::from_json(raw)
                .map_err(|e| Error::input(loc().field(name), format!("invalid JSON: {e}")))?,
            None => RecordId::Row(row),
        };
        let mut keep = Vec::with_capacity(spec.keep.len() + spec.optional.len());
        for k in &spec.keep {
            let v = match obj.get(k) {
                Some(raw) => decode(raw, || loc().field(k))?,
                None => Value::Null,
            };
            keep.push((k.clone(), v));
        }
        for k in spec.optional.iter().filter(|k| !spec.keep.contains(k)) {
            if let Some(raw) = obj.get(k) {
                keep.push((k.clone(), decode(raw, || loc().field(k))?));
            }
        }
        Ok(Some(Record {
            line: Some(line),
            row,
            id,
            text: if skip.is_some() { String::new() } else { text },
            label,
            keep,
            skip,
        }))
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
    let spec = spec.clone();
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
                    let skip = check_text(t, || loc().field(&plan.text), &spec)?;
                    let lab = match (&label, &plan.label) {
                        (Some(ca), Some(name)) => {
                            let v = ca.get(i).unwrap_or("");
                            check_label(v, || loc().field(name))?;
                            Some(v.to_string())
                        }
                        _ => None,
                    };
                    let id = match &plan.id {
                        Some(n) => RecordId::from_value(any_to_json(
                            col(n)?.get(i).map_err(|e| polars_err(&path, e))?,
                        )),
                        None => RecordId::Row(row),
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
                        text: if skip.is_some() {
                            String::new()
                        } else {
                            t.to_string()
                        },
                        label: lab,
                        keep,
                        skip,
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(path: &str) -> ReadSpec {
        ReadSpec::new(Target::Path(path.into()))
    }

    fn read_with(format: Format, bytes: &[u8], spec: &ReadSpec) -> Result<Vec<Record>> {
        let raw: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(bytes.to_vec()));
        from_reader(raw, format, spec.target.name(), spec)?.collect()
    }

    fn read(format: Format, name: &str, bytes: &[u8]) -> Result<Vec<Record>> {
        read_with(format, bytes, &spec(name))
    }

    fn err(format: Format, name: &str, bytes: &[u8]) -> String {
        read(format, name, bytes).unwrap_err().to_string()
    }

    fn texts(recs: &[Record]) -> Vec<&str> {
        recs.iter().map(|r| r.text.as_str()).collect()
    }

    /// Hands out at most one byte per read, like a slow pipe.
    struct Trickle(std::io::Cursor<Vec<u8>>);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn an_unclosed_quote_names_the_line_it_opened_on() {
        let data = b"id,text\n1,\"i lost my card\n2,hello there\n3,where is my order\n";
        assert_eq!(
            err(Format::Csv, "u.csv", data),
            "u.csv: line 2, row 1, field `text`: a quoted field opened here is never closed \
             (a `\"` is missing, or a quote inside a field is not doubled as `\"\"`)"
        );
        // Records before the broken one come out first; the error ends the stream.
        let data = b"text,id\n\"two\nlines\",1\nok,2\n\"a \"\"quoted\"\" word,3\nok,4\n";
        let out: Vec<Result<Record>> = from_reader(
            Box::new(std::io::Cursor::new(data.to_vec())),
            Format::Csv,
            "q.csv".into(),
            &spec("q.csv"),
        )
        .unwrap()
        .collect();
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].as_ref().unwrap().text, "ok");
        let e = out[2].as_ref().unwrap_err().to_string();
        assert!(
            e.starts_with("q.csv: line 5, row 3, field `text`: a quoted field"),
            "{e}"
        );
        // In the header, the field has no name yet.
        let e = err(Format::Csv, "h.csv", b"id,\"text\n1,hi\n");
        assert!(
            e.starts_with("h.csv: line 1, field `#2`: a quoted field"),
            "{e}"
        );
        // A quote inside an unquoted field is a plain character; a closed quote at EOF is fine.
        let recs = read(Format::Csv, "ok.csv", b"id,text\n1,say \"hi\"\n2,\"x\"").unwrap();
        assert_eq!(texts(&recs), ["say \"hi\"", "x"]);
        // More fields than the header: the open quote is still the cause named.
        let e = err(Format::Csv, "w.csv", b"id,text,label\n1,a,b\n2,\"oops,c\n");
        assert!(
            e.contains("w.csv: line 3, row 2, field `text`: a quoted field"),
            "{e}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_dropped_in_every_format() {
        let recs = read(Format::Lines, "-", "\u{feff}my card\n".as_bytes()).unwrap();
        assert_eq!(texts(&recs), ["my card"]);
        let recs = read(Format::Jsonl, "-", "\u{feff}{\"text\":\"a\"}\n".as_bytes()).unwrap();
        assert_eq!(texts(&recs), ["a"]);
        let recs = read(
            Format::Csv,
            "b.csv",
            "\u{feff}\"id\",text\nx,a\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(recs[0].id, RecordId::Text("x".into()));
        // Split over several reads, and only at the start.
        let mut r = BomStripped::new(Trickle(std::io::Cursor::new(
            "\u{feff}a\u{feff}".as_bytes().to_vec(),
        )));
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "a\u{feff}");
        let mut r = BomStripped::new(Trickle(std::io::Cursor::new(vec![0xEF, 0xBB])));
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        assert_eq!(v, [0xEF, 0xBB]);
    }

    /// Panics on a second read: the first line must not wait for more input.
    struct OneRead(Option<Vec<u8>>);
    impl Read for OneRead {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let data = self.0.take().expect("read again before answering");
            buf[..data.len()].copy_from_slice(&data);
            Ok(data.len())
        }
    }

    #[test]
    fn looking_for_a_byte_order_mark_does_not_wait_for_more_input() {
        let mut r = BomStripped::new(OneRead(Some(b"a\n".to_vec())));
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"a\n");
    }

    #[test]
    fn json_ids_come_out_as_written() {
        let data = b"{\"id\": 1e3, \"text\": \"a\"}\n{\"id\": -0, \"text\": \"b\"}\n\
            {\"id\": 18446744073709551617, \"text\": \"c\"}\n{\"id\": \"x\\u00e9\", \"text\": \"d\"}\n\
            {\"id\": null, \"text\": \"e\"}\n{\"id\": [1], \"text\": \"f\"}\n";
        let recs = read(Format::Jsonl, "ids.jsonl", data).unwrap();
        let shown: Vec<String> = recs.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(
            shown,
            ["1e3", "-0", "18446744073709551617", "xé", "null", "[1]"]
        );
        let json: Vec<String> = recs
            .iter()
            .map(|r| serde_json::to_string(&r.id).unwrap())
            .collect();
        assert_eq!(
            json,
            ["1e3", "-0", "18446744073709551617", "\"xé\"", "null", "[1]"]
        );
        assert!(matches!(recs[0].id, RecordId::Number(_)));
    }

    #[test]
    fn json_ids_are_decided_per_record() {
        let data = b"{\"text\": \"a\"}\n{\"id\": \"x\", \"text\": \"b\"}\n{\"text\": \"c\"}\n";
        let recs = read(Format::Jsonl, "p.jsonl", data).unwrap();
        let ids: Vec<String> = recs.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(ids, ["1", "x", "3"]);
        assert_eq!(recs[0].id, RecordId::Row(1));

        let mut s = spec("t.jsonl");
        s.id_col = Some("ticket".into());
        let data = b"{\"ticket\": 7, \"text\": \"a\"}\n\n{\"text\": \"b\"}\n";
        let e = read_with(Format::Jsonl, data, &s).unwrap_err().to_string();
        assert_eq!(
            e,
            "t.jsonl: line 3, row 2, field `ticket`: the field is missing from this record"
        );
        // `--text-col id` leaves the id to the row.
        let mut s = spec("i.jsonl");
        s.text_col = "id".into();
        let recs = read_with(Format::Jsonl, b"{\"id\": \"hello\"}\n", &s).unwrap();
        assert_eq!(recs[0].id, RecordId::Row(1));
    }

    #[test]
    fn optional_columns_are_read_per_record() {
        let mut s = spec("o.jsonl");
        s.optional = vec!["customer_tier".into()];
        let data = b"{\"text\": \"a\"}\n{\"text\": \"b\", \"customer_tier\": \"premium\"}\n";
        let recs = read_with(Format::Jsonl, data, &s).unwrap();
        assert!(recs[0].keep.is_empty());
        assert_eq!(
            recs[1].keep,
            [("customer_tier".to_string(), Value::from("premium"))]
        );
    }

    #[test]
    fn blank_lines_are_skipped_in_jsonl_and_raw_lines_alike() {
        let recs = read(Format::Lines, "-", b"a\n\n  \r\n\t\nb\r\n").unwrap();
        assert_eq!(texts(&recs), ["a", "b"]);
        assert_eq!((recs[1].line, recs[1].row), (Some(5), 2));
        assert_eq!(recs[1].id, RecordId::Row(2));
        let recs = read(
            Format::Jsonl,
            "-",
            b"\n{\"text\":\"a\"}\n \n{\"text\":\"b\"}",
        )
        .unwrap();
        assert_eq!(texts(&recs), ["a", "b"]);
        assert_eq!((recs[1].line, recs[1].row), (Some(4), 2));
    }

    #[test]
    fn empty_texts_are_marked_skipped_when_asked() {
        let csv = b"id,text,label\n1,hi,a\n2,  ,a\n";
        let e = err(Format::Csv, "s.csv", csv);
        assert!(
            e.contains("s.csv: line 3, row 2, field `text`: the text is empty"),
            "{e}"
        );
        let mut s = spec("s.csv");
        s.skip_bad_text = true;
        let recs = read_with(Format::Csv, csv, &s).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].skip.as_deref(), Some("the text is empty"));
        assert_eq!((recs[1].text.as_str(), recs[0].skip.as_deref()), ("", None));
        let recs = read_with(Format::Jsonl, b"{\"text\":\" \"}\n{\"text\":\"x\"}\n", &s).unwrap();
        assert_eq!(recs[0].skip.as_deref(), Some("the text is empty"));
        // Labels stay checked.
        s.need_label = true;
        let e = read_with(Format::Csv, b"text,label\n ,\n", &s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `label`: the label is empty"), "{e}");
    }

    #[test]
    fn no_records_is_an_error_only_where_data_is_needed() {
        let stdin = ReadSpec::new(Target::Std);
        assert!(read_with(Format::Csv, b"", &stdin).unwrap().is_empty());
        assert!(read_with(Format::Jsonl, b"", &stdin).unwrap().is_empty());
        assert!(read(Format::Jsonl, "e.jsonl", b"\n \n").unwrap().is_empty());
        assert!(read(Format::Csv, "h.csv", b"id,text\n").unwrap().is_empty());
        let e = err(Format::Csv, "z.csv", b"");
        assert_eq!(
            e,
            "z.csv: no records: the file is empty (not even a header line)"
        );

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.csv");
        std::fs::write(&p, b"text,label\n").unwrap();
        let mut s = ReadSpec::new(Target::Path(p.clone()));
        s.need_label = true;
        assert!(open(&s).unwrap().next().is_none());
        let e = read_all(&s).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("{}: no records: the input holds no data rows", p.display())
        );
    }

    #[test]
    fn json_errors_name_line_row_and_column() {
        let e = err(
            Format::Jsonl,
            "b.jsonl",
            b"{\"text\":\"a\"}\n\n{\"text\": oops}\n",
        );
        assert!(
            e.starts_with("b.jsonl: line 3, row 2, column 10: invalid JSON"),
            "{e}"
        );
        let e = err(Format::Jsonl, "b.jsonl", b"[1, 2]\n");
        assert_eq!(
            e,
            "b.jsonl: line 1, row 1: expected a JSON object, found an array"
        );
        let e = err(Format::Jsonl, "b.jsonl", b"[1, 2\n");
        assert!(
            e.starts_with("b.jsonl: line 1, row 1, column") && e.contains("invalid JSON"),
            "{e}"
        );
        let e = err(Format::Jsonl, "b.jsonl", b"{\"text\": [\"a\"]}\n");
        assert!(
            e.ends_with("field `text`: the text must be a string, found an array"),
            "{e}"
        );
        let e = err(
            Format::Jsonl,
            "b.jsonl",
            b"{\"text\":\"ok\"}\n{\"text\":\"caf\xff\"}\n",
        );
        assert_eq!(e, "b.jsonl: line 2, column 13: invalid UTF-8");
    }

    #[test]
    fn a_malformed_csv_row_is_named_by_its_first_line() {
        let data = b"id,text\n1,\"two\nlines\"\n2,\"three\r\nmore\r\nlines\"\n3,too,many\n";
        let e = err(Format::Csv, "m.csv", data);
        assert!(
            e.starts_with("m.csv: line 7, row 3: malformed row: 3 fields where the header has 2"),
            "{e}"
        );
    }

    /// Texts that CSV and JSON must both quote or escape.
    fn awkward_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("\"".to_string()),
                Just(",".to_string()),
                Just("\n".to_string()),
                Just("\r\n".to_string()),
                Just(" ".to_string()),
                Just("é".to_string()),
                Just("😀".to_string()),
                "[a-z]{1,4}",
                any::<char>().prop_map(String::from),
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
    }

    /// csv-core's states, byte by byte: whether the input ends inside a quoted field, and the
    /// line of that field's quote.
    fn reference_open_quote(bytes: &[u8]) -> Option<u64> {
        #[derive(PartialEq)]
        enum S {
            FieldStart,
            InField,
            InQuoted,
            QuoteInQuoted,
        }
        let (mut s, mut line, mut open) = (S::FieldStart, 1, 0);
        for &b in bytes {
            s = match (s, b) {
                (S::FieldStart, b'"') => {
                    open = line;
                    S::InQuoted
                }
                (S::InQuoted, b'"') => S::QuoteInQuoted,
                (S::InQuoted, _) => S::InQuoted,
                (S::QuoteInQuoted, b'"') => S::InQuoted,
                (_, b',' | b'\n' | b'\r') => S::FieldStart,
                _ => S::InField,
            };
            line += u64::from(b == b'\n');
        }
        (s == S::InQuoted).then_some(open)
    }

    proptest! {
        #[test]
        fn the_quote_tracker_agrees_with_the_csv_parser(
            bytes in proptest::collection::vec(
                prop_oneof![
                    8 => Just(b'a'),
                    1 => Just(b','),
                    2 => Just(b'"'),
                    1 => Just(b'\n'),
                    1 => Just(b'\r'),
                ],
                0..400,
            ),
            split in proptest::collection::vec(1usize..80, 1..40),
        ) {
            let mut t = QuoteTracker::new(());
            let mut rest = &bytes[..];
            for n in split.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*n).min(rest.len()));
                t.track(chunk);
                rest = tail;
            }
            t.eof = true;
            prop_assert_eq!(t.unclosed().map(|q| q.line), reference_open_quote(&bytes));
        }

        #[test]
        fn find_quote_finds_the_first_quote(
            bytes in proptest::collection::vec(prop_oneof![30 => Just(b'a'), 1 => Just(b'"')], 0..150),
        ) {
            let want = bytes.iter().position(|&b| b == b'"').unwrap_or(bytes.len());
            prop_assert_eq!(find_quote(&bytes), want);
        }

        #[test]
        fn csv_written_by_the_csv_crate_reads_back_identical(
            texts in proptest::collection::vec(awkward_text(), 0..20),
            crlf in any::<bool>(),
        ) {
            let mut w = csv::WriterBuilder::new()
                .terminator(if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
                .from_writer(Vec::new());
            w.write_record(["id", "text"]).unwrap();
            for (i, t) in texts.iter().enumerate() {
                w.write_record([i.to_string().as_str(), t]).unwrap();
            }
            let bytes = w.into_inner().unwrap();
            let mut s = spec("p.csv");
            s.skip_bad_text = true;
            let recs = read_with(Format::Csv, &bytes, &s).unwrap();
            prop_assert_eq!(recs.len(), texts.len());
            for (i, (r, t)) in recs.iter().zip(&texts).enumerate() {
                prop_assert_eq!(&r.id, &RecordId::Text(i.to_string()));
                prop_assert_eq!(r.row, i as u64 + 1);
                if t.trim().is_empty() {
                    prop_assert_eq!(r.skip.as_deref(), Some("the text is empty"));
                } else {
                    prop_assert_eq!(&r.text, t);
                }
            }
        }

        #[test]
        fn json_lines_read_back_identical(
            texts in proptest::collection::vec(any::<String>(), 0..20),
            blanks in proptest::collection::vec(0usize..3, 20),
        ) {
            let mut data = String::new();
            let mut lines = Vec::new();
            for (i, t) in texts.iter().enumerate() {
                data.push_str(&"  \n".repeat(blanks[i]));
                data.push_str(&serde_json::json!({"text": t, "n": i}).to_string());
                data.push('\n');
                lines.push(data.lines().count() as u64);
            }
            let mut s = spec("p.jsonl");
            s.skip_bad_text = true;
            s.keep = vec!["n".into()];
            let recs = read_with(Format::Jsonl, data.as_bytes(), &s).unwrap();
            prop_assert_eq!(recs.len(), texts.len());
            for (i, (r, t)) in recs.iter().zip(&texts).enumerate() {
                prop_assert_eq!(r.line, Some(lines[i]));
                prop_assert_eq!(&r.keep[0].1, &Value::from(i));
                if t.trim().is_empty() {
                    prop_assert!(r.skip.is_some());
                } else {
                    prop_assert_eq!(&r.text, t);
                }
            }
        }

        #[test]
        fn a_bad_json_record_is_named_by_its_line(
            good in 0usize..30,
            blanks in proptest::collection::vec(any::<bool>(), 30),
        ) {
            let mut data = String::new();
            for b in blanks.iter().take(good) {
                if *b {
                    data.push('\n');
                }
                data.push_str("{\"text\": \"fine\"}\n");
            }
            let line = data.lines().count() + 1;
            data.push_str("{\"text\": \"unterminated}\n{\"text\": \"after\"}\n");
            let e = err(Format::Jsonl, "n.jsonl", data.as_bytes());
            let want = format!("n.jsonl: line {line}, row {}, column", good + 1);
            prop_assert!(e.starts_with(&want), "{}", e);
        }

        #[test]
        fn a_malformed_csv_row_after_multiline_fields_is_named_by_its_line(
            spans in proptest::collection::vec(1usize..4, 0..10),
        ) {
            let mut data = String::from("id,text\n");
            let mut line = 2;
            for (i, n) in spans.iter().enumerate() {
                data.push_str(&format!("{i},\"{}\"\n", vec!["x"; *n].join("\n")));
                line += n;
            }
            data.push_str("9,one,too many\n");
            let e = err(Format::Csv, "r.csv", data.as_bytes());
            let want = format!("r.csv: line {line}, row {}: malformed row", spans.len() + 1);
            prop_assert!(e.starts_with(&want), "{}", e);
        }
    }
}
