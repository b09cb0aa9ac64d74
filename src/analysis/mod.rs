//! Beyond intent: sentiment (`sentiment`), priority and escalation with reasons (`priority`),
//! and the per-run bookkeeping they need (which output groups are asked for, repeat contacts
//! per customer). PII detection lives in `text::pii`; this module combines the parts for one
//! query but reads and writes nothing itself.

mod contacts;
pub mod priority;
pub mod sentiment;
pub(crate) mod tokens;

pub use contacts::{parse_timestamp, ContactLog};

use crate::error::{Error, Result};

/// Input columns that carry a query's context — the customer tier, the customer id and the
/// contact's time — for priority, repeat contacts and customer histories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextColumns {
    pub tier: String,
    pub customer: String,
    pub time: String,
}

/// The output groups `--fields` can ask for; work for groups not asked for is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub intent: bool,
    pub sentiment: bool,
    pub priority: bool,
    pub pii: bool,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            intent: true,
            sentiment: true,
            priority: true,
            pii: true,
        }
    }
}

pub const FIELD_NAMES: [&str; 4] = ["intent", "sentiment", "priority", "pii"];

impl Fields {
    /// Parses `--fields intent,sentiment,...`; priority needs the intent, so it brings it.
    pub fn parse(list: &[String]) -> Result<Fields> {
        if list.is_empty() {
            return Ok(Fields::default());
        }
        let mut f = Fields {
            intent: false,
            sentiment: false,
            priority: false,
            pii: false,
        };
        for name in list {
            match name.trim() {
                "intent" => f.intent = true,
                "sentiment" => f.sentiment = true,
                "priority" => f.priority = true,
                "pii" => f.pii = true,
                other => {
                    return Err(Error::Usage(format!(
                        "--fields: unknown group `{other}` (groups: {})",
                        FIELD_NAMES.join(", ")
                    )))
                }
            }
        }
        f.intent |= f.priority;
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_and_priority_brings_the_intent() {
        let f = Fields::parse(&["priority".into()]).unwrap();
        assert!(f.priority && f.intent && !f.sentiment && !f.pii);
        assert!(Fields::parse(&["moods".into()]).is_err());
        assert_eq!(Fields::parse(&[]).unwrap(), Fields::default());
    }
}
