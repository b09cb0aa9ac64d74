//! Sentiment of customer-support messages: a lexicon-and-rules scorer in the
//! VADER tradition. This module owns the general opinion lexicon
//! (`sentiment_lexicon.txt`), the support-domain cue phrases
//! (`sentiment_cues.txt`, matched on the tokens of `analysis::tokens`), the
//! VADER-style adjustment rules (negation, boosters, "but", caps, `!`/`?`) and
//! the mapping from compound score to a three-way label. Support text is
//! mostly neutral requests, so the label thresholds are wider than VADER's and
//! banking status words ("declined", "pending", "fee") carry no sentiment; the
//! situations that make such messages negative ("still waiting", "third time",
//! "want my money back") are captured by the cue phrases instead, together
//! with three small support rules that read politeness and questions the way
//! a support lead would. Everything is std-only, the tables are parsed once
//! on first use, and `score` never panics on any input.

use crate::text::lists::FnvMap;
use std::sync::LazyLock;

use super::tokens::{self, is_apostrophe, is_emoji_modifier, tokenize, Gap, Lexicon, Tokens};

const LEXICON_SRC: &str = include_str!("sentiment_lexicon.txt");
const CUES_SRC: &str = include_str!("sentiment_cues.txt");

// The rule constants are VADER's published, empirically fitted values; keeping
// them makes scores comparable with the original model and its literature.
const NEGATION_SCALAR: f32 = -0.74;
const BOOST: f32 = 0.293;
const CAPS_BOOST: f32 = 0.733;
const EXCLAMATION_BOOST: f32 = 0.292;
const MAX_EXCLAMATIONS: usize = 4;
const QUESTION_BOOST: f32 = 0.18;
const MAX_QUESTION_BOOST: f32 = 0.96;
const NEVER_SO_SCALAR: f32 = 1.25;
const BEFORE_BUT: f32 = 0.5;
const AFTER_BUT: f32 = 1.5;
const NORMALISATION_ALPHA: f32 = 15.0;
/// How many tokens back a negator or booster can reach.
const WINDOW: usize = 3;

/// Label threshold on the compound score. VADER's ±0.05 turns any single mild
/// word into a label; in support traffic most messages are plain requests, so
/// a message is neutral unless its evidence adds up to roughly one clear
/// opinion word (|sum| >= 1.0 gives |compound| >= 0.25).
const DEFAULT_THRESHOLD: f32 = 0.25;

/// Scalars for words that intensify or soften the opinion word after them.
/// They carry no valence of their own, as in VADER.
const BOOSTERS: &[(&str, f32)] = &[
    ("absolutely", BOOST),
    ("awfully", BOOST),
    ("beyond", BOOST),
    ("bloody", BOOST),
    ("completely", BOOST),
    ("considerably", BOOST),
    ("deeply", BOOST),
    ("enormously", BOOST),
    ("entirely", BOOST),
    ("especially", BOOST),
    ("exceptionally", BOOST),
    ("extremely", BOOST),
    ("fully", BOOST),
    ("genuinely", BOOST),
    ("greatly", BOOST),
    ("highly", BOOST),
    ("hugely", BOOST),
    ("incredibly", BOOST),
    ("insanely", BOOST),
    ("intensely", BOOST),
    ("majorly", BOOST),
    ("mega", BOOST),
    ("more", BOOST),
    ("most", BOOST),
    ("much", BOOST),
    ("particularly", BOOST),
    ("purely", BOOST),
    ("quite", BOOST),
    ("really", BOOST),
    ("remarkably", BOOST),
    ("ridiculously", BOOST),
    ("seriously", BOOST),
    ("so", BOOST),
    ("such", BOOST),
    ("super", BOOST),
    ("thoroughly", BOOST),
    ("totally", BOOST),
    ("tremendously", BOOST),
    ("truly", BOOST),
    ("unbelievably", BOOST),
    ("utterly", BOOST),
    ("very", BOOST),
    ("almost", -BOOST),
    ("barely", -BOOST),
    ("fairly", -BOOST),
    ("hardly", -BOOST),
    ("kinda", -BOOST),
    ("less", -BOOST),
    ("little", -BOOST),
    ("marginally", -BOOST),
    ("mildly", -BOOST),
    ("moderately", -BOOST),
    ("occasionally", -BOOST),
    ("partly", -BOOST),
    ("reasonably", -BOOST),
    ("relatively", -BOOST),
    ("scarcely", -BOOST),
    ("slightly", -BOOST),
    ("somewhat", -BOOST),
    ("sorta", -BOOST),
];

/// Multi-word dampeners, stored as (first, second); the second word is the one
/// adjacent to the opinion word.
const DAMPENER_BIGRAMS: &[(&str, &str)] = &[("kind", "of"), ("sort", "of"), ("a", "bit")];

/// Bare gratitude words, subject to the politeness and sarcasm rules of the
/// domain layer. Longer thanks formulas ("thanks so much") are cues instead.
const GRATITUDE: &[&str] = &[
    "thanks",
    "thank",
    "thankyou",
    "thx",
    "thanx",
    "thnx",
    "thks",
    "thnks",
    "tnx",
    "ty",
    "tyvm",
    "cheers",
    "appreciated",
];
/// What a bare thanks is worth in a message that asks a question: enough to
/// tip an otherwise positive message, too little to label a request positive.
const POLITE_GRATITUDE_SCALAR: f32 = 0.3;
const QUESTION_POSITIVE_SCALAR: f32 = 0.3;
const SARCASM_LOOKAHEAD: usize = 5;
const SARCASM_MIN_NEGATIVE: f32 = -1.5;

/// After "never", these words make it an intensifier ("never seen such rude
/// staff") rather than a negator.
const NEVER_INTENSIFIED_BY: &[&str] = &["so", "such", "this", "that"];

// --- public API -------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentimentLabel {
    Negative,
    Neutral,
    Positive,
}

impl SentimentLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            SentimentLabel::Negative => "negative",
            SentimentLabel::Neutral => "neutral",
            SentimentLabel::Positive => "positive",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sentiment {
    pub label: SentimentLabel,
    /// VADER-style compound score in [-1, 1].
    pub score: f32,
    /// Support-domain cue phrases (as written in the cue table) that fired and
    /// carried sentiment, in text order. Zero-valence neutralisers such as
    /// "thanks in advance" are applied but not reported, since they are not
    /// evidence of sentiment.
    pub cues: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SentimentModel {
    vocab: &'static Vocab,
    use_cues: bool,
    threshold: f32,
}

impl Default for SentimentModel {
    fn default() -> Self {
        Self::new()
    }
}

impl SentimentModel {
    /// General lexicon plus the support-domain layer (cue phrases and rules).
    pub fn new() -> Self {
        SentimentModel {
            vocab: &VOCAB,
            use_cues: true,
            threshold: DEFAULT_THRESHOLD,
        }
    }

    /// General lexicon and the generic VADER rules only: no cue phrases and
    /// none of the support-specific rules (thanks on a question, sarcastic
    /// thanks, praise words inside questions). Exists so the value of the
    /// domain layer can be measured.
    pub fn without_domain_cues() -> Self {
        SentimentModel {
            use_cues: false,
            ..Self::new()
        }
    }

    pub fn score(&self, text: &str) -> Sentiment {
        self.score_tokens(&tokens_of(text))
    }

    /// [`score`](Self::score) of a text already read by [`tokens_of`], so that a caller that
    /// also looks for urgency cues reads the text once.
    pub(crate) fn score_tokens(&self, tokens: &Tokens) -> Sentiment {
        let n = tokens.toks.len();
        let vocab = self.vocab;

        let mut slots: Vec<Slot> = (0..n)
            .map(|i| {
                let info = vocab.words.get(tokens.text(i));
                // "kind of" is a hedge, not praise.
                let hedge = i + 1 < n && tokens.text(i) == "kind" && tokens.text(i + 1) == "of";
                Slot {
                    info,
                    valence: if hedge {
                        0.0
                    } else {
                        info.map_or(0.0, |w| w.valence)
                    },
                    hit: NO_HIT,
                }
            })
            .collect();

        let hits = if self.use_cues {
            vocab.match_cues(tokens, &mut slots)
        } else {
            Vec::new()
        };

        let mixed_case = tokens.has_lowercase_word;
        let mut sentiments: Vec<(usize, f32)> = Vec::new();
        for i in 0..n {
            let slot = &slots[i];
            if slot.valence == 0.0 {
                continue;
            }
            let (span_end, cue_valence) = match hits.get(slot.hit as usize) {
                Some(h) if h.start == i => (i + h.len, Some(vocab.cues[h.cue as usize].valence)),
                Some(_) => continue,
                None => (i + 1, None),
            };
            let mut v = slot.valence;
            let sign = v.signum();

            // Shouting one word in an otherwise normal message is emphasis;
            // a message typed entirely in caps carries no such signal.
            if mixed_case && tokens.toks[i..span_end].iter().all(|t| t.caps) {
                v += sign * CAPS_BOOST;
            }

            for k in 1..=WINDOW.min(i) {
                let j = i - k;
                if tokens.toks[j + 1].gap == Gap::Sentence {
                    break;
                }
                if slots[j].hit != NO_HIT {
                    continue;
                }
                let mut s = booster_scalar(tokens, &slots, j);
                if s == 0.0 {
                    continue;
                }
                s *= sign;
                if mixed_case && tokens.toks[j].caps {
                    s += sign * CAPS_BOOST;
                }
                // Farther boosters count for less, as in VADER.
                s *= match k {
                    1 => 1.0,
                    2 => 0.95,
                    _ => 0.9,
                };
                v += s;
            }

            // Emoji and emoticons are free-standing affect, outside the
            // syntax that negation works on ("not happy 😡" is still angry).
            let reach = if tokens.toks[i].symbol {
                0
            } else {
                WINDOW.min(i)
            };
            for k in 1..=reach {
                let j = i - k;
                // Negation scopes over a clause, so "No, that was great" stays
                // positive.
                if tokens.toks[j + 1].gap != Gap::None {
                    break;
                }
                if !is_negator(tokens.text(j), slots[j].info) {
                    continue;
                }
                // A negator ending an earlier cue still reaches past it ("still
                // isn't fixed"); one deeper inside scopes over the cue itself
                // ("nobody has replied").
                if let Some(h) = hits.get(slots[j].hit as usize) {
                    if h.start + h.len != j + 1 {
                        continue;
                    }
                }
                // A negator before a complaint cue is part of the complaint
                // ("don't fob me off"), never a reversal.
                if cue_valence.is_some_and(|c| c < 0.0) {
                    continue;
                }
                let intensifies = tokens.text(j) == "never"
                    && (j + 1..i).any(|m| NEVER_INTENSIFIED_BY.contains(&tokens.text(m)));
                v *= if intensifies {
                    NEVER_SO_SCALAR
                } else {
                    NEGATION_SCALAR
                };
            }
            if self.use_cues && cue_valence.is_none() {
                if GRATITUDE.contains(&tokens.text(i)) {
                    v *= gratitude_scalar(tokens, &slots, i);
                } else if v > 0.0 && tokens.toks[i].in_question && !tokens.toks[i].symbol {
                    // "Is there a good way to...?", "What's your best rate?":
                    // praise words in a question name a criterion. Negative
                    // words keep their weight; "why is this so slow?" is a
                    // complaint.
                    v *= QUESTION_POSITIVE_SCALAR;
                }
            }
            sentiments.push((i, v));
        }

        // The clause after "but" carries the speaker's real point.
        if let Some(b) = (0..n).find(|&i| slots[i].hit == NO_HIT && tokens.text(i) == "but") {
            for (i, v) in sentiments.iter_mut() {
                if *i < b {
                    *v *= BEFORE_BUT;
                } else if *i > b {
                    *v *= AFTER_BUT;
                }
            }
        }

        let mut sum: f32 = sentiments.iter().map(|&(_, v)| v).sum();
        if sum != 0.0 {
            let excl = tokens.exclamations.min(MAX_EXCLAMATIONS) as f32 * EXCLAMATION_BOOST;
            let quest = match tokens.questions {
                0 | 1 => 0.0,
                2 | 3 => tokens.questions as f32 * QUESTION_BOOST,
                _ => MAX_QUESTION_BOOST,
            };
            sum += sum.signum() * (excl + quest);
        }
        let score = compound(sum);
        let label = if score >= self.threshold {
            SentimentLabel::Positive
        } else if score <= -self.threshold {
            SentimentLabel::Negative
        } else {
            SentimentLabel::Neutral
        };
        let cues = hits
            .iter()
            .map(|h| &vocab.cues[h.cue as usize])
            .filter(|c| c.valence != 0.0)
            .map(|c| c.phrase.to_string())
            .collect();
        Sentiment { label, score, cues }
    }
}

/// A query as every analyser reads it: the shared tokenizer with the sentiment vocabulary, which
/// undoes the elongation it recognises ("sooo" → "so") and keeps emoticons whole. Sentiment and
/// the urgency cues of `priority` read the same tokens, so they never disagree about a word.
pub(crate) fn tokens_of(text: &str) -> Tokens {
    tokenize(text, Some(&*VOCAB as &dyn Lexicon))
}

/// Support-domain reading of a bare "thanks": sign-off manners on a question
/// ("How do I add a payee? Thanks") are not sentiment, and thanks followed in
/// the same clause by a clearly negative word is sarcasm ("thanks for the
/// useless answer"), whose negative word already carries the message.
fn gratitude_scalar(tokens: &Tokens, slots: &[Slot], i: usize) -> f32 {
    let sarcastic = (i + 1..tokens.toks.len())
        .take_while(|&j| tokens.toks[j].gap == Gap::None)
        .take(SARCASM_LOOKAHEAD)
        .any(|j| slots[j].valence <= SARCASM_MIN_NEGATIVE);
    if sarcastic {
        0.0
    } else if tokens.questions > 0 {
        POLITE_GRATITUDE_SCALAR
    } else {
        1.0
    }
}

fn compound(sum: f32) -> f32 {
    if !sum.is_finite() {
        return 0.0;
    }
    (sum / (sum * sum + NORMALISATION_ALPHA).sqrt()).clamp(-1.0, 1.0)
}

fn booster_scalar(tokens: &Tokens, slots: &[Slot], j: usize) -> f32 {
    let word = tokens.text(j);
    if j > 0 && slots[j - 1].hit == NO_HIT {
        let prev = tokens.text(j - 1);
        if DAMPENER_BIGRAMS
            .iter()
            .any(|&(a, b)| a == prev && b == word)
        {
            return -BOOST;
        }
    }
    slots[j].info.map_or(0.0, |i| i.boost)
}

/// [`tokens::is_negator`] with the list lookup already done by the vocabulary.
fn is_negator(word: &str, info: Option<&WordInfo>) -> bool {
    info.is_some_and(|i| i.negator) || tokens::is_contracted_negation(word)
}

fn is_number(word: &str) -> bool {
    if word.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return true;
    }
    matches!(
        word,
        "two"
            | "three"
            | "four"
            | "five"
            | "six"
            | "seven"
            | "eight"
            | "nine"
            | "ten"
            | "eleven"
            | "twelve"
            | "fifteen"
            | "twenty"
            | "thirty"
            | "several"
            | "multiple"
            | "countless"
            | "numerous"
    )
}

// --- tables -------------------------------------------------------------------

type FastMap<V> = FnvMap<Box<str>, V>;

const NO_HIT: u32 = u32::MAX;

#[derive(Default)]
struct WordInfo {
    valence: f32,
    boost: f32,
    negator: bool,
    /// Cues whose first token is this word, longest first.
    cues: Vec<u32>,
}

enum CueTok {
    Word(Box<str>),
    Number,
}

struct Cue {
    phrase: Box<str>,
    pattern: Vec<CueTok>,
    valence: f32,
}

struct Vocab {
    words: FastMap<WordInfo>,
    cues: Vec<Cue>,
    /// Cues that start with a number wildcard.
    number_cues: Vec<u32>,
    lexicon_entries: usize,
    cue_phrases: usize,
}

impl std::fmt::Debug for Vocab {
    // The tables are thousands of entries; a summary keeps `{:?}` of a model
    // readable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocab")
            .field("lexicon_entries", &self.lexicon_entries)
            .field("cue_phrases", &self.cue_phrases)
            .finish()
    }
}

static VOCAB: LazyLock<Vocab> = LazyLock::new(Vocab::build);

impl Lexicon for Vocab {
    fn knows(&self, word: &str) -> bool {
        self.words.contains_key(word)
    }

    fn is_emoticon(&self, chunk: &str) -> bool {
        self.words.get(chunk).is_some_and(|w| w.valence != 0.0)
    }
}

struct TableLine<'a> {
    key: &'a str,
    valence: f32,
}

/// Parses `key<TAB>valence` lines. Malformed lines are returned as errors
/// rather than panicking so that a bad edit degrades one entry, and the unit
/// tests insist there are none.
fn parse_table(src: &str) -> (Vec<TableLine<'_>>, Vec<String>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (no, raw) in src.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.rsplit_once('\t') else {
            errors.push(format!("line {}: no tab: {line:?}", no + 1));
            continue;
        };
        let key = key.trim();
        match value.trim().parse::<f32>() {
            Ok(v) if v.is_finite() && (-4.0..=4.0).contains(&v) && !key.is_empty() => {
                ok.push(TableLine { key, valence: v })
            }
            _ => errors.push(format!("line {}: bad entry: {line:?}", no + 1)),
        }
    }
    (ok, errors)
}

fn normalise_key(key: &str) -> String {
    key.chars()
        .filter(|&c| !is_emoji_modifier(c))
        .map(|c| if is_apostrophe(c) { '\'' } else { c })
        .flat_map(char::to_lowercase)
        .collect()
}

impl Vocab {
    fn build() -> Vocab {
        let mut words: FastMap<WordInfo> = FastMap::default();
        let (lexicon, _) = parse_table(LEXICON_SRC);
        let lexicon_entries = lexicon.len();
        for line in lexicon {
            let key = normalise_key(line.key);
            // Customers drop apostrophes; ":'(" must not clobber ":(" though.
            if key.contains('\'') && key.chars().any(char::is_alphanumeric) {
                let bare: String = key.chars().filter(|&c| c != '\'').collect();
                words.entry(bare.into()).or_default().valence = line.valence;
            }
            words.entry(key.into()).or_default().valence = line.valence;
        }
        for &(w, b) in BOOSTERS {
            words.entry(w.into()).or_default().boost = b;
        }
        for &w in tokens::negators() {
            words.entry(w.into()).or_default().negator = true;
        }

        let mut cues = Vec::new();
        let mut number_cues = Vec::new();
        let (cue_lines, _) = parse_table(CUES_SRC);
        let cue_phrases = cue_lines.len();
        for line in cue_lines {
            let pattern = cue_pattern(line.key);
            if pattern.is_empty() {
                continue;
            }
            let bare: Vec<CueTok> = pattern
                .iter()
                .map(|t| match t {
                    CueTok::Word(w) => CueTok::Word(w.replace('\'', "").into()),
                    CueTok::Number => CueTok::Number,
                })
                .collect();
            let has_apostrophe = pattern
                .iter()
                .any(|t| matches!(t, CueTok::Word(w) if w.contains('\'')));
            let mut variants = vec![pattern];
            if has_apostrophe {
                variants.push(bare);
            }
            for pattern in variants {
                let idx = cues.len() as u32;
                match &pattern[0] {
                    CueTok::Number => number_cues.push(idx),
                    CueTok::Word(w) => words.entry(w.clone()).or_default().cues.push(idx),
                }
                cues.push(Cue {
                    phrase: line.key.into(),
                    pattern,
                    valence: line.valence,
                });
            }
        }
        let by_length_desc = |a: &u32, b: &u32| {
            cues[*b as usize]
                .pattern
                .len()
                .cmp(&cues[*a as usize].pattern.len())
        };
        for info in words.values_mut() {
            info.cues.sort_by(by_length_desc);
        }
        number_cues.sort_by(by_length_desc);

        Vocab {
            words,
            cues,
            number_cues,
            lexicon_entries,
            cue_phrases,
        }
    }

    /// Greedy left-to-right, longest-match-first cue matching. Matched tokens
    /// lose their lexicon valence: the cue's valence stands for the phrase.
    fn match_cues(&self, tokens: &Tokens, slots: &mut [Slot]) -> Vec<CueHit> {
        let mut hits = Vec::new();
        let n = tokens.toks.len();
        let mut i = 0;
        while i < n {
            let word = tokens.text(i);
            let by_word = slots[i].info.map_or(&[][..], |w| &w.cues[..]);
            let by_number = if is_number(word) {
                &self.number_cues[..]
            } else {
                &[][..]
            };
            let best = by_word
                .iter()
                .chain(by_number)
                .copied()
                .filter(|&c| self.cue_matches_at(c, tokens, i))
                .max_by_key(|&c| (self.cues[c as usize].pattern.len(), std::cmp::Reverse(c)));
            let Some(c) = best else {
                i += 1;
                continue;
            };
            let len = self.cues[c as usize].pattern.len();
            let hit = hits.len() as u32;
            for slot in &mut slots[i..i + len] {
                slot.hit = hit;
                slot.valence = 0.0;
            }
            slots[i].valence = self.cues[c as usize].valence;
            hits.push(CueHit {
                start: i,
                len,
                cue: c,
            });
            i += len;
        }
        hits
    }

    fn cue_matches_at(&self, cue: u32, tokens: &Tokens, i: usize) -> bool {
        let pattern = &self.cues[cue as usize].pattern;
        if i + pattern.len() > tokens.toks.len() {
            return false;
        }
        pattern.iter().enumerate().all(|(k, p)| {
            let j = i + k;
            // A cue may run across a comma but not across a sentence end.
            (k == 0 || tokens.toks[j].gap != Gap::Sentence)
                && match p {
                    CueTok::Word(w) => tokens.text(j) == &**w,
                    CueTok::Number => is_number(tokens.text(j)),
                }
        })
    }
}

/// Tokenises a cue phrase exactly like message text so that the two always
/// agree; "<n>" (or any all-digit token) is the number wildcard.
fn cue_pattern(phrase: &str) -> Vec<CueTok> {
    let spelled = phrase.replace("<n>", "0");
    let tokens = tokenize(&spelled, None);
    (0..tokens.toks.len())
        .map(|i| {
            let w = tokens.text(i);
            if w.bytes().all(|b| b.is_ascii_digit()) {
                CueTok::Number
            } else {
                CueTok::Word(w.into())
            }
        })
        .collect()
}

struct Slot {
    info: Option<&'static WordInfo>,
    valence: f32,
    hit: u32,
}

struct CueHit {
    start: usize,
    len: usize,
    cue: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Sentiment {
        SentimentModel::new().score(text)
    }

    fn plain(text: &str) -> Sentiment {
        SentimentModel::without_domain_cues().score(text)
    }

    fn words(text: &str) -> Vec<String> {
        let t = tokenize(text, Some(&*VOCAB));
        (0..t.toks.len()).map(|i| t.text(i).to_string()).collect()
    }

    #[test]
    fn tables_parse_cleanly() {
        let (lex, lex_err) = parse_table(LEXICON_SRC);
        assert!(lex_err.is_empty(), "{lex_err:?}");
        assert!(lex.len() >= 1000, "lexicon has {} entries", lex.len());
        let (cues, cue_err) = parse_table(CUES_SRC);
        assert!(cue_err.is_empty(), "{cue_err:?}");
        assert!(cues.len() >= 100, "{} cues", cues.len());
        let mut seen = std::collections::HashSet::new();
        for l in &lex {
            assert!(seen.insert(normalise_key(l.key)), "duplicate {}", l.key);
        }
        for l in &cues {
            assert!(!cue_pattern(l.key).is_empty(), "empty cue {}", l.key);
        }
    }

    #[test]
    fn banking_status_words_are_not_sentiment() {
        for w in [
            "charge", "charged", "fee", "fees", "card", "transfer", "pending", "decline",
            "declined", "failed", "blocked", "frozen", "refund", "dispute", "fraud", "stolen",
            "lost", "cancel", "help", "please", "like", "free",
        ] {
            assert!(
                VOCAB.words.get(w).is_none_or(|i| i.valence == 0.0),
                "{w} is in the lexicon"
            );
        }
        assert_eq!(
            s("My card payment was declined and is pending").label,
            SentimentLabel::Neutral
        );
    }

    #[test]
    fn boosters_and_negators_carry_no_valence() {
        for &(w, _) in BOOSTERS {
            assert_eq!(VOCAB.words[w].valence, 0.0, "{w}");
        }
        for &w in tokens::negators() {
            assert_eq!(VOCAB.words[w].valence, 0.0, "{w}");
        }
    }

    #[test]
    fn lexicon_valence_and_compound() {
        let good = s("good");
        assert!((good.score - compound(1.9)).abs() < 1e-6);
        assert_eq!(good.label, SentimentLabel::Positive);
        assert_eq!(s("terrible").label, SentimentLabel::Negative);
        assert_eq!(s("").score, 0.0);
        assert_eq!(s("").label, SentimentLabel::Neutral);
        assert!((compound(1.0) - 1.0 / 16f32.sqrt()).abs() < 1e-6);
        assert!(compound(1e30) <= 1.0 && compound(-1e30) >= -1.0);
    }

    #[test]
    fn thresholds_keep_mild_words_neutral() {
        // One mild word is not enough to call a support message emotional.
        assert_eq!(
            s("I'm a little confused about the fee").label,
            SentimentLabel::Neutral
        );
        assert_eq!(
            s("Is it safe to use my card abroad?").label,
            SentimentLabel::Neutral
        );
        assert_eq!(
            s("I'm so confused and annoyed").label,
            SentimentLabel::Negative
        );
    }

    #[test]
    fn negation_flips_and_damps() {
        let base = s("helpful").score;
        let neg = s("not helpful").score;
        assert!(neg < 0.0);
        assert!(
            (neg - compound(2.0 * NEGATION_SCALAR)).abs() < 1e-6,
            "{base} {neg}"
        );
        assert_eq!(s("isn't helpful").label, SentimentLabel::Negative);
        assert_eq!(s("isnt helpful").label, SentimentLabel::Negative);
        assert_eq!(
            s("the agent was never helpful").label,
            SentimentLabel::Negative
        );
        assert_eq!(s("not bad at all").label, SentimentLabel::Positive);
        // Three tokens back still negates; four does not.
        assert!(s("not very very helpful").score < 0.0);
        assert!(s("not a b c helpful").score > 0.0);
    }

    #[test]
    fn negation_stops_at_punctuation() {
        assert_eq!(s("No, that was great").label, SentimentLabel::Positive);
        assert_eq!(s("no, great").label, SentimentLabel::Positive);
        assert_eq!(s("no great").label, SentimentLabel::Negative);
        assert_eq!(s("not. great").label, SentimentLabel::Positive);
    }

    #[test]
    fn never_so_intensifies() {
        let plain_rude = s("staff were rude").score;
        let never = s("never seen such rude staff").score;
        assert!(never < plain_rude, "{never} vs {plain_rude}");
    }

    #[test]
    fn boosters_and_dampeners() {
        let base = s("helpful").score;
        assert!(s("very helpful staff").score > base);
        assert!(s("extremely annoying").score < s("annoying").score);
        assert!(s("slightly annoying").score > s("annoying").score);
        assert!(s("kind of annoying").score > s("annoying").score);
        assert!(s("a bit slow").score > s("slow").score);
        // "kind of" is a hedge; "kind" alone is praise.
        assert_eq!(s("kind of").label, SentimentLabel::Neutral);
        assert_eq!(s("she was kind").label, SentimentLabel::Positive);
        let near = s("really good").score;
        let far = s("really the good").score;
        assert!(near > far && far > s("good").score);
    }

    #[test]
    fn but_shifts_weight_to_second_clause() {
        let r = s("The app is great but support is terrible");
        assert_eq!(r.label, SentimentLabel::Negative);
        let r = s("I was worried but you sorted it");
        assert_eq!(r.label, SentimentLabel::Positive);
        // Numerically: before x0.5, after x1.5.
        let expected = compound(0.5 * 1.9 + 1.5 * -2.4);
        assert!((s("good but bad").score - expected).abs() < 1e-6);
    }

    #[test]
    fn caps_emphasis_only_when_not_shouting_throughout() {
        let quiet = s("this is bad").score;
        let loud = s("this is BAD").score;
        assert!((loud - compound(-2.4 - CAPS_BOOST)).abs() < 1e-6);
        assert!(loud < quiet);
        assert!((s("THIS IS BAD").score - quiet).abs() < 1e-6);
        // Caps on a word with no valence does nothing.
        assert_eq!(s("where is my PIN").label, SentimentLabel::Neutral);
    }

    #[test]
    fn exclamation_and_question_marks_amplify() {
        let base = s("great").score;
        let one = s("great!").score;
        let four = s("great!!!!").score;
        let many = s("great!!!!!!!!").score;
        assert!(one > base && four > one);
        assert!((four - many).abs() < 1e-6);
        assert!((four - compound(3.0 + 4.0 * EXCLAMATION_BOOST)).abs() < 1e-6);
        assert!(s("awful??").score < s("awful").score);
        assert_eq!(s("awful?").score, s("awful").score);
        // Punctuation alone is not sentiment.
        assert_eq!(
            s("Hello!!! How do I change my PIN??").label,
            SentimentLabel::Neutral
        );
    }

    #[test]
    fn emoji_and_emoticons() {
        assert_eq!(s("thanks 😊").label, SentimentLabel::Positive);
        assert_eq!(s("still no card 😡😡").label, SentimentLabel::Negative);
        assert_eq!(s("😡").label, SentimentLabel::Negative);
        assert_eq!(s("👍🏽").label, SentimentLabel::Positive);
        assert_eq!(s("❤️").label, SentimentLabel::Positive);
        assert_eq!(s("ok :)").label, SentimentLabel::Positive);
        assert_eq!(s("ok :-(").label, SentimentLabel::Negative);
        assert_eq!(s("ok :)))").label, SentimentLabel::Positive);
        assert_eq!(s("ok :(.").label, SentimentLabel::Negative);
        assert_eq!(s("<3").label, SentimentLabel::Positive);
        assert_eq!(s("not happy 😡").label, SentimentLabel::Negative);
        assert!(s("not :(").score < 0.0);
        assert_eq!(s("great:").label, SentimentLabel::Positive);
    }

    #[test]
    fn tokeniser_normalises() {
        assert_eq!(words("Don’t DO that, OK?"), ["don't", "do", "that", "ok"]);
        assert_eq!(
            words("it's 'quoted' top-up"),
            ["it's", "quoted", "top", "up"]
        );
        assert_eq!(words("Thanks😊!"), ["thanks", "😊"]);
        assert_eq!(words("soooo goooood"), ["so", "good"]);
        assert_eq!(words("No one, noone"), ["nobody", "nobody"]);
        assert_eq!(words("no. one"), ["no", "one"]);
        assert_eq!(words("ÉCLAIR Straße"), ["éclair", "straße"]);
        assert_eq!(s("sooooo happy").label, SentimentLabel::Positive);
    }

    #[test]
    fn cues_fire_and_are_reported_in_order() {
        let r = s("Still waiting for my refund, third time I'm asking");
        assert_eq!(r.label, SentimentLabel::Negative);
        assert_eq!(r.cues, ["still waiting", "third time"]);
        let p = plain("Still waiting for my refund, third time I'm asking");
        assert_eq!(p.label, SentimentLabel::Neutral);
        assert!(p.cues.is_empty());
        assert_eq!(s("How do I change my PIN?").cues, Vec::<String>::new());
    }

    #[test]
    fn cue_matching_prefers_longest_and_spans_commas_not_sentences() {
        assert_eq!(s("sorted it out, thanks").cues, ["sorted it out, thanks"]);
        assert_eq!(s("they sorted it out").cues, ["sorted it out"]);
        assert_eq!(s("still. waiting").cues, Vec::<String>::new());
        assert_eq!(s("I want my money back").cues, ["want my money back"]);
    }

    #[test]
    fn cue_number_wildcard_and_apostrophe_variants() {
        assert_eq!(s("it's been 3 weeks").cues, ["it's been <n> weeks"]);
        assert_eq!(s("its been three weeks").cues, ["it's been <n> weeks"]);
        assert_eq!(
            s("I've explained this 4 times already").cues,
            ["<n> times already"]
        );
        assert_eq!(s("the parcel still hasnt arrived").cues, ["still hasn't"]);
        assert_eq!(s("no one has replied").cues, ["nobody has replied"]);
    }

    #[test]
    fn negation_applies_to_positive_cues_only() {
        let r = s("it's not resolved");
        assert_eq!(r.label, SentimentLabel::Negative);
        assert_eq!(r.cues, ["resolved"]);
        assert_eq!(s("issue resolved").label, SentimentLabel::Positive);
        // A negator before a complaint cue does not turn it into praise.
        assert_eq!(s("Don't fob me off").label, SentimentLabel::Negative);
        assert_eq!(s("I can't believe it").label, SentimentLabel::Negative);
    }

    #[test]
    fn neutralising_cues_mask_lexicon_words() {
        let r = s("Thanks in advance, how do I add a currency?");
        assert_eq!(r.label, SentimentLabel::Neutral);
        assert!(r.cues.is_empty());
        assert_eq!(plain("Thanks in advance").label, SentimentLabel::Positive);
        assert_eq!(
            s("What's the best way to send money abroad?").label,
            SentimentLabel::Neutral
        );
    }

    #[test]
    fn cues_take_boosters_caps_and_but() {
        assert!(s("really fed up").score < s("fed up").score);
        assert!(s("I am STILL WAITING").score < s("I am still waiting").score);
        assert_eq!(
            s("It took a while but it's resolved now").label,
            SentimentLabel::Positive
        );
        // "but" inside a cue is not the contrastive "but".
        let r = s("nothing but excuses and it's great");
        assert_eq!(r.cues, ["nothing but"]);
    }

    #[test]
    fn negator_inside_cue_reaches_past_it() {
        let r = s("my problem still isn't fixed");
        assert_eq!(r.cues, ["still isn't", "fixed"]);
        assert!(r.score < s("my problem still isn't").score);
    }

    #[test]
    fn thanks_on_a_question_is_manners() {
        assert_eq!(
            s("How do I add a payee? Thanks").label,
            SentimentLabel::Neutral
        );
        assert_eq!(
            s("Can I top up by card? Cheers").label,
            SentimentLabel::Neutral
        );
        assert_eq!(
            plain("How do I add a payee? Thanks").label,
            SentimentLabel::Positive
        );
        assert_eq!(s("Thanks, that worked").label, SentimentLabel::Positive);
        // Formulas stay full strength.
        assert_eq!(
            s("Thanks so much! Anything else I need to do?").label,
            SentimentLabel::Positive
        );
    }

    #[test]
    fn praise_words_in_questions_are_criteria() {
        assert_eq!(
            s("Is there a good way to save?").label,
            SentimentLabel::Neutral
        );
        assert_eq!(
            s("What is your best exchange rate?").label,
            SentimentLabel::Neutral
        );
        assert_eq!(
            plain("Is there a good way to save?").label,
            SentimentLabel::Positive
        );
        assert_eq!(s("Why is the app so slow?").label, SentimentLabel::Negative);
        // Only the questioning sentence is affected.
        assert_eq!(
            s("Great app. Can I add a card?").label,
            SentimentLabel::Positive
        );
        assert!(!tokenize("good. ok? good", None).toks[0].in_question);
        assert!(!tokenize("good. 😊 ok?", Some(&*VOCAB)).toks[0].in_question);
        assert!(tokenize("good. ok? good", None).toks[1].in_question);
        assert!(!tokenize("good. ok? good", None).toks[2].in_question);
    }

    #[test]
    fn sarcastic_thanks_is_dropped() {
        let r = s("thx for the useless answer");
        assert_eq!(r.label, SentimentLabel::Negative);
        assert!(r.score < plain("thx for the useless answer").score);
        // A negative word in a later clause is not sarcasm.
        assert!(s("thanks, the old app was useless").score > s("the old app was useless").score);
    }

    #[test]
    fn labels_as_str() {
        assert_eq!(SentimentLabel::Negative.as_str(), "negative");
        assert_eq!(SentimentLabel::Neutral.as_str(), "neutral");
        assert_eq!(SentimentLabel::Positive.as_str(), "positive");
    }

    #[test]
    fn never_panics_on_odd_input() {
        let mut odd: Vec<String> = [
            "",
            " ",
            "\0",
            "!!!!",
            "????",
            "''''",
            "'",
            "n't",
            "a'",
            "'a",
            "---",
            "- - -",
            ":",
            ":)",
            ":)))))))))))))))",
            "::::(((((",
            "<3<3<3",
            "🏽",
            "\u{FE0F}",
            "\u{200D}\u{200D}",
            "👍🏽👍🏽",
            "🤦‍♂️",
            "İİİ",
            "ß",
            "ǅ",
            "ﬃ",
            "\u{0301}",
            "a\u{0301}",
            "中文测试 好",
            "مرحبا",
            "😡".repeat(50).as_str(),
            "no one",
            "no",
            "one",
            "but",
            "but but but",
            "kind of",
            "a bit",
            "never so",
            "not",
            "<n> times",
            "its been",
            "still",
            "\r\n\t",
            "\u{FFFF}\u{10FFFF}",
            "x\u{2028}y",
            "ALL CAPS MESSAGE!!!",
            "sooooooooooooo",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Deterministic pseudo-random strings over an alphabet of the
        // characters the rules care about.
        let alphabet: Vec<char> =
            "ab NOT not but ,.!?'’:;()<3-😡👍🏽\u{FE0F}\u{200D}İß#0 still waiting"
                .chars()
                .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            let len = (x % 40) as usize;
            let mut text = String::new();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            odd.push(text);
        }
        let with = SentimentModel::new();
        let without = SentimentModel::without_domain_cues();
        for text in &odd {
            for m in [&with, &without] {
                let r = m.score(text);
                assert!(
                    r.score.is_finite() && (-1.0..=1.0).contains(&r.score),
                    "{text:?}"
                );
            }
        }
    }
}
