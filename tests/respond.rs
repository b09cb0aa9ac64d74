//! `cqr respond` and `cqr customers` as a user runs them: playbook checks, slots filled from the
//! ticket and the customer's history, every hand-off reason, retrieval of a planted similar
//! ticket, the LLM rewrite against a real OpenAI-format HTTP server started here (a good answer
//! is used; a timeout, a 500, malformed JSON, a PII leak, an invented amount and an unknown
//! action each keep the draft with the right reason), the whole sample data with no PII in any
//! output, and customer summaries of the sample history.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{cqr_in, jsonl, linear_model, root, run_err, run_ok, tickets_test};
use serde_json::{json, Value};

fn history() -> PathBuf {
    root().join("data/history.csv")
}

/// Writes `rows` (JSON objects) as JSONL at `dir/name`.
fn write_jsonl(dir: &Path, name: &str, rows: &[Value]) -> PathBuf {
    let p = dir.join(name);
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&p, text).unwrap();
    p
}

/// `cqr respond` with the sample linear model on `queries`, extra arguments appended.
fn respond(work: &Path, queries: &Path, extra: &[&str]) -> Vec<Value> {
    let out = run_ok(
        cqr_in(work)
            .arg("respond")
            .arg(linear_model())
            .arg(queries)
            .args(extra),
    );
    jsonl(&out.stdout)
}

fn reasons(r: &Value) -> Vec<String> {
    r["handoff"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["reason"].as_str().unwrap().to_string())
        .collect()
}

fn slot<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    r["grounding"]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slot"] == name)
}

#[test]
fn check_playbook_accepts_the_sample_and_names_file_intent_and_slot_of_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        cqr_in(dir.path())
            .args(["respond", "--check-playbook"])
            .arg(linear_model()),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("ok (16 intents") && text.contains("covers all 16"),
        "{text}"
    );

    let sample = std::fs::read_to_string(root().join("data/playbook.toml")).unwrap();
    let bad = dir.path().join("bad.toml");
    let check = |text: &str| {
        std::fs::write(&bad, text).unwrap();
        run_err(
            cqr_in(dir.path())
                .args(["respond", "--check-playbook", "--playbook"])
                .arg(&bad),
        )
    };
    let e = check(&sample.replacen("{{ order }}", "{{ order_number }}", 1));
    assert!(
        e.contains("bad.toml")
            && e.contains("unknown slot `order_number`")
            && e.contains("intents."),
        "{e}"
    );
    let e = check(&sample.replacen("{{ order }}", "{{ order ", 1));
    assert!(
        e.contains("bad.toml: line") && e.contains("syntax error"),
        "{e}"
    );
    // An intent the model does not know.
    std::fs::write(
        &bad,
        sample
            .replace("[intents.refund_request]", "[intents.refund_requests]")
            .replace(
                "[intents.refund_request.ask_for]",
                "[intents.refund_requests.ask_for]",
            ),
    )
    .unwrap();
    let e = run_err(
        cqr_in(dir.path())
            .args(["respond", "--check-playbook", "--playbook"])
            .arg(&bad)
            .arg(linear_model()),
    );
    assert!(
        e.contains("bad.toml") && e.contains("does not know the intent `refund_requests`"),
        "{e}"
    );
}

#[test]
fn slots_come_from_the_ticket_and_the_history_and_each_handoff_reason_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let hist = dir.path().join("history.csv");
    std::fs::write(
        &hist,
        "id,customer_id,created_at,text,intent,status,name,customer_tier,reply\n\
         H1,C9,2026-09-01T08:00:00Z,Where is my refund for order #B55555?,refund_request,open,Ada Lovelace,premium,\n\
         H2,C9,2026-08-20T08:00:00Z,Why was I charged a fee on my invoice?,billing_question,pending,Ada Lovelace,premium,\n\
         H3,C9,2026-09-05T08:00:00Z,Later contact that must not count,refund_request,open,Ada Lovelace,premium,\n",
    )
    .unwrap();
    let queries = write_jsonl(
        dir.path(),
        "q.jsonl",
        &[
            json!({"id": "slots", "customer_id": "C9", "created_at": "2026-09-01T13:00:00Z",
                   "text": "I still have not got my refund for order #A12345, it was $104.00"}),
            json!({"id": "answered", "customer_id": "C1", "customer_tier": "standard",
                   "text": "Please could you send me a password reset link"}),
            json!({"id": "missing", "text": "I would like a refund please"}),
            json!({"id": "playbook", "text": "Your customer service agent was rude to me on the phone."}),
            json!({"id": "abstain", "text": "what's the weather like in Paris tomorrow?"}),
            json!({"id": "urgent", "customer_tier": "premium",
                   "text": "URGENT!!! This is the THIRD time: someone used my card without permission, \
                            fix it NOW or I'm going to my lawyer"}),
        ],
    );
    let recs = respond(dir.path(), &queries, &["--history", hist.to_str().unwrap()]);
    assert_eq!(recs.len(), 6, "one record out per record in");

    let r = &recs[0];
    assert_eq!(r["intent"], "refund_request", "{r}");
    assert_eq!(slot(r, "first_name").unwrap()["value"], "Ada");
    assert_eq!(slot(r, "first_name").unwrap()["source"], "history");
    assert_eq!(slot(r, "tier").unwrap()["value"], "premium");
    assert_eq!(
        slot(r, "tier").unwrap()["source"],
        "history",
        "the query has no tier"
    );
    assert_eq!(slot(r, "order").unwrap()["value"], "#A12345");
    assert_eq!(slot(r, "order").unwrap()["source"], "text");
    assert_eq!(slot(r, "amount").unwrap()["value"], "$104.00");
    assert_eq!(
        slot(r, "repeat_contacts").unwrap()["value"],
        1,
        "H1, not the later H3"
    );
    assert_eq!(
        slot(r, "open_issues").unwrap()["value"],
        json!(["billing question opened 2026-08-20"])
    );
    let reply = r["reply"].as_str().unwrap();
    assert!(
        reply.starts_with("Hi Ada,") && reply.contains("#A12345"),
        "{reply}"
    );
    assert!(
        reply.contains("billing question"),
        "the open issue is acknowledged: {reply}"
    );
    assert!(
        r["priority"]["reasons"].to_string().contains("repeat"),
        "priority counts the history's earlier contact: {}",
        r["priority"]
    );

    let r = &recs[1];
    assert_eq!(r["intent"], "password_reset", "{r}");
    assert_eq!(r["handoff"]["required"], false, "{r}");
    assert!(
        r["reply"].as_str().unwrap().starts_with("Hello,"),
        "no name known"
    );
    assert!(!r["suggested_actions"].as_array().unwrap().is_empty());

    let r = &recs[2];
    assert_eq!(r["intent"], "refund_request", "{r}");
    assert!(
        reasons(r).contains(&"missing_information".to_string()),
        "{r}"
    );
    assert!(
        r["reply"].as_str().unwrap().contains("order number"),
        "the draft asks for it"
    );

    let r = &recs[3];
    assert_eq!(r["intent"], "complaint", "{r}");
    assert!(reasons(r).contains(&"playbook".to_string()), "{r}");

    let r = &recs[4];
    assert_eq!(r["abstained"], true, "{r}");
    assert_eq!(reasons(r)[0], "abstained");
    assert_eq!(r["grounding"]["playbook"], "fallback");
    assert!(r["suggested_actions"].as_array().unwrap().is_empty());

    let r = &recs[5];
    let rs = reasons(r);
    assert!(
        rs.contains(&"priority".to_string()) && rs.contains(&"escalation".to_string()),
        "{rs:?} {}",
        r["priority"]
    );

    // An intent the playbook lacks gets the fallback and a hand-off.
    let sample = std::fs::read_to_string(root().join("data/playbook.toml")).unwrap();
    let start = sample.find("[intents.password_reset]").unwrap();
    let end = sample[start + 1..].find("\n[intents.").unwrap() + start + 1;
    let pb = dir.path().join("pb.toml");
    std::fs::write(&pb, format!("{}{}", &sample[..start], &sample[end..])).unwrap();
    let recs = respond(dir.path(), &queries, &["--playbook", pb.to_str().unwrap()]);
    assert_eq!(reasons(&recs[1]), ["no_playbook_entry"]);
    assert_eq!(recs[1]["grounding"]["playbook"], "fallback");
}

#[test]
fn retrieval_finds_the_planted_similar_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let hist = dir.path().join("history.jsonl");
    let mut rows = vec![
        json!({"id": "PLANTED", "customer_id": "C2", "created_at": "2026-08-01T10:00:00Z",
        "text": "my refund for the cracked blue enamel kettle never arrived", "intent": "refund_request",
        "status": "resolved", "reply": "The refund has been issued."}),
    ];
    for (i, t) in [
        "refund for my shoes please",
        "I want my money back for the lamp",
        "how long does a refund take",
        "refund status for my order",
    ]
    .iter()
    .enumerate()
    {
        rows.push(json!({"id": format!("H{i}"), "customer_id": "C3",
            "created_at": "2026-08-02T10:00:00Z", "text": t, "intent": "refund_request",
            "status": "resolved", "reply": "Done."}));
    }
    rows.push(
        json!({"id": "OTHER", "customer_id": "C3", "created_at": "2026-08-03T10:00:00Z",
        "text": "the cracked blue enamel kettle refund never arrived", "intent": "damaged_item",
        "status": "resolved", "reply": "Done."}),
    );
    let hist = write_jsonl(
        dir.path(),
        hist.file_name().unwrap().to_str().unwrap(),
        &rows,
    );
    let q = write_jsonl(
        dir.path(),
        "q.jsonl",
        &[json!({"id": "q", "text": "where is the refund for the cracked blue enamel kettle?"})],
    );
    let recs = respond(dir.path(), &q, &["--history", hist.to_str().unwrap()]);
    let g = &recs[0]["grounding"];
    assert_eq!(recs[0]["intent"], "refund_request");
    assert_eq!(g["retrieval"], "tfidf", "a linear model searches by TF-IDF");
    assert_eq!(g["similar"][0]["id"], "PLANTED", "{g}");
    assert!(g["similar"][0]["similarity"].as_f64().unwrap() > 0.5, "{g}");
    assert!(
        g["similar"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"] != "OTHER"),
        "only the same intent: {g}"
    );
    let e = run_err(
        cqr_in(dir.path())
            .arg("respond")
            .arg(linear_model())
            .arg(&q)
            .args(["--retrieval", "embedding", "--history"])
            .arg(&hist),
    );
    assert!(e.contains("needs a model with an encoder"), "{e}");
}

/// The requests an LLM server received: (authorization header, body).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A small OpenAI-format chat server on 127.0.0.1 answering every request as `mode` says.
/// Returns its URL and the requests it received (authorization header, body).
fn llm_server(mode: &'static str) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut len, mut auth) = (0usize, String::new());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    let lower = l.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if lower.starts_with("authorization:") {
                        auth = l["authorization:".len()..].trim().to_string();
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                log.lock()
                    .unwrap()
                    .push((auth, String::from_utf8(body).unwrap()));
                let answer = |reply: &str, actions: &[&str]| {
                    let content = json!({"reply": reply, "suggested_actions": actions}).to_string();
                    json!({"choices": [{"message": {"role": "assistant", "content": content}}]})
                        .to_string()
                };
                let (status, body) = match mode {
                    "good" => (200, answer("Hello, thank you for your message about order #A12345: we are looking into your refund now.", &["open_refund_case"])),
                    "slow" => {
                        std::thread::sleep(Duration::from_secs(3));
                        (200, answer("Too late.", &[]))
                    }
                    "error" => (500, "{\"error\": \"overloaded\"}".to_string()),
                    "malformed" => (200, "{\"choices\": [".to_string()),
                    "pii" => (200, answer("We will e-mail jane.doe@example.com about order #A12345.", &[])),
                    "amount" => (200, answer("We will refund $250.00 for order #A12345 today.", &[])),
                    "action" => (200, answer("We are on it.", &["issue_voucher"])),
                    _ => unreachable!(),
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body.as_bytes());
            });
        }
    });
    (url, seen)
}

#[test]
fn the_llm_rewrite_is_used_only_when_it_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let q = write_jsonl(
        dir.path(),
        "q.jsonl",
        &[
            json!({"id": "q", "text": "I would like a refund for order #A12345. My email is jane.doe@example.com"}),
            json!({"id": "offtopic", "text": "what's the weather like in Paris tomorrow?"}),
        ],
    );
    let run = |mode: &'static str| {
        let (url, seen) = llm_server(mode);
        let out = run_ok(
            cqr_in(dir.path())
                .env("CQR_LLM_API_KEY", "sk-test-secret")
                .arg("respond")
                .arg(linear_model())
                .arg(&q)
                .args([
                    "--llm-url",
                    &url,
                    "--llm-model",
                    "tiny",
                    "--llm-timeout",
                    "1",
                ]),
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            !stderr.contains("sk-test-secret"),
            "the key is never printed"
        );
        let recs = jsonl(&out.stdout);
        assert_eq!(recs[1]["abstained"], true);
        assert_eq!(
            recs[1].get("llm"),
            None,
            "{mode}: the acknowledgement of a query cqr did not understand is not rewritten"
        );
        let seen = seen.lock().unwrap().clone();
        (recs.into_iter().next().unwrap(), seen)
    };

    let (r, seen) = run("good");
    assert_eq!(r["llm"]["used"], true, "{r}");
    assert_eq!(r["llm"]["model"], "tiny");
    assert!(r["reply"]
        .as_str()
        .unwrap()
        .contains("looking into your refund now"));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "Bearer sk-test-secret");
    let body: Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(body["model"], "tiny");
    let prompt = body["messages"][1]["content"].as_str().unwrap();
    assert!(
        prompt.contains("[EMAIL]") && !prompt.contains("jane.doe"),
        "the prompt is masked"
    );
    assert!(
        prompt.contains("#A12345") && prompt.contains("refund_request"),
        "{prompt}"
    );

    for (mode, why, tries) in [
        ("slow", "timeout", 1),
        ("error", "http error: the endpoint answered 500", 3),
        ("malformed", "malformed response", 1),
        ("pii", "personal data", 1),
        ("amount", "`250.00`", 1),
        ("action", "`issue_voucher`", 1),
    ] {
        let (r, seen) = run(mode);
        assert_eq!(r["llm"]["used"], false, "{mode}: {r}");
        let reason = r["llm"]["rejected_reason"].as_str().unwrap();
        assert!(reason.contains(why), "{mode}: {reason}");
        assert!(
            r["reply"].as_str().unwrap().contains("#A12345")
                && !r["reply"].as_str().unwrap().contains("250"),
            "{mode}: the grounded draft stands: {}",
            r["reply"]
        );
        assert_eq!(seen.len(), tries, "{mode}: retried only on 5xx");
    }
}

#[test]
fn the_sample_tickets_get_drafts_with_no_pii_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let out_csv = dir.path().join("replies.csv");
    let audit = dir.path().join("audit.jsonl");
    let recs = respond(
        dir.path(),
        &tickets_test(),
        &[
            "--history",
            history().to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    run_ok(
        cqr_in(dir.path())
            .arg("respond")
            .arg(linear_model())
            .arg(tickets_test())
            .arg("--history")
            .arg(history())
            .arg("-o")
            .arg(&out_csv),
    );
    let n_in = csv::Reader::from_path(tickets_test())
        .unwrap()
        .records()
        .count();
    assert_eq!(recs.len(), n_in, "rows in = rows out");
    assert_eq!(
        csv::Reader::from_path(&out_csv).unwrap().records().count(),
        n_in
    );
    let handed = recs
        .iter()
        .filter(|r| r["handoff"]["required"] == true)
        .count();
    assert!(
        handed > 0 && handed < n_in,
        "some answered, some handed off: {handed}"
    );
    assert!(
        recs.iter()
            .any(|r| !r["grounding"]["similar"].as_array().unwrap().is_empty()),
        "the sample history grounds drafts"
    );

    // PII as written in the tickets and the history. Numbers and addresses must appear nowhere;
    // names (the detector also flags a few ordinary words as names) nowhere in the record made
    // from their ticket — but for the customer's first name from the history, which the
    // greeting uses on purpose.
    let mut anywhere = Vec::new();
    let mut per_ticket: std::collections::HashMap<String, Vec<String>> = Default::default();
    for file in [tickets_test(), history()] {
        let mut r = csv::Reader::from_path(&file).unwrap();
        let text_col = r
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "text")
            .unwrap();
        for rec in r.records() {
            let rec = rec.unwrap();
            let t = &rec[text_col];
            for f in cqr::text::pii::detect(t) {
                let found = t[f.start..f.end].to_string();
                if f.kind.label() == "PERSON" {
                    per_ticket
                        .entry(rec[0].to_string())
                        .or_default()
                        .push(found);
                } else {
                    anywhere.push(found);
                }
            }
        }
    }
    assert!(
        anywhere.len() > 20,
        "the sample data has PII to hide: {}",
        anywhere.len()
    );
    let audit_lines: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let csv_text = std::fs::read_to_string(&out_csv).unwrap();
    let written = [
        recs.iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        csv_text.clone(),
        audit_lines
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    ];
    for (what, text) in ["jsonl", "csv", "audit"].iter().zip(&written) {
        for s in &anywhere {
            assert!(!text.contains(s.as_str()), "{what} leaks `{s}`");
        }
    }
    let mut csv_rows = csv::Reader::from_reader(csv_text.as_bytes());
    let csv_rows: Vec<String> = csv_rows
        .records()
        .map(|r| r.unwrap().iter().collect::<Vec<_>>().join(","))
        .collect();
    for ((r, a), c) in recs.iter().zip(&audit_lines).zip(&csv_rows) {
        let id = r["id"].as_str().unwrap();
        assert_eq!(a["id"], id);
        let greeted = r["grounding"]["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["slot"] == "first_name")
            .map(|s| s["value"].as_str().unwrap().to_string());
        for name in per_ticket.get(id).into_iter().flatten() {
            if Some(name) == greeted.as_ref() {
                continue;
            }
            for (what, text) in [
                ("jsonl", r.to_string()),
                ("audit", a.to_string()),
                ("csv", c.clone()),
            ] {
                assert!(
                    !text.contains(name.as_str()),
                    "{what} record {id} leaks `{name}`"
                );
            }
        }
    }
}

#[test]
fn customers_summarises_the_sample_history() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(cqr_in(dir.path()).arg("customers").arg(history()));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("most repeat contacts first") && table.contains("top intent"),
        "{table}"
    );

    let out = run_ok(
        cqr_in(dir.path())
            .args(["customers", "--json", "--top", "0"])
            .arg(history()),
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut r = csv::Reader::from_path(history()).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    let mut ids: Vec<&str> = rows.iter().map(|x| &x[1]).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(all["customers"], ids.len());
    assert_eq!(all["contacts"], rows.len());
    let top = all["top"].as_array().unwrap();
    assert_eq!(top.len(), ids.len());
    let repeats: Vec<u64> = top
        .iter()
        .map(|c| c["repeat_contacts"].as_u64().unwrap())
        .collect();
    assert!(
        repeats.windows(2).all(|w| w[0] >= w[1]),
        "most repeats first"
    );

    let id = top[0]["customer_id"].as_str().unwrap();
    let out = run_ok(
        cqr_in(dir.path())
            .args(["customers", "--json", "--customer", id])
            .arg(history()),
    );
    let one: Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = rows.iter().filter(|x| &x[1] == id).count();
    assert_eq!(one["contacts"], count);
    let open = rows
        .iter()
        .filter(|x| &x[1] == id && ["open", "pending", "escalated"].contains(&&x[5]))
        .count();
    assert_eq!(one["open_issues"].as_array().unwrap().len(), open);
    let e = run_err(
        cqr_in(dir.path())
            .args(["customers", "--customer", "NOBODY"])
            .arg(history()),
    );
    assert!(e.contains("no contacts of customer `NOBODY`"), "{e}");
}
