//! The base session's export, kept on disk so that a fork spends no opencode process on it.
//!
//! Every fork of an issue starts from the same document, `opencode export BASE`: one opencode
//! process on every `start` (1.4 to 1.9 s and 317 to 333 MB with 1.18.33, measured on a 2-core
//! machine). The base session changes only when somebody runs it, and kugetsu never does after
//! `init` (a new `init` makes a new base, with a new id). So the export is kept, next to the key
//! it was made under, and reused while the key still matches. The key costs no process: the base's id, the opencode program (path, size,
//! modification time: an upgrade may change what an export holds) and the variables that choose
//! opencode's session store (`OPENCODE_DB`, `XDG_DATA_HOME`, `HOME`).
//!
//! The export is a transcript, and a transcript can show a secret (an agent that printed a
//! token it was given). kugetsu keeps secrets only in its env files, so an export that holds
//! the value of any sensitive variable the agent gets is not kept (and a kept one that has come
//! to hold one is dropped): such a base is exported on every fork, as before.
//!
//! What the key cannot see: the base session changed inside opencode after the export was kept
//! (somebody continued it by hand with `opencode -s BASE` in its directory, or edited it with
//! `opencode db`), or was deleted there. Forks made after that still start from the kept
//! transcript until the export is made anew: `init` and `doctor` do that (through
//! `AgentDriver::prepare_fork`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use kugetsu_core::agent::{AgentEnv, SessionId};
use kugetsu_core::storage;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The file in the cache directory.
pub(crate) const FILE_NAME: &str = "opencode-base-export.json";

/// The variables that choose where opencode keeps its sessions.
const STORE_VARS: &[&str] = &["OPENCODE_DB", "XDG_DATA_HOME", "HOME"];

/// What an export was made under. A kept export is used only when every field still matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Key {
    /// The exported session.
    pub base: String,
    /// The opencode program as configured, and what it resolved to.
    pub program: String,
    pub program_file: Option<String>,
    pub program_len: Option<u64>,
    pub program_mtime_ns: Option<u128>,
    /// `NAME=value` of [`STORE_VARS`] in the environment opencode gets (unset ones left out).
    pub store: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Kept {
    key: Key,
    export: Value,
}

/// The key of an export of `base` made by `program` with the environment `base_env` plus
/// `agent_env` (the agent's variables win, as in [`kugetsu_process::build_command`]).
pub(crate) fn key(
    base: &SessionId,
    program: &Path,
    base_env: &[(OsString, OsString)],
    agent_env: &AgentEnv,
) -> Key {
    Key { base: base.as_str().to_owned(), ..program_key(program, base_env, agent_env) }
}

/// [`key`] without a base session (`base` empty): what decides that an opencode process of
/// `program` with this environment uses the same program and session store as another.
pub(crate) fn program_key(
    program: &Path,
    base_env: &[(OsString, OsString)],
    agent_env: &AgentEnv,
) -> Key {
    let var = |name: &str| -> Option<String> {
        agent_env.0.get(name).cloned().or_else(|| {
            base_env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.to_string_lossy().into())
        })
    };
    let resolved = resolve_program(program, var("PATH").as_deref());
    let meta = resolved.as_deref().and_then(|p| std::fs::metadata(p).ok());
    Key {
        base: String::new(),
        program: program.to_string_lossy().into_owned(),
        program_file: resolved.map(|p| p.to_string_lossy().into_owned()),
        program_len: meta.as_ref().map(std::fs::Metadata::len),
        program_mtime_ns: meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos()),
        store: STORE_VARS.iter().filter_map(|n| var(n).map(|v| format!("{n}={v}"))).collect(),
    }
}

/// The file `program` names: itself when it has a directory part, else the first match on
/// `path`; links followed.
fn resolve_program(program: &Path, path: Option<&str>) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.canonicalize().ok();
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .and_then(|p| p.canonicalize().ok())
}

/// The export kept in `dir` under `key`, if there is one.
pub(crate) fn load(dir: &Path, key: &Key) -> Option<Value> {
    let bytes = match storage::read_bytes(&dir.join(FILE_NAME)) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the kept export of the base session");
            return None;
        }
    };
    match serde_json::from_slice::<Kept>(&bytes) {
        Ok(kept) if kept.key == *key => Some(kept.export),
        Ok(_) => {
            tracing::debug!("the kept export of the base session is for another key");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the kept export of the base session is unreadable");
            None
        }
    }
}

/// Keeps `export` in `dir` under `key` (private, atomic). A failure only costs later forks an
/// export, so it is logged, not returned.
pub(crate) fn store(dir: &Path, key: &Key, export: &Value) {
    let kept = Kept { key: key.clone(), export: export.clone() };
    let result = serde_json::to_vec(&kept).map_err(|e| e.to_string()).and_then(|bytes| {
        // Never a file the state reader would refuse (and set aside) as too large.
        if bytes.len() as u64 > storage::MAX_STATE_FILE_BYTES {
            return Err(format!("{} bytes is too large to keep", bytes.len()));
        }
        storage::ensure_dir(dir)
            .and_then(|()| storage::atomic_write(&dir.join(FILE_NAME), &bytes))
            .map_err(|e| e.to_string())
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot keep the export of the base session");
    }
}

/// Whether any string (or key) in `doc` contains one of `secrets`.
pub(crate) fn holds_any(doc: &Value, secrets: &[String]) -> bool {
    if secrets.is_empty() {
        return false;
    }
    let hit = |s: &str| secrets.iter().any(|secret| s.contains(secret.as_str()));
    match doc {
        Value::String(s) => hit(s),
        Value::Array(items) => items.iter().any(|v| holds_any(v, secrets)),
        Value::Object(map) => map.iter().any(|(k, v)| hit(k) || holds_any(v, secrets)),
        _ => false,
    }
}

/// Forgets the export kept in `dir` if it is `base`'s: a deleted session's transcript is not
/// kept on after it.
pub(crate) fn forget_if_of(dir: &Path, base: &SessionId) {
    #[derive(Deserialize)]
    struct KeyOnly {
        key: Key,
    }
    let kept = storage::read_bytes(&dir.join(FILE_NAME)).ok().flatten();
    let of_base = kept
        .and_then(|bytes| serde_json::from_slice::<KeyOnly>(&bytes).ok())
        .is_some_and(|k| k.key.base == base.as_str());
    if of_base {
        forget(dir);
    }
}

/// Forgets whatever export is kept in `dir`.
pub(crate) fn forget(dir: &Path) {
    if let Err(e) = storage::remove_file(&dir.join(FILE_NAME)) {
        tracing::warn!(error = %e, "cannot remove the kept export of the base session");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> SessionId {
        SessionId::new(s).expect("id")
    }

    #[test]
    fn kept_exports_are_used_only_under_their_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        let base = id("ses_df5eb4af9ffemK92KrwWdJZMY3");
        let env = vec![(OsString::from("XDG_DATA_HOME"), OsString::from("/data"))];
        let k = key(&base, Path::new("/bin/sh"), &env, &AgentEnv::default());
        assert_eq!(k.store, ["XDG_DATA_HOME=/data"]);
        assert!(k.program_len.is_some(), "the program's identity is part of the key");
        assert!(load(&cache, &k).is_none());
        store(&cache, &k, &json!({"info": {"id": base.as_str()}}));
        assert_eq!(load(&cache, &k), Some(json!({"info": {"id": base.as_str()}})));

        let other_base = key(
            &id("ses_df5eb4af9ffeaaaaaaaaaaaaaa"),
            Path::new("/bin/sh"),
            &env,
            &AgentEnv::default(),
        );
        assert!(load(&cache, &other_base).is_none(), "another base");
        let mut agent = AgentEnv::default();
        agent.0.insert("OPENCODE_DB".into(), "/elsewhere.db".into());
        let other_store = key(&base, Path::new("/bin/sh"), &env, &agent);
        assert!(load(&cache, &other_store).is_none(), "another session store");
        let other_program = key(&base, Path::new("/bin/ls"), &env, &AgentEnv::default());
        assert!(load(&cache, &other_program).is_none(), "another opencode");

        forget(&cache);
        assert!(load(&cache, &k).is_none());
    }

    #[test]
    fn secrets_are_found_anywhere_in_a_transcript() {
        let doc =
            json!({"info": {"id": "s"}, "messages": [{"parts": [{"text": "token: tok-1234\"x"}]}]});
        assert!(holds_any(&doc, &["tok-1234\"x".to_owned()]), "inside a string, quotes and all");
        assert!(!holds_any(&doc, &["tok-9999".to_owned()]));
        assert!(!holds_any(&doc, &[]));
        assert!(holds_any(&json!({"tok-1234": 1}), &["tok-1234".to_owned()]), "in a key");
    }

    #[test]
    fn programs_are_found_on_path() {
        let found = resolve_program(Path::new("sh"), Some("/nonexistent:/bin:/usr/bin"));
        assert!(found.is_some_and(|p| p.is_absolute()));
        assert!(resolve_program(Path::new("no-such-program-here"), Some("/bin")).is_none());
        assert!(resolve_program(Path::new("sh"), None).is_none());
    }
}
