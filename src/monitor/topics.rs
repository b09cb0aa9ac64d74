//! Emerging topics: the abstained and novel queries of a batch, clustered, each cluster named by
//! its most distinctive n-grams and shown by the texts nearest its centre. Vectors are the
//! encoder's embeddings when the model has one, else TF-IDF over the candidates' own words.
//! The number of clusters follows a stated rule (see [`CLUSTER_RULE`]). Pure and seeded.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::scan::Kept;
use super::stats::dot_f32 as dot;
use crate::analysis::tokens::tokenize;
use crate::util::Rng;

/// How the number of clusters is chosen, as the report states it.
pub const CLUSTER_RULE: &str = "k from 2 to min(8, n/5) maximising the mean cosine silhouette \
     (spherical k-means, k-means++ seeding); one topic when fewer than 10 queries or no k \
     reaches a silhouette of 0.1";
const MAX_K: usize = 8;
const MIN_SILHOUETTE: f64 = 0.1;
const TOP_NGRAMS: usize = 5;
const EXAMPLES: usize = 3;

static STOPWORDS: LazyLock<crate::text::lists::FnvSet<&'static str>> =
    LazyLock::new(|| crate::text::lists::entries(include_str!("stopwords.txt")).collect());

/// One cluster of abstained or novel queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topic {
    pub size: usize,
    /// How many of them the model abstained on.
    pub abstained: usize,
    /// The n-grams most particular to this cluster (class-based TF-IDF).
    pub ngrams: Vec<String>,
    /// The texts nearest the cluster's centre (masked).
    pub examples: Vec<String>,
}

/// Clusters `kept` into topics, largest first. `seed` fixes k-means' starting points.
pub fn emerging_topics(kept: &[Kept], seed: u64) -> Vec<Topic> {
    if kept.is_empty() {
        return Vec::new();
    }
    let grams: Vec<Vec<String>> = kept.iter().map(|k| ngrams(&k.text)).collect();
    let (x, d) = if kept.iter().all(|k| !k.embedding.is_empty()) {
        let d = kept[0].embedding.len();
        let mut x: Vec<f32> = kept
            .iter()
            .flat_map(|k| k.embedding.iter().copied())
            .collect();
        normalise_rows(&mut x, d);
        (x, d)
    } else {
        tfidf(&grams)
    };
    let n = kept.len();
    let sim = similarities(&x, d, n);
    let assign = choose_clusters(&x, d, n, &sim, seed);
    let k = assign.iter().copied().max().map_or(0, |m| m + 1);
    let mut topics: Vec<(Topic, usize)> = (0..k)
        .filter_map(|c| {
            let members: Vec<usize> = (0..n).filter(|&i| assign[i] == c).collect();
            (!members.is_empty()).then(|| {
                let topic = Topic {
                    size: members.len(),
                    abstained: members.iter().filter(|&&i| kept[i].abstained).count(),
                    ngrams: distinctive(&grams, &assign, c, k),
                    examples: nearest_centre(&members, &sim)
                        .into_iter()
                        .map(|i| kept[i].text.clone())
                        .collect(),
                };
                (topic, members[0])
            })
        })
        .collect();
    topics.sort_by(|a, b| b.0.size.cmp(&a.0.size).then(a.1.cmp(&b.1)));
    topics.into_iter().map(|(t, _)| t).collect()
}

/// Lower-cased word unigrams and bigrams, function words and PII mask tokens left out.
fn ngrams(text: &str) -> Vec<String> {
    let toks = tokenize(text, None);
    let words: Vec<&str> = toks
        .words()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .collect();
    let content = |w: &str| !STOPWORDS.contains(w) && !is_mask_token(w);
    let mut out: Vec<String> = words
        .iter()
        .filter(|w| content(w))
        .map(|w| w.to_string())
        .collect();
    out.extend(
        words
            .windows(2)
            .filter(|p| content(p[0]) && content(p[1]))
            .map(|p| format!("{} {}", p[0], p[1])),
    );
    out
}

/// The words of a masked span ("[EMAIL]" tokenises to "email") say nothing about a topic.
fn is_mask_token(w: &str) -> bool {
    crate::text::pii::PiiKind::ALL
        .iter()
        .any(|k| k.label().eq_ignore_ascii_case(w))
}

/// L2-normalised TF-IDF rows over the n-grams that occur in at least two texts.
fn tfidf(grams: &[Vec<String>]) -> (Vec<f32>, usize) {
    let mut df: HashMap<&str, usize> = HashMap::new();
    for g in grams {
        let mut seen: Vec<&str> = g.iter().map(String::as_str).collect();
        seen.sort_unstable();
        seen.dedup();
        for t in seen {
            *df.entry(t).or_default() += 1;
        }
    }
    let mut vocab: Vec<(&str, usize)> = df.into_iter().filter(|(_, n)| *n >= 2).collect();
    vocab.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    vocab.truncate(2_000);
    let d = vocab.len().max(1);
    let index: HashMap<&str, usize> = vocab
        .iter()
        .enumerate()
        .map(|(i, (t, _))| (*t, i))
        .collect();
    let n = grams.len() as f32;
    let mut x = vec![0f32; grams.len() * d];
    for (row, g) in x.chunks_mut(d).zip(grams) {
        for t in g {
            if let Some(&i) = index.get(t.as_str()) {
                row[i] += 1.0;
            }
        }
        for (i, v) in row.iter_mut().enumerate() {
            if *v > 0.0 {
                let idf = ((1.0 + n) / (1.0 + vocab[i].1 as f32)).ln() + 1.0;
                *v = (1.0 + v.ln()) * idf;
            }
        }
    }
    normalise_rows(&mut x, d);
    (x, d)
}

fn normalise_rows(x: &mut [f32], d: usize) {
    for row in x.chunks_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
}

/// The cosine similarity of every pair of rows, `[n × n]`.
fn similarities(x: &[f32], d: usize, n: usize) -> Vec<f32> {
    let mut s = vec![0f32; n * n];
    for i in 0..n {
        for j in i..n {
            let v = dot(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]);
            s[i * n + j] = v;
            s[j * n + i] = v;
        }
    }
    s
}

/// The cluster of each row under [`CLUSTER_RULE`].
fn choose_clusters(x: &[f32], d: usize, n: usize, sim: &[f32], seed: u64) -> Vec<usize> {
    if n < 10 {
        return vec![0; n];
    }
    let mut best: (f64, Vec<usize>) = (MIN_SILHOUETTE, vec![0; n]);
    for k in 2..=MAX_K.min(n / 5) {
        let assign = kmeans(x, d, n, k, seed.wrapping_add(k as u64));
        let s = silhouette(sim, n, &assign, k);
        if s > best.0 {
            best = (s, assign);
        }
    }
    best.1
}

/// Spherical k-means with k-means++ seeding: at most 50 rounds.
fn kmeans(x: &[f32], d: usize, n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let mut centres: Vec<Vec<f32>> = vec![row(rng.below(n)).to_vec()];
    while centres.len() < k {
        let far: Vec<f64> = (0..n)
            .map(|i| {
                let best = centres
                    .iter()
                    .map(|c| dot(c, row(i)))
                    .fold(f32::MIN, f32::max);
                f64::from((1.0 - best).max(0.0)).powi(2)
            })
            .collect();
        let total: f64 = far.iter().sum();
        let pick = if total <= 0.0 {
            rng.below(n)
        } else {
            let mut r = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
            far.iter()
                .position(|&w| {
                    r -= w;
                    r <= 0.0
                })
                .unwrap_or(n - 1)
        };
        centres.push(row(pick).to_vec());
    }
    let mut assign = vec![usize::MAX; n];
    for _ in 0..50 {
        let next: Vec<usize> = (0..n)
            .map(|i| {
                (0..k)
                    .max_by(|&a, &b| {
                        dot(&centres[a], row(i))
                            .total_cmp(&dot(&centres[b], row(i)))
                            .then(b.cmp(&a))
                    })
                    .expect("k is at least 2")
            })
            .collect();
        if next == assign {
            break;
        }
        assign = next;
        for (c, centre) in centres.iter_mut().enumerate() {
            let mut sum = vec![0f32; d];
            for i in (0..n).filter(|&i| assign[i] == c) {
                sum.iter_mut().zip(row(i)).for_each(|(s, v)| *s += v);
            }
            normalise_rows(&mut sum, d);
            if sum.iter().any(|&v| v != 0.0) {
                *centre = sum;
            }
        }
    }
    assign
}

/// Mean silhouette with cosine distance (1 − similarity); singletons count 0.
fn silhouette(sim: &[f32], n: usize, assign: &[usize], k: usize) -> f64 {
    let sizes: Vec<usize> = (0..k)
        .map(|c| assign.iter().filter(|&&a| a == c).count())
        .collect();
    let mut total = 0.0;
    for i in 0..n {
        let mut dist = vec![0f64; k];
        for j in 0..n {
            if j != i {
                dist[assign[j]] += 1.0 - f64::from(sim[i * n + j]);
            }
        }
        let own = assign[i];
        if sizes[own] <= 1 {
            continue;
        }
        let a = dist[own] / (sizes[own] - 1) as f64;
        let b = (0..k)
            .filter(|&c| c != own && sizes[c] > 0)
            .map(|c| dist[c] / sizes[c] as f64)
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() {
            total += (b - a) / a.max(b).max(1e-12);
        }
    }
    total / n as f64
}

/// Class-based TF-IDF: how much more often an n-gram occurs in cluster `c` than across all the
/// clustered texts. N-grams seen only once in the cluster are left out unless it is tiny.
fn distinctive(grams: &[Vec<String>], assign: &[usize], c: usize, k: usize) -> Vec<String> {
    let mut all: HashMap<&str, f64> = HashMap::new();
    let mut own: HashMap<&str, f64> = HashMap::new();
    let mut own_total = 0.0f64;
    let mut members = 0;
    for (g, &a) in grams.iter().zip(assign) {
        for t in g {
            *all.entry(t).or_default() += 1.0;
            if a == c {
                *own.entry(t).or_default() += 1.0;
                own_total += 1.0;
            }
        }
        members += usize::from(a == c);
    }
    let total: f64 = all.values().sum();
    let per_cluster = total / k.max(1) as f64;
    let min_count = if members >= 5 { 2.0 } else { 1.0 };
    let mut scored: Vec<(&str, f64)> = own
        .iter()
        .filter(|(_, &n)| n >= min_count)
        .map(|(&t, &n)| {
            (
                t,
                n / own_total.max(1.0) * (1.0 + per_cluster / all[t]).ln(),
            )
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    scored
        .into_iter()
        .take(TOP_NGRAMS)
        .map(|(t, _)| t.to_string())
        .collect()
}

/// The members most similar, on average, to the rest of their cluster.
fn nearest_centre(members: &[usize], sim: &[f32]) -> Vec<usize> {
    let n = (sim.len() as f64).sqrt() as usize;
    let mut scored: Vec<(usize, f32)> = members
        .iter()
        .map(|&i| (i, members.iter().map(|&j| sim[i * n + j]).sum::<f32>()))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.into_iter().take(EXAMPLES).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(text: &str) -> Kept {
        Kept {
            id: String::new(),
            text: text.into(),
            novelty: 1.0,
            abstained: true,
            embedding: Vec::new(),
        }
    }

    #[test]
    fn two_planted_themes_become_two_topics_named_by_their_words() {
        let mut rows = Vec::new();
        for i in 0..15 {
            rows.push(kept(&format!("crypto wallet bitcoin transfer failed {i}")));
            rows.push(kept(&format!("weather forecast paris rain tomorrow {i}")));
        }
        let topics = emerging_topics(&rows, 1);
        assert_eq!(topics.len(), 2, "{topics:?}");
        assert_eq!(topics[0].size + topics[1].size, 30);
        let named = |w: &str| {
            topics
                .iter()
                .any(|t| t.ngrams.iter().any(|g| g.contains(w)))
        };
        assert!(named("bitcoin") && named("paris"), "{topics:?}");
        assert!(topics.iter().all(|t| t.examples.len() == 3));
    }

    #[test]
    fn a_handful_is_one_topic_and_none_is_none() {
        assert!(emerging_topics(&[], 1).is_empty());
        let few: Vec<Kept> = ["lost my card", "card gone"].map(kept).into();
        let t = emerging_topics(&few, 1);
        assert_eq!((t.len(), t[0].size, t[0].abstained), (1, 2, 2));
    }
}
