//! The references a query mentions — order, card ending, amount, date, invoice, transfer — read
//! from its masked text for the playbook's slots, and the checks an LLM's rewrite must pass
//! against the facts a draft was given: no number, date, e-mail or URL that the facts lack.
//! Pure text functions; PII detection itself is `text::pii`'s.

use std::sync::LazyLock;

use regex::Regex;

use super::playbook::Slot;

static ORDER_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\border(?:\s+(?:number|no\.?|id|num|ref(?:erence)?))?\s*:?\s*(#?[A-Z]{0,3}-?\d{4,12})\b",
    )
    .expect("valid regex")
});
static HASH_REF_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[\s(])(#[A-Za-z]{0,3}\d{4,12})\b").expect("valid regex"));
static CARD_LAST4_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:ending|ends|last\s+(?:4|four)(?:\s+digits)?)\s*(?:in|with|of|is|are|:)?\s*(\d{4})\b",
    )
    .expect("valid regex")
});
static AMOUNT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:[$€£]\s?\d{1,3}(?:,\d{3})*(?:\.\d{1,2})?|[$€£]\s?\d+(?:\.\d{1,2})?|\b\d{1,3}(?:,\d{3})*(?:\.\d{1,2})?\s?(?:USD|EUR|GBP)\b|\b\d+(?:\.\d{1,2})?\s?(?:USD|EUR|GBP)\b)",
    )
    .expect("valid regex")
});
const MONTHS: &str = "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?";
static DATE_RE: LazyLock<Regex> = LazyLock::new(|| {
    let day = r"\d{1,2}(?:st|nd|rd|th)?";
    let weekday = "monday|tuesday|wednesday|thursday|friday|saturday|sunday";
    Regex::new(&format!(
        r"(?i)\b(?:\d{{4}}-\d{{2}}-\d{{2}}|(?:{MONTHS})\.?\s+{day}\b|{day}\s+(?:of\s+)?(?:{MONTHS})\b|\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?\b|the\s+\d{{1,2}}(?:st|nd|rd|th)\b|(?:last|next|this)\s+(?:{weekday})\b|(?:{weekday})\s+\d{{1,2}}\s+(?:{MONTHS})\b)"
    ))
    .expect("valid regex")
});
static INVOICE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bINV-?\d{4,12}\b").expect("valid regex"));
static TRANSFER_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:transfer|payment|transaction)\s+(?:reference|ref\.?|id|number|no\.?)\s*[:#]?\s*([A-Z0-9-]*\d[A-Z0-9-]{3,})\b|\b(TR[FX]-?\d{4,})\b",
    )
    .expect("valid regex")
});

/// The references found in `text` (already masked), in slot order; each the first match.
pub fn extract(text: &str) -> Vec<(Slot, String)> {
    let mut out = Vec::new();
    let order = ORDER_RE
        .captures(text)
        .and_then(|c| c.get(1))
        .or_else(|| HASH_REF_RE.captures(text).and_then(|c| c.get(1)))
        .map(|m| m.as_str().to_string())
        // An invoice number is not an order number.
        .filter(|o| !o.to_ascii_uppercase().starts_with("INV"));
    if let Some(o) = order {
        out.push((Slot::Order, o));
    }
    if let Some(c) = CARD_LAST4_RE.captures(text).and_then(|c| c.get(1)) {
        out.push((Slot::CardLast4, c.as_str().to_string()));
    }
    if let Some(m) = AMOUNT_RE.find(text) {
        out.push((Slot::Amount, m.as_str().trim().to_string()));
    }
    if let Some(m) = DATE_RE.find(text) {
        out.push((Slot::Date, m.as_str().to_string()));
    }
    if let Some(m) = INVOICE_RE.find(text) {
        out.push((Slot::Invoice, m.as_str().to_string()));
    }
    if let Some(c) = TRANSFER_RE.captures(text) {
        if let Some(m) = c.get(1).or_else(|| c.get(2)) {
            out.push((Slot::Transfer, m.as_str().to_string()));
        }
    }
    out
}

static NUMBER_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d+(?:[.,]\d+)*").expect("valid regex"));
static EMAIL_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+").expect("valid regex"));
static URL_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:https?://|www\.)[^\s<>]+|\b[a-z0-9-]+\.(?:com|org|net|io|co|uk|de|fr)\b(?:/[^\s<>]*)?")
        .expect("valid regex")
});
static MONTH_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?i)\b(?:{MONTHS})\b")).expect("valid regex"));

/// A number as compared: without thousands separators and trailing decimal zeros, so
/// `1,200.00`, `1200.00` and `1200` are one number and `104.50` is `104.5`.
fn number_key(s: &str) -> String {
    let plain: String = s.chars().filter(|&c| c != ',').collect();
    match plain.split_once('.') {
        Some((whole, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                whole.to_string()
            } else {
                format!("{whole}.{frac}")
            }
        }
        None => plain,
    }
}

/// The first statement in `answer` that `facts` do not contain: a number (amounts, dates, ids
/// and times all hold digits), a month, an e-mail address or a URL. Numbers are compared whole
/// (see [`number_key`]), so `5` is not supported by `12345`.
pub fn unsupported(answer: &str, facts: &str) -> Option<String> {
    let fact_numbers: Vec<String> = NUMBER_RE
        .find_iter(facts)
        .map(|m| number_key(m.as_str()))
        .collect();
    let lower = facts.to_lowercase();
    for m in NUMBER_RE.find_iter(answer) {
        if !fact_numbers.contains(&number_key(m.as_str())) {
            return Some(format!("the number `{}` is not in the facts", m.as_str()));
        }
    }
    for m in EMAIL_RE.find_iter(answer) {
        if !lower.contains(&m.as_str().to_lowercase()) {
            return Some(format!(
                "the e-mail address `{}` is not in the facts",
                m.as_str()
            ));
        }
    }
    for m in URL_RE.find_iter(answer) {
        if !lower.contains(&m.as_str().to_lowercase()) {
            return Some(format!("the address `{}` is not in the facts", m.as_str()));
        }
    }
    for m in MONTH_RE.find_iter(answer) {
        if !lower.contains(&m.as_str().to_lowercase()) {
            return Some(format!("the date `{}` is not in the facts", m.as_str()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(text: &str, slot: Slot) -> Option<String> {
        extract(text)
            .into_iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, v)| v)
    }

    #[test]
    fn references_are_read_as_written() {
        let t = "Order #A12345 was charged twice, $104.00 each time on March 3rd.";
        assert_eq!(get(t, Slot::Order).as_deref(), Some("#A12345"));
        assert_eq!(get(t, Slot::Amount).as_deref(), Some("$104.00"));
        assert_eq!(get(t, Slot::Date).as_deref(), Some("March 3rd"));
        assert_eq!(
            get("Orer #98909 is stuck", Slot::Order).as_deref(),
            Some("#98909")
        );
        assert_eq!(
            get("refund status for order K12345?", Slot::Order).as_deref(),
            Some("K12345")
        );
        assert_eq!(
            get(
                "Please cancel my card ending 4242, it's lost",
                Slot::CardLast4
            )
            .as_deref(),
            Some("4242")
        );
        assert_eq!(
            get("Invoice INV-2026123 total is 1,200.00 USD", Slot::Invoice).as_deref(),
            Some("INV-2026123")
        );
        assert_eq!(
            get("Invoice INV-2026123 total is 1,200.00 USD", Slot::Amount).as_deref(),
            Some("1,200.00 USD")
        );
        assert_eq!(get("Invoice INV-2026123", Slot::Order), None);
        assert_eq!(
            get("transfer reference TX99812 never arrived", Slot::Transfer).as_deref(),
            Some("TX99812")
        );
        assert_eq!(get("my card [CARD] was stolen", Slot::CardLast4), None);
        assert!(extract("I can't log in").is_empty());
    }

    #[test]
    fn only_numbers_dates_and_addresses_in_the_facts_pass() {
        let facts = "order #A12345, amount $1,200.00, date March 3rd";
        assert_eq!(
            unsupported("Your refund of $1,200.00 for #A12345.", facts),
            None
        );
        assert_eq!(
            unsupported("Your refund of $1200.00 is on its way.", facts),
            None
        );
        assert!(unsupported("It will arrive within 5 days.", facts)
            .unwrap()
            .contains("`5`"));
        assert!(unsupported("We refunded $1,300.00.", facts).is_some());
        assert!(unsupported("Write to help@shop.example.com", facts)
            .unwrap()
            .contains("e-mail"));
        assert!(unsupported("See https://shop.example/refunds", facts).is_some());
        assert!(unsupported("It ships in April.", facts)
            .unwrap()
            .contains("April"));
        assert_eq!(unsupported("We received it in March.", facts), None);
    }
}
