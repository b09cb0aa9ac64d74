//! `cqr respond MODEL [DATA|-]`: arguments → settings → playbook, history and retrieval index →
//! a batch loop over the [`QueryResponder`] → the writer. One output record per input record,
//! as `classify` writes them, with the drafted reply, suggested actions, grounding and hand-off.
//! `--check-playbook` validates the playbook and stops.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use super::classify::{load_scorer, ScoringArgs};
use super::Outcome;
use crate::analysis::Fields;
use crate::error::{Error, Result};
use crate::io::audit::AuditLog;
use crate::io::read::Batcher;
use crate::io::write::RecordWriter;
use crate::io::Target;
use crate::pipeline::record::RespondResult;
use crate::pipeline::respond::{QueryResponder, Responded};
use crate::respond::history::History;
use crate::respond::llm::{LlmClient, LlmSettings};
use crate::respond::playbook::Playbook;
use crate::respond::retrieve::{self, Index, Retrieval};
use crate::respond::{Reason, RespondOptions, Responder};
use crate::settings::defaults::{self, FIRST_BATCH};
use crate::settings::{next_batch_size, ClassifySettings, FileConfig};
use crate::tracking::{refs, TrackingSettings};
use crate::ui;

const MAX_WAIT: Duration = Duration::from_millis(5);

#[derive(Debug, Args)]
pub struct RespondArgs {
    /// Model: a bundle directory, models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/model
    /// (optional with --check-playbook).
    #[arg(required_unless_present = "check_playbook")]
    pub model: Option<String>,
    /// Queries (CSV, JSONL, Parquet, or `-` for stdin: JSONL, or raw lines with --format lines).
    #[arg(default_value = "-")]
    pub data: String,
    /// The reply playbook (TOML: templates, actions, required information and hand-off per
    /// intent) [default: the built-in one for the sample intents, data/playbook.toml].
    #[arg(long, value_name = "FILE")]
    pub playbook: Option<PathBuf>,
    /// Check the playbook (and, with MODEL, its intents against the model's) and exit.
    #[arg(long)]
    pub check_playbook: bool,
    /// How similar resolved tickets are found in the history [default: embedding when the model
    /// has an encoder, else tfidf].
    #[arg(long, value_enum, value_name = "HOW")]
    pub retrieval: Option<Retrieval>,
    /// Similar resolved tickets listed in each draft's grounding.
    #[arg(long, default_value_t = defaults::RESPOND_SIMILAR, value_name = "K")]
    pub similar: usize,
    /// Least cosine similarity for a past ticket to count as similar.
    #[arg(long, default_value_t = defaults::RESPOND_MIN_SIMILARITY, value_name = "S")]
    pub min_similarity: f32,
    /// Rewrite each draft with an LLM: an OpenAI-compatible server (llama.cpp, Ollama, vLLM,
    /// ...); `/v1/chat/completions` is added unless given. The key comes from CQR_LLM_API_KEY.
    #[arg(long, value_name = "URL")]
    pub llm_url: Option<String>,
    /// The model name sent to the LLM server.
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub llm_model: String,
    /// Seconds to wait for one LLM answer before keeping the draft.
    #[arg(long, default_value_t = defaults::LLM_TIMEOUT_SECS, value_name = "SECONDS")]
    pub llm_timeout: f64,
    /// LLM requests in flight at once.
    #[arg(long, default_value_t = defaults::LLM_CONCURRENCY, value_name = "N")]
    pub llm_concurrency: usize,
    /// Longest LLM answer accepted, in characters.
    #[arg(long, default_value_t = defaults::LLM_MAX_CHARS, value_name = "N")]
    pub llm_max_chars: usize,
    #[command(flatten)]
    pub scoring: ScoringArgs,
}

pub fn run(
    args: RespondArgs,
    config: &FileConfig,
    tracking: &TrackingSettings,
) -> anyhow::Result<Outcome> {
    let playbook = match &args.playbook {
        Some(p) => Playbook::load(p)?,
        None => Playbook::sample(),
    };
    if args.check_playbook {
        return check_playbook(&args, &playbook, tracking);
    }
    let model = args.model.as_deref().expect("clap requires MODEL here");
    let mut s = ClassifySettings::resolve_scoring(
        model,
        &args.data,
        Fields::default(),
        &args.scoring,
        config,
    )?;
    s.score.context = true;
    let llm = llm_settings(&args)?;
    let scorer = load_scorer(&s, config, tracking)?;
    let m = scorer.model().expect("respond always loads the model");
    for intent in playbook.check_intents(m.labels())? {
        tracing::info!(
            intent,
            "no playbook entry: such queries get the fallback and a hand-off"
        );
    }
    let history = match &s.history {
        Some(h) => Some(load_history(h, &s)?),
        None => None,
    };
    let index = match &history {
        Some(h) => Some(build_index(h, &args, m)?),
        None => None,
    };
    let responder = Responder {
        playbook,
        history,
        index,
        opts: RespondOptions {
            similar: args.similar,
            min_similarity: args.min_similarity,
            repeat_window: scorer.repeat_window_secs(),
        },
    };
    let columns = RespondResult::columns(&s.score.keep, scorer.optional_scores(), llm.is_some());
    let llm = llm.map(|l| LlmClient::new(l, std::env::var("CQR_LLM_API_KEY").ok()));
    let mut pipeline = QueryResponder::new(scorer, responder, llm);
    let mut audit = match &s.audit_log {
        Some(p) => Some(AuditLog::open(p)?),
        None => None,
    };
    let mut writer = RecordWriter::create(&s.output, s.output_format, columns)?;
    if s.input.target == Target::Std && std::io::stdin().is_terminal() {
        ui::note("reading queries from the terminal (one JSON object per line; Ctrl-D ends)");
    }
    let mut batches = Batcher::spawn(crate::io::read::open(&s.input)?, 4 * s.batch_size);
    let bar = ui::progress(None, "drafted");
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut size = FIRST_BATCH.min(s.batch_size);
    while let Some(batch) = batches.next_batch(size, MAX_WAIT)? {
        size = next_batch_size(size, s.batch_size);
        let answered = pipeline.respond(batch)?;
        let out = report(answered, audit.as_mut(), &mut tally)?;
        writer.write_batch(&out)?;
        bar.inc(out.len() as u64);
    }
    writer.finish()?;
    bar.finish_and_clear();
    ui::summary(&tally.line(started.elapsed()));
    if tally.skipped > 0 {
        ui::warn(&format!(
            "{} of {} records were not scored (marked `skipped` with the reason); --strict stops \
             at the first",
            tally.skipped, tally.total
        ));
    }
    Ok(Outcome::Success)
}

fn check_playbook(
    args: &RespondArgs,
    playbook: &Playbook,
    tracking: &TrackingSettings,
) -> anyhow::Result<Outcome> {
    let mut line = format!(
        "{}: ok ({} intents, {} templates)",
        playbook.source,
        playbook.intents().count(),
        playbook.template_count()
    );
    if let Some(model) = &args.model {
        let m = refs::load_model(model, tracking)?;
        let missing = playbook.check_intents(m.labels())?;
        if missing.is_empty() {
            line.push_str(&format!(
                "; covers all {} intents of {model}",
                m.labels().len()
            ));
        } else {
            line.push_str(&format!(
                "; {} of the model's intents have no entry and get the fallback and a hand-off: {}",
                missing.len(),
                missing.join(", ")
            ));
        }
    }
    ui::print(&line)?;
    Ok(Outcome::Success)
}

fn llm_settings(args: &RespondArgs) -> Result<Option<LlmSettings>> {
    let Some(url) = &args.llm_url else {
        return Ok(None);
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Error::Usage(format!(
            "--llm-url {url}: give an http:// or https:// address"
        )));
    }
    if !(args.llm_timeout > 0.0 && args.llm_timeout.is_finite()) {
        return Err(Error::Usage(
            "--llm-timeout must be a positive number of seconds".into(),
        ));
    }
    if args.llm_concurrency == 0 {
        return Err(Error::Usage("--llm-concurrency must be at least 1".into()));
    }
    Ok(Some(LlmSettings {
        url: url.clone(),
        model: args.llm_model.clone(),
        timeout: Duration::from_secs_f64(args.llm_timeout),
        concurrency: args.llm_concurrency,
        max_chars: args.llm_max_chars,
        retries: defaults::LLM_RETRIES,
    }))
}

fn load_history(path: &str, s: &ClassifySettings) -> Result<History> {
    let mut spec = s.input.clone();
    spec.target = Target::parse(path);
    spec.format = None;
    let spinner = ui::spinner("reading the customer history");
    let h = History::load(spec, &s.score.columns)?;
    spinner.finish_and_clear();
    tracing::info!(
        contacts = h.contacts.len(),
        customers = h.customers.len(),
        "history loaded"
    );
    Ok(h)
}

fn build_index(h: &History, args: &RespondArgs, m: &crate::models::Model) -> Result<Index> {
    let rows = retrieve::searchable(h);
    let method = match args.retrieval {
        Some(r) => r,
        None if m.embedding_dim().is_some() => Retrieval::Embedding,
        None => Retrieval::Tfidf,
    };
    match (method, m.embedding_dim()) {
        (Retrieval::Tfidf, _) => Ok(Index::tfidf(h, &rows)),
        (Retrieval::Embedding, None) => Err(Error::Usage(
            "--retrieval embedding needs a model with an encoder; this one is linear only \
             (use --retrieval tfidf)"
                .into(),
        )),
        (Retrieval::Embedding, Some(dim)) => {
            let texts = retrieve::texts(h, &rows);
            let bar = ui::progress(Some(texts.len() as u64), "history embedded");
            let e = m
                .embed_cached(&texts, &mut |n| bar.inc(n as u64))?
                .expect("a model with an encoder embeds");
            bar.finish_and_clear();
            Ok(Index::embedding(h, &rows, e, dim))
        }
    }
}

/// Counts for the closing summary.
#[derive(Default)]
struct Tally {
    total: u64,
    skipped: u64,
    handed_off: u64,
    llm_used: u64,
    llm_asked: u64,
    reasons: Vec<(Reason, u64)>,
}

impl Tally {
    fn add(&mut self, r: &RespondResult) {
        self.total += 1;
        if r.query.skipped.is_some() {
            self.skipped += 1;
        }
        if let Some(d) = &r.draft {
            if d.handoff.required {
                self.handed_off += 1;
            }
            for h in &d.handoff.reasons {
                match self.reasons.iter_mut().find(|(k, _)| *k == h.reason) {
                    Some((_, n)) => *n += 1,
                    None => self.reasons.push((h.reason, 1)),
                }
            }
        }
        if let Some(l) = &r.llm {
            self.llm_asked += 1;
            self.llm_used += l.used as u64;
        }
    }

    fn line(&self, elapsed: Duration) -> String {
        let drafted = self.total - self.skipped;
        let mut line = format!(
            "drafted {drafted} replies in {}: {} ready to send, {} handed to a person",
            ui::rate(self.total, elapsed),
            drafted - self.handed_off,
            self.handed_off
        );
        if !self.reasons.is_empty() {
            let mut reasons = self.reasons.clone();
            reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
            let parts: Vec<String> = reasons
                .iter()
                .map(|(r, n)| {
                    let name = serde_json::to_value(r)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    format!("{name} {n}")
                })
                .collect();
            line.push_str(&format!(" ({})", parts.join(", ")));
        }
        if self.llm_asked > 0 {
            line.push_str(&format!(
                "; LLM rewrite used for {} of {}",
                self.llm_used, self.llm_asked
            ));
        }
        line
    }
}

/// Prints the `--explain` breakdowns, appends the audit lines, counts and returns the records.
fn report(
    answered: Vec<Responded>,
    audit: Option<&mut AuditLog>,
    tally: &mut Tally,
) -> anyhow::Result<Vec<RespondResult>> {
    let mut out = Vec::with_capacity(answered.len());
    let mut lines = Vec::new();
    for r in answered {
        if let Some(text) = &r.explain {
            ui::explain(&format!("{}: {text}", r.result.query.id));
        }
        lines.extend(r.audit);
        tally.add(&r.result);
        out.push(r.result);
    }
    if let Some(a) = audit {
        a.append(&lines)?;
    }
    Ok(out)
}
