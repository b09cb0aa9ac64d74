//! Customer analytics over a history: per customer the contacts, intent mix, sentiment trend,
//! escalations, open issues, repeat contacts and last contact; and the customers who had to
//! come back most often. One function serves `cqr customers` and the HTTP server.

use rayon::prelude::*;
use serde::Serialize;

use super::history::{Customer, History};
use crate::analysis::sentiment::SentimentModel;

/// One customer's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerSummary {
    pub customer_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    pub contacts: usize,
    pub first_contact: String,
    pub last_contact: String,
    /// Intents by how often they came up, most first.
    pub intents: Vec<IntentCount>,
    pub sentiment: SentimentTrend,
    /// Contacts with status `escalated`.
    pub escalations: usize,
    /// Contacts not yet settled (open, pending, escalated), oldest first.
    pub open_issues: Vec<OpenIssue>,
    /// Contacts that came within the repeat window of an earlier one on the same intent.
    pub repeat_contacts: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntentCount {
    pub intent: String,
    pub count: usize,
}

/// Sentiment of the contacts' text (in [-1, 1]): overall, and the later half against the
/// earlier half.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentimentTrend {
    pub mean: f64,
    /// Mean of the later half minus mean of the earlier half (absent with one contact).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<f64>,
    /// improving, worsening, steady, or single (one contact).
    pub trend: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenIssue {
    pub id: String,
    pub intent: String,
    pub status: &'static str,
    pub opened: String,
}

/// A change in mean sentiment smaller than this is `steady`.
const STEADY: f64 = 0.1;

/// The summary of `customer`, or `None` when the history has no contact of theirs.
pub fn summarize(h: &History, customer: &str, window: i64) -> Option<CustomerSummary> {
    let c = h.customers.get(customer)?;
    Some(summary(h, customer, c, window, &SentimentModel::new()))
}

/// Every customer's summary, those with the most repeat contacts first (then most contacts,
/// then id).
pub fn summarize_all(h: &History, window: i64) -> Vec<CustomerSummary> {
    let model = SentimentModel::new();
    let mut all: Vec<CustomerSummary> = h
        .customers
        .par_iter()
        .map(|(id, c)| summary(h, id, c, window, &model))
        .collect();
    all.sort_by(|a, b| {
        b.repeat_contacts
            .cmp(&a.repeat_contacts)
            .then(b.contacts.cmp(&a.contacts))
            .then(a.customer_id.cmp(&b.customer_id))
    });
    all
}

fn summary(
    h: &History,
    id: &str,
    c: &Customer,
    window: i64,
    model: &SentimentModel,
) -> CustomerSummary {
    let contacts: Vec<_> = c.contacts.iter().map(|&i| &h.contacts[i]).collect();
    let mut intents: Vec<IntentCount> = Vec::new();
    for k in &contacts {
        match intents.iter_mut().find(|x| x.intent == k.intent) {
            Some(x) => x.count += 1,
            None => intents.push(IntentCount {
                intent: k.intent.clone(),
                count: 1,
            }),
        }
    }
    intents.sort_by(|a, b| b.count.cmp(&a.count).then(a.intent.cmp(&b.intent)));
    let scores: Vec<f64> = contacts
        .iter()
        .map(|k| model.score(&k.text).score as f64)
        .collect();
    let repeat_contacts = contacts
        .iter()
        .enumerate()
        .filter(|(j, k)| {
            contacts[..*j]
                .iter()
                .any(|e| e.intent == k.intent && e.at >= k.at.saturating_sub(window))
        })
        .count();
    CustomerSummary {
        customer_id: id.to_string(),
        name: c.name.clone(),
        tier: c.tier.clone(),
        contacts: contacts.len(),
        first_contact: contacts.first().map(|k| k.day()).unwrap_or_default(),
        last_contact: contacts.last().map(|k| k.day()).unwrap_or_default(),
        intents,
        sentiment: trend(&scores),
        escalations: contacts
            .iter()
            .filter(|k| k.status == super::history::Status::Escalated)
            .count(),
        open_issues: contacts
            .iter()
            .filter(|k| k.status.is_open())
            .map(|k| OpenIssue {
                id: k.id.clone(),
                intent: k.intent.clone(),
                status: k.status.as_str(),
                opened: k.day(),
            })
            .collect(),
        repeat_contacts,
    }
}

fn trend(scores: &[f64]) -> SentimentTrend {
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    let round = |x: f64| (x * 1e3).round() / 1e3 + 0.0;
    if scores.len() < 2 {
        return SentimentTrend {
            mean: round(mean(scores)),
            change: None,
            trend: "single",
        };
    }
    let half = scores.len() / 2;
    let change = mean(&scores[scores.len() - half..]) - mean(&scores[..half]);
    SentimentTrend {
        mean: round(mean(scores)),
        change: Some(round(change)),
        trend: if change > STEADY {
            "improving"
        } else if change < -STEADY {
            "worsening"
        } else {
            "steady"
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::history::{Contact, Status};
    use super::*;

    #[test]
    fn a_customer_is_summarised_from_their_contacts() {
        let mut h = History::default();
        let rows = [
            (
                0,
                "refund_request",
                Status::Resolved,
                "Thanks, that was great",
            ),
            (
                3600,
                "refund_request",
                Status::Open,
                "Still no refund, this is terrible",
            ),
            (
                900_000,
                "billing_question",
                Status::Escalated,
                "Awful, useless service",
            ),
        ];
        for (i, (at, intent, status, text)) in rows.into_iter().enumerate() {
            h.customers.entry("c1".into()).or_default().contacts.push(i);
            h.contacts.push(Contact {
                id: format!("H{i}"),
                customer: "c1".into(),
                at,
                intent: intent.into(),
                status,
                text: text.into(),
                reply: String::new(),
            });
        }
        let s = summarize(&h, "c1", 72 * 3600).unwrap();
        assert_eq!(s.contacts, 3);
        assert_eq!(s.intents[0].intent, "refund_request");
        assert_eq!(s.intents[0].count, 2);
        assert_eq!(s.repeat_contacts, 1);
        assert_eq!(s.escalations, 1);
        assert_eq!(s.open_issues.len(), 2);
        assert_eq!(s.sentiment.trend, "worsening");
        assert_eq!(s.first_contact, "1970-01-01");
        assert!(summarize(&h, "nobody", 1).is_none());
        assert_eq!(summarize_all(&h, 1).len(), 1);
    }
}
