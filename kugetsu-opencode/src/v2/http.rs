//! The HTTP client of the private serve: loopback, basic auth (user `opencode`), JSON.
//! Answers of opencode 2.1.2 are wrapped as `{"data": ...}` (all but `/api/info`); errors are
//! `{"_tag", "message"}` objects, or an empty body.

use std::time::Duration;

use base64::Engine;
use serde_json::Value;

/// The basic-auth user opencode expects.
const USER: &str = "opencode";

/// Why a request did not get the answer it wanted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// No answer (refused, timed out, cut off).
    #[error("{method} {path}: {message}")]
    Transport { method: &'static str, path: String, message: String },
    /// An answer with an error status.
    #[error("{method} {path} answered {status}: {message}")]
    Status { method: &'static str, path: String, status: u16, message: String },
}

impl HttpError {
    /// Whether the serve said the thing asked for does not exist.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, HttpError::Status { status: 404, .. })
    }
}

/// A client of one serve.
pub(crate) struct Client {
    url: String,
    auth: String,
    agent: ureq::Agent,
}

impl Client {
    pub(crate) fn new(url: &str, password: &str, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            // Loopback only: a proxy from the user's environment must not see the password.
            .proxy(None)
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        Client { url: url.to_owned(), auth: format!("Basic {auth}"), agent }
    }

    pub(crate) fn get(&self, path: &str) -> Result<Value, HttpError> {
        self.call("GET", path, None)
    }
    pub(crate) fn post(&self, path: &str, body: &Value) -> Result<Value, HttpError> {
        self.call("POST", path, Some(body))
    }
    pub(crate) fn patch(&self, path: &str, body: &Value) -> Result<Value, HttpError> {
        self.call("PATCH", path, Some(body))
    }
    pub(crate) fn put(&self, path: &str, body: &Value) -> Result<Value, HttpError> {
        self.call("PUT", path, Some(body))
    }
    pub(crate) fn delete(&self, path: &str) -> Result<Value, HttpError> {
        self.call("DELETE", path, None)
    }

    /// The answer's `data` (or the whole answer when it has none; `null` for an empty body).
    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, HttpError> {
        let transport =
            |message: String| HttpError::Transport { method, path: path.to_owned(), message };
        let uri = format!("{}{path}", self.url);
        let t0 = std::time::Instant::now();
        let sent = match (method, body) {
            ("POST", Some(b)) => self
                .agent
                .post(&uri)
                .header("authorization", &self.auth)
                .header("content-type", "application/json")
                .send(b.to_string()),
            ("PATCH", Some(b)) => self
                .agent
                .patch(&uri)
                .header("authorization", &self.auth)
                .header("content-type", "application/json")
                .send(b.to_string()),
            ("PUT", Some(b)) => self
                .agent
                .put(&uri)
                .header("authorization", &self.auth)
                .header("content-type", "application/json")
                .send(b.to_string()),
            ("DELETE", _) => self.agent.delete(&uri).header("authorization", &self.auth).call(),
            _ => self.agent.get(&uri).header("authorization", &self.auth).call(),
        };
        let mut response = sent.map_err(|e| transport(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| transport(format!("reading the answer: {e}")))?;
        tracing::debug!(method, path, status, ms = t0.elapsed().as_millis(), "opencode serve call");
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| transport(format!("the answer is not JSON: {e}")))?
        };
        if !(200..300).contains(&status) {
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(HttpError::Status { method, path: path.to_owned(), status, message });
        }
        Ok(match value {
            Value::Object(mut o) if o.contains_key("data") => {
                o.remove("data").unwrap_or(Value::Null)
            }
            other => other,
        })
    }
}

/// `s` made safe for a URL query or path segment.
pub(crate) fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
