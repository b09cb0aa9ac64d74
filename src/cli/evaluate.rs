//! `cqr evaluate MODEL DATA`: score labelled data, print a summary or JSON, optionally write the
//! report with plots, and apply the `--min-*` gates.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{InputArgs, Outcome};
use crate::error::Error;
use crate::eval::evaluate;
use crate::eval::metrics::EvalReport;
use crate::eval::report::{pct, write_report};
use crate::io::read::read_all;
use crate::io::Format;
use crate::models::Model;
use crate::settings::{file_value, FileConfig};
use crate::tracking::store::{LocalRun, RunStatus};
use crate::tracking::{refs, ActiveRun, TrackingSettings};
use crate::ui;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Model: a bundle directory, models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/model.
    pub model: String,
    /// Labelled data (CSV, JSONL or Parquet; `-` for stdin).
    pub data: String,
    /// How to print the result on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Input format (default: from the extension; stdin is JSONL).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub input_format: Option<Format>,
    /// Also write report.md, metrics.json and PNG plots here.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Score with the cascade (linear first, the encoder only when it is unsure) and report the
    /// share that reached the encoder.
    #[arg(long)]
    pub cascade: bool,
    /// MC-dropout samples per query for a head with dropout [default: 20 when the model has one;
    /// 0 turns it off].
    #[arg(long, value_name = "T")]
    pub mc_samples: Option<usize>,
    /// The label that marks out-of-scope rows in the data.
    #[arg(long, default_value = "oos", value_name = "LABEL")]
    pub oos_label: String,
    /// Gate: exit 1 when accuracy is below this.
    #[arg(long, value_name = "ACC")]
    pub min_accuracy: Option<f64>,
    /// Gate: exit 1 when macro-F1 is below this.
    #[arg(long, value_name = "F1")]
    pub min_macro_f1: Option<f64>,
    #[command(flatten)]
    pub input: InputArgs,
}

pub fn run(
    args: EvaluateArgs,
    config: &FileConfig,
    tracking: &TrackingSettings,
) -> anyhow::Result<Outcome> {
    for (flag, v) in [
        ("--min-accuracy", args.min_accuracy),
        ("--min-macro-f1", args.min_macro_f1),
    ] {
        if let Some(v) = v {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::Usage(format!("{flag} must be in [0, 1]; got {v}")).into());
            }
        }
    }
    let mut model = refs::load_model(&args.model, tracking)?;
    model.set_mc_samples(args.mc_samples);
    let spec = args.input.spec(&args.data, args.input_format, true);
    let mut records = read_all(&spec)?;
    super::mask_records(&args.input, &mut records);
    let batch = file_value(&config.classify.batch_size).unwrap_or(1024);
    let report = evaluate(
        &model,
        &records,
        &spec.target.name(),
        batch,
        args.cascade,
        &args.oos_label,
    )?;
    let run = ActiveRun::start(
        tracking,
        &format!("evaluate {}", model.manifest.name),
        "evaluate",
    )?;
    log_evaluation(
        &run.local,
        &args.model,
        &model,
        &spec.target.name(),
        &report,
    )?;
    match args.format {
        ReportFormat::Json => {
            ui::print(&serde_json::to_string(&report).expect("a report serialises"))?
        }
        ReportFormat::Text => ui::print(&summary(&report))?,
    }
    if let Some(dir) = &args.report_dir {
        let files = write_report(dir, &report)?;
        ui::note(&format!(
            "report written to {}: {}",
            dir.display(),
            files.join(", ")
        ));
    }
    if !report.unknown_labels.is_empty() {
        ui::warn(&format!(
            "{} labels in the data are unknown to the model and count as errors: {}",
            report.unknown_labels.len(),
            report
                .unknown_labels
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut failed = Vec::new();
    if let Some(min) = args.min_accuracy {
        if report.accuracy.is_nan() || report.accuracy < min {
            failed.push(format!(
                "accuracy {} is below --min-accuracy {}",
                pct(report.accuracy),
                pct(min)
            ));
        }
    }
    if let Some(min) = args.min_macro_f1 {
        if report.macro_f1.is_nan() || report.macro_f1 < min {
            failed.push(format!(
                "macro-F1 {:.4} is below --min-macro-f1 {min}",
                report.macro_f1
            ));
        }
    }
    if !failed.is_empty() {
        run.local.set_tag("cqr.gate", "failed")?;
    }
    let outcome = run.end(RunStatus::Finished, None)?;
    super::train::report_run(&outcome);
    if failed.is_empty() {
        Ok(Outcome::Success)
    } else {
        Ok(Outcome::Verdict(format!(
            "gate failed: {}",
            failed.join("; ")
        )))
    }
}

/// The evaluation as a run: the model it measured (tags), the metrics, and the report with its
/// plots as artifacts.
fn log_evaluation(
    run: &LocalRun,
    reference: &str,
    model: &Model,
    data: &str,
    r: &EvalReport,
) -> crate::Result<()> {
    run.log_param("model", reference)?;
    run.log_param("data", data)?;
    run.set_tag("cqr.model.name", &model.manifest.name)?;
    run.set_tag("cqr.model.version", &model.manifest.version)?;
    run.set_tag("cqr.model.checksum", &model.manifest.checksum)?;
    if let Ok(refs::ModelRef::Version { name, version }) = refs::ModelRef::parse(reference) {
        run.set_tag("cqr.registry.model", &format!("{name}/{version}"))?;
    }
    for (k, v) in [
        ("accuracy", r.accuracy),
        ("macro_f1", r.macro_f1),
        ("ece", r.ece),
        ("abstain_rate", r.abstain_rate),
        ("accuracy_answered", r.accuracy_answered),
        ("latency_ms_p50", r.latency_ms.p50),
        ("latency_ms_p95", r.latency_ms.p95),
        ("throughput_qps", r.throughput_qps),
        ("n", r.n as f64),
    ] {
        run.log_metric(k, v, 0)?;
    }
    let dir = run.dir.join("artifacts").join("report");
    write_report(&dir, r)?;
    Ok(())
}

fn summary(r: &EvalReport) -> String {
    let get = |k: &str| r.model_field(k);
    let mut s = format!(
        "model      {} {} ({})\ndata       {}: {} queries\naccuracy   {}   macro-F1 {:.4}   ECE {:.4}\nabstain    below {:.4}: {} abstained, accuracy when answering {}\nlatency    p50 {:.3} ms, p95 {:.3} ms per query; {:.0} queries/s in batches\n",
        get("name"),
        get("version"),
        &get("checksum")[..12.min(get("checksum").len())],
        r.data,
        r.n,
        pct(r.accuracy),
        r.macro_f1,
        r.ece,
        r.threshold,
        pct(r.abstain_rate),
        pct(r.accuracy_answered),
        r.latency_ms.p50,
        r.latency_ms.p95,
        r.throughput_qps,
    );
    if let Some(o) = &r.out_of_scope {
        s.push_str(&format!(
            "out-of-scope {} rows (`{}`): recall {} and precision {} at the threshold; AUROC {}\n",
            o.n_out_of_scope,
            o.label,
            pct(o.recall_at_threshold),
            pct(o.precision_at_threshold),
            o.auroc
                .iter()
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(f) = r.cascade_encoder_fraction {
        s.push_str(&format!(
            "cascade    {} of queries went through the encoder\n",
            pct(f)
        ));
    }
    if !r.confusions.is_empty() {
        s.push_str("confusions (truth → predicted)\n");
        for c in r.confusions.iter().take(5) {
            s.push_str(&format!(
                "  {:>4}  {} → {}\n",
                c.count, c.truth, c.predicted
            ));
        }
    }
    let mut worst: Vec<_> = r.per_intent.iter().filter(|(_, v)| v.support > 0).collect();
    worst.sort_by(|a, b| a.1.f1.total_cmp(&b.1.f1));
    if !worst.is_empty() {
        s.push_str("weakest intents (F1)\n");
        for (k, v) in worst.iter().take(3) {
            s.push_str(&format!("  {:.3}  {k} (support {})\n", v.f1, v.support));
        }
    }
    s
}
