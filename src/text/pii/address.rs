//! ADDRESS: postal addresses, masked as one span from the flat or house number to the postcode.
//!
//! An address is anchored on a street: a house number with a street word ("31 Maple Drive",
//! "12 rue de la Paix"), or a street word with the number after it ("Hauptstraße 5", "Berliner
//! Str. 12", "Calle Mayor 5"). From there the span grows over what directly follows, after a
//! comma, a space or a line break: a flat or unit, a city, and a postcode (UK), a state with a ZIP
//! (US) or a postcode with its city (Germany, France, …). A postcode without a street counts
//! only with its context: "postcode SW1A 1AA", "London SW1A 1AA", "Springfield, IL 62704",
//! "10115 Berlin". A city or a number alone is never an address ("I live in London", "ZIP 10001",
//! "Terminal 5", "3 days").

use super::{context_before, glued_left, glued_right, is_negative, PiiKind, Sink};
use regex::Regex;
use std::sync::LazyLock;

/// Street words written after the street's name ("Maple Drive", "High St").
const STREET_AFTER: &str = r"(?:street|st|road|rd|avenue|ave|av|drive|dr|lane|ln|way|boulevard|blvd|court|ct|place|pl|close|crescent|cres|terrace|terr|tce|square|sq|gardens|gdns|grove|gr|hill|row|mews|parkway|pkwy|highway|hwy|circle|cir|trail|trl|walk|rise|parade|pde|broadway|park|green|end|wharf|quay|yard|vale|view)";

/// Street words written before the name ("rue de la Paix", "Calle Mayor", "Via Roma").
const STREET_BEFORE: &str = r"(?:rue|avenue|av|boulevard|bd|bld|place|allée|allee|chemin|impasse|quai|route|calle|c/|carrer|avenida|avda|plaza|paseo|via|viale|piazza|corso|rua|travessa)";

/// German street endings, glued ("Hauptstraße") or as their own word ("Berliner Str.").
const STRASSE: &str = r"(?:straße|strasse|str\.|weg|gasse|platz|allee|damm|ufer|chaussee|steig)";

const PARTICLES: &str =
    r"(?:(?:de|du|des|la|le|les|del|de\s+la|della|di|da|do|dos|das|von|van|der|den|l'|d')\s*)*";

/// A capitalised word of a street or city name, accents and hyphens included, or an ordinal
/// ("57th").
const NAME_WORD: &str = r"(?:\p{Lu}[\p{L}'’\-]*|[0-9]{1,3}(?:st|nd|rd|th))";

/// A capitalised word of two letters or more ("Avenue Q" is a show, not a street).
const LONG_WORD: &str = r"\p{Lu}[\p{L}'’\-]+";

/// A city: capitalised words, with the small words some city names have ("Newcastle upon
/// Tyne", "Frankfurt am Main").
const CITY: &str = r"\p{Lu}[\p{L}'’\-]*(?:[ \t]+(?:(?:upon|on|am|an|der|sur|en|de|la|le|del)[ \t]+)?\p{Lu}[\p{L}'’\-]*){0,2}(?-u:\b)";

/// A US state with its ZIP code ("IL 62704", "NY 10001-1234").
const US_ZIP: &str = r"(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR)[ \t]+[0-9]{5}(?:-[0-9]{4})?";

const UK_POSTCODE: &str = r"(?:[A-Z]{1,2}[0-9][A-Z0-9]?\s?[0-9][A-Z]{2})";

/// A flat or unit before the house number: "Flat 3, ", "Apt 4B ", "Unit 12/".
const UNIT: &str = r"(?:(?i:flat|apt|appt|apartment|unit|suite|ste|appartement|wohnung)\.?\s*[0-9]{1,4}[A-Za-z]?(?:/[0-9]{1,3})?(?:\s*,\s*|\s+|/))?";

/// The street part of an address, in its three orders.
static STREET_RE: LazyLock<Regex> = LazyLock::new(|| {
    let number = r"[0-9]{1,5}[A-Za-z]?(?:\s?[-–/]\s?[0-9]{1,5}[A-Za-z]?)?";
    let names = format!(r"{NAME_WORD}(?:[ \t]+{NAME_WORD}){{0,3}}");
    // "31 Maple Drive", "1600 Pennsylvania Avenue NW", "Flat 3, 31 Maple Drive".
    let number_first = format!(
        r"{UNIT}{number},?[ \t]+(?:{names})[ \t]+(?i:{STREET_AFTER})(?:[ \t]+(?:NW|NE|SW|SE|N|S|E|W))?(?-u:\b)\.?"
    );
    // "12 rue de la Paix", "5, avenue des Champs-Élysées".
    let number_before_street = format!(
        r"{number}(?:[ \t]+(?:bis|ter))?,?[ \t]+(?i:{STREET_BEFORE})\.?[ \t]+{PARTICLES}{LONG_WORD}(?:[ \t]+{PARTICLES}{NAME_WORD}){{0,3}}"
    );
    // "Hauptstraße 5", "Berliner Str. 12", "Calle Mayor 5", "Via Roma 10".
    let street_first = format!(
        r"(?:\p{{Lu}}[\p{{L}}\-]*(?i:{STRASSE})|\p{{Ll}}[\p{{L}}\-]*(?:straße|strasse|str\.?)|(?:{NAME_WORD}[ \t]+){{1,2}}(?i:{STRASSE}|straße|strasse|str)|(?i:{STREET_BEFORE})\.?[ \t]+{PARTICLES}{NAME_WORD}(?:[ \t]+{PARTICLES}{NAME_WORD}){{0,2}}),?[ \t]+{number}"
    );
    Regex::new(&format!(
        r"(?:{number_first})|(?:{number_before_street})|(?:{street_first})"
    ))
    .expect("street regex")
});

/// What may follow a street, city or postcode and still be the same address.
static TAIL_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"^(?:[ \t]*,[ \t]*|[ \t]*\r?\n[ \t]*|[ \t]+)(?:(?P<unit>(?i:flat|apt|apartment|unit|suite|ste|floor)\.?[ \t]*#?[0-9]{{1,4}}[A-Za-z]?)|(?P<post>{UK_POSTCODE}|{US_ZIP}|(?:VIC|NSW|QLD|TAS|ACT|NT|SA|WA)[ \t]+[0-9]{{4}}|(?:[A-Z]{{1,2}}-)?[0-9]{{4,5}}[ \t]+(?:{CITY}|\p{{Ll}}[\p{{L}}'’\-]*)|[0-9]{{5}}(?:-[0-9]{{4}})?)(?-u:\b)|(?P<city>{CITY}))"
    ))
    .expect("address tail regex")
});

/// Postcodes found without a street.
static POSTCODE_RE: LazyLock<Regex> = LazyLock::new(|| {
    let cue = r"(?i:post\s?code|postal\s+code|zip\s+code|zip|plz|postleitzahl|code\s+postal)[ \t]*(?:is|:|-)?[ \t]*";
    Regex::new(&format!(
        r"(?P<cue>{cue})?(?:(?:(?P<city>{CITY}),?[ \t]+)?(?P<code>{UK_POSTCODE}|(?P<us>{US_ZIP}))|(?P<plz>[0-9]{{5}}[ \t]+(?P<plzcity>{CITY})))(?-u:\b)"
    ))
    .expect("postcode regex")
});

/// Capitalised words that end an address rather than name its city: sentence starters and
/// the words a support message goes on with.
fn not_a_place(word: &str) -> bool {
    let w = word.trim_end_matches('.').to_lowercase();
    matches!(
        w.as_str(),
        "i" | "i'm"
            | "i've"
            | "i'd"
            | "i'll"
            | "the"
            | "a"
            | "an"
            | "and"
            | "but"
            | "or"
            | "so"
            | "please"
            | "pls"
            | "can"
            | "could"
            | "would"
            | "will"
            | "is"
            | "it"
            | "it's"
            | "my"
            | "we"
            | "you"
            | "your"
            | "they"
            | "this"
            | "that"
            | "there"
            | "thanks"
            | "thank"
            | "regards"
            | "best"
            | "cheers"
            | "hi"
            | "hello"
            | "dear"
            | "why"
            | "what"
            | "when"
            | "where"
            | "how"
            | "who"
            | "which"
            | "if"
            | "since"
            | "not"
            | "no"
            | "yes"
            | "ok"
            | "also"
            | "then"
            | "now"
            | "just"
            | "still"
            | "sorry"
            | "help"
            | "urgent"
            | "asap"
            | "order"
            | "card"
            | "account"
            | "phone"
            | "tel"
            | "email"
            | "e-mail"
            | "mobile"
            | "ref"
            | "reference"
            | "euro"
            | "euros"
            | "eur"
            | "usd"
            | "gbp"
            | "dollars"
            | "pounds"
            | "items"
            | "item"
            | "days"
            | "minutes"
            | "hours"
            | "points"
            | "units"
            | "mr"
            | "mrs"
            | "ms"
            | "dr"
            | "attn"
            | "c/o"
            | "tracking"
            | "customer"
            | "invoice"
            | "monday"
            | "tuesday"
            | "wednesday"
            | "thursday"
            | "friday"
            | "saturday"
            | "sunday"
    )
}

/// Grows an address ending at `end` over a unit, a city and a postcode that directly follow.
fn extend(text: &str, mut end: usize) -> usize {
    let mut city_taken = false;
    for _ in 0..4 {
        let Some(caps) = TAIL_RE.captures(&text[end..]) else {
            break;
        };
        let whole = caps.get(0).expect("match");
        let body_start = ["unit", "post", "city"]
            .iter()
            .find_map(|g| caps.name(g))
            .map_or(0, |m| m.start());
        let sep = &whole.as_str()[..body_start];
        let sep_is_space = !sep.contains(',') && !sep.contains('\n');
        if caps.name("unit").is_some() {
            end += whole.end();
            continue;
        }
        if caps.name("post").is_some() {
            if glued_right(text, end + whole.end()) {
                break;
            }
            end += whole.end();
            break;
        }
        if let Some(city) = caps.name("city") {
            if city_taken || city.as_str().split_whitespace().any(not_a_place) {
                break;
            }
            // "31 Maple Drive London SW1A 1AA": a city after a bare space counts only when a
            // postcode follows it.
            let city_end = end + whole.end();
            if sep_is_space {
                let next = TAIL_RE.captures(&text[city_end..]);
                if next.is_none_or(|c| c.name("post").is_none()) {
                    break;
                }
            }
            end = trim_dot(text, end, city_end);
            city_taken = true;
            continue;
        }
        break;
    }
    end
}

/// Drops a final full stop: it ends the sentence ("… 5 Maple Dr.") and is not part of the span.
fn trim_dot(text: &str, start: usize, end: usize) -> usize {
    if end > start && text[..end].ends_with('.') {
        end - 1
    } else {
        end
    }
}

/// Finds addresses in `text`.
pub(super) fn detect_addresses(text: &str, sink: &mut Sink) {
    let mut covered_to = 0;
    for m in STREET_RE.find_iter(text) {
        if glued_left(text, m.start()) || glued_right(text, m.end()) {
            continue;
        }
        // The words before the street word must not be sentence words ("order 12 Main
        // items", "2 Factor Way" in a heading are left alone).
        let mut words: Vec<&str> = m.as_str().split_whitespace().collect();
        words.pop();
        if words.into_iter().any(not_a_place) {
            continue;
        }
        let end = extend(text, m.end());
        let end = if end > m.end() {
            end
        } else {
            trim_dot(text, m.start(), end)
        };
        sink.push(PiiKind::Address, m.start(), end);
        covered_to = covered_to.max(end);
    }
    for caps in POSTCODE_RE.captures_iter(text) {
        let whole = caps.get(0).expect("match");
        let cue = caps.name("cue").is_some();
        let span = if let (Some(plz), Some(city)) = (caps.name("plz"), caps.name("plzcity")) {
            // "10115 Berlin": a place after five digits, not "12345 Euro"; after "order" or
            // "ref" the digits are an identifier.
            let city = city.as_str();
            if city.split_whitespace().any(not_a_place)
                || (!cue && is_negative(context_before(text, plz.start()).nearest))
            {
                continue;
            }
            (plz.start(), plz.end())
        } else if let Some(code) = caps.name("code") {
            // A state with its ZIP is its own context; a UK postcode needs its cue or city.
            let us = caps.name("us").is_some();
            match caps.name("city") {
                Some(city) if !city.as_str().split_whitespace().any(not_a_place) => {
                    (city.start(), code.end())
                }
                _ if cue || us => (code.start(), code.end()),
                _ => continue,
            }
        } else {
            continue;
        };
        if span.0 < covered_to || glued_left(text, span.0) || glued_right(text, whole.end()) {
            continue;
        }
        sink.push(PiiKind::Address, span.0, span.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(text: &str) -> Vec<&str> {
        let mut sink = Sink::default();
        detect_addresses(text, &mut sink);
        sink.candidates
            .iter()
            .map(|f| &text[f.start..f.end])
            .collect()
    }

    #[test]
    fn streets_with_city_and_postcode_are_one_span() {
        assert_eq!(
            addresses("the card was sent to 31 Maple Drive, London"),
            ["31 Maple Drive, London"]
        );
        assert_eq!(
            addresses("Flat 3, 31 Maple Drive, London SW1A 1AA."),
            ["Flat 3, 31 Maple Drive, London SW1A 1AA"]
        );
        assert_eq!(
            addresses("ship to 123 Main St., Springfield, IL 62704 please"),
            ["123 Main St., Springfield, IL 62704"]
        );
        assert_eq!(
            addresses("Neue Adresse: Hauptstraße 5, 10115 Berlin"),
            ["Hauptstraße 5, 10115 Berlin"]
        );
        assert_eq!(addresses("au 12 rue de la Paix"), ["12 rue de la Paix"]);
        assert_eq!(addresses("Berliner Str. 12"), ["Berliner Str. 12"]);
    }

    #[test]
    fn postcodes_need_context() {
        assert_eq!(addresses("my postcode is SW1A 1AA"), ["SW1A 1AA"]);
        assert_eq!(addresses("I moved to London EC1A 1BB"), ["London EC1A 1BB"]);
        assert_eq!(
            addresses("Springfield, IL 62704"),
            ["Springfield, IL 62704"]
        );
        assert_eq!(addresses("Postcode 10115 Berlin, order"), ["10115 Berlin"]);
        for text in [
            "I live in London",
            "ZIP 10001",
            "Terminal 5 at 3 Days",
            "order 12 Main items",
            "version 5 Way",
            "it took 3 days",
            "paid 12345 Euro",
            "down the road",
        ] {
            assert!(addresses(text).is_empty(), "{text}: {:?}", addresses(text));
        }
    }
}
