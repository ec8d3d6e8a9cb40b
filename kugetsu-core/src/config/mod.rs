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
//!
//! Each key is defined once, in [`SETTINGS`]; this module only layers them.

mod error;
mod file;
mod settings;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, Source};
pub use file::{default_config_text, readme_table, write_default_config};
pub use settings::*;

use crate::issue_ref::RepoRef;
use crate::shell::{self, Expansion};
use crate::state::StateDir;

/// The resolved settings. Each field is one row of [`SETTINGS`], which parses and shows it.
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
    /// `KUGETSU_WATCH_INTERVAL_SECONDS`.
    pub watch_interval_seconds: u64,
    /// `QUEUE_CLEANUP_AGE_DAYS`.
    pub queue_cleanup_age_days: u64,
    /// `KUGETSU_AGENT`: a driver name, checked by whoever builds the driver.
    pub agent: String,
    /// `KUGETSU_AGENT_BIN` (or its old name `KUGETSU_OPENCODE_BIN`); `None`: the driver's own
    /// program.
    pub agent_bin: Option<PathBuf>,
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
    /// `KUGETSU_HOST_LOST_SECONDS`.
    pub host_lost_seconds: u64,
    /// `KUGETSU_MOVE_MAX_MB`.
    pub move_max_mb: u64,
    /// `KUGETSU_WARM_AGENT`: `true` for `daemon`, `false` for `off`.
    pub warm_agent: bool,
    /// `KUGETSU_WARM_AGENT_IDLE_MINUTES` (0: off).
    pub warm_agent_idle_minutes: u64,
    /// `KUGETSU_ISSUE_BUDGET_USD`.
    pub issue_budget_usd: Option<crate::usage::Usd>,
    /// `KUGETSU_DAILY_BUDGET_USD`.
    pub daily_budget_usd: Option<crate::usage::Usd>,
    /// `KUGETSU_NOTIFY_URL`, each checked to be http(s): secrets (show them with
    /// [`crate::secrets::webhook::redact`]).
    pub notify_urls: Vec<String>,
    /// `KUGETSU_NOTIFY_COMPLETED`.
    pub notify_completed: bool,
    /// `KUGETSU_REPORT_LABELS` (`None`: `off`).
    pub report_labels: Option<crate::report::StatusLabels>,
    /// `KUGETSU_PULL_REQUESTS`: `draft` is true.
    pub pull_requests: bool,
    /// `KUGETSU_COMMIT_LEFTOVERS`: `1` is true.
    pub commit_leftovers: bool,
    /// `KUGETSU_LOOP_ROUNDS` (0: off).
    pub loop_rounds: u32,
    /// Where each key's value came from, in [`SETTINGS`] order.
    sources: Vec<(&'static str, Source)>,
    /// Things worth telling the user that are not errors (obsolete keys).
    warnings: Vec<String>,
}

/// One line of `doctor`'s settings table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The setting (one of [`SETTINGS`]).
    pub key: &'static str,
    /// The value as text (`(none)` when unset).
    pub value: String,
    /// Where it came from.
    pub source: Source,
}

impl Config {
    /// `KUGETSU_ISSUE_BUDGET_USD` and `KUGETSU_DAILY_BUDGET_USD`.
    pub fn budgets(&self) -> crate::usage::budget::Budgets {
        crate::usage::budget::Budgets { issue: self.issue_budget_usd, daily: self.daily_budget_usd }
    }

    /// The built-in defaults for a user whose home directory is `home`: each row of
    /// [`SETTINGS`] parses its own default.
    pub fn defaults(home: &Path) -> Self {
        // Placeholders only: every field is set from its row's default below.
        let mut config = Config {
            max_concurrent_agents: 0,
            temp_dir: PathBuf::new(),
            verbosity: Verbosity::Default,
            queue_daemon_interval_minutes: 0,
            watch_interval_seconds: 0,
            queue_cleanup_age_days: 0,
            agent: String::new(),
            agent_bin: None,
            default_repo: None,
            agent_timeout_minutes: 0,
            agent_idle_minutes: 0,
            queue_url: None,
            global_max_agents: None,
            queue_lease_seconds: 0,
            host_lost_seconds: 0,
            move_max_mb: 0,
            warm_agent: false,
            warm_agent_idle_minutes: 0,
            issue_budget_usd: None,
            daily_budget_usd: None,
            notify_urls: Vec::new(),
            notify_completed: false,
            report_labels: None,
            pull_requests: false,
            commit_leftovers: false,
            loop_rounds: 0,
            sources: SETTINGS.iter().map(|s| (s.name, Source::Default)).collect(),
            warnings: Vec::new(),
        };
        for setting in SETTINGS {
            if let DefaultValue::Is(value) = setting.default {
                let value = match value.strip_prefix("~/") {
                    Some(rest) => home.join(rest).display().to_string(),
                    None => value.to_string(),
                };
                // The table's own defaults parse (a unit test holds each one to it).
                let parsed = (setting.parse)(&mut config, &value);
                debug_assert!(parsed.is_ok(), "{}: {parsed:?}", setting.name);
            }
        }
        config
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
        for setting in SETTINGS {
            // An older name first, so that the name wins when both are set.
            for key in setting.aliases.iter().chain([&setting.name]) {
                if let Some(value) = env(key)
                    && let Err(e) = config.set(key, &value, Source::Env)
                {
                    on_error(e)?;
                }
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
        match file::read_config_file(state)? {
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
        match file::read_config_file(state) {
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

    /// Sets one key (by its name or an older one) from one layer, validating the value.
    fn set(&mut self, key: &str, value: &str, source: Source) -> Result<(), ConfigError> {
        let Some(setting) = settings::setting(key) else {
            return Err(ConfigError::UnknownKey { origin: source, key: key.to_string() });
        };
        if let Err(problem) = (setting.parse)(self, value) {
            return Err(ConfigError::BadValue {
                origin: source,
                key: key.to_string(),
                // The message must not echo a password.
                value: if setting.secret {
                    crate::secrets::redact_setting(value.trim())
                } else {
                    value.to_string()
                },
                problem,
            });
        }
        if let Some(slot) = self.sources.iter_mut().find(|(k, _)| *k == setting.name) {
            slot.1 = source;
        }
        Ok(())
    }

    /// Where `key`'s value came from ([`Source::Default`] for unknown keys).
    pub fn source(&self, key: &str) -> &Source {
        const DEFAULT: &Source = &Source::Default;
        let name = settings::setting(key).map_or(key, |s| s.name);
        self.sources.iter().find(|(k, _)| *k == name).map_or(DEFAULT, |(_, s)| s)
    }

    /// Warnings gathered while resolving (obsolete keys).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Every setting with its value and origin, in [`SETTINGS`] order.
    pub fn entries(&self) -> Vec<ConfigEntry> {
        SETTINGS
            .iter()
            .map(|s| ConfigEntry {
                key: s.name,
                value: (s.display)(self),
                source: self.source(s.name).clone(),
            })
            .collect()
    }

    /// How often the queue daemon polls.
    pub fn queue_daemon_interval(&self) -> Duration {
        Duration::from_secs(self.queue_daemon_interval_minutes * 60)
    }

    /// How often each watched tracker is polled.
    pub fn watch_interval(&self) -> Duration {
        Duration::from_secs(self.watch_interval_seconds)
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
            spend_cap: None,
        }
    }
}
