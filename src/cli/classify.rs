//! `cqr classify MODEL [DATA|-]`: stream records through the model in batches and write one
//! output record per input record (JSONL by default, CSV or Parquet with `-o`/`--output-format`).
//! Memory is bounded by the batch size whatever the input size; stdout is flushed per batch.
//! Each record also gets its sentiment, priority with reasons, and the PII found; query text is
//! masked before it reaches the model, the output, the audit trail or any log (`--no-mask`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use super::{InputArgs, Outcome};
use crate::analysis::priority::{explain, Priority, PriorityEngine, PriorityInput};
use crate::analysis::sentiment::{Sentiment, SentimentModel};
use crate::analysis::{parse_timestamp, ContactLog, Fields};
use crate::error::Error;
use crate::io::audit::AuditLog;
use crate::io::read::{open, Batcher, Record};
use crate::io::write::RecordWriter;
use crate::io::{Format, Target};
use crate::models::{Decision, Model};
use crate::settings::{file_value, FileConfig};
use crate::text::pii::{self, Finding, MaskStyle};
use crate::tracking::{refs, TrackingSettings};
use crate::ui;
use crate::util::{now_rfc3339, sha256_hex};

/// Output fields that `--keep` columns may not shadow.
const OUTPUT_FIELDS: [&str; 10] = [
    "id",
    "intent",
    "confidence",
    "top_k",
    "abstained",
    "uncertainty",
    "sentiment",
    "priority",
    "pii",
    "model",
];

/// How long a batch waits for more input before it is answered: short enough that a person
/// typing into a pipe sees each answer at once.
const MAX_WAIT: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MaskArg {
    Full,
    Partial,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Model: a bundle directory, models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/model.
    pub model: String,
    /// Queries (CSV, JSONL, Parquet, or `-` for stdin: JSONL, or raw lines with --format lines).
    #[arg(default_value = "-")]
    pub data: String,
    /// Write here instead of stdout (format from the extension: .jsonl, .csv, .parquet).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format (default: from -o's extension, else JSONL).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub output_format: Option<Format>,
    /// Input format (default: from the extension; stdin is JSONL; `lines` = one raw query per line).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// How many alternatives to list in `top_k` [default: 3].
    #[arg(long, env = "CQR_TOP_K", value_name = "K")]
    pub top_k: Option<usize>,
    /// Records scored together [default: 1024].
    #[arg(long, env = "CQR_BATCH_SIZE", value_name = "N")]
    pub batch_size: Option<usize>,
    /// Answer with the linear model alone when it is confident (threshold chosen on validation,
    /// stored in the bundle) and run the encoder only for the rest.
    #[arg(long)]
    pub cascade: bool,
    /// MC-dropout samples per query for a head with dropout [default: 20 when the model has one;
    /// 0 turns it off].
    #[arg(long, value_name = "T")]
    pub mc_samples: Option<usize>,
    /// Input columns to copy into each output record (comma-separated; masked like the text).
    #[arg(long, value_delimiter = ',', value_name = "COLS")]
    pub keep: Vec<String>,
    /// Output groups to compute: intent, sentiment, priority, pii [default: all]. Groups not
    /// asked for are skipped (priority needs the intent and brings it).
    #[arg(long, value_delimiter = ',', value_name = "GROUPS")]
    pub fields: Vec<String>,
    /// `full` replaces PII with [EMAIL], [CARD], ...; `partial` keeps a card's last 4 digits.
    #[arg(long, value_enum, default_value = "full")]
    pub mask_style: MaskArg,
    /// Print each record's priority breakdown (factors and weights) to stderr.
    #[arg(long)]
    pub explain: bool,
    /// Append one JSON line per decision to this file (masked text, input hash, intent,
    /// confidence, priority, escalation and reasons).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Earlier tickets (with customer and time columns) for counting repeat contacts.
    #[arg(long, value_name = "DATA")]
    pub history: Option<String>,
    /// Column with the customer tier (premium, business, standard, ...).
    #[arg(long, default_value = "customer_tier", value_name = "NAME")]
    pub tier_col: String,
    /// Column with the customer id, for repeat contacts.
    #[arg(long, default_value = "customer_id", value_name = "NAME")]
    pub customer_col: String,
    /// Column with the contact's time (RFC 3339), for repeat contacts.
    #[arg(long, default_value = "created_at", value_name = "NAME")]
    pub time_col: String,
    #[command(flatten)]
    pub input: InputArgs,
}

pub fn run(
    args: ClassifyArgs,
    config: &FileConfig,
    tracking: &TrackingSettings,
) -> anyhow::Result<Outcome> {
    let top_k = args
        .top_k
        .or(file_value(&config.classify.top_k))
        .unwrap_or(3);
    let batch_size = args
        .batch_size
        .or(file_value(&config.classify.batch_size))
        .unwrap_or(1024);
    if top_k == 0 || batch_size == 0 {
        return Err(Error::Usage("--top-k and --batch-size must be at least 1".into()).into());
    }
    if let Some(k) = args
        .keep
        .iter()
        .find(|k| OUTPUT_FIELDS.contains(&k.as_str()))
    {
        return Err(Error::Usage(format!("--keep {k}: `{k}` is already an output field")).into());
    }
    let fields = Fields::parse(&args.fields)?;
    if args.explain && !fields.priority {
        return Err(
            Error::Usage("--explain explains the priority: add it to --fields".into()).into(),
        );
    }
    let engine = PriorityEngine::new(config.priority.clone())
        .map_err(|e| Error::Usage(format!("[priority] in the config: {e}")))?;
    let model = if fields.intent {
        let mut m = refs::load_model(&args.model, tracking)?;
        m.set_mc_samples(args.mc_samples);
        Some(m)
    } else {
        None
    };
    let mut spec = args.input.spec(&args.data, args.format, false);
    spec.keep = args.keep.clone();
    // Raw lines have no columns; their reader ignores `optional`.
    spec.optional = vec![
        args.tier_col.clone(),
        args.customer_col.clone(),
        args.time_col.clone(),
    ];
    let mut contacts = ContactLog::new(engine.repeat_window_secs());
    if let Some(h) = &args.history {
        load_history(&args, h, &mut contacts)?;
    }
    let mut audit = match &args.audit_log {
        Some(p) => Some(AuditLog::open(p)?),
        None => None,
    };
    let out_target = match &args.output {
        Some(p) => Target::Path(p.clone()),
        None => Target::Std,
    };
    let ctx = Ctx {
        args: &args,
        fields,
        mask: (!args.input.no_mask).then_some(match args.mask_style {
            MaskArg::Full => MaskStyle::Full,
            MaskArg::Partial => MaskStyle::Partial,
        }),
        sentiment: SentimentModel::new(),
        engine,
        model_json: model
            .as_ref()
            .map(|m| serde_json::to_value(m.model_ref()).expect("a model ref serialises")),
        model: model.as_ref(),
    };
    let mut writer = RecordWriter::create(&out_target, args.output_format)?;
    let mut batches = Batcher::spawn(open(&spec)?, 4 * batch_size);
    let bar = ui::progress(None, "classified");
    while let Some(batch) = batches.next_batch(batch_size, MAX_WAIT)? {
        let prepared: Vec<Prepared> = batch.into_par_iter().map(|r| ctx.prepare(r)).collect();
        let decisions: Vec<Option<Decision>> = match &model {
            Some(m) => {
                let texts: Vec<&str> = prepared.iter().map(|p| p.masked.as_str()).collect();
                let preds = if args.cascade {
                    m.predict_cascade(&texts)?.0
                } else {
                    m.predict(&texts)?
                };
                preds.iter().map(|p| Some(m.decide(p, top_k))).collect()
            }
            None => vec![None; prepared.len()],
        };
        // Repeat contacts depend on input order, so they are counted before the parallel part.
        let prior: Vec<u32> = prepared
            .iter()
            .map(|p| match (&p.customer, p.at) {
                (Some(c), Some(t)) => contacts.count_and_add(c, t),
                _ => 0,
            })
            .collect();
        let done: Vec<Done> = prepared
            .into_par_iter()
            .zip(decisions)
            .zip(prior)
            .map(|((p, d), prior)| ctx.finish(p, d.as_ref(), prior))
            .collect();
        let mut out = Vec::with_capacity(done.len());
        let mut audit_lines = Vec::new();
        for d in done {
            if let Some(text) = d.explain {
                let id = match &d.out["id"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                ui::explain(&format!("{id}: {text}"));
            }
            audit_lines.extend(d.audit);
            out.push(d.out);
        }
        if let Some(a) = audit.as_mut() {
            a.append(&audit_lines)?;
        }
        writer.write_batch(&out)?;
        bar.inc(out.len() as u64);
    }
    writer.finish()?;
    bar.finish_and_clear();
    Ok(Outcome::Success)
}

/// Loads earlier contacts (customer, time) from `--history`.
fn load_history(args: &ClassifyArgs, data: &str, contacts: &mut ContactLog) -> anyhow::Result<()> {
    let mut spec = args.input.spec(data, None, false);
    spec.keep = vec![args.customer_col.clone(), args.time_col.clone()];
    let source = data.to_string();
    for rec in open(&spec)? {
        let rec = rec?;
        let get = |k: &str| {
            rec.keep
                .iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.as_str().map(str::to_string))
        };
        let (Some(c), Some(t)) = (get(&args.customer_col), get(&args.time_col)) else {
            continue;
        };
        let at = parse_timestamp(&t).ok_or_else(|| {
            Error::input(
                rec.location(&source).field(&args.time_col),
                format!("`{t}` is not an RFC 3339 time"),
            )
        })?;
        contacts.add(&c, at);
    }
    Ok(())
}

/// Settings shared by every record of a run.
struct Ctx<'a> {
    args: &'a ClassifyArgs,
    fields: Fields,
    mask: Option<MaskStyle>,
    sentiment: SentimentModel,
    engine: PriorityEngine,
    /// The model, when the intent is asked for, and its reference as JSON.
    model: Option<&'a Model>,
    model_json: Option<Value>,
}

/// One record's output, its audit line and its `--explain` text.
struct Done {
    out: Value,
    audit: Option<Value>,
    explain: Option<String>,
}

/// A record after masking, before the model.
struct Prepared {
    rec: Record,
    masked: String,
    findings: Vec<Finding>,
    tier: Option<String>,
    customer: Option<String>,
    at: Option<i64>,
}

impl Ctx<'_> {
    fn prepare(&self, mut rec: Record) -> Prepared {
        let findings = if self.fields.pii || self.mask.is_some() {
            pii::detect(&rec.text)
        } else {
            Vec::new()
        };
        let masked = match self.mask {
            Some(style) => pii::mask(&rec.text, &findings, style),
            None => rec.text.clone(),
        };
        let mut tier = None;
        let mut customer = None;
        let mut at = None;
        let a = self.args;
        rec.keep.retain_mut(|(k, v)| {
            let s = v.as_str().map(str::to_string);
            if *k == a.tier_col {
                tier = s.clone();
            }
            if *k == a.customer_col {
                customer = s.clone();
            }
            if *k == a.time_col {
                at = s.as_deref().and_then(parse_timestamp);
            }
            if !a.keep.contains(k) {
                return false;
            }
            if let (Some(style), Some(text)) = (self.mask, s) {
                *v = Value::from(pii::mask_text(&text, style).0);
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

    /// The output record, its audit line (with `--audit-log`) and explanation (`--explain`).
    fn finish(&self, p: Prepared, d: Option<&Decision>, prior: u32) -> Done {
        // Priority reads the sentiment even when its group is not printed; score it once.
        let sentiment = (self.fields.sentiment || self.fields.priority)
            .then(|| self.sentiment.score(&p.masked));
        let priority = match (self.fields.priority, d, self.model, &sentiment) {
            (true, Some(d), Some(m), Some(s)) => {
                let c = m.labels().len().max(2) as f32;
                Some(self.engine.assess(&PriorityInput {
                    intent: intent_label(d, m),
                    confidence: d.confidence,
                    abstained: d.abstained,
                    uncertainty: (d.entropy / c.ln()).clamp(0.0, 1.0),
                    sentiment: Some(s.score),
                    sentiment_cues: &s.cues,
                    tier: p.tier.as_deref(),
                    text: &p.masked,
                    prior_contacts: prior,
                }))
            }
            _ => None,
        };
        let audit = self
            .args
            .audit_log
            .is_some()
            .then(|| audit_line(&p, d, self.model, &self.model_json, priority.as_ref()));
        let explain = priority.as_ref().filter(|_| self.args.explain).map(explain);
        let mut m = Map::new();
        m.insert("id".into(), p.rec.id);
        m.extend(p.rec.keep);
        if let (Some(d), Some(model)) = (d, self.model) {
            intent_fields(&mut m, d, model);
        }
        if let Some(s) = sentiment.as_ref().filter(|_| self.fields.sentiment) {
            m.insert("sentiment".into(), sentiment_json(s));
        }
        if let Some(pr) = &priority {
            m.insert("priority".into(), priority_json(pr));
        }
        if self.fields.pii {
            m.insert("pii".into(), pii_json(&p.rec.text, &p.findings));
        }
        if let Some(j) = &self.model_json {
            m.insert("model".into(), j.clone());
        }
        Done {
            out: Value::Object(m),
            audit,
            explain,
        }
    }
}

/// The intent reported for a decision: `None` when the model abstained.
fn intent_label<'m>(d: &Decision, m: &'m Model) -> Option<&'m str> {
    (!d.abstained).then(|| m.labels()[d.best].as_str())
}

fn audit_line(
    p: &Prepared,
    d: Option<&Decision>,
    model: Option<&Model>,
    model_json: &Option<Value>,
    priority: Option<&Priority>,
) -> Value {
    let intent = match (d, model) {
        (Some(d), Some(m)) => Value::from(intent_label(d, m).unwrap_or("unknown")),
        _ => Value::Null,
    };
    json!({
        "timestamp": now_rfc3339(),
        "id": p.rec.id,
        "model": model_json,
        "input_sha256": sha256_hex(p.rec.text.as_bytes()),
        "text": p.masked,
        "intent": intent,
        "confidence": d.map(|d| round6(d.confidence)),
        "abstained": d.map(|d| d.abstained),
        "priority": priority.map(|p| p.level.as_str()),
        "escalate": priority.map(|p| p.escalate),
        "reasons": priority.map(|p| p.reasons.iter().map(|r| r.detail.clone()).collect::<Vec<_>>()),
    })
}

fn round6(x: f32) -> f64 {
    // Adding 0.0 turns -0.0 into 0.0.
    (x as f64 * 1e6).round() / 1e6 + 0.0
}

fn sentiment_json(s: &Sentiment) -> Value {
    // `cues` is always there (maybe empty) so CSV and Parquet columns stay the same per row.
    json!({"label": s.label.as_str(), "score": round6(s.score), "cues": s.cues})
}

fn priority_json(p: &Priority) -> Value {
    json!({
        "level": p.level.as_str(),
        "score": round6(p.score),
        "escalate": p.escalate,
        "reasons": p.reasons.iter().map(|r| json!({
            "factor": r.factor.as_str(),
            "weight": round6(r.weight),
            "detail": r.detail,
        })).collect::<Vec<_>>(),
    })
}

/// PII findings with spans in characters of the original text.
fn pii_json(text: &str, findings: &[Finding]) -> Value {
    Value::Array(
        findings
            .iter()
            .map(|f| {
                let (start, end) = f.char_span(text);
                json!({"type": f.kind.label(), "start": start, "end": end})
            })
            .collect(),
    )
}

/// The intent group of the output record DESIGN.md describes.
fn intent_fields(m: &mut Map<String, Value>, d: &Decision, model: &Model) {
    let labels = model.labels();
    m.insert(
        "intent".into(),
        Value::from(intent_label(d, model).unwrap_or("unknown")),
    );
    m.insert("confidence".into(), Value::from(round6(d.confidence)));
    m.insert(
        "top_k".into(),
        Value::Array(
            d.top_k
                .iter()
                .map(|(i, p)| json!({"intent": labels[*i], "p": round6(*p)}))
                .collect(),
        ),
    );
    m.insert("abstained".into(), Value::from(d.abstained));
    let mut u = json!({"entropy": round6(d.entropy), "margin": round6(d.margin)});
    if let Some(dis) = d.disagreement {
        u["disagreement"] = Value::from(round6(dis));
    }
    if let Some((std, mi)) = d.mc {
        u["std"] = Value::from(round6(std));
        u["mutual_info"] = Value::from(round6(mi));
    }
    m.insert("uncertainty".into(), u);
}
