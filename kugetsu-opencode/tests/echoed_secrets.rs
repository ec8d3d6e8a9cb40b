//! A secret an agent echoes never gets past the driver's redaction, whatever it holds and
//! whichever event carries it: the line kept in the run log holds it in no spelling (as
//! written, JSON-escaped, URL-encoded), and no event parsed from that line (what `start`, the
//! dashboard and the outcome show) holds it.

#![allow(clippy::unwrap_used)]

use kugetsu_core::agent::AgentEvent;
use kugetsu_core::secrets::{encoded_forms, redact_line};
use kugetsu_opencode::events::EventLog;
use proptest::prelude::*;
use serde_json::json;

/// What the parser and these lines show on their own: a tool's name and the defaults of an
/// event whose fields are missing.
const OWN_WORDS: &[&str] = &["bash", "no message", "UnknownError", "APIError", "unknown"];

/// Each kind of line opencode prints, with `said` wherever it shows the agent's words. Built
/// by a JSON serializer, so quotes, backslashes and tabs arrive escaped, as opencode sends them.
fn lines(said: &str) -> Vec<(bool, String)> {
    let session = "ses_0123456789abcdefABCDEF";
    let stdout = [
        json!({"type": "text", "sessionID": session, "part": {"type": "text", "text": said}}),
        json!({"type": "reasoning", "sessionID": session, "part": {"text": said}}),
        json!({"type": "tool_use", "sessionID": session, "part": {"tool": "bash",
            "state": {"status": "completed", "title": said, "output": said}}}),
        json!({"type": "tool_use", "sessionID": session, "part": {"tool": said,
            "state": {"status": "error", "error": said}}}),
        json!({"type": "step_finish", "sessionID": session, "part": {"reason": said}}),
        json!({"type": "error", "sessionID": session,
            "error": {"name": "APIError", "data": {"message": said}}}),
        json!({"type": "error", "sessionID": session, "error": said}),
    ];
    let mut out: Vec<(bool, String)> = stdout.iter().map(|v| (true, format!("{v}\n"))).collect();
    // JSON allows any character as `\uXXXX`: an agent may spell the whole text so.
    let spelled: String = said.encode_utf16().map(|u| format!("\\u{u:04x}")).collect();
    out.push((true, format!("{{\"type\":\"text\",\"part\":{{\"text\":\"{spelled}\"}}}}\n")));
    out.push((false, format!("Error: {said}\n")));
    out.push((false, format!("! permission requested: {said}; auto-rejecting\n")));
    out.push((true, format!("not json {said}\n")));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn an_echoed_secret_is_never_kept_or_shown(
        // Printable, with what JSON escapes (quotes, backslashes, tabs) and some non-ASCII; no
        // `*`, which the mask itself could spell.
        secret in "[ -)+-~\t\"\\\\é€😀]{4,24}",
        before in "[ -~]{0,8}",
        after in "[ -~]{0,8}",
    ) {
        let forms = encoded_forms(&secret);
        // The agent may print the secret in any of its spellings (a URL holds it encoded).
        for echoed in &forms {
            let said = format!("{before}{echoed}{after}");
            for (stdout, line) in lines(&said) {
                let kept = redact_line(&line, &[secret.as_str()]);
                for form in &forms {
                    prop_assert!(!kept.contains(form.as_str()), "{form:?} kept in {kept:?}");
                }
                let mut log = EventLog::default();
                let events = if stdout {
                    log.stdout_line(&kept)
                } else {
                    log.stderr_line(&kept).into_iter().collect()
                };
                // A masked key can leave an event to its defaults ("no message"): words of the
                // parser's own, not the agent's.
                let texts = events
                    .iter()
                    .flat_map(AgentEvent::texts)
                    .map(str::to_owned)
                    .chain(log.last_stderr_error.clone())
                    .filter(|t| !OWN_WORDS.contains(&t.as_str()));
                for text in texts {
                    for form in &forms {
                        prop_assert!(!text.contains(form.as_str()), "{form:?} shown in {text:?}");
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// opencode colours its stderr; a terminal shows a secret whose halves an escape sequence
    /// separates as one, and the stderr parser reads the line without its escapes.
    #[test]
    fn a_secret_split_by_terminal_escapes_is_never_kept_or_shown(
        secret in "[ -)+-~é€😀]{4,24}",
        at in 1usize..24,
        escape in prop::sample::select(vec!["\u{1b}[1m", "\u{1b}[0m\u{1b}[91m", "\u{1b}]0;t\u{7}", "\u{1b}(B"]),
    ) {
        let chars: Vec<char> = secret.chars().collect();
        let at = at.min(chars.len() - 1);
        let (head, tail): (String, String) = (chars[..at].iter().collect(), chars[at..].iter().collect());
        let line = format!("\u{1b}[91mError: \u{1b}[0mkey {head}{escape}{tail} refused\n");
        let kept = redact_line(&line, &[secret.as_str()]);
        prop_assert!(!kugetsu_core::ansi::strip(&kept).contains(secret.as_str()), "kept {kept:?}");
        let mut log = EventLog::default();
        log.stderr_line(&kept);
        let error = log.last_stderr_error.clone().unwrap_or_default();
        prop_assert!(!error.contains(secret.as_str()), "shown {error:?}");
    }
}
