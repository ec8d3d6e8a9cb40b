//! Claude Code's `--output-format stream-json --verbose` output, one JSON object a line, read
//! into kugetsu's [`AgentEvent`]s and into what the outcome is judged from ([`EventLog`]).
//!
//! What the driver relies on (measured with 2.1.328):
//! - the first line is `system/init`, carrying the session id (a fork's new one);
//! - `assistant` lines hold the model's `text`, `thinking` and `tool_use` blocks; a tool's end
//!   is a `user` line with its `tool_result` (`is_error` when it failed or was refused);
//! - a refused tool call is a `system/permission_denied` line and an entry in the final
//!   `result`'s `permission_denials`, and the run still ends `subtype: "success"`;
//! - `system/api_retry` lines are the only sign of a rate limit or an overloaded API before
//!   the final result (Claude Code retries by itself for minutes): one with `error:
//!   "rate_limit"` (HTTP 429) is the provider refusing, its `retry_delay_ms` the wait Claude
//!   Code took from `retry-after` (plus jitter);
//! - an API failure is also an `assistant` line with `is_api_error_message`, whose `error`
//!   says Claude Code's own reading of it: `billing_error` for a used-up credit balance
//!   (HTTP 400 `Your credit balance is too low...`, or 402 `billing_error`; never retried),
//!   `rate_limit` for a 429 it gave up retrying;
//! - `result` ends a turn; `is_error` (not `subtype`) says whether it failed. A process may
//!   print more than one (a background tool re-invokes the model): the last one counts.
//!
//! Unknown types and subtypes are ignored: newer versions add them.

use std::collections::HashMap;

use kugetsu_core::agent::{AgentEvent, SessionId, ToolStatus};
use kugetsu_core::pause::{LimitKind, ProviderLimit};
use kugetsu_core::usage::{Tokens, TurnUsage, Usd};
use serde_json::Value;

/// The final `result` of a turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnResult {
    /// Whether the turn failed (an API error after retries, an unknown session, a limit).
    pub is_error: bool,
    /// `success`, `error_during_execution`, `error_max_turns`, ...
    pub subtype: String,
    /// `completed`, `api_error`, `aborted_tools`, `budget_exhausted`, ...
    pub terminal_reason: Option<String>,
    /// The final text (for an error, the error's words).
    pub text: String,
    /// `total_cost_usd`: what the whole session has cost so far, priced by Claude Code from its
    /// own table. Not the turn's: Claude Code restores a session's spend when it resumes it,
    /// and a fork starts from its base's (see [`EventLog::turn_spend`]).
    pub cost_usd: Option<f64>,
    /// Tokens of the whole turn (every request of it; this one is the turn's own).
    pub usage: Usage,
    /// The refused tool calls, as `tool` or ``tool `command` ``.
    pub denials: Vec<String>,
}

/// Tokens, as the `result`'s `usage` counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens not read from or written to the cache.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the cache.
    pub cache_read: u64,
    /// Input tokens written to the cache.
    pub cache_write: u64,
}

impl Usage {
    fn from_json(v: &Value) -> Usage {
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        Usage {
            input: n("input_tokens"),
            output: n("output_tokens"),
            cache_read: n("cache_read_input_tokens"),
            cache_write: n("cache_creation_input_tokens"),
        }
    }

    /// Every token counted.
    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache_read + self.cache_write
    }
}

/// What one turn used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spend {
    /// Dollars, when the session's total before the turn is known (or the session is new).
    pub cost_usd: Option<f64>,
    /// The turn's tokens.
    pub usage: Usage,
}

impl Spend {
    /// The same, as the agent seam reports a turn's usage.
    pub fn turn_usage(&self) -> TurnUsage {
        let u = self.usage;
        TurnUsage {
            cost_usd: self.cost_usd.and_then(Usd::new),
            tokens: Some(Tokens {
                input: u.input,
                output: u.output,
                cache_read: u.cache_read,
                cache_write: u.cache_write,
            }),
        }
    }
}

/// One `system/api_retry` line: Claude Code waits and sends the request again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Which attempt this is.
    pub attempt: u64,
    /// The HTTP status, when there was one (429, 529, ...).
    pub status: Option<u64>,
    /// `rate_limit`, `overloaded`, `authentication_failed`, `unknown`.
    pub error: String,
    /// How long it waits before the retry.
    pub delay_ms: u64,
}

/// Everything a run printed that the outcome depends on.
#[derive(Debug, Default)]
pub struct EventLog {
    /// The provider a refusal is reported for ([`crate::PROVIDER`] when empty).
    pub provider: String,
    /// The provider's refusal for a limit, the first one seen.
    pub provider_limit: Option<ProviderLimit>,
    /// The session id of `system/init`.
    pub session: Option<SessionId>,
    /// Every event, in order.
    pub events: Vec<AgentEvent>,
    /// The last `result`, if any.
    pub result: Option<TurnResult>,
    /// Every refused call seen (`system/permission_denied`, and the results' denials).
    pub denials: Vec<String>,
    /// The retries seen.
    pub retries: Vec<Retry>,
    /// The last non-empty line of stderr (usage errors land there).
    pub last_stderr: Option<String>,
    /// Pending tool calls by id: (tool name, one-line title).
    calls: HashMap<String, (String, Option<String>)>,
    /// The last tool call that finished, as `tool` or ``tool `title` ``.
    last_tool: Option<String>,
    /// The ids of the refused calls.
    denied_ids: Vec<String>,
}

impl EventLog {
    /// An empty log whose refusals are reported for `provider`.
    pub fn for_provider(provider: impl Into<String>) -> Self {
        EventLog { provider: provider.into(), ..EventLog::default() }
    }

    /// Reads one stdout line; returns the events it holds.
    pub fn stdout_line(&mut self, line: &str) -> Vec<AgentEvent> {
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else { return Vec::new() };
        let events = self.read(&v);
        self.events.extend(events.iter().cloned());
        events
    }

    /// Reads one stderr line (kept only as the words of a failure).
    pub fn stderr_line(&mut self, line: &str) {
        let line = line.trim();
        if !line.is_empty() {
            self.last_stderr = Some(line.to_owned());
        }
    }

    /// What the turn used, given what the session had cost before it (`None` for a new
    /// session): the cost is the growth of the session's total. `None` without a result.
    pub fn turn_spend(&self, before: Option<f64>) -> Option<Spend> {
        let result = self.result.as_ref()?;
        let cost_usd = result.cost_usd.map(|total| (total - before.unwrap_or(0.0)).max(0.0));
        Some(Spend { cost_usd, usage: result.usage })
    }

    /// The last tool call that finished, for a hung run's report.
    pub fn last_tool(&self) -> Option<String> {
        self.last_tool.clone()
    }

    fn read(&mut self, v: &Value) -> Vec<AgentEvent> {
        let str_of = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
        match (str_of("type"), str_of("subtype")) {
            ("system", "init") => {
                self.session = SessionId::new(str_of("session_id")).ok();
                vec![AgentEvent::StepStart]
            }
            ("system", "permission_denied") => {
                // The line names the tool only: the call it refused says what it was.
                let id = str_of("tool_use_id");
                let what = match self.calls.get(id) {
                    Some((tool, Some(title))) => format!("{tool} `{title}`"),
                    _ => denial(str_of("tool_name"), v.get("tool_input")),
                };
                self.deny(id, &what);
                vec![AgentEvent::PermissionRejected { permission: what }]
            }
            ("system", "api_retry") => {
                let retry = Retry {
                    attempt: v.get("attempt").and_then(Value::as_u64).unwrap_or(0),
                    status: v.get("error_status").and_then(Value::as_u64),
                    error: str_of("error").to_owned(),
                    delay_ms: v.get("retry_delay_ms").and_then(Value::as_u64).unwrap_or(0),
                };
                self.retries.push(retry.clone());
                if retry.error != "rate_limit" && retry.status != Some(429) {
                    // 529 overloaded, 401, a timeout: Claude Code's retries may well get
                    // through, and the API is not refusing this account.
                    return Vec::new();
                }
                let until = time::OffsetDateTime::now_utc()
                    + time::Duration::milliseconds(retry.delay_ms.min(i64::MAX as u64) as i64);
                let message = format!(
                    "HTTP {} {}, Claude Code would retry in {} s",
                    retry.status.unwrap_or(429),
                    retry.error,
                    retry.delay_ms.div_ceil(1000)
                );
                self.limited(LimitKind::RateLimit, Some(until), message)
            }
            ("assistant", _) => self.assistant(v),
            ("user", _) => self.tool_results(v),
            ("result", _) => self.result(v),
            _ => Vec::new(),
        }
    }

    /// Notes a refused call once, however many lines report it.
    fn deny(&mut self, tool_use_id: &str, what: &str) {
        let seen = !tool_use_id.is_empty() && self.denied_ids.iter().any(|i| i == tool_use_id);
        if !seen && !self.denials.iter().any(|d| d == what) {
            self.denials.push(what.to_owned());
        }
        if !tool_use_id.is_empty() {
            self.denied_ids.push(tool_use_id.to_owned());
        }
    }

    /// Records the provider's refusal (the first one seen) and returns its event.
    fn limited(
        &mut self,
        kind: LimitKind,
        until: Option<time::OffsetDateTime>,
        message: String,
    ) -> Vec<AgentEvent> {
        if self.provider_limit.is_some() {
            return Vec::new();
        }
        let provider = if self.provider.is_empty() {
            crate::PROVIDER.to_owned()
        } else {
            self.provider.clone()
        };
        let limit = ProviderLimit { provider, kind, until, message };
        self.provider_limit = Some(limit.clone());
        vec![AgentEvent::ProviderLimited(limit)]
    }

    fn assistant(&mut self, v: &Value) -> Vec<AgentEvent> {
        // An API failure is a synthetic assistant message; the final result says it again,
        // and only that one is reported, unless it is a refusal for a limit.
        if v.get("is_api_error_message").and_then(Value::as_bool) == Some(true) {
            let words = blocks(v)
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            return match v.get("error").and_then(Value::as_str) {
                // No reset time: a person has to buy credit.
                Some("billing_error") => self.limited(LimitKind::Quota, None, words),
                // Claude Code gave up retrying (or was told not to retry): no reset known.
                Some("rate_limit") => self.limited(LimitKind::RateLimit, None, words),
                _ => Vec::new(),
            };
        }
        let mut out = Vec::new();
        for block in blocks(v) {
            let s = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            match s("type").as_str() {
                "text" if !s("text").is_empty() => out.push(AgentEvent::Text { text: s("text") }),
                "thinking" if !s("thinking").is_empty() => {
                    out.push(AgentEvent::Reasoning { text: s("thinking") })
                }
                "tool_use" => {
                    let title = block.get("input").and_then(title_of);
                    self.calls.insert(s("id"), (s("name"), title));
                }
                _ => {}
            }
        }
        out
    }

    fn tool_results(&mut self, v: &Value) -> Vec<AgentEvent> {
        let mut out = Vec::new();
        for block in blocks(v) {
            if block.get("type").and_then(Value::as_str) != Some("tool_result") {
                continue;
            }
            let id = block.get("tool_use_id").and_then(Value::as_str).unwrap_or_default();
            let (tool, title) =
                self.calls.get(id).cloned().unwrap_or_else(|| ("tool".into(), None));
            let failed = block.get("is_error").and_then(Value::as_bool) == Some(true);
            self.last_tool = Some(match &title {
                Some(t) => format!("{tool} `{t}`"),
                None => tool.clone(),
            });
            out.push(AgentEvent::ToolUse {
                tool,
                status: if failed { ToolStatus::Error } else { ToolStatus::Completed },
                title,
                error: failed.then(|| content_text(block.get("content"))),
            });
        }
        out
    }

    fn result(&mut self, v: &Value) -> Vec<AgentEvent> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let mut denials = Vec::new();
        for d in v.get("permission_denials").and_then(Value::as_array).into_iter().flatten() {
            let tool = d.get("tool_name").and_then(Value::as_str).unwrap_or("tool");
            let what = denial(tool, d.get("tool_input"));
            self.deny(d.get("tool_use_id").and_then(Value::as_str).unwrap_or_default(), &what);
            denials.push(what);
        }
        let result = TurnResult {
            is_error: v.get("is_error").and_then(Value::as_bool) == Some(true),
            subtype: s("subtype").unwrap_or_default(),
            terminal_reason: s("terminal_reason"),
            text: s("result")
                .or_else(|| {
                    let errors = v.get("errors")?.as_array()?;
                    Some(errors.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
                })
                .unwrap_or_default(),
            cost_usd: v.get("total_cost_usd").and_then(Value::as_f64),
            usage: v.get("usage").map(Usage::from_json).unwrap_or_default(),
            denials,
        };
        let mut out = Vec::new();
        if result.is_error {
            let name = s("api_error_type").unwrap_or_else(|| result.subtype.clone());
            out.push(AgentEvent::Error { name, message: result.text.clone() });
        }
        out.push(AgentEvent::StepFinish {
            reason: s("stop_reason").or_else(|| result.terminal_reason.clone()).unwrap_or_default(),
            tokens: Some(result.usage.total()),
        });
        self.result = Some(result);
        out
    }
}

/// The content blocks of an `assistant` or `user` line.
fn blocks(v: &Value) -> impl Iterator<Item = &Value> {
    v.pointer("/message/content").and_then(Value::as_array).into_iter().flatten()
}

/// A one-line title for a tool call: the Bash command, else the file it touches.
fn title_of(input: &Value) -> Option<String> {
    ["command", "file_path", "path", "pattern", "url"]
        .iter()
        .find_map(|k| input.get(k).and_then(Value::as_str))
        .map(|t| t.lines().next().unwrap_or_default().to_owned())
}

fn denial(tool: &str, input: Option<&Value>) -> String {
    match input.and_then(title_of) {
        Some(t) => format!("{tool} `{t}`"),
        None => tool.to_owned(),
    }
}

/// A tool result's content as text (a string, or text blocks).
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}
