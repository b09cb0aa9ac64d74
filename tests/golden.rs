//! The output contract: `classify` on the sample data gives exactly the records recorded in
//! tests/fixtures/golden/ (made by cqr before the query pipeline moved into the library, and
//! remade when the abstain rule came: its abstentions and `uncertainty.novelty` were the only
//! differences; and when a bracketed phone number like `(555) 013-2447` became PII: two records
//! gained a PHONE span, the model trained on the newly masked text moved confidences by at most
//! 0.0074 and one record's abstention), and an
//! output option (`--mask-style`) never changes an answer.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{cqr_in, jsonl, root, run_ok, tickets, tickets_test, train_linear, without_model};
use serde_json::Value;

/// The linear model (seed 42) the golden records were made with, trained once for these tests.
fn linear_42() -> &'static Path {
    static MODEL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &MODEL.get_or_init(|| train_linear(42)).1
}

#[test]
fn classify_output_on_the_sample_data_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let model = linear_42();
    let out = run_ok(
        cqr_in(dir.path())
            .arg("classify")
            .arg(model)
            .arg(tickets_test())
            .args(["--keep", "customer_tier,channel"]),
    );
    let got = without_model(&jsonl(&out.stdout));
    let golden_path = root().join("tests/fixtures/golden/tickets_test.linear.jsonl");
    let want = jsonl(&std::fs::read(&golden_path).unwrap());
    assert_eq!(got.len(), want.len(), "rows in = rows out");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g,
            w,
            "record {} differs from {}",
            i + 1,
            golden_path.display()
        );
    }
    // Field order is part of the contract too (CSV and Parquet columns follow it).
    let line = String::from_utf8_lossy(&out.stdout);
    let first: Vec<&str> = line.lines().next().unwrap().split("\":").take(4).collect();
    assert!(first[0].starts_with("{\"id"), "{first:?}");
}

/// Cards and IBANs that the partial style shows in part (`[CARD ****1111]`) while the model was
/// trained on `[CARD]`.
const CARD_QUERIES: &str = r#"{"id": 1, "text": "someone used my card 4111 1111 1111 1111 without asking, block it"}
{"id": 2, "text": "please refund the charge on 5500-0000-0000-0004, it was a double charge"}
{"id": 3, "text": "transfer to GB82 WEST 1234 5698 7654 32 never arrived"}
{"id": 4, "text": "my card 378282246310005 was declined at the shop and I was charged twice"}
"#;

#[test]
fn the_mask_style_changes_what_is_written_never_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let model = linear_42();
    let input = dir.path().join("cards.jsonl");
    std::fs::write(&input, CARD_QUERIES).unwrap();
    let audit = |style: &str| dir.path().join(format!("audit-{style}.jsonl"));
    let run = |style: &str| {
        let mut c = cqr_in(dir.path());
        c.arg("classify")
            .arg(model)
            .arg(&input)
            .arg("--keep")
            .arg("text");
        if style == "none" {
            c.arg("--no-mask");
        } else {
            c.args(["--mask-style", style]);
        }
        let out = run_ok(c.arg("--audit-log").arg(audit(style)));
        jsonl(&out.stdout)
    };
    let (full, partial, none) = (run("full"), run("partial"), run("none"));
    assert_eq!(full.len(), 4);
    for (f, p) in full.iter().zip(&partial).chain(full.iter().zip(&none)) {
        for field in [
            "intent",
            "confidence",
            "top_k",
            "uncertainty",
            "sentiment",
            "priority",
            "pii",
        ] {
            assert_eq!(f[field], p[field], "{field} of record {}", f["id"]);
        }
    }
    let texts = |recs: &[Value]| -> Vec<String> {
        recs.iter()
            .map(|r| r["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(texts(&full)[0].contains("[CARD]"), "{:?}", texts(&full));
    assert!(
        texts(&partial)[0].contains("[CARD ****1111]"),
        "{:?}",
        texts(&partial)
    );
    let audit_text = std::fs::read_to_string(audit("partial")).unwrap();
    assert!(audit_text.contains("****1111"), "{audit_text}");
    assert!(!audit_text.contains("4111 1111"), "{audit_text}");
    let manifest = std::fs::read_to_string(model.join("manifest.json")).unwrap();
    assert!(
        manifest.contains("\"masking\": \"full\""),
        "the scheme is recorded"
    );
}

#[test]
fn a_model_trained_without_masking_records_it_and_is_scored_unmasked() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("raw");
    run_ok(
        cqr_in(dir.path())
            .args([
                "train",
                "--components",
                "linear",
                "--seed",
                "1",
                "--no-mask",
                "-o",
            ])
            .arg(&model)
            .arg(tickets()),
    );
    let manifest = std::fs::read_to_string(model.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"masking\": \"off\""), "{manifest}");
    let input = dir.path().join("cards.jsonl");
    std::fs::write(&input, CARD_QUERIES).unwrap();
    let answers = |style: &str| {
        let out = run_ok(
            cqr_in(dir.path())
                .arg("classify")
                .arg(&model)
                .arg(&input)
                .args(["--fields", "intent", "--mask-style", style]),
        );
        jsonl(&out.stdout)
    };
    assert_eq!(
        without_model(&answers("full")),
        without_model(&answers("partial"))
    );
}
