//! The routes. Reads return exactly what the matching command prints with `--json`: the same
//! read of [`crate::reads`], serialized the same way. Actions do what the matching command
//! does, through the same calls. Nothing that answers a `GET` changes the state.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use kugetsu_core::agent::AgentEvent;
use kugetsu_core::logs::Logs;
use kugetsu_core::notify::Notifications;
use kugetsu_core::queue::TaskQueue;

use super::App;
use super::logs::{find_log, newest_log_of};
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

/// Runs `f` (a read, or an action) on the blocking pool; what it returns, as `--json` prints
/// it, is the response.
async fn run<T, F>(app: App, f: F) -> Response
where
    T: serde::Serialize,
    F: FnOnce(&Ctx) -> Result<T, CliError> + Send + 'static,
{
    let result = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        match f(&app.ctx).and_then(|value| app.ctx.print_json(&mut out, &value)) {
            Ok(()) => json_body(&app, StatusCode::OK, &out),
            Err(e) => error_body(&app, &e),
        }
    })
    .await;
    result.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The queue, as every `queue` subcommand gets it.
fn task_queue(ctx: &Ctx) -> Result<Arc<dyn TaskQueue>, CliError> {
    ctx.state.ensure()?;
    crate::queue_backend::queue(ctx, &ctx.config()?)
}

/// `kugetsu list --json`.
async fn sessions(State(app): State<App>) -> Response {
    run(app, crate::reads::sessions).await
}

/// `kugetsu queue list --json`.
async fn queue(State(app): State<App>) -> Response {
    run(app, |ctx| crate::reads::queue(ctx, task_queue(ctx)?.as_ref())).await
}

/// `kugetsu notify list --json`.
async fn notifications(State(app): State<App>) -> Response {
    run(app, |ctx| {
        ctx.state.check()?;
        crate::reads::notifications(&Notifications::new(&ctx.state), false)
    })
    .await
}

/// `kugetsu status --json` (a state other than `ok` is no error here).
async fn status(State(app): State<App>) -> Response {
    run(app, crate::reads::status).await
}

async fn events(State(app): State<App>) -> Response {
    super::events::changes(app.changes.clone()).into_response()
}

async fn logs(State(app): State<App>) -> Response {
    run(app, |ctx| {
        let entries = Logs::new(&ctx.state).list()?;
        let v: Vec<_> = entries
            .iter()
            .map(|e| serde_json::json!({"name": e.name, "path": e.path, "time": kugetsu_core::logs::timestamp(e.time), "size": e.size}))
            .collect();
        Ok(v)
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

async fn issue_log(State(app): State<App>, Query(q): Query<RefQuery>) -> Response {
    run(app, move |ctx| {
        let issue = ctx.parse_issue(&q.issue_ref)?;
        let entries = Logs::new(&ctx.state).list()?;
        let name = newest_log_of(&entries, &issue.file_name());
        Ok(serde_json::json!({"issue_ref": issue.to_string(), "log": name}))
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
    run(app, move |ctx| {
        let item = crate::wiring::enqueue(ctx, &message(body.message)?, None, Default::default())?;
        let daemon = kugetsu_queue::daemon::status(&ctx.state).map(|s| s.running).unwrap_or(false);
        Ok(serde_json::json!({"queued": item.id, "daemon_running": daemon}))
    })
    .await
}

/// `kugetsu queue enqueue <issue> <message>`.
async fn enqueue(State(app): State<App>, Json(body): Json<IssueMessage>) -> Response {
    run(app, move |ctx| {
        task_queue(ctx)?;
        let issue = ctx.parse_issue(&body.issue_ref)?;
        let message = message(body.message)?;
        crate::wiring::enqueue(ctx, &message, Some(issue.to_string()), Default::default())
    })
    .await
}

/// `kugetsu continue --detach <issue> <message>`, for an issue that runs no turn now.
async fn continue_(State(app): State<App>, Json(body): Json<IssueMessage>) -> Response {
    let result = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        match detach_continue(&app.ctx, body, &mut out) {
            Ok(()) => json_body(&app, StatusCode::OK, &out),
            Err(e) => error_body(&app, &e),
        }
    })
    .await;
    result.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Re-runs `continue` in the background as `--detach` does; it writes what it started.
fn detach_continue(ctx: &Ctx, body: IssueMessage, out: &mut Vec<u8>) -> Result<(), CliError> {
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
        return Err(
            kugetsu_core::orchestrator::OrchestratorError::AlreadyRunning { issue: key }.into()
        );
    }
    crate::run::detach(ctx, "continue", &issue, &message, &[], out)
}

/// Stops an issue's running turn: recorded `interrupted`, as Ctrl-C on its `start` would.
async fn stop(State(app): State<App>, Json(body): Json<Issue>) -> Response {
    run(app, move |ctx| {
        let issue = ctx.parse_issue(&body.issue_ref)?;
        let state = ctx.orchestrator()?.request_stop(&issue, "the dashboard")?;
        Ok(serde_json::json!({"issue_ref": issue.to_string(), "state": state.to_string(), "stop_requested": true}))
    })
    .await
}

/// `kugetsu queue retry <id>`.
async fn retry(State(app): State<App>, Json(body): Json<Item>) -> Response {
    run(app, move |ctx| crate::wiring::retry(ctx, task_queue(ctx)?.as_ref(), &body.id)).await
}

/// `kugetsu queue clear`.
async fn clear(State(app): State<App>) -> Response {
    run(app, |ctx| {
        let queue = task_queue(ctx)?;
        let removed = crate::wiring::clear_finished(&ctx.config()?, queue.as_ref())?;
        Ok(serde_json::json!({"removed": removed}))
    })
    .await
}
