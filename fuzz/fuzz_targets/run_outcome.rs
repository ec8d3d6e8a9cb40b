//! How a run's outcome is read from its output (`events::EventLog` and
//! `outcome::classify_exit`, the driver's classification of a run that exited by itself) on
//! arbitrary interleavings of opencode stdout and stderr lines and any exit status.
//!
//! Input lines: `2>` then a stderr line; `exit N` or `signal N` for how opencode ended (exit 0
//! when neither is given); anything else is a stdout line. What must hold, against a model
//! kept here line by line:
//! - never a panic; each line's events are exactly what the line parses to, appended in order;
//! - the session is the first valid `sessionID` and never changes after;
//! - a rejected permission is always reported by `rejected_permissions` (the stderr
//!   descriptions when there are any, else `tool <name>` for every rejected tool call), and
//!   nothing is reported without one; a tool call failing with opencode's rejection text is
//!   a rejection;
//! - a `stream error` line is at most a provider's refusal, of the provider it names, recorded
//!   (and appended as an event) the first time only;
//! - `first_error` is the first error event, `last_stderr_error` the last `Error:` line, and
//!   `ended_mid_turn` is true unless the last step finished with a reason other than
//!   `tool-calls`;
//! - the outcome: any rejection makes the run `blocked` naming every rejected permission,
//!   whatever the exit status (opencode exits 0 after auto-rejecting); else an error event
//!   makes it `failed` with that error; else a non-zero exit or a signal is `failed`; a run is
//!   `completed` only when it exited 0, printed events and finished its turn.
#![no_main]

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use kugetsu_core::agent::{AgentEvent, RunOutcome, SessionId, ToolStatus};
use kugetsu_core::ansi;
use kugetsu_opencode::events::{EventLog, StderrLine, parse_stderr_line, parse_stdout_line};
use kugetsu_opencode::outcome::classify_exit;
use libfuzzer_sys::fuzz_target;

#[derive(Default)]
struct Model {
    session: Option<SessionId>,
    by_stderr: Vec<String>,
    by_tool: Vec<String>,
    last_error_line: Option<String>,
}

fn push_once(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_owned());
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut log = EventLog::default();
    let mut model = Model::default();
    let mut status = ExitStatus::from_raw(0);
    for line in text.split('\n') {
        let before = log.events.len();
        if let Some(n) = line.strip_prefix("exit ").and_then(|n| n.parse::<u8>().ok()) {
            status = ExitStatus::from_raw(i32::from(n) << 8);
        } else if let Some(n) = line.strip_prefix("signal ").and_then(|n| n.parse::<u8>().ok()) {
            status = ExitStatus::from_raw(i32::from(n % 64 + 1));
        } else if let Some(line) = line.strip_prefix("2>") {
            assert!(!ansi::strip(line).contains('\u{1b}'));
            let expected = parse_stderr_line(line);
            let limited_before = log.provider_limit.is_some();
            let got = log.stderr_line(line);
            // What the line added to the log: its event, but a refusal only the first time.
            let mut appended: Vec<AgentEvent> = got.clone().into_iter().collect();
            match expected {
                StderrLine::PermissionRejected(p) => {
                    assert!(!p.is_empty());
                    assert_eq!(got, Some(AgentEvent::PermissionRejected { permission: p.clone() }));
                    push_once(&mut model.by_stderr, &p);
                }
                StderrLine::Error(m) => {
                    assert_eq!(got, None);
                    model.last_error_line = Some(m);
                }
                StderrLine::Other => assert_eq!(got, None),
                StderrLine::StreamError { provider, .. } => match &got {
                    None => assert_eq!(log.provider_limit.is_some(), limited_before),
                    Some(AgentEvent::ProviderLimited(limit)) => {
                        assert_eq!(limit.provider, provider);
                        assert!(log.provider_limit.is_some());
                        if limited_before {
                            appended.clear();
                        }
                    }
                    Some(other) => panic!("a stream error gave {other:?}"),
                },
            }
            assert_eq!(log.events[before..], appended[..]);
        } else {
            let parsed = parse_stdout_line(line);
            let got = log.stdout_line(line);
            assert_eq!(got, parsed.events);
            assert_eq!(log.events[before..], got[..]);
            if model.session.is_none() {
                model.session = parsed.session.clone();
            }
            for (i, ev) in got.iter().enumerate() {
                match ev {
                    AgentEvent::ToolUse { tool, status, error, .. } => {
                        let rejected = *status == ToolStatus::Error
                            && error.as_deref().is_some_and(|e| {
                                e.to_ascii_lowercase().contains("rejected permission")
                            });
                        let next = got.get(i + 1);
                        let rejection = AgentEvent::PermissionRejected { permission: tool.clone() };
                        assert_eq!(next == Some(&rejection), rejected, "{line:?}");
                    }
                    AgentEvent::PermissionRejected { permission } => {
                        push_once(&mut model.by_tool, permission)
                    }
                    AgentEvent::Error { name, .. } => assert!(!name.is_empty()),
                    _ => {}
                }
            }
        }
        assert_eq!(log.session, model.session);
        assert_eq!(log.last_stderr_error, model.last_error_line);
    }

    let rejected = log.rejected_permissions();
    let expected: Vec<String> = if model.by_stderr.is_empty() {
        model.by_tool.iter().map(|t| format!("tool {t}")).collect()
    } else {
        model.by_stderr.clone()
    };
    assert_eq!(rejected, expected);
    let any_rejection =
        log.events.iter().any(|e| matches!(e, AgentEvent::PermissionRejected { .. }));
    assert_eq!(any_rejection, !rejected.is_empty(), "a rejection went unreported");

    let first_error = log.events.iter().find_map(|e| match e {
        AgentEvent::Error { name, message } => Some(format!("{name}: {message}")),
        _ => None,
    });
    assert_eq!(log.first_error(), first_error);

    let last_step = log.events.iter().rev().find_map(|e| match e {
        AgentEvent::StepStart => Some(None),
        AgentEvent::StepFinish { reason, .. } => Some(Some(reason.clone())),
        _ => None,
    });
    let finished = matches!(last_step, Some(Some(reason)) if reason != "tool-calls");
    assert_eq!(log.ended_mid_turn(), !finished);

    let outcome = classify_exit(status, &log);
    match &outcome {
        _ if !rejected.is_empty() => {
            assert_eq!(outcome, RunOutcome::Blocked { permission: rejected.join(", ") });
        }
        _ if first_error.is_some() => {
            assert_eq!(outcome, RunOutcome::Failed { message: first_error.unwrap_or_default() });
        }
        RunOutcome::Completed => {
            assert!(status.success() && !log.events.is_empty() && finished, "{status:?}");
        }
        RunOutcome::Failed { message } => {
            let clean = status.success() && !log.events.is_empty() && finished;
            assert!(!clean, "a clean run failed: {message}");
            if !status.success() && log.last_stderr_error.is_none() {
                let code = status.code().map(|c| c.to_string()).unwrap_or_default();
                let signal = status.signal().map(|s| s.to_string()).unwrap_or_default();
                assert!(message.ends_with(&code) && message.ends_with(&signal), "{message}");
            }
        }
        other => panic!("an exited run is {other:?}"),
    }
});
