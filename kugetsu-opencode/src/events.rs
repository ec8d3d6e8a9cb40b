//! Parser of what `opencode run --format json` prints: NDJSON events on stdout and a few
//! human lines on stderr that matter (auto-rejected permissions, `Error:` lines).
//!
//! opencode's stream is loose: newer versions add event types, lines can be cut off when the
//! stream drops mid-turn, and a rejected permission is only visible in a tool part's error text
//! and a coloured stderr line (the exit code stays 0). So the parser never fails: unknown types
//! and garbage lines are skipped, and the two signals of a rejection both become
//! [`AgentEvent::PermissionRejected`].

use kugetsu_core::agent::{AgentEvent, SessionId, ToolStatus};
use kugetsu_core::usage::{Tokens, TurnUsage, Usd};
use serde_json::Value;

/// The error texts opencode puts on a tool part whose permission ask was rejected: 1.x "The
/// user rejected permission to use this specific tool call.", 2.x "This non-interactive run
/// cannot ask the user for permission, so the request was rejected."
const REJECTED_MARKERS: &[&str] =
    &["rejected permission", "permission, so the request was rejected"];

/// What one stdout line holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedLine {
    /// The `sessionID` of the line, when present and valid.
    pub session: Option<SessionId>,
    /// The events the line maps to (empty for unknown types and garbage).
    pub events: Vec<AgentEvent>,
}

/// Parses one stdout line of `--format json`. Never fails: a line that is not a JSON object
/// yields an empty [`ParsedLine`].
pub fn parse_stdout_line(line: &str) -> ParsedLine {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line.trim()) else {
        return ParsedLine::default();
    };
    let session = obj.get("sessionID").and_then(Value::as_str).and_then(|s| SessionId::new(s).ok());
    let part = obj.get("part").unwrap_or(&Value::Null);
    let mut events = Vec::new();
    match obj.get("type").and_then(Value::as_str) {
        Some("step_start") => events.push(AgentEvent::StepStart),
        Some("text") => {
            events.push(AgentEvent::Text { text: str_at(part, &["text"]).unwrap_or_default() })
        }
        Some("reasoning") => {
            events.push(AgentEvent::Reasoning { text: str_at(part, &["text"]).unwrap_or_default() })
        }
        Some("tool_use") => {
            let tool = str_at(part, &["tool"]).unwrap_or_else(|| "unknown".to_owned());
            let status = match str_at(part, &["state", "status"]).as_deref() {
                Some("completed") => ToolStatus::Completed,
                Some("error") => ToolStatus::Error,
                _ => ToolStatus::Other,
            };
            let error = str_at(part, &["state", "error"]);
            let rejected = status == ToolStatus::Error
                && error
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .is_some_and(|e| REJECTED_MARKERS.iter().any(|m| e.contains(m)));
            events.push(AgentEvent::ToolUse {
                tool: tool.clone(),
                status,
                title: str_at(part, &["state", "title"]),
                error,
            });
            if rejected {
                events.push(AgentEvent::PermissionRejected { permission: tool });
            }
        }
        Some("step_finish") => {
            let tokens = part.get("tokens");
            let total = tokens.and_then(|t| t.get("total")).and_then(Value::as_u64).or_else(|| {
                let t = tokens?;
                let n = |k: &str| t.get(k).and_then(Value::as_u64);
                Some(n("input")? + n("output")? + n("reasoning").unwrap_or(0))
            });
            events.push(AgentEvent::StepFinish {
                reason: str_at(part, &["reason"]).unwrap_or_default(),
                tokens: total,
            });
            if let Some(usage) = step_usage(part) {
                events.push(AgentEvent::Usage { usage });
            }
        }
        Some("error") => {
            let err = obj.get("error").unwrap_or(&Value::Null);
            // 1.x: `{name, data{message}}`; 2.x: `{type, message, status?}`.
            let name = str_at(err, &["name"])
                .or_else(|| str_at(err, &["type"]))
                .unwrap_or_else(|| "UnknownError".to_owned());
            let message = str_at(err, &["data", "message"])
                .or_else(|| str_at(err, &["message"]))
                .or_else(|| err.as_str().map(str::to_owned))
                .unwrap_or_else(|| "no message".to_owned());
            events.push(AgentEvent::Error { name, message });
        }
        _ => {}
    }
    ParsedLine { session, events }
}

/// What a `step_finish` part says the step used: `cost` (dollars) and `tokens{input, output,
/// reasoning, cache{read, write}}`, reasoning counted as output; `None` when it says neither.
/// opencode prices a step from its model's `cost` in the config, and says 0 for a model it
/// has no price of: a 0 is what opencode reported, kept as it is.
pub fn step_usage(part: &Value) -> Option<TurnUsage> {
    let cost_usd = part.get("cost").and_then(Value::as_f64).and_then(Usd::new);
    let tokens = part.get("tokens").filter(|t| t.is_object()).map(|t| {
        let n = |ptr: &str| t.pointer(ptr).and_then(Value::as_u64).unwrap_or(0);
        Tokens {
            input: n("/input"),
            output: n("/output").saturating_add(n("/reasoning")),
            cache_read: n("/cache/read"),
            cache_write: n("/cache/write"),
        }
    });
    let usage = TurnUsage { cost_usd, tokens };
    (!usage.is_unknown()).then_some(usage)
}

/// What one stderr line means to the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StderrLine {
    /// `! permission requested: <what>; auto-rejecting`.
    PermissionRejected(String),
    /// `Error: <message>` (colours removed).
    Error(String),
    /// Anything else (logs, help text).
    Other,
    /// A `--print-logs` `stream error` line: the provider and its message (see
    /// [`crate::limits`]).
    StreamError {
        /// The provider's id.
        provider: String,
        /// What it said.
        message: String,
    },
}

/// Classifies one stderr line (ANSI colours are ignored).
pub fn parse_stderr_line(line: &str) -> StderrLine {
    let plain = kugetsu_core::ansi::strip(line);
    let plain = plain.trim();
    if let Some(rest) = plain.strip_prefix('!') {
        let rest = rest.trim_start();
        if let Some(what) = rest.strip_prefix("permission requested:") {
            let what = what.trim();
            let what = what.strip_suffix("auto-rejecting").map(str::trim_end).unwrap_or(what);
            let what = what.strip_suffix(';').unwrap_or(what).trim();
            if !what.is_empty() {
                return StderrLine::PermissionRejected(what.to_owned());
            }
        }
    }
    if let Some(msg) = plain.strip_prefix("Error:") {
        return StderrLine::Error(msg.trim().to_owned());
    }
    if let Some((provider, message)) = crate::limits::parse_stream_error(plain) {
        return StderrLine::StreamError { provider, message };
    }
    StderrLine::Other
}

/// The longest tool title [`EventLog::last_tool`] keeps (a command can be a whole script).
pub const TOOL_TEXT_MAX: usize = 120;

/// ``tool `title` ``, the title cut to its first line and [`TOOL_TEXT_MAX`] characters, or
/// `tool` alone without a title. Backticks in the title become quotes, so the quoting holds.
fn tool_text(tool: &str, title: Option<&str>) -> String {
    let first_line = title.and_then(|t| t.lines().map(str::trim).find(|l| !l.is_empty()));
    let Some(line) = first_line else { return tool.to_owned() };
    let more = title.is_some_and(|t| t.trim().lines().count() > 1);
    let mut text: String = line.chars().take(TOOL_TEXT_MAX).collect::<String>().replace('`', "'");
    if more || line.chars().count() > TOOL_TEXT_MAX {
        text.push('…');
    }
    format!("{tool} `{text}`")
}

fn push_once(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_owned());
    }
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str().map(str::to_owned)
}

/// Accumulates a run's stream: the session id of the first line, the events, and what the
/// outcome classification needs.
#[derive(Debug, Default, Clone)]
pub struct EventLog {
    /// The `sessionID` of the first stdout line that had one.
    pub session: Option<SessionId>,
    /// Every event so far, in order.
    pub events: Vec<AgentEvent>,
    /// The last `Error:` line seen on stderr (colours removed).
    pub last_stderr_error: Option<String>,
    rejected_by_stderr: Vec<String>,
    rejected_tools: Vec<String>,
    /// The provider's refusal for a limit, once seen (the driver then cuts the run).
    pub provider_limit: Option<kugetsu_core::pause::ProviderLimit>,
    stream_errors: u32,
}

impl EventLog {
    /// Feeds one stdout line; returns the events it produced.
    pub fn stdout_line(&mut self, line: &str) -> Vec<AgentEvent> {
        let parsed = parse_stdout_line(line);
        if self.session.is_none() {
            self.session = parsed.session;
        }
        for ev in &parsed.events {
            if let AgentEvent::PermissionRejected { permission } = ev {
                push_once(&mut self.rejected_tools, permission);
            }
        }
        self.events.extend(parsed.events.iter().cloned());
        parsed.events
    }

    /// Feeds one stderr line; returns the event it produced, if any.
    pub fn stderr_line(&mut self, line: &str) -> Option<AgentEvent> {
        match parse_stderr_line(line) {
            StderrLine::PermissionRejected(permission) => {
                push_once(&mut self.rejected_by_stderr, &permission);
                let ev = AgentEvent::PermissionRejected { permission };
                self.events.push(ev.clone());
                Some(ev)
            }
            StderrLine::Error(msg) => {
                self.last_stderr_error = Some(msg);
                None
            }
            StderrLine::StreamError { provider, message } => {
                self.stream_errors += 1;
                let now = time::OffsetDateTime::now_utc();
                let limit =
                    crate::limits::from_stream_error(provider, message, self.stream_errors, now)?;
                Some(self.limited(limit))
            }
            StderrLine::Other => None,
        }
    }

    /// Records the provider's refusal (the first one seen) and returns its event.
    pub fn limited(&mut self, limit: kugetsu_core::pause::ProviderLimit) -> AgentEvent {
        let ev = AgentEvent::ProviderLimited(limit.clone());
        if self.provider_limit.is_none() {
            self.provider_limit = Some(limit);
            self.events.push(ev.clone());
        }
        ev
    }

    /// Which permissions were rejected, most specific first: the stderr descriptions
    /// (`external_directory (/etc/*)`) when there are any, else the names of the tools whose
    /// calls were rejected (`tool read`). Empty when nothing was rejected.
    pub fn rejected_permissions(&self) -> Vec<String> {
        if self.rejected_by_stderr.is_empty() {
            self.rejected_tools.iter().map(|t| format!("tool {t}")).collect()
        } else {
            self.rejected_by_stderr.clone()
        }
    }

    /// The sum of the steps' usage, `None` when no step reported any.
    pub fn usage(&self) -> Option<TurnUsage> {
        self.events
            .iter()
            .filter_map(|ev| match ev {
                AgentEvent::Usage { usage } => Some(*usage),
                _ => None,
            })
            .reduce(TurnUsage::plus)
    }

    /// The first error event, as `Name: message`.
    pub fn first_error(&self) -> Option<String> {
        self.events.iter().find_map(|ev| match ev {
            AgentEvent::Error { name, message } => Some(format!("{name}: {message}")),
            _ => None,
        })
    }

    /// The last tool call that finished (or failed), as `tool` or ``tool `title` `` (for
    /// bash, opencode's title is the command), on one line of at most [`TOOL_TEXT_MAX`]
    /// characters. opencode prints a tool call only when it has finished, so a call still
    /// running is never the last one here.
    pub fn last_tool(&self) -> Option<String> {
        self.events.iter().rev().find_map(|ev| match ev {
            AgentEvent::ToolUse { tool, title, .. } => Some(tool_text(tool, title.as_deref())),
            _ => None,
        })
    }

    /// Whether the stream looks cut off: the last step did not finish with `stop`
    /// (opencode's stream can drop mid-turn and still exit 0).
    pub fn ended_mid_turn(&self) -> bool {
        let last_step = self.events.iter().rev().find_map(|ev| match ev {
            AgentEvent::StepStart => Some(None),
            AgentEvent::StepFinish { reason, .. } => Some(Some(reason.as_str())),
            _ => None,
        });
        match last_step {
            None => true,
            Some(None) => true,
            Some(Some(reason)) => reason == "tool-calls",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../tests/data/events-sample-1.18.33.jsonl");
    const REJECTED_OUT: &str = include_str!("../tests/data/permission-rejected-1.18.33.jsonl");
    const REJECTED_ERR: &str = include_str!("../tests/data/permission-rejected-1.18.33.stderr");

    fn sid(s: &str) -> SessionId {
        SessionId::new(s).expect("valid id")
    }

    #[test]
    fn sample_maps_to_typed_events() {
        let mut log = EventLog::default();
        for line in SAMPLE.lines() {
            log.stdout_line(line);
        }
        assert_eq!(log.session, Some(sid("ses_df618a3e3ffeqRYEBPX0sKpw5X")));
        let text = AgentEvent::Text { text: "hello".into() };
        let stop = AgentEvent::StepFinish { reason: "stop".into(), tokens: Some(12) };
        let used = |output| AgentEvent::Usage {
            usage: TurnUsage {
                cost_usd: Some(Usd::ZERO),
                tokens: Some(Tokens { input: 10, output, cache_read: 0, cache_write: 0 }),
            },
        };
        assert_eq!(
            log.events,
            vec![
                AgentEvent::StepStart,
                text.clone(),
                stop.clone(),
                used(2),
                AgentEvent::StepStart,
                AgentEvent::ToolUse {
                    tool: "bash".into(),
                    status: ToolStatus::Completed,
                    title: Some("echo hi-from-tool".into()),
                    error: None,
                },
                AgentEvent::StepFinish { reason: "tool-calls".into(), tokens: Some(15) },
                used(5),
                AgentEvent::StepStart,
                text,
                stop,
                used(2),
                AgentEvent::Error { name: "APIError".into(), message: "mock bad request".into() },
            ]
        );
        let turn = log.usage().unwrap();
        assert_eq!(turn.tokens.map(|t| (t.input, t.output)), Some((30, 9)));
        assert_eq!(turn.cost_usd, Some(Usd::ZERO), "a reported 0 is kept: it is not unknown");
        assert_eq!(log.first_error().as_deref(), Some("APIError: mock bad request"));
        assert!(log.rejected_permissions().is_empty());
    }

    #[test]
    fn each_line_carries_its_session() {
        let ids: Vec<_> = SAMPLE.lines().map(|l| parse_stdout_line(l).session).collect();
        assert_eq!(ids[0], Some(sid("ses_df618a3e3ffeqRYEBPX0sKpw5X")));
        assert_eq!(ids[3], Some(sid("ses_df6104180ffeNQm1nM5Gv0CVsS")));
        assert_eq!(ids[9], Some(sid("ses_df6101ac2ffejogqVNpjls040f")));
    }

    #[test]
    fn rejected_permission_from_tool_part_and_stderr() {
        let mut log = EventLog::default();
        for line in REJECTED_OUT.lines() {
            log.stdout_line(line);
        }
        assert_eq!(log.rejected_permissions(), vec!["tool read".to_owned()]);
        assert!(log.events.contains(&AgentEvent::PermissionRejected { permission: "read".into() }));
        assert!(log.ended_mid_turn(), "a rejection stops the turn after tool-calls");
        for line in REJECTED_ERR.lines() {
            log.stderr_line(line);
        }
        assert_eq!(log.rejected_permissions(), vec!["external_directory (/etc/*)".to_owned()]);
    }

    #[test]
    fn stderr_lines() {
        assert_eq!(
            parse_stderr_line("! permission requested: bash (rm -rf /); auto-rejecting"),
            StderrLine::PermissionRejected("bash (rm -rf /)".into())
        );
        assert_eq!(
            parse_stderr_line("\u{1b}[91m\u{1b}[1mError: \u{1b}[0mSession not found"),
            StderrLine::Error("Session not found".into())
        );
        assert_eq!(parse_stderr_line("INFO something"), StderrLine::Other);
        assert_eq!(
            parse_stderr_line("! permission requested: ; auto-rejecting"),
            StderrLine::Other
        );
    }

    #[test]
    fn garbage_and_unknown_lines_are_ignored() {
        for line in [
            "",
            "not json",
            "{\"type\":\"step_sta",
            "[1,2]",
            "{\"type\":\"done\",\"reason\":\"idle\",\"rejected\":[]}",
            "{\"type\":42}",
            "\u{0}\u{1b}[0m",
        ] {
            assert!(parse_stdout_line(line).events.is_empty(), "{line:?}");
        }
        // A known type with a broken payload still yields an event, never a panic.
        assert_eq!(
            parse_stdout_line("{\"type\":\"tool_use\",\"part\":7}").events,
            vec![AgentEvent::ToolUse {
                tool: "unknown".into(),
                status: ToolStatus::Other,
                title: None,
                error: None
            }]
        );
        assert_eq!(
            parse_stdout_line("{\"type\":\"error\",\"error\":\"boom\"}").events,
            vec![AgentEvent::Error { name: "UnknownError".into(), message: "boom".into() }]
        );
    }

    #[test]
    fn invalid_session_ids_are_not_captured() {
        let p = parse_stdout_line(
            "{\"type\":\"step_start\",\"sessionID\":\"ses_x'; DROP TABLE session;--\"}",
        );
        assert_eq!(p.session, None);
        assert_eq!(p.events, vec![AgentEvent::StepStart]);
    }

    #[test]
    fn the_last_finished_tool_is_named() {
        let mut log = EventLog::default();
        assert_eq!(log.last_tool(), None);
        for line in SAMPLE.lines() {
            log.stdout_line(line);
        }
        assert_eq!(log.last_tool().as_deref(), Some("bash `echo hi-from-tool`"));
        let mut log = EventLog::default();
        for line in REJECTED_OUT.lines() {
            log.stdout_line(line);
        }
        assert_eq!(log.last_tool().as_deref(), Some("read"), "no title: the tool alone");
        let tool = |title: &str| {
            let line = serde_json::json!({"type": "tool_use", "part": {"tool": "bash",
                "state": {"status": "completed", "title": title}}})
            .to_string();
            let mut log = EventLog::default();
            log.stdout_line(&line);
            log.stdout_line(r#"{"type":"step_start"}"#);
            log.last_tool().unwrap_or_default()
        };
        assert_eq!(tool("cargo build --release"), "bash `cargo build --release`");
        assert_eq!(tool("\n  make -j8 \nmake install\n"), "bash `make -j8…`");
        assert_eq!(tool("echo `date`"), "bash `echo 'date'`");
        assert_eq!(tool("   "), "bash");
        let long = tool(&"x".repeat(500));
        assert_eq!(long.chars().count(), "bash ``".len() + TOOL_TEXT_MAX + 1);
        assert!(long.ends_with("x…`"), "{long}");
    }

    #[test]
    fn step_usage_reads_cost_tokens_and_cache_and_nothing_is_unknown() {
        let part = serde_json::json!({"reason": "stop", "cost": 0.0042,
            "tokens": {"input": 7, "output": 3, "reasoning": 4, "cache": {"read": 100, "write": 9}}});
        let usage = step_usage(&part).unwrap();
        assert_eq!(usage.cost_usd, Usd::new(0.0042));
        assert_eq!(
            usage.tokens,
            Some(Tokens { input: 7, output: 7, cache_read: 100, cache_write: 9 })
        );
        assert_eq!(step_usage(&serde_json::json!({"reason": "stop"})), None);
        let mut log = EventLog::default();
        log.stdout_line(r#"{"type":"step_finish","part":{"reason":"stop"}}"#);
        assert_eq!(log.usage(), None);
    }

    #[test]
    fn mid_turn_detection() {
        let mut log = EventLog::default();
        assert!(log.ended_mid_turn());
        log.events.push(AgentEvent::StepStart);
        assert!(log.ended_mid_turn());
        log.events.push(AgentEvent::StepFinish { reason: "stop".into(), tokens: None });
        assert!(!log.ended_mid_turn());
    }

    proptest::proptest! {
        #[test]
        fn any_input_is_handled_without_panic(line in ".*", raw in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let lossy = String::from_utf8_lossy(&raw).into_owned();
            for l in [&line, &lossy] {
                let _ = parse_stdout_line(l);
                let _ = parse_stderr_line(l);
                let mut log = EventLog::default();
                log.stdout_line(l);
                log.stderr_line(l);
                let _ = (log.rejected_permissions(), log.first_error(), log.ended_mid_turn());
            }
        }

        #[test]
        fn any_rejection_text_round_trips(what in "[a-z_]{1,20}( \\([ -:<-~]{0,30}\\))?") {
            let line = format!("\u{1b}[93m\u{1b}[1m! \u{1b}[0mpermission requested: {what}; auto-rejecting");
            proptest::prop_assert_eq!(parse_stderr_line(&line), StderrLine::PermissionRejected(what.trim().to_owned()));
        }
    }
}
