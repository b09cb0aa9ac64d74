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
    if let Some(v) = flag {
        return Ok(Setting {
            value: v,
            origin: Origin::Flag(opt.flag),
            flag: opt.flag,
        });
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
                return Ok(Setting {
                    value,
                    origin: Origin::Env(var),
                    flag: opt.flag,
                });
            }
        }
    }
    if let Some(s) = file {
        return Ok(Setting {
            value: s.get_ref().clone(),
            origin: config.origin(opt.key, s.span()),
            flag: opt.flag,
        });
    }
    Ok(Setting {
        value: default,
        origin: Origin::Default,
        flag: opt.flag,
    })
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

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClassifyFile {
    pub top_k: Option<Spanned<usize>>,
    pub batch_size: Option<Spanned<usize>>,
}

pub const DEFAULT_TOP_K: usize = 3;
pub const DEFAULT_BATCH_SIZE: usize = 1024;
/// The first batch of a classify run: small, so the first answers come out within about a
/// second whatever the model; later batches double up to the batch size.
pub const FIRST_BATCH: usize = 16;

const TOP_K: Opt = Opt::new("--top-k", Some("CQR_TOP_K"), "classify.top_k");
const BATCH_SIZE: Opt = Opt::new(
    "--batch-size",
    Some("CQR_BATCH_SIZE"),
    "classify.batch_size",
);

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
    pub strict: bool,
    pub score: crate::pipeline::ScoreOptions,
}

/// The batch size of the batch after one of `size` records: doubled, up to `max`.
pub fn next_batch_size(size: usize, max: usize) -> usize {
    size.saturating_mul(2).min(max)
}

impl ClassifySettings {
    pub fn resolve(a: &crate::cli::classify::ClassifyArgs, config: &FileConfig) -> Result<Self> {
        use crate::analysis::Fields;
        use crate::pipeline::{ContextColumns, QueryResult, ScoreOptions};
        use crate::text::pii::MaskStyle;
        let at_least_one = |n: &usize| *n >= 1;
        let top_k = pick(
            config,
            TOP_K,
            a.top_k,
            &config.classify.top_k,
            DEFAULT_TOP_K,
        )?
        .check(at_least_one, "must be at least 1")?
        .value;
        let batch_size = pick(
            config,
            BATCH_SIZE,
            a.batch_size,
            &config.classify.batch_size,
            DEFAULT_BATCH_SIZE,
        )?
        .check(at_least_one, "must be at least 1")?
        .value;
        let fields = Fields::parse(&a.fields)?;
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
        check_model_argument(&a.model)?;
        let mut input = a.input.spec(&a.data, a.format, false);
        input.keep = a.keep.clone();
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
            model: a.model.clone(),
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
            strict: a.strict,
            score: ScoreOptions {
                fields,
                top_k,
                cascade: a.cascade,
                output_mask: (!a.input.no_mask).then_some(match a.mask_style {
                    crate::cli::classify::MaskArg::Full => MaskStyle::Full,
                    crate::cli::classify::MaskArg::Partial => MaskStyle::Partial,
                }),
                keep: a.keep.clone(),
                columns,
                audit: a.audit_log.is_some(),
                explain: a.explain,
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
