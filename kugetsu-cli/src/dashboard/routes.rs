//! The routes. Reads return exactly what the matching command prints with `--json` (they run
//! the command itself into a buffer); actions do what the matching command does, through the
//! same calls; nothing that answers a `GET` changes the state.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use kugetsu_core::agent::AgentEvent;
use kugetsu_core::logs::{LogEntry, Logs};

use super::App;
use crate::commands;
use crate::context::Ctx;
use crate::error::{CliError, exit};

/// Most of a log `GET /api/logs/<name>` returns.
const MAX_LOG_BYTES: u64 = 1 << 20;

/// Every route, behind the token.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(super::page::full))
        .route("/fragment", get(super::page::fragment))
        .route("/assets/app.js", get(super::page::script))
        .route("/assets/app.css", get(super::page::style))
        // Browsers ask for it on their own; there is none (and no console error for it).
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/sessions", get(sessions))
        .route("/api/queue", get(queue))
        .route("/api/notifications", get(notifications))
        .route("/api/status", get(status))
        .route("/api/events", get(events))
        .route("/api/logs", get(logs))
        .route("/api/logs/{name}", get(log))
        .route("/api/logs/{name}/events", get(log_events))
        .route("/api/issue-log", get(issue_log))
        .route("/api/delegate", post(delegate))
        .route("/api/enqueue", post(enqueue))
        .route("/api/continue", post(continue_))
        .route("/api/stop", post(stop))
        .route("/api/queue/retry", post(retry))
        .route("/api/queue/clear", post(clear))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(DefaultBodyLimit::max(super::server::MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(app.clone(), super::auth::require_token))
        .with_state(app)
}

/// A JSON body, redacted.
fn json_body(app: &App, status: StatusCode, bytes: &[u8]) -> Response {
    let text = app.redact(&String::from_utf8_lossy(bytes));
    let mut r = (status, text).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A command's failure as `{"error": ..., "hint": ...}`: 400 for bad input, 409 when the state
/// does not allow it (busy, not running, not initialized), 404 when it names nothing.
fn error_body(app: &App, e: &CliError) -> Response {
    let status = match e.code {
        exit::USAGE => StatusCode::BAD_REQUEST,
        _ if e.message.contains("not found") || e.message.starts_with("no session for") => {
            StatusCode::NOT_FOUND
        }
        _ => StatusCode::CONFLICT,
    };
    let body = serde_json::json!({"error": e.message, "hint": e.hint});
    json_body(app, status, body.to_string().as_bytes())
}

/// Runs `f` (a command writing JSON, or a library call) on the blocking pool; its output is
/// the response.
async fn run<F>(app: App, f: F) -> Response
where
    F: FnOnce(&Ctx, &mut Vec<u8>) -> Result<(), CliError> + Send + 'static,
{
    let result = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let result = f(&app.ctx, &mut out);
        match result {
            Ok(()) => json_body(&app, StatusCode::OK, &out),
            // `status` reports a state that is not `ok` with its JSON and a silent failure.
            Err(e) if e.message.is_empty() && !out.is_empty() => {
                json_body(&app, StatusCode::OK, &out)
            }
            Err(e) => error_body(&app, &e),
        }
    })
    .await;
    result.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn sessions(State(app): State<App>) -> Response {
    run(app, |ctx, out| commands::list::cmd_list(ctx, &commands::list::ListArgs {}, out)).await
}

async fn queue(State(app): State<App>) -> Response {
    run(app, |ctx, out| {
        let args = commands::queue::QueueArgs { action: commands::queue::QueueAction::List };
        commands::queue::cmd_queue(ctx, &args, out)
    })
    .await
}

async fn notifications(State(app): State<App>) -> Response {
    run(app, |ctx, out| {
        let args = commands::notify::NotifyArgs {
            action: Some(commands::notify::NotifyAction::List { all: false }),
        };
        commands::notify::cmd_notify(ctx, &args, out)
    })
    .await
}

async fn status(State(app): State<App>) -> Response {
    run(app, |ctx, out| commands::status::cmd_status(ctx, &commands::status::StatusArgs {}, out))
        .await
}

async fn events(State(app): State<App>) -> Response {
    super::events::changes(app.changes.clone()).into_response()
}

/// A log's name as the API takes it: a plain file name of `logs/` (what `Logs` lists), so no
/// name can step outside it.
pub fn valid_log_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// The listed log called `name`: 400 for a name that is no plain file name, 404 for one that
/// names no log.
fn find_log(ctx: &Ctx, name: &str) -> Result<LogEntry, CliError> {
    if !valid_log_name(name) {
        return Err(CliError::usage(format!("invalid log name {name:?}")));
    }
    let logs = Logs::new(&ctx.state).list()?;
    logs.into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| CliError::new(exit::FAILURE, format!("log {name} not found")))
}

async fn logs(State(app): State<App>) -> Response {
    run(app, |ctx, out| {
        let entries = Logs::new(&ctx.state).list()?;
        let v: Vec<_> = entries
            .iter()
            .map(|e| serde_json::json!({"name": e.name, "path": e.path, "time": kugetsu_core::logs::timestamp(e.time), "size": e.size}))
            .collect();
        ctx.print_json(out, &v)
    })
    .await
}

#[derive(Deserialize)]
struct LogQuery {
    bytes: Option<u64>,
}

async fn log(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    let result = tokio::task::spawn_blocking(move || {
        let text = find_log(&app.ctx, &name).and_then(|entry| {
            let bytes = q.bytes.unwrap_or(MAX_LOG_BYTES).min(MAX_LOG_BYTES);
            Ok(Logs::new(&app.ctx.state).tail(&entry, bytes)?)
        });
        match text {
            Ok(t) => {
                let mut r = app.redact(&t).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                r
            }
            Err(e) => error_body(&app, &e),
        }
    })
    .await;
    result.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A run log's line as people read it: an agent event as `kugetsu start` prints it, kugetsu's
/// own `===` lines as they are, the agent's other JSON lines (step markers) left out.
/// `log_events` is the configured driver's reading of its lines.
pub fn render_log_line(log_events: fn(&str) -> Vec<AgentEvent>, line: &str) -> Vec<String> {
    let line = line.replace('\r', "");
    if !line.trim_start().starts_with('{') {
        return if line.trim().is_empty() { Vec::new() } else { vec![line] };
    }
    let events = log_events(&line);
    let mut buf = Vec::new();
    {
        let mut printer = crate::progress::EventPrinter::new(&mut buf, false);
        for e in &events {
            kugetsu_core::agent::EventSink::event(&mut printer, e);
        }
    }
    String::from_utf8_lossy(&buf).lines().map(|l| l.trim().to_owned()).collect()
}

async fn log_events(State(app): State<App>, Path(name): Path<String>) -> Response {
    let ctx = app.ctx.clone();
    // The config is read for the driver that reads the lines: off the async threads too.
    let found = tokio::task::spawn_blocking(move || {
        find_log(&ctx, &name).map(|e| (e, crate::agents::entry_or_default(&ctx).log_events))
    })
    .await;
    match found {
        Ok(Ok((entry, log_events))) => {
            let redactor = app.clone();
            let render: super::events::Render = Arc::new(move |line: &str| {
                render_log_line(log_events, line).into_iter().map(|l| redactor.redact(&l)).collect()
            });
            super::events::follow(entry.path, render).into_response()
        }
        Ok(Err(e)) => error_body(&app, &e),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[derive(Deserialize)]
struct RefQuery {
    #[serde(rename = "ref")]
    issue_ref: String,
}

/// The newest run log of an issue, by the name its runs give their logs.
pub fn newest_log_of(entries: &[LogEntry], file_name: &str) -> Option<String> {
    let suffix = format!("-{file_name}.log");
    entries.iter().rev().find(|e| e.name.ends_with(&suffix)).map(|e| e.name.clone())
}

async fn issue_log(State(app): State<App>, Query(q): Query<RefQuery>) -> Response {
    run(app, move |ctx, out| {
        let issue = ctx.parse_issue(&q.issue_ref)?;
        let entries = Logs::new(&ctx.state).list()?;
        let name = newest_log_of(&entries, &issue.file_name());
        ctx.print_json(out, &serde_json::json!({"issue_ref": issue.to_string(), "log": name}))
    })
    .await
}

#[derive(Deserialize)]
struct Message {
    message: String,
}

#[derive(Deserialize)]
struct IssueMessage {
    issue_ref: String,
    message: String,
}

#[derive(Deserialize)]
struct Issue {
    issue_ref: String,
}

#[derive(Deserialize)]
struct Item {
    id: String,
}

/// A message as the commands take it, minus `-` (which they read from their stdin).
fn message(text: String) -> Result<String, CliError> {
    if text.trim() == "-" {
        return Err(CliError::usage("the message is `-`: write the message itself"));
    }
    if text.trim().is_empty() {
        return Err(CliError::usage("the message is empty"));
    }
    Ok(text)
}

/// `kugetsu delegate <message>`.
async fn delegate(State(app): State<App>, Json(body): Json<Message>) -> Response {
    run(app, move |ctx, out| {
        let args = commands::delegate::DelegateArgs { message: message(body.message)? };
        commands::delegate::cmd_delegate(ctx, &args, out)
    })
    .await
}

/// `kugetsu queue enqueue <issue> <message>`.
async fn enqueue(State(app): State<App>, Json(body): Json<IssueMessage>) -> Response {
    run(app, move |ctx, out| {
        let action = commands::queue::QueueAction::Enqueue {
            issue_ref: body.issue_ref,
            message: message(body.message)?,
        };
        commands::queue::cmd_queue(ctx, &commands::queue::QueueArgs { action }, out)
    })
    .await
}

/// `kugetsu continue --detach <issue> <message>`, for an issue that runs no turn now.
async fn continue_(State(app): State<App>, Json(body): Json<IssueMessage>) -> Response {
    run(app, move |ctx, out| {
        let issue = ctx.parse_issue(&body.issue_ref)?;
        let message = message(body.message)?;
        let key = issue.to_string();
        let sessions = ctx.orchestrator()?.list_sessions()?;
        let Some(view) = sessions.iter().find(|v| v.entry.issue_ref == key) else {
            return Err(
                kugetsu_core::orchestrator::OrchestratorError::UnknownIssue { issue: key }.into()
            );
        };
        if view.entry.state == Some(kugetsu_core::SessionState::Running) {
            return Err(kugetsu_core::orchestrator::OrchestratorError::AlreadyRunning {
                issue: key,
            }
            .into());
        }
        let args = commands::continue_::ContinueArgs {
            issue_ref: key,
            message,
            run: crate::run::RunFlags { detach: true, no_wait: false, wait: None },
        };
        commands::continue_::cmd_continue(ctx, &args, out)
    })
    .await
}

/// Stops an issue's running turn: recorded `interrupted`, as Ctrl-C on its `start` would.
async fn stop(State(app): State<App>, Json(body): Json<Issue>) -> Response {
    run(app, move |ctx, out| {
        let issue = ctx.parse_issue(&body.issue_ref)?;
        let state = ctx.orchestrator()?.request_stop(&issue, "the dashboard")?;
        ctx.print_json(
            out,
            &serde_json::json!({"issue_ref": issue.to_string(), "state": state.to_string(), "stop_requested": true}),
        )
    })
    .await
}

/// `kugetsu queue retry <id>`.
async fn retry(State(app): State<App>, Json(body): Json<Item>) -> Response {
    run(app, move |ctx, out| {
        let action = commands::queue::QueueAction::Retry { id: body.id };
        commands::queue::cmd_queue(ctx, &commands::queue::QueueArgs { action }, out)
    })
    .await
}

/// `kugetsu queue clear`.
async fn clear(State(app): State<App>) -> Response {
    run(app, |ctx, out| {
        let args = commands::queue::QueueArgs { action: commands::queue::QueueAction::Clear };
        commands::queue::cmd_queue(ctx, &args, out)
    })
    .await
}
