//! Forking, finding, listing and deleting sessions: Claude Code's transcripts joined with the
//! driver's records (see [`crate::store`]). Nothing here starts a process.

use std::path::Path;

use kugetsu_core::agent::{AgentError, AgentSessionInfo, ForkRequest, SessionId};

use super::ClaudeDriver;
use crate::store::{self, Record};

impl ClaudeDriver {
    /// Records a fork of `req.base` in `req.dir`; its first turn makes it.
    pub(super) fn fork(&self, req: &ForkRequest) -> Result<SessionId, AgentError> {
        if store::transcript(&self.config_dir()?, &req.base).is_none() {
            return Err(AgentError::SessionNotFound { id: req.base.clone() });
        }
        if !req.dir.is_dir() {
            return Err(AgentError::Io {
                action: "fork a session into",
                path: req.dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let id = self.new_id()?;
        // A fork starts from its base's spend (Claude Code copies it with the history).
        let base_total = self.records().get(&req.base)?.and_then(|r| r.total_cost_usd);
        let record = Record {
            title: req.title.clone(),
            dir: req.dir.clone(),
            fork_of: Some(req.base.clone()),
            total_cost_usd: base_total,
        };
        self.records().put(&id, &record)?;
        Ok(id)
    }

    /// What is known of session `id`: the driver's record (title, directory), else the
    /// transcript's directory; `None` when neither exists.
    pub(super) fn info(&self, id: &SessionId) -> Result<Option<AgentSessionInfo>, AgentError> {
        let record = self.records().get(id)?;
        let transcript = store::transcript(&self.config_dir()?, id);
        Ok(match (record, transcript) {
            (Some(r), Some(_)) | (Some(r @ Record { fork_of: Some(_), .. }), None) => {
                Some(AgentSessionInfo { id: id.clone(), title: r.title, directory: r.dir })
            }
            (_, Some(path)) => Some(AgentSessionInfo {
                id: id.clone(),
                title: String::new(),
                directory: store::transcript_cwd(&path).unwrap_or_default(),
            }),
            // A record of a made session whose transcript is gone: the session is gone.
            (Some(_), None) | (None, None) => None,
        })
    }

    /// Sessions whose directory is `dir`.
    pub(super) fn sessions_in(&self, dir: &Path) -> Result<Vec<AgentSessionInfo>, AgentError> {
        let config = self.config_dir()?;
        let mut found = Vec::new();
        for (id, _) in store::transcripts(&config) {
            if let Some(info) = self.info(&id)?
                && info.directory == dir
            {
                found.push(info);
            }
        }
        for (id, record) in self.records().all() {
            if record.fork_of.is_some() && record.dir == dir && !found.iter().any(|s| s.id == id) {
                found.push(AgentSessionInfo { id, title: record.title, directory: record.dir });
            }
        }
        Ok(found)
    }

    /// Deletes the transcript (and what Claude Code keeps beside it under the session's id)
    /// and the record; [`AgentError::SessionNotFound`] when neither exists.
    pub(super) fn delete(&self, id: &SessionId) -> Result<(), AgentError> {
        let transcript = store::transcript(&self.config_dir()?, id);
        let had_record = self.records().remove(id)?;
        let Some(path) = transcript else {
            return if had_record {
                Ok(())
            } else {
                Err(AgentError::SessionNotFound { id: id.clone() })
            };
        };
        std::fs::remove_file(&path).map_err(|source| AgentError::Io {
            action: "remove",
            path: path.clone(),
            source,
        })?;
        // Subagent transcripts and tool results live in `<project>/<id>/`.
        let beside = path.with_extension("");
        if beside.is_dir() {
            std::fs::remove_dir_all(&beside).map_err(|source| AgentError::Io {
                action: "remove",
                path: beside,
                source,
            })?;
        }
        Ok(())
    }
}
