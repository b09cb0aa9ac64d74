//! Text normalisation shared by training and inference: Unicode NFKC, lowercase, typographic
//! quotes folded to ASCII, whitespace collapsed. It must stay byte-for-byte stable, because the
//! vocabulary stored in a bundle is keyed by normalised n-grams.

use unicode_normalization::UnicodeNormalization;

/// Normalises `text` into `out` (cleared first), so hot loops can reuse one buffer.
pub fn normalize_into(text: &str, out: &mut String) {
    out.clear();
    let mut pending_space = false;
    for c in text.nfkc() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        match c {
            '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{2032}' | '`' => out.push('\''),
            '\u{201C}' | '\u{201D}' | '\u{201F}' => out.push('"'),
            c if c.is_ascii() => out.push(c.to_ascii_lowercase()),
            c => out.extend(c.to_lowercase()),
        }
    }
    // Lowercasing can leave combining marks out of canonical order (`İ` becomes `i` + U+0307):
    // one more composition pass makes the result stable.
    if !out.is_ascii() {
        let again: String = out.nfkc().collect();
        *out = again;
    }
}

pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    normalize_into(text, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn folds_case_width_quotes_and_space() {
        assert_eq!(normalize("  Hello\tWORLD\n"), "hello world");
        assert_eq!(normalize("ｆｕｌｌ width"), "full width");
        assert_eq!(normalize("don\u{2019}t"), "don't");
        assert_eq!(normalize("Straße ÉTÉ"), "straße été");
        assert_eq!(normalize(""), "");
    }

    proptest! {
        #[test]
        fn idempotent(s in "\\PC{0,40}") {
            let once = normalize(&s);
            prop_assert_eq!(normalize(&once), once);
        }
    }
}
