//! Reply drafting: the playbook entry for the intent, filled with what the query and the
//! customer's history say, the most similar resolved tickets as grounding, and the decision to
//! hand the query to a person — when cqr abstained, priority is P1 or escalates, the playbook
//! says so, or information needed to act is missing (then the draft asks for it). A draft
//! states nothing the playbook, the ticket or the history does not give. Works on what the
//! pipeline already decided (`QueryFacts`); reads no data files and prints nothing.

pub mod analytics;
pub mod facts;
pub mod history;
pub mod llm;
pub mod playbook;
pub mod retrieve;

use serde::Serialize;

use history::{CustomerView, History};
use playbook::{Part, Playbook, Slot, SlotValue, Slots};
use retrieve::{Index, Query, Retrieval, Similar};

/// What the pipeline decided about one query, as the drafter needs it.
#[derive(Debug, Clone)]
pub struct QueryFacts<'a> {
    pub id: &'a str,
    /// The text, masked (full style): slots are read from it and nothing unmasked leaks.
    pub text: &'a str,
    pub customer: Option<&'a str>,
    pub at: Option<i64>,
    /// The tier the input gave.
    pub tier: Option<&'a str>,
    /// The intent; `None` when cqr abstained.
    pub intent: Option<&'a str>,
    pub confidence: f32,
    pub priority: Option<PriorityFacts>,
    /// The query's embedding, for embedding retrieval.
    pub embedding: Option<&'a [f32]>,
}

#[derive(Debug, Clone)]
pub struct PriorityFacts {
    pub level: &'static str,
    pub escalate: bool,
    pub reasons: Vec<String>,
}

/// How drafts are made.
#[derive(Debug, Clone)]
pub struct RespondOptions {
    /// Similar tickets to list.
    pub similar: usize,
    /// Least similarity for a ticket to count as similar.
    pub min_similarity: f32,
    /// Repeat-contact window in seconds (priority's).
    pub repeat_window: i64,
}

/// A drafted reply: what `respond` adds to the output record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Draft {
    pub reply: String,
    pub suggested_actions: Vec<String>,
    pub grounding: Grounding,
    pub handoff: Handoff,
}

/// What the draft rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grounding {
    /// The playbook entry used: an intent, or `fallback`.
    pub playbook: String,
    /// The templates rendered, in order.
    pub templates: Vec<String>,
    /// The slots filled and where each came from.
    pub slots: Vec<SlotUse>,
    /// How similar tickets were found (absent without a history to search).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<Retrieval>,
    pub similar: Vec<Similar>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotUse {
    pub slot: Slot,
    pub value: SlotValue,
    pub source: Source,
}

/// Where a slot's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The query's text.
    Text,
    /// A column of the query's record.
    Input,
    /// The customer's history.
    History,
    /// The model's answer.
    Model,
    /// The playbook (the phrases that ask for missing information).
    Playbook,
}

/// Whether a person must take over, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handoff {
    pub required: bool,
    pub reasons: Vec<HandoffReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HandoffReason {
    pub reason: Reason,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// cqr did not understand the query well enough to answer.
    Abstained,
    /// Priority P1.
    Priority,
    /// The priority rules escalate it.
    Escalation,
    /// The playbook says this intent always needs a person.
    Playbook,
    /// The intent has no playbook entry.
    NoPlaybookEntry,
    /// Information needed to act is missing.
    MissingInformation,
}

/// Drafts replies with one playbook, history and retrieval index.
pub struct Responder {
    pub playbook: Playbook,
    pub history: Option<History>,
    pub index: Option<Index>,
    pub opts: RespondOptions,
}

impl Responder {
    /// The customer's tier from the history, for a query whose record has none.
    pub fn tier_of(&self, customer: &str) -> Option<&str> {
        self.history
            .as_ref()?
            .customers
            .get(customer)?
            .tier
            .as_deref()
    }

    /// The draft for one query.
    pub fn draft(&self, q: &QueryFacts<'_>) -> Draft {
        let entry = q.intent.and_then(|i| self.playbook.entry(i));
        let (slots, mut uses) = self.slots(q);
        let missing: Vec<(Slot, String)> = entry
            .map(|e| {
                e.requires
                    .iter()
                    .filter(|(s, _)| !slots.contains_key(s))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let reasons = handoff_reasons(q, entry, &missing);
        let (reply, templates) = self.compose(q, entry.is_some(), &slots, &missing, &mut uses);
        Draft {
            reply,
            suggested_actions: entry.map(|e| e.actions.clone()).unwrap_or_default(),
            grounding: Grounding {
                playbook: match (q.intent, entry) {
                    (Some(i), Some(_)) => i.to_string(),
                    _ => "fallback".to_string(),
                },
                templates,
                slots: uses,
                retrieval: self.index.as_ref().map(|i| i.method),
                similar: self.similar(q),
            },
            handoff: Handoff {
                required: !reasons.is_empty(),
                reasons,
            },
        }
    }

    /// The slots at hand for `q`, and each one filled with its value and source (`intent` and
    /// `intent_name` are always there and not reported).
    fn slots(&self, q: &QueryFacts<'_>) -> (Slots, Vec<SlotUse>) {
        let view = self.view(q);
        let text = |s: &str| SlotValue::Text(s.to_string());
        let mut slots = Slots::new();
        let (intent, name) = match q.intent {
            Some(i) => (i.to_string(), i.replace('_', " ")),
            None => ("unknown".to_string(), "enquiry".to_string()),
        };
        slots.insert(Slot::Intent, SlotValue::Text(intent));
        slots.insert(Slot::IntentName, SlotValue::Text(name));
        let mut uses: Vec<SlotUse> = Vec::new();
        let mut put = |slot, value: SlotValue, source| {
            slots.insert(slot, value.clone());
            uses.push(SlotUse {
                slot,
                value,
                source,
            });
        };
        if let Some(c) = q.customer {
            put(Slot::CustomerId, text(c), Source::Input);
        }
        if let Some(n) = view.as_ref().and_then(|v| v.first_name.as_deref()) {
            put(Slot::FirstName, text(n), Source::History);
        }
        match (q.tier, view.as_ref().and_then(|v| v.tier.as_deref())) {
            (Some(t), _) => put(Slot::Tier, text(t), Source::Input),
            (None, Some(t)) => put(Slot::Tier, text(t), Source::History),
            _ => {}
        }
        for (slot, value) in facts::extract(q.text) {
            put(slot, SlotValue::Text(value), Source::Text);
        }
        if let (Some(v), Some(h)) = (&view, &self.history) {
            if !v.repeats.is_empty() {
                let n = u32::try_from(v.repeats.len()).unwrap_or(u32::MAX);
                put(Slot::RepeatContacts, SlotValue::Count(n), Source::History);
            }
            if !v.open.is_empty() {
                let list = v
                    .open
                    .iter()
                    .map(|&i| {
                        let c = &h.contacts[i];
                        format!("{} opened {}", c.intent.replace('_', " "), c.day())
                    })
                    .collect();
                put(Slot::OpenIssues, SlotValue::List(list), Source::History);
            }
            if let Some(i) = v.last {
                put(
                    Slot::LastContact,
                    text(&h.contacts[i].day()),
                    Source::History,
                );
            }
        }
        (slots, uses)
    }

    /// The reply — greeting; the intent's body (or the safe acknowledgement) with the
    /// repeat-contact, open-issue and missing-information sentences; sign-off — and the
    /// templates rendered. The `missing` slot it fills is added to `uses`.
    fn compose(
        &self,
        q: &QueryFacts<'_>,
        has_entry: bool,
        slots: &Slots,
        missing: &[(Slot, String)],
        uses: &mut Vec<SlotUse>,
    ) -> (String, Vec<String>) {
        let mut templates = Vec::new();
        let mut render = |part: Option<Part>, slots: &Slots| {
            let r = match part {
                Some(p) => self.playbook.common(p, slots),
                None => q.intent.and_then(|i| self.playbook.reply(i, slots)),
            };
            r.map(|r| {
                templates.push(r.template);
                r.text
            })
        };
        let greeting = render(Some(Part::Greeting), slots).unwrap_or_default();
        let body = has_entry
            .then(|| render(None, slots))
            .flatten()
            .or_else(|| render(Some(Part::Fallback), slots))
            .unwrap_or_default();
        let mut paragraph = vec![body];
        if slots.contains_key(&Slot::RepeatContacts) {
            paragraph.extend(render(Some(Part::RepeatContact), slots));
        }
        if slots.contains_key(&Slot::OpenIssues) {
            paragraph.extend(render(Some(Part::OpenIssues), slots));
        }
        if !missing.is_empty() {
            let phrases: Vec<String> = missing.iter().map(|(_, p)| p.clone()).collect();
            let value = SlotValue::Text(join_and(&phrases));
            let mut ask = slots.clone();
            ask.insert(Slot::Missing, value.clone());
            uses.push(SlotUse {
                slot: Slot::Missing,
                value,
                source: Source::Playbook,
            });
            paragraph.extend(render(Some(Part::Ask), &ask));
        }
        let sign_off = render(Some(Part::SignOff), slots).unwrap_or_default();
        let reply = [greeting, paragraph.join(" "), sign_off]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n");
        (reply, templates)
    }

    /// The most similar resolved tickets of `q`'s intent (none when cqr abstained or there is
    /// no history).
    fn similar(&self, q: &QueryFacts<'_>) -> Vec<Similar> {
        let (Some(idx), Some(i)) = (&self.index, q.intent) else {
            return Vec::new();
        };
        let query = match (idx.method, q.embedding) {
            (Retrieval::Embedding, Some(e)) => Query::Embedding(e),
            _ => Query::Text(q.text),
        };
        idx.search(
            i,
            query,
            self.opts.similar,
            self.opts.min_similarity,
            Some(q.id),
        )
    }

    fn view(&self, q: &QueryFacts<'_>) -> Option<CustomerView> {
        let h = self.history.as_ref()?;
        h.view(
            q.customer?,
            q.at,
            q.intent,
            self.opts.repeat_window,
            Some(q.id),
        )
    }

    /// What an LLM rewrite of `draft` may state: the slot values and the customer's first
    /// name.
    pub fn llm_job(&self, q: &QueryFacts<'_>, d: &Draft) -> llm::Job {
        let facts = d
            .grounding
            .slots
            .iter()
            .map(|u| format!("{}: {}", u.slot.name(), u.value.display()))
            .collect();
        let names = d
            .grounding
            .slots
            .iter()
            .filter(|u| u.slot == Slot::FirstName)
            .map(|u| u.value.display())
            .collect();
        llm::Job {
            draft: d.reply.clone(),
            text: q.text.to_string(),
            intent: q.intent.unwrap_or("unknown").to_string(),
            facts,
            allowed_actions: q
                .intent
                .and_then(|i| self.playbook.entry(i))
                .map(|e| e.actions.clone())
                .unwrap_or_default(),
            suggested_actions: d.suggested_actions.clone(),
            names,
        }
    }
}

impl Draft {
    /// A draft with every field filled, for deriving output columns.
    pub fn example() -> Draft {
        Draft {
            reply: String::new(),
            suggested_actions: Vec::new(),
            grounding: Grounding {
                playbook: String::new(),
                templates: Vec::new(),
                slots: Vec::new(),
                retrieval: Some(Retrieval::Tfidf),
                similar: Vec::new(),
            },
            handoff: Handoff {
                required: false,
                reasons: Vec::new(),
            },
        }
    }
}

/// Why a person must take over `q`, if at all: `missing` are the required slots it lacks.
fn handoff_reasons(
    q: &QueryFacts<'_>,
    entry: Option<&playbook::Entry>,
    missing: &[(Slot, String)],
) -> Vec<HandoffReason> {
    let mut reasons = Vec::new();
    let mut why = |reason, detail: String| reasons.push(HandoffReason { reason, detail });
    if q.intent.is_none() {
        why(
            Reason::Abstained,
            format!(
                "cqr could not tell what the query is about (confidence {:.2})",
                q.confidence
            ),
        );
    }
    if let Some(p) = &q.priority {
        if p.level == "P1" {
            why(Reason::Priority, "priority P1".into());
        }
        if p.escalate {
            let detail = if p.reasons.is_empty() {
                "the priority rules escalate it".to_string()
            } else {
                format!("escalated: {}", p.reasons.join("; "))
            };
            why(Reason::Escalation, detail);
        }
    }
    match (q.intent, entry) {
        (Some(i), None) => why(
            Reason::NoPlaybookEntry,
            format!("the playbook has no entry for `{i}`"),
        ),
        (Some(i), Some(e)) if e.handoff => why(
            Reason::Playbook,
            format!("the playbook hands every `{i}` query to a person"),
        ),
        _ => {}
    }
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|(s, _)| s.name()).collect();
        why(
            Reason::MissingInformation,
            format!("needed to act but not given: {}", names.join(", ")),
        );
    }
    reasons
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}
