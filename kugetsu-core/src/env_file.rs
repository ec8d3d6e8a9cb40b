//! Env files (`env/default.env`, `env/<agent>.env`): variables handed to agents through their
//! environment, never their argv, and masked wherever kugetsu prints or logs them.
//!
//! The files are `KEY=VALUE` lines in the same shell subset as `config` (comments, blank lines,
//! `export`, quotes), so files the original kugetsu wrote, or a user edits by hand, load as they
//! are. Unlike `config`, values are never expanded: a `$` or a leading `~` outside single quotes
//! is an error naming the line, because a token that happens to contain `$` must arrive intact.
//!
//! Any value without a NUL byte round-trips (an environment variable cannot hold NUL): kugetsu
//! writes a value bare when it has no special characters, and otherwise in single quotes with
//! `'` written as `'\''`, which is also how a POSIX shell would read it; newlines, `#`, spaces,
//! quotes and `$` are all kept exactly. `set` and `rm` rewrite only the affected lines, keeping
//! the user's comments, and write the file `0600` atomically under the env lock.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::agent::AgentEnv;
use crate::shell::{self, Assignment, Expansion};
use crate::state::StateDir;
use crate::storage::{self, StorageError};

pub use crate::secrets::{MASK, SENSITIVE_KEYS, is_sensitive, mask_value};

/// The env file every agent gets (`env/default.env`).
pub const DEFAULT_AGENT: &str = "default";
/// The PM agent's env file (`env/pm-agent.env`), layered over the default one.
pub const PM_AGENT: &str = "pm-agent";
/// Longest agent name.
pub const MAX_AGENT_NAME_LEN: usize = 64;
/// Largest value accepted.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// Why an env file operation failed; every message names the agent, key, or file and line.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    /// The agent name cannot name a file.
    #[error("invalid agent name {name:?}: {problem}")]
    BadAgentName {
        /// The name as given.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The key is not a shell identifier.
    #[error(
        "invalid variable name {key:?}: use letters, digits and '_', not starting with a digit (at most 128)"
    )]
    BadKey {
        /// The key as given.
        key: String,
    },
    /// The value cannot be put in an environment.
    #[error("invalid value for {key}: {problem}")]
    BadValue {
        /// The variable whose value was refused.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// The file is not in the accepted syntax.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The env file holding the line.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file is not UTF-8 text.
    #[error("{}: not UTF-8 text (line {line})", path.display())]
    NotUtf8 {
        /// The env file.
        path: PathBuf,
        /// The first line with invalid bytes.
        line: usize,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Checks an agent name: 1 to [`MAX_AGENT_NAME_LEN`] of `[A-Za-z0-9_-]`, not starting with `-`.
pub fn validate_agent_name(name: &str) -> Result<(), EnvFileError> {
    let bad = |problem: &str| EnvFileError::BadAgentName {
        name: name.to_string(),
        problem: problem.to_string(),
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > MAX_AGENT_NAME_LEN {
        return Err(bad("it is longer than 64 bytes"));
    }
    if name.starts_with('-') {
        return Err(bad("it starts with '-'"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(bad("only ASCII letters, digits, '_' and '-' are allowed"));
    }
    Ok(())
}

/// Checks a variable name: a shell identifier of at most 128 bytes.
pub fn validate_key(key: &str) -> Result<(), EnvFileError> {
    if shell::is_identifier(key) { Ok(()) } else { Err(EnvFileError::BadKey { key: key.into() }) }
}

/// Checks a value: no NUL byte, at most [`MAX_VALUE_LEN`] bytes.
pub fn validate_value(key: &str, value: &str) -> Result<(), EnvFileError> {
    if value.contains('\0') {
        return Err(EnvFileError::BadValue {
            key: key.into(),
            problem: "it contains a NUL byte, which no environment variable can hold".into(),
        });
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(EnvFileError::BadValue {
            key: key.into(),
            problem: format!("it is longer than {MAX_VALUE_LEN} bytes"),
        });
    }
    Ok(())
}

/// One parsed env file, keeping its text so that edits leave the other lines alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    path: PathBuf,
    text: String,
    entries: Vec<Assignment>,
}

impl EnvFile {
    /// Parses `text` (the contents of `path`, which is used in messages).
    pub fn parse(path: &Path, text: &str) -> Result<Self, EnvFileError> {
        let entries = shell::parse(text, &Expansion::Refuse).map_err(|e| EnvFileError::Syntax {
            path: path.to_path_buf(),
            line: e.line,
            message: e.message,
        })?;
        Ok(EnvFile { path: path.to_path_buf(), text: text.to_string(), entries })
    }

    /// An empty file at `path`.
    pub fn empty(path: &Path) -> Self {
        EnvFile { path: path.to_path_buf(), text: String::new(), entries: Vec::new() }
    }

    /// The file it was read from (or will be written to).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text as it would be written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value of `key` (the last assignment wins, as in a shell).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().rev().find(|a| a.key == key).map(|a| a.value.as_str())
    }

    /// Every variable, sorted by key.
    pub fn vars(&self) -> BTreeMap<String, String> {
        self.entries.iter().map(|a| (a.key.clone(), a.value.clone())).collect()
    }

    /// Sets `key`, replacing its line (and dropping duplicates) or appending one. Returns the
    /// previous value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<Option<String>, EnvFileError> {
        validate_key(key)?;
        validate_value(key, value)?;
        let previous = self.get(key).map(str::to_string);
        let line = format!("{key}={}\n", shell::quote(value));
        let spans: Vec<_> =
            self.entries.iter().filter(|a| a.key == key).map(|a| a.span.clone()).collect();
        let mut text = self.text.clone();
        match spans.split_last() {
            None => {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                // A last line ending in `\` continues into the next one: a blank line ends it
                // first, or the new assignment would become part of the previous value.
                if text.ends_with("\\\n") {
                    text.push('\n');
                }
                text.push_str(&line);
            }
            Some((last, earlier)) => {
                text.replace_range(last.clone(), &line);
                for span in earlier.iter().rev() {
                    text.replace_range(span.clone(), "");
                }
            }
        }
        self.reparse(text)?;
        Ok(previous)
    }

    /// Removes every assignment of `key`. Returns whether there was one.
    pub fn remove(&mut self, key: &str) -> Result<bool, EnvFileError> {
        validate_key(key)?;
        let spans: Vec<_> =
            self.entries.iter().filter(|a| a.key == key).map(|a| a.span.clone()).collect();
        if spans.is_empty() {
            return Ok(false);
        }
        let mut text = self.text.clone();
        for span in spans.iter().rev() {
            text.replace_range(span.clone(), "");
        }
        self.reparse(text)?;
        Ok(true)
    }

    fn reparse(&mut self, text: String) -> Result<(), EnvFileError> {
        *self = EnvFile::parse(&self.path, &text)?;
        Ok(())
    }
}

/// An env file as `env list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileSummary {
    /// The agent (`default`, `pm-agent`, ...).
    pub agent: String,
    /// Where it is (`env/<agent>.env`).
    pub path: PathBuf,
    /// Its keys, sorted (empty if it could not be read).
    pub keys: Vec<String>,
    /// Why it could not be read, if so.
    pub problem: Option<String>,
    /// Whether only its owner can read it. kugetsu writes `0600`, but a file created by hand
    /// may be readable by others while holding tokens; `doctor` warns about that.
    pub private: bool,
}

/// The env files of a state directory.
#[derive(Debug, Clone)]
pub struct EnvFiles {
    dir: PathBuf,
    lock: PathBuf,
}

fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String, EnvFileError> {
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        EnvFileError::NotUtf8 { path: path.to_path_buf(), line }
    })
}

const HEADER: &str = "# Variables for kugetsu agents, one KEY=VALUE per line (values are not expanded).\n\
# Manage with: kugetsu env set|get|rm|show\n";

impl EnvFiles {
    /// The env files under `state`'s `env/` directory.
    pub fn new(state: &StateDir) -> Self {
        EnvFiles { dir: state.env_dir(), lock: state.lock_path("env") }
    }

    /// `env/<agent>.env`, after checking the agent name.
    pub fn path(&self, agent: &str) -> Result<PathBuf, EnvFileError> {
        validate_agent_name(agent)?;
        Ok(self.dir.join(format!("{agent}.env")))
    }

    /// Reads `agent`'s file; an empty one when it does not exist.
    pub fn load(&self, agent: &str) -> Result<EnvFile, EnvFileError> {
        let path = self.path(agent)?;
        match storage::read_bytes(&path)? {
            None => Ok(EnvFile::empty(&path)),
            Some(bytes) => EnvFile::parse(&path, &text_of(&path, bytes)?),
        }
    }

    /// Every `*.env` file, sorted by agent name, each with its keys or the reason it could not
    /// be read (one bad file never hides the others).
    pub fn list(&self) -> Result<Vec<EnvFileSummary>, EnvFileError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(
                    StorageError::Io { action: "list", path: self.dir.clone(), source }.into()
                );
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StorageError::Io {
                action: "list",
                path: self.dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(agent) = name.to_str().and_then(|n| n.strip_suffix(".env")) else { continue };
            if validate_agent_name(agent).is_err() {
                continue;
            }
            let path = entry.path();
            let (keys, problem) = match self.load(agent) {
                Ok(file) => (file.vars().into_keys().collect(), None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            let private =
                std::fs::symlink_metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o077 == 0);
            out.push(EnvFileSummary { agent: agent.to_string(), path, keys, problem, private });
        }
        out.sort_by(|a, b| a.agent.cmp(&b.agent));
        Ok(out)
    }

    /// The value of `key` in `agent`'s file (that file only, not merged).
    pub fn get(&self, key: &str, agent: &str) -> Result<Option<String>, EnvFileError> {
        validate_key(key)?;
        Ok(self.load(agent)?.get(key).map(str::to_string))
    }

    /// Sets `key` in `agent`'s file, creating it. Returns the previous value.
    pub fn set(&self, key: &str, value: &str, agent: &str) -> Result<Option<String>, EnvFileError> {
        validate_key(key)?;
        validate_value(key, value)?;
        self.edit(agent, |file| file.set(key, value))
    }

    /// Removes `key` from `agent`'s file. Returns whether it was there.
    pub fn remove(&self, key: &str, agent: &str) -> Result<bool, EnvFileError> {
        validate_key(key)?;
        self.edit(agent, |file| file.remove(key))
    }

    fn edit<R>(
        &self,
        agent: &str,
        f: impl FnOnce(&mut EnvFile) -> Result<R, EnvFileError>,
    ) -> Result<R, EnvFileError> {
        let path = self.path(agent)?;
        storage::with_exclusive_lock(&self.lock, || {
            storage::ensure_dir(&self.dir)?;
            let mut file = self.load(agent)?;
            let before = file.text().to_string();
            let out = f(&mut file)?;
            if file.text() != before {
                storage::atomic_write(&path, file.text().as_bytes())?;
            }
            Ok(out)
        })
    }

    /// `agent`'s variables as they may be shown: sorted, sensitive values masked.
    pub fn show(&self, agent: &str) -> Result<Vec<(String, String)>, EnvFileError> {
        Ok(self
            .load(agent)?
            .vars()
            .into_iter()
            .map(|(k, v)| {
                let shown = mask_value(&k, &v).to_string();
                (k, shown)
            })
            .collect())
    }

    /// The environment an agent gets: `default.env`, overridden key by key by `<agent>.env`.
    pub fn merged(&self, agent: &str) -> Result<AgentEnv, EnvFileError> {
        let mut vars = self.load(DEFAULT_AGENT)?.vars();
        if agent != DEFAULT_AGENT {
            vars.extend(self.load(agent)?.vars());
        }
        Ok(AgentEnv(vars))
    }

    /// Creates `default.env` and `pm-agent.env` with a comment header when missing (for `init`);
    /// existing files are left alone. Returns the files it created.
    pub fn ensure_defaults(&self) -> Result<Vec<PathBuf>, EnvFileError> {
        storage::with_exclusive_lock(&self.lock, || {
            storage::ensure_dir(&self.dir)?;
            let mut created = Vec::new();
            for agent in [DEFAULT_AGENT, PM_AGENT] {
                let path = self.path(agent)?;
                if storage::read_bytes(&path)?.is_none() {
                    storage::atomic_write(&path, HEADER.as_bytes())?;
                    created.push(path);
                }
            }
            Ok(created)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn files() -> (tempfile::TempDir, EnvFiles, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("k"));
        state.ensure().unwrap();
        (dir, EnvFiles::new(&state), state)
    }

    #[test]
    fn masks_sensitive_keys() {
        assert!(is_sensitive("GITEA_TOKEN"));
        assert!(is_sensitive("my_api_key"));
        assert!(!is_sensitive("EDITOR"));
        assert_eq!(mask_value("GITHUB_TOKEN", "ghp_x"), MASK);
        assert_eq!(mask_value("GITHUB_TOKEN", ""), "");
        assert_eq!(mask_value("EDITOR", "vi"), "vi");
    }

    #[test]
    fn set_get_rm_show_merge() {
        let (_d, env, state) = files();
        assert_eq!(env.ensure_defaults().unwrap().len(), 2);
        assert!(env.ensure_defaults().unwrap().is_empty());
        assert_eq!(env.set("GITEA_TOKEN", "ghp_secret", PM_AGENT).unwrap(), None);
        assert_eq!(env.set("EDITOR", "vi", DEFAULT_AGENT).unwrap(), None);
        assert_eq!(env.set("SHARED", "default", DEFAULT_AGENT).unwrap(), None);
        assert_eq!(env.set("SHARED", "pm", PM_AGENT).unwrap(), None);
        assert_eq!(env.set("SHARED", "pm2", PM_AGENT).unwrap().as_deref(), Some("pm"));
        assert_eq!(env.get("GITEA_TOKEN", PM_AGENT).unwrap().as_deref(), Some("ghp_secret"));
        assert_eq!(env.get("GITEA_TOKEN", DEFAULT_AGENT).unwrap(), None);
        assert_eq!(
            env.show(PM_AGENT).unwrap(),
            vec![("GITEA_TOKEN".into(), MASK.into()), ("SHARED".into(), "pm2".into())]
        );
        let merged = env.merged(PM_AGENT).unwrap();
        assert_eq!(merged.0.get("SHARED").map(String::as_str), Some("pm2"));
        assert_eq!(merged.0.get("EDITOR").map(String::as_str), Some("vi"));
        assert!(!format!("{merged:?}").contains("ghp_secret"));
        assert_eq!(
            env.merged(DEFAULT_AGENT).unwrap().0.get("SHARED").map(String::as_str),
            Some("default")
        );
        assert!(env.remove("SHARED", PM_AGENT).unwrap());
        assert!(!env.remove("SHARED", PM_AGENT).unwrap());
        assert_eq!(
            env.merged(PM_AGENT).unwrap().0.get("SHARED").map(String::as_str),
            Some("default")
        );
        let path = state.env_dir().join("pm-agent.env");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Variables for kugetsu agents"), "header kept: {text}");
        let listed = env.list().unwrap();
        assert_eq!(
            listed.iter().map(|s| s.agent.as_str()).collect::<Vec<_>>(),
            ["default", "pm-agent"]
        );
        assert_eq!(listed[1].keys, ["GITEA_TOKEN"]);
        assert!(listed.iter().all(|s| s.private));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!env.list().unwrap()[1].private);
        env.set("X", "1", PM_AGENT).unwrap();
        assert!(env.list().unwrap()[1].private, "a rewrite makes it private again");
    }

    #[test]
    fn edits_keep_comments_and_other_lines() {
        let path = Path::new("/s/env/default.env");
        let mut f = EnvFile::parse(path, "# mine\nexport A=1 # one\nB='x y'\nA=2\n# end").unwrap();
        assert_eq!(f.get("A"), Some("2"));
        assert_eq!(f.set("A", "3").unwrap().as_deref(), Some("2"));
        assert_eq!(f.text(), "# mine\nB='x y'\nA=3\n# end");
        f.set("C", "it's $HOME").unwrap();
        assert_eq!(f.text(), "# mine\nB='x y'\nA=3\n# end\nC='it'\\''s $HOME'\n");
        assert!(f.remove("B").unwrap());
        assert_eq!(f.text(), "# mine\nA=3\n# end\nC='it'\\''s $HOME'\n");
    }

    #[test]
    fn a_key_appended_after_a_line_continuation_stays_its_own() {
        let path = Path::new("/s/env/default.env");
        let mut f = EnvFile::parse(path, "EXTRA=abc\\\n").unwrap();
        assert_eq!(f.get("EXTRA"), Some("abc"));
        f.set("GITHUB_TOKEN", "ghp_x").unwrap();
        assert_eq!(f.get("EXTRA"), Some("abc"), "{}", f.text());
        assert_eq!(f.get("GITHUB_TOKEN"), Some("ghp_x"), "{}", f.text());
        let again = EnvFile::parse(path, f.text()).unwrap();
        assert_eq!(again.vars(), f.vars());
    }

    #[test]
    fn bad_input_is_refused_with_names() {
        let (_d, env, state) = files();
        for name in ["", "../x", "a/b", "-x", "a b", &"a".repeat(65)] {
            let err = env.set("K", "v", name).unwrap_err();
            assert!(matches!(err, EnvFileError::BadAgentName { .. }), "{name}: {err}");
        }
        for key in ["", "1A", "A-B", "A=B", "A B"] {
            let err = env.set(key, "v", DEFAULT_AGENT).unwrap_err();
            assert!(err.to_string().contains("invalid variable name"), "{key}: {err}");
        }
        let err = env.set("K", "a\0b", DEFAULT_AGENT).unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
        let path = state.env_dir().join("default.env");
        std::fs::write(&path, "A=1\nB=$HOME\n").unwrap();
        let err = env.set("C", "3", DEFAULT_AGENT).unwrap_err();
        assert!(err.to_string().ends_with("default.env:2: '$' in the value of B must be inside single quotes (values are not expanded here)"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "A=1\nB=$HOME\n",
            "a bad file is never rewritten"
        );
        let listed = env.list().unwrap();
        assert!(listed[0].problem.as_deref().unwrap_or_default().contains(":2:"));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(String, String),
        Remove(String),
    }

    fn op() -> impl Strategy<Value = Op> {
        let key = prop::sample::select(vec!["A", "B", "C", "export"]).prop_map(String::from);
        prop_oneof![
            (key.clone(), "[^\u{0}]{0,12}").prop_map(|(k, v)| Op::Set(k, v)),
            key.prop_map(Op::Remove),
        ]
    }

    proptest! {
        #[test]
        fn edits_behave_like_a_map_and_keep_comments(
            start in prop::collection::vec((prop::sample::select(vec!["A", "B", "C"]), "[a-z ]{0,5}"), 0..5),
            ops in prop::collection::vec(op(), 0..20),
        ) {
            let mut text = String::from("# keep me\n");
            let mut model = BTreeMap::new();
            for (k, v) in &start {
                text.push_str(&format!("export {k}={}  # note\n", shell::quote(v)));
                model.insert(k.to_string(), v.clone());
            }
            let mut file = EnvFile::parse(Path::new("/e/x.env"), &text).unwrap();
            for op in ops {
                match op {
                    Op::Set(k, v) => {
                        prop_assert_eq!(file.set(&k, &v).unwrap(), model.insert(k, v));
                    }
                    Op::Remove(k) => prop_assert_eq!(file.remove(&k).unwrap(), model.remove(&k).is_some()),
                }
                prop_assert_eq!(file.vars(), model.clone());
                prop_assert!(file.text().starts_with("# keep me\n"));
                let reparsed = EnvFile::parse(Path::new("/e/x.env"), file.text()).unwrap();
                prop_assert_eq!(reparsed.vars(), model.clone());
            }
        }
    }

    proptest! {
        // Each case writes real files with fsync; fewer cases keep the suite quick.
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_value_round_trips_through_the_file(value in "[^\u{0}]{0,80}", key in "K[A-Z0-9_]{0,10}") {
            let (_d, env, _state) = files();
            env.set(&key, &value, "agent-1").unwrap();
            env.set("OTHER", "x", "agent-1").unwrap();
            prop_assert_eq!(env.get(&key, "agent-1").unwrap(), Some(value.clone()));
            let merged = env.merged("agent-1").unwrap();
            prop_assert_eq!(merged.0.get(&key), Some(&value));
        }
    }
}
