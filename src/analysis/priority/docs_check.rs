//! Holds docs/priority.md to the code: the documented cases are scored and must appear in its
//! table, the example breakdown must be what `explain` prints, the defaults block must parse to
//! `PriorityConfig::default()` with its severity table written as in `default_tables.toml`, and
//! the constants quoted in the scoring table must be the ones the engine uses. Tests only.

use serde::Deserialize;

use super::assess::{REPEAT_SATURATION, SENTIMENT_CUE_STRENGTH, UNCERTAINTY_FLOOR};
use super::config::DEFAULT_TABLES_SRC;
use super::*;
use crate::analysis::sentiment::tokens_of;
use crate::analysis::tokens::Tokens;

const DOCS: &str = include_str!("../../../docs/priority.md");

/// The body of the fenced block that opens with `fence` (e.g. "```toml") after `after`.
fn block<'a>(after: &str, fence: &str) -> &'a str {
    let from = DOCS.find(after).expect("the docs have the section") + after.len();
    let open =
        DOCS[from..].find(fence).expect("the section has the block") + from + fence.len() + 1;
    let len = DOCS[open..].find("```").expect("the block is closed");
    &DOCS[open..open + len]
}

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

fn input_of<'a>(c: &'a Case, cues: &'a [String], text: &'a Tokens) -> PriorityInput<'a> {
    PriorityInput {
        intent: c.intent,
        confidence: c.confidence,
        abstained: c.abstained,
        uncertainty: c.uncertainty,
        sentiment: c.sentiment,
        sentiment_cues: cues,
        tier: Some(c.tier),
        text,
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
        let p = e.assess(&input_of(c, &cues, &tokens_of(c.text)));
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
    let missing: Vec<&String> = rows
        .iter()
        .filter(|r| !DOCS.contains(&format!("\n{r}\n")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/priority.md is out of date; expected rows:\n{}",
        rows.join("\n")
    );
}

#[test]
fn table_covers_every_level_and_factor() {
    let all: Vec<Factor> = cases().iter().flat_map(|c| c.factors.to_vec()).collect();
    for f in Factor::ALL {
        assert!(all.contains(&f), "{f} not covered");
    }
    for l in Level::ALL {
        assert!(cases().iter().any(|c| c.level == l), "{l} not covered");
    }
}

#[test]
fn explain_is_compact_and_ordered() {
    let e = engine();
    let cues = vec!["third time".to_string()];
    let p = e.assess(&PriorityInput {
        confidence: 0.92,
        sentiment: Some(-0.82),
        sentiment_cues: &cues,
        tier: Some("Premium"),
        text: &tokens_of("Someone used my card, please block it asap"),
        prior_contacts: 1,
        ..PriorityInput::plain("card_compromised")
    });
    // The docs show this breakdown as their example.
    let expected = block("Every decision comes with its reasons", "```text");
    assert_eq!(format!("{}\n", explain(&p)), expected);
    let quiet = e.assess(&PriorityInput {
        text: &tokens_of("new address please"),
        ..PriorityInput::plain("change_address")
    });
    assert_eq!(
        explain(&quiet),
        "P4 (score 0.12)\n  +0.12 intent_severity  intent change_address is routine (severity 0.20)"
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    priority: PriorityConfig,
}

#[test]
fn documented_defaults_are_the_built_in_ones() {
    let documented = block("Defaults:", "```toml");
    let parsed: File = toml::from_str(documented).unwrap();
    assert_eq!(parsed.priority, PriorityConfig::default());
    // The severity table is written once, in `default_tables.toml`; the docs show it line for
    // line, comments and order included.
    let lines_after = |text: &'static str, header: &str| -> Vec<&'static str> {
        let from = text.find(header).expect("the severity section") + header.len();
        text[from..]
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .collect()
    };
    assert_eq!(
        lines_after(documented, "[priority.severity]"),
        lines_after(DEFAULT_TABLES_SRC, "[severity]")
    );
}

#[test]
fn documented_constants_are_the_engine_ones() {
    for quoted in [
        format!("plus {SENTIMENT_CUE_STRENGTH} per distinct frustration cue"),
        format!("`min(prior_contacts / {REPEAT_SATURATION}, 1)`"),
        format!("uncertainty is above {UNCERTAINTY_FLOOR}, scaled"),
    ] {
        assert!(DOCS.contains(&quoted), "docs/priority.md lacks {quoted:?}");
    }
}
