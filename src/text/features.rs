//! Sparse TF-IDF features: word 1–2-grams and character 2–5-grams taken inside word boundaries
//! (padded with a space on each side, as scikit-learn's `char_wb` does), sublinear term frequency,
//! smoothed IDF, each block L2-normalised. The vocabulary is explicit (kept in the bundle as
//! strings, so a model can be inspected) but looked up by a stable 64-bit hash of each n-gram, so
//! inference never allocates a string per n-gram. This module owns featurisation only; it knows
//! nothing of labels or models.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use super::normalize::normalize_into;
use crate::error::{Error, Result};

/// Settings of the featuriser, stored in the bundle manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Inclusive range of word n-gram lengths.
    pub word_ngrams: [usize; 2],
    /// Inclusive range of character n-gram lengths (inside padded words).
    pub char_ngrams: [usize; 2],
    /// An n-gram must occur in at least this many training texts.
    pub min_df: u32,
    /// Keep at most this many n-grams per block (the most frequent); `None` keeps all.
    pub max_features: Option<usize>,
    /// Use 1 + ln(tf) instead of the raw count.
    pub sublinear_tf: bool,
}

/// A featuriser setting, to name the one that breaks a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureParam {
    WordNgrams,
    CharNgrams,
    MinDf,
}

impl std::fmt::Display for FeatureParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FeatureParam::WordNgrams => "word_ngrams",
            FeatureParam::CharNgrams => "char_ngrams",
            FeatureParam::MinDf => "min_df",
        })
    }
}

impl FeatureSpec {
    /// The first setting that breaks its rule, and the rule. Defaults live in
    /// `settings::defaults`; the rules live here.
    pub fn broken_rule(&self) -> Option<(FeatureParam, &'static str)> {
        let ok = |r: [usize; 2], max: usize| r[0] >= 1 && r[0] <= r[1] && r[1] <= max;
        if !ok(self.word_ngrams, 3) {
            return Some((
                FeatureParam::WordNgrams,
                "must satisfy 1 <= min <= max <= 3 (word n-gram lengths)",
            ));
        }
        if !ok(self.char_ngrams, 8) {
            return Some((
                FeatureParam::CharNgrams,
                "must satisfy 1 <= min <= max <= 8 (character n-gram lengths)",
            ));
        }
        if self.min_df == 0 {
            return Some((FeatureParam::MinDf, "must be at least 1"));
        }
        None
    }

    pub fn validate(&self) -> Result<()> {
        match self.broken_rule() {
            Some((param, why)) => Err(Error::Usage(format!("{param}: {why}"))),
            None => Ok(()),
        }
    }
}

/// The two n-gram blocks, in feature-index order (word features first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vocabulary {
    pub word: Vec<String>,
    pub char: Vec<String>,
}

/// A sparse row: indices strictly increasing, values parallel to them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVec {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

/// A fitted featuriser.
#[derive(Debug, Clone)]
pub struct Vectorizer {
    spec: FeatureSpec,
    n_word: usize,
    index: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    idf: Vec<f32>,
}

/// Reusable buffers for [`Vectorizer::transform_into`].
#[derive(Default)]
pub struct Scratch {
    norm: String,
    hits: Vec<u32>,
    words: Vec<(usize, usize)>,
    offsets: Vec<usize>,
}

impl Vectorizer {
    /// Learns the vocabulary and IDF weights from training texts.
    pub fn fit<S: AsRef<str>>(texts: &[S], spec: &FeatureSpec) -> Result<(Vectorizer, Vocabulary)> {
        spec.validate()?;
        let mut df: [HashMap<u64, (u32, String)>; 2] = [HashMap::new(), HashMap::new()];
        let mut scratch = Scratch::default();
        let mut doc: Vec<(u8, u64)> = Vec::new();
        for text in texts {
            doc.clear();
            let mut new_grams: Vec<(u8, u64, String)> = Vec::new();
            for_each_ngram(text.as_ref(), spec, &mut scratch, |kind, hash, gram| {
                doc.push((kind as u8, hash));
                if !df[kind as usize].contains_key(&hash) {
                    new_grams.push((kind as u8, hash, gram.to_string()));
                }
            });
            for (k, h, g) in new_grams {
                df[k as usize].entry(h).or_insert((0, g));
            }
            doc.sort_unstable();
            doc.dedup();
            for &(k, h) in &doc {
                if let Some(e) = df[k as usize].get_mut(&h) {
                    e.0 += 1;
                }
            }
        }
        let n_docs = texts.len() as f64;
        let mut blocks: Vec<Vec<(String, u32)>> = Vec::new();
        for block in df {
            let mut kept: Vec<(String, u32)> = block
                .into_values()
                .filter(|(d, _)| *d >= spec.min_df)
                .map(|(d, g)| (g, d))
                .collect();
            if let Some(max) = spec.max_features {
                kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                kept.truncate(max);
            }
            kept.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            blocks.push(kept);
        }
        let idf: Vec<f32> = blocks
            .iter()
            .flatten()
            .map(|(_, d)| (((1.0 + n_docs) / (1.0 + *d as f64)).ln() + 1.0) as f32)
            .collect();
        let char_block = blocks.pop().expect("two blocks were built");
        let word_block = blocks.pop().expect("two blocks were built");
        let vocab = Vocabulary {
            word: word_block.into_iter().map(|(g, _)| g).collect(),
            char: char_block.into_iter().map(|(g, _)| g).collect(),
        };
        if vocab.word.is_empty() && vocab.char.is_empty() {
            return Err(Error::Training(format!(
                "no n-gram occurs in at least {} training texts; the training data is too small",
                spec.min_df
            )));
        }
        let v = Vectorizer::from_parts(spec.clone(), &vocab, idf)?;
        Ok((v, vocab))
    }

    /// Rebuilds a fitted featuriser from what a bundle stores.
    pub fn from_parts(spec: FeatureSpec, vocab: &Vocabulary, idf: Vec<f32>) -> Result<Vectorizer> {
        let n = vocab.word.len() + vocab.char.len();
        if idf.len() != n {
            return Err(Error::Training(format!(
                "vocabulary has {n} n-grams but {} IDF weights",
                idf.len()
            )));
        }
        let mut index = HashMap::with_capacity_and_hasher(n, Default::default());
        let grams = vocab
            .word
            .iter()
            .map(|g| hash_gram(Kind::Word, g))
            .chain(vocab.char.iter().map(|g| hash_gram(Kind::Char, g)));
        for (i, h) in grams.enumerate() {
            if index.insert(h, i as u32).is_some() {
                return Err(Error::Training(format!(
                    "duplicate n-gram in the vocabulary at index {i}"
                )));
            }
        }
        Ok(Vectorizer {
            spec,
            n_word: vocab.word.len(),
            index,
            idf,
        })
    }

    pub fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    pub fn n_features(&self) -> usize {
        self.idf.len()
    }

    pub fn idf(&self) -> &[f32] {
        &self.idf
    }

    /// The share of `text`'s words that are not in the word vocabulary (words seen in too few
    /// training texts, or never): 0 for a text without words. Drift checks watch it; it does
    /// not change a prediction.
    pub fn oov_rate(&self, text: &str, scratch: &mut Scratch) -> f32 {
        let words_only = FeatureSpec {
            word_ngrams: [1, 1],
            // An empty range: no character n-grams.
            char_ngrams: [1, 0],
            ..self.spec.clone()
        };
        let (mut seen, mut unknown) = (0u32, 0u32);
        for_each_ngram(text, &words_only, scratch, |_, hash, _| {
            seen += 1;
            let known = self
                .index
                .get(&hash)
                .is_some_and(|&i| (i as usize) < self.n_word);
            unknown += u32::from(!known);
        });
        if seen == 0 {
            0.0
        } else {
            unknown as f32 / seen as f32
        }
    }

    pub fn transform(&self, text: &str) -> SparseVec {
        let mut out = SparseVec::default();
        self.transform_into(text, &mut Scratch::default(), &mut out);
        out
    }

    /// Featurises one text into `out`, reusing `scratch`.
    pub fn transform_into(&self, text: &str, scratch: &mut Scratch, out: &mut SparseVec) {
        out.indices.clear();
        out.values.clear();
        let mut hits = std::mem::take(&mut scratch.hits);
        hits.clear();
        for_each_ngram(text, &self.spec, scratch, |_, hash, _| {
            if let Some(&i) = self.index.get(&hash) {
                hits.push(i);
            }
        });
        hits.sort_unstable();
        let mut k = 0;
        while k < hits.len() {
            let idx = hits[k];
            let mut run = 1;
            while k + run < hits.len() && hits[k + run] == idx {
                run += 1;
            }
            let tf = if self.spec.sublinear_tf {
                1.0 + (run as f32).ln()
            } else {
                run as f32
            };
            out.indices.push(idx);
            out.values.push(tf * self.idf[idx as usize]);
            k += run;
        }
        scratch.hits = hits;
        // Each block gets unit norm, then both are scaled so the whole row has unit norm: the
        // word and character views weigh the same whatever their n-gram counts.
        let split = out.indices.partition_point(|&i| (i as usize) < self.n_word);
        let (w, c) = out.values.split_at_mut(split);
        let blocks = (!w.is_empty()) as u32 + (!c.is_empty()) as u32;
        let scale = if blocks == 2 {
            std::f32::consts::FRAC_1_SQRT_2
        } else {
            1.0
        };
        for block in [w, c] {
            let norm = block.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                block.iter_mut().for_each(|v| *v *= scale / norm);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Word = 0,
    Char = 1,
}

/// An n-gram as slices of the normalised text; materialised as a string only when needed.
enum Gram<'a> {
    One(&'a str),
    /// Consecutive words (byte ranges of `text`), joined by single spaces.
    Words(&'a str, &'a [(usize, usize)]),
}

impl std::fmt::Display for Gram<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gram::One(a) => f.write_str(a),
            Gram::Words(text, words) => {
                for (k, w) in words.iter().enumerate() {
                    if k > 0 {
                        f.write_str(" ")?;
                    }
                    f.write_str(&text[w.0..w.1])?;
                }
                Ok(())
            }
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\''
}

/// Calls `f` for every n-gram of `text` with its kind and stable hash.
fn for_each_ngram(
    text: &str,
    spec: &FeatureSpec,
    scratch: &mut Scratch,
    mut f: impl FnMut(Kind, u64, Gram<'_>),
) {
    normalize_into(text, &mut scratch.norm);
    let norm = scratch.norm.as_str();
    let words = &mut scratch.words;
    words.clear();
    let mut start = None;
    for (i, c) in norm.char_indices() {
        match (is_word_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, norm.len()));
    }
    // Trim apostrophes that open or close a token ('quoted' words).
    for w in words.iter_mut() {
        let t = &norm[w.0..w.1];
        let trimmed = t.trim_matches('\'');
        let lead = t.len() - t.trim_start_matches('\'').len();
        *w = (w.0 + lead, w.0 + lead + trimmed.len());
    }
    words.retain(|w| w.1 > w.0);

    let [wlo, whi] = spec.word_ngrams;
    for n in wlo..=whi {
        for win in words.windows(n) {
            let mut h = Fnv::new(Kind::Word);
            for (k, w) in win.iter().enumerate() {
                if k > 0 {
                    h = h.bytes(b" ");
                }
                h = h.bytes(&norm.as_bytes()[w.0..w.1]);
            }
            f(Kind::Word, h.finish(), Gram::Words(norm, win));
        }
    }

    let [clo, chi] = spec.char_ngrams;
    let mut padded = String::new();
    for &(s, e) in words.iter() {
        padded.clear();
        padded.push(' ');
        padded.push_str(&norm[s..e]);
        padded.push(' ');
        let offsets = &mut scratch.offsets;
        offsets.clear();
        offsets.extend(padded.char_indices().map(|(i, _)| i));
        offsets.push(padded.len());
        let len = offsets.len() - 1;
        for n in clo..=chi {
            if len <= n {
                f(
                    Kind::Char,
                    hash_gram(Kind::Char, &padded),
                    Gram::One(&padded),
                );
                break;
            }
            for i in 0..=(len - n) {
                let g = &padded[offsets[i]..offsets[i + n]];
                f(Kind::Char, hash_gram(Kind::Char, g), Gram::One(g));
            }
        }
    }
}

/// FNV-1a over the n-gram's UTF-8 bytes, seeded by its kind, finished with a SplitMix64 mix so
/// the bits a hash table uses are well spread. Stable across platforms and releases: bundles
/// depend on it.
struct Fnv(u64);

impl Fnv {
    fn new(kind: Kind) -> Self {
        Fnv(0xcbf2_9ce4_8422_2325 ^ (kind as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
    fn bytes(mut self, bytes: &[u8]) -> Self {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }
    fn finish(self) -> u64 {
        crate::util::mix64(self.0)
    }
}

fn hash_gram(kind: Kind, gram: &str) -> u64 {
    Fnv::new(kind).bytes(gram.as_bytes()).finish()
}

/// Keys are already well-mixed hashes: pass them through.
#[derive(Default, Clone, Copy, Debug)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oov_rate_counts_words_outside_the_word_vocabulary() {
        let spec = FeatureSpec {
            word_ngrams: [1, 2],
            char_ngrams: [2, 3],
            min_df: 1,
            max_features: None,
            sublinear_tf: true,
        };
        let (v, _) = Vectorizer::fit(&["my card is lost", "card declined"], &spec).unwrap();
        let mut s = Scratch::default();
        assert_eq!(v.oov_rate("my card", &mut s), 0.0);
        assert_eq!(v.oov_rate("my new card vanished", &mut s), 0.5);
        assert_eq!(v.oov_rate("?!", &mut s), 0.0);
    }
    use crate::settings::defaults;

    fn grams(text: &str, spec: &FeatureSpec) -> Vec<String> {
        let mut out = Vec::new();
        for_each_ngram(text, spec, &mut Scratch::default(), |k, _, g| {
            out.push(format!("{}:{g}", if k == Kind::Word { 'w' } else { 'c' }))
        });
        out
    }

    #[test]
    fn ngrams_follow_char_wb() {
        let spec = FeatureSpec {
            char_ngrams: [2, 3],
            ..defaults::feature_spec()
        };
        let g = grams("Hi, Bob!", &spec);
        assert_eq!(
            g,
            vec![
                "w:hi", "w:bob", "w:hi bob", "c: h", "c:hi", "c:i ", "c: hi", "c:hi ", "c: b",
                "c:bo", "c:ob", "c:b ", "c: bo", "c:bob", "c:ob "
            ]
        );
        // Once the padded word is no longer than n it is emitted once, whole.
        let g = grams("a", &defaults::feature_spec());
        assert_eq!(g, vec!["w:a", "c: a", "c:a ", "c: a "]);
    }

    #[test]
    fn rows_have_unit_norm_and_sorted_indices() {
        let texts = [
            "my card was stolen",
            "card stolen yesterday",
            "refund my order",
            "order refund please",
        ];
        let (v, vocab) = Vectorizer::fit(&texts, &defaults::feature_spec()).unwrap();
        assert!(vocab.word.contains(&"card".to_string()));
        assert!(vocab.word.contains(&"stolen".to_string()));
        // Seen in one text only: below min_df 2.
        assert!(!vocab.word.contains(&"card stolen".to_string()));
        let x = v.transform("Card STOLEN");
        let norm: f32 = x.values.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(x.indices.windows(2).all(|w| w[0] < w[1]));
        assert!(v.transform("zzzz qqqq").indices.is_empty());
    }

    #[test]
    fn rebuilt_vectorizer_matches() {
        let texts = [
            "where is my parcel",
            "parcel not delivered",
            "reset my password",
            "password reset link",
        ];
        let (v, vocab) = Vectorizer::fit(&texts, &defaults::feature_spec()).unwrap();
        let v2 = Vectorizer::from_parts(v.spec().clone(), &vocab, v.idf().to_vec()).unwrap();
        for t in texts {
            assert_eq!(v.transform(t), v2.transform(t));
        }
    }

    #[test]
    fn min_df_too_high_is_a_clear_error() {
        let spec = FeatureSpec {
            min_df: 5,
            ..defaults::feature_spec()
        };
        let err = Vectorizer::fit(&["a b", "c d"], &spec).unwrap_err();
        assert!(err.to_string().contains("too small"), "{err}");
    }
}
