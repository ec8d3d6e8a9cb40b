//! How a run ended, in kugetsu's words: the one place that reads opencode's exit and events
//! and says `completed`, `failed`, `blocked`, `timed_out`, `hung` or `interrupted`.

use std::process::ExitStatus;

use kugetsu_core::agent::RunOutcome;
use kugetsu_core::interrupt::Interrupt;

use crate::events::EventLog;
use kugetsu_process::Ended;

/// Turns how a run ended and what it printed into an outcome (and the exit code, if it exited).
pub(crate) fn classify(
    ended: Ended,
    events: &EventLog,
    stop: &Interrupt,
) -> (RunOutcome, Option<i32>) {
    match ended.outcome(stop, events.provider_limit.as_ref(), || events.last_tool()) {
        Ok(outcome) => (outcome, None),
        Err(status) => (classify_exit(status, events), status.code()),
    }
}

/// The outcome of a run that exited by itself with `status` after printing `events`. The exit
/// code alone is not enough: opencode exits 0 after auto-rejecting a permission, and can exit
/// 0 with its event stream cut mid-turn.
pub fn classify_exit(status: ExitStatus, events: &EventLog) -> RunOutcome {
    let code = status.code();
    let rejected = events.rejected_permissions();
    if !rejected.is_empty() {
        return RunOutcome::Blocked { permission: rejected.join(", ") };
    }
    if let Some(message) = events.first_error() {
        return RunOutcome::Failed { message };
    }
    if !status.success() {
        let message = match (&events.last_stderr_error, code) {
            (Some(e), _) => e.clone(),
            (None, Some(c)) => format!("opencode exited with code {c}"),
            (None, None) => {
                use std::os::unix::process::ExitStatusExt;
                format!("opencode was killed by signal {}", status.signal().unwrap_or(0))
            }
        };
        return RunOutcome::Failed { message };
    }
    if events.events.is_empty() {
        return RunOutcome::Failed { message: "opencode exited without printing any event".into() };
    }
    if events.ended_mid_turn() {
        return RunOutcome::Failed {
            message: "opencode's event stream ended before the turn finished".into(),
        };
    }
    RunOutcome::Completed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;

    fn classify(ended: Ended, events: &EventLog) -> (RunOutcome, Option<i32>) {
        super::classify(ended, events, &Interrupt::new())
    }

    fn log(lines: &[&str], stderr: &[&str]) -> EventLog {
        let mut l = EventLog::default();
        for x in lines {
            l.stdout_line(x);
        }
        for x in stderr {
            l.stderr_line(x);
        }
        l
    }
    const START: &str = r#"{"type":"step_start","sessionID":"ses_a"}"#;
    const STOP: &str = r#"{"type":"step_finish","sessionID":"ses_a","part":{"reason":"stop"}}"#;
    const TOOLS: &str =
        r#"{"type":"step_finish","sessionID":"ses_a","part":{"reason":"tool-calls"}}"#;

    fn exit(code: i32) -> Ended {
        Ended::Exited(ExitStatus::from_raw(code << 8))
    }

    #[test]
    fn classification() {
        assert_eq!(classify(exit(0), &log(&[START, STOP], &[])).0, RunOutcome::Completed);
        assert_eq!(
            classify(
                exit(0),
                &log(&[START, TOOLS], &["! permission requested: bash (x); auto-rejecting"])
            )
            .0,
            RunOutcome::Blocked { permission: "bash (x)".into() }
        );
        assert_eq!(
            classify(exit(1), &log(&[], &["\u{1b}[91mError: \u{1b}[0mSession not found"])),
            (RunOutcome::Failed { message: "Session not found".into() }, Some(1))
        );
        assert_eq!(
            classify(
                exit(0),
                &log(
                    &[r#"{"type":"error","error":{"name":"APIError","data":{"message":"m"}}}"#],
                    &[]
                )
            )
            .0,
            RunOutcome::Failed { message: "APIError: m".into() }
        );
        assert!(matches!(classify(exit(0), &log(&[], &[])).0, RunOutcome::Failed { .. }));
        assert!(matches!(
            classify(exit(0), &log(&[START, TOOLS], &[])).0,
            RunOutcome::Failed { .. }
        ));
        assert_eq!(classify(exit(3), &log(&[], &[])).1, Some(3));
        assert_eq!(
            classify(Ended::Hung(Duration::from_secs(7)), &log(&[], &[])).0,
            RunOutcome::Hung { silent_secs: 7, processes_idle: true, last_tool: None }
        );
        assert_eq!(
            classify(Ended::Exited(ExitStatus::from_raw(9)), &log(&[], &[])).0,
            RunOutcome::Failed { message: "opencode was killed by signal 9".into() }
        );
    }

    #[test]
    fn a_hung_run_names_the_last_finished_tool() {
        let bash = r#"{"type":"tool_use","sessionID":"ses_a","part":{"tool":"bash","state":{"status":"completed","input":{"command":"cargo build"},"title":"cargo build"}}}"#;
        let (outcome, code) = classify(
            Ended::Hung(Duration::from_secs(900)),
            &log(&[START, bash, TOOLS, START], &[]),
        );
        assert_eq!(code, None);
        assert_eq!(
            outcome,
            RunOutcome::Hung {
                silent_secs: 900,
                processes_idle: true,
                last_tool: Some("bash `cargo build`".into())
            }
        );
        assert_eq!(
            outcome.describe(),
            "hung: no output and no CPU or I/O in the agent's processes for 15 min; \
             last finished tool: bash `cargo build`"
        );
    }

    #[test]
    fn hung_records_old_and_new_read_and_describe() {
        // Written before the processes were watched: still read, described as then.
        let old: RunOutcome =
            serde_json::from_str(r#"{"outcome":"hung","silent_secs":60}"#).expect("old record");
        assert_eq!(
            old,
            RunOutcome::Hung { silent_secs: 60, processes_idle: false, last_tool: None }
        );
        assert_eq!(old.describe(), "hung: no output for 60s");
        assert_eq!(
            serde_json::to_string(&old).expect("json"),
            r#"{"outcome":"hung","silent_secs":60}"#
        );
        let new = RunOutcome::Hung {
            silent_secs: 61,
            processes_idle: true,
            last_tool: Some("write `src/main.rs`".into()),
        };
        let json = serde_json::to_string(&new).expect("json");
        assert_eq!(
            json,
            r#"{"outcome":"hung","silent_secs":61,"processes_idle":true,"last_tool":"write `src/main.rs`"}"#
        );
        assert_eq!(serde_json::from_str::<RunOutcome>(&json).expect("back"), new);
        assert_eq!(
            new.describe(),
            "hung: no output and no CPU or I/O in the agent's processes for 61s; \
             last finished tool: write `src/main.rs`"
        );
        let none = RunOutcome::Hung { silent_secs: 125, processes_idle: true, last_tool: None };
        assert_eq!(
            none.describe(),
            "hung: no output and no CPU or I/O in the agent's processes for 2 min 5s; \
             no tool call finished in this run"
        );
    }

    #[test]
    fn a_stopped_run_is_interrupted_by_the_signal_that_stopped_it() {
        let stop = Interrupt::new();
        stop.trigger(kugetsu_core::interrupt::signals::SIGHUP);
        assert_eq!(
            super::classify(Ended::Interrupted, &log(&[START], &[]), &stop),
            (RunOutcome::Interrupted { signal: "SIGHUP".into() }, None)
        );
    }
}
