//! Where sessions are: Claude Code's transcripts, and the driver's own record of each session it
//! made (its title and directory, and for a fork not yet run, the session it forks).
//!
//! A transcript is `<config>/projects/<encoded cwd>/<id>.jsonl`, `<config>` being
//! `CLAUDE_CONFIG_DIR` or `$HOME/.claude`. The encoding of the directory is cut and hashed for
//! long paths, so a session is found by looking for `<id>.jsonl` in every project directory,
//! never by computing the name. Each entry records its `cwd`.
//!
//! Claude Code keeps no title, and a fork exists only once a turn has run in it (the fork is
//! made by that turn: see [`crate::args`]), so the driver records both in its state directory:
//! `sessions/<id>.json`, written atomically and privately. A fork is thus made without a
//! process of its own, and its first turn costs what any turn costs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use kugetsu_core::agent::{AgentError, SessionId};
use serde::{Deserialize, Serialize};

/// What the driver records of a session it made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Its title.
    pub title: String,
    /// The directory it runs in.
    pub dir: PathBuf,
    /// The session it is a fork of, until its first turn has made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_of: Option<SessionId>,
    /// What the session had cost after its last turn, as Claude Code totals it (the next turn's
    /// cost is the growth of that total).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cost_usd: Option<f64>,
}

/// Claude Code's configuration directory for this environment.
pub fn config_dir(env: &[(std::ffi::OsString, std::ffi::OsString)]) -> Option<PathBuf> {
    let get = |key: &str| env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| PathBuf::from(v));
    get("CLAUDE_CONFIG_DIR")
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| get("HOME").map(|h| h.join(".claude")))
}

/// The transcript of session `id`, if Claude Code has one.
pub fn transcript(config: &Path, id: &SessionId) -> Option<PathBuf> {
    let name = format!("{id}.jsonl");
    std::fs::read_dir(config.join("projects"))
        .ok()?
        .flatten()
        .map(|project| project.path().join(&name))
        .find(|p| p.is_file())
}

/// Every transcript: (id, path).
pub fn transcripts(config: &Path) -> Vec<(SessionId, PathBuf)> {
    let Ok(projects) = std::fs::read_dir(config.join("projects")) else { return Vec::new() };
    let mut found = Vec::new();
    for project in projects.flatten() {
        let Ok(files) = std::fs::read_dir(project.path()) else { continue };
        for f in files.flatten() {
            let path = f.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| SessionId::new(n).ok());
            if let Some(id) = id {
                found.push((id, path));
            }
        }
    }
    found
}

/// The working directory a transcript records (its first entry that has one).
pub fn transcript_cwd(path: &Path) -> Option<PathBuf> {
    let file = std::fs::File::open(path).ok()?;
    BufReader::new(file).lines().take(50).map_while(Result::ok).find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(&line).ok()?;
        v.get("cwd").and_then(|c| c.as_str()).map(PathBuf::from)
    })
}

/// Whether a transcript holds an answer of the model. Claude Code writes the prompt as soon as
/// it is sent, and an API failure (a refused key, say) as an assistant message of its own
/// flagged `isApiErrorMessage`: neither is an answer.
pub fn answered(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else { return false };
    BufReader::new(file).lines().map_while(Result::ok).any(|line| {
        line.contains("\"assistant\"")
            && serde_json::from_str::<serde_json::Value>(&line)
                .is_ok_and(|v| v["type"] == "assistant" && v["isApiErrorMessage"] != true)
    })
}

/// The driver's records, under `<state>/sessions`.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// The records kept in `state`.
    pub fn new(state: &Path) -> Self {
        Records { dir: state.join("sessions") }
    }

    fn path(&self, id: &SessionId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Session `id`'s record, if any.
    pub fn get(&self, id: &SessionId) -> Result<Option<Record>, AgentError> {
        let path = self.path(id);
        kugetsu_core::storage::read_json(&path).map_err(|e| storage_error("read", path, e))
    }

    /// Writes session `id`'s record.
    pub fn put(&self, id: &SessionId, record: &Record) -> Result<(), AgentError> {
        kugetsu_core::storage::ensure_dir(&self.dir)
            .map_err(|e| storage_error("create", self.dir.clone(), e))?;
        let path = self.path(id);
        kugetsu_core::storage::write_json(&path, record)
            .map_err(|e| storage_error("write", path, e))
    }

    /// Removes session `id`'s record; whether there was one.
    pub fn remove(&self, id: &SessionId) -> Result<bool, AgentError> {
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(AgentError::Io { action: "remove", path, source }),
        }
    }

    /// Every record: (id, record). Unreadable ones are skipped.
    pub fn all(&self) -> Vec<(SessionId, Record)> {
        let Ok(files) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        files
            .flatten()
            .filter_map(|f| {
                let name = f.file_name().to_str()?.strip_suffix(".json")?.to_owned();
                let id = SessionId::new(name).ok()?;
                let record = self.get(&id).ok()??;
                Some((id, record))
            })
            .collect()
    }
}

fn storage_error(
    action: &'static str,
    path: PathBuf,
    e: kugetsu_core::storage::StorageError,
) -> AgentError {
    AgentError::Io { action, path, source: std::io::Error::other(e) }
}
