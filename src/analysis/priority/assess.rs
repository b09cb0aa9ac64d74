//! Assessment: turns what earlier steps found about one query (intent, confidence, sentiment,
//! customer tier, text, repeat contacts) into a level P1–P4, a score in [0, 1], an escalate flag
//! and the reasons behind them, under one validated configuration. It owns the engine, the
//! scoring factors and their strengths, the escalation checks, the reason texts and `explain`;
//! configuration lives in `config`, urgency cue matching in `urgency`. No I/O.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::config::{EscalateRule, PriorityConfig};
use super::urgency::CueIndex;
use crate::analysis::tokens::Tokens;

/// How much each distinct frustration cue (e.g. "still waiting") adds to the sentiment factor's
/// strength. The compound score alone misses polite but repeated chasing, so cues lift it.
pub(super) const SENTIMENT_CUE_STRENGTH: f32 = 0.25;

/// Uncertainty at or below this adds nothing: a model choosing clearly still spreads some
/// probability, and counting that residue would nudge every query up a little and tip
/// routine intents over a cut-off.
pub(super) const UNCERTAINTY_FLOOR: f32 = 0.5;

/// Prior contacts at which the repeat factor saturates: the third earlier contact inside the
/// window means the customer has been chasing, and more chasing says nothing new.
pub(super) const REPEAT_SATURATION: u32 = 3;

/// What the engine needs to know about one query.
#[derive(Debug, Clone, Copy)]
pub struct PriorityInput<'a> {
    /// `None` when the model abstained.
    pub intent: Option<&'a str>,
    pub confidence: f32,
    pub abstained: bool,
    /// Normalised entropy in [0, 1]; higher means less sure.
    pub uncertainty: f32,
    /// Compound score in [-1, 1]; `None` when not computed.
    pub sentiment: Option<f32>,
    /// Support-domain frustration cues that fired (e.g. "still waiting").
    pub sentiment_cues: &'a [String],
    /// `customer_tier` column; `None` when absent.
    pub tier: Option<&'a str>,
    /// The query text, already PII-masked, as read by `sentiment::tokens_of`: the tokens the
    /// sentiment was scored on are the ones searched for urgency cues.
    pub(crate) text: &'a Tokens,
    /// Contacts by the same customer within the repeat window (0 when unknown).
    pub prior_contacts: u32,
}

#[cfg(test)]
static NO_TEXT: std::sync::LazyLock<Tokens> =
    std::sync::LazyLock::new(|| crate::analysis::sentiment::tokens_of(""));

#[cfg(test)]
impl<'a> PriorityInput<'a> {
    /// A confident classification as `intent` and nothing else known, for tests to extend.
    pub(crate) fn plain(intent: &'a str) -> Self {
        PriorityInput {
            intent: Some(intent),
            confidence: 0.9,
            abstained: false,
            uncertainty: 0.0,
            sentiment: None,
            sentiment_cues: &[],
            tier: None,
            text: &NO_TEXT,
            prior_contacts: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Level {
    P1,
    P2,
    P3,
    P4,
}

impl Level {
    /// Every level, most urgent first.
    pub const ALL: [Level; 4] = [Level::P1, Level::P2, Level::P3, Level::P4];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::P1 => "P1",
            Level::P2 => "P2",
            Level::P3 => "P3",
            Level::P4 => "P4",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Declaration order is the tie-break order among reasons of equal weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    IntentSeverity,
    Sentiment,
    CustomerTier,
    UrgencyCue,
    RepeatContact,
    Uncertainty,
    Rule,
}

impl Factor {
    /// Every factor, in declaration order.
    pub const ALL: [Factor; 7] = [
        Factor::IntentSeverity,
        Factor::Sentiment,
        Factor::CustomerTier,
        Factor::UrgencyCue,
        Factor::RepeatContact,
        Factor::Uncertainty,
        Factor::Rule,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Factor::IntentSeverity => "intent_severity",
            Factor::Sentiment => "sentiment",
            Factor::CustomerTier => "customer_tier",
            Factor::UrgencyCue => "urgency_cue",
            Factor::RepeatContact => "repeat_contact",
            Factor::Uncertainty => "uncertainty",
            Factor::Rule => "rule",
        }
    }
}

impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    pub factor: Factor,
    /// Contribution to the score (0 for an escalation cause).
    pub weight: f32,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Priority {
    pub level: Level,
    /// In [0, 1].
    pub score: f32,
    pub escalate: bool,
    /// Contributing factors by weight, descending (ties in [`Factor`] order), then the causes
    /// of escalation with weight 0.
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    label: String,
    intents: Vec<String>,
    tiers: Vec<String>,
    rule: EscalateRule,
}

/// Scores queries under one validated configuration; cheap to share across threads.
#[derive(Debug, Clone)]
pub struct PriorityEngine {
    config: PriorityConfig,
    severity: HashMap<String, f32>,
    tiers: HashMap<String, f32>,
    abstain_tiers: Vec<String>,
    cues: CueIndex,
    rules: Vec<CompiledRule>,
}

fn key(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Rounds to 4 decimals so that sums land on the cut-offs people compute by hand.
fn snap(x: f32) -> f32 {
    (x * 10_000.0).round() / 10_000.0
}

fn unit_or_zero(x: f32) -> f32 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

fn quoted_list(items: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut s = items
        .iter()
        .take(SHOWN)
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}

impl Default for PriorityEngine {
    fn default() -> Self {
        PriorityEngine::new(PriorityConfig::default()).expect("built-in defaults are valid")
    }
}

impl PriorityEngine {
    pub fn new(config: PriorityConfig) -> Result<Self, String> {
        config.validate()?;
        let severity = config.severity.iter().map(|(k, &v)| (key(k), v)).collect();
        let tiers = config.tiers.iter().map(|(k, &v)| (key(k), v)).collect();
        let abstain_tiers = config
            .escalate_on_abstain_tiers
            .iter()
            .map(|t| key(t))
            .collect();
        let cues = CueIndex::new(&config.urgency_cues);
        let rules = config
            .escalate_rules
            .iter()
            .enumerate()
            .map(|(i, r)| CompiledRule {
                label: r
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("escalate_rules[{i}]")),
                intents: r.intent.iter().map(|s| key(s)).collect(),
                tiers: r.tier.iter().map(|s| key(s)).collect(),
                rule: r.clone(),
            })
            .collect();
        Ok(PriorityEngine {
            config,
            severity,
            tiers,
            abstain_tiers,
            cues,
            rules,
        })
    }

    pub fn config(&self) -> &PriorityConfig {
        &self.config
    }

    /// The repeat-contact window in whole seconds.
    pub fn repeat_window_secs(&self) -> i64 {
        (f64::from(self.config.repeat_window_hours) * 3600.0).round() as i64
    }

    /// Scores one query. Never fails: out-of-range or NaN inputs are clamped or ignored, so a
    /// bad value upstream degrades one explanation rather than a whole batch.
    pub fn assess(&self, input: &PriorityInput) -> Priority {
        let w = &self.config.weights;
        let intent = input.intent.map(str::trim).filter(|s| !s.is_empty());
        // Tables and rules are keyed by lowercased names; the reasons show the intent as written.
        let intent_key = intent.map(key);
        let tier = input.tier.map(key).filter(|s| !s.is_empty());
        let sentiment = input
            .sentiment
            .filter(|s| !s.is_nan())
            .map(|s| s.clamp(-1.0, 1.0));
        let confidence = unit_or_zero(input.confidence);

        let mut reasons: Vec<Reason> = Vec::new();
        let (severity, detail) = self.severity_of(intent, intent_key.as_deref(), input.abstained);
        add_reason(
            &mut reasons,
            Factor::IntentSeverity,
            w.intent_severity,
            severity,
            || detail,
        );

        let cues = distinct_cues(input.sentiment_cues);
        let negativity = sentiment.map_or(0.0, |s| (-s).max(0.0));
        let strength = negativity + SENTIMENT_CUE_STRENGTH * cues.len() as f32;
        add_reason(
            &mut reasons,
            Factor::Sentiment,
            w.sentiment,
            strength,
            || sentiment_detail(sentiment, &cues),
        );

        if let Some(t) = &tier {
            if let Some(&f) = self.tiers.get(t) {
                add_reason(
                    &mut reasons,
                    Factor::CustomerTier,
                    w.customer_tier,
                    f,
                    || format!("{t} customer (tier factor {f:.2})"),
                );
            }
        }

        let urgent = self.cues.find(input.text);
        if !urgent.is_empty() {
            let noun = if urgent.len() == 1 { "cue" } else { "cues" };
            add_reason(&mut reasons, Factor::UrgencyCue, w.urgency_cue, 1.0, || {
                format!("urgency {noun} {}", quoted_list(&urgent))
            });
        }

        if input.prior_contacts > 0 {
            let n = input.prior_contacts;
            add_reason(
                &mut reasons,
                Factor::RepeatContact,
                w.repeat_contact,
                n as f32 / REPEAT_SATURATION as f32,
                || {
                    format!(
                        "{n} earlier contact{} within {} h",
                        if n == 1 { "" } else { "s" },
                        self.config.repeat_window_hours
                    )
                },
            );
        }

        if input.abstained {
            add_reason(
                &mut reasons,
                Factor::Uncertainty,
                w.uncertainty,
                1.0,
                || format!("model abstained (confidence {confidence:.2})"),
            );
        } else {
            let u = unit_or_zero(input.uncertainty);
            add_reason(
                &mut reasons,
                Factor::Uncertainty,
                w.uncertainty,
                (u - UNCERTAINTY_FLOOR) / (1.0 - UNCERTAINTY_FLOOR),
                || format!("model uncertainty {u:.2} (confidence {confidence:.2})"),
            );
        }

        let total: f32 = reasons.iter().map(|r| r.weight).sum();
        let score = snap(total.clamp(0.0, 1.0));
        let level = self.config.levels.level_for(score);

        reasons.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.factor.cmp(&b.factor)));

        let mut escalations: Vec<String> = Vec::new();
        if level == Level::P1 {
            escalations.push(format!(
                "level P1 (score {score:.2} >= {:.2})",
                self.config.levels.p1
            ));
        }
        if input.abstained {
            if let Some(t) = tier.as_ref().filter(|t| self.abstain_tiers.contains(t)) {
                escalations.push(format!("model abstained on a {t} customer"));
            }
        }
        let facts = Facts {
            intent: intent_key.as_deref(),
            tier: tier.as_deref(),
            severity,
            score,
            sentiment,
            prior_contacts: input.prior_contacts,
            urgent: !urgent.is_empty(),
        };
        for r in &self.rules {
            if let Some(why) = facts.matches(r) {
                escalations.push(format!("rule {:?} ({why})", r.label));
            }
        }
        let escalate = !escalations.is_empty();
        reasons.extend(escalations.into_iter().map(|detail| Reason {
            factor: Factor::Rule,
            weight: 0.0,
            detail,
        }));

        Priority {
            level,
            score,
            escalate,
            reasons,
        }
    }

    /// The severity of `intent` (as written) and its reason text; `intent_key` is its
    /// lowercased name.
    fn severity_of(
        &self,
        intent: Option<&str>,
        intent_key: Option<&str>,
        abstained: bool,
    ) -> (f32, String) {
        let default = self.config.default_severity;
        let (Some(name), Some(intent_key)) = (intent, intent_key) else {
            let why = if abstained {
                "model abstained"
            } else {
                "not classified"
            };
            return (
                default,
                format!("no intent ({why}); default severity {default:.2}"),
            );
        };
        let tentative = if abstained {
            " (tentative: model abstained)"
        } else {
            ""
        };
        match self.severity.get(intent_key) {
            Some(&s) => {
                let grade = if s >= 0.75 {
                    "urgent"
                } else if s >= 0.5 {
                    "important"
                } else {
                    "routine"
                };
                (
                    s,
                    format!("intent {name} is {grade} (severity {s:.2}){tentative}"),
                )
            }
            None => (
                default,
                format!("intent {name} has no listed severity; default {default:.2}{tentative}"),
            ),
        }
    }
}

/// The normalised facts escalation rules are checked against.
struct Facts<'a> {
    intent: Option<&'a str>,
    tier: Option<&'a str>,
    severity: f32,
    score: f32,
    sentiment: Option<f32>,
    prior_contacts: u32,
    urgent: bool,
}

impl Facts<'_> {
    /// `Some(conditions that held)` when every condition of the rule holds.
    fn matches(&self, r: &CompiledRule) -> Option<String> {
        let mut why: Vec<String> = Vec::new();
        if !r.intents.is_empty() {
            let i = self.intent.filter(|i| r.intents.iter().any(|n| n == i))?;
            why.push(format!("intent {i}"));
        }
        if !r.tiers.is_empty() {
            let t = self.tier.filter(|t| r.tiers.iter().any(|n| n == t))?;
            why.push(format!("tier {t}"));
        }
        let rule = &r.rule;
        if let Some(min) = rule.min_severity {
            if self.severity < min {
                return None;
            }
            why.push(format!("severity {:.2} >= {min:.2}", self.severity));
        }
        if let Some(min) = rule.min_score {
            if self.score < min {
                return None;
            }
            why.push(format!("score {:.2} >= {min:.2}", self.score));
        }
        if let Some(below) = rule.sentiment_below {
            let s = self.sentiment.filter(|&s| s < below)?;
            why.push(format!("sentiment {s:+.2} < {below:+.2}"));
        }
        if let Some(min) = rule.min_prior_contacts {
            if self.prior_contacts < min {
                return None;
            }
            why.push(format!("{} earlier contacts >= {min}", self.prior_contacts));
        }
        if let Some(want) = rule.urgent {
            if self.urgent != want {
                return None;
            }
            why.push(
                if want {
                    "urgency cue"
                } else {
                    "no urgency cue"
                }
                .to_string(),
            );
        }
        Some(why.join(", "))
    }
}

/// Appends a factor's reason when it contributes to the score; its text is built only then.
fn add_reason(
    reasons: &mut Vec<Reason>,
    factor: Factor,
    weight: f32,
    strength: f32,
    detail: impl FnOnce() -> String,
) {
    let contribution = snap(weight * unit_or_zero(strength));
    if contribution > 0.0 {
        reasons.push(Reason {
            factor,
            weight: contribution,
            detail: detail(),
        });
    }
}

fn distinct_cues(cues: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in cues {
        let c = c.trim();
        if !c.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(c)) {
            out.push(c.to_string());
        }
    }
    out
}

fn sentiment_detail(sentiment: Option<f32>, cues: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    match sentiment {
        Some(s) if s < 0.0 => {
            let word = if s <= -0.6 {
                "strongly negative"
            } else if s <= -0.3 {
                "negative"
            } else {
                "mildly negative"
            };
            parts.push(format!("{word} (compound {s:+.2})"));
        }
        Some(s) => parts.push(format!("compound {s:+.2}")),
        None => {}
    }
    if !cues.is_empty() {
        let noun = if cues.len() == 1 { "cue" } else { "cues" };
        parts.push(format!("frustration {noun} {}", quoted_list(cues)));
    }
    parts.join("; ")
}

/// A compact multi-line breakdown for people: the level line, one line per contributing
/// factor, then one line per escalation cause.
pub fn explain(p: &Priority) -> String {
    let mut out = format!(
        "{} (score {:.2}){}",
        p.level,
        p.score,
        if p.escalate { " escalate" } else { "" }
    );
    for r in &p.reasons {
        if r.factor == Factor::Rule && r.weight == 0.0 {
            out.push_str(&format!("\n  escalate: {}", r.detail));
        } else {
            out.push_str(&format!(
                "\n  +{:.2} {:<16} {}",
                r.weight,
                r.factor.as_str(),
                r.detail
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::priority::Weights;
    use crate::analysis::sentiment::tokens_of;

    use Factor::*;
    use Level::*;

    fn engine() -> PriorityEngine {
        PriorityEngine::default()
    }

    #[test]
    fn critical_cards_are_at_least_p2_and_escalate_when_upset_or_key_account() {
        let e = engine();
        for intent in [
            "card_compromised",
            "card_lost_or_stolen",
            "compromised_card",
            "lost_or_stolen_card",
        ] {
            for (tier, sentiment) in [
                ("standard", 0.0),
                ("standard", 0.8),
                ("premium", 0.0),
                ("business", 0.5),
                ("standard", -0.5),
            ] {
                let p = e.assess(&PriorityInput {
                    sentiment: Some(sentiment),
                    tier: Some(tier),
                    text: &tokens_of("my card"),
                    ..PriorityInput::plain(intent)
                });
                assert!(
                    p.level <= P2,
                    "{intent} {tier} {sentiment}: {}",
                    explain(&p)
                );
                let should = tier != "standard" || sentiment < 0.0;
                assert_eq!(
                    p.escalate,
                    should,
                    "{intent} {tier} {sentiment}: {}",
                    explain(&p)
                );
            }
        }
    }

    #[test]
    fn all_lists_every_variant_in_declaration_order() {
        for (i, f) in Factor::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i, "{f}");
        }
        assert_eq!(Factor::ALL.len(), Rule as usize + 1);
        for (i, l) in Level::ALL.iter().enumerate() {
            assert_eq!(*l as usize, i, "{l}");
        }
        assert_eq!(Level::ALL.len(), P4 as usize + 1);
    }

    #[test]
    fn a_negated_elongated_cue_is_not_urgent() {
        let e = engine();
        let urgency = |text: &str| {
            let p = e.assess(&PriorityInput {
                text: &tokens_of(text),
                ..PriorityInput::plain("change_address")
            });
            p.reasons.iter().any(|r| r.factor == UrgencyCue)
        };
        assert!(!urgency("not sooo urgent, just curious"));
        assert!(urgency("sooo urgent, please"));
    }

    #[test]
    fn abstention_with_a_tentative_intent_keeps_its_severity() {
        let e = engine();
        let p = e.assess(&PriorityInput {
            confidence: 0.4,
            abstained: true,
            uncertainty: 0.7,
            tier: Some("business"),
            ..PriorityInput::plain("compromised_card")
        });
        let text = explain(&p);
        assert!(text.contains("(tentative: model abstained)"), "{text}");
        assert!(
            text.contains("model abstained on a business customer"),
            "{text}"
        );
        assert_eq!(p.level, P1, "{text}");
    }

    #[test]
    fn scores_stay_in_range_and_reasons_sorted() {
        // A small xorshift keeps the sweep deterministic without a dependency.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let intents = [
            None,
            Some("compromised_card"),
            Some("change_address"),
            Some("complaint"),
            Some("not_a_label"),
            Some(""),
        ];
        let tiers = [
            None,
            Some("premium"),
            Some("business"),
            Some("standard"),
            Some("gold"),
        ];
        let texts = [
            "",
            "asap",
            "not urgent",
            "I lost £200 by friday",
            "hello",
            "stolen fraud urgent today",
        ]
        .map(tokens_of);
        let floats = [
            f32::NAN,
            -5.0,
            -1.0,
            -0.5,
            0.0,
            0.3,
            1.0,
            7.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let cue_sets: [Vec<String>; 3] = [
            vec![],
            vec!["still waiting".into()],
            vec![
                "a".into(),
                "b".into(),
                "A".into(),
                "c".into(),
                "d".into(),
                " ".into(),
            ],
        ];
        let mut configs = vec![PriorityConfig::default()];
        configs.push(PriorityConfig {
            weights: Weights {
                intent_severity: 1.0,
                sentiment: 1.0,
                customer_tier: 1.0,
                urgency_cue: 1.0,
                repeat_contact: 1.0,
                uncertainty: 1.0,
            },
            ..PriorityConfig::default()
        });
        configs.push(PriorityConfig {
            weights: Weights {
                intent_severity: 0.0,
                sentiment: 0.0,
                customer_tier: 0.0,
                urgency_cue: 0.0,
                repeat_contact: 0.0,
                uncertainty: 0.0,
            },
            ..PriorityConfig::default()
        });
        for config in configs {
            let e = PriorityEngine::new(config).unwrap();
            for _ in 0..4000 {
                let pick = |n: u64, len: usize| (n % len as u64) as usize;
                let sentiment = floats[pick(next(), floats.len())];
                let input = PriorityInput {
                    intent: intents[pick(next(), intents.len())],
                    confidence: floats[pick(next(), floats.len())],
                    abstained: next() % 2 == 0,
                    uncertainty: floats[pick(next(), floats.len())],
                    sentiment: (next() % 4 != 0).then_some(sentiment),
                    sentiment_cues: &cue_sets[pick(next(), cue_sets.len())],
                    tier: tiers[pick(next(), tiers.len())],
                    text: &texts[pick(next(), texts.len())],
                    prior_contacts: [0, 1, 2, 3, 10, u32::MAX][pick(next(), 6)],
                };
                let p = e.assess(&input);
                let ctx = || format!("{input:?}\n{}", explain(&p));
                assert!((0.0..=1.0).contains(&p.score), "{}", ctx());
                assert_eq!(p.level, e.config().levels.level_for(p.score), "{}", ctx());
                for pair in p.reasons.windows(2) {
                    let (a, b) = (&pair[0], &pair[1]);
                    assert!(
                        a.weight > b.weight || (a.weight == b.weight && a.factor <= b.factor),
                        "{}",
                        ctx()
                    );
                }
                for r in &p.reasons {
                    assert!(r.weight.is_finite() && r.weight >= 0.0, "{}", ctx());
                    assert!(r.factor == Rule || r.weight > 0.0, "{}", ctx());
                    assert!(!r.detail.is_empty(), "{}", ctx());
                }
                let rules = p.reasons.iter().filter(|r| r.factor == Rule).count();
                assert_eq!(p.escalate, rules > 0, "{}", ctx());
                assert!(p.level != P1 || p.escalate, "{}", ctx());
                let sum: f32 = p.reasons.iter().map(|r| r.weight).sum();
                assert!((p.score - sum.min(1.0)).abs() < 1e-3, "{}", ctx());
            }
        }
    }
}
