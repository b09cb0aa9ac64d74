//! Time per reply of `respond`'s pipeline (run by `scripts/bench_respond.sh`; not a test): loads
//! a model, a customer history and its retrieval index, then answers each query of a file one at
//! a time — as a helpdesk integration or `cqr respond -` on a pipe does — and prints one JSON
//! object: history load and index build times, p50/p95/max per reply, the batch throughput over
//! the whole file, and the share of replies ready to send versus handed to a person, by reason.
//!
//! Usage: respond_latency MODEL QUERIES_CSV HISTORY_CSV --retrieval tfidf|embedding

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use cqr::analysis::priority::PriorityConfig;
use cqr::analysis::Fields;
use cqr::io::read::{read_all, ReadSpec};
use cqr::io::Target;
use cqr::models::Model;
use cqr::pipeline::respond::QueryResponder;
use cqr::pipeline::{ContextColumns, QueryScorer, ScoreOptions};
use cqr::respond::history::History;
use cqr::respond::playbook::Playbook;
use cqr::respond::retrieve::{self, Index, Retrieval};
use cqr::respond::{RespondOptions, Responder};
use cqr::text::pii::MaskStyle;
use serde_json::json;

#[derive(Parser)]
struct Args {
    model: PathBuf,
    queries: PathBuf,
    history: PathBuf,
    #[arg(long, value_enum)]
    retrieval: Retrieval,
}

fn spec(path: &Path, columns: &ContextColumns) -> ReadSpec {
    let mut s = ReadSpec::new(Target::Path(path.to_path_buf()));
    s.optional = vec![
        columns.tier.clone(),
        columns.customer.clone(),
        columns.time.clone(),
    ];
    s
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[i] * 1000.0).round() / 1000.0
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let columns = ContextColumns {
        tier: "customer_tier".into(),
        customer: "customer_id".into(),
        time: "created_at".into(),
    };
    let model = Model::load(&a.model)?;
    let t = Instant::now();
    let history = History::load(spec(&a.history, &columns), &columns)?;
    let load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let rows = retrieve::searchable(&history);
    let index = match a.retrieval {
        Retrieval::Tfidf => Index::tfidf(&history, &rows),
        Retrieval::Embedding => {
            let dim = model
                .embedding_dim()
                .expect("embedding retrieval needs an encoder");
            let e = model
                .embed_cached(&retrieve::texts(&history, &rows), &mut |_| {})?
                .expect("an encoder embeds");
            Index::embedding(&history, &rows, e, dim)
        }
    };
    let index_s = t.elapsed().as_secs_f64();
    let opts = ScoreOptions {
        fields: Fields::default(),
        top_k: 3,
        cascade: false,
        output_mask: Some(MaskStyle::Full),
        keep: Vec::new(),
        columns: columns.clone(),
        audit: false,
        explain: false,
        context: true,
    };
    let history_rows = history.contacts.len();
    let searchable = rows.len();
    let make = |model: Model, history: History, index: Index| -> anyhow::Result<QueryResponder> {
        let scorer = QueryScorer::new(Some(model), opts.clone(), PriorityConfig::default())?;
        let window = scorer.repeat_window_secs();
        let responder = Responder {
            playbook: Playbook::sample(),
            history: Some(history),
            index: Some(index),
            opts: RespondOptions {
                similar: 3,
                min_similarity: 0.3,
                repeat_window: window,
            },
        };
        Ok(QueryResponder::new(scorer, responder, None))
    };
    let mut pipeline = make(model, history, index)?;
    let records = read_all(&spec(&a.queries, &columns))?;
    // One warm-up reply, then each query alone.
    pipeline.respond(vec![records[0].clone()])?;
    let mut times = Vec::with_capacity(records.len());
    let (mut handed, mut with_similar) = (0usize, 0usize);
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &records {
        let t = Instant::now();
        let out = pipeline.respond(vec![r.clone()])?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        let d = out[0]
            .result
            .draft
            .as_ref()
            .expect("every sample query is scored");
        handed += d.handoff.required as usize;
        with_similar += !d.grounding.similar.is_empty() as usize;
        for h in &d.handoff.reasons {
            let name = serde_json::to_value(h.reason)?
                .as_str()
                .unwrap_or("")
                .to_string();
            *reasons.entry(name).or_default() += 1;
        }
    }
    times.sort_by(f64::total_cmp);
    let t = Instant::now();
    for chunk in records.chunks(256) {
        pipeline.respond(chunk.to_vec())?;
    }
    let batch_s = t.elapsed().as_secs_f64();
    let n = records.len();
    println!(
        "{}",
        json!({
            "retrieval": a.retrieval.as_str(),
            "history_rows": history_rows,
            "searchable_rows": searchable,
            "history_load_seconds": (load_s * 1000.0).round() / 1000.0,
            "index_build_seconds": (index_s * 1000.0).round() / 1000.0,
            "queries": n,
            "ms_per_reply": {"p50": percentile(&times, 0.5), "p95": percentile(&times, 0.95),
                             "max": percentile(&times, 1.0)},
            "batch_replies_per_second": (n as f64 / batch_s).round(),
            "ready_to_send_share": ((n - handed) as f64 / n as f64 * 1e4).round() / 1e4,
            "handed_off_share": (handed as f64 / n as f64 * 1e4).round() / 1e4,
            "handoff_reasons": reasons,
            "with_similar_share": (with_similar as f64 / n as f64 * 1e4).round() / 1e4,
        })
    );
    Ok(())
}
