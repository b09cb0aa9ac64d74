//! Sentiment, priority, PII and the audit trail through the real binary: no PII from the input
//! appears in classify's stdout, the audit log, the bundle or the run store; `--fields` skips
//! work; `--explain` prints the breakdown; repeat contacts come from `--history`; concurrent
//! processes append whole audit lines.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{cqr_in, jsonl, run_ok, tickets, walk};
use serde_json::Value;

/// PII strings planted in the data; none may come out anywhere.
const SECRETS: [&str; 7] = [
    "4539 1488 0343 6467",
    "jane.doe+billing@example.org",
    "+44 20 7946 0958",
    "GB82 WEST 1234 5698 7654 32",
    "078-05-1120",
    "s3cr3tT0ken",
    "13/04/1986",
];

fn pii_rows() -> Vec<(String, &'static str)> {
    vec![
        (
            format!("my card {} was stolen, block it now", SECRETS[0]),
            "card_lost_or_stolen",
        ),
        (
            format!("please send the invoice to {}", SECRETS[1]),
            "billing_question",
        ),
        (
            format!("call me back on {} about the refund", SECRETS[2]),
            "refund_request",
        ),
        (
            format!("refund to my IBAN {} please", SECRETS[3]),
            "refund_request",
        ),
        (
            format!("my SSN is {} and I am locked out", SECRETS[4]),
            "account_locked",
        ),
        (
            format!(
                "login link https://bank.example.com/reset?token={} fails",
                SECRETS[5]
            ),
            "login_problem",
        ),
        (
            format!("date of birth {} for verification", SECRETS[6]),
            "account_locked",
        ),
    ]
}

/// The sample tickets plus rows carrying PII, each repeated so n-grams pass min_df.
fn data_with_pii(dir: &Path) -> PathBuf {
    let path = dir.join("train.csv");
    let mut r = csv::Reader::from_path(tickets()).unwrap();
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["id", "text", "intent", "customer_id", "customer_tier"])
        .unwrap();
    for rec in r.records() {
        let rec = rec.unwrap();
        w.write_record([&rec[0], &rec[1], &rec[2], &rec[3], &rec[4]])
            .unwrap();
    }
    for k in 0..3 {
        for (j, (text, intent)) in pii_rows().iter().enumerate() {
            w.write_record([
                format!("P{k}{j}").as_str(),
                text.as_str(),
                intent,
                "C9",
                "premium",
            ])
            .unwrap();
        }
    }
    w.flush().unwrap();
    path
}

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for s in SECRETS {
        assert!(!text.contains(s), "{what} leaks `{s}`");
        let digits: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        if digits.len() >= 9 {
            assert!(!text.contains(&digits), "{what} leaks `{digits}`");
        }
    }
}

#[test]
fn no_pii_reaches_stdout_audit_bundle_or_run_store() {
    let work = tempfile::tempdir().unwrap();
    let data = data_with_pii(work.path());
    let model = work.path().join("m");
    cqr_in(work.path())
        .args([
            "train",
            data.to_str().unwrap(),
            "-o",
            model.to_str().unwrap(),
        ])
        .args(["--components", "linear"])
        .assert()
        .success();
    let input = work.path().join("in.jsonl");
    let lines: Vec<String> = pii_rows()
        .iter()
        .map(|(t, _)| {
            serde_json::json!({"text": t, "customer_tier": "premium", "note": t}).to_string()
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let audit = work.path().join("audit.jsonl");
    let out = run_ok(
        cqr_in(work.path())
            .args(["classify", model.to_str().unwrap(), input.to_str().unwrap()])
            .args([
                "--keep",
                "note",
                "--explain",
                "--audit-log",
                audit.to_str().unwrap(),
            ]),
    );
    assert_clean("stdout", &out.stdout);
    assert_clean("stderr", &out.stderr);
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), SECRETS.len());
    // Every planted item was found, with a span on the original text.
    let types: Vec<&str> = recs
        .iter()
        .map(|r| r["pii"][0]["type"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(
        types,
        ["CARD", "EMAIL", "PHONE", "IBAN", "SSN", "URL", "DOB"]
    );
    for (r, (text, _)) in recs.iter().zip(pii_rows()) {
        let p = &r["pii"][0];
        let (s, e) = (
            p["start"].as_u64().unwrap() as usize,
            p["end"].as_u64().unwrap() as usize,
        );
        let span: String = text.chars().skip(s).take(e - s).collect();
        assert!(SECRETS.iter().any(|x| span.contains(x)), "span `{span}`");
        assert!(
            r["note"].as_str().unwrap().contains('['),
            "kept columns are masked"
        );
        for g in ["intent", "sentiment", "priority", "pii", "model"] {
            assert!(r.get(g).is_some(), "missing {g} in {r}");
        }
    }
    let audit_bytes = std::fs::read(&audit).unwrap();
    assert_clean("the audit log", &audit_bytes);
    let entries = jsonl(&audit_bytes);
    assert_eq!(entries.len(), SECRETS.len());
    for e in &entries {
        for k in [
            "timestamp",
            "model",
            "input_sha256",
            "text",
            "intent",
            "confidence",
            "priority",
            "escalate",
            "reasons",
        ] {
            assert!(e.get(k).is_some(), "audit entry lacks {k}: {e}");
        }
        assert_eq!(e["input_sha256"].as_str().unwrap().len(), 64);
    }
    for f in walk(&model)
        .into_iter()
        .chain(walk(&work.path().join("runs")))
    {
        assert_clean(&f.display().to_string(), &std::fs::read(&f).unwrap());
    }
}

fn small_model(work: &Path) -> PathBuf {
    let model = work.join("m");
    cqr_in(work)
        .args([
            "train",
            tickets().to_str().unwrap(),
            "-o",
            model.to_str().unwrap(),
        ])
        .args(["--components", "linear"])
        .assert()
        .success();
    model
}

#[test]
fn fields_explain_history_and_concurrent_audit() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // Sentiment alone needs no model at all.
    let out = run_ok(
        cqr_in(w)
            .args(["classify", "no/such/model", "--fields", "sentiment,pii"])
            .write_stdin("{\"text\":\"This is the third time I'm asking, unacceptable!\"}\n"),
    );
    let r = &jsonl(&out.stdout)[0];
    assert_eq!(r["sentiment"]["label"], "negative");
    assert!(r.get("intent").is_none() && r.get("priority").is_none());
    cqr_in(w)
        .args(["classify", "no/such/model", "--fields", "moods"])
        .write_stdin("{\"text\":\"x\"}\n")
        .assert()
        .code(2);

    let model = small_model(w);
    // Two earlier contacts by C1 inside the window make this a repeat contact.
    let history = w.join("history.csv");
    std::fs::write(
        &history,
        "text,customer_id,created_at\nwhere is my parcel,C1,2026-09-01T08:00:00Z\nstill nothing,C1,2026-09-02T08:00:00Z\nold,C1,2026-01-01T08:00:00Z\n",
    )
    .unwrap();
    let input = w.join("q.csv");
    std::fs::write(
        &input,
        "id,text,customer_id,customer_tier,created_at\nq1,My parcel still has not arrived,C1,standard,2026-09-03T08:00:00Z\nq2,My parcel still has not arrived,C2,standard,2026-09-03T08:00:00Z\n",
    )
    .unwrap();
    let out = run_ok(
        cqr_in(w)
            .args(["classify", model.to_str().unwrap(), input.to_str().unwrap()])
            .args(["--history", history.to_str().unwrap(), "--explain"]),
    );
    let recs = jsonl(&out.stdout);
    let factors = |r: &Value| -> Vec<String> {
        r["priority"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["factor"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        factors(&recs[0]).contains(&"repeat_contact".to_string()),
        "{}",
        recs[0]
    );
    assert!(!factors(&recs[1]).contains(&"repeat_contact".to_string()));
    assert!(recs[0]["priority"]["score"].as_f64() > recs[1]["priority"]["score"].as_f64());
    assert!(
        recs[0].get("customer_id").is_none(),
        "context columns are not echoed unless kept"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("q1: P") && stderr.contains("repeat_contact"),
        "{stderr}"
    );

    // Sentiment and the urgency cues read one token stream: to both, "sooo" is the softener
    // "so", so the negation reaches the cue.
    let out = run_ok(
        cqr_in(w)
            .args(["classify", model.to_str().unwrap(), "-"])
            .write_stdin(
                "{\"text\":\"not sooo urgent, how do I change my address?\"}\n\
                 {\"text\":\"sooo urgent, how do I change my address?\"}\n",
            ),
    );
    let recs = jsonl(&out.stdout);
    let urgent = |r: &Value| factors(r).contains(&"urgency_cue".to_string());
    assert!(!urgent(&recs[0]), "{}", recs[0]);
    assert!(urgent(&recs[1]), "{}", recs[1]);

    // A contact at the very same second is a repeat, whether it came earlier in the input (C3)
    // or from the history (C1); a later one in the input is not (C4's first record).
    let same = w.join("same.csv");
    std::fs::write(
        &same,
        "id,text,customer_id,created_at\n\
         s1,My parcel still has not arrived,C3,2026-09-03T08:00:00Z\n\
         s2,My parcel still has not arrived,C3,2026-09-03T08:00:00Z\n\
         s3,My parcel still has not arrived,C1,2026-09-02T08:00:00Z\n\
         s4,My parcel still has not arrived,C4,2026-09-03T08:00:00Z\n\
         s5,My parcel still has not arrived,C4,2026-09-03T07:59:59Z\n",
    )
    .unwrap();
    let out = run_ok(
        cqr_in(w)
            .args(["classify", model.to_str().unwrap(), same.to_str().unwrap()])
            .args(["--history", history.to_str().unwrap()]),
    );
    let repeats: Vec<Option<String>> = jsonl(&out.stdout)
        .iter()
        .map(|r| {
            r["priority"]["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["factor"] == "repeat_contact")
                .map(|x| x["detail"].as_str().unwrap().to_string())
        })
        .collect();
    let earlier = |n: u32| {
        Some(format!(
            "{n} earlier contact{} within 72 h",
            if n == 1 { "" } else { "s" }
        ))
    };
    assert_eq!(
        repeats,
        [None, earlier(1), earlier(2), None, None],
        "{repeats:?}"
    );

    // Bad times in the history name the file, row and field.
    std::fs::write(&history, "text,customer_id,created_at\nx,C1,yesterday\n").unwrap();
    let out = cqr_in(w)
        .args(["classify", model.to_str().unwrap(), input.to_str().unwrap()])
        .args(["--history", history.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("history.csv") && err.contains("created_at"),
        "{err}"
    );

    // Concurrent processes append whole lines.
    let audit = w.join("audit.jsonl");
    let big = w.join("big.jsonl");
    let rows: Vec<String> = (0..400)
        .map(|i| serde_json::json!({"id": i, "text": format!("where is my order number {i}, it is late")}).to_string())
        .collect();
    std::fs::write(&big, rows.join("\n") + "\n").unwrap();
    let bin = assert_cmd::cargo::cargo_bin("cqr");
    let children: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(&bin)
                .current_dir(w)
                .env("CQR_RUNS_DIR", w.join("runs"))
                .args(["classify", model.to_str().unwrap(), big.to_str().unwrap()])
                .args(["--batch-size", "7", "--audit-log", audit.to_str().unwrap()])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let text = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3 * 400);
    for l in lines {
        serde_json::from_str::<Value>(l).expect("a whole JSON line");
    }
}
