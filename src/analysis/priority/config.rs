//! The `[priority]` section of `cqr.toml`: the configuration types, their built-in defaults
//! (scalars here, the severity and tier tables and the escalation rules in
//! `default_tables.toml`, parsed once), how a user's file merges onto them, and `validate`,
//! which every engine runs before it scores anything. No scoring happens here.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::LazyLock;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::assess::{Factor, Level};
use super::urgency::cue_tokens;

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

impl Weights {
    /// The weight of `factor`, whose name is its key here; `None` for [`Factor::Rule`], which
    /// adds no score.
    fn of(&self, factor: Factor) -> Option<f32> {
        match factor {
            Factor::IntentSeverity => Some(self.intent_severity),
            Factor::Sentiment => Some(self.sentiment),
            Factor::CustomerTier => Some(self.customer_tier),
            Factor::UrgencyCue => Some(self.urgency_cue),
            Factor::RepeatContact => Some(self.repeat_contact),
            Factor::Uncertainty => Some(self.uncertainty),
            Factor::Rule => None,
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

/// The built-in tables, written once in `default_tables.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultTables {
    tiers: BTreeMap<String, f32>,
    escalate_rules: Vec<EscalateRule>,
    severity: BTreeMap<String, f32>,
}

pub(super) const DEFAULT_TABLES_SRC: &str = include_str!("default_tables.toml");

static DEFAULT_TABLES: LazyLock<DefaultTables> = LazyLock::new(|| {
    toml::from_str(DEFAULT_TABLES_SRC)
        .expect("default_tables.toml is part of the source and parses (unit tests load it)")
});

/// Built-in severities for the BANKING77 labels and the sample ticket intents, graded by what
/// the customer stands to lose while waiting (see `default_tables.toml`).
fn default_severity_table() -> BTreeMap<String, f32> {
    DEFAULT_TABLES.severity.clone()
}

/// Built-in tier factors.
fn default_tier_table() -> BTreeMap<String, f32> {
    DEFAULT_TABLES.tiers.clone()
}

/// Built-in escalation rules: a critical intent (money or card exposed) must not wait in a
/// queue behind its score when the customer is a key account or visibly upset.
fn default_escalate_rules() -> Vec<EscalateRule> {
    DEFAULT_TABLES.escalate_rules.clone()
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

/// A user's table entries, each replacing or adding one key of the built-in `table`.
fn merge_onto<'de, D: Deserializer<'de>>(
    mut table: BTreeMap<String, f32>,
    d: D,
) -> Result<BTreeMap<String, f32>, D::Error> {
    table.extend(BTreeMap::<String, f32>::deserialize(d)?);
    Ok(table)
}

fn merge_onto_default_severity<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, f32>, D::Error> {
    merge_onto(default_severity_table(), d)
}

fn merge_onto_default_tiers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, f32>, D::Error> {
    merge_onto(default_tier_table(), d)
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
        for factor in Factor::ALL {
            if let Some(v) = self.weights.of(factor) {
                check_unit(&format!("priority.weights.{factor}"), v)?;
            }
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
            if cue_tokens(cue).is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::priority::{explain, Factor, PriorityEngine, PriorityInput};
    use crate::analysis::sentiment::tokens_of;

    #[test]
    fn empty_file_is_the_defaults_and_shown_config_reads_back() {
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
            tier: Some("standard"),
            text: &tokens_of("where is my refund"),
            prior_contacts: 2,
            ..PriorityInput::plain("Refund_Request")
        });
        assert!(p.escalate, "{}", explain(&p));
        assert!(
            p.reasons.iter().any(|r| {
                r.factor == Factor::Rule
                && r.weight == 0.0
                && r.detail
                    == "rule \"escalate_rules[0]\" (intent refund_request, 2 earlier contacts >= 2)"
            }),
            "{}",
            explain(&p)
        );
        let p = e.assess(&PriorityInput {
            sentiment: Some(-0.7),
            tier: Some("Enterprise"),
            text: &tokens_of("explain this bill"),
            ..PriorityInput::plain("billing_question")
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
    fn weight_keys_are_the_factor_names() {
        // `validate` names a weight by its factor, so the key and the factor must agree.
        let w = Weights {
            intent_severity: 0.1,
            sentiment: 0.2,
            customer_tier: 0.3,
            urgency_cue: 0.4,
            repeat_contact: 0.5,
            uncertainty: 0.6,
        };
        let shown = toml::to_string(&w).unwrap();
        let keys: Vec<(&str, f32)> = shown
            .lines()
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, v)| (k, v.parse().unwrap()))
            .collect();
        let named: Vec<(&str, f32)> = Factor::ALL
            .into_iter()
            .filter_map(|f| Some((f.as_str(), w.of(f)?)))
            .collect();
        assert_eq!(keys, named);
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
        let e = PriorityEngine::default();
        let p = e.assess(&PriorityInput::plain("refund_not_showing_up"));
        assert_eq!(p.score, 0.3);
    }
}
