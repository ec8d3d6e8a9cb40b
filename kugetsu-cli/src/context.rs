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
    /// A file holding the shared queue's URL, read when `KUGETSU_QUEUE_URL` is not set. kugetsu
    /// sets it in the PM agent's environment only (pointing at
    /// [`kugetsu_core::StateDir::queue_url_path`]): the `kugetsu` commands the PM agent runs
    /// reach the queue, and no agent's environment holds the password.
    pub const KUGETSU_QUEUE_URL_FILE: &str = "KUGETSU_QUEUE_URL_FILE";
    /// A file holding `KUGETSU_NOTIFY_URL`, read when that is not set: how a child `kugetsu`
    /// (the daemon, a detached run) gets the webhook URLs without an environment holding them.
    pub const KUGETSU_NOTIFY_URL_FILE: &str = "KUGETSU_NOTIFY_URL_FILE";
}

/// The secret settings a child `kugetsu` reads from a private file instead of its
/// environment ([`Ctx::child_env`] writes them): the setting and the variable naming the file.
const SECRET_FILES: &[(&str, &str)] = &[
    (kugetsu_core::config::KUGETSU_QUEUE_URL, vars::KUGETSU_QUEUE_URL_FILE),
    (kugetsu_core::config::KUGETSU_NOTIFY_URL, vars::KUGETSU_NOTIFY_URL_FILE),
];

/// Reads every secret setting of [`SECRET_FILES`] whose file `env` names and that `env` does
/// not set. A file named but unreadable is an error: going on without the queue would run the
/// PM agent's commands on another queue than its daemon's.
fn secrets_from_files(env: &mut BTreeMap<String, String>) -> Result<(), CliError> {
    for (setting, var) in SECRET_FILES {
        secret_from_file(env, setting, var)?;
    }
    Ok(())
}

/// Reads `setting` from the file `var` names into `env`, unless `setting` is set.
fn secret_from_file(
    env: &mut BTreeMap<String, String>,
    setting: &str,
    var: &str,
) -> Result<(), CliError> {
    let Some(file) = env.get(var).filter(|f| !f.is_empty()) else {
        return Ok(());
    };
    if env.contains_key(setting) {
        return Ok(());
    }
    let path = PathBuf::from(file);
    let value = kugetsu_core::storage::read_bytes(&path)?
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            let what = if setting == kugetsu_core::config::KUGETSU_QUEUE_URL {
                "queue URL".to_string()
            } else {
                setting.to_string()
            };
            CliError::new(exit::FAILURE, format!("{var}: no {what} in {}", path.display()))
        })?;
    env.insert(setting.into(), value.trim().to_owned());
    Ok(())
}

/// Removes every secret setting (and its aliases) from `env`, and the variables naming their
/// files, which the caller gives again where it means to.
pub fn remove_secrets(env: &mut BTreeMap<String, String>) {
    for setting in kugetsu_core::config::SETTINGS.iter().filter(|s| s.secret) {
        env.remove(setting.name);
        for alias in setting.aliases {
            env.remove(*alias);
        }
    }
    for (_, var) in SECRET_FILES {
        env.remove(*var);
    }
}

/// Writes the queue's URL to [`StateDir::queue_url_path`] (`0600`, replaced whole, never
/// through a link) and returns that path.
pub fn write_queue_url(
    state: &StateDir,
    url: &str,
) -> Result<PathBuf, kugetsu_core::storage::StorageError> {
    write_secret_file(state.queue_url_path(), url)
}

fn write_secret_file(
    path: PathBuf,
    value: &str,
) -> Result<PathBuf, kugetsu_core::storage::StorageError> {
    if let Some(dir) = path.parent() {
        kugetsu_core::storage::ensure_dir(dir)?;
    }
    kugetsu_core::storage::atomic_write(&path, value.as_bytes())?;
    Ok(path)
}

/// Whether `key` names a setting whose value is secret (by the settings table).
fn is_secret_setting(key: &str) -> bool {
    kugetsu_core::config::setting(key).is_some_and(|s| s.secret)
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
        let mut env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        secrets_from_files(&mut env)?;
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

    /// Arguments that make a child `kugetsu` use the same state directory and overrides. The
    /// override of a secret setting (`KUGETSU_QUEUE_URL`) is not among them: every local user
    /// can read a process's argv (`ps`, `/proc/<pid>/cmdline`), so the child gets it through
    /// its environment instead ([`Ctx::child_env`]), which only the user can read.
    pub fn child_args(&self) -> Vec<std::ffi::OsString> {
        let mut argv: Vec<std::ffi::OsString> =
            vec!["--state-dir".into(), self.state.root().into()];
        for (k, v) in self.overrides.iter().filter(|(k, _)| !is_secret_setting(k)) {
            argv.push("--config".into());
            argv.push(format!("{k}={v}").into());
        }
        argv
    }

    /// The overrides of secret settings, which [`Ctx::child_args`] leaves out (a service
    /// refuses them: its unit's command line is the only place they could go).
    pub fn secret_overrides(&self) -> BTreeMap<String, String> {
        self.overrides
            .iter()
            .filter_map(|(k, v)| {
                let setting = kugetsu_core::config::setting(k)?;
                setting.secret.then(|| (setting.name.to_string(), v.clone()))
            })
            .collect()
    }

    /// The environment of a child `kugetsu` (the daemon, a detached run, the warm agent): this
    /// process's without any secret setting. Whatever a process's environment holds reaches
    /// every process it starts, the ones libraries start among them (gix runs
    /// `git-upload-pack` for a local remote and `ssh` for a remote one), so the child reads the
    /// queue's URL, as this process resolved it from any layer, from the private file
    /// [`vars::KUGETSU_QUEUE_URL_FILE`] names, and nothing it starts inherits the password.
    pub fn child_env(&self, config: &Config) -> Result<BTreeMap<String, String>, CliError> {
        let mut env = self.env.clone();
        remove_secrets(&mut env);
        if let Some(url) = &config.queue_url {
            let path = write_queue_url(&self.state, url)?;
            env.insert(vars::KUGETSU_QUEUE_URL_FILE.into(), path.display().to_string());
        }
        if !config.notify_urls.is_empty() {
            let path =
                write_secret_file(self.state.notify_url_path(), &config.notify_urls.join(" "))?;
            env.insert(vars::KUGETSU_NOTIFY_URL_FILE.into(), path.display().to_string());
        }
        Ok(env)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(env: &[(&str, &str)], overrides: &[(&str, &str)]) -> Ctx {
        Ctx {
            state: StateDir::new("/s"),
            home: "/h".into(),
            json: false,
            debug: false,
            overrides: overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            stdin_tty: false,
            stderr_tty: false,
            color: false,
            interrupt: kugetsu_core::interrupt::Interrupt::new(),
        }
    }

    #[test]
    fn a_secret_reaches_children_through_a_private_file_only() {
        use std::os::unix::fs::PermissionsExt;
        let url = "postgres://k:pa%2Fss@db/q";
        let mut ctx = ctx(
            &[("PATH", "/bin"), ("KUGETSU_QUEUE_URL", "postgres://k:env@db/q")],
            &[("KUGETSU_QUEUE_URL", url), ("MAX_CONCURRENT_AGENTS", "2")],
        );
        let dir = tempfile::tempdir().unwrap();
        ctx.state = StateDir::new(dir.path());
        let argv: Vec<String> =
            ctx.child_args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(argv[2..], ["--config", "MAX_CONCURRENT_AGENTS=2"]);
        let mut config = Config::defaults(dir.path());
        config.queue_url = Some(url.into());
        let env = ctx.child_env(&config).unwrap();
        assert_eq!(env.get("KUGETSU_QUEUE_URL"), None, "{env:?}");
        assert_eq!(env.get("PATH").map(String::as_str), Some("/bin"));
        let file = PathBuf::from(&env[vars::KUGETSU_QUEUE_URL_FILE]);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), url);
        assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        // What the child then reads.
        let mut child = env.clone();
        secrets_from_files(&mut child).unwrap();
        assert_eq!(child["KUGETSU_QUEUE_URL"], url);
        // The webhooks' URLs take the same way.
        let hooks = "https://hooks.example/T0/B0/XXXXsecret";
        config.notify_urls = vec![hooks.into()];
        let env = ctx.child_env(&config).unwrap();
        let file = PathBuf::from(&env[vars::KUGETSU_NOTIFY_URL_FILE]);
        assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!env.values().any(|v| v.contains("XXXXsecret")), "{env:?}");
        let mut child = env.clone();
        secrets_from_files(&mut child).unwrap();
        assert_eq!(child["KUGETSU_NOTIFY_URL"], hooks);
        let mut grandchild = child.clone();
        remove_secrets(&mut grandchild);
        assert!(!grandchild.keys().any(|k| k.starts_with("KUGETSU_NOTIFY")), "{grandchild:?}");
        // No queue: no file named.
        assert_eq!(
            ctx.child_env(&Config::defaults(dir.path())).unwrap().get(vars::KUGETSU_QUEUE_URL_FILE),
            None
        );
    }

    #[test]
    fn the_queue_url_file_is_read_only_when_the_variable_is_unset() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("queue-url");
        std::fs::write(&file, "postgres://k:pw@db/q\n").unwrap();
        let named = file.display().to_string();
        let mut env = BTreeMap::from([(vars::KUGETSU_QUEUE_URL_FILE.to_string(), named.clone())]);
        secrets_from_files(&mut env).unwrap();
        assert_eq!(env["KUGETSU_QUEUE_URL"], "postgres://k:pw@db/q");
        let mut set = BTreeMap::from([
            (vars::KUGETSU_QUEUE_URL_FILE.to_string(), named),
            ("KUGETSU_QUEUE_URL".to_string(), "postgres://other/q".to_string()),
        ]);
        secrets_from_files(&mut set).unwrap();
        assert_eq!(set["KUGETSU_QUEUE_URL"], "postgres://other/q");
        let mut missing = BTreeMap::from([(
            vars::KUGETSU_QUEUE_URL_FILE.to_string(),
            dir.path().join("none").display().to_string(),
        )]);
        assert!(secrets_from_files(&mut missing).is_err());
    }
}
