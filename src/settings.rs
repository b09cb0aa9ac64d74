//! Settings resolved once per run, in this order of precedence: command line, `CQR_*`
//! environment, `cqr.toml`, built-in defaults. The file is `--config PATH`, else `./cqr.toml`
//! when present. Unknown keys are an error, so a typo never silently falls back to a default.
//! Every resolved value remembers where it came from ([`Origin`]), so a complaint about it names
//! the flag, the variable or the file and line the user has to change. Defaults live here and
//! nowhere else; each command's `*Settings::resolve` is called once, before any work.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Location, Result};

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The command line (the flag as typed, e.g. `--top-k`).
    Flag(&'static str),
    /// An environment variable.
    Env(&'static str),
    /// A key in the settings file.
    File {
        path: PathBuf,
        line: u64,
        key: &'static str,
    },
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "{flag} on the command line"),
            Origin::Env(var) => write!(f, "{var} in the environment"),
            Origin::File { path, line, key } => {
                write!(f, "`{key}` in {} line {line}", path.display())
            }
            Origin::Default => write!(f, "the built-in default"),
        }
    }
}

/// A resolved value, the option it belongs to and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
    /// The option's flag, which names it in messages whatever set it.
    pub flag: &'static str,
}

impl<T: fmt::Display> Setting<T> {
    /// A usage error about this value that names the option and where the value was set, e.g.
    /// "--top-k must be at least 1; got 0 from `classify.top_k` in cqr.toml line 4".
    pub fn error(&self, why: &str) -> Error {
        Error::Usage(format!(
            "{} {why}; got {} from {}",
            self.flag, self.value, self.origin
        ))
    }

    /// `Err` naming the value's origin unless `ok(value)`.
    pub fn check(self, ok: impl Fn(&T) -> bool, why: &str) -> Result<Setting<T>> {
        if ok(&self.value) {
            Ok(self)
        } else {
            Err(self.error(why))
        }
    }
}

/// One option as the user can set it: its flag, its environment variable (if any) and its key
/// in the settings file.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    pub flag: &'static str,
    pub env: Option<&'static str>,
    pub key: &'static str,
}

impl Opt {
    pub const fn new(flag: &'static str, env: Option<&'static str>, key: &'static str) -> Opt {
        Opt { flag, env, key }
    }
}

/// Resolves one option: the flag, else the environment variable, else the file, else
/// `default`. An environment value that does not parse is an error naming the variable.
pub fn pick<T: FromStr + Clone>(
    config: &FileConfig,
    opt: Opt,
    flag: Option<T>,
    file: &Option<Spanned<T>>,
    default: T,
) -> Result<Setting<T>> {
    Ok(pick_optional(config, opt, flag, file)?.unwrap_or(Setting {
        value: default,
        origin: Origin::Default,
        flag: opt.flag,
    }))
}

/// Like [`pick`] for an option without a default: `None` when neither the flag, the
/// environment nor the file sets it.
pub fn pick_optional<T: FromStr + Clone>(
    config: &FileConfig,
    opt: Opt,
    flag: Option<T>,
    file: &Option<Spanned<T>>,
) -> Result<Option<Setting<T>>> {
    if let Some(v) = flag {
        return Ok(Some(Setting {
            value: v,
            origin: Origin::Flag(opt.flag),
            flag: opt.flag,
        }));
    }
    if let Some(var) = opt.env {
        if let Some(raw) = std::env::var_os(var) {
            let raw = raw.to_string_lossy();
            if !raw.trim().is_empty() {
                let value = raw.trim().parse::<T>().map_err(|_| {
                    Error::Usage(format!(
                        "{var}={raw} in the environment: not a valid value for {}",
                        opt.flag
                    ))
                })?;
                return Ok(Some(Setting {
                    value,
                    origin: Origin::Env(var),
                    flag: opt.flag,
                }));
            }
        }
    }
    Ok(file.as_ref().map(|s| Setting {
        value: s.get_ref().clone(),
        origin: config.origin(opt.key, s.span()),
        flag: opt.flag,
    }))
}

/// Like [`pick`] for values no environment variable can hold (lists, pairs).
pub fn pick_plain<T: Clone>(
    config: &FileConfig,
    opt: Opt,
    flag: Option<T>,
    file: &Option<Spanned<T>>,
    default: T,
) -> Setting<T> {
    debug_assert!(
        opt.env.is_none(),
        "{} has an environment variable",
        opt.flag
    );
    match (flag, file) {
        (Some(v), _) => Setting {
            value: v,
            origin: Origin::Flag(opt.flag),
            flag: opt.flag,
        },
        (None, Some(s)) => Setting {
            value: s.get_ref().clone(),
            origin: config.origin(opt.key, s.span()),
            flag: opt.flag,
        },
        (None, None) => Setting {
            value: default,
            origin: Origin::Default,
            flag: opt.flag,
        },
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub train: TrainFile,
    #[serde(default)]
    pub classify: ClassifyFile,
    #[serde(default)]
    pub drift: DriftFile,
    /// Priority and escalation rules; missing keys keep the built-in defaults.
    #[serde(default)]
    pub priority: crate::analysis::priority::PriorityConfig,
    /// The file it was read from and its text, to turn a value's span into a line number.
    #[serde(skip)]
    source: Option<(PathBuf, String)>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainFile {
    pub seed: Option<Spanned<u64>>,
    pub valid_split: Option<Spanned<f64>>,
    pub target_precision: Option<Spanned<f64>>,
    pub max_reject: Option<Spanned<f64>>,
    pub oos_label: Option<Spanned<String>>,
    pub min_df: Option<Spanned<u32>>,
    pub max_iter: Option<Spanned<usize>>,
    pub l2_grid: Option<Spanned<Vec<f32>>>,
    pub word_ngrams: Option<Spanned<[usize; 2]>>,
    pub char_ngrams: Option<Spanned<[usize; 2]>>,
    pub refit: Option<Spanned<bool>>,
    /// L2 strength of the encoder's logistic head.
    pub head_alpha: Option<Spanned<f32>>,
    /// Fine-tuning (`--fine-tune`): epochs, peak learning rate, batch size, max tokens, and
    /// whether the word-embedding table stays fixed.
    pub epochs: Option<Spanned<usize>>,
    pub fine_tune_lr: Option<Spanned<f64>>,
    pub fine_tune_head_lr: Option<Spanned<f64>>,
    pub fine_tune_warm_start: Option<Spanned<bool>>,
    pub fine_tune_batch: Option<Spanned<usize>>,
    pub fine_tune_max_len: Option<Spanned<usize>>,
    pub fine_tune_freeze_words: Option<Spanned<bool>>,
}

/// `[drift]` in cqr.toml: what a scheduled `drift-check` uses unless its command line says.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DriftFile {
    pub alpha: Option<Spanned<f64>>,
    pub permutations: Option<Spanned<usize>>,
    pub min_effect: Option<Spanned<f64>>,
    pub max_accuracy_drop: Option<Spanned<f64>>,
    pub seed: Option<Spanned<u64>>,
}

/// `cqr drift-check`'s settings, resolved once.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftSettings {
    pub input_format: Option<Format>,
    pub report: ReportFormat,
    pub options: crate::monitor::drift::DriftOptions,
    /// Grouping labels for `--pushgateway`.
    pub labels: Vec<(String, String)>,
}

// ---- train and evaluate ----
// Each command's `resolve`, which reads its command-line arguments, lives in its own file under
// `cli` (`cli::train`, `cli::evaluate`, `cli::classify`): this module builds on nothing in `cli`.

use serde::Serialize;

use crate::eval::report::ReportFormat;
use crate::eval::EvalOptions;
use crate::io::Format;
use crate::models::finetune::{FineTuneParam, FineTuneParams};
use crate::models::linear::LinearParams;
use crate::models::train::{
    EncoderParams, HeadKind, Invalid, OutOfScope, Param, TrainParams, ValidTrainParams,
};
use crate::text::features::{FeatureParam, FeatureSpec};

/// Every built-in default of `train` and `evaluate`, defined once: the resolvers fall back to
/// these, the help texts print them, and the library's parameter sets are built from them.
pub mod defaults {
    use crate::models::encoder;
    use crate::models::finetune::FineTuneParams;
    use crate::models::linear::LinearParams;
    use crate::models::train::HeadKind;
    use crate::text::FeatureSpec;

    pub const SEED: u64 = 42;
    pub const VALID_SPLIT: f64 = 0.1;
    pub const TARGET_PRECISION: f64 = 0.95;
    /// Most of the in-scope validation rows the abstain rule may refuse.
    pub const MAX_REJECT: f64 = 0.05;
    pub const MIN_DF: u32 = 2;
    pub const WORD_NGRAMS: [usize; 2] = [1, 2];
    pub const CHAR_NGRAMS: [usize; 2] = [2, 5];
    pub const SUBLINEAR_TF: bool = true;
    /// L2 strengths of the linear model's regularisation path (on the mean loss).
    pub const L2_GRID: [f32; 7] = [1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6];
    /// L-BFGS iterations per L2 strength.
    pub const MAX_ITER: usize = 300;
    pub const REFIT: bool = true;
    pub const ENCODER_DIR: &str = encoder::DEFAULT_DIR;
    pub const HEAD: HeadKind = HeadKind::Logistic;
    /// L2 strength of the encoder's logistic head, and its solver's iterations.
    pub const HEAD_ALPHA: f32 = 0.1;
    pub const HEAD_MAX_ITER: u64 = 300;
    pub const EPOCHS: usize = 4;
    pub const FINE_TUNE_LR: f64 = 1e-4;
    pub const FINE_TUNE_HEAD_LR: f64 = 2e-3;
    pub const FINE_TUNE_WARM_START: bool = true;
    pub const FINE_TUNE_WARMUP: f64 = 0.1;
    pub const FINE_TUNE_BATCH: usize = 32;
    pub const FINE_TUNE_MAX_LEN: usize = 64;
    pub const FINE_TUNE_WEIGHT_DECAY: f64 = 0.01;
    pub const FINE_TUNE_CLIP: f64 = 1.0;
    pub const FINE_TUNE_DROPOUT: f32 = 0.1;
    pub const FINE_TUNE_PATIENCE: usize = 2;
    pub const FINE_TUNE_FREEZE_WORDS: bool = true;
    /// The label that marks out-of-scope rows in evaluation data.
    pub const OOS_LABEL: &str = "oos";
    /// respond: similar tickets listed per draft, the least similarity that counts, and the LLM
    /// endpoint's timeout (seconds), requests in flight, longest answer (characters) and
    /// retries on 429/5xx.
    pub const RESPOND_SIMILAR: usize = 3;
    pub const RESPOND_MIN_SIMILARITY: f32 = 0.3;
    pub const LLM_TIMEOUT_SECS: f64 = 30.0;
    pub const LLM_CONCURRENCY: usize = 4;
    pub const LLM_MAX_CHARS: usize = 1200;
    pub const LLM_RETRIES: u32 = 2;
    /// drift-check: family-wise error rate, permutations of the MMD test, Pushgateway job.
    pub const DRIFT_ALPHA: f64 = 0.05;
    pub const PERMUTATIONS: usize = 1000;
    pub const PUSH_JOB: &str = "cqr_drift_check";
    /// Alternatives listed in `top_k`.
    pub const TOP_K: usize = 3;
    /// Most records scored together (classify, evaluate).
    pub const BATCH_SIZE: usize = 1024;
    /// The first batch of a classify run: small, so the first answers come out within about a
    /// second whatever the model; later batches double up to the batch size.
    pub const FIRST_BATCH: usize = 16;

    /// The featuriser's settings with every default.
    pub fn feature_spec() -> FeatureSpec {
        FeatureSpec {
            word_ngrams: WORD_NGRAMS,
            char_ngrams: CHAR_NGRAMS,
            min_df: MIN_DF,
            max_features: None,
            sublinear_tf: SUBLINEAR_TF,
        }
    }

    /// The linear solver's settings with every default.
    pub fn linear_params() -> LinearParams {
        LinearParams {
            l2_grid: L2_GRID.to_vec(),
            max_iter: MAX_ITER,
        }
    }

    /// Fine-tuning settings with every default.
    pub fn fine_tune_params() -> FineTuneParams {
        FineTuneParams {
            epochs: EPOCHS,
            lr: FINE_TUNE_LR,
            head_lr: FINE_TUNE_HEAD_LR,
            warm_start: FINE_TUNE_WARM_START,
            warmup: FINE_TUNE_WARMUP,
            batch: FINE_TUNE_BATCH,
            max_len: FINE_TUNE_MAX_LEN,
            weight_decay: FINE_TUNE_WEIGHT_DECAY,
            clip: FINE_TUNE_CLIP,
            dropout: FINE_TUNE_DROPOUT,
            patience: FINE_TUNE_PATIENCE,
            freeze_words: FINE_TUNE_FREEZE_WORDS,
            seed: SEED,
        }
    }

    /// A help text ending in clap's `[default: …]`.
    pub fn help(text: &str, default: impl std::fmt::Display) -> String {
        format!("{text} [default: {default}]")
    }

    /// A help text naming the environment variable and the default, as clap shows them.
    pub fn help_env(text: &str, var: &str, default: impl std::fmt::Display) -> String {
        format!("{text} [env: {var}] [default: {default}]")
    }
}

/// How each `train` and `evaluate` option is set: flag, environment variable, file key. An
/// option set only in the file is named by its key.
pub mod opts {
    use super::Opt;

    pub const TOP_K: Opt = Opt::new("--top-k", Some("CQR_TOP_K"), "classify.top_k");
    pub const BATCH_SIZE: Opt = Opt::new(
        "--batch-size",
        Some("CQR_BATCH_SIZE"),
        "classify.batch_size",
    );

    pub const SEED: Opt = Opt::new("--seed", Some("CQR_SEED"), "train.seed");
    pub const VALID_SPLIT: Opt = Opt::new(
        "--valid-split",
        Some("CQR_VALID_SPLIT"),
        "train.valid_split",
    );
    pub const TARGET_PRECISION: Opt =
        Opt::new("--target-precision", None, "train.target_precision");
    pub const MAX_REJECT: Opt = Opt::new("--max-reject", None, "train.max_reject");
    pub const TRAIN_OOS_LABEL: Opt = Opt::new("--oos-label", None, "train.oos_label");
    pub const MIN_DF: Opt = Opt::new("--min-df", None, "train.min_df");
    pub const MAX_ITER: Opt = Opt::new("--max-iter", None, "train.max_iter");
    pub const L2_GRID: Opt = Opt::new("train.l2_grid", None, "train.l2_grid");
    pub const WORD_NGRAMS: Opt = Opt::new("train.word_ngrams", None, "train.word_ngrams");
    pub const CHAR_NGRAMS: Opt = Opt::new("train.char_ngrams", None, "train.char_ngrams");
    pub const REFIT: Opt = Opt::new("--no-refit", None, "train.refit");
    pub const ENCODER: Opt = Opt::new("--encoder", Some("CQR_ENCODER"), "train.encoder");
    pub const HEAD_ALPHA: Opt = Opt::new("train.head_alpha", None, "train.head_alpha");
    pub const EPOCHS: Opt = Opt::new("--epochs", None, "train.epochs");
    pub const FINE_TUNE_LR: Opt = Opt::new("--learning-rate", None, "train.fine_tune_lr");
    pub const FINE_TUNE_HEAD_LR: Opt =
        Opt::new("train.fine_tune_head_lr", None, "train.fine_tune_head_lr");
    pub const FINE_TUNE_WARM_START: Opt = Opt::new(
        "train.fine_tune_warm_start",
        None,
        "train.fine_tune_warm_start",
    );
    pub const FINE_TUNE_BATCH: Opt =
        Opt::new("train.fine_tune_batch", None, "train.fine_tune_batch");
    pub const FINE_TUNE_MAX_LEN: Opt =
        Opt::new("train.fine_tune_max_len", None, "train.fine_tune_max_len");
    pub const FINE_TUNE_FREEZE_WORDS: Opt = Opt::new(
        "train.fine_tune_freeze_words",
        None,
        "train.fine_tune_freeze_words",
    );
    pub const ALPHA: Opt = Opt::new("--alpha", Some("CQR_DRIFT_ALPHA"), "drift.alpha");
    pub const PERMUTATIONS: Opt = Opt::new("--permutations", None, "drift.permutations");
    pub const MIN_EFFECT: Opt = Opt::new("--min-effect", None, "drift.min_effect");
    pub const MAX_ACCURACY_DROP: Opt =
        Opt::new("--max-accuracy-drop", None, "drift.max_accuracy_drop");
    pub const DRIFT_SEED: Opt = Opt::new("--seed", Some("CQR_SEED"), "drift.seed");
    /// `evaluate` scores in batches of `classify`'s size.
    pub const EVAL_BATCH_SIZE: Opt = Opt::new("classify.batch_size", None, "classify.batch_size");
}

/// A value set only on the command line (no environment variable, no file key).
pub fn from_flag<T>(flag: &'static str, given: Option<T>, default: T) -> Setting<T> {
    let (value, origin) = match given {
        Some(value) => (value, Origin::Flag(flag)),
        None => (default, Origin::Default),
    };
    Setting {
        value,
        origin,
        flag,
    }
}

/// A setting whose value has no `Display` (a list, a pair), shown as Rust writes it.
fn shown<T: fmt::Debug>(s: &Setting<T>) -> Setting<String> {
    Setting {
        value: format!("{:?}", s.value),
        origin: s.origin.clone(),
        flag: s.flag,
    }
}

/// A `[0, 1]` share given on the command line only (`--min-accuracy` and the like).
pub fn share_flag(flag: &'static str, given: Option<f64>) -> Result<Option<f64>> {
    given
        .map(|value| {
            Setting {
                value,
                origin: Origin::Flag(flag),
                flag,
            }
            .check(|v| (0.0..=1.0).contains(v), "must be in [0, 1]")
            .map(|s| s.value)
        })
        .transpose()
}

/// `cqr train`'s settings, each resolved once with where it came from.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub seed: Setting<u64>,
    pub valid_split: Setting<f64>,
    pub target_precision: Setting<f64>,
    pub max_reject: Setting<f64>,
    /// The label of out-of-scope rows, and whether it is trained as a class.
    pub oos_label: Setting<String>,
    pub oos_as_class: bool,
    /// The `--min-accuracy` gate, in [0, 1].
    pub min_accuracy: Option<f64>,
    /// `linear`, optionally `encoder`.
    pub components: Setting<Vec<String>>,
    pub encoder: Setting<PathBuf>,
    pub head: Setting<HeadKind>,
    pub fine_tune: bool,
    pub min_df: Setting<u32>,
    pub word_ngrams: Setting<[usize; 2]>,
    pub char_ngrams: Setting<[usize; 2]>,
    pub l2_grid: Setting<Vec<f32>>,
    pub max_iter: Setting<usize>,
    pub refit: Setting<bool>,
    pub head_alpha: Setting<f32>,
    pub epochs: Setting<usize>,
    pub learning_rate: Setting<f64>,
    pub head_learning_rate: Setting<f64>,
    pub warm_start: Setting<bool>,
    pub fine_tune_batch: Setting<usize>,
    pub fine_tune_max_len: Setting<usize>,
    pub freeze_words: Setting<bool>,
    /// The model's name in the bundle (default: the output directory's name).
    pub name: String,
    /// Things the user should know about how the settings were chosen.
    pub notes: Vec<String>,
}

impl TrainSettings {
    /// The training parameters, validated before any work; a value that breaks a rule is
    /// reported with the flag, variable or file line it came from.
    pub fn params(&self) -> Result<ValidTrainParams> {
        let with_encoder = self.components.value.iter().any(|c| c == "encoder");
        let params = TrainParams {
            seed: self.seed.value,
            valid_split: self.valid_split.value,
            target_precision: self.target_precision.value,
            max_reject: self.max_reject.value,
            out_of_scope: OutOfScope {
                label: self.oos_label.value.clone(),
                as_class: self.oos_as_class,
            },
            features: FeatureSpec {
                min_df: self.min_df.value,
                word_ngrams: self.word_ngrams.value,
                char_ngrams: self.char_ngrams.value,
                ..defaults::feature_spec()
            },
            linear: LinearParams {
                l2_grid: self.l2_grid.value.clone(),
                max_iter: self.max_iter.value,
            },
            refit: self.refit.value,
            encoder: with_encoder.then(|| EncoderParams {
                dir: self.encoder.value.clone(),
                max_len: crate::models::encoder::DEFAULT_MAX_LEN,
                alpha: self.head_alpha.value,
                max_iter: defaults::HEAD_MAX_ITER,
                head: self.head.value,
                fine_tune: self.fine_tune.then(|| FineTuneParams {
                    epochs: self.epochs.value,
                    lr: self.learning_rate.value,
                    head_lr: self.head_learning_rate.value,
                    warm_start: self.warm_start.value,
                    batch: self.fine_tune_batch.value,
                    max_len: self.fine_tune_max_len.value,
                    freeze_words: self.freeze_words.value,
                    seed: self.seed.value,
                    ..defaults::fine_tune_params()
                }),
                precision: crate::models::fastbert::precision_override().unwrap_or_default(),
            }),
        };
        params.validate().map_err(|bad| self.blame(bad))
    }

    /// The error for a broken rule, naming where the offending value was set.
    fn blame(&self, bad: Invalid) -> Error {
        let why = bad.why;
        match bad.param {
            Param::ValidSplit => self.valid_split.error(why),
            Param::TargetPrecision => self.target_precision.error(why),
            Param::MaxReject => self.max_reject.error(why),
            Param::MaxIter => self.max_iter.error(why),
            Param::L2Grid => shown(&self.l2_grid).error(why),
            Param::HeadAlpha => self.head_alpha.error(why),
            Param::Features(FeatureParam::MinDf) => self.min_df.error(why),
            Param::Features(FeatureParam::WordNgrams) => shown(&self.word_ngrams).error(why),
            Param::Features(FeatureParam::CharNgrams) => shown(&self.char_ngrams).error(why),
            Param::FineTune(FineTuneParam::Epochs) => self.epochs.error(why),
            Param::FineTune(FineTuneParam::Lr) => self.learning_rate.error(why),
            Param::FineTune(FineTuneParam::HeadLr) => self.head_learning_rate.error(why),
            Param::FineTune(FineTuneParam::Batch) => self.fine_tune_batch.error(why),
            Param::FineTune(FineTuneParam::MaxLen) => self.fine_tune_max_len.error(why),
            // Not settable: only a wrong built-in default can break these.
            Param::FineTune(p @ (FineTuneParam::Warmup | FineTuneParam::Dropout)) => {
                Error::Usage(format!("the built-in fine-tune {p}: {why}"))
            }
        }
    }
}

/// The resolved `train` settings as a run records them: its MLflow params (flattened) and the
/// bundle manifest's `training.args`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRecord {
    pub data: String,
    pub valid: Option<String>,
    pub valid_split: f64,
    pub seed: u64,
    pub target_precision: f64,
    /// Absent from runs recorded before the abstain rule: those used confidence alone.
    #[serde(default = "default_max_reject")]
    pub max_reject: f64,
    #[serde(default = "default_oos_label")]
    pub oos_label: String,
    #[serde(default)]
    pub oos_as_class: bool,
    pub min_accuracy: Option<f64>,
    pub components: Vec<String>,
    pub encoder: Option<String>,
    pub features: FeatureSpec,
    pub linear: LinearParams,
    pub refit: bool,
    pub text_col: String,
    pub label_col: Option<String>,
    pub register: Option<String>,
    pub alias: Option<String>,
    pub promote_if_better: bool,
}

fn default_max_reject() -> f64 {
    defaults::MAX_REJECT
}

fn default_oos_label() -> String {
    defaults::OOS_LABEL.to_string()
}

impl TrainRecord {
    /// The record as JSON, as the manifest's `training.args` keeps it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a train record serialises")
    }

    /// A record's JSON (from [`TrainRecord::to_json`], serialised once per run) as MLflow
    /// params: nested keys dotted, nulls left out, non-strings as JSON text.
    pub fn params_of(json: &serde_json::Value) -> Vec<(String, String)> {
        use serde_json::Value;
        crate::io::write::flatten(json)
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::Null => None,
                Value::String(s) => Some((k, s)),
                other => Some((k, other.to_string())),
            })
            .collect()
    }
}

/// `--components` must name known components, include `linear` (the ensemble is built around
/// it), include `encoder` for `--fine-tune`, and find the encoder's weights when it is included.
pub fn check_components(
    components: &Setting<Vec<String>>,
    fine_tune: bool,
    encoder: &Setting<PathBuf>,
    encoder_present: bool,
) -> Result<()> {
    let list = Setting {
        value: components.value.join(","),
        origin: components.origin.clone(),
        flag: components.flag,
    };
    if let Some(c) = components
        .value
        .iter()
        .find(|c| *c != "linear" && *c != "encoder")
    {
        return Err(list.error(&format!(
            "names an unknown component `{c}` (the components are linear and encoder)"
        )));
    }
    if !components.value.iter().any(|c| c == "linear") {
        return Err(list.error(
            "must include `linear`: this build ensembles the encoder with the linear component",
        ));
    }
    let with_encoder = components.value.iter().any(|c| c == "encoder");
    if fine_tune && !with_encoder {
        return Err(
            list.error("must include `encoder` for --fine-tune, which tunes the encoder component")
        );
    }
    if with_encoder && !encoder_present {
        return Err(Error::model(
            &encoder.value,
            format!(
                "no model.safetensors (encoder from {}): fetch the default encoder with \
                 `scripts/fetch-model.sh` or point --encoder at a sentence-transformers folder",
                encoder.origin
            ),
        ));
    }
    Ok(())
}

/// `cqr evaluate`'s settings, each resolved once.
#[derive(Debug, Clone)]
pub struct EvaluateSettings {
    /// The data's format (`--format`; default: from the extension).
    pub input_format: Option<Format>,
    /// How the report is printed on stdout.
    pub report: ReportFormat,
    /// The `--min-accuracy` and `--min-macro-f1` gates, in [0, 1].
    pub min_accuracy: Option<f64>,
    pub min_macro_f1: Option<f64>,
    pub options: EvalOptions,
    /// MC-dropout samples per query (`None`: the model's own default).
    pub mc_samples: Option<usize>,
    /// Deprecated spellings the user should stop using.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClassifyFile {
    pub top_k: Option<Spanned<usize>>,
    pub batch_size: Option<Spanned<usize>>,
}

/// `cqr classify`'s settings, resolved and checked before the model is loaded.
#[derive(Debug, Clone)]
pub struct ClassifySettings {
    pub model: String,
    pub input: crate::io::read::ReadSpec,
    pub output: crate::io::Target,
    pub output_format: Option<crate::io::OutputFormat>,
    pub batch_size: usize,
    /// MC-dropout samples (`None`: the model's default).
    pub mc_samples: Option<usize>,
    pub history: Option<String>,
    pub audit_log: Option<PathBuf>,
    pub score: crate::pipeline::ScoreOptions,
}

/// The batch size of the batch after one of `size` records: doubled, up to `max`.
pub fn next_batch_size(size: usize, max: usize) -> usize {
    size.saturating_mul(2).min(max)
}

/// 1-based line and column of byte offset `at` in `text`.
fn line_col(text: &str, at: usize) -> (u64, u64) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() as u64 + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0) as u64
        + 1;
    (line, col)
}

impl FileConfig {
    /// Loads `explicit`, else `./cqr.toml` if it exists, else the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<FileConfig> {
        let path: PathBuf = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from("cqr.toml");
                if !p.is_file() {
                    return Ok(FileConfig::default());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Self::parse(&path, text)
    }

    /// Parses the text of a settings file read from `path`.
    pub fn parse(path: &Path, text: String) -> Result<FileConfig> {
        let mut config: FileConfig = toml::from_str(&text).map_err(|e| {
            let mut loc = Location::new(path.display().to_string());
            if let Some(span) = e.span() {
                let (line, col) = line_col(&text, span.start);
                loc = loc.line(line).column(col);
            }
            Error::input(loc, e.message().to_string())
        })?;
        config.source = Some((path.to_path_buf(), text));
        Ok(config)
    }

    /// Where the value of `key` at byte span `span` was set.
    fn origin(&self, key: &'static str, span: std::ops::Range<usize>) -> Origin {
        match &self.source {
            Some((path, text)) => Origin::File {
                path: path.clone(),
                line: line_col(text, span.start).0,
                key,
            },
            None => Origin::Default,
        }
    }
}

/// The value of an optional spanned file setting, for code that needs only the value.
pub fn file_value<T: Clone>(v: &Option<Spanned<T>>) -> Option<T> {
    v.as_ref().map(|s| s.get_ref().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_with_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cqr.toml");
        std::fs::write(&p, "[train]\nseed = 3\nvalid_splt = 0.2\n").unwrap();
        let err = FileConfig::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("valid_splt"), "{err}");
        std::fs::write(&p, "[train]\nseed = 3\n[classify]\ntop_k = 5\n").unwrap();
        let c = FileConfig::load(Some(&p)).unwrap();
        assert_eq!(file_value(&c.train.seed), Some(3));
        assert_eq!(file_value(&c.classify.top_k), Some(5));
    }

    #[test]
    fn a_value_remembers_the_flag_or_the_file_line_it_came_from() {
        let c = FileConfig::parse(
            Path::new("cqr.toml"),
            "# settings\n[classify]\n\ntop_k = 0\n".into(),
        )
        .unwrap();
        let opt = Opt::new("--top-k", None, "classify.top_k");
        let s = pick(&c, opt, None, &c.classify.top_k, 3).unwrap();
        assert_eq!(s.value, 0);
        let err = s.check(|&k| k >= 1, "must be at least 1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--top-k must be at least 1; got 0 from `classify.top_k` in cqr.toml line 4"
        );
        let s = pick(&c, opt, Some(2), &c.classify.top_k, 3).unwrap();
        assert_eq!(s.origin, Origin::Flag("--top-k"));
        let none = FileConfig::default();
        let s = pick(&none, opt, None, &none.classify.top_k, 3).unwrap();
        assert_eq!((s.value, s.origin), (3, Origin::Default));
    }
}
