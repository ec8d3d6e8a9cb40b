//! `kugetsu dashboard`: one page and a JSON API over the same state and the same library calls
//! every command uses, served on loopback by default.
//!
//! - `server`: the listener, the connection cap and the HTTP/1 settings that keep slow or
//!   abusive clients from exhausting it;
//! - `auth`: the token every request must carry, and the `Host` and `Origin` it must come
//!   with;
//! - `routes`: the API (reads return what each command prints with `--json`, from the same
//!   library reads; actions call what the commands call);
//! - `page`: the server-rendered page and its two assets;
//! - `logs`: which logs may be served, and the newest of an issue;
//! - `events`: the live streams.
//!
//! Nothing an env file holds as a secret leaves it: every body and event goes through
//! [`App::redact`], which cuts out each secret in the forms it can take there (as written,
//! JSON-escaped, HTML-escaped) with the one rule of `kugetsu_core::secrets`.

pub mod auth;
pub mod events;
pub mod logs;
pub mod page;
pub mod routes;
pub mod server;

use std::sync::Arc;

use crate::context::Ctx;

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    /// The command context, with `--json` on: an action that writes its result (a detached
    /// `continue`) writes it as JSON.
    pub ctx: Arc<Ctx>,
    /// The token requests must carry.
    pub token: Arc<str>,
    /// The names and addresses a request's `Host` may give the dashboard.
    pub reach: Arc<auth::Reach>,
    /// Goes up by one on every change of the state.
    pub changes: tokio::sync::watch::Receiver<u64>,
}

impl App {
    /// The state's secrets in every form they can take in a response: as they are, as a JSON
    /// string holds them and as HTML text holds them.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in crate::notifications::secrets(&self.ctx.state, self.ctx.config().ok().as_ref()) {
            let json = serde_json::to_string(&s).unwrap_or_default();
            let json = json.trim_matches('"').to_owned();
            let html = html_escape::encode_text(&s).into_owned();
            let attr = html_escape::encode_double_quoted_attribute(&s).into_owned();
            out.extend([s, json, html, attr]);
        }
        out.sort();
        out.dedup();
        out
    }

    /// `text` with every secret of the env files masked.
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets();
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        kugetsu_core::secrets::redact(text, &refs)
    }
}
