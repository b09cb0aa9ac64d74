//! `cqr drift-check MODEL DATA`: arguments → [`DriftSettings`] → stream the batch through the
//! model into a scan → the check against the model's stored reference profile (or
//! `--reference DATA`) → the report on stdout, in `--report-dir`, in the run store and MLflow,
//! for Prometheus → `--retrain` when drift was found. Exit 1 on drift.

use std::path::PathBuf;

use clap::{Args, Parser};

use super::{InputArgs, Outcome, ReportArgs};
use crate::error::Error;
use crate::eval::report::ReportFormat;
use crate::io::read::{open, ReadSpec, Record};
use crate::io::Format;
use crate::models::bundle::read_profile;
use crate::models::Model;
use crate::monitor::drift::{check, DriftOptions, DriftReport, Subject};
use crate::monitor::exposition::{self, DriftMetrics};
use crate::monitor::profile::{Caps, Observation, Profile, ProfileBuilder, REFERENCE_CAPS};
use crate::monitor::report as drift_report;
use crate::monitor::scan::Scan;
use crate::settings::defaults::{self, help};
use crate::settings::{opts, pick, pick_optional, DriftSettings, FileConfig, TrainRecord};
use crate::tracking::http::{Auth, HttpClient, HttpSettings};
use crate::tracking::store::{LocalRun, RunStatus};
use crate::tracking::{refs, ActiveRun, TrackingSettings};
use crate::ui;

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Model: a bundle directory, models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/model.
    pub model: String,
    /// The batch to check (CSV, JSONL or Parquet; `-` for stdin). With --label-col, the batch's
    /// real accuracy is reported beside the estimate.
    pub data: String,
    /// Compare with this data instead of the reference profile stored in the model (for a
    /// model trained before drift-check, or to compare two batches).
    #[arg(long, value_name = "DATA")]
    pub reference: Option<String>,
    #[arg(long, value_name = "A", help = help(
        "Family-wise error rate: drift when a Holm-corrected p-value is below it",
        defaults::DRIFT_ALPHA,
    ))]
    pub alpha: Option<f64>,
    /// A test alarms only when its effect size also reaches this (PSI, KS D, abstention-rate
    /// change, MMD² or the rise in novel queries; see README): big batches make tiny shifts
    /// significant.
    #[arg(long, value_name = "E")]
    pub min_effect: Option<f64>,
    /// Alarm when the estimated accuracy is more than this (a share, 0.03 = 3 points) below the
    /// reference's accuracy.
    #[arg(long, value_name = "X")]
    pub max_accuracy_drop: Option<f64>,
    #[arg(long, value_name = "N", help = help(
        "Permutations of the embedding (MMD) test",
        defaults::PERMUTATIONS,
    ))]
    pub permutations: Option<usize>,
    #[arg(long, help = help("Seed of the samples and permutations", defaults::SEED))]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub report: ReportArgs,
    /// Also write report.md, report.html (self-contained), report.json and PNG plots here.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Write the Prometheus metrics here (text format, atomically) for node_exporter's
    /// textfile collector.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Push the Prometheus metrics to this Pushgateway (PUT: the job's old series are replaced).
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
    #[arg(long, value_name = "NAME", help = help("The Pushgateway job", defaults::PUSH_JOB))]
    pub job: Option<String>,
    /// A grouping label for the Pushgateway, KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// When drift is found, retrain on this labelled data through train's gates.
    #[arg(long, value_name = "DATA", requires = "retrain_output")]
    pub retrain: Option<String>,
    /// Where the retrained bundle goes.
    #[arg(long, value_name = "DIR", requires = "retrain")]
    pub retrain_output: Option<PathBuf>,
    /// Retrain gate: write nothing when the new model's validation accuracy is below this.
    #[arg(long, value_name = "ACC", requires = "retrain")]
    pub min_accuracy: Option<f64>,
    /// Register the retrained bundle under this name.
    #[arg(long, value_name = "NAME", requires = "retrain")]
    pub register: Option<String>,
    /// Point this alias at the retrained version.
    #[arg(long, requires = "register")]
    pub alias: Option<String>,
    /// Move the alias only if the retrained model beats its holder on the same rows.
    #[arg(long, requires = "alias")]
    pub promote_if_better: bool,
    /// Replace an existing bundle at --retrain-output.
    #[arg(long, requires = "retrain")]
    pub force: bool,
    /// Input format of DATA and --reference (default: from the extension; stdin is JSONL).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub input: InputArgs,
}

// Resolution lives beside the arguments it reads, so `settings` never imports `cli`.
impl DriftSettings {
    pub fn resolve(args: &DriftArgs, config: &FileConfig) -> crate::Result<DriftSettings> {
        let f = &config.drift;
        let alpha = pick(
            config,
            opts::ALPHA,
            args.alpha,
            &f.alpha,
            defaults::DRIFT_ALPHA,
        )?
        .check(|a| *a > 0.0 && *a < 1.0, "must be in (0, 1)")?;
        let permutations = pick(
            config,
            opts::PERMUTATIONS,
            args.permutations,
            &f.permutations,
            defaults::PERMUTATIONS,
        )?
        .check(|&n| n <= 1_000_000, "must be at most 1000000")?;
        let min_effect = pick_optional(config, opts::MIN_EFFECT, args.min_effect, &f.min_effect)?
            .map(|s| s.check(|e| *e >= 0.0, "must be at least 0"))
            .transpose()?;
        let max_drop = pick_optional(
            config,
            opts::MAX_ACCURACY_DROP,
            args.max_accuracy_drop,
            &f.max_accuracy_drop,
        )?
        .map(|s| s.check(|x| (0.0..=1.0).contains(x), "must be in [0, 1]"))
        .transpose()?;
        let seed = pick(config, opts::DRIFT_SEED, args.seed, &f.seed, defaults::SEED)?;
        let labels = args
            .labels
            .iter()
            .map(|l| exposition::parse_label(l).map_err(Error::Usage))
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(DriftSettings {
            input_format: args.format,
            report: args.report.asked().unwrap_or(ReportFormat::Text),
            options: DriftOptions {
                alpha: alpha.value,
                min_effect: min_effect.map(|s| s.value),
                max_accuracy_drop: max_drop.map(|s| s.value),
                permutations: permutations.value,
                seed: seed.value,
            },
            labels,
        })
    }
}

/// Queries scored together as the batch streams through.
const CHUNK: usize = 1024;

pub fn run(
    args: DriftArgs,
    config: &FileConfig,
    tracking: &TrackingSettings,
) -> anyhow::Result<Outcome> {
    let settings = DriftSettings::resolve(&args, config)?;
    if args.data == "-" && args.reference.as_deref() == Some("-") {
        return Err(
            Error::Usage("the batch and --reference cannot both come from stdin".into()).into(),
        );
    }
    if args.pushgateway.is_some() {
        // Checked before any work: a bad job or label must not cost a whole check.
        let job = args.job.as_deref().unwrap_or(defaults::PUSH_JOB);
        exposition::push_path(job, &settings.labels).map_err(Error::Usage)?;
    }
    let model = refs::load_model(&args.model, tracking)?;
    let n_classes = model.labels().len();
    let dim = model.embedding_dim().unwrap_or(0);
    let (reference, reference_name) = reference_profile(&args, &settings, &model)?;
    let labelled = args.input.label_col.is_some();
    let spec = args.input.spec(&args.data, settings.input_format, labelled);
    let mut scan = Scan::new(
        &reference,
        n_classes,
        dim,
        batch_caps(settings.options.seed),
    );
    let bar = ui::progress(None, "checking");
    let rows = stream(&spec, &model, |records, observed, embeddings| {
        scan.push_chunk(records, observed, embeddings);
        bar.inc(records.len() as u64);
    })?;
    bar.finish_and_clear();
    if rows == 0 {
        return Err(Error::Empty {
            source_name: spec.target.name(),
            why: "the batch holds no data rows: there is nothing to check".into(),
        }
        .into());
    }
    let m = model.model_ref();
    let subject = Subject {
        model: m.name,
        version: m.version,
        checksum: m.checksum,
        data: spec.target.name(),
        reference: reference_name,
    };
    let oov = model.has_vocabulary();
    let scanned = scan.finish();
    let report = check(
        subject,
        &reference,
        &scanned,
        model.labels(),
        oov,
        &settings.options,
    );
    publish(
        &args,
        &settings,
        &report,
        (&reference, &scanned.profile),
        tracking,
    )?;
    if !report.drift {
        return Ok(Outcome::Success);
    }
    if let Some(data) = &args.retrain {
        retrain(&args, data, &model, config, tracking)?;
    }
    Ok(Outcome::Verdict(format!(
        "drift: {}",
        report.reasons.join("; ")
    )))
}

/// The batch's sample caps: every row's values up to 200,000 (KS on more gains nothing), and
/// the MMD test's embeddings.
fn batch_caps(seed: u64) -> Caps {
    Caps {
        values: 200_000,
        embeddings: crate::monitor::drift::MMD_ROWS,
        novelty: 0,
        seed: seed ^ 0xba7c,
    }
}

/// The reference: `--reference DATA` profiled now, else the profile stored in the bundle.
fn reference_profile(
    args: &DriftArgs,
    settings: &DriftSettings,
    model: &Model,
) -> anyhow::Result<(Profile, String)> {
    if let Some(data) = &args.reference {
        let spec = args
            .input
            .spec(data, settings.input_format, args.input.label_col.is_some());
        let dim = model.embedding_dim().unwrap_or(0);
        let mut b = ProfileBuilder::new(model.labels().len(), dim, REFERENCE_CAPS);
        let rows = stream(&spec, model, |_, observed, embeddings| {
            for (i, o) in observed.iter().enumerate() {
                b.push(o, embeddings.map(|e| &e[i * dim..(i + 1) * dim]));
            }
        })?;
        if rows == 0 {
            return Err(Error::Empty {
                source_name: spec.target.name(),
                why: "the reference holds no data rows".into(),
            }
            .into());
        }
        return Ok((b.finish(), spec.target.name()));
    }
    let stored = model.manifest.profile.as_ref().ok_or_else(|| {
        Error::model(
            &model.path,
            "has no drift reference profile (it was trained before drift-check existed); \
             pass --reference DATA to profile data the model is known to do well on, or retrain it",
        )
    })?;
    let profile = read_profile(&model.path, stored)?;
    Ok((
        profile,
        format!("the model's stored profile ({})", stored.source),
    ))
}

/// Streams `spec`'s records through `model` in chunks, masked the way the model was trained,
/// handing each chunk's records, observations and embeddings to `each`. Returns the row count.
fn stream(
    spec: &ReadSpec,
    model: &Model,
    mut each: impl FnMut(&[Record], &[Observation], Option<&[f32]>),
) -> crate::Result<u64> {
    let mut records = open(spec)?;
    let mut rows = 0u64;
    loop {
        let mut chunk: Vec<Record> = records.by_ref().take(CHUNK).collect::<crate::Result<_>>()?;
        if chunk.is_empty() {
            return Ok(rows);
        }
        crate::pipeline::mask_for_model(model.manifest.masking, &mut chunk);
        let (observed, embeddings) = crate::pipeline::observe(model, &chunk)?;
        each(&chunk, &observed, embeddings.as_deref());
        rows += chunk.len() as u64;
    }
}

/// Prints the report, writes it where asked, records the run and exports the metrics.
fn publish(
    args: &DriftArgs,
    settings: &DriftSettings,
    report: &DriftReport,
    profiles: (&Profile, &Profile),
    tracking: &TrackingSettings,
) -> anyhow::Result<()> {
    let run = ActiveRun::start(
        tracking,
        &format!("drift-check {}", report.subject.model),
        "drift-check",
    )?;
    log_check(&run.local, &args.model, report)?;
    let files = match &args.report_dir {
        Some(dir) => {
            let files = drift_report::write(dir, report, profiles)?;
            for f in &files {
                run.local
                    .add_artifact(&format!("{REPORT}/{f}"), &dir.join(f))?;
            }
            Some((dir, files))
        }
        None => {
            let json = serde_json::to_vec_pretty(report).expect("a report serialises");
            run.local
                .add_artifact_bytes(&format!("{REPORT}/report.json"), &json)?;
            None
        }
    };
    ui::print(&match settings.report {
        ReportFormat::Json => serde_json::to_string(report).expect("a report serialises"),
        ReportFormat::Text => drift_report::summary(report),
    })?;
    if let Some((dir, files)) = files {
        ui::note(&format!(
            "report written to {}: {}",
            dir.display(),
            files.join(", ")
        ));
    }
    let metrics = DriftMetrics::of(report, crate::tracking::store::now_ms() as f64 / 1000.0);
    let text = exposition::encode(&metrics);
    if let Some(path) = &args.metrics_file {
        crate::io::write::write_atomic(path, text.as_bytes())?;
        ui::note(&format!("metrics written to {}", path.display()));
    }
    if let Some(url) = &args.pushgateway {
        let job = args.job.as_deref().unwrap_or(defaults::PUSH_JOB);
        let path = exposition::push_path(job, &settings.labels).map_err(Error::Usage)?;
        // No credentials: MLflow's must never reach another server.
        let client = HttpClient::new(url, Auth::None, HttpSettings::default());
        client.send(
            "PUT",
            &path,
            Some((text.as_bytes(), exposition::CONTENT_TYPE)),
        )?;
        ui::note(&format!("metrics pushed to {url}{path}"));
    }
    run.local
        .set_tag("cqr.drift", if report.drift { "detected" } else { "none" })?;
    let outcome = run.end(RunStatus::Finished, None)?;
    super::train::report_run(&outcome);
    Ok(())
}

/// Where the report goes among the run's artifacts.
const REPORT: &str = "drift-report";

/// The check as a run: the model it checked (tags), the data, every test's figures.
fn log_check(run: &LocalRun, reference: &str, r: &DriftReport) -> crate::Result<()> {
    run.log_param("model", reference)?;
    run.log_param("data", &r.subject.data)?;
    run.log_param("reference", &r.subject.reference)?;
    run.log_param("alpha", &r.alpha.to_string())?;
    run.set_tag("cqr.model.name", &r.subject.model)?;
    run.set_tag("cqr.model.version", &r.subject.version)?;
    run.set_tag("cqr.model.checksum", &r.subject.checksum)?;
    for (k, v) in drift_report::run_metrics(r) {
        run.log_metric(&k, v, 0)?;
    }
    Ok(())
}

/// Retrains on `data` through `train`'s own command (its gates, registration and alias move),
/// with the recipe the checked model was trained with where the bundle recorded it.
fn retrain(
    args: &DriftArgs,
    data: &str,
    model: &Model,
    config: &FileConfig,
    tracking: &TrackingSettings,
) -> anyhow::Result<()> {
    let out = args
        .retrain_output
        .as_ref()
        .expect("clap requires it with --retrain");
    let mut argv: Vec<String> = vec![
        "cqr".into(),
        "train".into(),
        data.into(),
        "-o".into(),
        out.display().to_string(),
    ];
    match serde_json::from_value::<TrainRecord>(model.manifest.training.args.clone()) {
        Ok(record) => argv.extend(recipe(&record)),
        Err(e) => ui::warn(&format!(
            "the checked model's training settings cannot be read back ({e}); retraining with \
             train's own settings"
        )),
    }
    let mut flag = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            argv.extend([name.to_string(), v]);
        }
    };
    flag("--min-accuracy", args.min_accuracy.map(|v| v.to_string()));
    flag("--register", args.register.clone());
    flag("--alias", args.alias.clone());
    flag("--text-col", Some(args.input.text_col.clone()));
    flag("--label-col", args.input.label_col.clone());
    if args.promote_if_better {
        argv.push("--promote-if-better".into());
    }
    if args.force {
        argv.push("--force".into());
    }
    if args.input.no_mask {
        argv.push("--no-mask".into());
    }
    ui::note(&format!(
        "drift found: retraining ({})",
        argv[1..].join(" ")
    ));
    let cli = super::Cli::try_parse_from(&argv)?;
    let super::Command::Train(train_args) = cli.command else {
        unreachable!("the argument list starts with `train`")
    };
    match super::train::run(train_args, config, tracking)? {
        Outcome::Success => ui::note(&format!("retrained model written to {}", out.display())),
        Outcome::Verdict(why) => ui::warn(&format!("retraining stopped at a gate: {why}")),
    }
    Ok(())
}

/// The training flags of the checked model's recorded settings that `train` takes back.
fn recipe(r: &TrainRecord) -> Vec<String> {
    let mut out = Vec::new();
    if !r.components.is_empty() {
        out.extend(["--components".to_string(), r.components.join(",")]);
    }
    out.extend([
        "--seed".to_string(),
        r.seed.to_string(),
        "--target-precision".to_string(),
        r.target_precision.to_string(),
        "--valid-split".to_string(),
        r.valid_split.to_string(),
        "--max-reject".to_string(),
        r.max_reject.to_string(),
        "--oos-label".to_string(),
        r.oos_label.clone(),
    ]);
    if r.oos_as_class {
        out.push("--oos-as-class".into());
    }
    if let Some(e) = &r.encoder {
        out.extend(["--encoder".to_string(), e.clone()]);
    }
    if !r.refit {
        out.push("--no-refit".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn drift_args(extra: &[&str]) -> DriftArgs {
        let argv = ["cqr", "drift-check", "m", "batch.csv"];
        match Cli::parse_from(argv.iter().chain(extra)).command {
            Command::DriftCheck(a) => a,
            _ => unreachable!("a drift-check command line"),
        }
    }

    #[test]
    fn defaults_flags_and_the_file_resolve_in_order() {
        let none = FileConfig::default();
        let s = DriftSettings::resolve(&drift_args(&[]), &none).unwrap();
        assert_eq!(s.options.alpha, defaults::DRIFT_ALPHA);
        assert_eq!(s.options.permutations, defaults::PERMUTATIONS);
        assert_eq!(
            (s.options.min_effect, s.options.max_accuracy_drop),
            (None, None)
        );
        let file = FileConfig::parse(
            Path::new("cqr.toml"),
            "[drift]\nalpha = 0.01\nmin_effect = 0.1\n".into(),
        )
        .unwrap();
        let s = DriftSettings::resolve(&drift_args(&["--alpha", "0.02"]), &file).unwrap();
        assert_eq!((s.options.alpha, s.options.min_effect), (0.02, Some(0.1)));
        let err = DriftSettings::resolve(&drift_args(&["--alpha", "1.5"]), &none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--alpha must be in (0, 1)"), "{err}");
        let err = DriftSettings::resolve(&drift_args(&["--label", "job=x"]), &none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'job'"), "{err}");
    }

    #[test]
    fn the_recipe_takes_back_what_train_recorded() {
        let record = TrainRecord {
            data: "train.csv".into(),
            valid: None,
            valid_split: 0.2,
            seed: 7,
            target_precision: 0.9,
            max_reject: 0.1,
            oos_label: "none".into(),
            oos_as_class: true,
            min_accuracy: None,
            components: vec!["linear".into(), "encoder".into()],
            encoder: Some("models/x".into()),
            features: defaults::feature_spec(),
            linear: defaults::linear_params(),
            refit: false,
            text_col: "text".into(),
            label_col: None,
            register: None,
            alias: None,
            promote_if_better: false,
        };
        assert_eq!(
            recipe(&record).join(" "),
            "--components linear,encoder --seed 7 --target-precision 0.9 --valid-split 0.2 \
             --max-reject 0.1 --oos-label none --oos-as-class --encoder models/x --no-refit"
        );
        // What a bundle keeps is what the recipe reads.
        let back: TrainRecord = serde_json::from_value(record.to_json()).unwrap();
        assert_eq!(recipe(&back), recipe(&record));
    }
}
