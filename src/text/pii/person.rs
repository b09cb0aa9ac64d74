//! PERSON: people's names, found from the words around them and from the census name lists.
//!
//! There is no NER model here: names are found by the phrases that introduce them, then by the
//! lists. In order of trust:
//! - strong cues take the name in any case ("my name is priya haddad", "name on the card is
//!   PRIYA HADDAD", "Name: …");
//! - a title, a relation or a greeting takes a capitalised name ("Mr O'Connell", "my husband
//!   John Smith", "Dear Jürgen,");
//! - a closing takes the name line after it ("Thanks,\nMateo Raghunathan");
//! - weak cues ("I'm", "this is", "I spoke to") take a capitalised word only when the lists know
//!   it, a surname follows it, or it closes the clause;
//! - without a cue, a known first name followed by a known surname ("Maria Lopez"), or a known
//!   first name that starts no sentence and is not also a common word, is a name.
//!
//! `not_names.txt` stops every rule: function words, weekdays, months, banks, brands, tiers and
//! support nouns are never a name ("Apple Pay", "Visa", "Monday", "Premium"). Words inside a mask
//! token (`[EMAIL]`, `[PERSON J. S.]`) are never read, which keeps masking idempotent.

use super::{PiiKind, Sink};
use crate::text::lists::{entries, FnvMap, FnvSet};
use std::sync::LazyLock;

struct Lists {
    first: FnvSet<&'static str>,
    last: FnvSet<&'static str>,
    ambiguous: FnvSet<&'static str>,
    not_names: FnvSet<String>,
}

static LISTS: LazyLock<Lists> = LazyLock::new(|| Lists {
    first: entries(include_str!("names/first.txt")).collect(),
    last: entries(include_str!("names/last.txt")).collect(),
    ambiguous: entries(include_str!("names/ambiguous.txt")).collect(),
    not_names: entries(include_str!("names/not_names.txt"))
        .map(fold)
        .collect(),
});

/// Lowercase ASCII letters with accents folded and apostrophes and hyphens dropped: the key
/// the name lists are looked up by ("Müller" → "muller", "O'Connell" → "oconnell").
fn fold(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    fold_onto(word, &mut out);
    out
}

/// [`fold`], appended to `out`.
fn fold_onto(word: &str, out: &mut String) {
    for c in word.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
            }
            continue;
        }
        let folded =
            match c {
                'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ą' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä'
                | 'Å' => "a",
                'æ' | 'Æ' => "ae",
                'ç' | 'ć' | 'č' | 'Ç' | 'Ć' | 'Č' => "c",
                'ď' | 'đ' | 'Ď' | 'Đ' => "d",
                'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' | 'È' | 'É' | 'Ê' | 'Ë' => {
                    "e"
                }
                'ì' | 'í' | 'î' | 'ï' | 'ī' | 'ı' | 'Ì' | 'Í' | 'Î' | 'Ï' | 'İ' => "i",
                'ñ' | 'ń' | 'ň' | 'Ñ' => "n",
                'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö'
                | 'Ø' => "o",
                'œ' | 'Œ' => "oe",
                'ß' => "ss",
                'ś' | 'š' | 'ş' | 'Ś' | 'Š' | 'Ş' => "s",
                'ť' | 'ţ' => "t",
                'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'Ù' | 'Ú' | 'Û' | 'Ü' => "u",
                'ý' | 'ÿ' | 'Ý' => "y",
                'ź' | 'ż' | 'ž' | 'Ź' | 'Ż' | 'Ž' => "z",
                'ł' | 'Ł' => "l",
                'ğ' | 'Ğ' => "g",
                'ř' | 'Ř' => "r",
                '\'' | '’' | '-' | '‐' => "",
                other => {
                    out.extend(other.to_lowercase());
                    continue;
                }
            };
        out.push_str(folded);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// "Priya", "O'Connell", "McDonald", "Jürgen".
    Title,
    /// "PRIYA": two or more letters, all capitals.
    Upper,
    /// "J": one capital letter, an initial (or the pronoun "I").
    Initial,
    /// "priya", and "iPhone"-like words starting in lowercase.
    Lower,
}

#[derive(Debug, Clone, Copy)]
struct Word {
    start: usize,
    /// End of the word without a possessive "'s" ("Sarah's" → "Sarah").
    end: usize,
    /// End including the possessive, where the next gap starts.
    full_end: usize,
    shape: Shape,
}

/// Splits `text` into words: letters with inner apostrophes and hyphens. Mask tokens
/// (`[EMAIL]`, `[CARD ****1234]`, `[PERSON J. S.]`) are skipped whole and so become part of a
/// gap, which no rule reads across.
fn words(text: &str) -> Vec<Word> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if c == '[' {
            if let Some(close) = mask_token_end(text, i) {
                while iter.peek().is_some_and(|&(j, _)| j < close) {
                    iter.next();
                }
            }
            continue;
        }
        if !c.is_alphabetic() {
            continue;
        }
        let start = i;
        let mut end = i + c.len_utf8();
        while let Some(&(j, d)) = iter.peek() {
            if d.is_alphabetic() {
                end = j + d.len_utf8();
                iter.next();
            } else if matches!(d, '\'' | '’' | '-' | '‐')
                && text[j + d.len_utf8()..]
                    .chars()
                    .next()
                    .is_some_and(char::is_alphabetic)
            {
                iter.next();
            } else {
                break;
            }
        }
        // A word glued to digits ("A1", "3rd") is a code, not a name.
        // So is one with a version after it ("Mozilla/5.0").
        let versioned = matches!(bytes.get(end), Some(b'/' | b'.' | b'_'))
            && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
        // And one inside a handle, a host or an address ("josé.garcía", "@zoe_garcia").
        let handle = (matches!(bytes.get(end), Some(b'.' | b'_' | b'@'))
            && bytes
                .get(end + 1)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b >= 0x80))
            || (start > 0 && matches!(bytes[start - 1], b'.' | b'_' | b'@'));
        let glued_digit = versioned
            || handle
            || bytes.get(end).is_some_and(u8::is_ascii_digit)
            || (start > 0 && bytes[start - 1].is_ascii_digit());
        let word = &text[start..end];
        let mut core_end = end;
        for suffix in ["'s", "’s"] {
            if word.len() > suffix.len() + 2 && word.ends_with(suffix) {
                core_end = end - suffix.len();
            }
        }
        let core = &text[start..core_end];
        let mut chars = core.chars();
        let first = chars.next().unwrap_or(' ');
        let shape = if glued_digit {
            Shape::Lower
        } else if first.is_uppercase() {
            if chars.clone().any(char::is_lowercase) {
                Shape::Title
            } else if core.chars().filter(|c| c.is_alphabetic()).count() == 1 {
                Shape::Initial
            } else {
                Shape::Upper
            }
        } else {
            Shape::Lower
        };
        out.push(Word {
            start,
            end: core_end,
            full_end: end,
            shape,
        });
    }
    out
}

/// The end of a mask token starting at `open` (`[` + capital letters + optional detail + `]`).
fn mask_token_end(text: &str, open: usize) -> Option<usize> {
    let rest = &text[open + 1..];
    let label_len = rest.bytes().take_while(u8::is_ascii_uppercase).count();
    if label_len < 2 {
        return None;
    }
    let close = rest.bytes().take(48).position(|b| b == b']')?;
    (close >= label_len).then_some(open + 1 + close + 1)
}

/// Particles that may sit inside a name ("van der Berg", "de la Cruz", "bin Hassan").
const PARTICLES: &[&str] = &[
    "van", "von", "der", "den", "de", "la", "le", "du", "da", "das", "dos", "del", "della", "di",
    "bin", "binti", "bint", "ibn", "al", "el", "ter", "ten", "zu", "y",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// Any case: "my name is priya haddad", "NAME ON CARD: PRIYA HADDAD".
    Strong,
    /// Capitalised or all capitals: titles, relations, greetings, closings.
    Context,
    /// Capitalised only, and the lists or the clause must back it up.
    Weak,
}

struct Doc<'a> {
    text: &'a str,
    words: Vec<Word>,
    /// Folded form of each word (for the lists), as ranges into `key_arena`.
    keys: Vec<(u32, u32)>,
    key_arena: String,
    /// Lowercase form of each word with typographic apostrophes made plain (for cues), as
    /// ranges into `lower_arena`.
    lowers: Vec<(u32, u32)>,
    lower_arena: String,
    /// Most words capitalised: a subject line or Title Case text, where capitals say nothing.
    title_case: bool,
}

impl<'a> Doc<'a> {
    fn new(text: &'a str) -> Self {
        let words = words(text);
        let mut keys = Vec::with_capacity(words.len());
        let mut lowers = Vec::with_capacity(words.len());
        let mut key_arena = String::with_capacity(text.len());
        let mut lower_arena = String::with_capacity(text.len());
        for w in &words {
            let at = key_arena.len() as u32;
            fold_onto(&text[w.start..w.end], &mut key_arena);
            keys.push((at, key_arena.len() as u32));
            let at = lower_arena.len() as u32;
            for c in text[w.start..w.full_end].chars() {
                match c {
                    '’' => lower_arena.push('\''),
                    c if c.is_ascii() => lower_arena.push(c.to_ascii_lowercase()),
                    c => lower_arena.extend(c.to_lowercase()),
                }
            }
            lowers.push((at, lower_arena.len() as u32));
        }
        let capitals = words
            .iter()
            .filter(|w| matches!(w.shape, Shape::Title | Shape::Upper))
            .count();
        let title_case = words.len() >= 6 && capitals * 10 >= words.len() * 8;
        Doc {
            text,
            words,
            keys,
            key_arena,
            lowers,
            lower_arena,
            title_case,
        }
    }

    fn key(&self, i: usize) -> &str {
        let (s, e) = self.keys[i];
        &self.key_arena[s as usize..e as usize]
    }

    fn lower(&self, i: usize) -> &str {
        let (s, e) = self.lowers[i];
        &self.lower_arena[s as usize..e as usize]
    }

    /// The text between word `i - 1` and word `i` (from the start of the text for `i == 0`).
    fn gap(&self, i: usize) -> &'a str {
        let from = if i == 0 {
            0
        } else {
            self.words[i - 1].full_end
        };
        &self.text[from..self.words[i].start]
    }

    /// The text after the last word of a run ending at word `j`, up to the next word.
    fn gap_after(&self, j: usize) -> &'a str {
        let from = self.words[j].full_end;
        let to = self.words.get(j + 1).map_or(self.text.len(), |w| w.start);
        &self.text[from..to]
    }

    fn not_name(&self, i: usize) -> bool {
        LISTS.not_names.contains(self.key(i))
    }

    fn is_first(&self, i: usize) -> bool {
        LISTS.first.contains(self.key(i))
    }

    fn is_last(&self, i: usize) -> bool {
        LISTS.last.contains(self.key(i))
    }

    fn is_ambiguous(&self, i: usize) -> bool {
        LISTS.ambiguous.contains(self.key(i))
    }

    fn is_particle(&self, i: usize) -> bool {
        self.words[i].shape == Shape::Lower && PARTICLES.contains(&self.lower(i))
    }

    /// Whether words `from..from + cue.len()` are `cue`, joined by plain spaces.
    fn cue_at(&self, from: usize, cue: &[&str]) -> bool {
        from + cue.len() <= self.words.len()
            && cue.iter().enumerate().all(|(k, c)| {
                self.lower(from + k) == *c && (k == 0 || is_space(self.gap(from + k)))
            })
    }

    /// A word that may be part of a name under `trust`.
    fn name_word(&self, i: usize, trust: Trust) -> bool {
        if self.not_name(i) {
            return false;
        }
        match self.words[i].shape {
            Shape::Title => true,
            Shape::Upper => trust != Trust::Weak,
            Shape::Initial => false,
            Shape::Lower => trust == Trust::Strong && !self.is_particle(i),
        }
    }

    /// A lowercase run ("priya haddad") is a name only when the lists back it: a known first
    /// name, or a known surname at its end ("my name is spelled wrong" is not a name).
    fn lowercase_backed(&self, from: usize, last: usize) -> bool {
        let all_lower = (from..=last)
            .all(|k| self.words[k].shape != Shape::Title && self.words[k].shape != Shape::Upper);
        !all_lower || self.is_first(from) || (last > from && self.is_last(last))
    }

    /// A lowercase known first name that is not also a common word ("hello mohammed").
    fn lower_known(&self, i: usize) -> bool {
        i < self.words.len()
            && self.words[i].shape == Shape::Lower
            && self.key(i).len() >= 3
            && self.is_first(i)
            && !self.is_ambiguous(i)
            && !self.not_name(i)
    }

    /// The longest name starting at word `i`: up to four name words (plus initials and
    /// particles between them) joined by plain spaces. Returns the index of its last word.
    fn run(&self, i: usize, trust: Trust) -> Option<usize> {
        if i >= self.words.len() {
            return None;
        }
        // "J. Smith", "J SMITH": an initial may open a name that goes on.
        let opens_with_initial = trust != Trust::Weak
            && self.words[i].shape == Shape::Initial
            && self.lower(i) != "i"
            && i + 1 < self.words.len()
            && {
                let gap = self.gap(i + 1);
                is_space(gap) || (gap.starts_with('.') && (gap.len() == 1 || is_space(&gap[1..])))
            }
            && matches!(self.words[i + 1].shape, Shape::Title | Shape::Upper)
            && self.name_word(i + 1, trust);
        // "May Chen": a first name that is also a word opens a name when a known surname
        // follows it.
        let opens_pair = trust != Trust::Weak
            && self.words[i].shape == Shape::Title
            && self.is_first(i)
            && i + 1 < self.words.len()
            && is_space(self.gap(i + 1))
            && self.words[i + 1].shape == Shape::Title
            && self.is_last(i + 1)
            && !self.not_name(i + 1);
        if !opens_with_initial && !opens_pair && !self.name_word(i, trust) {
            return None;
        }
        let mut last = i;
        let mut names = 1;
        let mut j = i + 1;
        while j < self.words.len() && names < 4 {
            let gap = self.gap(j);
            let initial_gap = self.words[j - 1].shape == Shape::Initial
                && gap.starts_with('.')
                && (gap.len() == 1 || is_space(&gap[1..]));
            if !(is_space(gap) || initial_gap) {
                break;
            }
            // After a capitalised first word, a lowercase word ends the name ("Camille Lefèvre
            // et j'attends").
            let case_break =
                self.words[i].shape != Shape::Lower && self.words[j].shape == Shape::Lower;
            if self.name_word(j, trust) && !case_break {
                last = j;
                names += 1;
            } else if !(self.is_particle(j) || self.words[j].shape == Shape::Initial) {
                break;
            }
            j += 1;
        }
        Some(last)
    }

    /// A line that holds only a name, as under a closing: up to four capitalised words (or
    /// particles) from word `i` to the end of the line. Words such as "An" or "May" are
    /// allowed after the first: a line on its own is the name, whatever its words also mean.
    fn name_line(&self, i: usize) -> Option<usize> {
        let initial = self.words[i].shape == Shape::Initial
            && i + 1 < self.words.len()
            && self.gap(i + 1) == ". ";
        if !(initial || matches!(self.words[i].shape, Shape::Title | Shape::Upper))
            || self.not_name(i)
        {
            return None;
        }
        let mut last = i;
        for (j, word) in self.words.iter().enumerate().take(i + 4).skip(i + 1) {
            let joined = is_space(self.gap(j));
            let namelike = matches!(word.shape, Shape::Title | Shape::Upper | Shape::Initial)
                || self.is_particle(j);
            if !(joined && namelike) {
                break;
            }
            last = j;
        }
        self.line_ends_after(last).then_some(last)
    }

    /// Whether the clause ends after word `j`: punctuation, a line break, the end of the text,
    /// or a word that commonly follows a name ("… and", "… from the bank", "… here").
    fn clause_ends_after(&self, j: usize) -> bool {
        let gap = self.gap_after(j);
        if j + 1 >= self.words.len() {
            return true;
        }
        if gap.contains([',', '.', '!', '?', ';', ':', '\n', '(']) {
            return true;
        }
        is_space(gap)
            && matches!(
                self.lower(j + 1),
                "and" | "from" | "here" | "speaking" | "calling" | "writing" | "again"
            )
    }

    /// Whether the line ends after word `j` (only punctuation or spaces follow on its line).
    fn line_ends_after(&self, j: usize) -> bool {
        let gap = self.gap_after(j);
        let line = gap.split('\n').next().unwrap_or("");
        let rest_of_line_empty = line
            .chars()
            .all(|c| c.is_whitespace() || matches!(c, '.' | '!' | ',' | ')' | '"'));
        rest_of_line_empty && (gap.contains('\n') || j + 1 >= self.words.len())
    }

    /// "M." before a name: the French title, which reads as an initial.
    fn french_m(&self, i: usize) -> bool {
        self.lower(i) == "m" && i + 1 < self.words.len() && self.gap(i + 1) == ". "
    }

    /// Whether word `i` starts a sentence or a line.
    fn starts_sentence(&self, i: usize) -> bool {
        if i == 0 {
            return true;
        }
        let gap = self.gap(i);
        gap.contains(['.', '!', '?', '\n', ':', '"', '[', ']'])
            || gap.contains(|c: char| c.is_ascii_digit())
    }
}

fn is_space(gap: &str) -> bool {
    !gap.is_empty() && gap.chars().all(|c| c == ' ' || c == '\t' || c == '\u{a0}')
}

/// Phrases after which the next words are a name in any case, and whether the phrase needs a
/// colon or a dash before the name ("Name: …", but "my name is …").
const STRONG: &[(&[&str], bool)] = &[
    (&["my", "name", "is"], false),
    (&["full", "name", "is"], false),
    (&["name", "is"], false),
    (&["name's"], false),
    (&["name", "on", "the", "card", "is"], false),
    (&["name", "on", "my", "card", "is"], false),
    (&["name", "on", "the", "account", "is"], false),
    (&["name", "on", "my", "account", "is"], false),
    (&["holder", "is"], false),
    (&["cardholder", "is"], false),
    (&["holder", "name", "is"], false),
    (&["cardholder", "name", "is"], false),
    (&["i", "am", "called"], false),
    (&["je", "m'appelle"], false),
    (&["mon", "nom", "est"], false),
    (&["ich", "heiße"], false),
    (&["ich", "heisse"], false),
    (&["mein", "name", "ist"], false),
    (&["me", "llamo"], false),
    (&["mi", "nombre", "es"], false),
    (&["mi", "chiamo"], false),
    (&["nazywam", "się"], false),
    (&["il", "mio", "nome", "è"], false),
    (&["mijn", "naam", "is"], false),
    (&["meu", "nome", "é"], false),
    (&["me", "chamo"], false),
    (&["maiden", "name", "is"], false),
    (&["card", "says"], false),
    (&["card", "reads"], false),
    (&["card", "shows"], false),
    (&["name"], true),
    (&["maiden", "name"], true),
    (&["cardholder"], true),
    (&["holder"], true),
    (&["name", "on", "card"], false),
    (&["recipient"], true),
    (&["beneficiary"], true),
    (&["payee"], true),
    (&["customer"], true),
    (&["client"], true),
    (&["contact"], true),
    (&["attn"], true),
    (&["attention"], true),
    (&["from"], true),
    (&["to"], true),
    (&["signed"], true),
    (&["empfänger"], true),
    (&["destinataire"], true),
    (&["destinatario"], true),
];

/// Phrases after which a capitalised word is a name only when the lists or the clause say so.
const WEAK: &[&[&str]] = &[
    &["i'm"],
    &["im"],
    &["its"],
    &["olen"],
    &["ben"],
    &["i", "am"],
    &["this", "is"],
    &["it's"],
    &["it", "is"],
    &["named"],
    &["called"],
    &["spoke", "to"],
    &["spoke", "with"],
    &["speaking", "to"],
    &["speaking", "with"],
    &["talked", "to"],
    &["talked", "with"],
    &["talking", "to"],
    &["chatted", "with"],
    &["helped", "by"],
    &["served", "by"],
    &["ich", "bin"],
    &["je", "suis"],
    &["soy"],
    &["ik", "ben"],
    &["sono"],
];

/// Phrases that name whom money went to: a capitalised first and last name after them is a
/// person ("Transfer to Sipho Ndlovu"), a single word may be a shop or a bank.
const PAYEE: &[&[&str]] = &[
    &["transfer", "to"],
    &["transferred", "to"],
    &["transfer", "from"],
    &["payment", "to"],
    &["payment", "from"],
    &["paid"],
    &["sent", "money", "to"],
    &["money", "to"],
    &["money", "from"],
    &["refund", "to"],
    &["bonifico", "a"],
    &["overboeking", "naar"],
    &["to"],
    // "c/o" reads as the words "c" and "o"; matched by hand below.
    &["o"],
];

/// Words for people a customer mentions; a capitalised name right after is a person.
const RELATIONS: &[&str] = &[
    "husband",
    "wife",
    "partner",
    "spouse",
    "son",
    "daughter",
    "child",
    "mother",
    "mum",
    "mom",
    "father",
    "dad",
    "brother",
    "sister",
    "friend",
    "colleague",
    "boss",
    "landlord",
    "landlady",
    "tenant",
    "grandmother",
    "grandfather",
    "grandma",
    "grandpa",
    "aunt",
    "uncle",
    "cousin",
    "niece",
    "nephew",
    "fiance",
    "fiancé",
    "fiancee",
    "fiancée",
    "girlfriend",
    "boyfriend",
    "flatmate",
    "roommate",
    "neighbour",
    "neighbor",
    "agent",
    "advisor",
    "adviser",
    "representative",
    "rep",
    "manager",
    "assistant",
    "operator",
    "employee",
    "beneficiary",
    "customer",
    "client",
    "payee",
    "recipient",
    "sender",
    "caller",
    "courier",
    "driver",
    "postman",
    "cashier",
    "teller",
    "banker",
    "accountant",
    "solicitor",
    "lawyer",
    "carer",
    "guardian",
    "nanny",
    "guy",
    // Other languages: Dutch, Italian, Spanish, German, French, Portuguese.
    "vriend",
    "vriendin",
    "vrouw",
    "zoon",
    "dochter",
    "marito",
    "moglie",
    "figlio",
    "figlia",
    "amico",
    "amica",
    "fratello",
    "sorella",
    "hermano",
    "hermana",
    "esposo",
    "esposa",
    "marido",
    "hijo",
    "hija",
    "amigo",
    "amiga",
    "sohn",
    "tochter",
    "freund",
    "freundin",
    "bruder",
    "schwester",
    "mari",
    "femme",
    "fils",
    "fille",
    "ami",
    "amie",
    "frère",
    "sœur",
    "irmão",
    "irmã",
];

const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "mx", "miss", "dr", "prof", "herr", "frau", "monsieur", "madame", "mme",
    "mlle", "señor", "senor", "señora", "senora", "sr", "sra", "srta", "dame", "lord", "herrn",
    "capt", "rev", "sgt", "col", "meneer", "mevrouw", "mevr", "dhr", "signor", "signora", "sig",
    "dott",
];

/// Greetings that open a message or a line: "Dear Jürgen," "Hi Priya!".
const GREETINGS: &[&[&str]] = &[
    &["dear"],
    &["hi"],
    &["hello"],
    &["hey"],
    &["hiya"],
    &["good", "morning"],
    &["good", "afternoon"],
    &["good", "evening"],
    &["morning"],
    &["hallo"],
    &["bonjour"],
    &["hola"],
    &["ciao"],
    &["liebe"],
    &["lieber"],
    &["cher"],
    &["chère"],
    &["estimado"],
    &["estimada"],
    &["beste"],
    &["buongiorno"],
    &["caro"],
    &["cara"],
    &["olá"],
    &["ola"],
    &["bom", "dia"],
    &["hej"],
];

/// Closings followed by the writer's name: "Thanks,\nMateo", "Best, Priya".
const CLOSINGS: &[&[&str]] = &[
    &["thanks"],
    &["thank", "you"],
    &["thanks", "a", "lot"],
    &["thanks", "so", "much"],
    &["thank", "you", "so", "much"],
    &["thank", "you", "very", "much"],
    &["many", "thanks"],
    &["with", "thanks"],
    &["take", "care"],
    &["talk", "soon"],
    &["speak", "soon"],
    &["warm", "wishes"],
    &["kind", "wishes"],
    &["love"],
    &["ta"],
    &["thanks", "again"],
    &["thanks", "in", "advance"],
    &["regards"],
    &["kind", "regards"],
    &["best", "regards"],
    &["warm", "regards"],
    &["warmest", "regards"],
    &["kindest", "regards"],
    &["best", "wishes"],
    &["all", "the", "best"],
    &["best"],
    &["cheers"],
    &["sincerely"],
    &["yours", "sincerely"],
    &["yours", "faithfully"],
    &["yours", "truly"],
    &["yours"],
    &["respectfully"],
    &["cordially"],
    &["thx"],
    &["ty"],
    &["br"],
    &["sent", "by"],
    &["from"],
    &["mit", "freundlichen", "grüßen"],
    &["mit", "freundlichen", "grüssen"],
    &["viele", "grüße"],
    &["liebe", "grüße"],
    &["grüße"],
    &["gruß"],
    &["cordialement"],
    &["bien", "à", "vous"],
    &["merci"],
    &["saludos"],
    &["un", "saludo"],
    &["gracias"],
    &["danke"],
    &["regards", "from"],
    &["pozdrawiam"],
    &["saygılarımla"],
    &["ystävällisin", "terveisin"],
    &["terveisin"],
    &["cordiali", "saluti"],
    &["distinti", "saluti"],
    &["saluti"],
    &["grazie"],
    &["met", "vriendelijke", "groet"],
    &["vriendelijke", "groeten"],
    &["groeten"],
    &["atenciosamente"],
    &["obrigado"],
    &["obrigada"],
];

/// The cues a word can end (strong and weak cues, payees) or start (greetings, closings), and
/// whether it is a title or a relation: one lookup per word instead of a walk over every list.
#[derive(Default)]
struct Cues {
    strong: Vec<usize>,
    weak: Vec<usize>,
    payee: Vec<usize>,
    greeting: Vec<usize>,
    closing: Vec<usize>,
    title: bool,
    relation: bool,
}

static CUES: LazyLock<FnvMap<&'static str, Cues>> = LazyLock::new(|| {
    let mut map: FnvMap<&'static str, Cues> = FnvMap::default();
    for (k, (cue, _)) in STRONG.iter().enumerate() {
        map.entry(cue[cue.len() - 1]).or_default().strong.push(k);
    }
    for (k, cue) in WEAK.iter().enumerate() {
        map.entry(cue[cue.len() - 1]).or_default().weak.push(k);
    }
    for (k, cue) in PAYEE.iter().enumerate() {
        map.entry(cue[cue.len() - 1]).or_default().payee.push(k);
    }
    for (k, cue) in GREETINGS.iter().enumerate() {
        map.entry(cue[0]).or_default().greeting.push(k);
    }
    for (k, cue) in CLOSINGS.iter().enumerate() {
        map.entry(cue[0]).or_default().closing.push(k);
    }
    for title in TITLES.iter().chain(&["m"]) {
        map.entry(title).or_default().title = true;
    }
    for relation in RELATIONS {
        map.entry(relation).or_default().relation = true;
    }
    map
});

static NO_CUES: Cues = Cues {
    strong: Vec::new(),
    weak: Vec::new(),
    payee: Vec::new(),
    greeting: Vec::new(),
    closing: Vec::new(),
    title: false,
    relation: false,
};

/// Names found, as (first word, last word).
type Spans = Vec<(usize, usize)>;

/// Finds person names in `text`, reporting spans from the first to the last name word.
pub(super) fn detect_persons(text: &str, sink: &mut Sink) {
    let doc = Doc::new(text);
    let mut spans = Spans::new();
    for i in 0..doc.words.len() {
        let cues = CUES.get(doc.lower(i)).unwrap_or(&NO_CUES);
        strong_cue(&doc, i, cues, &mut spans);
        weak_cue(&doc, i, cues, &mut spans);
        payee(&doc, i, cues, &mut spans);
        if cues.title {
            title(&doc, i, &mut spans);
        }
        if cues.relation {
            relation(&doc, i, &mut spans);
        }
        greeting(&doc, i, cues, &mut spans);
        closing(&doc, i, cues, &mut spans);
        sentence_opening(&doc, i, &mut spans);
        dashed_signature(&doc, i, &mut spans);
    }
    name_under_thanks(&doc, &mut spans);
    if !doc.title_case {
        from_lists(&doc, &mut spans);
    }
    for (first, last) in spans {
        sink.push(PiiKind::Person, doc.words[first].start, doc.words[last].end);
    }
}

/// "my name is …", "Name: …": the next words in any case.
fn strong_cue(doc: &Doc, i: usize, cues: &Cues, out: &mut Spans) {
    let from = i + 1;
    for &(cue, needs_colon) in cues.strong.iter().map(|&k| &STRONG[k]) {
        if from >= doc.words.len() || from < cue.len() || !doc.cue_at(from - cue.len(), cue) {
            continue;
        }
        let gap = doc.gap(from).trim_matches(|c: char| c == ' ' || c == '\t');
        let colon = gap == ":" || gap == "-" || (gap == "," && cue.ends_with(&["name"]));
        if !((gap.is_empty() && !needs_colon) || colon) {
            continue;
        }
        // "my name is Mr. John Smith": the title is left to the title rule.
        if TITLES.contains(&doc.lower(from)) || doc.french_m(from) {
            continue;
        }
        if let Some(last) = doc.run(from, Trust::Strong) {
            if doc.lowercase_backed(from, last) {
                out.push((from, last));
            }
        }
    }
}

/// "I'm Priya," "I spoke to Sarah": a capitalised word the lists or the clause back up.
fn weak_cue(doc: &Doc, i: usize, cues: &Cues, out: &mut Spans) {
    let from = i + 1;
    for cue in cues.weak.iter().map(|&k| WEAK[k]) {
        if doc.title_case || from < cue.len() || !doc.cue_at(from - cue.len(), cue) {
            continue;
        }
        if from >= doc.words.len() || !is_space(doc.gap(from)) {
            continue;
        }
        // "hi im sarah jones": a known first name in lowercase text.
        if doc.lower_known(from) {
            let last = doc.run(from, Trust::Strong).unwrap_or(from).min(from + 2);
            out.push((from, last));
            continue;
        }
        if let Some(last) = doc.run(from, Trust::Weak) {
            let known = doc.is_first(from) && !doc.is_ambiguous(from);
            let full = last > from;
            if known || full || doc.clause_ends_after(last) {
                out.push((from, last));
            }
        }
    }
}

/// "Transfer to Sipho Ndlovu", "c/o Tariq Mahmood": two or more capitalised words.
fn payee(doc: &Doc, i: usize, cues: &Cues, out: &mut Spans) {
    let from = i + 1;
    for cue in cues.payee.iter().map(|&k| PAYEE[k]) {
        if doc.title_case || from < cue.len() || from >= doc.words.len() || !is_space(doc.gap(from))
        {
            continue;
        }
        let care_of = cue == ["o"] && i > 0 && doc.lower(i - 1) == "c" && doc.gap(i) == "/";
        if !(care_of || (cue != ["o"] && doc.cue_at(from - cue.len(), cue))) {
            continue;
        }
        if let Some(last) = doc.run(from, Trust::Weak) {
            // After a bare "to" the lists must know the name ("to Orla Brennan", not "to
            // Buenos Aires").
            let bare_to = cue == ["to"];
            let known = (doc.is_first(from) && !doc.is_ambiguous(from)) || doc.is_last(last);
            if care_of || (last > from && (!bare_to || known)) {
                out.push((from, last));
            }
        }
    }
}

/// "Mr O'Connell", "Dr. Priya Haddad", "M. Dupont", "mrs funmilayo adebayo".
fn title(doc: &Doc, i: usize, out: &mut Spans) {
    let n = doc.words.len();
    if i + 1 >= n {
        return;
    }
    let shape = doc.words[i].shape;
    if shape == Shape::Lower && matches!(doc.lower(i), "mr" | "mrs" | "ms") {
        // One or two lowercase words after a lowercase title; a known surname ends the name
        // ("mr o'brien rang"), another word opens it ("mrs funmilayo adebayo").
        if is_space(doc.gap(i + 1)) {
            if let Some(last) = doc.run(i + 1, Trust::Strong) {
                let last = if doc.is_last(i + 1) {
                    i + 1
                } else {
                    last.min(i + 2)
                };
                out.push((i + 1, last));
            }
        }
        return;
    }
    let titled = match shape {
        Shape::Title | Shape::Upper => TITLES.contains(&doc.lower(i)),
        // "M. Dupont": the French title reads as an initial.
        Shape::Initial => doc.french_m(i),
        Shape::Lower => false,
    };
    let gap = doc.gap(i + 1);
    if !titled || !(is_space(gap) || (gap.starts_with('.') && is_space(&gap[1..]))) {
        return;
    }
    // "Mr van der Berg": the particle belongs to the name.
    let from = if doc.is_particle(i + 1) && i + 2 < n {
        i + 2
    } else {
        i + 1
    };
    if let Some(last) = doc.run(from, Trust::Context) {
        out.push((i + 1, last));
    }
}

/// "my husband John Smith", "your agent, Sarah,", "the chat agent (Priya)".
fn relation(doc: &Doc, i: usize, out: &mut Spans) {
    if i + 1 >= doc.words.len() {
        return;
    }
    let gap = doc.gap(i + 1).trim_matches(|c: char| c == ' ' || c == '\t');
    if (gap.is_empty() || gap == ",") && doc.lower_known(i + 1) {
        out.push((i + 1, i + 1));
        return;
    }
    if !(gap.is_empty() || gap == "," || gap == "(") {
        return;
    }
    let Some(last) = doc.run(i + 1, Trust::Context) else {
        return;
    };
    // "Customer Relations" signs a team; "Customer Raj Patel" and "my colleague Sarah" are
    // people.
    let determined =
        doc.words[i].shape == Shape::Lower || (i > 0 && DETERMINERS.contains(&doc.lower(i - 1)));
    let single_word = last == i + 1;
    if !(single_word && (doc.words[i + 1].shape == Shape::Upper || !determined)) {
        out.push((i + 1, last));
    }
}

/// Words before a relation that make it one ("my colleague", "the agent").
const DETERMINERS: &[&str] = &[
    "my", "your", "our", "his", "her", "their", "the", "a", "mi", "mijn", "mein", "meine", "mon",
    "ma", "il", "la",
];

/// "Dear Jürgen,", "Hi Priya!", "hello mohammed can you …", "hi fionnuala, thanks …".
fn greeting(doc: &Doc, i: usize, cues: &Cues, out: &mut Spans) {
    for cue in cues.greeting.iter().map(|&k| GREETINGS[k]) {
        if !doc.cue_at(i, cue) || !doc.starts_sentence(i) {
            continue;
        }
        let from = i + cue.len();
        if from >= doc.words.len() {
            continue;
        }
        let gap = doc.gap(from).trim_matches(|c: char| c == ' ' || c == '\t');
        if !(gap.is_empty() || gap == ",") || doc.gap(from).is_empty() {
            continue;
        }
        let lower_named = doc.words[from].shape == Shape::Lower
            && !doc.not_name(from)
            && !doc.is_particle(from)
            && doc.key(from).len() >= 3
            && doc.gap_after(from).trim_start().starts_with([',', '!']);
        if doc.lower_known(from) || lower_named {
            out.push((from, from));
        } else if let Some(last) = doc.run(from, Trust::Context) {
            if doc.clause_ends_after(last) {
                out.push((from, last));
            }
        }
    }
}

/// "Thanks,\nMateo Raghunathan", "Best, Priya", "will do, thanks\n\nWill": the writer's name
/// ending the line after a closing.
fn closing(doc: &Doc, i: usize, cues: &Cues, out: &mut Spans) {
    for cue in cues.closing.iter().map(|&k| CLOSINGS[k]) {
        let after_comma = i > 0 && doc.gap(i).contains(',');
        if !doc.cue_at(i, cue) || !(doc.starts_sentence(i) || after_comma) {
            continue;
        }
        let from = i + cue.len();
        if from >= doc.words.len() {
            continue;
        }
        let gap = doc.gap(from);
        let gap_ok = gap
            .chars()
            .all(|c| c.is_whitespace() || matches!(c, ',' | '!' | '.' | '-' | '—' | '–'));
        if !gap_ok {
            continue;
        }
        let own_line = gap.contains('\n');
        // A first name alone on its own line is the writer's, even when it is also a word.
        let alone_on_line = own_line
            && matches!(doc.words[from].shape, Shape::Title | Shape::Upper)
            && doc.is_first(from)
            && doc.line_ends_after(from);
        let last = if doc.lower_known(from) || alone_on_line {
            Some(from)
        } else if own_line {
            doc.name_line(from)
        } else {
            doc.run(from, Trust::Weak)
        };
        if let Some(last) = last {
            if doc.line_ends_after(last) {
                out.push((from, last));
            }
        }
    }
}

/// "Dave here, …", "Siobhan O'Connell speaking", "Kofi said …", "Gabriela from your fraud
/// team …", "Lars Eriksson and I …": a name opening a sentence, known by the words after it.
fn sentence_opening(doc: &Doc, i: usize, out: &mut Spans) {
    let after_comma = i > 0 && doc.gap(i).trim() == ",";
    if !(doc.starts_sentence(i) || after_comma) || doc.title_case {
        return;
    }
    let last = if doc.lower_known(i) {
        Some(i)
    } else {
        doc.run(i, Trust::Context)
    };
    let Some(last) = last else {
        return;
    };
    let next = |k: usize| {
        doc.words
            .get(last + k)
            .filter(|_| is_space(doc.gap(last + k)))
            .map(|_| doc.lower(last + k))
    };
    let here = matches!(next(1), Some("here" | "speaking")) && doc.clause_ends_after(last + 1);
    let said = next(1).is_some_and(|w| SPEECH_VERBS.contains(&w));
    let from_you = next(1) == Some("from") && matches!(next(2), Some("your" | "the"));
    let and_i = next(1) == Some("and") && matches!(next(2), Some("i" | "me" | "my"));
    if here || (!after_comma && (said || from_you || and_i)) {
        out.push((i, last));
    }
}

const SPEECH_VERBS: &[&str] = &[
    "said",
    "says",
    "told",
    "promised",
    "mentioned",
    "confirmed",
    "explained",
    "asked",
    "rang",
    "called",
    "emailed",
    "texted",
];

/// "— Anna" ending a line or the text, and the name line under an e-mail signature separator
/// ("-- ").
fn dashed_signature(doc: &Doc, i: usize, out: &mut Spans) {
    let gap = doc.gap(i);
    if !gap.contains(['-', '—', '–']) {
        return;
    }
    let separator_line = gap
        .split('\n')
        .skip(1)
        .any(|line| matches!(line.trim(), "--" | "—" | "–" | "-"));
    if separator_line && gap.ends_with('\n') {
        if let Some(last) = doc.name_line(i) {
            out.push((i, last));
            return;
        }
    }
    let (before_line, line_part) = match gap.rfind('\n') {
        Some(at) => (true, &gap[at + 1..]),
        None => (i == 0, gap),
    };
    let dash = line_part.trim_start_matches([' ', '\t']);
    let dashed = ["—", "–", "--", "-"].iter().any(|d| {
        dash.strip_prefix(d)
            .is_some_and(|rest| rest.is_empty() || is_space(rest))
    });
    if dashed && (before_line || line_part.starts_with(' ')) {
        if let Some(last) = doc.run(i, Trust::Context) {
            if doc.line_ends_after(last) && (before_line || last + 1 >= doc.words.len()) {
                out.push((i, last));
            }
        }
    }
}

/// A name alone on the last line, under a line that thanks: "… for sorting it 😊\nAmara".
fn name_under_thanks(doc: &Doc, out: &mut Spans) {
    let Some(at) = doc.text.trim_end().rfind('\n') else {
        return;
    };
    let previous_line = doc.text[..at]
        .trim_end()
        .rsplit('\n')
        .next()
        .unwrap_or("")
        .to_lowercase();
    let thanks = [
        "thank", "cheers", "regards", "grazie", "merci", "danke", "gracias", "bedankt", "obrigad",
    ]
    .iter()
    .any(|w| previous_line.contains(w));
    let Some(first) = doc.words.iter().position(|w| w.start > at) else {
        return;
    };
    if thanks && doc.gap(first).trim().is_empty() {
        if let Some(last) = doc.name_line(first) {
            if last + 1 == doc.words.len() {
                out.push((first, last));
            }
        }
    }
}

/// The lists alone: "… transfer to Maria Lopez", "… spoke to Sarah on the phone".
fn from_lists(doc: &Doc, out: &mut Spans) {
    let n = doc.words.len();
    for (i, word) in doc.words.iter().enumerate() {
        if word.shape != Shape::Title || !doc.is_first(i) || doc.not_name(i) {
            continue;
        }
        if i + 1 < n
            && !doc.is_ambiguous(i)
            && is_space(doc.gap(i + 1))
            && doc.words[i + 1].shape == Shape::Title
            && doc.is_last(i + 1)
            && !doc.not_name(i + 1)
        {
            out.push((i, doc.run(i, Trust::Weak).unwrap_or(i + 1)));
            continue;
        }
        let previous_is_word = i > 0 && !doc.starts_sentence(i);
        // "a pickup point in Denver": after a place preposition a lone word is a place.
        let after_place_word = i > 0
            && matches!(
                doc.lower(i - 1),
                "in" | "at" | "near" | "around" | "outside" | "via"
            );
        if previous_is_word && !after_place_word && !doc.is_ambiguous(i) {
            out.push((i, doc.run(i, Trust::Weak).unwrap_or(i)));
        }
    }
}

/// The initials shown by `--mask-style partial`: "Mateo García" → "M. G.".
pub(super) fn initials(name: &str) -> String {
    let mut out = String::new();
    for w in words(name) {
        let word = &name[w.start..w.end];
        if PARTICLES.contains(&word.to_lowercase().as_str()) {
            continue;
        }
        if let Some(c) = word.chars().next() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.extend(c.to_uppercase());
            out.push('.');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persons(text: &str) -> Vec<&str> {
        let mut sink = Sink::default();
        detect_persons(text, &mut sink);
        let mut spans: Vec<(usize, usize)> =
            sink.candidates.iter().map(|f| (f.start, f.end)).collect();
        spans.sort_unstable();
        spans.dedup();
        spans.into_iter().map(|(s, e)| &text[s..e]).collect()
    }

    #[test]
    fn names_from_context() {
        assert_eq!(
            persons("Hello, my name is Priya Haddad and I can't log in"),
            ["Priya Haddad"]
        );
        assert_eq!(persons("Thanks,\nMateo Raghunathan"), ["Mateo Raghunathan"]);
        assert_eq!(persons("my name is priya haddad"), ["priya haddad"]);
        assert_eq!(persons("Dear Jürgen,\nthe card"), ["Jürgen"]);
        assert_eq!(persons("Please ask Mrs O'Connell"), ["O'Connell"]);
        assert_eq!(
            persons("my husband John Smith-Jones paid"),
            ["John Smith-Jones"]
        );
        assert_eq!(
            persons("I sent it to Maria Lopez yesterday"),
            ["Maria Lopez"]
        );
    }

    #[test]
    fn products_and_common_words_are_not_names() {
        for text in [
            "Apple Pay stopped working on Monday",
            "Is my Visa card Premium?",
            "I'm Still waiting for Google Pay",
            "Will you help me? Mark my card as lost",
            "Dear Sir/Madam, thanks",
            "Thanks,\nSupport Team",
            "Hi there, the Grace period ended in May",
            "[PERSON] and [PERSON J. S.] are masked",
        ] {
            assert!(persons(text).is_empty(), "{text}: {:?}", persons(text));
        }
    }

    #[test]
    fn initials_skip_particles() {
        assert_eq!(initials("Mateo García"), "M. G.");
        assert_eq!(initials("Jan van der Berg"), "J. B.");
        assert_eq!(initials("łukasz"), "Ł.");
    }
}
