//! The output record of DESIGN.md's "What a query becomes" as typed structs: the one source of
//! the output schema for `classify` (and later `respond` and `serve`). Optional groups are
//! `Option`s, so a group not asked for with `--fields` is neither computed nor written. Numbers
//! are rounded to six decimals here, once, so every writer shows the same figures.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::analysis::priority::Priority;
use crate::analysis::sentiment::Sentiment;
use crate::analysis::Fields;
use crate::io::read::RecordId;
use crate::models::{Decision, ModelRef};
use crate::respond::llm::LlmOutcome;
use crate::respond::Draft;
use crate::text::pii::Finding;

/// What `classify` writes for one input record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    /// The input's own id, exactly as given (or its row number).
    pub id: RecordId,
    /// The input columns asked for with `--keep`, masked like the text.
    #[serde(flatten)]
    pub kept: Kept,
    /// Why the record was not scored (e.g. its text is empty); every other group is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub intent: Option<IntentGroup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<SentimentGroup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<PriorityGroup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pii: Option<Vec<PiiSpan>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
}

/// Passed-through input columns, written as fields of the record in input order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kept(pub Vec<(String, Value)>);

impl Serialize for Kept {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// The intent, its calibrated confidence, the alternatives, abstention and uncertainty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntentGroup {
    /// The predicted intent, `unknown` when the model abstained.
    pub intent: String,
    pub confidence: f64,
    pub top_k: Vec<Alternative>,
    pub abstained: bool,
    pub uncertainty: Uncertainty,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alternative {
    pub intent: String,
    pub p: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Uncertainty {
    pub entropy: f64,
    pub margin: f64,
    /// Total-variation distance between the two components' answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disagreement: Option<f64>,
    /// MC dropout: standard deviation of the winning class's probability over samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub std: Option<f64>,
    /// MC dropout: mutual information (epistemic uncertainty), in nats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutual_info: Option<f64>,
    /// Distance from the training data, in standard deviations above the validation rows'
    /// mean (models trained since the abstain rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub novelty: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentimentGroup {
    pub label: &'static str,
    pub score: f64,
    /// Always present (maybe empty) so CSV and Parquet columns stay the same per row.
    pub cues: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriorityGroup {
    pub level: &'static str,
    pub score: f64,
    pub escalate: bool,
    pub reasons: Vec<ReasonOut>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonOut {
    pub factor: &'static str,
    pub weight: f64,
    pub detail: String,
}

/// A PII finding with its span in characters of the original text (end exclusive).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PiiSpan {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub start: usize,
    pub end: usize,
}

/// One line of the audit trail (`--audit-log`): what was decided about which (masked) text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub timestamp: String,
    pub id: RecordId,
    pub model: Option<ModelRef>,
    /// sha256 of the original text, so a decision can be matched to its input without storing it.
    pub input_sha256: String,
    /// The text as masked for output.
    pub text: String,
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    pub abstained: Option<bool>,
    pub priority: Option<&'static str>,
    pub escalate: Option<bool>,
    pub reasons: Option<Vec<String>>,
    /// `respond`: the reply drafted (masked like everything else).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// `respond`: whether the query was handed to a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff: Option<bool>,
}

/// What `respond` writes for one input record: the `classify` record, the draft (absent for a
/// skipped record) and, with an LLM, what it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RespondResult {
    #[serde(flatten)]
    pub query: QueryResult,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub draft: Option<Draft>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmOutcome>,
}

impl RespondResult {
    /// The CSV and Parquet columns: the `classify` columns, then the draft's and (with an LLM)
    /// the LLM's, `skipped` last.
    pub fn columns(keep: &[String], scores: OptionalScores, llm: bool) -> Vec<String> {
        let mut columns = QueryResult::columns(Fields::default(), keep, scores);
        let skipped = columns.pop().expect("`skipped` is the last column");
        let example = RespondResult {
            query: QueryResult::example(Fields::default(), keep, scores),
            draft: Some(Draft::example()),
            llm: llm.then(|| LlmOutcome {
                used: false,
                model: String::new(),
                rejected_reason: Some(String::new()),
            }),
        };
        let value = serde_json::to_value(example).expect("a RespondResult always serialises");
        let extra: Vec<String> = crate::io::write::flatten(&value)
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !columns.contains(k) && *k != skipped)
            .collect();
        columns.extend(extra);
        columns.push(skipped);
        columns
    }
}

/// Six decimals, and never `-0`.
pub fn round6(x: f32) -> f64 {
    // Adding 0.0 turns -0.0 into 0.0.
    (x as f64 * 1e6).round() / 1e6 + 0.0
}

impl IntentGroup {
    pub fn new(d: &Decision, labels: &[String]) -> IntentGroup {
        IntentGroup {
            intent: intent_label(d, labels).unwrap_or("unknown").to_string(),
            confidence: round6(d.confidence),
            top_k: d
                .top_k
                .iter()
                .map(|&(i, p)| Alternative {
                    intent: labels[i].clone(),
                    p: round6(p),
                })
                .collect(),
            abstained: d.abstained,
            uncertainty: Uncertainty {
                entropy: round6(d.entropy),
                margin: round6(d.margin),
                disagreement: d.disagreement.map(round6),
                std: d.mc.map(|(std, _)| round6(std)),
                mutual_info: d.mc.map(|(_, mi)| round6(mi)),
                novelty: d.novelty.map(round6),
            },
        }
    }
}

/// The intent reported for a decision: `None` when the model abstained.
pub fn intent_label<'l>(d: &Decision, labels: &'l [String]) -> Option<&'l str> {
    (!d.abstained).then(|| labels[d.best].as_str())
}

impl From<&Sentiment> for SentimentGroup {
    fn from(s: &Sentiment) -> Self {
        SentimentGroup {
            label: s.label.as_str(),
            score: round6(s.score),
            cues: s.cues.clone(),
        }
    }
}

impl From<&Priority> for PriorityGroup {
    fn from(p: &Priority) -> Self {
        PriorityGroup {
            level: p.level.as_str(),
            score: round6(p.score),
            escalate: p.escalate,
            reasons: p
                .reasons
                .iter()
                .map(|r| ReasonOut {
                    factor: r.factor.as_str(),
                    weight: round6(r.weight),
                    detail: r.detail.clone(),
                })
                .collect(),
        }
    }
}

impl PiiSpan {
    /// The findings of `text` with character spans.
    pub fn all(text: &str, findings: &[Finding]) -> Vec<PiiSpan> {
        findings
            .iter()
            .map(|f| {
                let (start, end) = f.char_span(text);
                PiiSpan {
                    kind: f.kind.label(),
                    start,
                    end,
                }
            })
            .collect()
    }
}

/// Which optional uncertainty scores the model gives: they are columns of CSV and Parquet output
/// only when it can.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionalScores {
    /// Two components: their `disagreement`.
    pub disagreement: bool,
    /// MC dropout: `std` and `mutual_info`.
    pub mc: bool,
    /// A novelty score: `novelty`.
    pub novelty: bool,
}

impl QueryResult {
    /// The top-level field names a record has when the groups in `fields` are asked for (and,
    /// with `model`, the model answered). `--keep` columns may not take these names. Derived by
    /// serialising a full example, so it can never drift from the struct.
    pub fn field_names(fields: Fields) -> Vec<String> {
        match serde_json::to_value(Self::example(fields, &[], OptionalScores::default())) {
            Ok(Value::Object(m)) => m.keys().cloned().collect(),
            _ => unreachable!("a QueryResult serialises to an object"),
        }
    }

    /// The CSV and Parquet columns, flattened (`parent.child`), of the records that the groups
    /// in `fields`, the `--keep` columns `keep` and a model giving `scores` make: the same for
    /// every record, skipped or scored. Derived by serialising a full example like
    /// [`QueryResult::field_names`]. `skipped` comes last, so the scored columns keep the places
    /// they have always had.
    pub fn columns(fields: Fields, keep: &[String], scores: OptionalScores) -> Vec<String> {
        let example = serde_json::to_value(Self::example(fields, keep, scores))
            .expect("a QueryResult always serialises");
        let mut columns: Vec<String> = crate::io::write::flatten(&example)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let skipped = columns
            .iter()
            .position(|c| c == "skipped")
            .expect("the example has every field");
        let skipped = columns.remove(skipped);
        columns.push(skipped);
        columns
    }

    /// A record with every field that `fields`, `keep` and `scores` allow.
    pub(crate) fn example(fields: Fields, keep: &[String], scores: OptionalScores) -> QueryResult {
        let d = Decision {
            best: 0,
            confidence: 1.0,
            abstained: false,
            top_k: vec![(0, 1.0)],
            entropy: 0.0,
            margin: 1.0,
            disagreement: scores.disagreement.then_some(0.0),
            mc: scores.mc.then_some((0.0, 0.0)),
            novelty: scores.novelty.then_some(0.0),
            affinity: None,
        };
        QueryResult {
            id: RecordId::Row(1),
            kept: Kept(keep.iter().map(|k| (k.clone(), Value::Null)).collect()),
            skipped: Some(String::new()),
            intent: fields
                .intent
                .then(|| IntentGroup::new(&d, &["x".to_string()])),
            sentiment: fields.sentiment.then(|| SentimentGroup {
                label: "neutral",
                score: 0.0,
                cues: Vec::new(),
            }),
            priority: fields.priority.then(|| PriorityGroup {
                level: "P4",
                score: 0.0,
                escalate: false,
                reasons: Vec::new(),
            }),
            pii: fields.pii.then(Vec::new),
            model: fields.intent.then(|| ModelRef {
                name: String::new(),
                version: String::new(),
                checksum: String::new(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_follow_the_groups_asked_for() {
        let all = QueryResult::field_names(Fields::default());
        for f in [
            "id",
            "intent",
            "confidence",
            "top_k",
            "abstained",
            "uncertainty",
            "sentiment",
            "priority",
            "pii",
            "model",
            "skipped",
        ] {
            assert!(all.iter().any(|n| n == f), "{f} missing from {all:?}");
        }
        let pii_only = QueryResult::field_names(Fields::parse(&["pii".into()]).unwrap());
        assert!(!pii_only.iter().any(|n| n == "confidence"), "{pii_only:?}");
        assert!(pii_only.iter().any(|n| n == "pii"));
    }

    #[test]
    fn columns_are_flat_and_skipped_comes_last() {
        let keep = ["tier".to_string()];
        let cols = QueryResult::columns(Fields::default(), &keep, OptionalScores::default());
        assert_eq!(
            cols,
            [
                "id",
                "tier",
                "intent",
                "confidence",
                "top_k",
                "abstained",
                "uncertainty.entropy",
                "uncertainty.margin",
                "sentiment.label",
                "sentiment.score",
                "sentiment.cues",
                "priority.level",
                "priority.score",
                "priority.escalate",
                "priority.reasons",
                "pii",
                "model.name",
                "model.version",
                "model.checksum",
                "skipped",
            ]
        );
        let all = OptionalScores {
            disagreement: true,
            mc: true,
            novelty: true,
        };
        let cols = QueryResult::columns(Fields::parse(&["intent".into()]).unwrap(), &[], all);
        let at = cols.iter().position(|c| c == "uncertainty.margin").unwrap();
        assert_eq!(
            cols[at + 1..at + 4],
            [
                "uncertainty.disagreement",
                "uncertainty.std",
                "uncertainty.mutual_info"
            ]
        );
        let pii_only = QueryResult::columns(Fields::parse(&["pii".into()]).unwrap(), &[], all);
        assert_eq!(pii_only, ["id", "pii", "skipped"]);
    }

    #[test]
    fn rounding_never_gives_negative_zero() {
        assert_eq!(round6(-0.0000001).to_string(), "0");
        assert_eq!(round6(0.1234567), 0.123457);
    }
}
