//! The page: rendered here from the same library calls as `list`, `queue list`, `notify list`
//! and `status`, every value escaped by `html-escape`, with one script and one style sheet
//! served by kugetsu itself (no build step, no CDN). The script keeps the token, follows
//! `/api/events` and swaps in a fresh `/fragment` on every change.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use kugetsu_core::logs::Logs;
use kugetsu_core::notify::Notifications;
use kugetsu_core::orchestrator::SessionView;
use kugetsu_core::queue::{QueueItem, QueueStatus};
use kugetsu_core::{IssueRef, SessionKind};

use super::App;
use crate::context::{Ctx, human_time};
use crate::error::CliError;

/// Rows of one queue state shown before "and N more".
const QUEUE_ROWS: usize = 200;
/// Notifications shown (newest first).
const NOTIFICATION_ROWS: usize = 30;

const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// What no page of the dashboard may do: load anything from elsewhere, run inline script, be
/// framed, or send its URL (with a token in it) on.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn html(app: &App, body: String) -> Response {
    let mut r = app.redact(&body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn render(app: App, whole: bool) -> Response {
    let result = tokio::task::spawn_blocking(move || {
        let live = match live(&app.ctx) {
            Ok(s) => s,
            Err(e) => format!("<p class=\"problem\">{}</p>", text(&e.render())),
        };
        let body = if whole { page(&live) } else { live };
        html(&app, body)
    })
    .await;
    result.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `GET /`: the whole page.
pub async fn full(State(app): State<App>) -> Response {
    render(app, true).await
}

/// `GET /` without the token (a reload: the tab keeps the token): the page without the state,
/// which its script then asks for with the token.
pub async fn shell(app: App) -> Response {
    let result = tokio::task::spawn_blocking(move || html(&app, page("<p>loading…</p>"))).await;
    result.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `GET /fragment`: the part of the page that changes.
pub async fn fragment(State(app): State<App>) -> Response {
    render(app, false).await
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// `GET /assets/app.js`.
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /assets/app.css`.
pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

fn page(live: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>kugetsu</title>
<link rel="stylesheet" href="/assets/app.css">
<script src="/assets/app.js" defer></script>
</head>
<body>
<header><h1>kugetsu</h1><span id="conn" class="badge">connecting</span><span id="said"></span></header>
<main>
<div id="live">{live}</div>
<section id="act">
<h2>Ask</h2>
<form id="delegate-form">
<label>Request for the PM agent<textarea name="message" rows="2" required></textarea></label>
<button type="submit">Delegate</button>
</form>
<form id="issue-form">
<label>Issue<input name="issue_ref" placeholder="github.com/owner/repo#14" required></label>
<label>Message<textarea name="message" rows="2" required></textarea></label>
<button type="submit" data-to="enqueue">Enqueue</button>
<button type="submit" data-to="continue">Continue now</button>
</form>
</section>
<section id="logview" hidden>
<h2>Log <span id="logname"></span> <button type="button" id="logclose">close</button></h2>
<pre id="logtext"></pre>
</section>
</main>
</body>
</html>
"#
    )
}

/// The changing part of the page, from the state files.
fn live(ctx: &Ctx) -> Result<String, CliError> {
    let mut s = String::new();
    let orch = ctx.orchestrator()?;
    let status = orch.status()?;
    let daemon = kugetsu_queue::daemon::status(&ctx.state).map(|d| d.running).unwrap_or(false);
    let spent = crate::reads::status(ctx)
        .ok()
        .and_then(|v| Some((v.today?, v.this_month?)))
        .map(|(today, month)| {
            format!(
                r#" · spent today (UTC) <b id="spent-today">{}</b>, this month <b id="spent-month">{}</b>"#,
                text(&today.cost_text()),
                text(&month.cost_text())
            )
        })
        .unwrap_or_default();
    let _ = write!(
        s,
        r#"<section id="summary"><p>status <b class="st-{0}">{0}</b> · queue daemon <b>{1}</b>{spent}</p></section>"#,
        text(status.as_str()),
        if daemon { "running" } else { "not running" },
    );
    let sessions = if status == kugetsu_core::orchestrator::Status::KugetsuNotInitialized {
        Vec::new()
    } else {
        orch.list_sessions()?
    };
    let logs = Logs::new(&ctx.state).list().unwrap_or_default();
    sessions_table(&mut s, &sessions, &logs);
    let queue = crate::queue_backend::queue(ctx, &ctx.config()?)?;
    let listing = crate::reads::queue(ctx, queue.as_ref())?;
    for line in &listing.paused {
        let _ = write!(s, r#"<p class="paused">dispatch {}</p>"#, text(line));
    }
    queue_table(&mut s, &listing.items, &listing.problems);
    let notes = crate::reads::notifications(&Notifications::new(&ctx.state), false)?;
    let _ = write!(s, r#"<section id="notifications"><h2>Notifications</h2><ul>"#);
    for n in notes.notifications.iter().rev().take(NOTIFICATION_ROWS) {
        let _ = write!(
            s,
            r#"<li><time>{}</time> <span class="kind">{}</span> {} {}</li>"#,
            text(&human_time(n.timestamp)),
            text(n.kind.as_str()),
            text(n.issue_ref.as_deref().unwrap_or("")),
            text(&n.message),
        );
    }
    let _ = write!(s, "</ul></section>");
    Ok(s)
}

fn sessions_table(s: &mut String, sessions: &[SessionView], logs: &[kugetsu_core::logs::LogEntry]) {
    let _ = write!(
        s,
        r#"<section id="sessions"><h2>Agents</h2><table><thead><tr><th>Issue</th><th>State</th><th>Branch · worktree</th><th>Agent pid</th><th>Last turn</th><th>Cost</th><th></th></tr></thead><tbody>"#
    );
    let mut total = kugetsu_core::usage::UsageTotals::default();
    for v in sessions {
        if let Some(u) = v.file.as_ref().and_then(|f| f.usage.as_ref()) {
            total.merge(u);
        }
        let e = &v.entry;
        let state = e.state.as_ref().map_or_else(|| "?".to_owned(), ToString::to_string);
        let file = v.file.as_ref();
        let (label, log) = match e.kind {
            SessionKind::Base => ("base session".to_owned(), None),
            SessionKind::PmAgent => (
                "PM agent".to_owned(),
                super::logs::newest_log_of(logs, kugetsu_core::orchestrator::PM_AGENT),
            ),
            SessionKind::Forked => (
                e.issue_ref.clone(),
                IssueRef::parse(&e.issue_ref)
                    .ok()
                    .and_then(|r| super::logs::newest_log_of(logs, &r.file_name())),
            ),
        };
        let place = match (file.and_then(|f| f.branch.as_deref()), &e.worktree, &e.problem) {
            (_, _, Some(p)) => format!(r#"<span class="problem">{}</span>"#, text(p)),
            (b, w, None) => format!(
                "{}<br><small>{}</small>",
                text(b.unwrap_or("")),
                text(&w.as_ref().map(|w| w.display().to_string()).unwrap_or_default())
            ),
        };
        let pid = file.and_then(|f| f.agent_pid).map(|p| p.to_string()).unwrap_or_default();
        let last = file.and_then(|f| f.last_run.as_ref()).map_or_else(String::new, |r| {
            format!(
                "{}<br><small>{} → {}</small>",
                text(&r.outcome.describe()),
                text(&human_time(r.started_at)),
                text(&human_time(r.finished_at))
            )
        });
        let mut actions = String::new();
        if e.kind == SessionKind::Forked {
            if state == "running" {
                let _ = write!(
                    actions,
                    r#"<button type="button" class="stop" data-action="stop" data-ref="{}">stop</button>"#,
                    attr(&e.issue_ref)
                );
            } else {
                let _ = write!(
                    actions,
                    r#"<button type="button" data-action="pick" data-ref="{}">continue…</button>"#,
                    attr(&e.issue_ref)
                );
            }
        }
        if let Some(log) = &log {
            let _ = write!(
                actions,
                r#" <button type="button" data-action="log" data-log="{}">log</button>"#,
                attr(log)
            );
        }
        let _ = write!(
            s,
            r#"<tr data-ref="{ref_attr}" data-state="{state_attr}"><td>{label}</td><td><span class="badge st-{state_attr}">{state}</span></td><td>{place}</td><td>{pid}</td><td>{last}</td><td class="cost">{cost}</td><td class="actions">{actions}</td></tr>"#,
            ref_attr = attr(&e.issue_ref),
            state_attr = attr(&state),
            label = text(&label),
            state = text(&state),
            cost = text(&e.cost_text()),
        );
    }
    let _ = write!(
        s,
        r#"</tbody><tfoot><tr><td colspan="5">total</td><td class="cost" id="cost-total">{}</td><td></td></tr></tfoot></table></section>"#,
        text(&total.cost_text())
    );
}

fn queue_table(s: &mut String, items: &[QueueItem], problems: &[String]) {
    let _ = write!(
        s,
        r#"<section id="queue"><h2>Queue <button type="button" data-action="clear">clear finished</button></h2><table><thead><tr><th>Item</th><th>State</th><th>Issue</th><th>Message</th><th>Detail</th><th></th></tr></thead><tbody>"#
    );
    let order =
        [QueueStatus::Notified, QueueStatus::Pending, QueueStatus::Error, QueueStatus::Completed];
    for status in order {
        let of: Vec<&QueueItem> = items.iter().filter(|i| i.status == status).collect();
        // Finished items newest first; waiting ones in the order they will run.
        let rows: Vec<&&QueueItem> = if status.is_final() {
            of.iter().rev().take(QUEUE_ROWS).collect()
        } else {
            of.iter().take(QUEUE_ROWS).collect()
        };
        for item in rows {
            let mut detail = String::new();
            if let Some(c) = &item.claim {
                let _ = write!(
                    detail,
                    "running on {} (pid {}{})",
                    text(c.host.as_deref().unwrap_or("this host")),
                    c.owner_pid,
                    c.agent_pid.map(|p| format!(", agent {p}")).unwrap_or_default()
                );
            }
            if item.attempts > 0 {
                let _ = write!(detail, " attempt {}", item.attempts);
            }
            if let Some(at) = item.not_before.filter(|_| item.status == QueueStatus::Pending) {
                let _ = write!(detail, " · retry at {}", text(&human_time(at)));
            }
            if let Some(why) = item.held.as_ref().filter(|_| item.status == QueueStatus::Pending) {
                let _ = write!(detail, r#" <span class="held">{}</span>"#, text(why));
            } else if let Some(err) = &item.last_error {
                let _ = write!(detail, r#" <span class="problem">{}</span>"#, text(err));
            }
            if let Some(u) = item.usage.filter(|_| item.status.is_final()) {
                let _ =
                    write!(detail, " · cost {}", text(&kugetsu_core::usage::cost_text(u.cost_usd)));
            }
            let action = if item.status == QueueStatus::Error {
                format!(
                    r#"<button type="button" data-action="retry" data-id="{}">retry</button>"#,
                    attr(&item.id)
                )
            } else {
                String::new()
            };
            let label = match (item.status, item.not_before) {
                (QueueStatus::Pending, _) if item.held.is_some() => "held",
                (QueueStatus::Pending, Some(_)) if item.attempts > 0 => "retrying",
                (QueueStatus::Notified, _) => "running",
                (st, _) => st.as_str(),
            };
            let _ = write!(
                s,
                r#"<tr data-id="{id}"><td>{id_text}</td><td><span class="badge q-{label}">{label}</span></td><td>{issue}</td><td>{message}</td><td>{detail}</td><td>{action}</td></tr>"#,
                id = attr(&item.id),
                id_text = text(&item.id),
                issue = text(item.issue_ref.as_deref().unwrap_or("(PM agent)")),
                message = text(&crate::wiring::first_line(&item.message, 120)),
            );
        }
        if of.len() > QUEUE_ROWS {
            let _ = write!(
                s,
                r#"<tr><td colspan="6">… and {} more {}</td></tr>"#,
                of.len() - QUEUE_ROWS,
                status.as_str()
            );
        }
    }
    let _ = write!(s, "</tbody></table>");
    for p in problems {
        let _ = write!(s, r#"<p class="problem">{}</p>"#, text(p));
    }
    let _ = write!(s, "</section>");
}
