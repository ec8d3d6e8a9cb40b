//! `fork_session`, `prepare_fork` and `keep_warm`: a new session from the base's transcript,
//! living in the target directory.
//!
//! `opencode run --fork` keeps the base's directory (and a run elsewhere hangs) and drops the
//! permission rules, so a fork is the base's export, rewritten with fresh ids and the deny
//! rules ([`crate::fork`]), made a session of the target directory: by one `POST /sync/replay`
//! to a warm `opencode serve` when one is registered and answers ([`crate::serve`]), else by
//! `opencode import` run from the target directory. The export is kept between forks
//! ([`crate::export_cache`]) unless it shows a secret.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use kugetsu_core::agent::{AgentEnv, AgentError, ForkRequest, SessionId, WarmGuard};
use kugetsu_core::ansi;
use serde_json::Value;

use super::OpencodeDriver;
use super::helper::os;
use super::turn::sensitive_values;
use crate::export_cache;
use crate::fork::{IdGen, other_agents, replay_body, rewrite_export};
use crate::serve::{self, ServeHandle};

impl OpencodeDriver {
    /// The fork: through the serve when it can, else by import (once more from a fresh export
    /// when a kept one no longer imports).
    pub(super) fn fork(&self, req: &ForkRequest) -> Result<SessionId, AgentError> {
        let dir = dir_text(&req.dir)?;
        let (doc, kept) = self.base_export(&req.base, &req.env, false)?;
        match self.replay_fork(&doc, req, &dir) {
            Ok(id) => return Ok(id),
            Err(why) => tracing::debug!(reason = %why, "forking by import, not through a serve"),
        }
        match self.import_fork(&doc, req, &dir) {
            // A kept export that no longer imports (made by another opencode than the key
            // could tell, or damaged): once more from a fresh export.
            Err(e) if kept => {
                tracing::warn!(error = %e, "a fork from the kept base export failed; exporting anew");
                let (doc, _) = self.base_export(&req.base, &req.env, true)?;
                self.import_fork(&doc, req, &dir)
            }
            other => other,
        }
    }

    /// Exports the base and keeps the export for the next forks, unless one is kept under the
    /// same key already (`refresh` exports anyway). Nothing without an export cache.
    pub(super) fn prepare(
        &self,
        base: &SessionId,
        env: &AgentEnv,
        refresh: bool,
    ) -> Result<(), AgentError> {
        if self.opts.export_cache.is_none() {
            return Ok(());
        }
        self.base_export(base, env, refresh).map(|_| ())
    }

    /// Starts a fork server (see [`OpencodeDriver::start_fork_server`]) unless forks through
    /// one are off or a matching one already runs.
    pub(super) fn warm(&self, env: &AgentEnv) -> Result<Option<WarmGuard>, AgentError> {
        let Some(cache) = self.opts.export_cache.as_deref().filter(|_| self.opts.fork_server)
        else {
            return Ok(None);
        };
        let key = export_cache::program_key(&self.opts.program, &self.opts.base_env, env);
        if let Ok(reg) = serve::usable(cache, &key) {
            tracing::debug!(pid = reg.pid, "an opencode serve for forks runs already");
            return Ok(None);
        }
        Ok(Some(WarmGuard::new(self.start_fork_server(env)?)))
    }

    /// Starts an `opencode serve` for forks and registers it in the export cache directory;
    /// it is stopped and unregistered when the handle is dropped. `env` is the agent's
    /// environment, as a fork gets it (forks use the serve only when its program and session
    /// store match theirs).
    pub fn start_fork_server(&self, env: &AgentEnv) -> Result<ServeHandle, AgentError> {
        let cache = self.opts.export_cache.as_deref().ok_or_else(|| AgentError::CommandFailed {
            command: "serve".into(),
            message: "no cache directory to register the serve in".into(),
        })?;
        serve::start(&serve::StartSpec {
            program: &self.opts.program,
            base_env: &self.opts.base_env,
            agent_env: env,
            dir: self.opts.helper_dir.as_deref(),
            cache,
            key: export_cache::program_key(&self.opts.program, &self.opts.base_env, env),
            stop: &self.opts.interrupt,
            ready_timeout: self.opts.helper_timeout,
        })
    }

    /// The base session's export: the kept one when its key still matches, else a fresh
    /// `opencode export` (kept for the next fork). Also says whether it came from the cache.
    fn base_export(
        &self,
        base: &SessionId,
        env: &AgentEnv,
        refresh: bool,
    ) -> Result<(Value, bool), AgentError> {
        let cache = self.opts.export_cache.as_deref();
        let key = export_cache::key(base, &self.opts.program, &self.opts.base_env, env);
        // No secret is kept in kugetsu's files outside the env files: a transcript that shows
        // one (an agent that printed a token) is exported on every fork instead.
        let secrets = sensitive_values(&self.opts, env);
        if let Some(dir) = cache
            && !refresh
            && let Some(doc) = export_cache::load(dir, &key)
        {
            if !export_cache::holds_any(&doc, &secrets) {
                return Ok((doc, true));
            }
            export_cache::forget(dir);
        }
        // The helper directory, not the worktree: the export finds the session by its id from
        // anywhere, so it can run before (or while) the worktree is made.
        let export = self.helper("export", &os(&["export", base.as_str()]), None, Some(env))?;
        if !export.ok() {
            if export.not_found() {
                if let Some(dir) = cache {
                    export_cache::forget(dir);
                }
                return Err(AgentError::SessionNotFound { id: base.clone() });
            }
            return Err(export.failed("export"));
        }
        let doc: Value = serde_json::from_str(export.stdout.trim()).map_err(|e| {
            AgentError::Protocol { command: "export".into(), detail: format!("not JSON: {e}") }
        })?;
        match cache {
            Some(dir) if export_cache::holds_any(&doc, &secrets) => export_cache::forget(dir),
            Some(dir) => export_cache::store(dir, &key, &doc),
            None => {}
        }
        Ok((doc, false))
    }

    /// `opencode export ID`, its secrets masked: the session for another host.
    pub(super) fn export_whole(
        &self,
        id: &SessionId,
        env: &AgentEnv,
    ) -> Result<String, AgentError> {
        let export = self.helper("export", &os(&["export", id.as_str()]), None, Some(env))?;
        if !export.ok() {
            if export.not_found() {
                return Err(AgentError::SessionNotFound { id: id.clone() });
            }
            return Err(export.failed("export"));
        }
        let text = export.stdout.trim();
        serde_json::from_str::<Value>(text).map_err(|e| AgentError::Protocol {
            command: "export".into(),
            detail: format!("not JSON: {e}"),
        })?;
        let secrets = sensitive_values(&self.opts, env);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        Ok(kugetsu_core::secrets::redact(text, &secrets))
    }

    /// Makes an export of [`OpencodeDriver::export_whole`] (from any host) a new session of
    /// `req.dir`, with fresh ids, as a fork is made by import.
    pub(super) fn import_whole(
        &self,
        export: &str,
        req: &ForkRequest,
    ) -> Result<SessionId, AgentError> {
        let doc: Value = serde_json::from_str(export).map_err(|e| AgentError::Protocol {
            command: "import".into(),
            detail: format!("the export is not JSON: {e}"),
        })?;
        if let Some(detail) = other_agents(&doc) {
            return Err(AgentError::Protocol { command: "import".into(), detail });
        }
        let dir = dir_text(&req.dir)?;
        self.import_fork(&doc, req, &dir)
    }

    /// Makes `doc` rewritten a new session of `dir` through the registered `opencode serve`;
    /// why not, when it cannot.
    fn replay_fork(&self, doc: &Value, req: &ForkRequest, dir: &str) -> Result<SessionId, String> {
        let cache = match &self.opts.export_cache {
            Some(cache) if self.opts.fork_server => cache,
            _ => return Err("forks through a serve are off".into()),
        };
        let key = export_cache::program_key(&self.opts.program, &self.opts.base_env, &req.env);
        let reg = serve::usable(cache, &key)?;
        let mut doc = doc.clone();
        let mut ids = IdGen::new();
        let new_id =
            rewrite_export(&mut doc, dir, &req.title, &mut ids).map_err(|e| e.to_string())?;
        let body = replay_body(&doc, dir, &mut ids).map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        let answered = serve::replay(&reg, &body, self.opts.replay_timeout)?;
        if answered != new_id {
            return Err(format!("the serve made session {answered}, not {new_id}"));
        }
        serve::touch(cache);
        tracing::debug!(session = %new_id, pid = reg.pid, ms = started.elapsed().as_millis() as u64,
            "forked through the opencode serve");
        SessionId::new(new_id).map_err(|e| e.to_string())
    }

    /// Imports `doc` rewritten into a new session titled `title` whose directory is `dir`.
    fn import_fork(
        &self,
        doc: &Value,
        req: &ForkRequest,
        dir: &str,
    ) -> Result<SessionId, AgentError> {
        let mut doc = doc.clone();
        let new_id = rewrite_export(&mut doc, dir, &req.title, &mut IdGen::new()).map_err(|e| {
            AgentError::Protocol { command: "export".into(), detail: e.to_string() }
        })?;
        let new_id = SessionId::new(new_id).map_err(|e| AgentError::Protocol {
            command: "export".into(),
            detail: e.to_string(),
        })?;
        // The transcript can hold secrets: a private temp file, removed when dropped, in the
        // helper directory (the private state directory) when there is one, so a TMPDIR of the
        // user's shell that is missing or shared does not decide whether a fork works.
        let mut builder = tempfile::Builder::new();
        builder.prefix(".kugetsu-fork-").suffix(".json");
        let made = match &self.opts.helper_dir {
            Some(dir) => builder.tempfile_in(dir),
            None => builder.tempfile(),
        };
        let mut tmp = made.map_err(|source| AgentError::Io {
            action: "create a temp file for",
            path: "the fork".into(),
            source,
        })?;
        let bytes = serde_json::to_vec(&doc).map_err(|e| AgentError::Protocol {
            command: "export".into(),
            detail: e.to_string(),
        })?;
        tmp.write_all(&bytes).and_then(|()| tmp.flush()).map_err(|source| AgentError::Io {
            action: "write",
            path: tmp.path().to_owned(),
            source,
        })?;
        // The import stores the session with its working directory (the target, with `PWD` set
        // to it) as the session's directory, and keeps the document's permission rules.
        let import = self.helper(
            "import",
            &[OsString::from("import"), tmp.path().as_os_str().to_owned()],
            Some(&req.dir),
            Some(&req.env),
        )?;
        if !import.ok() {
            return Err(import.failed("import"));
        }
        let printed = ansi::strip(&import.stdout).lines().find_map(|l| {
            l.trim().strip_prefix("Imported session:").map(|id| id.trim().to_owned())
        });
        match printed {
            Some(id) if id == new_id.as_str() => Ok(new_id),
            other => Err(AgentError::Protocol {
                command: "import".into(),
                detail: format!("expected `Imported session: {new_id}`, got {other:?}"),
            }),
        }
    }
}

/// The target directory as the text the session store keeps: absolute, resolved, UTF-8.
fn dir_text(dir: &Path) -> Result<String, AgentError> {
    let abs = dir.canonicalize().map_err(|source| AgentError::Io {
        action: "resolve the session directory",
        path: dir.to_owned(),
        source,
    })?;
    abs.to_str().map(str::to_owned).ok_or_else(|| AgentError::Io {
        action: "use (not UTF-8) the session directory",
        path: dir.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8"),
    })
}
