//! Priority and escalation rules: turns what earlier steps found about one query (intent,
//! confidence, sentiment, customer tier, text, repeat contacts) into a level P1–P4, a score in
//! [0, 1], an escalate flag and the reasons behind them. This module owns the scoring model,
//! its defaults (the `[priority]` section of `cqr.toml`), their validation and the urgency cue
//! matcher; it does no I/O. Callers load the configuration, count prior contacts (see
//! `analysis::ContactLog` for a stream, [`PriorityEngine::count_prior_contacts`] for a list)
//! and write the results.
//!
//! # Scoring
//!
//! The score is additive so that a support lead can check it by hand: every factor has a
//! strength in [0, 1] and a configured weight, contributes `weight × strength`, and the score is
//! the sum clamped to [0, 1] (rounded to 4 decimals so that a case sitting exactly on a cut-off
//! is not demoted by float noise).
//!
//! | factor | strength |
//! |---|---|
//! | `intent_severity` | severity of the intent (`severity` table, else `default_severity`; abstentions without an intent use `default_severity`) |
//! | `sentiment` | `max(0, -compound)` plus [`SENTIMENT_CUE_STRENGTH`] per distinct frustration cue, capped at 1; positive sentiment adds nothing |
//! | `customer_tier` | the tier's factor (`tiers` table; unknown or missing tier adds nothing) |
//! | `urgency_cue` | 1 when a deadline or money-lost cue occurs in the text, else 0 |
//! | `repeat_contact` | `min(prior_contacts / 3, 1)` ([`REPEAT_SATURATION`]) |
//! | `uncertainty` | 1 when the model abstained, else how far its uncertainty is above [`UNCERTAINTY_FLOOR`], scaled to [0, 1] |
//!
//! Levels: P1 at `levels.p1` (0.75) or more, P2 at `levels.p2` (0.5), P3 at `levels.p3`
//! (0.25), else P4. A query escalates when it is P1, when the model abstained on a tier listed
//! in `escalate_on_abstain_tiers`, or when an `escalate_rules` entry matches; every cause is
//! listed among the reasons as a `rule` with weight 0, since escalation never changes the score.
//!
//! Urgency cues are matched on lowercased word tokens, never inside words. Built in: deadlines
//! (`today`, `tonight`, `asap`, `urgent`, `immediately`, `emergency`, `by friday`,
//! `by tomorrow`, `before 5pm`, `within 24 hours`, ...) and money lost (`lost £200`, `stolen`,
//! `fraud`, `took all my money`, `missing money`, ...); `urgency_cues` adds phrases. A cue
//! directly negated (`not urgent`, `isn't an emergency`, `non-urgent`) does not count, nor does
//! `today`/`tonight` right after a verb telling what already happened (`received my order
//! today`).
//!
//! Configuration: `severity` and `tiers` entries are merged key by key onto the built-in tables
//! (set a value to override one, e.g. `severity = { refund_request = 0.9 }`); lists
//! (`urgency_cues`, `escalate_on_abstain_tiers`, `escalate_rules`) replace the default list.
//! Intent and tier names are compared case-insensitively.
//!
//! # Documented cases (default configuration)
//!
//! A compromised, lost or stolen card is P2 on its own (severity 1.0 × weight 0.6) and reaches
//! P1 with any further signal; the default rules escalate it for premium or business customers
//! and for clearly negative messages even while it is still P2.
//!
//! | # | query | signals | score | level | escalate |
//! |---|---|---|---|---|---|
//! | 1 | card_compromised, standard: "I think someone has copied my card details." | neutral | 0.60 | P2 | no |
//! | 2 | card_compromised, premium: "Someone has used my card details online." | neutral | 0.75 | P1 | yes: level P1; rule "critical intent, premium or business customer" |
//! | 3 | card_lost_or_stolen, business: "I can't find my card anywhere, please block it." | neutral | 0.72 | P2 | yes: rule "critical intent, premium or business customer" |
//! | 4 | card_lost_or_stolen, standard: "I lost my card and I'm really worried." | sentiment -0.50 | 0.75 | P1 | yes: level P1; rule "critical intent, upset customer" |
//! | 5 | change_address, standard: "How do I change my address?" | neutral | 0.12 | P4 | no |
//! | 6 | billing_question, premium: "Can you explain the charges on my last invoice?" | neutral | 0.33 | P3 | no |
//! | 7 | complaint, standard: "This is the third time I've written and nobody has answered." | sentiment -0.80; cues "third time"; 2 prior contacts | 0.80 | P1 | yes: level P1 |
//! | 8 | abstained, premium: "Hi, it's about the thing from last week." | neutral; abstained (confidence 0.30) | 0.48 | P3 | yes: model abstained on a premium customer |
//! | 9 | abstained, standard: "Hi, it's about the thing from last week." | neutral; abstained (confidence 0.30) | 0.33 | P3 | no |
//! | 10 | refund_request, standard: "I need this refunded today or I'm going to my bank." | sentiment -0.40 | 0.56 | P2 | no |
//! | 11 | order_status, business: "Where is my order? It's a bit late." | sentiment -0.30 | 0.36 | P3 | no |
//! | 12 | delivery_delayed, standard: "My parcel still hasn't arrived." | neutral; 3 prior contacts | 0.57 | P2 | no |
//! | 13 | password_reset, standard: "Thanks so much! How do I reset my password?" | sentiment +0.60 | 0.24 | P4 | no |
//! | 14 | change_address, standard: "No rush and not urgent: how do I change my address?" | neutral | 0.12 | P4 | no |
//! | 15 | double_charge, standard: "You took all my money, I was charged twice." | neutral | 0.62 | P2 | no |
//! | 16 | login_problem, business: "Can't log in, please fix asap." | neutral | 0.62 | P2 | no |
//! | 17 | damaged_item, premium: "The desk arrived smashed. I need a replacement before 5pm." | sentiment -0.60 | 0.83 | P1 | yes: level P1 |
//! | 18 | billing_question, standard: "question about the thing on my account" | neutral; uncertainty 0.80 (confidence 0.35) | 0.27 | P3 | no |
//! | 19 | gift_card_balance, standard: "What's the balance on my gift card?" | neutral | 0.18 | P4 | no |
//! | 20 | compromised_card, premium: "URGENT: fraud, someone stole £900, this is my fourth message!" | sentiment -0.90; cues "fourth message", "not again"; 4 prior contacts | 1.00 | P1 | yes: level P1; rule "critical intent, premium or business customer"; rule "critical intent, upset customer" |

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// How much each distinct frustration cue (e.g. "still waiting") adds to the sentiment factor's
/// strength. The compound score alone misses polite but repeated chasing, so cues lift it.
pub const SENTIMENT_CUE_STRENGTH: f32 = 0.25;

/// Uncertainty at or below this adds nothing: a model choosing clearly still spreads some
/// probability, and counting that residue would nudge every query up a little and tip
/// routine intents over a cut-off.
pub const UNCERTAINTY_FLOOR: f32 = 0.5;

/// Prior contacts at which the repeat factor saturates: the third earlier contact inside the
/// window means the customer has been chasing, and more chasing says nothing new.
pub const REPEAT_SATURATION: u32 = 3;

/// The `[priority]` section of `cqr.toml`. Missing keys take the built-in defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorityConfig {
    /// How much each factor can add to the score.
    pub weights: Weights,
    /// Intent → severity in [0, 1]. Entries from the file are merged onto the defaults.
    #[serde(deserialize_with = "merge_onto_default_severity")]
    pub severity: BTreeMap<String, f32>,
    /// Severity of intents missing from `severity`, and of abstentions without an intent.
    pub default_severity: f32,
    /// Customer tier → factor in [0, 1]. Entries from the file are merged onto the defaults.
    #[serde(deserialize_with = "merge_onto_default_tiers")]
    pub tiers: BTreeMap<String, f32>,
    /// Tiers for which an abstention escalates.
    pub escalate_on_abstain_tiers: Vec<String>,
    /// Extra urgency phrases, on top of the built-in deadline and money-lost cues.
    pub urgency_cues: Vec<String>,
    /// Window in which earlier contacts by the same customer count as repeats.
    pub repeat_window_hours: f32,
    /// Score cut-offs for the levels.
    pub levels: Levels,
    /// Extra escalation rules; a query escalates when any rule matches.
    pub escalate_rules: Vec<EscalateRule>,
}

/// Maximum contribution of each factor; named after [`Factor::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub intent_severity: f32,
    pub sentiment: f32,
    pub customer_tier: f32,
    pub urgency_cue: f32,
    pub repeat_contact: f32,
    pub uncertainty: f32,
}

/// Lowest score of each level; anything below `p3` is P4.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Levels {
    pub p1: f32,
    pub p2: f32,
    pub p3: f32,
}

/// An escalation rule: it matches when every condition it sets holds (a rule must set at least
/// one). `intent` and `tier` take one name or a list of names, any of which may match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalateRule {
    /// Shown in the reasons; defaults to `escalate_rules[i]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub intent: Vec<String>,
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tier: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f32>,
    /// Compound sentiment strictly below this; never matches when sentiment was not computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentiment_below: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_prior_contacts: Option<u32>,
    /// `true`: an urgency cue occurred; `false`: none did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urgent: Option<bool>,
}

impl Default for Weights {
    fn default() -> Self {
        // Severity alone takes a critical intent to P2 (0.6) and a routine one no further than
        // P4/P3; any one strong extra signal (tier, urgency, anger, chasing) then lifts a
        // critical intent to P1.
        Weights {
            intent_severity: 0.6,
            sentiment: 0.3,
            customer_tier: 0.15,
            urgency_cue: 0.2,
            repeat_contact: 0.3,
            uncertainty: 0.15,
        }
    }
}

impl Default for Levels {
    fn default() -> Self {
        Levels {
            p1: 0.75,
            p2: 0.5,
            p3: 0.25,
        }
    }
}

impl Levels {
    /// The level a score falls in; cut-offs are inclusive.
    pub fn level_for(&self, score: f32) -> Level {
        if score >= self.p1 {
            Level::P1
        } else if score >= self.p2 {
            Level::P2
        } else if score >= self.p3 {
            Level::P3
        } else {
            Level::P4
        }
    }
}

/// Built-in severities for the BANKING77 labels and the sample ticket intents. Graded by what
/// the customer stands to lose while waiting: 1.0 money or card in someone else's hands, ~0.7–0.9
/// money gone or access lost right now, ~0.4–0.6 a problem that costs time, ≤ 0.3 questions.
pub fn default_severity_table() -> BTreeMap<String, f32> {
    const TABLE: &[(&str, f32)] = &[
        // BANKING77
        ("compromised_card", 1.0),
        ("lost_or_stolen_card", 1.0),
        ("card_payment_not_recognised", 0.95),
        ("cash_withdrawal_not_recognised", 0.95),
        ("lost_or_stolen_phone", 0.9),
        ("direct_debit_payment_not_recognised", 0.9),
        ("card_swallowed", 0.85),
        ("transaction_charged_twice", 0.75),
        ("pin_blocked", 0.75),
        ("wrong_amount_of_cash_received", 0.75),
        ("transfer_not_received_by_recipient", 0.7),
        ("declined_card_payment", 0.65),
        ("declined_cash_withdrawal", 0.65),
        ("card_not_working", 0.65),
        ("declined_transfer", 0.6),
        ("failed_transfer", 0.6),
        ("cancel_transfer", 0.6),
        ("balance_not_updated_after_bank_transfer", 0.6),
        ("balance_not_updated_after_cheque_or_cash_deposit", 0.6),
        ("unable_to_verify_identity", 0.55),
        ("top_up_failed", 0.55),
        ("top_up_reverted", 0.55),
        ("extra_charge_on_statement", 0.55),
        ("virtual_card_not_working", 0.5),
        ("reverted_card_payment?", 0.5),
        ("Refund_not_showing_up", 0.5),
        ("pending_cash_withdrawal", 0.5),
        ("passcode_forgotten", 0.5),
        ("contactless_not_working", 0.45),
        ("pending_transfer", 0.45),
        ("pending_top_up", 0.45),
        ("beneficiary_not_allowed", 0.45),
        ("pending_card_payment", 0.4),
        ("request_refund", 0.4),
        ("verify_source_of_funds", 0.4),
        ("card_payment_wrong_exchange_rate", 0.4),
        ("wrong_exchange_rate_for_cash_withdrawal", 0.4),
        ("card_payment_fee_charged", 0.35),
        ("transfer_fee_charged", 0.35),
        ("terminate_account", 0.35),
        ("card_arrival", 0.35),
        ("cash_withdrawal_charge", 0.3),
        ("exchange_charge", 0.3),
        ("top_up_by_card_charge", 0.3),
        ("top_up_by_bank_transfer_charge", 0.3),
        ("card_about_to_expire", 0.3),
        ("activate_my_card", 0.3),
        ("verify_my_identity", 0.3),
        ("verify_top_up", 0.3),
        ("change_pin", 0.25),
        ("transfer_timing", 0.25),
        ("receiving_money", 0.25),
        ("card_delivery_estimate", 0.2),
        ("edit_personal_details", 0.2),
        ("why_verify_identity", 0.2),
        ("transfer_into_account", 0.2),
        ("atm_support", 0.2),
        ("card_linking", 0.2),
        ("get_physical_card", 0.2),
        ("order_physical_card", 0.2),
        ("apple_pay_or_google_pay", 0.15),
        ("automatic_top_up", 0.15),
        ("card_acceptance", 0.15),
        ("exchange_via_app", 0.15),
        ("top_up_by_cash_or_cheque", 0.15),
        ("topping_up_by_card", 0.15),
        ("age_limit", 0.1),
        ("country_support", 0.1),
        ("disposable_card_limits", 0.1),
        ("exchange_rate", 0.1),
        ("fiat_currency_support", 0.1),
        ("get_disposable_virtual_card", 0.1),
        ("getting_spare_card", 0.1),
        ("getting_virtual_card", 0.1),
        ("supported_cards_and_currencies", 0.1),
        ("top_up_limits", 0.1),
        ("visa_or_mastercard", 0.1),
        // Sample tickets
        ("card_compromised", 1.0),
        ("card_lost_or_stolen", 1.0),
        ("account_locked", 0.7),
        ("double_charge", 0.7),
        ("complaint", 0.5),
        ("damaged_item", 0.5),
        ("login_problem", 0.5),
        ("delivery_delayed", 0.45),
        ("wrong_item", 0.45),
        ("password_reset", 0.4),
        ("refund_request", 0.4),
        ("update_payment_method", 0.35),
        ("billing_question", 0.3),
        ("cancel_subscription", 0.3),
        ("order_status", 0.25),
        ("change_address", 0.2),
    ];
    TABLE.iter().map(|&(k, v)| (k.to_string(), v)).collect()
}

/// Built-in tier factors.
pub fn default_tier_table() -> BTreeMap<String, f32> {
    [("premium", 1.0), ("business", 0.8), ("standard", 0.0)]
        .iter()
        .map(|&(k, v)| (k.to_string(), v))
        .collect()
}

/// Built-in escalation rules: a critical intent (money or card exposed) must not wait in a
/// queue behind its score when the customer is a key account or visibly upset.
pub fn default_escalate_rules() -> Vec<EscalateRule> {
    vec![
        EscalateRule {
            name: Some("critical intent, premium or business customer".into()),
            tier: vec!["premium".into(), "business".into()],
            min_severity: Some(0.9),
            ..EscalateRule::default()
        },
        EscalateRule {
            name: Some("critical intent, upset customer".into()),
            min_severity: Some(0.9),
            sentiment_below: Some(-0.3),
            ..EscalateRule::default()
        },
    ]
}

impl Default for PriorityConfig {
    fn default() -> Self {
        PriorityConfig {
            weights: Weights::default(),
            severity: default_severity_table(),
            default_severity: 0.3,
            tiers: default_tier_table(),
            escalate_on_abstain_tiers: vec!["premium".into(), "business".into()],
            urgency_cues: Vec::new(),
            repeat_window_hours: 72.0,
            levels: Levels::default(),
            escalate_rules: default_escalate_rules(),
        }
    }
}

fn merge_onto_default_severity<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, f32>, D::Error> {
    let mut table = default_severity_table();
    table.extend(BTreeMap::<String, f32>::deserialize(d)?);
    Ok(table)
}

fn merge_onto_default_tiers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, f32>, D::Error> {
    let mut table = default_tier_table();
    table.extend(BTreeMap::<String, f32>::deserialize(d)?);
    Ok(table)
}

/// Accepts `"name"` or `["a", "b"]`, so a one-intent rule reads naturally.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;
    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(OneOrMany)
}

fn check_unit(key: &str, v: f32) -> Result<(), String> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("{key} ({v}) must be within [0, 1]"))
    }
}

fn check_table(section: &str, table: &BTreeMap<String, f32>) -> Result<(), String> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (name, &v) in table {
        if name.trim().is_empty() {
            return Err(format!("{section} has an empty name"));
        }
        check_unit(&format!("{section}.{name}"), v)?;
        // Lookups ignore case, so two spellings would make one of them silently dead.
        if let Some(other) = seen.insert(name.trim().to_lowercase(), name) {
            return Err(format!(
                "{section}.{other} and {section}.{name} differ only in case; keep one"
            ));
        }
    }
    Ok(())
}

impl PriorityConfig {
    /// Rejects values out of range, non-monotone levels, empty names, cues with nothing to
    /// match and rules without conditions. Messages name the offending `priority.*` key.
    pub fn validate(&self) -> Result<(), String> {
        let w = &self.weights;
        for (key, v) in [
            ("intent_severity", w.intent_severity),
            ("sentiment", w.sentiment),
            ("customer_tier", w.customer_tier),
            ("urgency_cue", w.urgency_cue),
            ("repeat_contact", w.repeat_contact),
            ("uncertainty", w.uncertainty),
        ] {
            check_unit(&format!("priority.weights.{key}"), v)?;
        }
        check_table("priority.severity", &self.severity)?;
        check_unit("priority.default_severity", self.default_severity)?;
        check_table("priority.tiers", &self.tiers)?;
        for (i, t) in self.escalate_on_abstain_tiers.iter().enumerate() {
            if t.trim().is_empty() {
                return Err(format!("priority.escalate_on_abstain_tiers[{i}] is empty"));
            }
        }
        for (i, cue) in self.urgency_cues.iter().enumerate() {
            if tokenize(cue).is_empty() {
                return Err(format!(
                    "priority.urgency_cues[{i}] ({cue:?}) has no letters or digits to match"
                ));
            }
        }
        if !(self.repeat_window_hours.is_finite() && self.repeat_window_hours > 0.0) {
            return Err(format!(
                "priority.repeat_window_hours ({}) must be a positive number of hours",
                self.repeat_window_hours
            ));
        }
        let l = &self.levels;
        for (key, v) in [("p1", l.p1), ("p2", l.p2), ("p3", l.p3)] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(format!("priority.levels.{key} ({v}) must be within (0, 1]"));
            }
        }
        if l.p2 >= l.p1 {
            return Err(format!(
                "priority.levels.p2 ({}) must be below priority.levels.p1 ({})",
                l.p2, l.p1
            ));
        }
        if l.p3 >= l.p2 {
            return Err(format!(
                "priority.levels.p3 ({}) must be below priority.levels.p2 ({})",
                l.p3, l.p2
            ));
        }
        for (i, r) in self.escalate_rules.iter().enumerate() {
            let key = format!("priority.escalate_rules[{i}]");
            let has_condition = !r.intent.is_empty()
                || !r.tier.is_empty()
                || r.min_severity.is_some()
                || r.min_score.is_some()
                || r.sentiment_below.is_some()
                || r.min_prior_contacts.is_some()
                || r.urgent.is_some();
            if !has_condition {
                return Err(format!(
                    "{key} has no conditions, so it would escalate every query"
                ));
            }
            for (field, names) in [("intent", &r.intent), ("tier", &r.tier)] {
                if names.iter().any(|n| n.trim().is_empty()) {
                    return Err(format!("{key}.{field} contains an empty name"));
                }
            }
            if let Some(v) = r.min_severity {
                check_unit(&format!("{key}.min_severity"), v)?;
            }
            if let Some(v) = r.min_score {
                check_unit(&format!("{key}.min_score"), v)?;
            }
            if let Some(v) = r.sentiment_below {
                if !(-1.0..=1.0).contains(&v) {
                    return Err(format!(
                        "{key}.sentiment_below ({v}) must be within [-1, 1]"
                    ));
                }
            }
        }
        Ok(())
    }
}

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
    /// The query text, already PII-masked.
    pub text: &'a str,
    /// Contacts by the same customer within the repeat window (0 when unknown).
    pub prior_contacts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Level {
    P1,
    P2,
    P3,
    P4,
}

impl Level {
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
struct Cue {
    tokens: Vec<String>,
    label: String,
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
    cues: Vec<Cue>,
    /// Indices into `cues` by their first token, so a text is scanned once, not once per cue.
    cue_index: HashMap<String, Vec<usize>>,
    rules: Vec<CompiledRule>,
}

/// Plain phrases that are always urgency cues; slot patterns such as "by friday" or
/// "lost £200" are matched in [`match_pattern`].
const BUILTIN_CUES: &[&str] = &[
    "asap",
    "urgent",
    "urgently",
    "emergency",
    "immediately",
    "right away",
    "straight away",
    "right now",
    "as soon as possible",
    "today",
    "tonight",
    "end of day",
    "eod",
    "stolen",
    "fraud",
    "fraudulent",
    "scammed",
    "unauthorised",
    "unauthorized",
    "took all my money",
    "taken all my money",
    "lost all my money",
    "lost my money",
    "missing money",
    "money is missing",
    "money missing",
    "emptied my account",
];

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
        let cues: Vec<Cue> = BUILTIN_CUES
            .iter()
            .map(|c| c.to_string())
            .chain(config.urgency_cues.iter().map(|c| c.trim().to_string()))
            .map(|label| Cue {
                tokens: tokenize(&label),
                label,
            })
            .collect();
        let mut cue_index: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in cues.iter().enumerate() {
            if let Some(first) = c.tokens.first() {
                cue_index.entry(first.clone()).or_default().push(i);
            }
        }
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
            cue_index,
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

    /// Counts `others` (Unix seconds of the same customer's other contacts, not this one) that
    /// fall within `repeat_window_hours` before `at`, for [`PriorityInput::prior_contacts`].
    pub fn count_prior_contacts(&self, at: i64, others: impl IntoIterator<Item = i64>) -> u32 {
        let from = at.saturating_sub(self.repeat_window_secs());
        let n = others.into_iter().filter(|&t| t >= from && t <= at).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The urgency cues found in `text`, in order of appearance, without repeats.
    pub fn urgency_cues_in(&self, text: &str) -> Vec<String> {
        let tokens = tokenize(text);
        let mut found: Vec<String> = Vec::new();
        // Tokens inside an earlier match are not matched again, so "by tonight" is not also
        // reported as "tonight".
        let mut covered = 0;
        for i in 0..tokens.len() {
            if i < covered {
                continue;
            }
            let mut hits: Vec<(String, usize)> = self
                .cue_index
                .get(&tokens[i])
                .into_iter()
                .flatten()
                .map(|&k| &self.cues[k])
                .filter(|c| tokens[i..].starts_with(&c.tokens))
                .map(|c| (c.label.clone(), c.tokens.len()))
                .collect();
            if let Some(len) = match_pattern(&tokens, i) {
                hits.push((render(&tokens[i..i + len]), len));
            }
            if hits.is_empty() || is_negated(&tokens, i) || is_past_day(&tokens, i) {
                continue;
            }
            covered = i + hits.iter().map(|h| h.1).max().unwrap_or(1);
            for (h, _) in hits {
                if !found.contains(&h) {
                    found.push(h);
                }
            }
        }
        found
    }

    /// Scores one query. Never fails: out-of-range or NaN inputs are clamped or ignored, so a
    /// bad value upstream degrades one explanation rather than a whole batch.
    pub fn assess(&self, input: &PriorityInput) -> Priority {
        let w = &self.config.weights;
        let intent = input.intent.map(str::trim).filter(|s| !s.is_empty());
        let tier = input.tier.map(key).filter(|s| !s.is_empty());
        let sentiment = input
            .sentiment
            .filter(|s| !s.is_nan())
            .map(|s| s.clamp(-1.0, 1.0));
        let confidence = unit_or_zero(input.confidence);

        let mut reasons: Vec<Reason> = Vec::new();
        let mut add = |factor: Factor, weight: f32, strength: f32, detail: String| {
            let contribution = snap(weight * unit_or_zero(strength));
            if contribution > 0.0 {
                reasons.push(Reason {
                    factor,
                    weight: contribution,
                    detail,
                });
            }
        };

        let (severity, detail) = self.severity_of(intent, input.abstained);
        add(Factor::IntentSeverity, w.intent_severity, severity, detail);

        let cues = distinct_cues(input.sentiment_cues);
        let negativity = sentiment.map_or(0.0, |s| (-s).max(0.0));
        let strength = negativity + SENTIMENT_CUE_STRENGTH * cues.len() as f32;
        add(
            Factor::Sentiment,
            w.sentiment,
            strength,
            sentiment_detail(sentiment, &cues),
        );

        if let Some(t) = &tier {
            if let Some(&f) = self.tiers.get(t) {
                add(
                    Factor::CustomerTier,
                    w.customer_tier,
                    f,
                    format!("{t} customer (tier factor {f:.2})"),
                );
            }
        }

        let urgent = self.urgency_cues_in(input.text);
        if !urgent.is_empty() {
            let noun = if urgent.len() == 1 { "cue" } else { "cues" };
            add(
                Factor::UrgencyCue,
                w.urgency_cue,
                1.0,
                format!("urgency {noun} {}", quoted_list(&urgent)),
            );
        }

        if input.prior_contacts > 0 {
            let n = input.prior_contacts;
            add(
                Factor::RepeatContact,
                w.repeat_contact,
                n as f32 / REPEAT_SATURATION as f32,
                format!(
                    "{n} earlier contact{} within {} h",
                    if n == 1 { "" } else { "s" },
                    self.config.repeat_window_hours
                ),
            );
        }

        if input.abstained {
            add(
                Factor::Uncertainty,
                w.uncertainty,
                1.0,
                format!("model abstained (confidence {confidence:.2})"),
            );
        } else {
            let u = unit_or_zero(input.uncertainty);
            add(
                Factor::Uncertainty,
                w.uncertainty,
                (u - UNCERTAINTY_FLOOR) / (1.0 - UNCERTAINTY_FLOOR),
                format!("model uncertainty {u:.2} (confidence {confidence:.2})"),
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
            intent: intent.map(key),
            tier: tier.clone(),
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

    fn severity_of(&self, intent: Option<&str>, abstained: bool) -> (f32, String) {
        let default = self.config.default_severity;
        let Some(name) = intent else {
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
        match self.severity.get(&key(name)) {
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
struct Facts {
    intent: Option<String>,
    tier: Option<String>,
    severity: f32,
    score: f32,
    sentiment: Option<f32>,
    prior_contacts: u32,
    urgent: bool,
}

impl Facts {
    /// `Some(conditions that held)` when every condition of the rule holds.
    fn matches(&self, r: &CompiledRule) -> Option<String> {
        let mut why: Vec<String> = Vec::new();
        if !r.intents.is_empty() {
            let i = self.intent.as_ref().filter(|i| r.intents.contains(i))?;
            why.push(format!("intent {i}"));
        }
        if !r.tiers.is_empty() {
            let t = self.tier.as_ref().filter(|t| r.tiers.contains(t))?;
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

// ---- urgency cue matching ----

const CURRENCY_SYMBOLS: &[char] = &['£', '$', '€', '¥', '₹'];
const CURRENCY_WORDS: &[&str] = &[
    "pounds", "pound", "quid", "gbp", "euros", "euro", "eur", "dollars", "dollar", "usd",
];
const DAY_WORDS: &[&str] = &[
    "today",
    "tonight",
    "tomorrow",
    "tmrw",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "weekend",
    "noon",
    "midday",
    "midnight",
    "eod",
    "morning",
    "lunchtime",
];
const NEGATORS: &[&str] = &[
    "not", "no", "non", "never", "isnt", "arent", "wasnt", "werent", "dont", "doesnt", "didnt",
    "aint", "nothing",
];
// Words that may sit between a negator and the cue it negates ("not that urgent").
const SOFTENERS: &[&str] = &[
    "a",
    "an",
    "very",
    "that",
    "really",
    "so",
    "too",
    "super",
    "particularly",
    "terribly",
];

/// Lowercased word tokens. Apostrophes inside words are dropped ("isn't" → "isnt") so that
/// contractions stay one token; digits keep their separators ("17:00", "2,998.99"); currency
/// symbols are tokens of their own ("£200" → "£", "200").
fn tokenize(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
        } else if matches!(c, '\'' | '’')
            && !cur.is_empty()
            && next.is_some_and(char::is_alphanumeric)
        {
            continue;
        } else if matches!(c, '.' | ',' | ':')
            && cur.ends_with(|p: char| p.is_ascii_digit())
            && next.is_some_and(|n| n.is_ascii_digit())
        {
            cur.push(c);
        } else {
            if !cur.is_empty() {
                tokens.push(std::mem::take(&mut cur));
            }
            if CURRENCY_SYMBOLS.contains(&c) {
                tokens.push(c.to_string());
            }
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    tokens
}

fn render(tokens: &[String]) -> String {
    let mut out = String::new();
    for (i, t) in tokens.iter().enumerate() {
        let after_symbol = i > 0 && tokens[i - 1].chars().all(|c| CURRENCY_SYMBOLS.contains(&c));
        if i > 0 && !after_symbol {
            out.push(' ');
        }
        out.push_str(t);
    }
    out
}

fn is_negated(tokens: &[String], i: usize) -> bool {
    let before = |k: usize| i.checked_sub(k).map(|j| tokens[j].as_str());
    match (before(2), before(1)) {
        (_, Some(w)) if NEGATORS.contains(&w) => true,
        (Some(n), Some(s)) => NEGATORS.contains(&n) && SOFTENERS.contains(&s),
        _ => false,
    }
}

/// "received my order today" says when, not by when: a day word shortly after a verb of
/// something already done is no deadline. Verbs that name the remedy ("resolved", "sorted")
/// are deliberately absent, so "I need it sorted today" still counts.
fn is_past_day(tokens: &[String], i: usize) -> bool {
    const DONE: &[&str] = &[
        "received",
        "recieved",
        "recived",
        "arrived",
        "arrive",
        "came",
        "delivered",
        "got",
        "ordered",
        "bought",
        "paid",
        "called",
        "rang",
        "emailed",
        "checked",
        "noticed",
        "saw",
        "opened",
        "happened",
        "started",
        "sent",
        "placed",
    ];
    matches!(tokens[i].as_str(), "today" | "tonight")
        && tokens[i.saturating_sub(3)..i]
            .iter()
            .any(|t| DONE.contains(&t.as_str()))
}

fn is_number(t: &str) -> bool {
    t.starts_with(|c: char| c.is_ascii_digit())
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | ':'))
}

fn number_value(t: &str) -> Option<f64> {
    if !is_number(t) || t.contains(':') {
        return None;
    }
    t.replace(',', "").parse().ok()
}

/// Tokens taken by a clock time at `j` ("5pm", "17:00", "5 pm", "5:30pm").
fn time_len(tokens: &[String], j: usize) -> Option<usize> {
    let t = tokens.get(j)?;
    if let Some(stem) = t.strip_suffix("am").or_else(|| t.strip_suffix("pm")) {
        return is_number(stem).then_some(1);
    }
    if !is_number(t) {
        return None;
    }
    if tokens.get(j + 1).is_some_and(|n| n == "am" || n == "pm") {
        return Some(2);
    }
    t.contains(':').then_some(1)
}

/// Length of a built-in slot pattern starting at `i`: a deadline ("by friday",
/// "before 5pm", "by the end of the day", "within 24 hours") or money lost ("lost £200").
fn match_pattern(tokens: &[String], i: usize) -> Option<usize> {
    let at = |j: usize| tokens.get(j).map(String::as_str);
    match at(i)? {
        "by" | "before" => {
            let mut j = i + 1;
            if at(j) == Some("the") {
                j += 1;
            }
            let w = at(j)?;
            if DAY_WORDS.contains(&w) {
                return Some(j + 1 - i);
            }
            if w == "end" && at(j + 1) == Some("of") {
                let k = if at(j + 2) == Some("the") {
                    j + 3
                } else {
                    j + 2
                };
                return matches!(at(k)?, "day" | "week" | "today" | "business")
                    .then_some(k + 1 - i);
            }
            time_len(tokens, j).map(|n| j + n - i)
        }
        "within" => {
            const SHORT: &[&str] = &[
                "hour", "hours", "hr", "hrs", "h", "minute", "minutes", "min", "mins",
            ];
            let mut j = i + 1;
            let mut article = false;
            while j < i + 3 && matches!(at(j), Some("the" | "next" | "a" | "an")) {
                article |= at(j) != Some("next");
                j += 1;
            }
            let w = at(j)?;
            // A day or two is a deadline; "within 14 days" is usually a returns policy.
            let near =
                |n: f64, unit: &str| SHORT.contains(&unit) || (unit.starts_with("day") && n <= 2.0);
            if let Some(n) = number_value(w) {
                let unit = at(j + 1)?;
                return near(n, unit).then_some(j + 2 - i);
            }
            if article && (SHORT.contains(&w) || w == "day") {
                return Some(j + 1 - i);
            }
            let split = w.find(|c: char| c.is_alphabetic())?;
            let (num, unit) = w.split_at(split);
            let n = number_value(num)?;
            near(n, unit).then_some(j + 1 - i)
        }
        "lost" => {
            let mut j = i + 1;
            while j < i + 3
                && matches!(
                    at(j),
                    Some("over" | "about" | "around" | "nearly" | "almost")
                )
            {
                j += 1;
            }
            let w = at(j)?;
            let symbol = |t: &str| {
                t.chars().count() == 1 && t.chars().all(|c| CURRENCY_SYMBOLS.contains(&c))
            };
            if symbol(w) && at(j + 1).is_some_and(is_number) {
                return Some(j + 2 - i);
            }
            if is_number(w) && at(j + 1).is_some_and(|u| CURRENCY_WORDS.contains(&u)) {
                return Some(j + 2 - i);
            }
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> PriorityEngine {
        PriorityEngine::default()
    }

    struct Case {
        intent: Option<&'static str>,
        abstained: bool,
        confidence: f32,
        uncertainty: f32,
        sentiment: Option<f32>,
        cues: &'static [&'static str],
        tier: &'static str,
        text: &'static str,
        prior: u32,
        score: f32,
        level: Level,
        escalate: bool,
        /// Factors that must contribute.
        factors: &'static [Factor],
    }

    const fn case(intent: &'static str, tier: &'static str, text: &'static str) -> Case {
        Case {
            intent: Some(intent),
            abstained: false,
            confidence: 0.9,
            uncertainty: 0.0,
            sentiment: Some(0.0),
            cues: &[],
            tier,
            text,
            prior: 0,
            score: 0.0,
            level: Level::P4,
            escalate: false,
            factors: &[],
        }
    }

    use Factor::*;
    use Level::*;

    fn cases() -> Vec<Case> {
        vec![
            Case {
                score: 0.6,
                level: P2,
                factors: &[IntentSeverity],
                ..case(
                    "card_compromised",
                    "standard",
                    "I think someone has copied my card details.",
                )
            },
            Case {
                score: 0.75,
                level: P1,
                escalate: true,
                factors: &[IntentSeverity, CustomerTier, Rule],
                ..case(
                    "card_compromised",
                    "premium",
                    "Someone has used my card details online.",
                )
            },
            Case {
                score: 0.72,
                level: P2,
                escalate: true,
                factors: &[IntentSeverity, CustomerTier, Rule],
                ..case(
                    "card_lost_or_stolen",
                    "business",
                    "I can't find my card anywhere, please block it.",
                )
            },
            Case {
                sentiment: Some(-0.5),
                score: 0.75,
                level: P1,
                escalate: true,
                factors: &[IntentSeverity, Sentiment, Rule],
                ..case(
                    "card_lost_or_stolen",
                    "standard",
                    "I lost my card and I'm really worried.",
                )
            },
            Case {
                score: 0.12,
                level: P4,
                factors: &[IntentSeverity],
                ..case("change_address", "standard", "How do I change my address?")
            },
            Case {
                score: 0.33,
                level: P3,
                factors: &[IntentSeverity, CustomerTier],
                ..case(
                    "billing_question",
                    "premium",
                    "Can you explain the charges on my last invoice?",
                )
            },
            Case {
                sentiment: Some(-0.8),
                cues: &["third time"],
                prior: 2,
                score: 0.8,
                level: P1,
                escalate: true,
                factors: &[IntentSeverity, Sentiment, RepeatContact, Rule],
                ..case(
                    "complaint",
                    "standard",
                    "This is the third time I've written and nobody has answered.",
                )
            },
            Case {
                intent: None,
                abstained: true,
                confidence: 0.3,
                uncertainty: 0.9,
                score: 0.48,
                level: P3,
                escalate: true,
                factors: &[IntentSeverity, CustomerTier, Uncertainty, Rule],
                ..case("", "premium", "Hi, it's about the thing from last week.")
            },
            Case {
                intent: None,
                abstained: true,
                confidence: 0.3,
                uncertainty: 0.9,
                score: 0.33,
                level: P3,
                factors: &[IntentSeverity, Uncertainty],
                ..case("", "standard", "Hi, it's about the thing from last week.")
            },
            Case {
                sentiment: Some(-0.4),
                score: 0.56,
                level: P2,
                factors: &[IntentSeverity, UrgencyCue, Sentiment],
                ..case(
                    "refund_request",
                    "standard",
                    "I need this refunded today or I'm going to my bank.",
                )
            },
            Case {
                sentiment: Some(-0.3),
                score: 0.36,
                level: P3,
                factors: &[IntentSeverity, CustomerTier, Sentiment],
                ..case(
                    "order_status",
                    "business",
                    "Where is my order? It's a bit late.",
                )
            },
            Case {
                prior: 3,
                score: 0.57,
                level: P2,
                factors: &[IntentSeverity, RepeatContact],
                ..case(
                    "delivery_delayed",
                    "standard",
                    "My parcel still hasn't arrived.",
                )
            },
            Case {
                sentiment: Some(0.6),
                score: 0.24,
                level: P4,
                factors: &[IntentSeverity],
                ..case(
                    "password_reset",
                    "standard",
                    "Thanks so much! How do I reset my password?",
                )
            },
            Case {
                score: 0.12,
                level: P4,
                factors: &[IntentSeverity],
                ..case(
                    "change_address",
                    "standard",
                    "No rush and not urgent: how do I change my address?",
                )
            },
            Case {
                score: 0.62,
                level: P2,
                factors: &[IntentSeverity, UrgencyCue],
                ..case(
                    "double_charge",
                    "standard",
                    "You took all my money, I was charged twice.",
                )
            },
            Case {
                score: 0.62,
                level: P2,
                factors: &[IntentSeverity, UrgencyCue, CustomerTier],
                ..case(
                    "login_problem",
                    "business",
                    "Can't log in, please fix asap.",
                )
            },
            Case {
                sentiment: Some(-0.6),
                score: 0.83,
                level: P1,
                escalate: true,
                factors: &[IntentSeverity, Sentiment, UrgencyCue, CustomerTier, Rule],
                ..case(
                    "damaged_item",
                    "premium",
                    "The desk arrived smashed. I need a replacement before 5pm.",
                )
            },
            Case {
                confidence: 0.35,
                uncertainty: 0.8,
                score: 0.27,
                level: P3,
                factors: &[IntentSeverity, Uncertainty],
                ..case(
                    "billing_question",
                    "standard",
                    "question about the thing on my account",
                )
            },
            Case {
                score: 0.18,
                level: P4,
                factors: &[IntentSeverity],
                ..case(
                    "gift_card_balance",
                    "standard",
                    "What's the balance on my gift card?",
                )
            },
            Case {
                sentiment: Some(-0.9),
                cues: &["fourth message", "not again"],
                prior: 4,
                score: 1.0,
                level: P1,
                escalate: true,
                factors: &[
                    IntentSeverity,
                    Sentiment,
                    CustomerTier,
                    UrgencyCue,
                    RepeatContact,
                    Rule,
                ],
                ..case(
                    "compromised_card",
                    "premium",
                    "URGENT: fraud, someone stole £900, this is my fourth message!",
                )
            },
        ]
    }

    fn input_of<'a>(c: &'a Case, cues: &'a [String]) -> PriorityInput<'a> {
        PriorityInput {
            intent: c.intent,
            confidence: c.confidence,
            abstained: c.abstained,
            uncertainty: c.uncertainty,
            sentiment: c.sentiment,
            sentiment_cues: cues,
            tier: Some(c.tier),
            text: c.text,
            prior_contacts: c.prior,
        }
    }

    fn signals(c: &Case) -> String {
        let mut parts = Vec::new();
        match c.sentiment {
            Some(s) if s != 0.0 => parts.push(format!("sentiment {s:+.2}")),
            _ => parts.push("neutral".to_string()),
        }
        if !c.cues.is_empty() {
            let cues: Vec<String> = c.cues.iter().map(|s| format!("{s:?}")).collect();
            parts.push(format!("cues {}", cues.join(", ")));
        }
        if c.prior > 0 {
            parts.push(format!("{} prior contacts", c.prior));
        }
        if c.abstained {
            parts.push(format!("abstained (confidence {:.2})", c.confidence));
        } else if c.uncertainty > 0.0 {
            parts.push(format!(
                "uncertainty {:.2} (confidence {:.2})",
                c.uncertainty, c.confidence
            ));
        }
        parts.join("; ")
    }

    fn table_row(n: usize, c: &Case, p: &Priority) -> String {
        let escalate = if p.escalate {
            let why: Vec<&str> = p
                .reasons
                .iter()
                .filter(|r| r.factor == Rule)
                .map(|r| {
                    // Keep the table short: drop the condition list after the rule name.
                    r.detail.split(" (").next().unwrap_or(&r.detail)
                })
                .collect();
            format!("yes: {}", why.join("; "))
        } else {
            "no".to_string()
        };
        format!(
            "| {n} | {}, {}: {:?} | {} | {:.2} | {} | {} |",
            c.intent.unwrap_or("abstained"),
            c.tier,
            c.text,
            signals(c),
            p.score,
            p.level,
            escalate
        )
    }

    #[test]
    fn documented_cases() {
        let e = engine();
        let mut failures = Vec::new();
        let mut rows = Vec::new();
        for (n, c) in cases().iter().enumerate() {
            let cues: Vec<String> = c.cues.iter().map(|s| s.to_string()).collect();
            let p = e.assess(&input_of(c, &cues));
            rows.push(table_row(n + 1, c, &p));
            let got: Vec<Factor> = p.reasons.iter().map(|r| r.factor).collect();
            let ok = (p.score - c.score).abs() < 5e-4
                && p.level == c.level
                && p.escalate == c.escalate
                && c.factors.iter().all(|f| got.contains(f))
                && got.iter().all(|f| c.factors.contains(f));
            if !ok {
                failures.push(format!(
                    "case {} {:?}: expected {} {:.2} escalate={} {:?}\n{}",
                    n + 1,
                    c.text,
                    c.level,
                    c.score,
                    c.escalate,
                    c.factors,
                    explain(&p)
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
        // The module documentation carries the same table; keep them in step.
        let source = include_str!("priority.rs");
        let missing: Vec<&String> = rows
            .iter()
            .filter(|r| !source.contains(&format!("//! {r}\n")))
            .collect();
        assert!(
            missing.is_empty(),
            "module docs out of date; expected rows:\n{}",
            rows.iter()
                .map(|r| format!("//! {r}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn table_covers_every_level_and_factor() {
        let all: Vec<Factor> = cases().iter().flat_map(|c| c.factors.to_vec()).collect();
        for f in [
            IntentSeverity,
            Sentiment,
            CustomerTier,
            UrgencyCue,
            RepeatContact,
            Uncertainty,
            Rule,
        ] {
            assert!(all.contains(&f), "{f} not covered");
        }
        for l in [P1, P2, P3, P4] {
            assert!(cases().iter().any(|c| c.level == l), "{l} not covered");
        }
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
                    intent: Some(intent),
                    confidence: 0.9,
                    abstained: false,
                    uncertainty: 0.0,
                    sentiment: Some(sentiment),
                    sentiment_cues: &[],
                    tier: Some(tier),
                    text: "my card",
                    prior_contacts: 0,
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
    fn explain_is_compact_and_ordered() {
        let e = engine();
        let cues = vec!["third time".to_string()];
        let p = e.assess(&PriorityInput {
            intent: Some("card_compromised"),
            confidence: 0.92,
            abstained: false,
            uncertainty: 0.0,
            sentiment: Some(-0.82),
            sentiment_cues: &cues,
            tier: Some("Premium"),
            text: "Someone used my card, please block it asap",
            prior_contacts: 1,
        });
        let expected = "\
P1 (score 1.00) escalate
  +0.60 intent_severity  intent card_compromised is urgent (severity 1.00)
  +0.30 sentiment        strongly negative (compound -0.82); frustration cue \"third time\"
  +0.20 urgency_cue      urgency cue \"asap\"
  +0.15 customer_tier    premium customer (tier factor 1.00)
  +0.10 repeat_contact   1 earlier contact within 72 h
  escalate: level P1 (score 1.00 >= 0.75)
  escalate: rule \"critical intent, premium or business customer\" (tier premium, severity 1.00 >= 0.90)
  escalate: rule \"critical intent, upset customer\" (severity 1.00 >= 0.90, sentiment -0.82 < -0.30)";
        assert_eq!(explain(&p), expected);
        let quiet = e.assess(&PriorityInput {
            intent: Some("change_address"),
            confidence: 0.9,
            abstained: false,
            uncertainty: 0.0,
            sentiment: None,
            sentiment_cues: &[],
            tier: None,
            text: "new address please",
            prior_contacts: 0,
        });
        assert_eq!(
            explain(&quiet),
            "P4 (score 0.12)\n  +0.12 intent_severity  intent change_address is routine (severity 0.20)"
        );
    }

    #[test]
    fn urgency_cues_and_negation() {
        let e = engine();
        let table: &[(&str, &[&str])] = &[
            ("please sort this by tomorrow", &["by tomorrow"]),
            ("I need it by Friday.", &["by friday"]),
            ("Refund me before 5pm please", &["before 5pm"]),
            ("before 5 pm", &["before 5 pm"]),
            ("before 17:00", &["before 17:00"]),
            ("by the end of the day", &["by the end of the day"]),
            ("by end of day", &["by end of day"]),
            (
                "If this isn't resolved today I'll be going to my bank",
                &["today"],
            ),
            ("reply within 24 hours", &["within 24 hours"]),
            ("within 24h please", &["within 24h"]),
            ("within the hour", &["within the hour"]),
            ("I returned it within 14 days", &[]),
            ("ASAP!!", &["asap"]),
            ("Please treat this as urgent.", &["urgent"]),
            ("it's an emergency", &["emergency"]),
            ("block it immediately", &["immediately"]),
            ("I lost £200 on this", &["lost £200"]),
            ("lost over 1,200.50 euros", &["lost over 1,200.50 euros"]),
            ("my card was stolen", &["stolen"]),
            ("they took all my money", &["took all my money"]),
            ("there is missing money in my account", &["missing money"]),
            ("This is FRAUD", &["fraud"]),
            ("not urgent at all", &[]),
            ("it isn't that urgent", &[]),
            ("non-urgent question", &[]),
            ("no emergency, just curious", &[]),
            ("my card was not stolen, just lost", &[]),
            ("I lost my card", &[]),
            ("standby mode", &[]),
            ("the todays deals", &[]),
            ("Received my order today but it is smashed", &[]),
            (
                "it arrived today broken, I need it replaced today",
                &["today"],
            ),
            ("I got it today, please fix by tonight", &["by tonight"]),
            ("I need it sorted today", &["today"]),
            ("urgent: fraud asap", &["urgent", "fraud", "asap"]),
            ("asap asap", &["asap"]),
            ("pay by card", &[]),
            ("by the way", &[]),
        ];
        for (text, want) in table {
            assert_eq!(&e.urgency_cues_in(text), want, "{text:?}");
        }
        let custom = PriorityEngine::new(PriorityConfig {
            urgency_cues: vec!["Chargeback".into(), "going to my bank".into()],
            ..PriorityConfig::default()
        })
        .unwrap();
        assert_eq!(
            custom.urgency_cues_in("I'm going to my bank for a chargeback asap"),
            ["going to my bank", "Chargeback", "asap"]
        );
    }

    #[test]
    fn tokenizer_keeps_amounts_times_and_contractions() {
        assert_eq!(
            tokenize("I paid £2,998.99 at 17:00, isn't it? It’s late."),
            ["i", "paid", "£", "2,998.99", "at", "17:00", "isnt", "it", "its", "late"]
        );
        assert!(tokenize("!! ??").is_empty());
    }

    /// The defaults as documented for the README.
    const DEFAULT_TOML: &str = r#"[priority]
default_severity = 0.3
escalate_on_abstain_tiers = ["premium", "business"]
urgency_cues = []  # extra phrases; the built-in deadline and money-lost cues always apply
repeat_window_hours = 72.0

[priority.weights]
intent_severity = 0.6
sentiment = 0.3
customer_tier = 0.15
urgency_cue = 0.2
repeat_contact = 0.3
uncertainty = 0.15

[priority.levels]
p1 = 0.75
p2 = 0.5
p3 = 0.25

[priority.tiers]
premium = 1.0
business = 0.8
standard = 0.0

[[priority.escalate_rules]]
name = "critical intent, premium or business customer"
tier = ["premium", "business"]
min_severity = 0.9

[[priority.escalate_rules]]
name = "critical intent, upset customer"
min_severity = 0.9
sentiment_below = -0.3

[priority.severity]
# BANKING77
compromised_card = 1.0
lost_or_stolen_card = 1.0
card_payment_not_recognised = 0.95
cash_withdrawal_not_recognised = 0.95
lost_or_stolen_phone = 0.9
direct_debit_payment_not_recognised = 0.9
card_swallowed = 0.85
transaction_charged_twice = 0.75
pin_blocked = 0.75
wrong_amount_of_cash_received = 0.75
transfer_not_received_by_recipient = 0.7
declined_card_payment = 0.65
declined_cash_withdrawal = 0.65
card_not_working = 0.65
declined_transfer = 0.6
failed_transfer = 0.6
cancel_transfer = 0.6
balance_not_updated_after_bank_transfer = 0.6
balance_not_updated_after_cheque_or_cash_deposit = 0.6
unable_to_verify_identity = 0.55
top_up_failed = 0.55
top_up_reverted = 0.55
extra_charge_on_statement = 0.55
virtual_card_not_working = 0.5
"reverted_card_payment?" = 0.5
Refund_not_showing_up = 0.5
pending_cash_withdrawal = 0.5
passcode_forgotten = 0.5
contactless_not_working = 0.45
pending_transfer = 0.45
pending_top_up = 0.45
beneficiary_not_allowed = 0.45
pending_card_payment = 0.4
request_refund = 0.4
verify_source_of_funds = 0.4
card_payment_wrong_exchange_rate = 0.4
wrong_exchange_rate_for_cash_withdrawal = 0.4
card_payment_fee_charged = 0.35
transfer_fee_charged = 0.35
terminate_account = 0.35
card_arrival = 0.35
cash_withdrawal_charge = 0.3
exchange_charge = 0.3
top_up_by_card_charge = 0.3
top_up_by_bank_transfer_charge = 0.3
card_about_to_expire = 0.3
activate_my_card = 0.3
verify_my_identity = 0.3
verify_top_up = 0.3
change_pin = 0.25
transfer_timing = 0.25
receiving_money = 0.25
card_delivery_estimate = 0.2
edit_personal_details = 0.2
why_verify_identity = 0.2
transfer_into_account = 0.2
atm_support = 0.2
card_linking = 0.2
get_physical_card = 0.2
order_physical_card = 0.2
apple_pay_or_google_pay = 0.15
automatic_top_up = 0.15
card_acceptance = 0.15
exchange_via_app = 0.15
top_up_by_cash_or_cheque = 0.15
topping_up_by_card = 0.15
age_limit = 0.1
country_support = 0.1
disposable_card_limits = 0.1
exchange_rate = 0.1
fiat_currency_support = 0.1
get_disposable_virtual_card = 0.1
getting_spare_card = 0.1
getting_virtual_card = 0.1
supported_cards_and_currencies = 0.1
top_up_limits = 0.1
visa_or_mastercard = 0.1
# Sample tickets
card_compromised = 1.0
card_lost_or_stolen = 1.0
account_locked = 0.7
double_charge = 0.7
complaint = 0.5
damaged_item = 0.5
login_problem = 0.5
delivery_delayed = 0.45
wrong_item = 0.45
password_reset = 0.4
refund_request = 0.4
update_payment_method = 0.35
billing_question = 0.3
cancel_subscription = 0.3
order_status = 0.25
change_address = 0.2
"#;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        priority: PriorityConfig,
    }

    #[test]
    fn default_toml_matches_built_in_defaults() {
        let parsed: File = toml::from_str(DEFAULT_TOML).unwrap();
        assert_eq!(parsed.priority, PriorityConfig::default());
        let empty: PriorityConfig = toml::from_str("").unwrap();
        assert_eq!(empty, PriorityConfig::default());
        // Serialising is for showing the effective configuration; it must read back as-is.
        let shown = toml::to_string(&PriorityConfig::default()).unwrap();
        let back: PriorityConfig = toml::from_str(&shown).unwrap();
        assert_eq!(back, PriorityConfig::default());
    }

    #[test]
    fn partial_overrides_merge_onto_defaults() {
        let text = r#"
            default_severity = 0.25
            severity = { refund_request = 0.9, gift_card_balance = 0.4 }
            tiers = { enterprise = 1.0 }
            urgency_cues = ["chargeback"]
            weights = { sentiment = 0.4 }
            levels = { p1 = 0.8 }

            [[escalate_rules]]
            intent = "refund_request"
            min_prior_contacts = 2

            [[escalate_rules]]
            name = "angry key account"
            tier = ["premium", "enterprise"]
            sentiment_below = -0.5
        "#;
        let c: PriorityConfig = toml::from_str(text).unwrap();
        let d = PriorityConfig::default();
        assert_eq!(c.severity["refund_request"], 0.9);
        assert_eq!(c.severity["gift_card_balance"], 0.4);
        assert_eq!(c.severity["compromised_card"], 1.0);
        assert_eq!(c.severity.len(), d.severity.len() + 1);
        assert_eq!(c.tiers["enterprise"], 1.0);
        assert_eq!(c.tiers["premium"], 1.0);
        assert_eq!(c.weights.sentiment, 0.4);
        assert_eq!(c.weights.intent_severity, d.weights.intent_severity);
        assert_eq!(c.levels.p1, 0.8);
        assert_eq!(c.levels.p2, d.levels.p2);
        assert_eq!(c.default_severity, 0.25);
        assert_eq!(c.escalate_on_abstain_tiers, d.escalate_on_abstain_tiers);
        assert_eq!(c.escalate_rules.len(), 2);
        assert_eq!(c.escalate_rules[0].intent, ["refund_request"]);
        assert_eq!(c.escalate_rules[1].tier, ["premium", "enterprise"]);

        let e = PriorityEngine::new(c).unwrap();
        let p = e.assess(&PriorityInput {
            intent: Some("Refund_Request"),
            confidence: 0.9,
            abstained: false,
            uncertainty: 0.0,
            sentiment: None,
            sentiment_cues: &[],
            tier: Some("standard"),
            text: "where is my refund",
            prior_contacts: 2,
        });
        assert!(p.escalate, "{}", explain(&p));
        assert!(
            p.reasons.iter().any(|r| {
                r.factor == Rule
                && r.weight == 0.0
                && r.detail
                    == "rule \"escalate_rules[0]\" (intent refund_request, 2 earlier contacts >= 2)"
            }),
            "{}",
            explain(&p)
        );
        let p = e.assess(&PriorityInput {
            intent: Some("billing_question"),
            confidence: 0.9,
            abstained: false,
            uncertainty: 0.0,
            sentiment: Some(-0.7),
            sentiment_cues: &[],
            tier: Some("Enterprise"),
            text: "explain this bill",
            prior_contacts: 0,
        });
        assert!(p.escalate, "{}", explain(&p));
        assert!(explain(&p)
            .contains("rule \"angry key account\" (tier enterprise, sentiment -0.70 < -0.50)"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        for (text, word) in [
            ("severty = { complaint = 0.5 }", "severty"),
            ("weights = { intent = 0.5 }", "intent"),
            ("levels = { p0 = 0.9 }", "p0"),
            (
                "[[escalate_rules]]\nintent = \"x\"\nmin_sentiment = -0.5",
                "min_sentiment",
            ),
        ] {
            let err = toml::from_str::<PriorityConfig>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(word), "{text}: {err}");
        }
        let err = toml::from_str::<PriorityConfig>("[[escalate_rules]]\nintent = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a string or a list of strings"), "{err}");
    }

    #[test]
    fn validate_names_the_key() {
        let check = |text: &str, want: &str| {
            let c: PriorityConfig = toml::from_str(text).unwrap();
            let err = c.validate().unwrap_err();
            assert_eq!(err, want, "{text}");
            assert_eq!(PriorityEngine::new(c).unwrap_err(), want);
        };
        check(
            "levels = { p2 = 0.8 }",
            "priority.levels.p2 (0.8) must be below priority.levels.p1 (0.75)",
        );
        check(
            "levels = { p3 = 0.5 }",
            "priority.levels.p3 (0.5) must be below priority.levels.p2 (0.5)",
        );
        check(
            "levels = { p1 = 1.5 }",
            "priority.levels.p1 (1.5) must be within (0, 1]",
        );
        check(
            "levels = { p3 = 0.0 }",
            "priority.levels.p3 (0) must be within (0, 1]",
        );
        check(
            "weights = { sentiment = -0.1 }",
            "priority.weights.sentiment (-0.1) must be within [0, 1]",
        );
        check(
            "weights = { urgency_cue = nan }",
            "priority.weights.urgency_cue (NaN) must be within [0, 1]",
        );
        check(
            "severity = { refund_request = 1.5 }",
            "priority.severity.refund_request (1.5) must be within [0, 1]",
        );
        check(
            "severity = { Complaint = 0.9 }",
            "priority.severity.Complaint and priority.severity.complaint differ only in case; keep one",
        );
        check(
            "default_severity = 2.0",
            "priority.default_severity (2) must be within [0, 1]",
        );
        check(
            "tiers = { gold = 3.0 }",
            "priority.tiers.gold (3) must be within [0, 1]",
        );
        check(
            "repeat_window_hours = 0.0",
            "priority.repeat_window_hours (0) must be a positive number of hours",
        );
        check(
            "urgency_cues = [\"asap\", \"!!\"]",
            "priority.urgency_cues[1] (\"!!\") has no letters or digits to match",
        );
        check(
            "escalate_on_abstain_tiers = [\"\"]",
            "priority.escalate_on_abstain_tiers[0] is empty",
        );
        check(
            "[[escalate_rules]]\nname = \"everything\"",
            "priority.escalate_rules[0] has no conditions, so it would escalate every query",
        );
        check(
            "[[escalate_rules]]\nmin_score = 1.2",
            "priority.escalate_rules[0].min_score (1.2) must be within [0, 1]",
        );
        check(
            "[[escalate_rules]]\nsentiment_below = -2.0",
            "priority.escalate_rules[0].sentiment_below (-2) must be within [-1, 1]",
        );
        check(
            "[[escalate_rules]]\ntier = [\"premium\", \" \"]",
            "priority.escalate_rules[0].tier contains an empty name",
        );
        assert_eq!(PriorityConfig::default().validate(), Ok(()));
    }

    const BANKING77: &[&str] = &[
        "card_arrival",
        "card_linking",
        "exchange_rate",
        "card_payment_wrong_exchange_rate",
        "extra_charge_on_statement",
        "pending_cash_withdrawal",
        "fiat_currency_support",
        "card_delivery_estimate",
        "automatic_top_up",
        "card_not_working",
        "exchange_via_app",
        "lost_or_stolen_card",
        "age_limit",
        "pin_blocked",
        "contactless_not_working",
        "top_up_by_bank_transfer_charge",
        "pending_top_up",
        "cancel_transfer",
        "top_up_limits",
        "wrong_amount_of_cash_received",
        "card_payment_fee_charged",
        "transfer_not_received_by_recipient",
        "supported_cards_and_currencies",
        "getting_virtual_card",
        "card_acceptance",
        "top_up_reverted",
        "balance_not_updated_after_cheque_or_cash_deposit",
        "card_payment_not_recognised",
        "edit_personal_details",
        "why_verify_identity",
        "unable_to_verify_identity",
        "get_physical_card",
        "visa_or_mastercard",
        "topping_up_by_card",
        "disposable_card_limits",
        "compromised_card",
        "atm_support",
        "direct_debit_payment_not_recognised",
        "passcode_forgotten",
        "declined_cash_withdrawal",
        "pending_card_payment",
        "lost_or_stolen_phone",
        "request_refund",
        "declined_transfer",
        "Refund_not_showing_up",
        "declined_card_payment",
        "pending_transfer",
        "terminate_account",
        "card_swallowed",
        "transaction_charged_twice",
        "verify_source_of_funds",
        "transfer_timing",
        "reverted_card_payment?",
        "change_pin",
        "beneficiary_not_allowed",
        "transfer_fee_charged",
        "receiving_money",
        "failed_transfer",
        "transfer_into_account",
        "verify_top_up",
        "getting_spare_card",
        "top_up_by_cash_or_cheque",
        "order_physical_card",
        "virtual_card_not_working",
        "wrong_exchange_rate_for_cash_withdrawal",
        "get_disposable_virtual_card",
        "top_up_failed",
        "balance_not_updated_after_bank_transfer",
        "cash_withdrawal_not_recognised",
        "exchange_charge",
        "top_up_by_card_charge",
        "activate_my_card",
        "cash_withdrawal_charge",
        "card_about_to_expire",
        "apple_pay_or_google_pay",
        "verify_my_identity",
        "country_support",
    ];

    const SAMPLE_INTENTS: &[&str] = &[
        "account_locked",
        "billing_question",
        "cancel_subscription",
        "card_compromised",
        "card_lost_or_stolen",
        "change_address",
        "complaint",
        "damaged_item",
        "delivery_delayed",
        "double_charge",
        "login_problem",
        "order_status",
        "password_reset",
        "refund_request",
        "update_payment_method",
        "wrong_item",
    ];

    #[test]
    fn default_severity_covers_both_label_sets() {
        let table = default_severity_table();
        assert_eq!(BANKING77.len(), 77);
        for label in BANKING77.iter().chain(SAMPLE_INTENTS) {
            assert!(table.contains_key(*label), "{label} missing");
        }
        assert_eq!(
            table.len(),
            77 + SAMPLE_INTENTS.len(),
            "unexpected extra labels"
        );
        // Banking labels are exact dataset spellings, odd ones included, and still match.
        let e = engine();
        let p = e.assess(&PriorityInput {
            intent: Some("refund_not_showing_up"),
            confidence: 0.9,
            abstained: false,
            uncertainty: 0.0,
            sentiment: None,
            sentiment_cues: &[],
            tier: None,
            text: "",
            prior_contacts: 0,
        });
        assert_eq!(p.score, 0.3);
    }

    #[test]
    fn abstention_with_a_tentative_intent_keeps_its_severity() {
        let e = engine();
        let p = e.assess(&PriorityInput {
            intent: Some("compromised_card"),
            confidence: 0.4,
            abstained: true,
            uncertainty: 0.7,
            sentiment: None,
            sentiment_cues: &[],
            tier: Some("business"),
            text: "",
            prior_contacts: 0,
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
    fn prior_contacts_count_the_window_only() {
        let e = engine();
        let h = 3600;
        let at = 1_000 * h;
        let others = [at - 73 * h, at - 72 * h, at - 10 * h, at, at + h];
        assert_eq!(e.count_prior_contacts(at, others), 3);
        assert_eq!(e.count_prior_contacts(at, []), 0);
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
        ];
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
                    text: texts[pick(next(), texts.len())],
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
