//! The parser and the classifier on lines shaped like Claude Code 2.1.328's.

use kugetsu_claude::events::EventLog;
use kugetsu_claude::outcome::classify_exit;
use kugetsu_core::agent::{AgentEvent, RunOutcome, ToolStatus};

fn log(lines: &[&str]) -> EventLog {
    let mut l = EventLog::default();
    for line in lines {
        l.stdout_line(line);
    }
    l
}

const INIT: &str = r#"{"type":"system","subtype":"init","session_id":"0b7c2f4e-1a2b-4c3d-8e9f-001122334455","cwd":"/w","tools":["Bash"]}"#;
const TOOL_USE: &str = r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"git status\nmore"}}],"usage":{"input_tokens":3}}}"#;
const TOOL_OK: &str = r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"clean","is_error":false}]}}"#;
const SUCCESS: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":0.0124,"stop_reason":"end_turn","terminal_reason":"completed","usage":{"input_tokens":40,"cache_creation_input_tokens":2000,"cache_read_input_tokens":10000,"output_tokens":12},"permission_denials":[]}"#;

#[test]
fn a_tool_turn_reads_as_start_tool_text_and_finish() {
    let text = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"all good"}]}}"#;
    let l = log(&[
        INIT,
        TOOL_USE,
        TOOL_OK,
        text,
        SUCCESS,
        "not json",
        r#"{"type":"system","subtype":"brand_new"}"#,
    ]);
    assert_eq!(
        l.session.as_ref().map(|s| s.as_str()),
        Some("0b7c2f4e-1a2b-4c3d-8e9f-001122334455")
    );
    assert_eq!(
        l.events,
        vec![
            AgentEvent::StepStart,
            AgentEvent::ToolUse {
                tool: "Bash".into(),
                status: ToolStatus::Completed,
                title: Some("git status".into()),
                error: None
            },
            AgentEvent::Text { text: "all good".into() },
            AgentEvent::StepFinish { reason: "end_turn".into(), tokens: Some(12052) },
        ]
    );
    let result = l.result.as_ref().expect("result");
    assert_eq!(result.cost_usd, Some(0.0124));
    assert_eq!(result.usage.cache_read, 10000);
    assert_eq!(l.last_tool().as_deref(), Some("Bash `git status`"));
    assert_eq!(classify_exit(Some(0), &l), RunOutcome::Completed);
}

#[test]
fn a_refused_call_is_blocked_though_the_run_succeeded() {
    let denied = r#"{"type":"system","subtype":"permission_denied","tool_name":"Bash","tool_use_id":"toolu_1","message":"needs approval","decision_reason_type":"user-rejected"}"#;
    let refused = r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"needs approval","is_error":true}]}}"#;
    let result = r#"{"type":"result","subtype":"success","is_error":false,"result":"could not","permission_denials":[{"tool_name":"Bash","tool_use_id":"toolu_1","tool_input":{"command":"curl x"}},{"tool_name":"Write","tool_use_id":"toolu_2","tool_input":{"file_path":"/etc/x"}}]}"#;
    let l = log(&[
        INIT,
        TOOL_USE.replace("git status\\nmore", "curl x").as_str(),
        denied,
        refused,
        result,
    ]);
    assert!(
        l.events.contains(&AgentEvent::PermissionRejected { permission: "Bash `curl x`".into() })
    );
    assert!(l.events.contains(&AgentEvent::ToolUse {
        tool: "Bash".into(),
        status: ToolStatus::Error,
        title: Some("curl x".into()),
        error: Some("needs approval".into())
    }));
    assert_eq!(
        classify_exit(Some(0), &l),
        RunOutcome::Blocked { permission: "Bash `curl x`, Write `/etc/x`".into() }
    );
}

#[test]
fn an_api_error_after_retries_fails_whatever_the_subtype() {
    let retry = r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":34000,"error_status":429,"error":"rate_limit"}"#;
    let synthetic = r#"{"type":"assistant","is_api_error_message":true,"message":{"model":"<synthetic>","content":[{"type":"text","text":"API Error"}]}}"#;
    let result = r#"{"type":"result","subtype":"success","is_error":true,"terminal_reason":"api_error","api_error_status":429,"api_error_type":"rate_limit_error","result":"API Error: Request rejected (429) · slow down","permission_denials":[]}"#;
    let l = log(&[INIT, retry, retry, synthetic, result]);
    assert_eq!(l.retries.len(), 2);
    assert_eq!(l.retries[0].status, Some(429));
    assert!(l.events.contains(&AgentEvent::Error {
        name: "rate_limit_error".into(),
        message: "API Error: Request rejected (429) · slow down".into()
    }));
    assert!(!l.events.iter().any(|e| matches!(e, AgentEvent::Text { .. })), "{:?}", l.events);
    match classify_exit(Some(1), &l) {
        RunOutcome::Failed { message } => {
            assert!(message.starts_with("API Error: Request rejected (429)"), "{message}");
            assert!(message.contains("after 2 retries; last: rate_limit 429"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_result_is_a_failure_with_the_stderr_words() {
    let mut l = log(&[]);
    l.stderr_line("Error: Session ID x is already in use.\n");
    assert_eq!(
        classify_exit(Some(1), &l),
        RunOutcome::Failed { message: "Error: Session ID x is already in use.".into() }
    );
    // SIGINT from outside: exit 0 and no result.
    let l = log(&[INIT, TOOL_USE]);
    assert!(matches!(classify_exit(Some(0), &l), RunOutcome::Failed { .. }));
    let unknown = r#"{"type":"result","subtype":"error_during_execution","is_error":true,"errors":["No conversation found with session ID: x"]}"#;
    assert_eq!(
        classify_exit(Some(1), &log(&[unknown])),
        RunOutcome::Failed { message: "No conversation found with session ID: x".into() }
    );
}

#[test]
fn a_turn_costs_the_growth_of_the_sessions_total() {
    let l = log(&[INIT, SUCCESS]);
    let spend = l.turn_spend(Some(0.0100)).expect("a result");
    assert!((spend.cost_usd.expect("cost") - 0.0024).abs() < 1e-9, "{spend:?}");
    assert_eq!(spend.usage.total(), 12052);
    assert_eq!(l.turn_spend(None).and_then(|s| s.cost_usd), Some(0.0124));
    assert!(log(&[INIT]).turn_spend(None).is_none());
}

/// Lines as 2.1.328 printed them against a stand-in answering 429 (`retry-after: 1`) and a
/// used-up credit balance (400 `Your credit balance is too low...`).
#[test]
fn a_429_retry_and_a_billing_error_are_refusals_for_a_limit() {
    use kugetsu_core::pause::LimitKind;
    let retry = r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":1,"retry_delay_ms":1023,"error_status":429,"error":"rate_limit","session_id":"b2b15114-64c8-48c3-9b96-7dbea2fee3d0"}"#;
    let before = time::OffsetDateTime::now_utc();
    let mut l = EventLog::for_provider("anthropic");
    let events = l.stdout_line(retry);
    let [AgentEvent::ProviderLimited(limit)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!((limit.provider.as_str(), limit.kind), ("anthropic", LimitKind::RateLimit));
    assert!(limit.until.is_some_and(|t| t >= before + time::Duration::milliseconds(1023)));
    // Told once, however many retries follow.
    assert!(l.stdout_line(retry).is_empty());

    let overloaded = r#"{"type":"system","subtype":"api_retry","attempt":1,"retry_delay_ms":600,"error_status":529,"error":"overloaded"}"#;
    assert!(log(&[overloaded]).provider_limit.is_none());

    let billing = r#"{"type":"assistant","message":{"model":"<synthetic>","role":"assistant","content":[{"type":"text","text":"Credit balance is too low"}]},"error":"billing_error","api_error_status":400,"is_api_error_message":true}"#;
    let l = log(&[billing]);
    let limit = l.provider_limit.expect("a refusal");
    assert_eq!((limit.kind, limit.until), (LimitKind::Quota, None));
    assert_eq!(
        (limit.provider.as_str(), limit.message.as_str()),
        ("anthropic", "Credit balance is too low")
    );
}
