//! Urgency cues: finds the deadline and money-lost phrases in a query. It owns the word lists
//! (`urgency.toml`, parsed once), the index of plain cue phrases (built-in and configured) by
//! first token, the slot patterns ("by friday", "before 5pm", "within 24 hours", "lost £200"),
//! and the two rules that discount a cue: a negator right before it ("not urgent", also across
//! a softener: "not that urgent") and a day word after a verb of something already done
//! ("received my order today"). It reads the tokens sentiment read (`sentiment::tokens_of`, the
//! shared tokenizer) and the shared negator list of `analysis::tokens`, never inside words, and
//! reads cue phrases the same way; this module does not score.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::analysis::sentiment::tokens_of;
use crate::analysis::tokens::{is_negator, Tokens, CURRENCY_SYMBOLS};

/// The word lists of `urgency.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Words {
    cues: Vec<String>,
    day_words: Vec<String>,
    short_units: Vec<String>,
    currency_words: Vec<String>,
    amount_qualifiers: Vec<String>,
    softeners: Vec<String>,
    done_verbs: Vec<String>,
}

const WORDS_SRC: &str = include_str!("urgency.toml");

static WORDS: LazyLock<Words> = LazyLock::new(|| {
    toml::from_str(WORDS_SRC)
        .expect("urgency.toml is part of the source and parses (unit tests load it)")
});

fn listed(list: &[String], word: &str) -> bool {
    list.iter().any(|w| w == word)
}

/// A word with its apostrophes left out: "cant" in a message and "can't" in a cue (or the other
/// way round) are one word. Cue tokens are stored this way; message tokens are compared this
/// way as they are read, so the negator check still sees "shan't".
fn without_apostrophes(word: &str) -> impl Iterator<Item = char> + Clone + '_ {
    word.chars().filter(|&c| c != '\'')
}

/// Whether message token `token` is cue token `bare` (stored without apostrophes).
fn same_word(token: &str, bare: &str) -> bool {
    without_apostrophes(token).eq(bare.chars())
}

/// The tokens a cue phrase is matched as, read like the text it is matched in and without
/// apostrophes; empty when it has nothing to match.
pub(super) fn cue_tokens(phrase: &str) -> Vec<String> {
    tokens_of(phrase)
        .words()
        .map(|w| without_apostrophes(w).collect())
        .collect()
}

#[derive(Debug, Clone)]
struct Cue {
    tokens: Vec<String>,
    label: String,
}

/// The plain cue phrases, built in and configured, indexed by their first token so that a text
/// is scanned once rather than once per cue.
#[derive(Debug, Clone)]
pub(super) struct CueIndex {
    cues: Vec<Cue>,
    /// First token (without apostrophes) → the cues that start with it, sorted by that token so
    /// a message token is looked up apostrophe-insensitively without building a key.
    by_first: Vec<(String, Vec<usize>)>,
}

impl CueIndex {
    /// The built-in cues followed by `extra` (as configured; reported as written, trimmed).
    pub fn new(extra: &[String]) -> CueIndex {
        let cues: Vec<Cue> = WORDS
            .cues
            .iter()
            .cloned()
            .chain(extra.iter().map(|c| c.trim().to_string()))
            .map(|label| Cue {
                tokens: cue_tokens(&label),
                label,
            })
            .collect();
        let mut by_first: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, c) in cues.iter().enumerate() {
            if let Some(first) = c.tokens.first() {
                by_first.entry(first.clone()).or_default().push(i);
            }
        }
        CueIndex {
            cues,
            by_first: by_first.into_iter().collect(),
        }
    }

    /// The plain cues that match `text` from token `i` on.
    fn matches_at<'s>(&'s self, text: &'s Tokens, i: usize) -> impl Iterator<Item = &'s Cue> {
        // `by_first` is in `String` order, which is the order of the chars compared here.
        let first = without_apostrophes(text.text(i));
        let starting = self
            .by_first
            .binary_search_by(|(key, _)| key.chars().cmp(first.clone()))
            .map_or(&[][..], |at| &self.by_first[at].1[..]);
        starting.iter().map(|&k| &self.cues[k]).filter(move |c| {
            i + c.tokens.len() <= text.toks.len()
                && c.tokens
                    .iter()
                    .enumerate()
                    .all(|(k, w)| same_word(text.text(i + k), w))
        })
    }

    /// The urgency cues found in a text read by `sentiment::tokens_of`, in order of appearance,
    /// without repeats.
    pub fn find(&self, text: &Tokens) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        // Tokens inside an earlier match are not matched again, so "by tonight" is not also
        // reported as "tonight".
        let mut covered = 0;
        for i in 0..text.toks.len() {
            if i < covered {
                continue;
            }
            let pattern = match_pattern(text, i);
            let plain_lens = self.matches_at(text, i).map(|c| c.tokens.len());
            let longest = plain_lens.chain(pattern).max();
            let Some(longest) = longest else {
                continue;
            };
            if is_negated(text, i) || is_past_day(text, i) {
                continue;
            }
            covered = i + longest;
            let plain = self
                .matches_at(text, i)
                .map(|c| Cow::from(c.label.as_str()));
            let slot = pattern.map(|len| Cow::from(render(text, i, len)));
            for label in plain.chain(slot) {
                if !found.iter().any(|f| *f == label) {
                    found.push(label.into_owned());
                }
            }
        }
        found
    }
}

/// `len` tokens from `from` on, joined by spaces except right after a currency symbol
/// ("lost £200").
fn render(text: &Tokens, from: usize, len: usize) -> String {
    let mut out = String::new();
    for j in from..from + len {
        if j > from {
            let after_symbol = text
                .text(j - 1)
                .chars()
                .all(|c| CURRENCY_SYMBOLS.contains(&c));
            if !after_symbol {
                out.push(' ');
            }
        }
        out.push_str(text.text(j));
    }
    out
}

fn is_negated(text: &Tokens, i: usize) -> bool {
    let before = |k: usize| i.checked_sub(k).map(|j| text.text(j));
    match (before(2), before(1)) {
        (_, Some(w)) if is_negator(w) => true,
        (Some(n), Some(s)) => is_negator(n) && listed(&WORDS.softeners, s),
        _ => false,
    }
}

/// "received my order today" says when, not by when (`done_verbs` in `urgency.toml`).
fn is_past_day(text: &Tokens, i: usize) -> bool {
    matches!(text.text(i), "today" | "tonight")
        && (i.saturating_sub(3)..i).any(|j| listed(&WORDS.done_verbs, text.text(j)))
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
fn time_len(text: &Tokens, j: usize) -> Option<usize> {
    let t = text.get(j)?;
    if let Some(stem) = t.strip_suffix("am").or_else(|| t.strip_suffix("pm")) {
        return is_number(stem).then_some(1);
    }
    if !is_number(t) {
        return None;
    }
    if text.get(j + 1).is_some_and(|n| n == "am" || n == "pm") {
        return Some(2);
    }
    t.contains(':').then_some(1)
}

/// Length of a built-in slot pattern starting at `i`: a deadline ("by friday",
/// "before 5pm", "by the end of the day", "within 24 hours") or money lost ("lost £200").
fn match_pattern(text: &Tokens, i: usize) -> Option<usize> {
    let at = |j: usize| text.get(j);
    match at(i)? {
        "by" | "before" => {
            let mut j = i + 1;
            if at(j) == Some("the") {
                j += 1;
            }
            let w = at(j)?;
            if listed(&WORDS.day_words, w) {
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
            time_len(text, j).map(|n| j + n - i)
        }
        "within" => {
            let short = |unit: &str| listed(&WORDS.short_units, unit);
            let mut j = i + 1;
            let mut article = false;
            while j < i + 3 && matches!(at(j), Some("the" | "next" | "a" | "an")) {
                article |= at(j) != Some("next");
                j += 1;
            }
            let w = at(j)?;
            // A day or two is a deadline; "within 14 days" is usually a returns policy.
            let near = |n: f64, unit: &str| short(unit) || (unit.starts_with("day") && n <= 2.0);
            if let Some(n) = number_value(w) {
                let unit = at(j + 1)?;
                return near(n, unit).then_some(j + 2 - i);
            }
            if article && (short(w) || w == "day") {
                return Some(j + 1 - i);
            }
            let split = w.find(|c: char| c.is_alphabetic())?;
            let (num, unit) = w.split_at(split);
            let n = number_value(num)?;
            near(n, unit).then_some(j + 1 - i)
        }
        "lost" => {
            let mut j = i + 1;
            while j < i + 3 && at(j).is_some_and(|w| listed(&WORDS.amount_qualifiers, w)) {
                j += 1;
            }
            let w = at(j)?;
            let symbol = |t: &str| {
                t.chars().count() == 1 && t.chars().all(|c| CURRENCY_SYMBOLS.contains(&c))
            };
            if symbol(w) && at(j + 1).is_some_and(is_number) {
                return Some(j + 2 - i);
            }
            if is_number(w) && at(j + 1).is_some_and(|u| listed(&WORDS.currency_words, u)) {
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

    fn find(cues: &CueIndex, text: &str) -> Vec<String> {
        cues.find(&tokens_of(text))
    }

    #[test]
    fn urgency_cues_and_negation() {
        let cues = CueIndex::new(&[]);
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
            assert_eq!(&find(&cues, text), want, "{text:?}");
        }
        let custom = CueIndex::new(&["Chargeback".into(), " going to my bank".into()]);
        assert_eq!(
            find(&custom, "I'm going to my bank for a chargeback asap"),
            ["going to my bank", "Chargeback", "asap"]
        );
    }

    #[test]
    fn apostrophes_do_not_matter_and_negators_are_shared() {
        let custom = CueIndex::new(&["can't wait".into()]);
        for text in ["I cant wait", "I can't wait", "I can’t wait"] {
            assert_eq!(find(&custom, text), ["can't wait"], "{text:?}");
        }
        let cues = CueIndex::new(&[]);
        // "neither" comes from the negator list sentiment uses too.
        assert!(find(&cues, "neither urgent nor important").is_empty());
        assert!(find(&cues, "it isn’t urgent").is_empty());
    }

    #[test]
    fn apostrophes_are_ignored_both_ways_and_contractions_negate() {
        let bare = CueIndex::new(&["cant wait".into(), "dont ignore me".into()]);
        for text in ["I can't wait", "I cant wait", "I can’t wait"] {
            assert_eq!(find(&bare, text), ["cant wait"], "{text:?}");
        }
        assert_eq!(find(&bare, "don't ignore me"), ["dont ignore me"]);
        // Any "n't" contraction negates, listed or not.
        let cues = CueIndex::new(&[]);
        for text in [
            "we shan't urgently need it",
            "it mightn't urgently matter",
            "it isnt urgent",
        ] {
            assert!(find(&cues, text).is_empty(), "{text:?}");
        }
    }

    #[test]
    fn elongated_words_read_as_sentiment_reads_them() {
        let cues = CueIndex::new(&[]);
        // "sooo" is the softener "so", as sentiment reads it, so the negation reaches the cue.
        for text in [
            "not sooo urgent",
            "it isn't soooo urgent!!",
            "NOT SOOO URGENT",
        ] {
            assert!(find(&cues, text).is_empty(), "{text:?}");
        }
        assert_eq!(find(&cues, "sooo urgent"), ["urgent"]);
        let custom = CueIndex::new(&["sooo late".into()]);
        assert_eq!(find(&custom, "it's soooooo late"), ["sooo late"]);
    }

    #[test]
    fn word_lists_parse_and_are_lowercase() {
        for list in [
            &WORDS.cues,
            &WORDS.day_words,
            &WORDS.short_units,
            &WORDS.currency_words,
            &WORDS.amount_qualifiers,
            &WORDS.softeners,
            &WORDS.done_verbs,
        ] {
            assert!(!list.is_empty());
            for w in list {
                // Each entry must read back as the tokens it is matched as.
                assert_eq!(cue_tokens(w).join(" "), *w, "{w:?}");
            }
        }
    }
}
