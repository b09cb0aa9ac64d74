//! The one tokenizer and the one negator list that every analyser (sentiment, urgency cues)
//! reads text with, so that a word, a contraction, an amount or a negation means the same thing
//! to each. It owns word boundaries, lowercasing, apostrophes, numbers with separators, currency
//! symbols, emoji and emoticons, elongated words and the punctuation gaps between tokens; what a
//! token means is left to the analysers. Std-only, no I/O, and it never panics on any input.

use std::sync::LazyLock;

const NEGATORS_SRC: &str = include_str!("negators.txt");

/// Negators, one a line, including the apostrophe-less spellings customers type on phones.
static NEGATORS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| crate::text::lists::entries(NEGATORS_SRC).collect());

/// The negator list (`negators.txt`).
pub(crate) fn negators() -> &'static [&'static str] {
    &NEGATORS
}

/// Whether a token negates what follows: a listed negator or a contraction ending in "n't".
pub(crate) fn is_negator(word: &str) -> bool {
    NEGATORS.contains(&word) || is_contracted_negation(word)
}

/// "won't", "shouldn't", ...: the contractions the list need not spell out.
pub(crate) fn is_contracted_negation(word: &str) -> bool {
    word.ends_with("n't")
}

/// Currency symbols are tokens of their own ("£200" → "£", "200") so amounts can be matched.
pub(crate) const CURRENCY_SYMBOLS: &[char] = &['£', '$', '€', '¥', '₹'];

/// Punctuation between a token and the one before it. Analysers decide what a gap stops
/// (sentiment: negation stops at any gap, boosters and cues at sentence ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Gap {
    None,
    Clause,
    Sentence,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    start: usize,
    end: usize,
    /// Two or more letters, all upper case in the original text.
    pub caps: bool,
    /// An emoji or emoticon rather than a word.
    pub symbol: bool,
    /// The token's sentence ends with a question mark.
    pub in_question: bool,
    pub gap: Gap,
}

/// All token texts live in one lower-cased buffer so tokenising costs two allocations per
/// message rather than one per token.
pub(crate) struct Tokens {
    buf: String,
    pub toks: Vec<Token>,
    pub exclamations: usize,
    pub questions: usize,
    pub has_lowercase_word: bool,
    /// First token of the sentence being built.
    sentence_start: usize,
}

/// What the tokenizer may ask of an analyser's vocabulary: whether a word is known (to undo
/// elongation, "goood" → "good") and whether a non-word chunk is an emoticon (":-)").
pub(crate) trait Lexicon {
    fn knows(&self, word: &str) -> bool;
    fn is_emoticon(&self, chunk: &str) -> bool;
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.words()).finish()
    }
}

impl Tokens {
    pub fn text(&self, i: usize) -> &str {
        let t = &self.toks[i];
        &self.buf[t.start..t.end]
    }

    /// The text of token `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&str> {
        (i < self.toks.len()).then(|| self.text(i))
    }

    /// The token texts, in order.
    pub fn words(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.toks.len()).map(|i| self.text(i))
    }

    /// Appends the token spanning `start..` of the buffer to the end.
    fn push(&mut self, start: usize, caps: bool, symbol: bool, gap: Gap) {
        if gap == Gap::Sentence {
            self.sentence_start = self.toks.len();
        }
        self.toks.push(Token {
            start,
            end: self.buf.len(),
            caps,
            symbol,
            in_question: false,
            gap,
        });
    }

    fn end_question(&mut self) {
        let from = self.sentence_start.min(self.toks.len());
        for t in &mut self.toks[from..] {
            t.in_question = true;
        }
        self.sentence_start = self.toks.len();
    }
}

#[derive(Default)]
struct WordState {
    start: Option<usize>,
    letters: u32,
    upper: u32,
    lower: u32,
    last: char,
    run: u32,
    elongated: bool,
}

pub(crate) fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{2018}' | '`' | '\u{02BC}')
}

/// Characters that decorate an emoji (variation selectors, joiners, skin tones) and carry no
/// meaning of their own here.
pub(crate) fn is_emoji_modifier(c: char) -> bool {
    matches!(
        c,
        '\u{FE0E}' | '\u{FE0F}' | '\u{200D}' | '\u{1F3FB}'..='\u{1F3FF}'
    )
}

fn is_emoji(c: char) -> bool {
    matches!(c,
        '\u{1F000}'..='\u{1FAFF}'
        | '\u{2600}'..='\u{27BF}'
        | '\u{2B00}'..='\u{2BFF}'
        | '\u{2300}'..='\u{23FF}'
    ) && !is_emoji_modifier(c)
}

/// Lowercased word tokens with their gaps. Apostrophes inside words become `'` ("Don’t" →
/// "don't"); letter runs are capped at two ("soooo" → "soo", or "so" when `lexicon` knows only
/// that); "no one" and "noone" become "nobody"; digits keep their separators ("17:00",
/// "2,998.99"); currency symbols and emoji are tokens of their own; with a `lexicon`, whole
/// chunks that are emoticons are tokens too.
pub(crate) fn tokenize(text: &str, lexicon: Option<&dyn Lexicon>) -> Tokens {
    let mut t = Tokens {
        buf: String::with_capacity(text.len() + 8),
        toks: Vec::with_capacity(text.len() / 4 + 1),
        exclamations: 0,
        questions: 0,
        has_lowercase_word: false,
        sentence_start: 0,
    };
    let mut gap = Gap::None;
    for chunk in text.split_whitespace() {
        if let Some(v) = lexicon {
            if push_emoticon(chunk, v, &mut t, &mut gap) {
                continue;
            }
        }
        let mut w = WordState::default();
        for (idx, c) in chunk.char_indices() {
            if c.is_alphanumeric() {
                if w.start.is_none() {
                    w.start = Some(t.buf.len());
                }
                if c.is_alphabetic() {
                    w.letters += 1;
                    w.upper += u32::from(c.is_uppercase());
                    w.lower += u32::from(c.is_lowercase());
                }
                for lc in c.to_lowercase() {
                    if lc == w.last && lc.is_alphabetic() {
                        w.run += 1;
                    } else {
                        w.last = lc;
                        w.run = 1;
                    }
                    // Cap letter runs at two ("soooo" -> "soo"); the lookup in `flush_word`
                    // decides between the doubled and single form.
                    if w.run >= 3 {
                        w.elongated = true;
                    } else {
                        t.buf.push(lc);
                    }
                }
                continue;
            }
            let next = chunk[idx + c.len_utf8()..].chars().next();
            if is_apostrophe(c) && w.start.is_some() && next.is_some_and(char::is_alphanumeric) {
                t.buf.push('\'');
                w.last = '\'';
                w.run = 0;
                continue;
            }
            if matches!(c, '.' | ',' | ':')
                && w.start.is_some()
                && t.buf.ends_with(|p: char| p.is_ascii_digit())
                && next.is_some_and(|n| n.is_ascii_digit())
            {
                t.buf.push(c);
                w.last = c;
                w.run = 0;
                continue;
            }
            flush_word(&mut t, &mut w, &mut gap, lexicon);
            if is_emoji(c) || CURRENCY_SYMBOLS.contains(&c) {
                let start = t.buf.len();
                t.buf.push(c);
                t.push(start, false, is_emoji(c), gap);
                gap = Gap::None;
                continue;
            }
            let g = match c {
                '!' | '\u{FF01}' => {
                    t.exclamations += 1;
                    Gap::Sentence
                }
                '?' | '\u{FF1F}' => {
                    t.questions += 1;
                    t.end_question();
                    Gap::Sentence
                }
                '.' | '\u{2026}' | '\u{3002}' => Gap::Sentence,
                ',' | ';' | ':' | '(' | ')' | '[' | ']' | '\u{2013}' | '\u{2014}' => Gap::Clause,
                '-' if chunk.bytes().all(|b| b == b'-') => Gap::Clause,
                _ => Gap::None,
            };
            gap = gap.max(g);
        }
        flush_word(&mut t, &mut w, &mut gap, lexicon);
    }
    t
}

fn flush_word(t: &mut Tokens, w: &mut WordState, gap: &mut Gap, lexicon: Option<&dyn Lexicon>) {
    let Some(start) = w.start else {
        return;
    };
    if w.elongated {
        if let Some(v) = lexicon {
            if !v.knows(&t.buf[start..]) {
                let mut single = String::with_capacity(t.buf.len() - start);
                for c in t.buf[start..].chars() {
                    if !single.ends_with(c) || !c.is_alphabetic() {
                        single.push(c);
                    }
                }
                if v.knows(&single) {
                    t.buf.truncate(start);
                    t.buf.push_str(&single);
                }
            }
        }
    }
    let caps = w.letters >= 2 && w.upper == w.letters;
    if w.lower > 0 {
        t.has_lowercase_word = true;
    }
    // "no one" and "noone" are "nobody" for negation and cue matching alike.
    let word = &t.buf[start..];
    let merge_no_one = word == "one"
        && *gap == Gap::None
        && t.toks
            .last()
            .is_some_and(|p| p.end == start && &t.buf[p.start..p.end] == "no");
    if merge_no_one || word == "noone" {
        let begin = if merge_no_one {
            t.toks.pop().map_or(start, |p| p.start)
        } else {
            start
        };
        t.buf.truncate(begin);
        t.buf.push_str("nobody");
        t.push(begin, caps, false, *gap);
    } else {
        t.push(start, caps, false, *gap);
    }
    *gap = Gap::None;
    *w = WordState::default();
}

/// Whole-chunk emoticons (":-)", ":'(", "<3", "D:") would otherwise be torn apart as
/// punctuation. Trailing sentence punctuation and repeated mouths (":)))") are tolerated.
fn push_emoticon(chunk: &str, lexicon: &dyn Lexicon, t: &mut Tokens, gap: &mut Gap) -> bool {
    const MAX: usize = 12;
    if chunk.len() > MAX || !chunk.is_ascii() || chunk.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let mut lower = [0u8; MAX];
    for (d, s) in lower.iter_mut().zip(chunk.bytes()) {
        *d = s.to_ascii_lowercase();
    }
    let full = &lower[..chunk.len()];
    let core_len = full
        .iter()
        .rposition(|b| !matches!(b, b'.' | b',' | b'!' | b'?'))
        .map_or(0, |p| p + 1);
    let mut candidates = [full, &full[..core_len], &full[..0]];
    if core_len >= 3 && full[core_len - 1] == full[core_len - 2] {
        let mut end = core_len;
        while end > 2 && full[end - 1] == full[end - 2] {
            end -= 1;
        }
        candidates[2] = &full[..end];
    }
    for (k, cand) in candidates.iter().enumerate() {
        let Ok(s) = std::str::from_utf8(cand) else {
            continue;
        };
        // Plain words go through the normal path so caps and elongation apply.
        if s.bytes().all(|b| b.is_ascii_alphanumeric()) || !lexicon.is_emoticon(s) {
            continue;
        }
        let start = t.buf.len();
        t.buf.push_str(s);
        t.push(start, false, true, *gap);
        *gap = Gap::None;
        if k > 0 {
            let tail = &full[core_len..];
            t.exclamations += tail.iter().filter(|&&b| b == b'!').count();
            let questions = tail.iter().filter(|&&b| b == b'?').count();
            t.questions += questions;
            if questions > 0 {
                t.end_question();
            }
            if !tail.is_empty() {
                *gap = Gap::Sentence;
            }
        }
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        tokenize(text, None).words().map(str::to_string).collect()
    }

    #[test]
    fn keeps_amounts_times_and_contractions() {
        assert_eq!(
            words("I paid £2,998.99 at 17:00, isn't it? It’s late."),
            ["i", "paid", "£", "2,998.99", "at", "17:00", "isn't", "it", "it's", "late"]
        );
        assert!(tokenize("!! ??", None).toks.is_empty());
        // Separators join digits only; a full stop after a number still ends the sentence.
        let t = tokenize("It was 2.5. Great", None);
        assert_eq!(t.words().collect::<Vec<_>>(), ["it", "was", "2.5", "great"]);
        assert_eq!(t.toks[3].gap, Gap::Sentence);
    }

    #[test]
    fn negator_list_is_clean() {
        let list = negators();
        assert!(list.len() >= 20);
        let mut seen = std::collections::HashSet::new();
        for &w in list {
            assert_eq!(words(w), [w], "{w:?} is not one plain token");
            assert!(seen.insert(w), "{w:?} twice");
            assert!(is_negator(w));
        }
        assert!(is_negator("shouldn't") && !is_negator("note") && !is_negator("knot"));
    }
}
