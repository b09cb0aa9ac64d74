//! `train --promote-if-better`: scores the model that a registry alias points at on the new
//! model's validation rows and says whether the alias should move. Both accuracies are logged to
//! the run; the decision is the caller's to act on (the registration moves the alias or not).

use crate::error::{Error, Result};
use crate::io::read::Record;
use crate::metrics::{self, pct, Scored};
use crate::models::Model;
use crate::tracking::store::LocalRun;
use crate::tracking::{refs, TrackingSettings};

/// The current alias holder as measured on the candidate's validation rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub version: String,
    pub accuracy: f64,
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
                "candidate {} vs {alias} (version {}) {} on the same validation rows: {}",
                pct(self.candidate),
                h.version,
                pct(h.accuracy),
                if self.promote() {
                    "promoting"
                } else {
                    "keeping the current holder"
                }
            ),
        }
    }
}

/// Accuracy of `model` on labelled `rows`, each answered with its best intent (abstention
/// plays no part: both models are compared on every row).
pub fn accuracy_on(model: &Model, rows: &[&Record]) -> Result<f64> {
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let labels = model.labels();
    let scored: Vec<Scored> = model
        .predict(&texts)?
        .iter()
        .zip(rows)
        .map(|(p, r)| {
            let d = model.decide(p, 1);
            Scored {
                truth: r.label.clone().unwrap_or_default(),
                predicted: labels[d.best].clone(),
                confidence: d.confidence,
                abstained: false,
            }
        })
        .collect();
    Ok(metrics::accuracy(&scored))
}

/// Compares `candidate` (the new model's validation accuracy) with the holder of `name@alias`
/// on the same `valid` rows and logs both accuracies and the verdict to `run`.
pub fn compare(
    run: &LocalRun,
    tracking: &TrackingSettings,
    (name, alias): (&str, &str),
    candidate: f64,
    valid: &[&Record],
) -> Result<Promotion> {
    let client = tracking.server().ok_or_else(|| {
        Error::Usage(
            "--promote-if-better compares with the registry: set MLFLOW_TRACKING_URI".into(),
        )
    })?;
    run.log_metric("promote.candidate_valid_accuracy", candidate, 0)?;
    let holder = match client.alias_version(name, alias)? {
        None => None,
        Some(v) => {
            let version = v.version;
            let model = refs::load_model(&format!("models:/{name}/{version}"), tracking)?;
            let accuracy = accuracy_on(&model, valid)?;
            run.log_metric("promote.champion_valid_accuracy", accuracy, 0)?;
            Some(Holder { version, accuracy })
        }
    };
    let promotion = Promotion {
        alias: alias.to_string(),
        candidate,
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
