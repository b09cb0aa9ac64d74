//! `cqr classify MODEL [DATA|-]`: stream records through the model in batches and write one
//! output record per input record (JSONL by default, CSV or Parquet with `-o`/`--output-format`).
//! Memory is bounded by the batch size whatever the input size; stdout is flushed per batch.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use super::{InputArgs, Outcome};
use crate::error::Error;
use crate::io::read::{open, Batcher, Record};
use crate::io::write::RecordWriter;
use crate::io::{Format, Target};
use crate::models::{Decision, Model};
use crate::settings::FileConfig;
use crate::tracking::{refs, TrackingSettings};
use crate::ui;

/// Output fields that `--keep` columns may not shadow.
const OUTPUT_FIELDS: [&str; 7] = [
    "id",
    "intent",
    "confidence",
    "top_k",
    "abstained",
    "uncertainty",
    "model",
];

/// How long a batch waits for more input before it is answered: short enough that a person
/// typing into a pipe sees each answer at once.
const MAX_WAIT: Duration = Duration::from_millis(5);

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
    /// Input columns to copy into each output record (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "COLS")]
    pub keep: Vec<String>,
    #[command(flatten)]
    pub input: InputArgs,
}

pub fn run(
    args: ClassifyArgs,
    config: &FileConfig,
    tracking: &TrackingSettings,
) -> anyhow::Result<Outcome> {
    let top_k = args.top_k.or(config.classify.top_k).unwrap_or(3);
    let batch_size = args
        .batch_size
        .or(config.classify.batch_size)
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
    let mut model = refs::load_model(&args.model, tracking)?;
    model.set_mc_samples(args.mc_samples);
    let mut spec = args.input.spec(&args.data, args.format, false);
    spec.keep = args.keep.clone();
    let out_target = match &args.output {
        Some(p) => Target::Path(p.clone()),
        None => Target::Std,
    };
    let mut writer = RecordWriter::create(&out_target, args.output_format)?;
    let mut batches = Batcher::spawn(open(&spec)?, 4 * batch_size);
    let model_ref = serde_json::to_value(model.model_ref()).expect("a model ref serialises");
    let bar = ui::progress(None, "classified");
    while let Some(batch) = batches.next_batch(batch_size, MAX_WAIT)? {
        let texts: Vec<&str> = batch.iter().map(|r| r.text.as_str()).collect();
        let preds = if args.cascade {
            model.predict_cascade(&texts)?.0
        } else {
            model.predict(&texts)?
        };
        let out: Vec<Value> = batch
            .into_par_iter()
            .zip(preds.par_iter())
            .map(|(rec, p)| output_record(rec, &model.decide(p, top_k), &model, &model_ref))
            .collect();
        writer.write_batch(&out)?;
        bar.inc(out.len() as u64);
    }
    writer.finish()?;
    bar.finish_and_clear();
    Ok(Outcome::Success)
}

fn round6(x: f32) -> f64 {
    (x as f64 * 1e6).round() / 1e6
}

/// The output record DESIGN.md describes (the fields this build computes).
pub fn output_record(rec: Record, d: &Decision, model: &Model, model_ref: &Value) -> Value {
    let labels = model.labels();
    let mut m = Map::new();
    m.insert("id".into(), rec.id);
    for (k, v) in rec.keep {
        m.insert(k, v);
    }
    let intent = if d.abstained {
        "unknown"
    } else {
        labels[d.best].as_str()
    };
    m.insert("intent".into(), Value::from(intent));
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
    m.insert("model".into(), model_ref.clone());
    Value::Object(m)
}
