//! A secret an agent echoes, through the driver's redaction of each output line
//! (`secrets::redact_line`) and the event parser: whatever the secret holds and however the
//! line spells it, neither the kept line nor any event parsed from it shows it.
//!
//! Input: the secret, a NUL, then the agent's text around it (`{text}` marks where the secret
//! goes; at the end when absent). The secret is cut to printable characters without `*` (the
//! mask could spell it) and must be at least `MIN_REDACTED_LEN` long. What must hold, for each
//! kind of line (text, reasoning, tool title and error, error message, stderr `Error:`), built
//! both by a JSON serializer and with every character as a `\uXXXX` escape:
//! - the kept line holds none of `encoded_forms(secret)`, not even once its terminal escapes
//!   are gone (a terminal shows text around an escape as one);
//! - no event, and no stderr error, parsed from the kept line holds the secret, unless the
//!   secret is part of a word the parser fills in itself (`no message`, a tool's name): a
//!   masked key can leave an event to its defaults, which show nothing of the agent's.
#![no_main]

use kugetsu_core::agent::AgentEvent;
use kugetsu_core::ansi;
use kugetsu_core::secrets::{MIN_REDACTED_LEN, encoded_forms, redact_line};
use kugetsu_opencode::events::EventLog;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

/// What the parser and these lines show on their own: a tool's name and the defaults of an
/// event whose fields are missing.
const OWN_WORDS: &[&str] = &["bash", "no message", "UnknownError", "APIError", "unknown"];

fn escaped(text: &str) -> String {
    text.encode_utf16().map(|u| format!("\\u{u:04x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let (secret, around) = input.split_once('\0').unwrap_or((&input, ""));
    let secret: String =
        secret.chars().filter(|c| (!c.is_control() || *c == '\t') && *c != '*').collect();
    if secret.chars().count() < MIN_REDACTED_LEN {
        return;
    }
    let own_words = OWN_WORDS.iter().any(|w| w.contains(secret.as_str()));
    let said = if around.contains("{text}") {
        around.replacen("{text}", &secret, 1)
    } else {
        format!("{around}{secret}")
    };
    let mut lines: Vec<(bool, String)> = [
        json!({"type": "text", "part": {"text": said}}),
        json!({"type": "reasoning", "part": {"text": said}}),
        json!({"type": "tool_use", "part": {"tool": "bash", "state": {"status": "completed", "title": said}}}),
        json!({"type": "tool_use", "part": {"tool": said, "state": {"status": "error", "error": said}}}),
        json!({"type": "error", "error": {"name": "APIError", "data": {"message": said}}}),
    ]
    .iter()
    .map(|v| (true, v.to_string()))
    .collect();
    lines.push((
        true,
        format!("{{\"type\":\"text\",\"part\":{{\"text\":\"{}\"}}}}", escaped(&said)),
    ));
    lines.push((false, format!("Error: {said}")));
    let forms = encoded_forms(&secret);
    for (stdout, line) in lines {
        let kept = redact_line(&line, &[secret.as_str()]);
        let shown = ansi::strip(&kept);
        for form in &forms {
            assert!(!kept.contains(form.as_str()), "{form:?} kept in {kept:?}");
            assert!(!shown.contains(form.as_str()), "{form:?} shown in {kept:?}");
        }
        let mut log = EventLog::default();
        let events = if stdout {
            log.stdout_line(&kept)
        } else {
            log.stderr_line(&kept).into_iter().collect()
        };
        for text in events
            .iter()
            .flat_map(AgentEvent::texts)
            .map(str::to_owned)
            .chain(log.last_stderr_error.clone())
        {
            assert!(own_words || !text.contains(secret.as_str()), "{secret:?} shown in {text:?}");
        }
    }
});
