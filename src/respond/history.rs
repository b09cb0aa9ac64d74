//! Customer history (`--history DATA`): past contacts by customer — when, what about, how it
//! stands, how it was answered — with each customer's name and tier. Read once through `io`,
//! masked on the way in (text and replies), sorted by time. Answers what a draft needs about one
//! customer at one moment: repeat contacts on the same intent, other open issues, last contact.

use std::collections::HashMap;

use rayon::prelude::*;
use serde_json::Value;

use crate::analysis::{parse_timestamp, ContextColumns};
use crate::error::{Error, Result};
use crate::io::read::{open, ReadSpec, Record};
use crate::text::pii::{self, MaskStyle};

/// How a past contact stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Pending,
    Escalated,
    Resolved,
    Closed,
}

impl Status {
    /// Statuses as ticketing systems export them (Zendesk's `new`, `solved`, `hold`, ...).
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "open" | "new" | "reopened" => Status::Open,
            "pending" | "hold" | "on-hold" | "on_hold" | "waiting" => Status::Pending,
            "escalated" => Status::Escalated,
            "resolved" | "solved" => Status::Resolved,
            "closed" => Status::Closed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Pending => "pending",
            Status::Escalated => "escalated",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    /// Not yet settled: an open issue.
    pub fn is_open(self) -> bool {
        matches!(self, Status::Open | Status::Pending | Status::Escalated)
    }
}

const STATUS_NAMES: &str = "open, new, reopened, pending, hold, on-hold, waiting, escalated, \
                            resolved, solved, closed";

/// One past contact, masked.
#[derive(Debug, Clone)]
pub struct Contact {
    pub id: String,
    pub customer: String,
    /// Seconds since the epoch.
    pub at: i64,
    pub intent: String,
    pub status: Status,
    pub text: String,
    /// The reply that answered it (empty when none was given).
    pub reply: String,
}

impl Contact {
    /// `2026-09-03`: the day of the contact, as drafts and summaries show it.
    pub fn day(&self) -> String {
        crate::util::day_of(self.at)
    }
}

/// A customer's name and tier as the history gives them (the latest non-empty value).
#[derive(Debug, Clone, Default)]
pub struct Customer {
    pub name: Option<String>,
    pub tier: Option<String>,
    /// Indices into [`History::contacts`], in time order.
    pub contacts: Vec<usize>,
}

impl Customer {
    pub fn first_name(&self) -> Option<&str> {
        self.name
            .as_deref()
            .and_then(|n| n.split_whitespace().next())
    }
}

/// The loaded history.
#[derive(Debug, Default)]
pub struct History {
    pub source: String,
    /// Every contact, in time order.
    pub contacts: Vec<Contact>,
    pub customers: HashMap<String, Customer>,
}

/// What a draft knows of a customer at the moment of a query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerView {
    pub first_name: Option<String>,
    pub tier: Option<String>,
    /// Earlier contacts on the same intent inside the repeat window.
    pub repeats: Vec<usize>,
    /// Other unsettled contacts.
    pub open: Vec<usize>,
    /// The previous contact, any intent.
    pub last: Option<usize>,
}

impl History {
    /// Reads the history at `spec.target` (text column `spec.text_col`, ids from `id` when
    /// present), masking text and replies. Every record needs customer, time, intent and status;
    /// one that lacks one, or has a time or status that does not parse, is an error naming its
    /// row and field.
    pub fn load(mut spec: ReadSpec, cols: &ContextColumns) -> Result<History> {
        let source = spec.target.name();
        spec.keep.clear();
        spec.need_label = false;
        spec.skip_bad_text = true;
        spec.optional = vec![
            cols.customer.clone(),
            cols.time.clone(),
            "intent".into(),
            "status".into(),
            "name".into(),
            cols.tier.clone(),
            "reply".into(),
        ];
        let records: Vec<Record> = open(&spec)?.collect::<Result<_>>()?;
        let mut contacts: Vec<(Contact, Option<String>, Option<String>)> = records
            .into_par_iter()
            .map(|r| contact(r, &source, cols))
            .collect::<Result<_>>()?;
        contacts.sort_by_key(|(c, _, _)| c.at);
        let mut h = History {
            source,
            ..History::default()
        };
        for (i, (c, name, tier)) in contacts.into_iter().enumerate() {
            let cust = h.customers.entry(c.customer.clone()).or_default();
            cust.contacts.push(i);
            if name.is_some() {
                cust.name = name;
            }
            if tier.is_some() {
                cust.tier = tier;
            }
            h.contacts.push(c);
        }
        Ok(h)
    }

    /// What is known of `customer` at time `at` (all of the history when the query has no
    /// time): contacts later than `at` are not known yet. `window` is the repeat-contact window
    /// in seconds.
    pub fn view(
        &self,
        customer: &str,
        at: Option<i64>,
        intent: Option<&str>,
        window: i64,
        exclude_id: Option<&str>,
    ) -> Option<CustomerView> {
        let c = self.customers.get(customer)?;
        let mut v = CustomerView {
            first_name: c.first_name().map(str::to_string),
            tier: c.tier.clone(),
            ..CustomerView::default()
        };
        for &i in &c.contacts {
            let k = &self.contacts[i];
            if at.is_some_and(|t| k.at > t) || exclude_id == Some(k.id.as_str()) {
                continue;
            }
            v.last = Some(i);
            let recent = at.is_none_or(|t| k.at >= t.saturating_sub(window));
            if intent == Some(k.intent.as_str()) && recent {
                v.repeats.push(i);
            } else if k.status.is_open() {
                v.open.push(i);
            }
        }
        Some(v)
    }
}

/// One record as a contact with the customer's name and tier.
fn contact(
    r: Record,
    source: &str,
    cols: &ContextColumns,
) -> Result<(Contact, Option<String>, Option<String>)> {
    let field = |name: &str| -> Option<String> {
        r.keep
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| match v {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Value::Null => None,
                Value::String(_) => None,
                other => Some(other.to_string()),
            })
    };
    let need = |name: &str, what: &str| {
        field(name).ok_or_else(|| {
            Error::input(
                r.location(source).field(name),
                format!("a history record needs {what}"),
            )
        })
    };
    let customer = need(&cols.customer, "the customer id")?;
    let time = need(&cols.time, "the contact's time (RFC 3339)")?;
    let at = parse_timestamp(&time).ok_or_else(|| {
        Error::input(
            r.location(source).field(&cols.time),
            format!("`{time}` is not an RFC 3339 time"),
        )
    })?;
    let intent = need("intent", "the contact's intent")?;
    let status_text = need("status", "the contact's status")?;
    let status = Status::parse(&status_text).ok_or_else(|| {
        Error::input(
            r.location(source).field("status"),
            format!("unknown status `{status_text}` (known: {STATUS_NAMES})"),
        )
    })?;
    let mask = |s: &str| pii::mask_text(s, MaskStyle::Full).0;
    let c = Contact {
        id: r.id.to_string(),
        customer,
        at,
        intent,
        status,
        text: mask(&r.text),
        reply: field("reply").map(|s| mask(&s)).unwrap_or_default(),
    };
    Ok((c, field("name"), field(&cols.tier)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(rows: &[(&str, i64, &str, Status)]) -> History {
        let mut h = History::default();
        for (i, (cust, at, intent, status)) in rows.iter().enumerate() {
            h.customers
                .entry(cust.to_string())
                .or_default()
                .contacts
                .push(i);
            h.contacts.push(Contact {
                id: format!("H{i}"),
                customer: cust.to_string(),
                at: *at,
                intent: intent.to_string(),
                status: *status,
                text: String::new(),
                reply: String::new(),
            });
        }
        h
    }

    #[test]
    fn the_view_sees_only_the_past_and_splits_repeats_from_open_issues() {
        let h = 3600;
        let hist = history(&[
            ("a", 0, "refund_request", Status::Resolved),
            ("a", 100 * h, "billing_question", Status::Open),
            ("a", 150 * h, "refund_request", Status::Open),
            ("a", 300 * h, "refund_request", Status::Open),
        ]);
        let v = hist
            .view("a", Some(160 * h), Some("refund_request"), 72 * h, None)
            .unwrap();
        assert_eq!(
            v.repeats,
            [2],
            "the first is outside the window, the last is later"
        );
        assert_eq!(v.open, [1]);
        assert_eq!(v.last, Some(2));
        let all = hist
            .view("a", None, Some("refund_request"), 72 * h, None)
            .unwrap();
        assert_eq!(all.repeats, [0, 2, 3]);
        assert_eq!(hist.view("b", None, None, 72 * h, None), None);
        let excl = hist
            .view(
                "a",
                Some(160 * h),
                Some("refund_request"),
                72 * h,
                Some("H2"),
            )
            .unwrap();
        assert!(excl.repeats.is_empty());
    }

    #[test]
    fn statuses_from_common_exports_parse() {
        assert_eq!(Status::parse("Solved"), Some(Status::Resolved));
        assert_eq!(Status::parse("on-hold"), Some(Status::Pending));
        assert_eq!(Status::parse("new"), Some(Status::Open));
        assert_eq!(Status::parse("done?"), None);
        assert!(Status::Escalated.is_open() && !Status::Closed.is_open());
    }
}
