//! The query pipeline: input records in, typed [`QueryResult`]s out. For each record it finds the
//! PII, masks the text the way the model was trained (whatever the output style), scores the
//! intent, decides abstention, scores sentiment, counts repeat contacts, assesses priority, and
//! builds the output record, its audit line and its `--explain` text. `classify` drives it today;
//! `respond` and `serve` call the same [`QueryScorer`]. It reads and writes no files and prints
//! nothing: the caller owns input, output and the terminal.

pub mod record;
pub mod respond;

use rayon::prelude::*;
use serde_json::Value;

use crate::analysis::priority::{explain, PriorityConfig, PriorityEngine, PriorityInput};
use crate::analysis::sentiment::{tokens_of, Sentiment, SentimentModel};
use crate::analysis::tokens::Tokens;
pub use crate::analysis::ContextColumns;
use crate::analysis::{parse_timestamp, ContactLog, Fields};
use crate::error::{Error, Result};
use crate::io::read::Record;
use crate::models::{Decision, Model, ModelRef};
use crate::monitor::profile::Observation;
use crate::text::pii::{self, Finding, MaskStyle, Masking};
use crate::util::{now_rfc3339, sha256_hex};
use record::{intent_label, IntentGroup, PiiSpan};
pub use record::{AuditEntry, Kept, OptionalScores, QueryResult};

/// Below this many records a batch is processed on the calling thread: waking the thread pool
/// costs more than the work (batch sizes 2–7 were ten times slower than 1 through the pool).
const PARALLEL_MIN: usize = 64;

/// What the scorer computes and writes: resolved once from the command's settings.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub fields: Fields,
    pub top_k: usize,
    /// Answer with the linear component alone when it is confident.
    pub cascade: bool,
    /// How PII is masked in what is written (kept columns, audit text); `None` keeps it.
    pub output_mask: Option<MaskStyle>,
    /// Input columns copied into each output record.
    pub keep: Vec<String>,
    pub columns: ContextColumns,
    /// Build an audit line per record.
    pub audit: bool,
    /// Build the priority breakdown per record.
    pub explain: bool,
    /// Keep each record's [`QueryContext`] (masked text, customer, time, tier, embedding) for
    /// a caller that goes on with it (`respond`).
    pub context: bool,
}

/// What a caller that goes on from a scored record needs of its input.
#[derive(Debug, Clone, Default)]
pub struct QueryContext {
    /// The text masked in full style, whatever the output style: nothing unmasked leaks from it.
    pub masked: String,
    pub customer: Option<String>,
    pub at: Option<i64>,
    pub tier: Option<String>,
    /// The encoder's embedding of the text, when the model has an encoder and answered with it.
    pub embedding: Option<Vec<f32>>,
}

/// One scored record: the output, its audit line and its priority breakdown, as asked for.
#[derive(Debug, Clone)]
pub struct Scored {
    pub result: QueryResult,
    pub audit: Option<AuditEntry>,
    pub explain: Option<String>,
    /// With [`ScoreOptions::context`], for scored (not skipped) records.
    pub context: Option<QueryContext>,
}

/// Scores batches of records with one model and one set of options.
pub struct QueryScorer {
    model: Option<Model>,
    model_ref: Option<ModelRef>,
    /// How the model's training text was masked; the model always sees text masked this way.
    masking: Masking,
    opts: ScoreOptions,
    sentiment: SentimentModel,
    engine: PriorityEngine,
    contacts: ContactLog,
}

/// A record after masking, before the model.
struct Prepared {
    rec: Record,
    /// The text masked the way the model was trained, when that differs from the text (see
    /// [`Prepared::model_text`]).
    masked: Option<String>,
    findings: Vec<Finding>,
    tier: Option<String>,
    customer: Option<String>,
    at: Option<i64>,
}

impl Prepared {
    /// The text as the model was trained on it: also what sentiment and priority read, so the
    /// output style never changes an answer. Most texts hold no PII and are not copied for it.
    fn model_text(&self) -> &str {
        self.masked.as_deref().unwrap_or(&self.rec.text)
    }
}

impl QueryScorer {
    /// `model` is needed when the intent (or priority) is asked for.
    pub fn new(
        model: Option<Model>,
        opts: ScoreOptions,
        priority: PriorityConfig,
    ) -> Result<QueryScorer> {
        if opts.fields.intent && model.is_none() {
            return Err(Error::Usage("the intent needs a model".into()));
        }
        let engine = PriorityEngine::new(priority)
            .map_err(|e| Error::Usage(format!("[priority] in the config: {e}")))?;
        let contacts = ContactLog::new(engine.repeat_window_secs());
        let model = model.filter(|_| opts.fields.intent);
        Ok(QueryScorer {
            model_ref: model.as_ref().map(Model::model_ref),
            masking: model
                .as_ref()
                .map(|m| m.manifest.masking)
                .unwrap_or_default(),
            model,
            opts,
            sentiment: SentimentModel::new(),
            engine,
            contacts,
        })
    }

    /// The CSV and Parquet columns of the records this scorer makes, whatever each one holds.
    pub fn columns(&self) -> Vec<String> {
        QueryResult::columns(self.opts.fields, &self.opts.keep, self.optional_scores())
    }

    /// Which optional uncertainty scores this scorer's model gives.
    pub fn optional_scores(&self) -> OptionalScores {
        self.model
            .as_ref()
            .map(|m| OptionalScores {
                // `Model::predict` measures disagreement between exactly two components.
                disagreement: m.components.len() == 2,
                mc: m.mc_samples > 0 && m.has_dropout(),
                novelty: m.novelty.is_some(),
            })
            .unwrap_or_default()
    }

    /// The options it scores with.
    pub fn options(&self) -> &ScoreOptions {
        &self.opts
    }

    /// The model's intents (none without a model).
    fn labels(&self) -> &[String] {
        self.model.as_ref().map(|m| m.labels()).unwrap_or(&[])
    }

    /// Records earlier contacts (customer and time columns) so repeat contacts in the input
    /// count them. Records without both columns are skipped; a time that does not parse is an
    /// error naming its place in `source`.
    pub fn add_history(
        &mut self,
        records: impl Iterator<Item = Result<Record>>,
        source: &str,
    ) -> Result<()> {
        let cols = &self.opts.columns;
        for rec in records {
            let rec = rec?;
            let get = |k: &str| {
                rec.keep
                    .iter()
                    .find(|(n, _)| n == k)
                    .and_then(|(_, v)| v.as_str())
            };
            let (Some(c), Some(t)) = (get(&cols.customer), get(&cols.time)) else {
                continue;
            };
            let at = parse_timestamp(t).ok_or_else(|| {
                Error::input(
                    rec.location(source).field(&cols.time),
                    format!("`{t}` is not an RFC 3339 time"),
                )
            })?;
            self.contacts.add(c, at);
        }
        Ok(())
    }

    /// Scores one batch, in input order. Repeat contacts count earlier records of the same
    /// run, so batches must come in input order too.
    pub fn score(&mut self, batch: Vec<Record>) -> Result<Vec<Scored>> {
        let prepared: Vec<Prepared> = map(batch, |r| self.prepare(r));
        let (decisions, mut embeddings) = self.decide(&prepared)?;
        // Repeat contacts depend on input order, so they are counted before the parallel part.
        let prior: Vec<u32> = prepared
            .iter()
            .map(|p| match (&p.customer, p.at) {
                (Some(c), Some(t)) => self.contacts.count_and_add(c, t),
                _ => 0,
            })
            .collect();
        let work: Vec<_> = prepared
            .into_iter()
            .zip(decisions)
            .zip(prior)
            .zip(embeddings.iter_mut().map(Option::take))
            .collect();
        Ok(map(work, |(((p, d), prior), emb)| {
            let mut s = self.finish(p, d.as_ref(), prior);
            if let Some(c) = &mut s.context {
                c.embedding = emb;
            }
            s
        }))
    }

    /// The model answering, if the intent was asked for.
    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// Records an earlier contact of `customer` at `at` (seconds since the epoch), so repeat
    /// contacts in the input count it.
    pub fn add_contact(&mut self, customer: &str, at: i64) {
        self.contacts.add(customer, at);
    }

    /// The repeat-contact window of the priority rules, in seconds.
    pub fn repeat_window_secs(&self) -> i64 {
        self.engine.repeat_window_secs()
    }

    /// The model's decisions for the records it can score (`None` for skipped ones, and for
    /// all when the intent was not asked for), and with [`ScoreOptions::context`] their
    /// embeddings when the model has an encoder.
    #[allow(clippy::type_complexity)]
    fn decide(
        &self,
        prepared: &[Prepared],
    ) -> Result<(Vec<Option<Decision>>, Vec<Option<Vec<f32>>>)> {
        let mut out = vec![None; prepared.len()];
        let mut embedded = vec![None; prepared.len()];
        let Some(m) = &self.model else {
            return Ok((out, embedded));
        };
        let (idx, texts): (Vec<usize>, Vec<&str>) = prepared
            .iter()
            .enumerate()
            .filter(|(_, p)| p.rec.skip.is_none())
            .map(|(i, p)| (i, p.model_text()))
            .unzip();
        if texts.is_empty() {
            return Ok((out, embedded));
        }
        let (preds, embeddings) = if self.opts.cascade {
            (m.predict_cascade(&texts)?.0, None)
        } else if self.opts.context {
            m.predict_embedded(&texts)?
        } else {
            (m.predict(&texts)?, None)
        };
        if let (Some(e), Some(dim)) = (embeddings, m.embedding_dim()) {
            for (&i, row) in idx.iter().zip(e.chunks(dim)) {
                embedded[i] = Some(row.to_vec());
            }
        }
        for (i, p) in idx.into_iter().zip(preds) {
            out[i] = Some(m.decide(&p, self.opts.top_k));
        }
        Ok((out, embedded))
    }

    fn prepare(&self, mut rec: Record) -> Prepared {
        let o = &self.opts;
        let findings = if rec.skip.is_none() && (o.fields.pii || self.masks_anything()) {
            pii::detect(&rec.text)
        } else {
            Vec::new()
        };
        let masked = model_masked(self.masking, &rec.text, &findings);
        let (mut tier, mut customer, mut at) = (None, None, None);
        let cols = &o.columns;
        // Columns are read in place: only the context values and the masked kept text are copied.
        rec.keep.retain_mut(|(k, v)| {
            let s = v.as_str();
            if *k == cols.tier {
                tier = s.map(str::to_string);
            }
            if *k == cols.customer {
                customer = s.map(str::to_string);
            }
            if *k == cols.time {
                at = s.and_then(parse_timestamp);
            }
            if !o.keep.contains(k) {
                return false;
            }
            if let Some(m) = o
                .output_mask
                .zip(s)
                .and_then(|(style, text)| mask_found(text, &pii::detect(text), style))
            {
                *v = Value::from(m);
            }
            true
        });
        Prepared {
            rec,
            masked,
            findings,
            tier,
            customer,
            at,
        }
    }

    fn masks_anything(&self) -> bool {
        self.opts.output_mask.is_some() || self.masking == Masking::Full
    }

    /// The output record, its audit line and its explanation.
    fn finish(&self, p: Prepared, d: Option<&Decision>, prior: u32) -> Scored {
        let o = &self.opts;
        if let Some(why) = p.rec.skip.clone() {
            return self.skipped(p, why);
        }
        // Priority reads the sentiment even when its group is not printed; read the text and
        // score it once, and let priority look for urgency cues in the same tokens.
        let tokens = (o.fields.sentiment || o.fields.priority).then(|| tokens_of(p.model_text()));
        let sentiment = tokens.as_ref().map(|t| self.sentiment.score_tokens(t));
        let priority = match (o.fields.priority, d, &sentiment, &tokens) {
            (true, Some(d), Some(s), Some(t)) => Some(self.assess(&p, d, s, t, prior)),
            _ => None,
        };
        let labels = self.labels();
        let audit = o.audit.then(|| AuditEntry {
            timestamp: now_rfc3339(),
            id: p.rec.id.clone(),
            model: self.model_ref.clone(),
            input_sha256: sha256_hex(p.rec.text.as_bytes()),
            text: self.output_text(&p),
            intent: d.map(|d| intent_label(d, labels).unwrap_or("unknown").to_string()),
            confidence: d.map(|d| record::round6(d.confidence)),
            abstained: d.map(|d| d.abstained),
            priority: priority.as_ref().map(|p| p.level.as_str()),
            escalate: priority.as_ref().map(|p| p.escalate),
            reasons: priority
                .as_ref()
                .map(|p| p.reasons.iter().map(|r| r.detail.clone()).collect()),
            reply: None,
            handoff: None,
        });
        let explain = priority.as_ref().filter(|_| o.explain).map(explain);
        let context = o.context.then(|| QueryContext {
            // A model trained on masked text already has the text masked in full style.
            masked: match self.masking {
                Masking::Full => p.model_text().to_string(),
                Masking::Off => mask_found(&p.rec.text, &p.findings, MaskStyle::Full)
                    .unwrap_or_else(|| p.rec.text.clone()),
            },
            customer: p.customer.clone(),
            at: p.at,
            tier: p.tier.clone(),
            embedding: None,
        });
        let result = QueryResult {
            id: p.rec.id,
            kept: Kept(p.rec.keep),
            skipped: None,
            intent: d.map(|d| IntentGroup::new(d, labels)),
            sentiment: sentiment
                .as_ref()
                .filter(|_| o.fields.sentiment)
                .map(Into::into),
            priority: priority.as_ref().map(Into::into),
            pii: o.fields.pii.then(|| PiiSpan::all(&p.rec.text, &p.findings)),
            model: self.model_ref.clone(),
        };
        Scored {
            result,
            audit,
            explain,
            context,
        }
    }

    fn assess(
        &self,
        p: &Prepared,
        d: &Decision,
        s: &Sentiment,
        text: &Tokens,
        prior: u32,
    ) -> crate::analysis::priority::Priority {
        let labels = self.labels();
        let c = labels.len().max(2) as f32;
        self.engine.assess(&PriorityInput {
            intent: intent_label(d, labels),
            confidence: d.confidence,
            abstained: d.abstained,
            uncertainty: (d.entropy / c.ln()).clamp(0.0, 1.0),
            sentiment: Some(s.score),
            sentiment_cues: &s.cues,
            tier: p.tier.as_deref(),
            text,
            prior_contacts: prior,
        })
    }

    /// The text as written to the audit trail: masked in the output style, or kept.
    fn output_text(&self, p: &Prepared) -> String {
        self.opts
            .output_mask
            .and_then(|style| mask_found(&p.rec.text, &p.findings, style))
            .unwrap_or_else(|| p.rec.text.clone())
    }

    /// A record that could not be scored: its id, kept columns and the reason.
    fn skipped(&self, p: Prepared, why: String) -> Scored {
        Scored {
            result: QueryResult {
                id: p.rec.id,
                kept: Kept(p.rec.keep),
                skipped: Some(why),
                intent: None,
                sentiment: None,
                priority: None,
                pii: None,
                model: self.model_ref.clone(),
            },
            audit: None,
            explain: None,
            context: None,
        }
    }
}

/// Maps a batch on the thread pool when it is large enough to pay for it and the pool has more
/// than one thread, else in place.
fn map<T: Send, U: Send>(items: Vec<T>, f: impl Fn(T) -> U + Sync + Send) -> Vec<U> {
    if items.len() < PARALLEL_MIN || rayon::current_num_threads() < 2 {
        items.into_iter().map(f).collect()
    } else {
        items.into_par_iter().with_min_len(16).map(f).collect()
    }
}

/// Masks each record's text the way `masking` says, for training and evaluation: the same
/// masking the scorer applies before the model.
pub fn mask_for_model(masking: Masking, records: &mut [Record]) {
    if masking == Masking::Off {
        return;
    }
    records.par_iter_mut().for_each(|r| {
        if let Some(m) = model_masked(masking, &r.text, &pii::detect(&r.text)) {
            r.text = m;
        }
    });
}

/// The text the model sees, when it differs from `text`: masked the way the model was trained,
/// where `findings` found PII. Training, evaluation and the scorer all go through here, so a
/// model is always scored on text masked as it was trained.
fn model_masked(masking: Masking, text: &str, findings: &[Finding]) -> Option<String> {
    match masking {
        Masking::Full => mask_found(text, findings, MaskStyle::Full),
        Masking::Off => None,
    }
}

/// `text` with the PII in `findings` masked in `style`; `None` when there is none, so the
/// usual text without PII is not copied.
fn mask_found(text: &str, findings: &[Finding], style: MaskStyle) -> Option<String> {
    (!findings.is_empty()).then(|| pii::mask(text, findings, style))
}

/// What drift-check needs of a batch of records (already masked the way the model was
/// trained): each record's [`Observation`] and, when the model has an encoder, its embedding
/// (row-major, `Model::embedding_dim` wide). A label the model does not know counts as wrong.
pub fn observe(model: &Model, records: &[Record]) -> Result<(Vec<Observation>, Option<Vec<f32>>)> {
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    let (predictions, embeddings) = model.predict_embedded(&texts)?;
    let oov = model.oov_rates(&texts);
    let labels = model.labels();
    let observed = predictions
        .iter()
        .zip(records)
        .enumerate()
        .map(|(i, (p, r))| {
            let d = model.decide(p, 1);
            let correct = r.label.as_deref().map(|l| labels[d.best] == l);
            let oov = oov.as_ref().map_or(0.0, |v| v[i]);
            Observation::of(d.best, d.confidence, d.abstained, &r.text, oov, correct)
        })
        .collect();
    Ok((observed, embeddings))
}
