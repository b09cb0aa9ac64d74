//! Integration tests of the readers and writers through the real binary: unclosed CSV quotes,
//! exact ids, ids decided per JSONL record, the output format, CSV and Parquet columns that do
//! not hang on the first record, blank lines and empty inputs.

use std::path::Path;

mod common;

use assert_cmd::Command;
use common::{cqr_in, jsonl, linear_model as model, run_err, run_ok};

/// `cqr classify MODEL DATA --fields sentiment,pii` in a private directory.
fn classify(dir: &Path, data: &str) -> Command {
    let mut c = cqr_in(dir);
    c.arg("classify")
        .arg(model())
        .arg(data)
        .args(["--fields", "sentiment,pii"]);
    c
}

#[test]
fn an_unclosed_quote_fails_and_names_where_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("u.csv"),
        "id,text\n1,\"i lost my card\n2,hello there\n3,where is my order\n",
    )
    .unwrap();
    let out = classify(d, "u.csv").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let e = String::from_utf8(out.stderr).unwrap();
    assert!(
        e.contains(
            "u.csv: line 2, row 1, field `text`: a quoted field opened here is never closed"
        ),
        "{e}"
    );
    let e = run_err(classify(d, "u.csv").args(["-o", "out.jsonl"]));
    assert!(e.contains("u.csv: line 2"), "{e}");
    assert!(!d.join("out.jsonl").exists());
}

const AWKWARD_IDS: [&str; 5] = [
    "1e3",
    "-0",
    "18446744073709551617",
    "18446744073709551618",
    "\"A-1\"",
];

#[test]
fn ids_come_out_exactly_as_they_came_in() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input: String = AWKWARD_IDS
        .iter()
        .map(|id| format!("{{\"id\": {id}, \"text\": \"where is my order\"}}\n"))
        .collect();
    std::fs::write(d.join("ids.jsonl"), &input).unwrap();

    let out = run_ok(&mut classify(d, "ids.jsonl"));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), AWKWARD_IDS.len());
    for (line, id) in lines.iter().zip(AWKWARD_IDS) {
        assert!(line.starts_with(&format!("{{\"id\":{id},")), "{line}");
    }

    run_ok(classify(d, "ids.jsonl").args(["-o", "out.csv"]));
    let csv = std::fs::read_to_string(d.join("out.csv")).unwrap();
    let cells: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        cells,
        [
            "1e3",
            "-0",
            "18446744073709551617",
            "18446744073709551618",
            "A-1"
        ]
    );

    // A CSV id is text, whatever it looks like.
    std::fs::write(d.join("ids.csv"), "id,text\n007,hello\n1e3,hi\n").unwrap();
    let out = run_ok(&mut classify(d, "ids.csv"));
    let recs = jsonl(&out.stdout);
    assert_eq!(recs[0]["id"], "007");
    assert_eq!(recs[1]["id"], "1e3");
}

#[test]
fn jsonl_ids_are_decided_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("mixed.jsonl"),
        "{\"text\": \"my card is lost\"}\n{\"id\": \"T-9\", \"text\": \"refund please\"}\n\
         {\"text\": \"thanks\"}\n",
    )
    .unwrap();
    let recs = jsonl(&run_ok(&mut classify(d, "mixed.jsonl")).stdout);
    let ids: Vec<String> = recs.iter().map(|r| r["id"].to_string()).collect();
    assert_eq!(ids, ["1", "\"T-9\"", "3"]);

    std::fs::write(
        d.join("ticket.jsonl"),
        "{\"ticket\": 5, \"text\": \"my card is lost\"}\n{\"text\": \"refund please\"}\n",
    )
    .unwrap();
    let e = run_err(classify(d, "ticket.jsonl").args(["--id-col", "ticket"]));
    assert!(
        e.contains("ticket.jsonl: line 2, row 2, field `ticket`: the field is missing"),
        "{e}"
    );
}

#[test]
fn the_output_format_comes_from_the_flag_or_the_extension() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("q.jsonl"), "{\"text\": \"where is my order\"}\n").unwrap();
    let e = run_err(classify(d, "q.jsonl").args(["-o", "out.txt"]));
    for part in [
        "-o out.txt",
        "`.txt`",
        ".jsonl",
        ".ndjson",
        ".csv",
        ".parquet",
        "--output-format",
    ] {
        assert!(e.contains(part), "{part} missing from: {e}");
    }
    assert!(!e.contains("--format lines"), "{e}");
    assert!(!d.join("out.txt").exists());

    let e = run_err(classify(d, "q.jsonl").args(["--output-format", "lines"]));
    assert!(
        e.contains("--output-format") && e.contains("'lines'"),
        "{e}"
    );

    run_ok(classify(d, "q.jsonl").args(["-o", "out.txt", "--output-format", "csv"]));
    let csv = std::fs::read_to_string(d.join("out.txt")).unwrap();
    assert!(csv.starts_with("id,sentiment.label,"), "{csv}");
    assert_eq!(csv.lines().count(), 2);
}

#[test]
fn blank_lines_and_byte_order_marks_in_line_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run_ok(
        classify(d, "-")
            .args(["--format", "lines"])
            .write_stdin("\u{feff}mail me at a@b.co\n\n   \nsecond\n"),
    );
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["pii"][0]["start"], 11);
    assert_eq!(recs[1]["id"], 2);
    let out = run_ok(
        classify(d, "-").write_stdin("\u{feff}{\"text\": \"a@b.co\"}\n\n{\"text\": \"hi\"}\n"),
    );
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["pii"][0]["start"], 0);
}

#[test]
fn no_records_fails_training_but_not_classification() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("header.csv"), "id,text,label\n").unwrap();
    std::fs::write(d.join("blank.jsonl"), "\n\n").unwrap();
    std::fs::write(d.join("zero.csv"), "").unwrap();
    for name in ["header.csv", "blank.jsonl"] {
        let e = run_err(cqr_in(d).args(["train", name, "-o", "m"]));
        assert!(e.contains(&format!("{name}: no records")), "{e}");
        let out = run_ok(&mut classify(d, name));
        assert!(out.stdout.is_empty());
    }
    let e = run_err(&mut classify(d, "zero.csv"));
    assert!(
        e.contains("zero.csv: no records: the file is empty (not even a header line)"),
        "{e}"
    );
    for format in ["csv", "jsonl", "lines"] {
        let out = run_ok(classify(d, "-").args(["--format", format]).write_stdin(""));
        assert!(out.stdout.is_empty());
    }
}

/// `cqr classify MODEL q.jsonl -o out` for the queries `texts`, in `dir`.
fn classify_to(dir: &Path, texts: &[&str], out: &str) {
    let input: String = texts
        .iter()
        .map(|t| format!("{{\"text\": {}}}\n", serde_json::Value::from(*t)))
        .collect();
    std::fs::write(dir.join("q.jsonl"), input).unwrap();
    run_ok(
        cqr_in(dir)
            .arg("classify")
            .arg(model())
            .args(["q.jsonl", "-o", out]),
    );
}

/// CSV and Parquet columns come from the output schema, not from the first record: a skipped
/// first record (empty text) does not take the intent columns away from the rest, and a scored
/// first record does not take away the `skipped` column.
#[test]
fn csv_and_parquet_columns_do_not_depend_on_the_first_record() {
    use polars::prelude::{ParquetReader, SerReader};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let empty = "the text is empty";
    for texts in [["", "where is my order"], ["where is my order", "  "]] {
        let skipped_row = texts.iter().position(|t| t.trim().is_empty()).unwrap();
        let scored_row = 1 - skipped_row;

        classify_to(d, &texts, "out.csv");
        let mut r = csv::Reader::from_path(d.join("out.csv")).unwrap();
        let header = r.headers().unwrap().clone();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("no `{name}` column in {header:?}"))
        };
        let (intent, skipped, priority) = (col("intent"), col("skipped"), col("priority.level"));
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert!(
            !rows[scored_row][intent].is_empty(),
            "{:?}",
            rows[scored_row]
        );
        assert!(
            !rows[scored_row][priority].is_empty(),
            "{:?}",
            rows[scored_row]
        );
        assert_eq!(&rows[scored_row][skipped], "");
        assert_eq!(&rows[skipped_row][skipped], empty);
        assert_eq!(&rows[skipped_row][intent], "");

        classify_to(d, &texts, "out.parquet");
        let df = ParquetReader::new(std::fs::File::open(d.join("out.parquet")).unwrap())
            .finish()
            .unwrap();
        let text_col = |name: &str| -> Vec<Option<String>> {
            let c = df.column(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let c = c.str().unwrap_or_else(|e| panic!("{name}: {e}"));
            c.iter().map(|v| v.map(str::to_string)).collect()
        };
        let intents = text_col("intent");
        assert!(intents[scored_row].is_some(), "{intents:?}");
        assert_eq!(intents[skipped_row], None);
        let reasons = text_col("skipped");
        assert_eq!(reasons[skipped_row].as_deref(), Some(empty));
        assert_eq!(reasons[scored_row], None);
        let confidence = df.column("confidence").unwrap();
        assert_eq!(confidence.null_count(), 1, "{confidence:?}");
    }
}
