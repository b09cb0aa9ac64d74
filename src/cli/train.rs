//! `cqr train DATA -o models/NAME`: resolve settings, read the data, train, apply the
//! `--min-accuracy` gate, write the bundle, print a summary.

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};

use super::{InputArgs, Outcome};
use crate::error::Error;
use crate::eval::report::pct;
use crate::io::read::Record;
use crate::io::read::{read_all, ReadSpec};
use crate::io::write::flatten;
use crate::io::{Format, Target};
use crate::models::bundle::check_destination;
use crate::models::encoder;
use crate::models::finetune::FineTuneParams;
use crate::models::linear::LinearParams;
use crate::models::train::{
    fingerprint, stratified_split, train, EncoderParams, HeadKind, TrainParams, ValidTrainParams,
};
use crate::settings::{file_value, FileConfig};
use crate::text::FeatureSpec;
use crate::tracking::store::{Dataset, LocalRun, Registration, RunStatus};
use crate::tracking::{refs, ActiveRun, RunOutcome, TrackingSettings};
use crate::ui;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Labelled training data (CSV, JSONL or Parquet; `-` for stdin).
    pub data: String,
    /// Where to write the model bundle (a directory).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Model name stored in the bundle (default: the output directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Validation data; without it, --valid-split of the training data is held out.
    #[arg(long, value_name = "DATA")]
    pub valid: Option<String>,
    /// Share of each label held out for validation when --valid is not given [default: 0.1].
    #[arg(long, env = "CQR_VALID_SPLIT", value_name = "SHARE")]
    pub valid_split: Option<f64>,
    /// Seed for the validation split; the same seed and data give identical predictions [default: 42].
    #[arg(long, env = "CQR_SEED")]
    pub seed: Option<u64>,
    /// Abstain below the lowest confidence that keeps this precision on validation [default: 0.95].
    #[arg(long, value_name = "P")]
    pub target_precision: Option<f64>,
    /// Gate: exit 1 and write nothing when validation accuracy is below this.
    #[arg(long, value_name = "ACC")]
    pub min_accuracy: Option<f64>,
    /// Components to train and ensemble: linear, encoder [default: linear,encoder when the
    /// encoder is present, else linear].
    #[arg(long, value_delimiter = ',')]
    pub components: Option<Vec<String>>,
    /// The encoder component's head: logistic, or mlp (dropout; enables MC dropout).
    #[arg(long, value_enum, default_value = "logistic")]
    pub head: HeadKind,
    /// Fine-tune the encoder itself on the training data before fitting its head (minutes per
    /// epoch on a laptop-class CPU; the bundle then carries the fine-tuned weights).
    #[arg(long)]
    pub fine_tune: bool,
    /// Fine-tuning epochs (early stopping on validation may end sooner) [default: 4].
    #[arg(long, value_name = "N", requires = "fine_tune")]
    pub epochs: Option<usize>,
    /// Peak fine-tuning learning rate, after warm-up [default: 1e-4].
    #[arg(long, value_name = "LR", requires = "fine_tune")]
    pub learning_rate: Option<f64>,
    /// Sentence-transformers folder for the encoder component.
    #[arg(long, env = "CQR_ENCODER", value_name = "DIR", default_value = encoder::DEFAULT_DIR)]
    pub encoder: PathBuf,
    /// Ignore n-grams seen in fewer training texts than this [default: 2].
    #[arg(long, value_name = "N")]
    pub min_df: Option<u32>,
    /// Solver iterations per regularisation strength [default: 300].
    #[arg(long, value_name = "N")]
    pub max_iter: Option<usize>,
    /// Keep the model fitted on the training split only, instead of refitting on training +
    /// validation with the chosen regularisation.
    #[arg(long)]
    pub no_refit: bool,
    /// Register the bundle in the model registry under this name (needs a tracking server).
    #[arg(long, value_name = "NAME")]
    pub register: Option<String>,
    /// Point this alias (e.g. champion) at the new version.
    #[arg(long, requires = "register")]
    pub alias: Option<String>,
    /// Move the alias only if the new model beats the current holder on the same validation data.
    #[arg(long, requires = "alias")]
    pub promote_if_better: bool,
    /// Replace an existing bundle at the output path.
    #[arg(long)]
    pub force: bool,
    /// Input format (default: from the extension; stdin is JSONL).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub input: InputArgs,
}

pub fn run(
    args: TrainArgs,
    config: &FileConfig,
    tracking: &TrackingSettings,
) -> anyhow::Result<Outcome> {
    let file = &config.train;
    let encoder_present = args.encoder.join("model.safetensors").is_file();
    let components = match &args.components {
        Some(c) => c.clone(),
        None if encoder_present => vec!["linear".to_string(), "encoder".to_string()],
        None => {
            ui::note(&format!(
                "no encoder in {}: training the linear component only (scripts/fetch-model.sh fetches all-MiniLM-L6-v2)",
                args.encoder.display()
            ));
            vec!["linear".to_string()]
        }
    };
    for c in &components {
        if c != "linear" && c != "encoder" {
            return Err(Error::Usage(format!(
                "unknown component `{c}`; components are: linear, encoder"
            ))
            .into());
        }
    }
    if !components.iter().any(|c| c == "linear") {
        return Err(Error::Usage(
            "this build ensembles the encoder with the linear component: include `linear`".into(),
        )
        .into());
    }
    let with_encoder = components.iter().any(|c| c == "encoder");
    if args.fine_tune && !with_encoder {
        return Err(Error::Usage(
            "--fine-tune tunes the encoder component: include `encoder` in --components".into(),
        )
        .into());
    }
    if with_encoder && !encoder_present {
        return Err(Error::model(
            &args.encoder,
            "no model.safetensors: fetch the default encoder with `scripts/fetch-model.sh` or point --encoder at a sentence-transformers folder",
        )
        .into());
    }
    if let Some(m) = args.min_accuracy {
        if !(0.0..=1.0).contains(&m) {
            return Err(Error::Usage(format!("--min-accuracy must be in [0, 1]; got {m}")).into());
        }
    }
    let defaults = LinearParams::default();
    let params = TrainParams {
        seed: args.seed.or(file_value(&file.seed)).unwrap_or(42),
        valid_split: args
            .valid_split
            .or(file_value(&file.valid_split))
            .unwrap_or(0.1),
        target_precision: args
            .target_precision
            .or(file_value(&file.target_precision))
            .unwrap_or(0.95),
        features: FeatureSpec {
            min_df: args
                .min_df
                .or(file_value(&file.min_df))
                .unwrap_or(FeatureSpec::default().min_df),
            word_ngrams: file_value(&file.word_ngrams)
                .unwrap_or(FeatureSpec::default().word_ngrams),
            char_ngrams: file_value(&file.char_ngrams)
                .unwrap_or(FeatureSpec::default().char_ngrams),
            ..FeatureSpec::default()
        },
        refit: !args.no_refit && file_value(&file.refit).unwrap_or(true),
        encoder: with_encoder.then(|| EncoderParams {
            dir: args.encoder.clone(),
            max_len: encoder::DEFAULT_MAX_LEN,
            alpha: file_value(&file.head_alpha).unwrap_or(0.1),
            max_iter: 300,
            head: args.head,
            fine_tune: args.fine_tune.then(|| {
                let d = FineTuneParams::default();
                FineTuneParams {
                    epochs: args.epochs.or(file_value(&file.epochs)).unwrap_or(d.epochs),
                    lr: args
                        .learning_rate
                        .or(file_value(&file.fine_tune_lr))
                        .unwrap_or(d.lr),
                    head_lr: file_value(&file.fine_tune_head_lr).unwrap_or(d.head_lr),
                    warm_start: file_value(&file.fine_tune_warm_start).unwrap_or(d.warm_start),
                    batch: file_value(&file.fine_tune_batch).unwrap_or(d.batch),
                    max_len: file_value(&file.fine_tune_max_len).unwrap_or(d.max_len),
                    freeze_words: file_value(&file.fine_tune_freeze_words)
                        .unwrap_or(d.freeze_words),
                    seed: args.seed.or(file_value(&file.seed)).unwrap_or(42),
                    ..d
                }
            }),
        }),
        linear: LinearParams {
            l2_grid: file_value(&file.l2_grid).unwrap_or(defaults.l2_grid),
            max_iter: args
                .max_iter
                .or(file_value(&file.max_iter))
                .unwrap_or(defaults.max_iter),
        },
    }
    .validate()?;
    check_destination(&args.output, args.force)?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .output
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "model".into()),
    };

    let spec: ReadSpec = args.input.spec(&args.data, args.format, true);
    let mut records = read_all(&spec)?;
    super::mask_records(&args.input, &mut records);
    let valid_records = match &args.valid {
        Some(v) => {
            if v == "-" && args.data == "-" {
                return Err(Error::Usage(
                    "training and validation data cannot both come from stdin".into(),
                )
                .into());
            }
            let mut v = read_all(&args.input.spec(v, args.format, true))?;
            super::mask_records(&args.input, &mut v);
            Some(v)
        }
        None => None,
    };
    let p = params.params();
    let (train_set, valid_set, valid_name): (Vec<&Record>, Vec<&Record>, String) =
        match &valid_records {
            Some(v) => (
                records.iter().collect(),
                v.iter().collect(),
                Target::parse(args.valid.as_deref().unwrap_or("-")).name(),
            ),
            None => {
                let (t, v) = stratified_split(&records, p.valid_split, p.seed);
                (
                    t,
                    v,
                    format!(
                        "{} (held-out {:.0}%)",
                        spec.target.name(),
                        p.valid_split * 100.0
                    ),
                )
            }
        };
    let resolved = json!({
        "data": spec.target.name(),
        "valid": args.valid,
        "valid_split": p.valid_split,
        "seed": p.seed,
        "target_precision": p.target_precision,
        "min_accuracy": args.min_accuracy,
        "components": components,
        "encoder": with_encoder.then(|| args.encoder.display().to_string()),
        "features": p.features,
        "linear": p.linear,
        "refit": p.refit,
        "text_col": args.input.text_col,
        "label_col": args.input.label_col,
        "register": args.register,
        "alias": args.alias,
        "promote_if_better": args.promote_if_better,
    });
    let run = ActiveRun::start(tracking, &format!("train {name}"), "train")?;
    let logged = log_start(
        &run.local,
        &resolved,
        (&spec.target.name(), &train_set),
        (&valid_name, &valid_set),
    );
    let result = logged.map_err(anyhow::Error::from).and_then(|_| {
        train_and_save(
            &args,
            &params,
            &name,
            &resolved,
            &run.local,
            (&spec.target.name(), &train_set),
            (&valid_name, &valid_set),
            tracking,
        )
    });
    match result {
        Ok(TrainEnd::Written(summary, register)) => {
            let outcome = run.end(RunStatus::Finished, register)?;
            ui::print(&summary)?;
            report_run(&outcome);
            Ok(Outcome::Success)
        }
        Ok(TrainEnd::Gated(message)) => {
            run.local.set_tag("cqr.gate", "failed")?;
            let outcome = run.end(RunStatus::Failed, None)?;
            report_run(&outcome);
            Ok(Outcome::Verdict(message))
        }
        Err(e) => {
            let _ = run.local.set_tag("cqr.error", &e.to_string());
            if let Ok(outcome) = run.end(RunStatus::Failed, None) {
                report_run(&outcome);
            }
            Err(e)
        }
    }
}

enum TrainEnd {
    Written(String, Option<Registration>),
    Gated(String),
}

/// Params (the resolved settings, flattened) and the datasets, before training starts.
fn log_start(
    run: &LocalRun,
    resolved: &Value,
    train: (&str, &[&Record]),
    valid: (&str, &[&Record]),
) -> crate::Result<()> {
    for (k, v) in flatten_params(resolved) {
        run.log_param(&k, &v)?;
    }
    for ((source, rows), context) in [(train, "training"), (valid, "validation")] {
        let fp = fingerprint(source, rows);
        run.log_input(&Dataset {
            name: source.to_string(),
            digest: fp.sha256,
            source: source.to_string(),
            context: context.to_string(),
        })?;
    }
    Ok(())
}

/// Settings as MLflow params: nested keys dotted, nulls left out, non-strings as JSON text.
fn flatten_params(v: &Value) -> Vec<(String, String)> {
    flatten(v)
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::Null => None,
            Value::String(s) => Some((k, s)),
            other => Some((k, other.to_string())),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn train_and_save(
    args: &TrainArgs,
    params: &ValidTrainParams,
    name: &str,
    resolved: &Value,
    run: &LocalRun,
    train_data: (&str, &[&Record]),
    valid_data: (&str, &[&Record]),
    tracking: &TrackingSettings,
) -> anyhow::Result<TrainEnd> {
    let p = params.params();
    let bar = ui::progress(None, "training");
    let mut step = 0i64;
    let mut log_error = None;
    let mut on_progress = |stage: &str, it: usize, loss: f64| {
        // Fine-tuning reports the running loss per step under its own metric, beside the
        // solver's iterations.
        let fine_tune = stage.starts_with("fine-tune");
        let what = if fine_tune { "" } else { " iteration" };
        bar.set_message(format!("{stage}{what} {it} loss {loss:.5}"));
        bar.inc(1);
        if it > 0 && loss.is_finite() {
            let logged = if fine_tune {
                run.log_metric("fine_tune_loss", loss, it as i64)
            } else {
                step += 1;
                run.log_metric("train_loss", loss, step)
            };
            if let Err(e) = logged {
                log_error.get_or_insert(e);
            }
        }
    };
    let trained = train(
        params,
        train_data.1,
        valid_data.1,
        (train_data.0, valid_data.0),
        &mut on_progress,
    )?;
    bar.finish_and_clear();
    if let Some(e) = log_error {
        return Err(e.into());
    }
    for (i, pp) in trained.path.iter().enumerate() {
        run.log_metric("l2_path.l2", pp.l2 as f64, i as i64)?;
        run.log_metric("l2_path.valid_accuracy", pp.valid_accuracy, i as i64)?;
        run.log_metric("l2_path.valid_nll", pp.valid_nll, i as i64)?;
        run.log_metric("l2_path.iterations", pp.iterations as f64, i as i64)?;
    }
    for (k, v) in &trained.metrics {
        run.log_metric(k, *v, 0)?;
    }
    run.log_metric("temperature", trained.temperature.temperature as f64, 0)?;
    run.log_metric("abstain_threshold", trained.threshold.threshold as f64, 0)?;
    run.log_metric("train_seconds", trained.seconds, 0)?;
    if trained.dropped_valid > 0 {
        ui::warn(&format!(
            "{} validation rows carry labels never seen in training and were left out of calibration",
            trained.dropped_valid
        ));
    }
    if !trained.threshold.target_met {
        ui::warn(&format!(
            "no confidence threshold reaches validation precision {}; the threshold {:.4} gives the best \
             precision ({}); consider a lower --target-precision",
            p.target_precision,
            trained.threshold.threshold,
            pct(trained.threshold.precision)
        ));
    }
    let acc = trained.metrics["valid_accuracy"];
    if let Some(min) = args.min_accuracy {
        if acc < min {
            return Ok(TrainEnd::Gated(format!(
                "gate failed: validation accuracy {} is below --min-accuracy {}; no model was written",
                pct(acc),
                pct(min)
            )));
        }
    }
    let manifest = trained.save(&args.output, name, args.force, p.seed, resolved.clone())?;
    run.add_artifact("model", &args.output)?;
    run.set_tag("cqr.model.checksum", &manifest.checksum)?;

    let register = match &args.register {
        None => None,
        Some(reg_name) => {
            let move_alias = match (&args.alias, args.promote_if_better) {
                (Some(alias), true) => {
                    promote_decision(run, tracking, reg_name, alias, acc, valid_data.1)?
                }
                _ => true,
            };
            Some(Registration {
                name: reg_name.clone(),
                alias: args.alias.clone(),
                move_alias,
            })
        }
    };
    let m = &trained.metrics;
    let chosen = trained.path.iter().find(|pp| pp.l2 == trained.linear.l2);
    let summary = format!(
        "trained {name} → {}\n  data        {} rows for training, {} for validation, {} intents\n  features    {} n-grams (word {}–{}, char {}–{}, min_df {})\n  linear      L2 {:.0e} chosen on validation ({} iterations){}\n  calibration temperature {:.3} (validation NLL {:.4} → {:.4}, ECE {:.4} → {:.4})\n  abstain     below confidence {:.4} (validation precision {} at coverage {})\n{}  validation  accuracy {}, macro-F1 {:.4}\n  time        {:.1} s\n  checksum    {}",
        args.output.display(),
        trained.train_data.rows,
        trained.valid_data.rows,
        trained.labels.len(),
        m["n_features"],
        p.features.word_ngrams[0],
        p.features.word_ngrams[1],
        p.features.char_ngrams[0],
        p.features.char_ngrams[1],
        p.features.min_df,
        trained.linear.l2,
        chosen.map(|c| c.iterations).unwrap_or(0),
        if p.refit { ", then refit on all rows" } else { "" },
        trained.temperature.temperature,
        trained.temperature.nll_before,
        trained.temperature.nll_after,
        m["valid_ece_uncalibrated"],
        m["valid_ece"],
        trained.threshold.threshold,
        pct(trained.threshold.precision),
        pct(trained.threshold.coverage),
        ensemble_line(&trained.metrics),
        pct(acc),
        m["valid_macro_f1"],
        trained.seconds,
        manifest.checksum,
    );
    Ok(TrainEnd::Written(summary, register))
}

/// The ensemble's line of the summary (empty without an encoder).
fn ensemble_line(m: &std::collections::BTreeMap<String, f64>) -> String {
    match (m.get("ensemble_weight_encoder"), m.get("valid_accuracy_encoder")) {
        (Some(w), Some(enc)) => format!(
            "  ensemble    encoder weight {w:.2}, temperature {:.3}; validation accuracy linear {}, encoder {}\n",
            m.get("ensemble_temperature").copied().unwrap_or(1.0),
            pct(m["valid_accuracy_linear"]),
            pct(*enc)
        ),
        _ => String::new(),
    }
}

/// `--promote-if-better`: scores the current alias holder on the same validation rows; the alias
/// moves only when the new model's (held-out) validation accuracy is strictly higher. Both
/// scores are logged.
fn promote_decision(
    run: &LocalRun,
    tracking: &TrackingSettings,
    name: &str,
    alias: &str,
    candidate: f64,
    valid: &[&Record],
) -> anyhow::Result<bool> {
    let client = tracking.server().ok_or_else(|| {
        Error::Usage(
            "--promote-if-better compares with the registry: set MLFLOW_TRACKING_URI".into(),
        )
    })?;
    run.log_metric("promote.candidate_valid_accuracy", candidate, 0)?;
    let Some(holder) = client.alias_version(name, alias)? else {
        run.set_tag("cqr.promote", &format!("no current {alias}: promoting"))?;
        return Ok(true);
    };
    let version = holder.version;
    let champion = refs::load_model(&format!("models:/{name}/{version}"), tracking)?;
    let texts: Vec<&str> = valid.iter().map(|r| r.text.as_str()).collect();
    let right = champion
        .predict(&texts)?
        .iter()
        .zip(valid)
        .filter(|(p, r)| Some(&champion.labels()[champion.decide(p, 1).best]) == r.label.as_ref())
        .count();
    let champion_acc = right as f64 / valid.len().max(1) as f64;
    run.log_metric("promote.champion_valid_accuracy", champion_acc, 0)?;
    let better = candidate > champion_acc;
    let verdict = format!(
        "candidate {} vs {alias} (version {version}) {} on the same validation rows: {}",
        pct(candidate),
        pct(champion_acc),
        if better {
            "promoting"
        } else {
            "keeping the current holder"
        }
    );
    run.set_tag("cqr.promote", &verdict)?;
    ui::note(&verdict);
    Ok(better)
}

/// Tells where the run went: local store always, the server's link when it got there.
pub fn report_run(o: &RunOutcome) {
    match (&o.remote, &o.unsynced_reason) {
        (Some((id, url)), _) => {
            ui::note(&format!("run {id}: {url}"));
            if let Some(v) = &o.registered_version {
                ui::note(&format!("registered as version {v}"));
            }
        }
        (None, Some(why)) => ui::warn(&format!(
            "run {} is kept in {} but not on the tracking server: {why}; send it later with `cqr runs push`",
            o.local_run_id,
            o.local_dir.display()
        )),
        (None, None) => ui::note(&format!("run {} recorded in {}", o.local_run_id, o.local_dir.display())),
    }
}
