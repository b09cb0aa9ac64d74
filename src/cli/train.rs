//! `cqr train DATA -o models/NAME`: arguments → [`TrainSettings`] → validated parameters → read
//! the data → train → the `--min-accuracy` gate → write the bundle → register → print the
//! summary. Training, its summary and promotion live in the library.

use std::path::PathBuf;

use clap::Args;

use super::{InputArgs, Outcome};
use crate::error::Error;
use crate::eval::promote;
use crate::io::read::{read_all, ReadSpec, Record};
use crate::io::{Format, Target};
use crate::metrics::pct;
use crate::models::bundle::check_destination;
use crate::models::train::{
    split_for_training, train, HeadKind, OutOfScope, Rows, Step, Trained, ValidTrainParams,
};
use crate::settings::defaults::{self, help, help_env};
use crate::settings::{
    check_components, from_flag, opts, pick, pick_plain, share_flag, FileConfig, TrainRecord,
    TrainSettings,
};
use crate::tracking::store::{Dataset, LocalRun, Registration, RunStatus};
use crate::tracking::{ActiveRun, RunOutcome, TrackingSettings};
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
    #[arg(long, value_name = "SHARE", help = help_env(
        "Share of each label held out for validation when --valid is not given",
        "CQR_VALID_SPLIT",
        defaults::VALID_SPLIT,
    ))]
    pub valid_split: Option<f64>,
    #[arg(long, help = help_env(
        "Seed for the validation split; the same seed and data give identical predictions",
        "CQR_SEED",
        defaults::SEED,
    ))]
    pub seed: Option<u64>,
    #[arg(long, value_name = "P", help = help(
        "Precision the answered validation rows must keep: the abstain rule refuses more when \
         needed",
        defaults::TARGET_PRECISION,
    ))]
    pub target_precision: Option<f64>,
    #[arg(long, value_name = "SHARE", help = help(
        "Most of the in-scope validation rows the abstain rule may refuse (more only when \
         --target-precision needs it)",
        defaults::MAX_REJECT,
    ))]
    pub max_reject: Option<f64>,
    #[arg(long, value_name = "LABEL", help = help(
        "Rows with this label are out of scope: not a class, kept aside to fit the abstain rule",
        defaults::OOS_LABEL,
    ))]
    pub oos_label: Option<String>,
    /// Train the out-of-scope label as an ordinary class instead (predicting it abstains): the
    /// classic baseline.
    #[arg(long)]
    pub oos_as_class: bool,
    /// Gate: exit 1 and write nothing when validation accuracy is below this.
    #[arg(long, value_name = "ACC")]
    pub min_accuracy: Option<f64>,
    /// Components to train and ensemble: linear, encoder [default: linear,encoder when the
    /// encoder is present, else linear].
    #[arg(long, value_delimiter = ',')]
    pub components: Option<Vec<String>>,
    #[arg(long, value_enum, help = help(
        "The encoder component's head: logistic, or mlp (dropout; enables MC dropout)",
        defaults::HEAD,
    ))]
    pub head: Option<HeadKind>,
    /// Fine-tune the encoder itself on the training data before fitting its head (minutes per
    /// epoch on a laptop-class CPU; the bundle then carries the fine-tuned weights).
    #[arg(long)]
    pub fine_tune: bool,
    #[arg(long, value_name = "N", requires = "fine_tune", help = help(
        "Fine-tuning epochs (early stopping on validation may end sooner)",
        defaults::EPOCHS,
    ))]
    pub epochs: Option<usize>,
    #[arg(long, value_name = "LR", requires = "fine_tune", help = help(
        "Peak fine-tuning learning rate, after warm-up",
        format!("{:e}", defaults::FINE_TUNE_LR),
    ))]
    pub learning_rate: Option<f64>,
    #[arg(long, value_name = "DIR", help = help_env(
        "Sentence-transformers folder for the encoder component",
        "CQR_ENCODER",
        defaults::ENCODER_DIR,
    ))]
    pub encoder: Option<PathBuf>,
    #[arg(long, value_name = "N", help = help(
        "Ignore n-grams seen in fewer training texts than this",
        defaults::MIN_DF,
    ))]
    pub min_df: Option<u32>,
    #[arg(long, value_name = "N", help = help(
        "Solver iterations per regularisation strength",
        defaults::MAX_ITER,
    ))]
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

// Resolution lives beside the arguments it reads, so `settings` never imports `cli`.
impl TrainSettings {
    /// Resolves every `train` option (CLI > `CQR_*` env > `cqr.toml` > [`defaults`]) and checks
    /// the rules between them (components, `--fine-tune`, the gate's range). The parameters'
    /// own ranges are checked by [`TrainSettings::params`].
    pub fn resolve(args: &TrainArgs, config: &FileConfig) -> crate::Result<TrainSettings> {
        let f = &config.train;
        let encoder = pick(
            config,
            opts::ENCODER,
            args.encoder.clone(),
            &None,
            PathBuf::from(defaults::ENCODER_DIR),
        )?;
        let encoder_present = encoder.value.join("model.safetensors").is_file();
        let mut notes = Vec::new();
        let default_components = if encoder_present {
            vec!["linear".to_string(), "encoder".to_string()]
        } else {
            if args.components.is_none() {
                notes.push(format!(
                    "no encoder in {}: training the linear component only (scripts/fetch-model.sh fetches all-MiniLM-L6-v2)",
                    encoder.value.display()
                ));
            }
            vec!["linear".to_string()]
        };
        let components = from_flag("--components", args.components.clone(), default_components);
        check_components(&components, args.fine_tune, &encoder, encoder_present)?;
        let name = match &args.name {
            Some(n) => n.clone(),
            None => args
                .output
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| "model".into()),
        };
        Ok(TrainSettings {
            seed: pick(config, opts::SEED, args.seed, &f.seed, defaults::SEED)?,
            valid_split: pick(
                config,
                opts::VALID_SPLIT,
                args.valid_split,
                &f.valid_split,
                defaults::VALID_SPLIT,
            )?,
            target_precision: pick(
                config,
                opts::TARGET_PRECISION,
                args.target_precision,
                &f.target_precision,
                defaults::TARGET_PRECISION,
            )?,
            max_reject: pick(
                config,
                opts::MAX_REJECT,
                args.max_reject,
                &f.max_reject,
                defaults::MAX_REJECT,
            )?,
            oos_label: pick(
                config,
                opts::TRAIN_OOS_LABEL,
                args.oos_label.clone(),
                &f.oos_label,
                defaults::OOS_LABEL.to_string(),
            )?,
            oos_as_class: args.oos_as_class,
            min_accuracy: share_flag("--min-accuracy", args.min_accuracy)?,
            components,
            encoder,
            head: from_flag("--head", args.head, defaults::HEAD),
            fine_tune: args.fine_tune,
            min_df: pick(
                config,
                opts::MIN_DF,
                args.min_df,
                &f.min_df,
                defaults::MIN_DF,
            )?,
            word_ngrams: pick_plain(
                config,
                opts::WORD_NGRAMS,
                None,
                &f.word_ngrams,
                defaults::WORD_NGRAMS,
            ),
            char_ngrams: pick_plain(
                config,
                opts::CHAR_NGRAMS,
                None,
                &f.char_ngrams,
                defaults::CHAR_NGRAMS,
            ),
            l2_grid: pick_plain(
                config,
                opts::L2_GRID,
                None,
                &f.l2_grid,
                defaults::L2_GRID.to_vec(),
            ),
            max_iter: pick(
                config,
                opts::MAX_ITER,
                args.max_iter,
                &f.max_iter,
                defaults::MAX_ITER,
            )?,
            refit: pick(
                config,
                opts::REFIT,
                args.no_refit.then_some(false),
                &f.refit,
                defaults::REFIT,
            )?,
            head_alpha: pick(
                config,
                opts::HEAD_ALPHA,
                None,
                &f.head_alpha,
                defaults::HEAD_ALPHA,
            )?,
            epochs: pick(
                config,
                opts::EPOCHS,
                args.epochs,
                &f.epochs,
                defaults::EPOCHS,
            )?,
            learning_rate: pick(
                config,
                opts::FINE_TUNE_LR,
                args.learning_rate,
                &f.fine_tune_lr,
                defaults::FINE_TUNE_LR,
            )?,
            head_learning_rate: pick(
                config,
                opts::FINE_TUNE_HEAD_LR,
                None,
                &f.fine_tune_head_lr,
                defaults::FINE_TUNE_HEAD_LR,
            )?,
            warm_start: pick(
                config,
                opts::FINE_TUNE_WARM_START,
                None,
                &f.fine_tune_warm_start,
                defaults::FINE_TUNE_WARM_START,
            )?,
            fine_tune_batch: pick(
                config,
                opts::FINE_TUNE_BATCH,
                None,
                &f.fine_tune_batch,
                defaults::FINE_TUNE_BATCH,
            )?,
            fine_tune_max_len: pick(
                config,
                opts::FINE_TUNE_MAX_LEN,
                None,
                &f.fine_tune_max_len,
                defaults::FINE_TUNE_MAX_LEN,
            )?,
            freeze_words: pick(
                config,
                opts::FINE_TUNE_FREEZE_WORDS,
                None,
                &f.fine_tune_freeze_words,
                defaults::FINE_TUNE_FREEZE_WORDS,
            )?,
            name,
            notes,
        })
    }

    /// What the run records of these settings, the validated `params` and the arguments
    /// passed through, for the data named `data`.
    pub fn record(&self, params: &ValidTrainParams, args: &TrainArgs, data: String) -> TrainRecord {
        let p = params.params();
        TrainRecord {
            data,
            valid: args.valid.clone(),
            valid_split: p.valid_split,
            seed: p.seed,
            target_precision: p.target_precision,
            max_reject: p.max_reject,
            oos_label: p.out_of_scope.label.clone(),
            oos_as_class: p.out_of_scope.as_class,
            min_accuracy: self.min_accuracy,
            components: self.components.value.clone(),
            encoder: p.encoder.as_ref().map(|e| e.dir.display().to_string()),
            features: p.features.clone(),
            linear: p.linear.clone(),
            refit: p.refit,
            text_col: args.input.text_col.clone(),
            label_col: args.input.label_col.clone(),
            register: args.register.clone(),
            alias: args.alias.clone(),
            promote_if_better: args.promote_if_better,
        }
    }
}

/// The rows to train and validate on, each with the name of where they came from.
struct Split<'a> {
    train: (String, Vec<&'a Record>),
    valid: (String, Vec<&'a Record>),
}

pub fn run(
    args: TrainArgs,
    config: &FileConfig,
    tracking: &TrackingSettings,
) -> anyhow::Result<Outcome> {
    let settings = TrainSettings::resolve(&args, config)?;
    for note in &settings.notes {
        ui::note(note);
    }
    let params = settings.params()?;
    check_destination(&args.output, args.force)?;

    let spec: ReadSpec = args.input.spec(&args.data, args.format, true);
    let mut records = read_all(&spec)?;
    crate::pipeline::mask_for_model(args.input.masking(), &mut records);
    let valid_records = match &args.valid {
        Some(v) => {
            if v == "-" && args.data == "-" {
                return Err(Error::Usage(
                    "training and validation data cannot both come from stdin".into(),
                )
                .into());
            }
            let mut v = read_all(&args.input.spec(v, args.format, true))?;
            crate::pipeline::mask_for_model(args.input.masking(), &mut v);
            Some(v)
        }
        None => None,
    };
    let p = params.params();
    let data_name = spec.target.name();
    let split = match &valid_records {
        Some(v) => Split {
            train: (data_name.clone(), records.iter().collect()),
            valid: (
                Target::parse(args.valid.as_deref().unwrap_or("-")).name(),
                v.iter().collect(),
            ),
        },
        None => {
            let (t, v) = split_for_training(&records, p.valid_split, p.seed, &p.out_of_scope);
            let held_out = format!("{data_name} (held-out {:.0}%)", p.valid_split * 100.0);
            Split {
                train: (data_name.clone(), t),
                valid: (held_out, v),
            }
        }
    };
    // Serialised once: the manifest keeps this JSON and the run's params are made from it.
    let recorded = settings.record(&params, &args, data_name).to_json();
    let run = ActiveRun::start(tracking, &format!("train {}", settings.name), "train")?;
    let job = Job {
        args: &args,
        settings: &settings,
        recorded: &recorded,
        run: &run.local,
        tracking,
    };
    let result = log_start(&run.local, &recorded, &split, &p.out_of_scope)
        .map_err(anyhow::Error::from)
        .and_then(|rows| train_and_save(&job, &params, rows));
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

/// Params (the resolved settings, flattened), then the rows to train on with their datasets
/// (the rows actually used, so the digests are the manifest's), before training starts.
fn log_start<'a>(
    run: &LocalRun,
    recorded: &serde_json::Value,
    split: &Split<'a>,
    oos: &OutOfScope,
) -> crate::Result<Rows<'a>> {
    for (k, v) in TrainRecord::params_of(recorded) {
        run.log_param(&k, &v)?;
    }
    let rows = Rows::new(
        &split.train.1,
        &split.valid.1,
        (&split.train.0, &split.valid.0),
        oos,
    )?;
    for (fp, context) in [
        (&rows.train_data, "training"),
        (&rows.valid_data, "validation"),
    ] {
        run.log_input(&Dataset {
            name: fp.source.clone(),
            digest: fp.sha256.clone(),
            source: fp.source.clone(),
            context: context.to_string(),
        })?;
    }
    Ok(rows)
}

/// One training run's inputs once its settings are resolved and its data read.
struct Job<'a> {
    args: &'a TrainArgs,
    settings: &'a TrainSettings,
    recorded: &'a serde_json::Value,
    run: &'a LocalRun,
    tracking: &'a TrackingSettings,
}

fn train_and_save(
    job: &Job<'_>,
    params: &ValidTrainParams,
    rows: Rows<'_>,
) -> anyhow::Result<TrainEnd> {
    let (args, run) = (job.args, job.run);
    let trained = train_with_progress(job, params, &rows)?;
    for (i, pp) in trained.path.iter().enumerate() {
        run.log_metric("l2_path.l2", pp.l2 as f64, i as i64)?;
        run.log_metric("l2_path.valid_accuracy", pp.valid_accuracy, i as i64)?;
        run.log_metric("l2_path.valid_nll", pp.valid_nll, i as i64)?;
        run.log_metric("l2_path.iterations", pp.iterations as f64, i as i64)?;
    }
    for (k, v) in trained.run_metrics() {
        run.log_metric(&k, v, 0)?;
    }
    for warning in trained.warnings() {
        ui::warn(&warning);
    }
    let acc = trained.metrics.valid_accuracy;
    if let Some(min) = job.settings.min_accuracy {
        if acc < min {
            return Ok(TrainEnd::Gated(format!(
                "gate failed: validation accuracy {} is below --min-accuracy {}; no model was written",
                pct(acc),
                pct(min)
            )));
        }
    }
    let seed = params.params().seed;
    let manifest = trained.save(
        &args.output,
        &job.settings.name,
        args.force,
        seed,
        job.recorded.clone(),
        args.input.masking(),
    )?;
    run.add_artifact("model", &args.output)?;
    run.set_tag("cqr.model.checksum", &manifest.checksum)?;
    let register = match &args.register {
        None => None,
        Some(name) => {
            let move_alias = match (&args.alias, args.promote_if_better) {
                (Some(alias), true) => {
                    // The holder is scored on the rows the candidate's accuracy was measured on.
                    let p = promote::compare(
                        run,
                        job.tracking,
                        (name, alias),
                        &trained.valid_predicted,
                        rows.valid(),
                    )?;
                    if p.holder.is_some() {
                        ui::note(&p.verdict());
                    }
                    p.promote()
                }
                _ => true,
            };
            Some(Registration {
                name: name.clone(),
                alias: args.alias.clone(),
                move_alias,
            })
        }
    };
    Ok(TrainEnd::Written(
        trained.summary(&manifest, &args.output),
        register,
    ))
}

/// Trains with a spinner that says what is being done, logging each solver iteration's loss
/// (`train_loss`) and each fine-tune step's (`fine_tune_loss`) to the run.
fn train_with_progress(
    job: &Job<'_>,
    params: &ValidTrainParams,
    rows: &Rows<'_>,
) -> anyhow::Result<Trained> {
    let bar = ui::spinner("training");
    let mut solver_steps = 0i64;
    let mut log_error = None;
    let mut on_step = |step: Step<'_>| {
        bar.set_message(step.to_string());
        let logged = match (step, step.loss()) {
            (Step::Linear { iteration, .. } | Step::Refit { iteration, .. }, Some(loss))
                if iteration > 0 =>
            {
                solver_steps += 1;
                job.run.log_metric("train_loss", loss, solver_steps)
            }
            (Step::FineTune { progress, .. }, Some(loss)) if progress.step > 0 => job
                .run
                .log_metric("fine_tune_loss", loss, progress.step as i64),
            _ => Ok(()),
        };
        if let Err(e) = logged {
            log_error.get_or_insert(e);
        }
    };
    let trained = train(params, rows, &mut on_step)?;
    bar.finish_and_clear();
    match log_error {
        Some(e) => Err(e.into()),
        None => Ok(trained),
    }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::settings::{defaults, opts, Origin};

    fn train_args(extra: &[&str]) -> TrainArgs {
        let argv = ["cqr", "train", "data.csv", "-o", "out/m"];
        match Cli::parse_from(argv.iter().chain(extra)).command {
            Command::Train(a) => a,
            _ => unreachable!("a train command line"),
        }
    }

    fn file(text: &str) -> FileConfig {
        FileConfig::parse(Path::new("cqr.toml"), text.into()).unwrap()
    }

    fn params_error(extra: &[&str], config: &FileConfig) -> String {
        TrainSettings::resolve(&train_args(extra), config)
            .and_then(|s| s.params())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn nothing_given_means_the_defaults() {
        let s = TrainSettings::resolve(
            &train_args(&["--components", "linear"]),
            &FileConfig::default(),
        )
        .unwrap();
        assert_eq!(s.name, "m");
        let v = s.params().unwrap();
        let p = v.params();
        assert_eq!(p.features, defaults::feature_spec());
        assert_eq!(p.linear, defaults::linear_params());
        assert_eq!(
            (p.seed, p.valid_split, p.target_precision, p.refit),
            (
                defaults::SEED,
                defaults::VALID_SPLIT,
                defaults::TARGET_PRECISION,
                defaults::REFIT
            )
        );
        assert!(p.encoder.is_none());
        assert_eq!(s.seed.origin, Origin::Default);
    }

    #[test]
    fn the_command_line_beats_the_file() {
        let c = file("[train]\nseed = 5\nmin_df = 3\nrefit = true\n");
        let s = TrainSettings::resolve(&train_args(&["--seed", "9", "--no-refit"]), &c).unwrap();
        assert_eq!((s.seed.value, s.min_df.value, s.refit.value), (9, 3, false));
        assert_eq!(s.seed.origin, Origin::Flag("--seed"));
        assert_eq!(s.refit.origin, Origin::Flag("--no-refit"));
        assert!(matches!(s.min_df.origin, Origin::File { line: 3, .. }));
    }

    #[test]
    fn a_bad_value_names_the_flag_it_came_from() {
        let none = FileConfig::default();
        for (args, want) in [
            (
                &["--valid-split", "1.5"][..],
                "--valid-split must be in (0, 1); got 1.5 from --valid-split on the command line",
            ),
            (
                &["--target-precision", "0"],
                "--target-precision must be in (0, 1]; got 0 from --target-precision on the command line",
            ),
            (
                &["--max-iter", "0"],
                "--max-iter must be at least 1; got 0 from --max-iter on the command line",
            ),
            (
                &["--min-accuracy", "1.2"],
                "--min-accuracy must be in [0, 1]; got 1.2 from --min-accuracy on the command line",
            ),
            (
                &["--components", "linear,gpt"],
                "--components names an unknown component `gpt` (the components are linear and \
                 encoder); got linear,gpt from --components on the command line",
            ),
        ] {
            assert_eq!(params_error(args, &none), want);
        }
        assert!(
            params_error(&["--components", "linear", "--fine-tune"], &none)
                .contains("must include `encoder` for --fine-tune")
        );
    }

    #[test]
    fn a_bad_file_value_names_its_line() {
        let c = file("# training\n[train]\nseed = 1\n\nmin_df = 0\n");
        assert_eq!(
            params_error(&[], &c),
            "--min-df must be at least 1; got 0 from `train.min_df` in cqr.toml line 5"
        );
        let c = file("[train]\nword_ngrams = [2, 1]\n");
        assert_eq!(
            params_error(&[], &c),
            "train.word_ngrams must satisfy 1 <= min <= max <= 3 (word n-gram lengths); got \
             [2, 1] from `train.word_ngrams` in cqr.toml line 2"
        );
        let c = file("[train]\nl2_grid = []\n");
        assert!(params_error(&[], &c).ends_with("; got [] from `train.l2_grid` in cqr.toml line 2"));
    }

    #[test]
    fn fine_tune_values_are_checked_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.safetensors"), b"not read here").unwrap();
        let enc = dir.path().to_str().unwrap();
        let base = [
            "--encoder",
            enc,
            "--components",
            "linear,encoder",
            "--fine-tune",
        ];
        assert_eq!(
            params_error(
                &[&base[..], &["--epochs", "0"]].concat(),
                &FileConfig::default()
            ),
            "--epochs must be at least 1; got 0 from --epochs on the command line"
        );
        let c = file("[train]\nfine_tune_batch = 0\n");
        assert_eq!(
            params_error(&base, &c),
            "train.fine_tune_batch must be at least 1; got 0 from `train.fine_tune_batch` in cqr.toml line 2"
        );
        let s = TrainSettings::resolve(&train_args(&base), &FileConfig::default()).unwrap();
        let v = s.params().unwrap();
        let ft = v
            .params()
            .encoder
            .as_ref()
            .unwrap()
            .fine_tune
            .clone()
            .unwrap();
        assert_eq!(ft, defaults::fine_tune_params());
    }

    #[test]
    fn a_missing_encoder_is_refused_naming_where_its_folder_came_from() {
        let err = params_error(
            &[
                "--encoder",
                "/nonexistent/enc",
                "--components",
                "linear,encoder",
            ],
            &FileConfig::default(),
        );
        assert!(
            err.contains("/nonexistent/enc")
                && err.contains("no model.safetensors")
                && err.contains("--encoder on the command line"),
            "{err}"
        );
    }

    /// Every option the resolver names by flag exists on `train` under that name.
    #[test]
    fn resolver_flags_exist_on_the_command_line() {
        let cmd = Cli::command();
        let train = cmd.find_subcommand("train").expect("train exists");
        let longs: Vec<String> = train
            .get_arguments()
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        for opt in [
            opts::SEED,
            opts::VALID_SPLIT,
            opts::TARGET_PRECISION,
            opts::MIN_DF,
            opts::MAX_ITER,
            opts::REFIT,
            opts::ENCODER,
            opts::EPOCHS,
            opts::FINE_TUNE_LR,
        ] {
            assert!(longs.contains(&opt.flag.to_string()), "{}", opt.flag);
        }
    }

    #[test]
    fn help_shows_the_defaults_the_resolver_uses() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("train")
            .expect("train exists")
            .render_long_help()
            .to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for shown in [
            format!("[env: CQR_SEED] [default: {}]", defaults::SEED),
            format!(
                "[env: CQR_VALID_SPLIT] [default: {}]",
                defaults::VALID_SPLIT
            ),
            format!("[env: CQR_ENCODER] [default: {}]", defaults::ENCODER_DIR),
            format!("[default: {}]", defaults::TARGET_PRECISION),
            format!("[default: {}]", defaults::MAX_ITER),
            format!("[default: {}]", defaults::MIN_DF),
            format!("[default: {}]", defaults::HEAD),
            format!("[default: {}]", defaults::EPOCHS),
            format!("[default: {:e}]", defaults::FINE_TUNE_LR),
        ] {
            assert!(help.contains(&shown), "{shown} missing from:\n{help}");
        }
    }
}
