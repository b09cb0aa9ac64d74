//! Settings resolved once per run, in this order of precedence: command line, `CQR_*`
//! environment (through clap), `cqr.toml`, built-in defaults. The file is `--config PATH`, else `./cqr.toml` when present. Unknown keys
//! are an error, so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Location, Result};

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
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainFile {
    pub seed: Option<u64>,
    pub valid_split: Option<f64>,
    pub target_precision: Option<f64>,
    pub min_df: Option<u32>,
    pub max_iter: Option<usize>,
    pub l2_grid: Option<Vec<f32>>,
    pub word_ngrams: Option<[usize; 2]>,
    pub char_ngrams: Option<[usize; 2]>,
    pub refit: Option<bool>,
    /// L2 strength of the encoder's logistic head.
    pub head_alpha: Option<f32>,
    /// Fine-tuning (`--fine-tune`): epochs, peak learning rate, batch size, max tokens, and
    /// whether the word-embedding table stays fixed.
    pub epochs: Option<usize>,
    pub fine_tune_lr: Option<f64>,
    pub fine_tune_head_lr: Option<f64>,
    pub fine_tune_warm_start: Option<bool>,
    pub fine_tune_batch: Option<usize>,
    pub fine_tune_max_len: Option<usize>,
    pub fine_tune_freeze_words: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClassifyFile {
    pub top_k: Option<usize>,
    pub batch_size: Option<usize>,
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
        toml::from_str(&text).map_err(|e| {
            let mut loc = Location::new(path.display().to_string());
            if let Some(span) = e.span() {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() as u64 + 1;
                let col = before
                    .rsplit('\n')
                    .next()
                    .map(|l| l.chars().count())
                    .unwrap_or(0) as u64
                    + 1;
                loc = loc.line(line).column(col);
            }
            Error::input(loc, e.message().to_string())
        })
    }
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
        assert_eq!(c.train.seed, Some(3));
        assert_eq!(c.classify.top_k, Some(5));
    }
}
