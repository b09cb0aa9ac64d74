//! `cqr evaluate MODEL DATA`: arguments → [`EvaluateSettings`] → score and measure the labelled
//! data → print the report (text or JSON) → optionally write it with plots → the `--min-*` gates.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{InputArgs, Outcome, ReportArgs};
use crate::eval::compare::{best_intents, Comparison};
use crate::eval::evaluate;
use crate::eval::report::{write_report, ReportFormat};
use crate::eval::{EvalOptions, EvalReport};
use crate::io::read::{read_all, Record};
use crate::io::Format;
use crate::models::Model;
use crate::settings::defaults::{self, help};
use crate::settings::{opts, pick_plain, share_flag, EvaluateSettings, FileConfig};
use crate::tracking::store::{LocalRun, RunStatus};
use crate::tracking::{refs, ActiveRun, TrackingSettings};
use crate::ui;

/// `--format`: the data's format, as on every command. `json` and `text` are the report formats
/// `--format` used to choose here; they still work, with a deprecation warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Csv,
    /// One JSON object per line (also `.ndjson`).
    Jsonl,
    Parquet,
    /// One raw query per line.
    Lines,
    #[value(hide = true)]
    Json,
    #[value(hide = true)]
    Text,
}

impl FormatArg {
    /// The input format, or the report format of the deprecated spelling.
    pub fn split(self) -> (Option<Format>, Option<ReportFormat>) {
        match self {
            FormatArg::Csv => (Some(Format::Csv), None),
            FormatArg::Jsonl => (Some(Format::Jsonl), None),
            FormatArg::Parquet => (Some(Format::Parquet), None),
            FormatArg::Lines => (Some(Format::Lines), None),
            FormatArg::Json => (None, Some(ReportFormat::Json)),
            FormatArg::Text => (None, Some(ReportFormat::Text)),
        }
    }
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Model: a bundle directory, models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/model.
    pub model: String,
    /// Labelled data (CSV, JSONL or Parquet; `-` for stdin).
    pub data: String,
    /// Input format (default: from the extension; stdin is JSONL).
    #[arg(long, value_enum, value_name = "FORMAT", alias = "input-format")]
    pub format: Option<FormatArg>,
    #[command(flatten)]
    pub report: ReportArgs,
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
    #[arg(long, value_name = "LABEL", help = help(
        "The label that marks out-of-scope rows in the data",
        defaults::OOS_LABEL,
    ))]
    pub oos_label: Option<String>,
    /// Also score this model (a bundle or registry reference) on the same rows and compare:
    /// both models' metrics, the accuracy difference with a 95% interval, McNemar's exact test,
    /// the per-intent F1 differences.
    #[arg(long, value_name = "OTHER")]
    pub compare: Option<String>,
    /// Gate: exit 1 when accuracy is below this.
    #[arg(long, value_name = "ACC")]
    pub min_accuracy: Option<f64>,
    /// Gate: exit 1 when macro-F1 is below this.
    #[arg(long, value_name = "F1")]
    pub min_macro_f1: Option<f64>,
    #[command(flatten)]
    pub input: InputArgs,
}

// Resolution lives beside the arguments it reads, so `settings` never imports `cli`.
impl EvaluateSettings {
    pub fn resolve(args: &EvaluateArgs, config: &FileConfig) -> crate::Result<EvaluateSettings> {
        let batch_size = pick_plain(
            config,
            opts::EVAL_BATCH_SIZE,
            None,
            &config.classify.batch_size,
            defaults::BATCH_SIZE,
        )
        .check(|&n| n >= 1, "must be at least 1")?;
        let (input_format, old_report) = args.format.map(FormatArg::split).unwrap_or_default();
        let mut warnings = Vec::new();
        if let Some(old) = old_report {
            let new = match old {
                ReportFormat::Json => "--json or --output-format json",
                ReportFormat::Text => "--output-format text",
            };
            warnings.push(format!(
                "--format {old} is deprecated for the report; use {new}"
            ));
        }
        let report = args
            .report
            .asked()
            .or(old_report)
            .unwrap_or(ReportFormat::Text);
        Ok(EvaluateSettings {
            input_format,
            report,
            min_accuracy: share_flag("--min-accuracy", args.min_accuracy)?,
            min_macro_f1: share_flag("--min-macro-f1", args.min_macro_f1)?,
            options: EvalOptions {
                batch_size: batch_size.value,
                cascade: args.cascade,
                oos_label: args
                    .oos_label
                    .clone()
                    .unwrap_or_else(|| defaults::OOS_LABEL.to_string()),
            },
            mc_samples: args.mc_samples,
            warnings,
        })
    }
}

pub fn run(
    args: EvaluateArgs,
    config: &FileConfig,
    tracking: &TrackingSettings,
) -> anyhow::Result<Outcome> {
    let settings = EvaluateSettings::resolve(&args, config)?;
    for warning in &settings.warnings {
        ui::warn(warning);
    }
    let mut model = refs::load_model(&args.model, tracking)?;
    model.set_mc_samples(settings.mc_samples);
    let spec = args.input.spec(&args.data, settings.input_format, true);
    let other = match &args.compare {
        Some(o) => Some((o.as_str(), refs::load_model(o, tracking)?)),
        None => None,
    };
    let mut records = read_all(&spec)?;
    // The other model sees the rows masked its own way: a copy only when that differs.
    let masking = model.manifest.masking;
    let raw = other
        .as_ref()
        .filter(|(_, b)| b.manifest.masking != masking)
        .map(|(_, b)| {
            let mut copy = records.clone();
            crate::pipeline::mask_for_model(b.manifest.masking, &mut copy);
            copy
        });
    // Scored like classify scores: masked the way the model was trained, whatever --no-mask says.
    crate::pipeline::mask_for_model(masking, &mut records);
    let data_name = spec.target.name();
    let mut report = evaluate(&model, &records, &data_name, &settings.options)?;
    if let Some((name, b)) = &other {
        let rows_b = raw.as_deref().unwrap_or(&records);
        report.comparison = Some(compare_with(
            (&args.model, &model, &records),
            (name, b, rows_b),
            &settings.options,
        )?);
    }
    let run = ActiveRun::start(
        tracking,
        &format!("evaluate {}", model.manifest.name),
        "evaluate",
    )?;
    log_evaluation(&run.local, &args.model, &model, &data_name, &report)?;
    if args.report_dir.is_none() {
        write_report(&run.local.dir.join("artifacts").join(REPORT), &report)?;
    }
    ui::print(&settings.report.render(&report))?;
    if let Some(dir) = &args.report_dir {
        // Rendered once, into the directory asked for; the run keeps copies of those files.
        let files = write_report(dir, &report)?;
        for f in &files {
            run.local
                .add_artifact(&format!("{REPORT}/{f}"), &dir.join(f))?;
        }
        ui::note(&format!(
            "report written to {}: {}",
            dir.display(),
            files.join(", ")
        ));
    }
    if let Some(warning) = report.unknown_labels_warning() {
        ui::warn(&warning);
    }
    let failed = report.failed_gates(settings.min_accuracy, settings.min_macro_f1);
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

/// Model A against model B on the same in-scope rows, each given the rows masked the way it
/// was trained.
fn compare_with(
    (name_a, a, rows_a): (&str, &Model, &[Record]),
    (name_b, b, rows_b): (&str, &Model, &[Record]),
    options: &EvalOptions,
) -> crate::Result<Comparison> {
    let known = |m: &Model, l: &str| m.labels().iter().any(|x| x == l);
    // Out-of-scope rows are no intent's to get right; they are measured apart.
    let in_scope = |r: &&Record| {
        let l = r.label.as_deref().unwrap_or("");
        l != options.oos_label || known(a, l) || known(b, l)
    };
    let ra: Vec<&Record> = rows_a.iter().filter(in_scope).collect();
    let rb: Vec<&Record> = rows_b.iter().filter(in_scope).collect();
    let truth: Vec<&str> = ra
        .iter()
        .map(|r| r.label.as_deref().unwrap_or(""))
        .collect();
    let pa = best_intents(a, &ra, options.batch_size)?;
    let pb = best_intents(b, &rb, options.batch_size)?;
    Ok(Comparison::of(&truth, (name_a, &pa), (name_b, &pb)))
}

/// Where the report and its plots go among the run's artifacts.
const REPORT: &str = "report";

/// The evaluation as a run: the model it measured (tags) and the metrics; `run` adds the report
/// with its plots as artifacts.
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
    for (k, v) in r.run_metrics() {
        run.log_metric(k, v, 0)?;
    }
    if let Some(c) = &r.comparison {
        run.log_param("compare", &c.b.model)?;
        for (k, v) in c.run_metrics() {
            run.log_metric(k, v, 0)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn evaluate_args(extra: &[&str]) -> EvaluateArgs {
        let argv = ["cqr", "evaluate", "m", "data.csv"];
        match Cli::parse_from(argv.iter().chain(extra)).command {
            Command::Evaluate(a) => a,
            _ => unreachable!("an evaluate command line"),
        }
    }

    fn file(text: &str) -> FileConfig {
        FileConfig::parse(Path::new("cqr.toml"), text.into()).unwrap()
    }

    #[test]
    fn evaluate_format_is_the_input_format_and_the_old_spelling_warns() {
        let none = FileConfig::default();
        let s = EvaluateSettings::resolve(&evaluate_args(&["--format", "csv"]), &none).unwrap();
        assert_eq!(
            (s.input_format, s.report, s.warnings.len()),
            (Some(Format::Csv), ReportFormat::Text, 0)
        );
        for new in [&["--json"][..], &["--output-format", "json"]] {
            let s = EvaluateSettings::resolve(&evaluate_args(new), &none).unwrap();
            assert_eq!((s.input_format, s.report), (None, ReportFormat::Json));
            assert!(s.warnings.is_empty());
        }
        let s = EvaluateSettings::resolve(&evaluate_args(&["--format", "json"]), &none).unwrap();
        assert_eq!((s.input_format, s.report), (None, ReportFormat::Json));
        assert_eq!(
            s.warnings,
            ["--format json is deprecated for the report; use --json or --output-format json"]
        );
        assert_eq!(s.options.oos_label, defaults::OOS_LABEL);
        assert_eq!(s.options.batch_size, defaults::BATCH_SIZE);
    }

    #[test]
    fn evaluate_checks_its_gates_and_batch_size_where_they_were_set() {
        let none = FileConfig::default();
        let err = EvaluateSettings::resolve(&evaluate_args(&["--min-macro-f1", "2"]), &none)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--min-macro-f1 must be in [0, 1]; got 2 from --min-macro-f1 on the command line"
        );
        let c = file("[classify]\nbatch_size = 0\n");
        let err = EvaluateSettings::resolve(&evaluate_args(&[]), &c)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "classify.batch_size must be at least 1; got 0 from `classify.batch_size` in cqr.toml line 2"
        );
    }
}
