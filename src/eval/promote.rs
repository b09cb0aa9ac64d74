//! `train --promote-if-better`: scores the model that a registry alias points at on the new
//! model's validation rows, compares it with the new model's held-out answers there (the same
//! comparison as `evaluate --compare`), and says whether the alias should move. The comparison
//! is logged to the run; the decision is the caller's to act on (the registration moves the
//! alias or not).

use super::compare::{best_intents, Comparison};
use crate::error::{Error, Result};
use crate::io::read::Record;
use crate::metrics::pct;
use crate::tracking::store::LocalRun;
use crate::tracking::{refs, TrackingSettings};

/// The current alias holder as measured on the candidate's validation rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub version: String,
    pub accuracy: f64,
    /// The candidate (A) against the holder (B) on the same rows.
    pub comparison: Option<Comparison>,
}

/// A candidate's validation accuracy against the alias holder's on the same rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    pub alias: String,
    pub candidate: f64,
    /// `None` when nothing holds the alias yet.
    pub holder: Option<Holder>,
}

impl Promotion {
    /// Moves the alias only when the candidate is strictly better (or the alias is free).
    pub fn promote(&self) -> bool {
        self.holder
            .as_ref()
            .is_none_or(|h| self.candidate > h.accuracy)
    }

    /// One line for the person at the terminal and the run's `cqr.promote` tag.
    pub fn verdict(&self) -> String {
        let alias = &self.alias;
        match &self.holder {
            None => format!("no current {alias}: promoting"),
            Some(h) => format!(
                "candidate {} vs {alias} (version {}) {} on the same validation rows{}: {}",
                pct(self.candidate),
                h.version,
                pct(h.accuracy),
                h.comparison
                    .as_ref()
                    .map(|c| format!(
                        " (difference {:+.2} points, 95% interval [{:+.2}, {:+.2}], McNemar p {:.4})",
                        c.difference.value * 100.0,
                        c.difference.low * 100.0,
                        c.difference.high * 100.0,
                        c.mcnemar_p
                    ))
                    .unwrap_or_default(),
                if self.promote() {
                    "promoting"
                } else {
                    "keeping the current holder"
                }
            ),
        }
    }
}

/// Compares the candidate's held-out answers on its validation rows (`candidate`, one best
/// intent per row of `valid`) with the holder of `name@alias` on the same rows, through the same
/// [`Comparison`] as `evaluate --compare`, and logs both accuracies, the difference with its
/// interval, McNemar's p and the verdict to `run`.
pub fn compare(
    run: &LocalRun,
    tracking: &TrackingSettings,
    (name, alias): (&str, &str),
    candidate: &[String],
    valid: &[&Record],
) -> Result<Promotion> {
    let client = tracking.server().ok_or_else(|| {
        Error::Usage(
            "--promote-if-better compares with the registry: set MLFLOW_TRACKING_URI".into(),
        )
    })?;
    let truth: Vec<&str> = valid
        .iter()
        .map(|r| r.label.as_deref().unwrap_or(""))
        .collect();
    let right = truth.iter().zip(candidate).filter(|(t, p)| *t == p).count();
    let candidate_accuracy = right as f64 / truth.len().max(1) as f64;
    run.log_metric("promote.candidate_valid_accuracy", candidate_accuracy, 0)?;
    let holder = match client.alias_version(name, alias)? {
        None => None,
        Some(v) => {
            let version = v.version;
            let model = refs::load_model(&format!("models:/{name}/{version}"), tracking)?;
            let answers = best_intents(&model, valid, crate::settings::defaults::BATCH_SIZE)?;
            let holder_name = format!("{name}@{alias} (version {version})");
            let c = Comparison::of(&truth, ("candidate", candidate), (&holder_name, &answers));
            run.log_metric("promote.champion_valid_accuracy", c.b.accuracy, 0)?;
            run.log_metric("promote.accuracy_difference", c.difference.value, 0)?;
            run.log_metric("promote.accuracy_difference_low", c.difference.low, 0)?;
            run.log_metric("promote.accuracy_difference_high", c.difference.high, 0)?;
            run.log_metric("promote.mcnemar_p", c.mcnemar_p, 0)?;
            Some(Holder {
                version,
                accuracy: c.b.accuracy,
                comparison: Some(c),
            })
        }
    };
    let promotion = Promotion {
        alias: alias.to_string(),
        candidate: candidate_accuracy,
        holder,
    };
    run.set_tag("cqr.promote", &promotion.verdict())?;
    Ok(promotion)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alias_moves_only_for_a_strictly_better_candidate() {
        let p = |holder: Option<f64>| Promotion {
            alias: "champion".into(),
            candidate: 0.9,
            holder: holder.map(|accuracy| Holder {
                version: "3".into(),
                accuracy,
                comparison: None,
            }),
        };
        assert!(p(None).promote());
        assert_eq!(p(None).verdict(), "no current champion: promoting");
        assert!(p(Some(0.89)).promote());
        assert!(!p(Some(0.9)).promote(), "a tie keeps the holder");
        assert_eq!(
            p(Some(0.95)).verdict(),
            "candidate 90.00% vs champion (version 3) 95.00% on the same validation rows: \
             keeping the current holder"
        );
    }
}
