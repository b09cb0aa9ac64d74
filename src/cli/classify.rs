//! `cqr classify MODEL [DATA|-]`: arguments → [`ClassifySettings`] → a batch loop over the
//! [`QueryScorer`] → the writer. One output record per input record (JSONL by default, CSV or
//! Parquet with `-o`/`--output-format`); memory is bounded by the batch size whatever the input
//! size; stdout is flushed per batch. What a record becomes is the pipeline's business.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use super::{InputArgs, Outcome};
use crate::error::{Error, Result};
use crate::io::audit::AuditLog;
use crate::io::read::{open, Batcher};
use crate::io::write::RecordWriter;
use crate::io::{Format, OutputFormat, Target};
use crate::pipeline::{QueryScorer, Scored};
use crate::settings::defaults::{self, FIRST_BATCH};
use crate::settings::{next_batch_size, opts, pick, ClassifySettings, FileConfig};
use crate::tracking::{refs, TrackingSettings};
use crate::ui;
use std::path::Path;

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
    /// Output groups to compute: intent, sentiment, priority, pii [default: all]. Groups not
    /// asked for are skipped (priority needs the intent and brings it).
    #[arg(long, value_delimiter = ',', value_name = "GROUPS")]
    pub fields: Vec<String>,
    #[command(flatten)]
    pub scoring: ScoringArgs,
}

/// How queries are read, scored and written: shared by `classify` and `respond`.
#[derive(Debug, Args)]
pub struct ScoringArgs {
    /// Write here instead of stdout (format from the extension: .jsonl, .ndjson, .csv, .parquet).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format (default: from -o's extension, else JSONL).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub output_format: Option<OutputFormat>,
    /// Input format (default: from the extension; stdin is JSONL; `lines` = one raw query per
    /// line, blank lines skipped).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// How many alternatives to list in `top_k` (env CQR_TOP_K, cqr.toml classify.top_k)
    /// [default: 3].
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Most records scored together (env CQR_BATCH_SIZE, cqr.toml classify.batch_size); the
    /// first batches are smaller so answers start at once [default: 1024].
    #[arg(long, value_name = "N")]
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
    /// How PII is masked in what cqr writes: `full` replaces it with [EMAIL], [CARD], ...;
    /// `partial` keeps a card's last 4 digits and a name's initials. The model always sees the
    /// text masked the way it was trained, so this never changes an answer.
    #[arg(long, value_enum, default_value = "full")]
    pub mask_style: MaskArg,
    /// Stop with exit 2 at the first record that cannot be scored (e.g. empty text) instead of
    /// writing it with `skipped` and its reason.
    #[arg(long)]
    pub strict: bool,
    /// Print each record's priority breakdown (factors and weights) to stderr.
    #[arg(long)]
    pub explain: bool,
    /// Append one JSON line per decision to this file (masked text, input hash, intent,
    /// confidence, priority, escalation and reasons).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Earlier tickets (with customer and time columns) for counting repeat contacts; for
    /// `respond`, the customer history (text, intent, status, name, tier, reply).
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
    let s = ClassifySettings::resolve(&args, config)?;
    let mut scorer = load_scorer(&s, config, tracking)?;
    if let Some(h) = &s.history {
        let mut spec = s.input.clone();
        spec.target = Target::parse(h);
        spec.format = None;
        spec.keep = vec![
            s.score.columns.customer.clone(),
            s.score.columns.time.clone(),
        ];
        spec.optional.clear();
        scorer.add_history(open(&spec)?, h)?;
    }
    let mut audit = match &s.audit_log {
        Some(p) => Some(AuditLog::open(p)?),
        None => None,
    };
    let mut writer = RecordWriter::create(&s.output, s.output_format, scorer.columns())?;
    if s.input.target == Target::Std && std::io::stdin().is_terminal() {
        ui::note("reading queries from the terminal (one JSON object per line; Ctrl-D ends)");
    }
    let mut batches = Batcher::spawn(open(&s.input)?, 4 * s.batch_size);
    let bar = ui::progress(None, "classified");
    let started = Instant::now();
    let (mut total, mut skipped) = (0u64, 0u64);
    let mut size = FIRST_BATCH.min(s.batch_size);
    while let Some(batch) = batches.next_batch(size, MAX_WAIT)? {
        size = next_batch_size(size, s.batch_size);
        tracing::debug!(records = batch.len(), "scoring a batch");
        let scored = scorer.score(batch)?;
        let out = report(scored, audit.as_mut())?;
        skipped += out.iter().filter(|r| r.skipped.is_some()).count() as u64;
        writer.write_batch(&out)?;
        total += out.len() as u64;
        bar.inc(out.len() as u64);
    }
    writer.finish()?;
    bar.finish_and_clear();
    ui::summary(&format!(
        "classified {total} records in {}",
        ui::rate(total, started.elapsed())
    ));
    if skipped > 0 {
        ui::warn(&format!(
            "{skipped} of {total} records were not scored (marked `skipped` with the reason); \
             --strict stops at the first"
        ));
    }
    Ok(Outcome::Success)
}

/// The model (when the intent is asked for) and a scorer for it, as `s` says.
pub(crate) fn load_scorer(
    s: &ClassifySettings,
    config: &FileConfig,
    tracking: &TrackingSettings,
) -> anyhow::Result<QueryScorer> {
    let model = if s.score.fields.intent {
        let mut m = refs::load_model(&s.model, tracking)?;
        m.set_mc_samples(s.mc_samples);
        Some(m)
    } else {
        None
    };
    Ok(QueryScorer::new(
        model,
        s.score.clone(),
        config.priority.clone(),
    )?)
}

/// Prints the `--explain` breakdowns, appends the audit lines and returns the output records.
fn report(
    scored: Vec<Scored>,
    audit: Option<&mut AuditLog>,
) -> anyhow::Result<Vec<crate::pipeline::QueryResult>> {
    let mut out = Vec::with_capacity(scored.len());
    let mut lines = Vec::new();
    for s in scored {
        if let Some(text) = &s.explain {
            ui::explain(&format!("{}: {text}", s.result.id));
        }
        lines.extend(s.audit);
        out.push(s.result);
    }
    if let Some(a) = audit {
        a.append(&lines)?;
    }
    Ok(out)
}

impl ClassifySettings {
    pub fn resolve(a: &ClassifyArgs, config: &FileConfig) -> Result<Self> {
        let fields = crate::analysis::Fields::parse(&a.fields)?;
        Self::resolve_scoring(&a.model, &a.data, fields, &a.scoring, config)
    }

    /// The settings of a command that scores queries (`classify`, `respond`) with the groups
    /// `fields`.
    pub fn resolve_scoring(
        model: &str,
        data: &str,
        fields: crate::analysis::Fields,
        a: &ScoringArgs,
        config: &FileConfig,
    ) -> Result<Self> {
        use crate::pipeline::{ContextColumns, QueryResult, ScoreOptions};
        use crate::text::pii::MaskStyle;
        let at_least_one = |n: &usize| *n >= 1;
        let top_k = pick(
            config,
            opts::TOP_K,
            a.top_k,
            &config.classify.top_k,
            defaults::TOP_K,
        )?
        .check(at_least_one, "must be at least 1")?
        .value;
        let batch_size = pick(
            config,
            opts::BATCH_SIZE,
            a.batch_size,
            &config.classify.batch_size,
            defaults::BATCH_SIZE,
        )?
        .check(at_least_one, "must be at least 1")?
        .value;
        if a.explain && !fields.priority {
            return Err(Error::Usage(
                "--explain explains the priority: add `priority` to --fields".into(),
            ));
        }
        let taken = QueryResult::field_names(fields);
        if let Some(k) = a.keep.iter().find(|k| taken.contains(k)) {
            return Err(Error::Usage(format!(
                "--keep {k}: `{k}` is already a field of the output record; rename the column \
                 or leave its group out of --fields"
            )));
        }
        check_model_argument(model)?;
        let mut input = a.input.spec(data, a.format, false);
        input.keep = a.keep.clone();
        // An empty text is written as a skipped record, unless --strict stops at it.
        input.skip_bad_text = !a.strict;
        let columns = ContextColumns {
            tier: a.tier_col.clone(),
            customer: a.customer_col.clone(),
            time: a.time_col.clone(),
        };
        // Raw lines have no columns; their reader ignores `optional`.
        input.optional = vec![
            columns.tier.clone(),
            columns.customer.clone(),
            columns.time.clone(),
        ];
        Ok(ClassifySettings {
            model: model.to_string(),
            input,
            output: match &a.output {
                Some(p) => crate::io::Target::Path(p.clone()),
                None => crate::io::Target::Std,
            },
            output_format: a.output_format,
            batch_size,
            mc_samples: a.mc_samples,
            history: a.history.clone(),
            audit_log: a.audit_log.clone(),
            score: ScoreOptions {
                fields,
                top_k,
                cascade: a.cascade,
                output_mask: (!a.input.no_mask).then_some(match a.mask_style {
                    MaskArg::Full => MaskStyle::Full,
                    MaskArg::Partial => MaskStyle::Partial,
                }),
                keep: a.keep.clone(),
                columns,
                audit: a.audit_log.is_some(),
                explain: a.explain,
                context: false,
            },
        })
    }
}

/// A data file given where the model goes (`cqr classify data.csv`) is a usage error that says
/// so, instead of an attempt to load it or, worse, reading stdin as the data.
fn check_model_argument(model: &str) -> Result<()> {
    let p = Path::new(model);
    let data_like = crate::io::Format::from_path(p).is_some();
    if data_like && !p.is_dir() && !model.contains(":/") {
        return Err(Error::Usage(format!(
            "{model} looks like a data file, not a model: give the model first \
             (cqr classify MODEL [DATA]); a model is a bundle directory, models:/NAME/VERSION, \
             models:/NAME@ALIAS or runs:/RUN_ID/model"
        )));
    }
    Ok(())
}
