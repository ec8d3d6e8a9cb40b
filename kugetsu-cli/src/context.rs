//! What every command is handed: the state directory, the resolved config layers, the
//! terminal facts and the wired backends. The environment is read once, here, at the edge;
//! nothing below the CLI reads it.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use kugetsu_core::config::Config;
use kugetsu_core::{IssueRef, StateDir};

use crate::error::{CliError, exit};
use crate::ui::Ui;

/// Environment variables the CLI itself reads (config keys are read by the config layers).
pub mod vars {
    /// State directory (default `~/.kugetsu`).
    pub const KUGETSU_HOME: &str = kugetsu_core::state::KUGETSU_HOME_ENV;
    /// Disables colour when set to anything.
    pub const NO_COLOR: &str = "NO_COLOR";
    /// Tracing filter for `--debug` (default `kugetsu=debug`).
    pub const KUGETSU_LOG: &str = "KUGETSU_LOG";
}

/// The command context.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The state directory.
    pub state: StateDir,
    /// The user's home directory.
    pub home: PathBuf,
    /// `--json`.
    pub json: bool,
    /// `--debug`.
    pub debug: bool,
    /// `--config KEY=VALUE` overrides.
    pub overrides: Vec<(String, String)>,
    /// The process environment, snapshotted once.
    pub env: BTreeMap<String, String>,
    /// Whether stdin is a terminal (prompts are only shown then).
    pub stdin_tty: bool,
    /// Whether stderr is a terminal (progress bars only then).
    pub stderr_tty: bool,
    /// Whether colour may be used.
    pub color: bool,
    /// The stop request of this process: the agent driver, checkouts and slot waits obey it;
    /// commands that run an agent in the foreground route signals to it
    /// ([`crate::signals::stop_on_signals`]).
    pub interrupt: kugetsu_core::interrupt::Interrupt,
}

impl Ctx {
    /// Builds the context from the process environment.
    pub fn from_process(
        json: bool,
        debug: bool,
        state_dir: Option<&Path>,
        overrides: &[String],
    ) -> Result<Self, CliError> {
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let home = directories::BaseDirs::new()
            .map(|b| b.home_dir().to_path_buf())
            .or_else(|| env.get("HOME").map(PathBuf::from))
            .ok_or_else(|| {
                CliError::new(exit::FAILURE, "cannot find your home directory")
                    .with_hint("set HOME or KUGETSU_HOME")
            })?;
        let root = match (state_dir, env.get(vars::KUGETSU_HOME).filter(|v| !v.is_empty())) {
            (Some(dir), _) => std::path::absolute(dir)?,
            (None, Some(dir)) => std::path::absolute(Path::new(dir))?,
            (None, None) => home.join(".kugetsu"),
        };
        let overrides = overrides
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                    .ok_or_else(|| CliError::usage(format!("--config {kv:?} is not KEY=VALUE")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stderr_tty = std::io::stderr().is_terminal();
        Ok(Ctx {
            state: StateDir::new(root),
            home,
            json,
            debug,
            overrides,
            color: stderr_tty && !env.contains_key(vars::NO_COLOR),
            env,
            stdin_tty: std::io::stdin().is_terminal(),
            stderr_tty,
            interrupt: kugetsu_core::interrupt::Interrupt::new(),
        })
    }

    /// The config, resolved afresh from its layers (so edits apply at once).
    pub fn config(&self) -> Result<Config, CliError> {
        self.state.check()?;
        let overrides: Vec<(&str, &str)> =
            self.overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let env = |k: &str| self.env.get(k).cloned();
        Ok(Config::load(&self.state, &self.home, &env, &overrides)?)
    }

    /// The config with every wrong setting skipped (each keeps the value of the layers below)
    /// and listed: for `doctor`, which must work when the config does not.
    pub fn config_all(&self) -> (Config, Vec<kugetsu_core::config::ConfigError>) {
        let overrides: Vec<(&str, &str)> =
            self.overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let env = |k: &str| self.env.get(k).cloned();
        Config::load_all(&self.state, &self.home, &env, &overrides)
    }

    /// Arguments that make a child `kugetsu` use the same state directory and overrides.
    pub fn child_args(&self) -> Vec<std::ffi::OsString> {
        let mut argv: Vec<std::ffi::OsString> =
            vec!["--state-dir".into(), self.state.root().into()];
        for (k, v) in &self.overrides {
            argv.push("--config".into());
            argv.push(format!("{k}={v}").into());
        }
        argv
    }

    /// Parses an issue ref, resolving short `#14` against `KUGETSU_DEFAULT_REPO`.
    pub fn parse_issue(&self, text: &str) -> Result<IssueRef, CliError> {
        let config = self.config()?;
        Ok(IssueRef::parse_with_default(text, config.default_repo.as_ref())?)
    }

    /// Writes `value` as pretty JSON.
    pub fn print_json<T: serde::Serialize + ?Sized>(
        &self,
        out: &mut dyn Write,
        value: &T,
    ) -> Result<(), CliError> {
        serde_json::to_writer_pretty(&mut *out, value)
            .map_err(|e| CliError::new(exit::FAILURE, format!("cannot write JSON: {e}")))?;
        writeln!(out)?;
        Ok(())
    }

    /// Asks `Really <action>? [y/N]` on stderr when stdin is a terminal; without one, refuses
    /// unless `yes`.
    pub fn confirm(&self, ui: &mut Ui, yes: bool, action: &str) -> Result<(), CliError> {
        if yes {
            return Ok(());
        }
        if !self.stdin_tty {
            return Err(CliError::usage(format!(
                "refusing to {action} without confirmation: stdin is not a terminal"
            ))
            .with_hint("pass -y to confirm"));
        }
        let err = ui.stderr();
        write!(err, "Really {action}? [y/N] ")?;
        err.flush()?;
        let answer = ui.read_line()?;
        if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            Ok(())
        } else {
            Err(CliError::new(exit::FAILURE, "cancelled; nothing was changed"))
        }
    }
}

/// A time as people read it: `2026-11-23 21:13:01 UTC`.
pub fn human_time(t: time::OffsetDateTime) -> String {
    kugetsu_core::clock::human(t)
}
