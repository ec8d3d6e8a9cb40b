//! A provider refusing for a rate limit or a quota, as opencode shows it (see
//! [`kugetsu_core::pause`] for what kugetsu does about it).
//!
//! opencode 1.18.33 answered with `429` (with `Retry-After: 30`, or an `insufficient_quota`
//! body) prints nothing on stdout and retries forever, honouring `Retry-After`; its exit never
//! comes. With `--print-logs --log-level ERROR` each failed attempt is one stderr line:
//! `level=ERROR ... message="stream error" providerID=mock modelID=... error.error="AI_APICallError:
//! <the provider's message>"`. The line has neither the status nor the `Retry-After`, so the
//! kind is read from the provider's words (`rate limit`, `quota`, ...) and the reset time from
//! a "try again in 20s" in them when there is one; a stream error seen twice in one turn is a
//! refusal being retried whatever its words.
//!
//! opencode 2.1.2 shows the same retries on the session: its newest assistant message carries
//! `retry {attempt, at (ms), error {type: "provider.rate-limit", message, status: 429,
//! retryAfterMs}}` while it waits (its client prints one `step_start` per attempt and nothing
//! else). A quota error (`provider.quota`) is not retried there: the turn fails at once with
//! that error type, on stdout and on the session.

use kugetsu_core::pause::{LimitKind, ProviderLimit};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

/// The provider of a `provider/model` model name.
pub fn provider_of(model: Option<&str>) -> Option<String> {
    Some(model?.split_once('/')?.0.to_owned()).filter(|p| !p.is_empty())
}

/// The provider and message of a 1.x `stream error` log line.
pub fn parse_stream_error(line: &str) -> Option<(String, String)> {
    if !line.contains("level=ERROR") || !line.contains("message=\"stream error\"") {
        return None;
    }
    let provider = field(line, "providerID=")?;
    let message = field(line, "error.error=").unwrap_or_default();
    let message = message.strip_prefix("AI_APICallError:").map_or(message.as_str(), str::trim);
    Some((provider, message.to_owned()))
}

/// The value of `key` in a logfmt line: quoted (with `\"` escapes) or up to a space.
fn field(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!(" {key}"))? + 1 + key.len();
    let rest = &line[at..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                '"' => break,
                c => out.push(c),
            }
        }
        Some(out)
    } else {
        Some(rest.split(' ').next().unwrap_or_default().to_owned())
    }
}

/// The kind of refusal the provider's words tell, if they tell one.
pub fn kind_of(message: &str) -> Option<LimitKind> {
    let m = message.to_ascii_lowercase();
    if ["quota", "billing", "insufficient_quota", "credit balance", "out of credits"]
        .iter()
        .any(|w| m.contains(w))
    {
        return Some(LimitKind::Quota);
    }
    if ["rate limit", "rate_limit", "ratelimit", "too many requests", "429", "overloaded"]
        .iter()
        .any(|w| m.contains(w))
    {
        return Some(LimitKind::RateLimit);
    }
    None
}

/// A reset time in the provider's words ("try again in 20s", "in 1m30s", "in 250ms",
/// "retry after 30 seconds"), from `now`.
pub fn reset_in_words(message: &str, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let m = message.to_ascii_lowercase();
    let at = ["try again in ", "retry after ", "retry in ", "reset in "]
        .iter()
        .find_map(|p| m.find(p).map(|i| i + p.len()))?;
    let mut total = 0.0f64;
    let mut rest = &m[at..];
    let mut any = false;
    loop {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let Ok(n) = rest[..digits].parse::<f64>() else { break };
        let unit = rest[digits..].trim_start();
        let (scale, len) = if unit.starts_with("ms") {
            (0.001, 2)
        } else if unit.starts_with("min") {
            (60.0, 3)
        } else if unit.starts_with('m') {
            (60.0, 1)
        } else if unit.starts_with('h') {
            (3600.0, 1)
        } else if unit.starts_with('s') {
            (1.0, 1)
        } else {
            break;
        };
        total += n * scale;
        any = true;
        let skipped = unit[len..].trim_start_matches(|c: char| c.is_ascii_alphabetic());
        rest = skipped.trim_start();
    }
    (any && total.is_finite() && total < 7.0 * 86400.0)
        .then(|| now + Duration::milliseconds((total * 1000.0) as i64))
}

/// The refusal a 1.x `stream error` line tells, the `seen`th stream error of the turn
/// (counting from 1).
pub fn from_stream_error(
    provider: String,
    message: String,
    seen: u32,
    now: OffsetDateTime,
) -> Option<ProviderLimit> {
    let kind = kind_of(&message).or((seen >= 2).then_some(LimitKind::RateLimit))?;
    let until = reset_in_words(&message, now);
    Some(ProviderLimit { provider, kind, until, message })
}

/// The refusal a 2.x session's newest messages (`GET /api/session/ID/message`, newest first)
/// tell: a retry on a rate limit, or a turn failed on a quota or a rate limit. Only a message
/// made at or after `since_ms` (the turn's start, in ms) counts: an earlier turn's is not this
/// one's.
pub fn from_v2_messages(messages: &Value, since_ms: i64) -> Option<ProviderLimit> {
    let list = messages.get("data").unwrap_or(messages).as_array()?;
    let assistant =
        list.iter().find(|m| m.get("type").and_then(Value::as_str) == Some("assistant"))?;
    let created = assistant.pointer("/time/created").and_then(Value::as_i64).unwrap_or(i64::MAX);
    if created < since_ms {
        return None;
    }
    let provider = assistant
        .pointer("/model/providerID")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned();
    let (error, at) = match assistant.get("retry") {
        Some(retry) => (retry.get("error")?, retry.get("at").and_then(Value::as_i64)),
        None => (assistant.get("error")?, None),
    };
    let kind = v2_kind(error)?;
    let message = error.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
    let until = at
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok());
    Some(ProviderLimit { provider, kind, until, message })
}

/// The kind of a 2.x error (`{type, message, status}`), if it is a refusal for a limit.
pub fn v2_kind(error: &Value) -> Option<LimitKind> {
    match error.get("type").and_then(Value::as_str) {
        Some("provider.quota") => Some(LimitKind::Quota),
        Some("provider.rate-limit") => Some(LimitKind::RateLimit),
        _ if error.get("status").and_then(Value::as_u64) == Some(429) => Some(
            kind_of(error.get("message").and_then(Value::as_str).unwrap_or_default())
                .unwrap_or(LimitKind::RateLimit),
        ),
        _ => None,
    }
}

/// Whether a 2.x error event's type (`provider.quota`, `provider.rate-limit`) is a refusal
/// for a limit.
pub fn is_v2_limit_type(name: &str) -> bool {
    matches!(name, "provider.quota" | "provider.rate-limit")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// Lines as opencode 1.18.33 printed them against a mock answering 429.
    const RATE: &str = r#"timestamp=2026-12-07T15:09:30.076Z level=ERROR run=74817c93 message="stream error" providerID=mock modelID=mock-model session.id=ses_daef28167ffesg00cMPCvCBphp small=false agent=build mode=primary error.error="AI_APICallError: Rate limit reached for requests""#;
    const QUOTA: &str = r#"timestamp=2026-12-07T15:12:36.880Z level=ERROR run=870a75e2 message="stream error" providerID=mock modelID=mock-model session.id=ses_daeefa9d1ffeS95Svvkqj97kVr small=false agent=build mode=primary error.error="AI_APICallError: You exceeded your current quota, please check your plan and billing details.""#;

    #[test]
    fn stream_error_lines_of_1_18_33() {
        let now = datetime!(2026-12-07 15:00 UTC);
        let (p, m) = parse_stream_error(RATE).unwrap();
        assert_eq!((p.as_str(), m.as_str()), ("mock", "Rate limit reached for requests"));
        let limit = from_stream_error(p, m, 1, now).unwrap();
        assert_eq!((limit.kind, limit.until), (LimitKind::RateLimit, None));
        let (p, m) = parse_stream_error(QUOTA).unwrap();
        assert_eq!(from_stream_error(p, m, 1, now).unwrap().kind, LimitKind::Quota);
        // Unknown words: a refusal only once retried.
        assert!(from_stream_error("x".into(), "socket hang up".into(), 1, now).is_none());
        assert!(from_stream_error("x".into(), "socket hang up".into(), 2, now).is_some());
        assert!(
            parse_stream_error("timestamp=... level=INFO message=stream providerID=mock").is_none()
        );
    }

    #[test]
    fn reset_times_in_the_providers_words() {
        let now = datetime!(2026-12-07 15:00 UTC);
        let at = |m: &str| reset_in_words(m, now);
        assert_eq!(at("Please try again in 20s."), Some(datetime!(2026-12-07 15:00:20 UTC)));
        assert_eq!(at("try again in 1m30s"), Some(datetime!(2026-12-07 15:01:30 UTC)));
        assert_eq!(at("Retry after 2 minutes"), Some(datetime!(2026-12-07 15:02 UTC)));
        assert_eq!(at("try again in 250ms"), Some(datetime!(2026-12-07 15:00:00.25 UTC)));
        assert_eq!(at("Rate limit reached"), None);
        assert_eq!(at("try again in a while"), None);
    }

    #[test]
    fn v2_retry_and_quota_on_the_session() {
        let retry = serde_json::json!({"data": [{"type": "assistant",
            "model": {"id": "mock-model", "providerID": "mock"},
            "retry": {"attempt": 2, "at": 1796656332416i64, "error": {"type": "provider.rate-limit",
                "message": "Rate limit reached for requests", "status": 429, "retryAfterMs": 30000}}},
            {"type": "user", "text": "hi"}]});
        let limit = from_v2_messages(&retry, 0).unwrap();
        assert_eq!((limit.provider.as_str(), limit.kind), ("mock", LimitKind::RateLimit));
        assert_eq!(limit.until.unwrap().unix_timestamp(), 1796656332);
        let quota = serde_json::json!({"data": [{"type": "idle"}, {"type": "assistant",
            "model": {"providerID": "mock"}, "finish": "error",
            "error": {"type": "provider.quota", "message": "You exceeded your current quota", "status": 429}}]});
        assert_eq!(from_v2_messages(&quota, 0).unwrap().kind, LimitKind::Quota);
        let fine =
            serde_json::json!({"data": [{"type": "assistant", "model": {"providerID": "mock"}}]});
        assert!(from_v2_messages(&fine, 0).is_none());
        // An earlier turn's refusal is not this turn's.
        let old = serde_json::json!({"data": [{"type": "assistant", "time": {"created": 5},
            "model": {"providerID": "mock"}, "error": {"type": "provider.quota", "message": "q"}}]});
        assert!(from_v2_messages(&old, 6).is_none());
        assert!(from_v2_messages(&old, 5).is_some());
    }
}
