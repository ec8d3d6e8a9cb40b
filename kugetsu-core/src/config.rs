//! Settings: defaults, the `config` file in the state directory, the environment and
//! command-line flags, in that order of precedence.
//!
//! The `config` file is the original kugetsu's: shell-style `KEY=VALUE` lines that used to be
//! `source`d on every command. It is still read afresh on every command, so an edit takes
//! effect at once, but it is parsed (see the private `shell` module), never run: a typo or an
//! unknown key is an error naming the file and line rather than a silently ignored setting.
//! Core never reads the process environment itself; the caller hands the environment in, which
//! keeps tests hermetic and embedders in control. Every value remembers where it came from, so
//! `doctor` and `--debug` can say why a setting has the value it has.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::issue_ref::RepoRef;
use crate::shell::{self, Expansion};
use crate::state::StateDir;
use crate::storage::{self, StorageError};

/// Maximum number of agents running at once (default 3).
pub const MAX_CONCURRENT_AGENTS: &str = "MAX_CONCURRENT_AGENTS";
/// Directory for subagent tool output (default `~/.local/share/opencode/tool-output`).
pub const KUGETSU_TEMP_DIR: &str = "KUGETSU_TEMP_DIR";
/// PM agent verbosity: `verbose`, `default` or `quiet`.
pub const KUGETSU_VERBOSITY: &str = "KUGETSU_VERBOSITY";
/// How often the queue daemon polls, in minutes (default 5).
pub const QUEUE_DAEMON_INTERVAL_MINUTES: &str = "QUEUE_DAEMON_INTERVAL_MINUTES";
/// Completed and error queue items older than this many days are cleaned up (default 7).
pub const QUEUE_CLEANUP_AGE_DAYS: &str = "QUEUE_CLEANUP_AGE_DAYS";
/// Which agent driver runs the sessions (default `opencode`, the only one built in; the caller
/// maps the name to a driver and refuses names it does not know).
pub const KUGETSU_AGENT: &str = "KUGETSU_AGENT";
/// The opencode program to run (default `opencode`, looked up in `PATH` by the caller).
pub const KUGETSU_OPENCODE_BIN: &str = "KUGETSU_OPENCODE_BIN";
/// The repository short refs like `#14` belong to (`instance/owner/repo`; default none).
pub const KUGETSU_DEFAULT_REPO: &str = "KUGETSU_DEFAULT_REPO";
/// An agent run is killed after this many minutes (default 60).
pub const KUGETSU_AGENT_TIMEOUT_MINUTES: &str = "KUGETSU_AGENT_TIMEOUT_MINUTES";
/// An agent run that prints nothing and whose processes use no CPU or I/O for this many minutes
/// is killed as hung (default 15).
pub const KUGETSU_AGENT_IDLE_MINUTES: &str = "KUGETSU_AGENT_IDLE_MINUTES";
/// A PostgreSQL URL (`postgres://user:password@host/db`) that puts the queue, the agent slots
/// and the daemons' leases on a database shared by several hosts (default none: the state
/// directory's files). Shown with its credentials masked.
pub const KUGETSU_QUEUE_URL: &str = "KUGETSU_QUEUE_URL";
/// With a shared queue, the most agents running at once across every host (default none:
/// only each host's `MAX_CONCURRENT_AGENTS`).
pub const KUGETSU_GLOBAL_MAX_AGENTS: &str = "KUGETSU_GLOBAL_MAX_AGENTS";
/// With a shared queue, how long a daemon's claim on an item (and a slot) lasts without a
/// heartbeat, in seconds (default 30): how soon a dead host's work runs elsewhere.
pub const KUGETSU_QUEUE_LEASE_SECONDS: &str = "KUGETSU_QUEUE_LEASE_SECONDS";
/// Whether the agent is kept warm for forks: `daemon` (default: the queue daemon keeps it warm
/// while it runs, and every `start` forks through it when it is) or `off`.
pub const KUGETSU_WARM_AGENT: &str = "KUGETSU_WARM_AGENT";
/// When more than 0: a foreground `start` that finds the agent not kept warm leaves it warm for
/// the next `start`, until this many minutes pass without a fork (default 0: only the daemon
/// keeps it warm).
pub const KUGETSU_WARM_AGENT_IDLE_MINUTES: &str = "KUGETSU_WARM_AGENT_IDLE_MINUTES";

/// Keys the original kugetsu had and then dropped; accepted with a warning so an old `config`
/// keeps working.
pub const OBSOLETE_KEYS: &[&str] = &["QUEUE_DAEMON_BATCH_SIZE"];

/// Largest `MAX_CONCURRENT_AGENTS` accepted.
pub const MAX_AGENTS_LIMIT: usize = 64;
/// Largest `KUGETSU_GLOBAL_MAX_AGENTS` accepted.
pub const MAX_GLOBAL_AGENTS: usize = 4096;
/// Longest interval or timeout accepted, in minutes (one week).
pub const MAX_MINUTES: u64 = 7 * 24 * 60;
/// Largest `QUEUE_CLEANUP_AGE_DAYS` accepted (ten years).
pub const MAX_CLEANUP_DAYS: u64 = 3650;

/// A documented setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key, as written in `config` and the environment.
    pub name: &'static str,
    /// Its default, in words.
    pub default: &'static str,
    /// What it does.
    pub description: &'static str,
}

/// Every setting, in the order `doctor` and the default `config` show them.
pub const KEYS: &[KeyInfo] = &[
    KeyInfo { name: MAX_CONCURRENT_AGENTS, default: "3", description: "Max concurrent dev agents" },
    KeyInfo {
        name: KUGETSU_TEMP_DIR,
        default: "~/.local/share/opencode/tool-output",
        description: "Temp directory for subagent tool output (useful where /tmp is restricted)",
    },
    KeyInfo {
        name: KUGETSU_VERBOSITY,
        default: "default",
        description: "PM agent verbosity level: verbose, default, or quiet",
    },
    KeyInfo {
        name: QUEUE_DAEMON_INTERVAL_MINUTES,
        default: "5",
        description: "How often the queue daemon polls the queue, in minutes",
    },
    KeyInfo {
        name: QUEUE_CLEANUP_AGE_DAYS,
        default: "7",
        description: "Clean up completed/error queue items older than this many days",
    },
    KeyInfo {
        name: KUGETSU_AGENT,
        default: "opencode",
        description: "The coding agent that runs the sessions (its driver's name)",
    },
    KeyInfo {
        name: KUGETSU_OPENCODE_BIN,
        default: "opencode",
        description: "The opencode program (a name looked up in PATH, or a path)",
    },
    KeyInfo {
        name: KUGETSU_DEFAULT_REPO,
        default: "(none)",
        description: "Repository for short refs like #14, as instance/owner/repo",
    },
    KeyInfo {
        name: KUGETSU_AGENT_TIMEOUT_MINUTES,
        default: "60",
        description: "Kill an agent run after this many minutes",
    },
    KeyInfo {
        name: KUGETSU_AGENT_IDLE_MINUTES,
        default: "15",
        description: "Kill an agent run that prints nothing and whose processes use no CPU or I/O for this many minutes",
    },
    KeyInfo {
        name: KUGETSU_QUEUE_URL,
        default: "(none)",
        description: "postgres:// URL of a queue shared by several hosts (default: files in the state directory)",
    },
    KeyInfo {
        name: KUGETSU_GLOBAL_MAX_AGENTS,
        default: "(none)",
        description: "With a shared queue: max concurrent dev agents across all hosts",
    },
    KeyInfo {
        name: KUGETSU_QUEUE_LEASE_SECONDS,
        default: "30",
        description: "With a shared queue: seconds before a silent host's claimed work runs elsewhere",
    },
    KeyInfo {
        name: KUGETSU_WARM_AGENT,
        default: "daemon",
        description: "Keep the agent warm for forks while the queue daemon runs (daemon), or never (off)",
    },
    KeyInfo {
        name: KUGETSU_WARM_AGENT_IDLE_MINUTES,
        default: "0",
        description: "If > 0, a start without a warm agent leaves one, stopped after this many minutes without a fork",
    },
];

/// PM agent verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Report every step.
    Verbose,
    /// Report what matters.
    #[default]
    Default,
    /// Report only results and errors.
    Quiet,
}

impl Verbosity {
    /// The word used in `config`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verbosity::Verbose => "verbose",
            Verbosity::Default => "default",
            Verbosity::Quiet => "quiet",
        }
    }
}

impl fmt::Display for Verbosity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Source {
    /// Built-in default.
    #[default]
    Default,
    /// A line of the `config` file.
    File {
        /// The `config` file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
    },
    /// The environment variable of the same name.
    Env,
    /// A command-line flag.
    CommandLine,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Env => f.write_str("environment"),
            Source::CommandLine => f.write_str("command line"),
        }
    }
}

/// Why the settings could not be resolved. Every message names the file and line, or the
/// environment variable or flag, that holds the wrong thing.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `config` file is not in the accepted shell subset.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The `config` file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A key kugetsu does not know.
    #[error("{origin}: unknown setting {key} (known: {})", known_keys())]
    UnknownKey {
        /// Where it was set.
        origin: Source,
        /// The key as written.
        key: String,
    },
    /// A value of the wrong kind or out of range.
    #[error("{origin}: {key}={value:?} {problem}")]
    BadValue {
        /// Where it was set.
        origin: Source,
        /// The key as written.
        key: String,
        /// The value as given.
        value: String,
        /// What is wrong ("is not a whole number", ...).
        problem: String,
    },
    /// The file is not UTF-8 text.
    #[error("{}: not UTF-8 text (line {line})", path.display())]
    NotUtf8 {
        /// The `config` file.
        path: PathBuf,
        /// The first line with invalid bytes.
        line: usize,
    },
    /// The file could not be read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ConfigError {
    /// The setting a wrong value was given for, if the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::BadValue { key, .. } => Some(key),
            _ => None,
        }
    }
}

fn known_keys() -> String {
    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `MAX_CONCURRENT_AGENTS`.
    pub max_concurrent_agents: usize,
    /// `KUGETSU_TEMP_DIR` (absolute).
    pub temp_dir: PathBuf,
    /// `KUGETSU_VERBOSITY`.
    pub verbosity: Verbosity,
    /// `QUEUE_DAEMON_INTERVAL_MINUTES`.
    pub queue_daemon_interval_minutes: u64,
    /// `QUEUE_CLEANUP_AGE_DAYS`.
    pub queue_cleanup_age_days: u64,
    /// `KUGETSU_AGENT`: a driver name, checked by whoever builds the driver.
    pub agent: String,
    /// `KUGETSU_OPENCODE_BIN`.
    pub opencode_bin: PathBuf,
    /// `KUGETSU_DEFAULT_REPO`.
    pub default_repo: Option<RepoRef>,
    /// `KUGETSU_AGENT_TIMEOUT_MINUTES`.
    pub agent_timeout_minutes: u64,
    /// `KUGETSU_AGENT_IDLE_MINUTES`.
    pub agent_idle_minutes: u64,
    /// `KUGETSU_QUEUE_URL`: a secret (it may hold a password); show it with
    /// [`crate::secrets::redact_url`].
    pub queue_url: Option<String>,
    /// `KUGETSU_GLOBAL_MAX_AGENTS`.
    pub global_max_agents: Option<usize>,
    /// `KUGETSU_QUEUE_LEASE_SECONDS`.
    pub queue_lease_seconds: u64,
    /// `KUGETSU_WARM_AGENT`: `true` for `daemon`, `false` for `off`.
    pub warm_agent: bool,
    /// `KUGETSU_WARM_AGENT_IDLE_MINUTES` (0: off).
    pub warm_agent_idle_minutes: u64,
    /// Where each key's value came from, in [`KEYS`] order.
    sources: Vec<(&'static str, Source)>,
    /// Things worth telling the user that are not errors (obsolete keys).
    warnings: Vec<String>,
}

/// One line of `doctor`'s settings table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The setting (one of [`KEYS`]).
    pub key: &'static str,
    /// The value as text (`(none)` when unset).
    pub value: String,
    /// Where it came from.
    pub source: Source,
}

impl Config {
    /// The built-in defaults for a user whose home directory is `home`.
    pub fn defaults(home: &Path) -> Self {
        Config {
            max_concurrent_agents: 3,
            temp_dir: home.join(".local/share/opencode/tool-output"),
            verbosity: Verbosity::Default,
            queue_daemon_interval_minutes: 5,
            queue_cleanup_age_days: 7,
            agent: "opencode".into(),
            opencode_bin: PathBuf::from("opencode"),
            default_repo: None,
            agent_timeout_minutes: 60,
            agent_idle_minutes: 15,
            queue_url: None,
            global_max_agents: None,
            queue_lease_seconds: 30,
            warm_agent: true,
            warm_agent_idle_minutes: 0,
            sources: KEYS.iter().map(|k| (k.name, Source::Default)).collect(),
            warnings: Vec::new(),
        }
    }

    /// Resolves the settings from the layers, lowest precedence first: defaults, the `config`
    /// file (`file` is its path, for messages, and its text, `None` when it does not exist), the
    /// environment (`env` looks a variable up; it also serves `$NAME` in the file), and
    /// `overrides` (key, value) from command-line flags. The first wrong line, variable or flag
    /// is the error.
    pub fn resolve(
        home: &Path,
        file: Option<(&Path, &str)>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &[(&str, &str)],
    ) -> Result<Self, ConfigError> {
        Config::resolve_layers(home, file, env, overrides, &mut |e| Err(e))
    }

    /// Resolves like [`Config::resolve`], but goes on past every wrong line, variable or flag,
    /// which keeps the value of the layers below it, and returns them all: for `doctor`, which
    /// must show the settings when they are broken.
    pub fn resolve_all(
        home: &Path,
        file: Option<(&Path, &str)>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &[(&str, &str)],
    ) -> (Self, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let config = Config::resolve_layers(home, file, env, overrides, &mut |e| {
            errors.push(e);
            Ok(())
        });
        // Every error was handed to the closure, which never fails.
        (config.unwrap_or_else(|_| Config::defaults(home)), errors)
    }

    /// The layers, with `on_error` deciding whether a wrong setting stops the resolution.
    fn resolve_layers(
        home: &Path,
        file: Option<(&Path, &str)>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &[(&str, &str)],
        on_error: &mut dyn FnMut(ConfigError) -> Result<(), ConfigError>,
    ) -> Result<Self, ConfigError> {
        let mut config = Config::defaults(home);
        if let Some((path, text)) = file {
            let expansion = Expansion::Expand { lookup: env, home };
            match shell::parse(text, &expansion) {
                Err(e) => on_error(ConfigError::Syntax {
                    path: path.to_path_buf(),
                    line: e.line,
                    message: e.message,
                })?,
                Ok(assignments) => {
                    for a in assignments {
                        let source = Source::File { path: path.to_path_buf(), line: a.line };
                        if OBSOLETE_KEYS.contains(&a.key.as_str()) {
                            config
                                .warnings
                                .push(format!("{source}: {} is no longer used; remove it", a.key));
                            continue;
                        }
                        if let Err(e) = config.set(&a.key, &a.value, source) {
                            on_error(e)?;
                        }
                    }
                }
            }
        }
        for info in KEYS {
            if let Some(value) = env(info.name)
                && let Err(e) = config.set(info.name, &value, Source::Env)
            {
                on_error(e)?;
            }
        }
        for (key, value) in overrides {
            if let Err(e) = config.set(key, value, Source::CommandLine) {
                on_error(e)?;
            }
        }
        if config.agent_idle_minutes > config.agent_timeout_minutes {
            let source = config.source(KUGETSU_AGENT_IDLE_MINUTES).clone();
            on_error(ConfigError::BadValue {
                origin: source,
                key: KUGETSU_AGENT_IDLE_MINUTES.into(),
                value: config.agent_idle_minutes.to_string(),
                problem: format!(
                    "is longer than {KUGETSU_AGENT_TIMEOUT_MINUTES} ({})",
                    config.agent_timeout_minutes
                ),
            })?;
            // Going on: the run limit is the hard stop, so idle can be no longer than it.
            config.agent_idle_minutes = config.agent_timeout_minutes;
        }
        Ok(config)
    }

    /// Reads `state`'s `config` file (if any) and resolves as [`Config::resolve`] does.
    pub fn load(
        state: &StateDir,
        home: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &[(&str, &str)],
    ) -> Result<Self, ConfigError> {
        match read_config_file(state)? {
            Some((path, text)) => Config::resolve(home, Some((&path, &text)), env, overrides),
            None => Config::resolve(home, None, env, overrides),
        }
    }

    /// Reads `state`'s `config` file (if any) and resolves as [`Config::resolve_all`] does.
    pub fn load_all(
        state: &StateDir,
        home: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &[(&str, &str)],
    ) -> (Self, Vec<ConfigError>) {
        match read_config_file(state) {
            Ok(Some((path, text))) => {
                Config::resolve_all(home, Some((&path, &text)), env, overrides)
            }
            Ok(None) => Config::resolve_all(home, None, env, overrides),
            Err(e) => {
                let (config, mut errors) = Config::resolve_all(home, None, env, overrides);
                errors.insert(0, e);
                (config, errors)
            }
        }
    }

    /// Sets one key from one layer, validating the value.
    fn set(&mut self, key: &str, value: &str, source: Source) -> Result<(), ConfigError> {
        let Some(info) = KEYS.iter().find(|k| k.name == key) else {
            return Err(ConfigError::UnknownKey { origin: source, key: key.to_string() });
        };
        let bad = |problem: String| ConfigError::BadValue {
            origin: source.clone(),
            key: key.to_string(),
            value: value.to_string(),
            problem,
        };
        let number = |min: u64, max: u64| -> Result<u64, ConfigError> {
            let n: u64 = value.trim().parse().map_err(|_| bad("is not a whole number".into()))?;
            if n < min || n > max {
                return Err(bad(format!("is out of range ({min} to {max})")));
            }
            Ok(n)
        };
        match info.name {
            MAX_CONCURRENT_AGENTS => {
                self.max_concurrent_agents = number(1, MAX_AGENTS_LIMIT as u64)? as usize;
            }
            KUGETSU_TEMP_DIR => {
                let path = PathBuf::from(value);
                if value.is_empty() || !path.is_absolute() {
                    return Err(bad("is not an absolute path".into()));
                }
                self.temp_dir = path;
            }
            KUGETSU_VERBOSITY => {
                self.verbosity = match value.trim() {
                    "verbose" => Verbosity::Verbose,
                    "default" => Verbosity::Default,
                    "quiet" => Verbosity::Quiet,
                    _ => return Err(bad("is not one of verbose, default, quiet".into())),
                };
            }
            QUEUE_DAEMON_INTERVAL_MINUTES => {
                self.queue_daemon_interval_minutes = number(1, MAX_MINUTES)?
            }
            QUEUE_CLEANUP_AGE_DAYS => self.queue_cleanup_age_days = number(0, MAX_CLEANUP_DAYS)?,
            KUGETSU_AGENT => {
                let name = value.trim();
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                {
                    return Err(
                        bad("is not a driver name (lowercase letters, digits, '-')".into()),
                    );
                }
                self.agent = name.to_string();
            }
            KUGETSU_OPENCODE_BIN => {
                if value.trim().is_empty() {
                    return Err(bad("is empty".into()));
                }
                self.opencode_bin = PathBuf::from(value);
            }
            KUGETSU_DEFAULT_REPO => {
                self.default_repo = if value.trim().is_empty() {
                    None
                } else {
                    Some(
                        RepoRef::parse(value)
                            .map_err(|e| bad(format!("is not a repository: {e}")))?,
                    )
                };
            }
            KUGETSU_AGENT_TIMEOUT_MINUTES => self.agent_timeout_minutes = number(1, MAX_MINUTES)?,
            KUGETSU_AGENT_IDLE_MINUTES => self.agent_idle_minutes = number(1, MAX_MINUTES)?,
            KUGETSU_QUEUE_URL => {
                let url = value.trim();
                self.queue_url = if url.is_empty() {
                    None
                } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                    Some(url.to_string())
                } else {
                    // The message must not echo a password: name the scheme only.
                    return Err(ConfigError::BadValue {
                        origin: source,
                        key: key.to_string(),
                        value: crate::secrets::redact_url(url),
                        problem: "is not a postgres:// or postgresql:// URL".into(),
                    });
                };
            }
            KUGETSU_GLOBAL_MAX_AGENTS => {
                self.global_max_agents = if value.trim().is_empty() {
                    None
                } else {
                    Some(number(1, MAX_GLOBAL_AGENTS as u64)? as usize)
                };
            }
            KUGETSU_QUEUE_LEASE_SECONDS => self.queue_lease_seconds = number(2, 3600)?,
            KUGETSU_WARM_AGENT => {
                self.warm_agent = match value.trim() {
                    "daemon" => true,
                    "off" => false,
                    _ => return Err(bad("is not `daemon` or `off`".into())),
                }
            }
            KUGETSU_WARM_AGENT_IDLE_MINUTES => {
                self.warm_agent_idle_minutes = number(0, MAX_MINUTES)?;
            }
            _ => return Err(ConfigError::UnknownKey { origin: source, key: key.to_string() }),
        }
        if let Some(slot) = self.sources.iter_mut().find(|(k, _)| *k == info.name) {
            slot.1 = source;
        }
        Ok(())
    }

    /// Where `key`'s value came from ([`Source::Default`] for unknown keys).
    pub fn source(&self, key: &str) -> &Source {
        const DEFAULT: &Source = &Source::Default;
        self.sources.iter().find(|(k, _)| *k == key).map_or(DEFAULT, |(_, s)| s)
    }

    /// Warnings gathered while resolving (obsolete keys).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Every setting with its value and origin, in [`KEYS`] order.
    pub fn entries(&self) -> Vec<ConfigEntry> {
        KEYS.iter()
            .map(|info| {
                let value = match info.name {
                    MAX_CONCURRENT_AGENTS => self.max_concurrent_agents.to_string(),
                    KUGETSU_TEMP_DIR => self.temp_dir.display().to_string(),
                    KUGETSU_VERBOSITY => self.verbosity.to_string(),
                    QUEUE_DAEMON_INTERVAL_MINUTES => self.queue_daemon_interval_minutes.to_string(),
                    QUEUE_CLEANUP_AGE_DAYS => self.queue_cleanup_age_days.to_string(),
                    KUGETSU_AGENT => self.agent.clone(),
                    KUGETSU_OPENCODE_BIN => self.opencode_bin.display().to_string(),
                    KUGETSU_DEFAULT_REPO => self
                        .default_repo
                        .as_ref()
                        .map_or_else(|| "(none)".into(), |r| r.to_string()),
                    KUGETSU_AGENT_TIMEOUT_MINUTES => self.agent_timeout_minutes.to_string(),
                    KUGETSU_AGENT_IDLE_MINUTES => self.agent_idle_minutes.to_string(),
                    KUGETSU_QUEUE_URL => self
                        .queue_url
                        .as_deref()
                        .map_or_else(|| "(none)".into(), crate::secrets::redact_url),
                    KUGETSU_GLOBAL_MAX_AGENTS => {
                        self.global_max_agents.map_or_else(|| "(none)".into(), |n| n.to_string())
                    }
                    KUGETSU_QUEUE_LEASE_SECONDS => self.queue_lease_seconds.to_string(),
                    KUGETSU_WARM_AGENT => (if self.warm_agent { "daemon" } else { "off" }).into(),
                    KUGETSU_WARM_AGENT_IDLE_MINUTES => self.warm_agent_idle_minutes.to_string(),
                    _ => String::new(),
                };
                ConfigEntry { key: info.name, value, source: self.source(info.name).clone() }
            })
            .collect()
    }

    /// How often the queue daemon polls.
    pub fn queue_daemon_interval(&self) -> Duration {
        Duration::from_secs(self.queue_daemon_interval_minutes * 60)
    }

    /// How old a finished queue item must be to be cleaned up.
    pub fn queue_cleanup_age(&self) -> Duration {
        Duration::from_secs(self.queue_cleanup_age_days * 24 * 60 * 60)
    }

    /// The time limits of one agent run.
    pub fn run_limits(&self) -> crate::agent::RunLimits {
        crate::agent::RunLimits {
            timeout: Duration::from_secs(self.agent_timeout_minutes * 60),
            idle_timeout: Duration::from_secs(self.agent_idle_minutes * 60),
        }
    }
}

/// The `config` file's path and text, `None` when there is none.
fn read_config_file(state: &StateDir) -> Result<Option<(PathBuf, String)>, ConfigError> {
    let path = state.config_path();
    let Some(bytes) = storage::read_bytes(&path)? else { return Ok(None) };
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        ConfigError::NotUtf8 { path: path.clone(), line }
    })?;
    Ok(Some((path, text)))
}

/// The commented `config` file `init` writes: the spec's header, then every setting commented
/// out with its default, so that uncommenting a line is all a user has to do.
pub fn default_config_text() -> String {
    let mut out = String::from(
        "# User configuration overrides\n\
         # Values set here take precedence over defaults\n\
         # Changes take effect immediately (no re-init needed)\n\
         # Environment variables of the same name override this file.\n",
    );
    for info in KEYS {
        let example = match info.name {
            MAX_CONCURRENT_AGENTS => "5",
            KUGETSU_DEFAULT_REPO => "github.com/owner/repo",
            KUGETSU_QUEUE_URL => "postgres://kugetsu@db.example/kugetsu",
            KUGETSU_GLOBAL_MAX_AGENTS => "8",
            _ => info.default,
        };
        out.push_str(&format!(
            "\n# {} (default: {})\n# {}={}\n",
            info.description,
            info.default,
            info.name,
            if example.starts_with("~/") { example.to_string() } else { shell::quote(example) }
        ));
    }
    out
}

/// Writes [`default_config_text`] to `state`'s `config` unless a file is already there (a
/// user's settings are never replaced). Returns whether it wrote one.
pub fn write_default_config(state: &StateDir) -> Result<bool, ConfigError> {
    let path = state.config_path();
    storage::with_exclusive_lock(&state.lock_path("config"), || {
        if storage::read_bytes(&path)?.is_some() {
            return Ok(false);
        }
        storage::atomic_write(&path, default_config_text().as_bytes())?;
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn home() -> &'static Path {
        Path::new("/home/u")
    }

    fn from_file(text: &str) -> Result<Config, ConfigError> {
        Config::resolve(home(), Some((Path::new("/s/config"), text)), &no_env, &[])
    }

    #[test]
    fn resolve_all_goes_past_every_wrong_setting_and_keeps_the_layer_below() {
        let text = "MAX_CONCURRENT_AGENTS=abc\nKUGETSU_VERBOSITY=quiet\nNOPE=1\n";
        let lookup = |k: &str| (k == "QUEUE_CLEANUP_AGE_DAYS").then(|| "-1".to_string());
        let (c, errors) = Config::resolve_all(
            home(),
            Some((Path::new("/s/config"), text)),
            &lookup,
            &[(KUGETSU_AGENT_IDLE_MINUTES, "999")],
        );
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 4, "{texts:?}");
        assert!(texts[0].starts_with("/s/config:1: MAX_CONCURRENT_AGENTS=\"abc\""), "{texts:?}");
        assert!(texts[1].starts_with("/s/config:3: unknown setting NOPE"), "{texts:?}");
        assert!(texts[2].starts_with("environment: QUEUE_CLEANUP_AGE_DAYS"), "{texts:?}");
        assert!(texts[3].contains("KUGETSU_AGENT_IDLE_MINUTES"), "{texts:?}");
        assert_eq!(errors[0].key(), Some(MAX_CONCURRENT_AGENTS));
        assert_eq!(c.max_concurrent_agents, 3, "the default stands");
        assert_eq!(c.source(MAX_CONCURRENT_AGENTS), &Source::Default);
        assert_eq!(c.verbosity, Verbosity::Quiet, "good lines still count");
        assert_eq!(c.agent_idle_minutes, c.agent_timeout_minutes);
        // The strict resolution stops at the first.
        let strict = Config::resolve(home(), Some((Path::new("/s/config"), text)), &lookup, &[]);
        assert_eq!(strict.unwrap_err().to_string(), texts[0]);
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::resolve(home(), None, &no_env, &[]).unwrap();
        assert_eq!(c.max_concurrent_agents, 3);
        assert_eq!(c.temp_dir, Path::new("/home/u/.local/share/opencode/tool-output"));
        assert_eq!(c.verbosity, Verbosity::Default);
        assert_eq!(c.queue_daemon_interval(), Duration::from_secs(300));
        assert_eq!(c.queue_cleanup_age_days, 7);
        assert_eq!(c.opencode_bin, Path::new("opencode"));
        assert_eq!(c.default_repo, None);
        assert_eq!(c.run_limits(), crate::agent::RunLimits::default());
        assert!(c.entries().iter().all(|e| e.source == Source::Default));
    }

    #[test]
    fn layers_override_in_order_and_remember_their_source() {
        let text = "# mine\nMAX_CONCURRENT_AGENTS=5\nexport KUGETSU_VERBOSITY=quiet\nKUGETSU_TEMP_DIR=~/tmp\nKUGETSU_DEFAULT_REPO=github.com/o/r\n";
        let env: HashMap<&str, &str> =
            [("KUGETSU_VERBOSITY", "verbose"), ("QUEUE_CLEANUP_AGE_DAYS", "2")].into();
        let lookup = |k: &str| env.get(k).map(|v| v.to_string());
        let c = Config::resolve(
            home(),
            Some((Path::new("/s/config"), text)),
            &lookup,
            &[(KUGETSU_VERBOSITY, "default")],
        )
        .unwrap();
        assert_eq!(c.max_concurrent_agents, 5);
        assert_eq!(
            c.source(MAX_CONCURRENT_AGENTS),
            &Source::File { path: "/s/config".into(), line: 2 }
        );
        assert_eq!(c.temp_dir, Path::new("/home/u/tmp"));
        assert_eq!(c.queue_cleanup_age_days, 2);
        assert_eq!(c.source(QUEUE_CLEANUP_AGE_DAYS), &Source::Env);
        assert_eq!(c.verbosity, Verbosity::Default);
        assert_eq!(c.source(KUGETSU_VERBOSITY), &Source::CommandLine);
        assert_eq!(c.default_repo.unwrap().to_string(), "github.com/o/r");
        assert_eq!(Source::File { path: "/s/config".into(), line: 2 }.to_string(), "/s/config:2");
    }

    #[test]
    fn errors_name_the_file_line_and_value() {
        let err = from_file("\n\n\n\n\n\nMAX_CONCURRENT_AGENTS=\"x\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/s/config:7: MAX_CONCURRENT_AGENTS=\"x\" is not a whole number"
        );
        let err = from_file("MAX_CONCURENT_AGENTS=4\n").unwrap_err();
        assert!(
            err.to_string().starts_with("/s/config:1: unknown setting MAX_CONCURENT_AGENTS"),
            "{err}"
        );
        let err = from_file("A=1 2\n").unwrap_err();
        assert!(err.to_string().starts_with("/s/config:1: unexpected"), "{err}");
        for (text, needle) in [
            ("MAX_CONCURRENT_AGENTS=0", "out of range (1 to 64)"),
            ("MAX_CONCURRENT_AGENTS=-1", "not a whole number"),
            ("KUGETSU_VERBOSITY=loud", "not one of verbose, default, quiet"),
            ("KUGETSU_TEMP_DIR=rel/dir", "not an absolute path"),
            ("KUGETSU_DEFAULT_REPO=github.com/o", "is not a repository"),
            ("KUGETSU_OPENCODE_BIN=", "is empty"),
            ("KUGETSU_AGENT=OpenCode", "is not a driver name"),
            ("KUGETSU_AGENT_IDLE_MINUTES=90", "longer than KUGETSU_AGENT_TIMEOUT_MINUTES"),
        ] {
            let err = from_file(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(err.starts_with("/s/config:1: "), "{text}: {err}");
        }
        let env = |k: &str| (k == MAX_CONCURRENT_AGENTS).then(|| "many".to_string());
        let err = Config::resolve(home(), None, &env, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment: MAX_CONCURRENT_AGENTS=\"many\" is not a whole number"
        );
        let err = Config::resolve(home(), None, &no_env, &[("NOPE", "1")]).unwrap_err();
        assert!(err.to_string().starts_with("command line: unknown setting NOPE"), "{err}");
    }

    #[test]
    fn obsolete_keys_warn_instead_of_failing() {
        let c = from_file("QUEUE_DAEMON_BATCH_SIZE=2\n").unwrap();
        assert_eq!(c.warnings().len(), 1);
        assert!(c.warnings()[0].contains("QUEUE_DAEMON_BATCH_SIZE is no longer used"));
    }

    #[test]
    fn the_default_file_parses_to_the_defaults_and_every_line_uncomments() {
        let text = default_config_text();
        assert!(text.starts_with("# User configuration overrides\n"));
        assert!(
            text.contains("# Max concurrent dev agents (default: 3)\n# MAX_CONCURRENT_AGENTS=5\n")
        );
        let c = from_file(&text).unwrap();
        assert_eq!(c, Config { sources: c.sources.clone(), ..Config::defaults(home()) });
        let uncommented: String = text
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|l| l.contains('=')).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let c = from_file(&uncommented).unwrap();
        assert_eq!(c.max_concurrent_agents, 5);
        assert!(c.entries().iter().all(|e| matches!(e.source, Source::File { .. })));
    }

    #[test]
    fn load_reads_the_state_dir_file_and_never_overwrites_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("k"));
        state.ensure().unwrap();
        let c = Config::load(&state, home(), &no_env, &[]).unwrap();
        assert_eq!(c.max_concurrent_agents, 3);
        assert!(write_default_config(&state).unwrap());
        std::fs::write(state.config_path(), "MAX_CONCURRENT_AGENTS=2\n").unwrap();
        assert!(!write_default_config(&state).unwrap());
        let c = Config::load(&state, home(), &no_env, &[]).unwrap();
        assert_eq!(c.max_concurrent_agents, 2);
        std::fs::write(state.config_path(), b"A=1\nB=\xff\n").unwrap();
        let err = Config::load(&state, home(), &no_env, &[]).unwrap_err();
        assert!(err.to_string().ends_with("config: not UTF-8 text (line 2)"), "{err}");
    }

    proptest! {
        #[test]
        fn resolve_never_panics(text in "\\PC{0,300}") {
            let _ = from_file(&text);
        }

        #[test]
        fn generated_values_round_trip(
            agents in 1usize..=64,
            dir in "/[^\u{0}]{0,40}",
            bin in "[^\u{0}]{1,40}",
            verbosity in prop::sample::select(vec!["verbose", "default", "quiet"]),
            interval in 1u64..=MAX_MINUTES,
            cleanup in 0u64..=MAX_CLEANUP_DAYS,
            (timeout, idle) in (1u64..=MAX_MINUTES).prop_flat_map(|t| (Just(t), 1..=t)),
            repo in "[a-z]{1,10}\\.org/[A-Za-z0-9_-]{1,10}/[A-Za-z0-9_-]{1,10}",
            export in any::<bool>(),
        ) {
            prop_assume!(!bin.trim().is_empty());
            let values = [
                (MAX_CONCURRENT_AGENTS, agents.to_string()),
                (KUGETSU_TEMP_DIR, dir.clone()),
                (KUGETSU_OPENCODE_BIN, bin.clone()),
                (KUGETSU_VERBOSITY, verbosity.to_string()),
                (QUEUE_DAEMON_INTERVAL_MINUTES, interval.to_string()),
                (QUEUE_CLEANUP_AGE_DAYS, cleanup.to_string()),
                (KUGETSU_AGENT_TIMEOUT_MINUTES, timeout.to_string()),
                (KUGETSU_AGENT_IDLE_MINUTES, idle.to_string()),
                (KUGETSU_DEFAULT_REPO, repo.clone()),
            ];
            let prefix = if export { "export " } else { "" };
            let text: String =
                values.iter().map(|(k, v)| format!("{prefix}{k}={}\n", shell::quote(v))).collect();
            let c = from_file(&text).unwrap();
            prop_assert_eq!(c.max_concurrent_agents, agents);
            prop_assert_eq!(&c.temp_dir, &PathBuf::from(&dir));
            prop_assert_eq!(&c.opencode_bin, &PathBuf::from(&bin));
            prop_assert_eq!(c.verbosity.as_str(), verbosity);
            prop_assert_eq!(c.queue_daemon_interval_minutes, interval);
            prop_assert_eq!(c.queue_cleanup_age_days, cleanup);
            prop_assert_eq!((c.agent_timeout_minutes, c.agent_idle_minutes), (timeout, idle));
            prop_assert_eq!(c.default_repo.as_ref().map(ToString::to_string), Some(repo.clone()));
            // The same values through the environment and the command line resolve the same.
            let env = |k: &str| values.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone());
            let from_env = Config::resolve(home(), None, &env, &[]).unwrap();
            prop_assert_eq!(from_env.entries().iter().map(|e| e.value.clone()).collect::<Vec<_>>(),
                c.entries().iter().map(|e| e.value.clone()).collect::<Vec<_>>());
            let flags: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let from_flags = Config::resolve(home(), None, &no_env, &flags).unwrap();
            prop_assert_eq!(from_flags.entries().iter().map(|e| e.value.clone()).collect::<Vec<_>>(),
                c.entries().iter().map(|e| e.value.clone()).collect::<Vec<_>>());
        }
    }
}
