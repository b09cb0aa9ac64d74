//! Retrieval of similar resolved tickets: exact cosine search among the history's resolved
//! contacts of the same intent, over TF-IDF vectors (word uni- and bigrams, hashed) or over the
//! model's encoder embeddings. Exact search per intent is a few thousand dot products per query
//! even at a million history rows; the index owns its vectors and nothing else.

use std::collections::HashMap;

use serde::Serialize;

use super::history::History;

/// How similarity is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Retrieval {
    /// TF-IDF cosine over word unigrams and bigrams.
    Tfidf,
    /// Cosine of the model's encoder embeddings.
    Embedding,
}

impl Retrieval {
    pub fn as_str(self) -> &'static str {
        match self {
            Retrieval::Tfidf => "tfidf",
            Retrieval::Embedding => "embedding",
        }
    }
}

/// A similar past ticket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Similar {
    pub id: String,
    pub similarity: f64,
}

/// A query to search with: its masked text, or its embedding.
pub enum Query<'a> {
    Text(&'a str),
    Embedding(&'a [f32]),
}

/// The searchable contacts of a history.
pub struct Index {
    pub method: Retrieval,
    /// The contacts of each intent, with their TF-IDF postings.
    by_intent: HashMap<String, Group>,
    ids: Vec<String>,
    idf: HashMap<u32, f32>,
    /// Embedding: row-major unit vectors, `dim` wide, one per searchable contact.
    dense: Vec<f32>,
    dim: usize,
    default_idf: f32,
}

/// One intent's searchable contacts.
#[derive(Default)]
struct Group {
    /// Indices into [`Index::ids`].
    rows: Vec<usize>,
    /// TF-IDF: per term, the contacts (positions in `rows`) that hold it and its weight in
    /// their unit vectors. A query touches only its own terms' lists.
    postings: HashMap<u32, Vec<(u32, f32)>>,
}

/// The contacts that can ground a draft: resolved or closed, with a reply when the history
/// has replies at all.
pub fn searchable(h: &History) -> Vec<usize> {
    let has_replies = h.contacts.iter().any(|c| !c.reply.is_empty());
    h.contacts
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.status.is_open() && (!has_replies || !c.reply.is_empty()))
        .map(|(i, _)| i)
        .collect()
}

impl Index {
    /// A TF-IDF index over the contacts `rows` of `h`.
    pub fn tfidf(h: &History, rows: &[usize]) -> Index {
        let docs: Vec<Vec<(u32, f32)>> =
            rows.iter().map(|&i| counts(&h.contacts[i].text)).collect();
        let mut df: HashMap<u32, u32> = HashMap::new();
        for d in &docs {
            for &(t, _) in d {
                *df.entry(t).or_default() += 1;
            }
        }
        let n = docs.len() as f32;
        let idf: HashMap<u32, f32> = df
            .into_iter()
            .map(|(t, d)| (t, ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0))
            .collect();
        let default_idf = (1.0 + n).ln() + 1.0;
        let mut index = Index::empty(Retrieval::Tfidf, h, rows);
        for group in index.by_intent.values_mut() {
            for (local, &k) in group.rows.iter().enumerate() {
                for (t, w) in weigh(docs[k].clone(), &idf, default_idf) {
                    group.postings.entry(t).or_default().push((local as u32, w));
                }
            }
        }
        index.idf = idf;
        index.default_idf = default_idf;
        index
    }

    /// An embedding index over the contacts `rows` of `h`, with their embeddings (row-major,
    /// unit length, `dim` wide, in the order of `rows`).
    pub fn embedding(h: &History, rows: &[usize], embeddings: Vec<f32>, dim: usize) -> Index {
        let mut index = Index::empty(Retrieval::Embedding, h, rows);
        index.dense = embeddings;
        index.dim = dim;
        index
    }

    fn empty(method: Retrieval, h: &History, rows: &[usize]) -> Index {
        let mut by_intent: HashMap<String, Group> = HashMap::new();
        for (k, &i) in rows.iter().enumerate() {
            by_intent
                .entry(h.contacts[i].intent.clone())
                .or_default()
                .rows
                .push(k);
        }
        Index {
            method,
            by_intent,
            ids: rows.iter().map(|&i| h.contacts[i].id.clone()).collect(),
            idf: HashMap::new(),
            dense: Vec::new(),
            dim: 0,
            default_idf: 1.0,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The `k` most similar contacts of `intent` at or above `min` similarity, best first;
    /// `exclude` (the query's own id) is never returned.
    pub fn search(
        &self,
        intent: &str,
        q: Query<'_>,
        k: usize,
        min: f32,
        exclude: Option<&str>,
    ) -> Vec<Similar> {
        let Some(group) = self.by_intent.get(intent) else {
            return Vec::new();
        };
        let sims: Vec<(usize, f32)> = match q {
            Query::Text(t) => {
                let mut scores = vec![0f32; group.rows.len()];
                for (term, qw) in weigh(counts(t), &self.idf, self.default_idf) {
                    for &(local, w) in group.postings.get(&term).into_iter().flatten() {
                        scores[local as usize] += qw * w;
                    }
                }
                group.rows.iter().copied().zip(scores).collect()
            }
            Query::Embedding(e) => group
                .rows
                .iter()
                .map(|&r| {
                    let d = &self.dense[r * self.dim..(r + 1) * self.dim];
                    (r, d.iter().zip(e).map(|(a, b)| a * b).sum())
                })
                .collect(),
        };
        let mut best: Vec<(usize, f32)> = sims
            .into_iter()
            .filter(|&(r, s)| s >= min && exclude != Some(self.ids[r].as_str()))
            .collect();
        best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        best.truncate(k);
        best.into_iter()
            .map(|(r, s)| Similar {
                id: self.ids[r].clone(),
                similarity: (s as f64 * 1e6).round() / 1e6 + 0.0,
            })
            .collect()
    }
}

/// The texts of the contacts `rows`, for embedding.
pub fn texts<'h>(h: &'h History, rows: &[usize]) -> Vec<&'h str> {
    rows.iter().map(|&i| h.contacts[i].text.as_str()).collect()
}

/// Term counts of lower-cased word unigrams and bigrams, hashed (FNV-1a) and sorted.
fn counts(text: &str) -> Vec<(u32, f32)> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut terms: Vec<u32> = words.iter().map(|w| fnv(&[w])).collect();
    terms.extend(words.windows(2).map(fnv));
    terms.sort_unstable();
    let mut out: Vec<(u32, f32)> = Vec::with_capacity(terms.len());
    for t in terms {
        match out.last_mut() {
            Some((last, n)) if *last == t => *n += 1.0,
            _ => out.push((t, 1.0)),
        }
    }
    out
}

fn fnv(words: &[&str]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            h = (h ^ 0x20).wrapping_mul(0x0100_0193);
        }
        for b in w.bytes() {
            h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// Sublinear term frequency times IDF, scaled to unit length.
fn weigh(counts: Vec<(u32, f32)>, idf: &HashMap<u32, f32>, default_idf: f32) -> Vec<(u32, f32)> {
    let mut v: Vec<(u32, f32)> = counts
        .into_iter()
        .map(|(t, n)| {
            (
                t,
                (1.0 + n.ln()) * idf.get(&t).copied().unwrap_or(default_idf),
            )
        })
        .collect();
    let norm = v.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|(_, w)| *w /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::super::history::{Contact, Status};
    use super::*;

    fn history(rows: &[(&str, &str, Status, &str)]) -> History {
        let mut h = History::default();
        for (i, (intent, text, status, reply)) in rows.iter().enumerate() {
            h.contacts.push(Contact {
                id: format!("H{i}"),
                customer: "c".into(),
                at: i as i64,
                intent: intent.to_string(),
                status: *status,
                text: text.to_string(),
                reply: reply.to_string(),
            });
        }
        h
    }

    #[test]
    fn tfidf_finds_the_planted_ticket_of_the_same_intent_only() {
        let h = history(&[
            (
                "refund",
                "where is my refund for the blue kettle",
                Status::Resolved,
                "ok",
            ),
            (
                "refund",
                "refund for my shoes please",
                Status::Resolved,
                "ok",
            ),
            (
                "refund",
                "the blue kettle refund never arrived",
                Status::Open,
                "",
            ),
            (
                "delivery",
                "the blue kettle refund never arrived",
                Status::Resolved,
                "ok",
            ),
            (
                "refund",
                "i want money back for a lamp",
                Status::Resolved,
                "",
            ),
        ]);
        let rows = searchable(&h);
        assert_eq!(
            rows,
            [0, 1, 3],
            "open ones and ones without a reply are left out"
        );
        let idx = Index::tfidf(&h, &rows);
        let hits = idx.search(
            "refund",
            Query::Text("my refund for the blue kettle never arrived"),
            2,
            0.0,
            None,
        );
        assert_eq!(hits[0].id, "H0");
        assert!(hits[0].similarity > hits[1].similarity);
        let excluded = idx.search("refund", Query::Text("blue kettle"), 5, 0.0, Some("H0"));
        assert!(excluded.iter().all(|s| s.id != "H0"));
        assert!(idx
            .search("refund", Query::Text("zzz qqq"), 3, 0.1, None)
            .is_empty());
        assert!(idx
            .search("nothing", Query::Text("refund"), 3, 0.0, None)
            .is_empty());
    }

    #[test]
    fn embeddings_are_compared_by_cosine() {
        let h = history(&[
            ("a", "x", Status::Resolved, "r"),
            ("a", "y", Status::Resolved, "r"),
        ]);
        let rows = searchable(&h);
        let idx = Index::embedding(&h, &rows, vec![1.0, 0.0, 0.6, 0.8], 2);
        let hits = idx.search("a", Query::Embedding(&[0.0, 1.0]), 2, 0.0, None);
        assert_eq!(hits[0].id, "H1");
        assert_eq!(hits[0].similarity, 0.8);
    }
}
