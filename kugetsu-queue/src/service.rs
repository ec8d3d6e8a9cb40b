//! The queue daemon as a systemd *user* service: the unit's text, where the unit lives, and the
//! `systemctl --user` calls that enable, inspect and remove it.
//!
//! A user service, not a system one, because the daemon drains one user's state directory and
//! runs that user's agents; `loginctl enable-linger` makes a user's services start at boot and
//! run without a login session. The unit runs `kugetsu queue-daemon run` (the daemon in the
//! foreground), restarts it when it fails, and stops it with the SIGTERM it already handles.
//!
//! Nothing here reads the environment: the caller hands in the config directory, the program,
//! its arguments and the `PATH` to record.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use kugetsu_core::storage::{self, StorageError};

/// The unit's name.
pub const UNIT_NAME: &str = "kugetsu-queue-daemon.service";

/// The exit code of a daemon that found another one already draining the state directory
/// (`DaemonError::AlreadyRunning` at the CLI): restarting it would only fail again.
pub const BUSY_EXIT: u8 = 4;

/// How long systemd waits after SIGTERM before SIGKILL: the daemon exits within its shutdown
/// grace plus about two seconds, so this is ample.
const STOP_TIMEOUT_SECS: u32 = 30;

/// Errors of this module; each names the file or the `systemctl` call it is about.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A value cannot be written into a unit file (a newline or another control character, or
    /// bytes that are not UTF-8).
    #[error("cannot write {what} into a unit file: {value:?} is not printable UTF-8")]
    Unquotable {
        /// What the value is (the program, an argument, `PATH`).
        what: &'static str,
        /// The value.
        value: String,
    },
    /// Reading, writing or removing the unit file or its directory failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing the unit file failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// `systemctl --user ...` could not be run or failed.
    #[error("`systemctl --user {args}` failed")]
    Systemctl {
        /// The arguments after `--user`.
        args: String,
        /// What it said on stderr, or why it could not run.
        #[source]
        source: std::io::Error,
    },
}

/// Where user units live: `$XDG_CONFIG_HOME/systemd/user` (`config_home` is
/// `$XDG_CONFIG_HOME`, or `~/.config` when that is unset).
pub fn unit_dir(config_home: &Path) -> PathBuf {
    config_home.join("systemd").join("user")
}

/// The unit file's path under `config_home` (see [`unit_dir`]).
pub fn unit_path(config_home: &Path) -> PathBuf {
    unit_dir(config_home).join(UNIT_NAME)
}

/// What the unit runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSpec {
    /// The `kugetsu` program (absolute).
    pub program: PathBuf,
    /// Its arguments (`--state-dir DIR ... queue-daemon run`).
    pub args: Vec<OsString>,
    /// The state directory, for the description.
    pub state_dir: PathBuf,
    /// The `PATH` the daemon and its agents get: a user manager's own `PATH` rarely holds
    /// `~/.cargo/bin` or npm's directory, where `kugetsu`'s agent usually is.
    pub path: Option<String>,
}

/// The unit file's text.
pub fn unit_text(spec: &UnitSpec) -> Result<String, ServiceError> {
    let mut exec = quote("the program", spec.program.as_os_str().to_owned())?;
    for arg in &spec.args {
        exec.push(' ');
        exec.push_str(&quote("an argument", arg.clone())?);
    }
    let state = printable("the state directory", spec.state_dir.as_os_str().to_owned())?;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Written by `kugetsu queue-daemon install`; `kugetsu queue-daemon uninstall` removes it."
    );
    let _ = writeln!(text, "[Unit]");
    let _ = writeln!(text, "Description=kugetsu queue daemon for {}", escape_specifiers(&state));
    let _ = writeln!(text);
    let _ = writeln!(text, "[Service]");
    let _ = writeln!(text, "Type=simple");
    let _ = writeln!(text, "ExecStart={exec}");
    if let Some(path) = &spec.path {
        let value = printable("PATH", path.into())?;
        let _ = writeln!(text, "Environment=\"PATH={}\"", escape_quoted(&value, false));
    }
    let _ = writeln!(
        text,
        "# SIGTERM goes to the daemon alone: it stops its agents, requeues their tasks and exits;\n\
         # whatever is left after that is killed."
    );
    let _ = writeln!(text, "KillMode=mixed");
    let _ = writeln!(text, "KillSignal=SIGTERM");
    let _ = writeln!(text, "TimeoutStopSec={STOP_TIMEOUT_SECS}");
    let _ = writeln!(text, "Restart=on-failure");
    let _ = writeln!(text, "RestartSec=5");
    let _ = writeln!(
        text,
        "# {BUSY_EXIT}: another daemon already drains this state directory; a restart would fail too."
    );
    let _ = writeln!(text, "RestartPreventExitStatus={BUSY_EXIT}");
    let _ = writeln!(text);
    let _ = writeln!(text, "[Install]");
    let _ = writeln!(text, "WantedBy=default.target");
    Ok(text)
}

fn printable(what: &'static str, value: OsString) -> Result<String, ServiceError> {
    match value.into_string() {
        Ok(s) if !s.chars().any(char::is_control) => Ok(s),
        Ok(s) => Err(ServiceError::Unquotable { what, value: s }),
        Err(raw) => {
            Err(ServiceError::Unquotable { what, value: raw.to_string_lossy().into_owned() })
        }
    }
}

/// One word of a command line in a unit: double-quoted, with `\` and `"` escaped, `%`
/// (specifiers) doubled and `$` (variable expansion) doubled.
fn quote(what: &'static str, value: OsString) -> Result<String, ServiceError> {
    let value = printable(what, value)?;
    Ok(format!("\"{}\"", escape_quoted(&value, true)))
}

fn escape_quoted(value: &str, dollars: bool) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if dollars => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

fn escape_specifiers(value: &str) -> String {
    value.replace('%', "%%")
}

/// Runs `systemctl --user`. The program is a name looked up in `PATH` (or a path), so tests
/// can put a stand-in first.
#[derive(Debug, Clone)]
pub struct Systemctl {
    program: OsString,
}

impl Default for Systemctl {
    fn default() -> Self {
        Systemctl { program: "systemctl".into() }
    }
}

impl Systemctl {
    /// A `systemctl` at `program`.
    pub fn new(program: impl Into<OsString>) -> Self {
        Systemctl { program: program.into() }
    }

    /// Runs `systemctl --user args...`; its stdout, or its stderr as the error.
    pub fn run(&self, args: &[&str]) -> Result<String, ServiceError> {
        let failed = |source| ServiceError::Systemctl { args: args.join(" "), source };
        let out = Command::new(&self.program)
            .arg("--user")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(failed)?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let detail =
            if stderr.is_empty() { format!("it exited with {}", out.status) } else { stderr };
        Err(failed(std::io::Error::other(detail)))
    }

    /// What systemd knows of the unit (`systemctl --user show`); `None` when it cannot tell
    /// (no user manager, or no `systemctl`).
    pub fn show(&self) -> Option<UnitState> {
        let text = self
            .run(&["show", UNIT_NAME, "--property=ActiveState,SubState,UnitFileState,MainPID"])
            .ok()?;
        let mut state = UnitState::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else { continue };
            match key {
                "ActiveState" => state.active = value.to_string(),
                "SubState" => state.sub = value.to_string(),
                "UnitFileState" => state.file_state = value.to_string(),
                "MainPID" => state.main_pid = value.parse().ok().filter(|p| *p != 0),
                _ => {}
            }
        }
        // Every systemctl prints ActiveState; without it, this was not one that answered.
        (!state.active.is_empty()).then_some(state)
    }
}

/// The unit as systemd sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// `active`, `inactive`, `failed`, `activating`...
    pub active: String,
    /// `running`, `dead`, `auto-restart`...
    pub sub: String,
    /// `enabled`, `disabled`...
    pub file_state: String,
    /// The daemon's pid while it runs.
    pub main_pid: Option<u32>,
}

impl UnitState {
    /// Whether systemd runs the daemon now.
    pub fn is_active(&self) -> bool {
        self.active == "active"
    }
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The unit file.
    pub path: PathBuf,
    /// Whether the file's text changed (a new unit, or a different program or `PATH`).
    pub changed: bool,
    /// What systemd says afterwards.
    pub state: Option<UnitState>,
}

/// Writes the unit under `config_home`, reloads the user manager, enables the unit and starts
/// it (restarts it when its text changed). When systemd refuses, the unit file is put back as
/// it was, so a failed install leaves nothing behind.
pub fn install(
    config_home: &Path,
    spec: &UnitSpec,
    systemctl: &Systemctl,
) -> Result<Installed, ServiceError> {
    let text = unit_text(spec)?;
    let dir = unit_dir(config_home);
    let path = unit_path(config_home);
    let before = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(ServiceError::Io { action: "read", path, source }),
    };
    let changed = before.as_deref() != Some(text.as_str());
    let created_dirs = missing_ancestors(&dir);
    if changed {
        std::fs::create_dir_all(&dir).map_err(|source| ServiceError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        storage::atomic_write(&path, text.as_bytes())?;
    }
    let enabled = (|| {
        systemctl.run(&["daemon-reload"])?;
        systemctl.run(&["enable", UNIT_NAME])?;
        systemctl.run(&[if changed { "restart" } else { "start" }, UNIT_NAME])
    })();
    if let Err(e) = enabled {
        if changed {
            match &before {
                Some(old) => {
                    let _ = storage::atomic_write(&path, old.as_bytes());
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                    remove_dirs(&created_dirs);
                }
            }
            let _ = systemctl.run(&["daemon-reload"]);
        }
        return Err(e);
    }
    Ok(Installed { path, changed, state: systemctl.show() })
}

/// What [`uninstall`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uninstalled {
    /// The unit file, when there was one.
    pub removed: Option<PathBuf>,
    /// `systemctl` calls that failed (the file is removed all the same: a unit nobody can
    /// start is better gone than half there).
    pub warnings: Vec<String>,
}

/// Stops and disables the unit (SIGTERM to the daemon), removes its file and reloads the user
/// manager. Without a unit file it does nothing.
pub fn uninstall(config_home: &Path, systemctl: &Systemctl) -> Result<Uninstalled, ServiceError> {
    let path = unit_path(config_home);
    if !path.exists() {
        return Ok(Uninstalled { removed: None, warnings: Vec::new() });
    }
    let mut warnings = Vec::new();
    let mut note = |r: Result<String, ServiceError>| {
        if let Err(e) = r {
            warnings.push(error_chain(&e));
        }
    };
    note(systemctl.run(&["disable", "--now", UNIT_NAME]));
    std::fs::remove_file(&path).map_err(|source| ServiceError::Io {
        action: "remove",
        path: path.clone(),
        source,
    })?;
    // The directories install may have made, when nothing else is in them.
    let dir = unit_dir(config_home);
    remove_dirs(&[dir.clone(), dir.parent().map(Path::to_path_buf).unwrap_or_default()]);
    note(systemctl.run(&["daemon-reload"]));
    // A unit that failed stays listed as failed until this; it is not an error if it did not.
    let _ = systemctl.run(&["reset-failed", UNIT_NAME]);
    Ok(Uninstalled { removed: Some(path), warnings })
}

/// The unit as installed: its file and what systemd says of it; `None` when no unit file is
/// installed under `config_home`.
pub fn status(config_home: &Path, systemctl: &Systemctl) -> Option<(PathBuf, Option<UnitState>)> {
    let path = unit_path(config_home);
    path.exists().then(|| (path, systemctl.show()))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `dir` and those of its ancestors that do not exist yet, deepest first.
fn missing_ancestors(dir: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect()
}

fn remove_dirs(dirs: &[PathBuf]) {
    for d in dirs {
        // Only empty ones: anything else in them is not ours.
        let _ = std::fs::remove_dir(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(program: &str) -> UnitSpec {
        UnitSpec {
            program: program.into(),
            args: vec![
                "--state-dir".into(),
                "/home/u/my state".into(),
                "queue-daemon".into(),
                "run".into(),
            ],
            state_dir: "/home/u/my state".into(),
            path: Some("/home/u/.cargo/bin:/usr/bin".into()),
        }
    }

    #[test]
    fn every_word_is_quoted_and_specifiers_and_dollars_are_escaped() {
        let text = unit_text(&spec("/opt/k 100%/$bin/kugetsu")).unwrap();
        assert!(
            text.contains(
                "ExecStart=\"/opt/k 100%%/$$bin/kugetsu\" \"--state-dir\" \"/home/u/my state\" \"queue-daemon\" \"run\"\n"
            ),
            "{text}"
        );
        assert!(text.contains("Environment=\"PATH=/home/u/.cargo/bin:/usr/bin\"\n"), "{text}");
        assert!(text.contains("Restart=on-failure\n"), "{text}");
        assert!(text.contains("KillSignal=SIGTERM\n"), "{text}");
    }

    #[test]
    fn a_newline_in_a_path_is_refused() {
        let err = unit_text(&spec("/opt/k\nExecStartPre=/bin/evil")).unwrap_err();
        assert!(matches!(err, ServiceError::Unquotable { what: "the program", .. }), "{err}");
    }
}
