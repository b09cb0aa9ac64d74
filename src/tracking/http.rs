//! The one small HTTP client cqr uses (tracking, and respond's LLM endpoint): JSON requests and raw
//! uploads/downloads over ureq, with MLflow-style auth, timeouts, and retries with exponential
//! backoff on connection errors, 5xx and 429 (never on other 4xx). Credentials are sent in headers
//! only and never appear in errors or logs.

use std::time::Duration;

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How requests authenticate, following MLflow's environment variables.
#[derive(Clone)]
pub enum Auth {
    None,
    Basic { user: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, even in debug output.
        f.write_str(match self {
            Auth::None => "Auth::None",
            Auth::Basic { .. } => "Auth::Basic(<redacted>)",
            Auth::Bearer(_) => "Auth::Bearer(<redacted>)",
        })
    }
}

impl Auth {
    /// `MLFLOW_TRACKING_USERNAME`/`PASSWORD` (basic) take precedence over `MLFLOW_TRACKING_TOKEN`.
    pub fn from_env() -> Auth {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (
            var("MLFLOW_TRACKING_USERNAME"),
            var("MLFLOW_TRACKING_PASSWORD"),
            var("MLFLOW_TRACKING_TOKEN"),
        ) {
            (Some(user), Some(password), _) => Auth::Basic { user, password },
            (_, _, Some(t)) => Auth::Bearer(t),
            _ => Auth::None,
        }
    }

    fn header(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic { user, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub timeout: Duration,
    pub retries: u32,
    pub insecure_tls: bool,
    /// Retry when no HTTP answer came (refused, reset, timed out). MLflow calls are idempotent
    /// enough for it; an LLM request that timed out is not worth another wait.
    pub retry_transport: bool,
}

impl Default for HttpSettings {
    /// MLflow's own variables: `MLFLOW_HTTP_REQUEST_TIMEOUT` (seconds, default 120),
    /// `MLFLOW_HTTP_REQUEST_MAX_RETRIES` (default 3 here), `MLFLOW_TRACKING_INSECURE_TLS`.
    fn default() -> Self {
        let num = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        HttpSettings {
            timeout: Duration::from_secs(num("MLFLOW_HTTP_REQUEST_TIMEOUT").unwrap_or(120).max(1)),
            retries: num("MLFLOW_HTTP_REQUEST_MAX_RETRIES").unwrap_or(3).min(20) as u32,
            insecure_tls: std::env::var("MLFLOW_TRACKING_INSECURE_TLS")
                .map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
                .unwrap_or(false),
            retry_transport: true,
        }
    }
}

/// MLflow's error reply, e.g. `{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "…"}`.
#[derive(Deserialize)]
struct ErrorReply {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// A response that reached us: status and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
    base: String,
    auth: Auth,
    settings: HttpSettings,
}

/// What went wrong with a request, before it becomes an [`Error`].
enum Failure {
    /// No HTTP answer at all (refused, reset, timed out, DNS): retryable.
    Transport(String),
    Status(Reply),
}

impl HttpClient {
    pub fn new(base: &str, auth: Auth, settings: HttpSettings) -> HttpClient {
        let tls = ureq::tls::TlsConfig::builder()
            .disable_verification(settings.insecure_tls)
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(settings.timeout))
            .tls_config(tls)
            .build();
        HttpClient {
            agent: config.into(),
            base: base.trim_end_matches('/').to_string(),
            auth,
            settings,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn once(
        &self,
        method: &str,
        path: &str,
        body: Option<(&[u8], &str)>,
    ) -> std::result::Result<Reply, Failure> {
        let url = format!("{}{}", self.base, path);
        let auth = self.auth.header();
        macro_rules! with_auth {
            ($req:expr) => {{
                let r = $req;
                match &auth {
                    Some(h) => r.header("Authorization", h),
                    None => r,
                }
            }};
        }
        let result = match (method, body) {
            ("GET", _) => with_auth!(self.agent.get(&url)).call(),
            ("DELETE", Some((b, ct))) => with_auth!(self.agent.delete(&url))
                .force_send_body()
                .header("Content-Type", ct)
                .send(b),
            ("DELETE", None) => with_auth!(self.agent.delete(&url)).call(),
            ("POST", Some((b, ct))) => with_auth!(self.agent.post(&url))
                .header("Content-Type", ct)
                .send(b),
            ("PATCH", Some((b, ct))) => with_auth!(self.agent.patch(&url))
                .header("Content-Type", ct)
                .send(b),
            ("PUT", Some((b, ct))) => with_auth!(self.agent.put(&url))
                .header("Content-Type", ct)
                .send(b),
            _ => unreachable!("methods with bodies are always given one"),
        };
        let mut resp = result.map_err(|e| Failure::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let reply = Reply { status, body };
        if (200..300).contains(&status) {
            Ok(reply)
        } else {
            Err(Failure::Status(reply))
        }
    }

    /// Sends a request, retrying transport errors, 5xx and 429 with exponential backoff.
    pub fn send(&self, method: &str, path: &str, body: Option<(&[u8], &str)>) -> Result<Reply> {
        let mut delay = Duration::from_millis(250);
        let mut attempt = 0;
        loop {
            let failure = match self.once(method, path, body) {
                Ok(r) => return Ok(r),
                Err(f) => f,
            };
            let retryable = match &failure {
                Failure::Transport(_) => self.settings.retry_transport,
                Failure::Status(r) => r.status >= 500 || r.status == 429,
            };
            if !retryable || attempt >= self.settings.retries {
                return Err(self.error(method, path, failure));
            }
            attempt += 1;
            tracing::debug!(method, path, attempt, "retrying after {delay:?}");
            std::thread::sleep(delay);
            delay *= 2;
        }
    }

    fn error(&self, method: &str, path: &str, failure: Failure) -> Error {
        let endpoint = format!("{method} {}{path}", self.base);
        match failure {
            Failure::Transport(message) => Error::Unreachable { endpoint, message },
            Failure::Status(r) => {
                let text = String::from_utf8_lossy(&r.body);
                let reply = serde_json::from_slice::<ErrorReply>(&r.body).ok();
                let message = match (r.status, &reply) {
                    (401, _) => "not authenticated: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD \
                            (or MLFLOW_TRACKING_TOKEN) to valid credentials"
                        .to_string(),
                    (403, _) => "permission denied: these credentials may not do this on the server".to_string(),
                    (_, Some(e)) => format!(
                        "{}: {}",
                        e.error_code.as_deref().unwrap_or("error"),
                        e.message.as_deref().unwrap_or(text.trim())
                    ),
                    (_, None) => summarize(&text),
                };
                Error::Server {
                    endpoint,
                    status: r.status,
                    code: reply.and_then(|e| e.error_code),
                    message,
                }
            }
        }
    }

    /// A JSON request whose reply is read as `R` (an empty reply reads as `{}`). A reply that
    /// lacks a field `R` requires, or has one of the wrong type, is an error naming the endpoint
    /// and the field: the server speaks another version of the API.
    pub fn json<B, R>(&self, method: &str, path: &str, body: Option<&B>) -> Result<R>
    where
        B: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("request bodies always serialise"));
        let reply = self.send(
            method,
            path,
            bytes.as_deref().map(|b| (b, "application/json")),
        )?;
        let text: &[u8] = if reply.body.is_empty() {
            b"{}"
        } else {
            &reply.body
        };
        serde_json::from_slice(text).map_err(|e| Error::Server {
            endpoint: format!("{method} {}{path}", self.base),
            status: reply.status,
            code: None,
            message: match e.classify() {
                serde_json::error::Category::Data => {
                    format!("the reply does not have the shape cqr expects: {e}")
                }
                _ => format!("the reply is not JSON: {e}"),
            },
        })
    }
}

/// First line of an HTML or text body, without tags, for an error message.
fn summarize(text: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let s = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else if s.is_empty() {
        "(empty reply)".into()
    } else {
        s
    }
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters pass through).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value.
pub fn encode_query(s: &str) -> String {
    encode_segment(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let a = Auth::Basic {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
        assert_eq!(a.header().unwrap(), "Basic dTpodW50ZXIy");
    }

    #[test]
    fn html_is_summarised() {
        assert_eq!(
            summarize("<html><p>Permission denied</p></html>"),
            "Permission denied"
        );
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}
