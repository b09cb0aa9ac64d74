//! The optional LLM rewrite (`--llm-url`): any OpenAI-compatible `/v1/chat/completions`
//! endpoint gets the grounded draft, the masked query, the intent and the facts, and the rule not
//! to invent anything. Every answer is checked — not empty, not too long, no PII, no number,
//! date, e-mail or URL the facts lack, no action outside the playbook's — and on any failure
//! (timeout, HTTP error, malformed reply, a failed check) the grounded draft stands and the
//! reason is reported. Requests go through the one HTTP client, a bounded number at a time,
//! retried only on 429 and 5xx. The API key is sent in a header and never logged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::facts;
use crate::error::Error;
use crate::text::pii;
use crate::tracking::http::{Auth, HttpClient, HttpSettings};

/// How to reach the endpoint and how much to trust it.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    pub url: String,
    pub model: String,
    pub timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Longest answer accepted, in characters.
    pub max_chars: usize,
    /// Retries on 429 and 5xx.
    pub retries: u32,
}

/// What the LLM did with one draft.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlmOutcome {
    /// The reply is the LLM's rewrite.
    pub used: bool,
    pub model: String,
    /// Why the grounded draft was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_reason: Option<String>,
}

/// One draft to rewrite and what the rewrite may say.
#[derive(Debug, Clone)]
pub struct Job {
    pub draft: String,
    /// The query, masked.
    pub text: String,
    pub intent: String,
    /// Facts the rewrite may state: slot values, history, the draft and the query.
    pub facts: Vec<String>,
    /// The actions the playbook allows for this intent.
    pub allowed_actions: Vec<String>,
    pub suggested_actions: Vec<String>,
    /// Names the rewrite may use (the customer's first name).
    pub names: Vec<String>,
}

/// A job's result: the rewrite when it passed, and what happened.
pub type Outcome = (Option<Rewrite>, LlmOutcome);

/// An accepted rewrite.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewrite {
    pub reply: String,
    pub suggested_actions: Vec<String>,
}

pub struct LlmClient {
    http: HttpClient,
    path: String,
    settings: LlmSettings,
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: [Message<'a>; 2],
    temperature: f32,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

/// The JSON object the model is asked to answer with.
#[derive(Deserialize)]
struct Answer {
    reply: String,
    #[serde(default)]
    suggested_actions: Vec<String>,
}

const SYSTEM: &str = "You rewrite draft replies for a customer-support team. Rewrite the \
draft so it reads naturally and warmly, keeping its meaning. Rules: use only the facts given; \
never invent or change policies, amounts, prices, dates, time frames, order or reference \
numbers, phone numbers, e-mail addresses or links; do not add any number that is not in the \
facts; keep placeholders such as [EMAIL] or [CARD] as they are and never guess what they hide; \
do not promise anything the draft does not promise; suggest only actions from the allowed list. \
Answer with one JSON object and nothing else: {\"reply\": \"...\", \"suggested_actions\": [\"...\"]}.";

impl LlmClient {
    /// `url` is the server (`http://127.0.0.1:8080`), its `/v1` or the full
    /// `/v1/chat/completions`; the key comes from `CQR_LLM_API_KEY`.
    pub fn new(settings: LlmSettings, api_key: Option<String>) -> LlmClient {
        let url = settings.url.trim_end_matches('/');
        let (base, path) = if let Some(b) = url.strip_suffix("/chat/completions") {
            (b.to_string(), "/chat/completions")
        } else if url.ends_with("/v1") {
            (url.to_string(), "/chat/completions")
        } else {
            (url.to_string(), "/v1/chat/completions")
        };
        let auth = api_key
            .filter(|k| !k.is_empty())
            .map_or(Auth::None, Auth::Bearer);
        let http = HttpClient::new(
            &base,
            auth,
            HttpSettings {
                timeout: settings.timeout,
                retries: settings.retries,
                insecure_tls: false,
                retry_transport: false,
            },
        );
        LlmClient {
            http,
            path: path.to_string(),
            settings,
        }
    }

    pub fn model(&self) -> &str {
        &self.settings.model
    }

    /// Rewrites each job, at most `concurrency` at a time; results in job order.
    pub fn rewrite_all(&self, jobs: &[Job]) -> Vec<Outcome> {
        let next = AtomicUsize::new(0);
        let workers = self.settings.concurrency.clamp(1, jobs.len().max(1));
        let mut done: Vec<(usize, Outcome)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(job) = jobs.get(i) else { break };
                            mine.push((i, self.rewrite(job)));
                        }
                        mine
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("an LLM worker does not panic"))
                .collect()
        });
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, o)| o).collect()
    }

    /// One rewrite, checked; the reason when it is not used.
    pub fn rewrite(&self, job: &Job) -> Outcome {
        let outcome = |reason: Option<String>| LlmOutcome {
            used: reason.is_none(),
            model: self.settings.model.clone(),
            rejected_reason: reason,
        };
        match self
            .ask(job)
            .and_then(|a| check(job, a, self.settings.max_chars))
        {
            Ok(r) => (Some(r), outcome(None)),
            Err(why) => {
                tracing::debug!(reason = %why, "LLM rewrite not used");
                (None, outcome(Some(why)))
            }
        }
    }

    fn ask(&self, job: &Job) -> Result<Answer, String> {
        let user = prompt(job);
        let req = ChatRequest {
            model: &self.settings.model,
            messages: [
                Message {
                    role: "system",
                    content: SYSTEM,
                },
                Message {
                    role: "user",
                    content: &user,
                },
            ],
            temperature: 0.2,
        };
        let body = serde_json::to_vec(&req).expect("requests always serialise");
        let reply = self
            .http
            .send("POST", &self.path, Some((&body, "application/json")))
            .map_err(|e| match e {
                Error::Unreachable { message, .. } if is_timeout(&message) => {
                    format!("timeout: no answer within {:?}", self.settings.timeout)
                }
                Error::Unreachable { message, .. } => format!("unreachable: {message}"),
                Error::Server { status, .. } => {
                    format!("http error: the endpoint answered {status}")
                }
                other => other.to_string(),
            })?;
        let chat: ChatResponse = serde_json::from_slice(&reply.body)
            .map_err(|e| format!("malformed response: not a chat completion ({e})"))?;
        let content = chat
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or("malformed response: no message in `choices`")?;
        serde_json::from_str(strip_fences(&content))
            .map_err(|e| format!("malformed answer: not the JSON object asked for ({e})"))
    }
}

fn is_timeout(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("timeout") || m.contains("timed out")
}

/// The user message: the draft, the query, the intent, the facts and the allowed actions.
fn prompt(job: &Job) -> String {
    format!(
        "Intent: {}\n\nCustomer message (personal data masked):\n{}\n\nFacts you may use:\n{}\n\n\
         Allowed actions: {}\nSuggested actions in the draft: {}\n\nDraft reply:\n{}",
        job.intent,
        job.text,
        job.facts
            .iter()
            .map(|f| format!("- {f}"))
            .collect::<Vec<_>>()
            .join("\n"),
        job.allowed_actions.join(", "),
        job.suggested_actions.join(", "),
        job.draft
    )
}

/// A reply inside a Markdown code fence, as chat models often give it, without the fence.
fn strip_fences(s: &str) -> &str {
    let t = s.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// The checks every answer must pass.
fn check(job: &Job, a: Answer, max_chars: usize) -> Result<Rewrite, String> {
    let reply = a.reply.trim().to_string();
    if reply.is_empty() {
        return Err("check failed: the answer is empty".into());
    }
    let n = reply.chars().count();
    if n > max_chars {
        return Err(format!(
            "check failed: the answer has {n} characters, more than {max_chars}"
        ));
    }
    let found = pii::detect(&reply);
    if let Some(f) = found.iter().find(|f| {
        !job.names
            .iter()
            .any(|n| reply[f.start..f.end].eq_ignore_ascii_case(n))
    }) {
        return Err(format!(
            "check failed: the answer contains personal data ({})",
            f.kind.label()
        ));
    }
    let facts = format!("{}\n{}\n{}", job.draft, job.text, job.facts.join("\n"));
    if let Some(why) = facts::unsupported(&reply, &facts) {
        return Err(format!("check failed: {why}"));
    }
    if let Some(a) = a
        .suggested_actions
        .iter()
        .find(|a| !job.allowed_actions.contains(a))
    {
        return Err(format!(
            "check failed: the action `{a}` is not in the playbook for {}",
            job.intent
        ));
    }
    Ok(Rewrite {
        reply,
        suggested_actions: a.suggested_actions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            draft: "Hi Ada,\n\nWe have opened a refund case for order #A12345.".into(),
            text: "refund for order #A12345 please, mail me at [EMAIL]".into(),
            intent: "refund_request".into(),
            facts: vec!["order: #A12345".into()],
            allowed_actions: vec!["open_refund_case".into()],
            suggested_actions: vec!["open_refund_case".into()],
            names: vec!["Ada".into()],
        }
    }

    fn answer(reply: &str, actions: &[&str]) -> Answer {
        Answer {
            reply: reply.into(),
            suggested_actions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn checks_accept_a_faithful_rewrite_and_name_what_is_wrong() {
        let ok = check(
            &job(),
            answer(
                "Hello Ada, a refund case for #A12345 is open.",
                &["open_refund_case"],
            ),
            500,
        );
        assert!(ok.is_ok(), "{ok:?}");
        let why = |a: Answer, max| check(&job(), a, max).unwrap_err();
        assert!(why(answer("  ", &[]), 500).contains("empty"));
        assert!(why(answer("Refund case open.", &[]), 5).contains("more than 5"));
        assert!(why(answer("Write to ada@example.com.", &[]), 500).contains("personal data"));
        assert!(why(answer("You get $40 back.", &[]), 500).contains("`40`"));
        assert!(why(answer("Done.", &["send_voucher"]), 500).contains("`send_voucher`"));
    }

    #[test]
    fn fenced_json_is_read() {
        assert_eq!(strip_fences("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(strip_fences("{\"a\":1}"), "{\"a\":1}");
    }
}
