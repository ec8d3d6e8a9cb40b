//! `kugetsu queue-daemon install|uninstall`, and the systemd part of `queue-daemon status`:
//! the queue daemon as a systemd user service ([`kugetsu_queue::service`]), so it survives
//! reboots and restarts when it fails.

use std::io::Write;
use std::path::{Path, PathBuf};

use kugetsu_queue::daemon;
use kugetsu_queue::service::{self, Systemctl, UNIT_NAME, UnitSpec, UnitState};

use crate::context::Ctx;
use crate::error::{CliError, exit};
use crate::ui::Ui;

/// Arguments of `queue-daemon install`.
#[derive(Debug, clap::Args)]
pub struct DaemonInstallArgs {}

/// Arguments of `queue-daemon uninstall`.
#[derive(Debug, clap::Args)]
pub struct DaemonUninstallArgs {}

/// Installs and starts the unit.
pub fn cmd_daemon_install(
    ui: &mut Ui,
    ctx: &Ctx,
    _args: &DaemonInstallArgs,
) -> Result<(), CliError> {
    install(ctx, ui.stdout())
}

/// Stops and removes the unit.
pub fn cmd_daemon_uninstall(
    ui: &mut Ui,
    ctx: &Ctx,
    _args: &DaemonUninstallArgs,
) -> Result<(), CliError> {
    uninstall(ctx, ui.stdout())
}

/// Where systemd's user configuration lives: `$XDG_CONFIG_HOME`, or `~/.config`.
fn config_home(ctx: &Ctx) -> PathBuf {
    ctx.env
        .get("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| ctx.home.join(".config"))
}

fn user(ctx: &Ctx) -> Option<&str> {
    ["USER", "LOGNAME"].iter().find_map(|k| ctx.env.get(*k)).map(String::as_str)
}

/// Whether the user's services run without a login session (`loginctl enable-linger`).
fn lingers(user: &str) -> bool {
    Path::new("/var/lib/systemd/linger").join(user).exists()
}

/// `queue-daemon install`.
fn install(ctx: &Ctx, out: &mut dyn Write) -> Result<(), CliError> {
    ctx.config()?; // a bad config is reported here, not in the service's log
    let systemctl = Systemctl::default();
    let st = daemon::status(&ctx.state)?;
    if st.running {
        let under_systemd =
            systemctl.show().is_some_and(|s| s.main_pid.is_some() && s.main_pid == st.pid);
        if !under_systemd {
            return Err(CliError::new(
                exit::BUSY,
                format!(
                    "the queue daemon already runs outside systemd{}",
                    st.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                ),
            )
            .with_hint("stop it with `kugetsu queue-daemon stop`, then install again"));
        }
    }
    // The unit's command line is what the service runs with, and any local user reads a
    // process's argv: a secret override has no place to go but a file.
    if let Some(key) = ctx.secret_overrides().into_keys().next() {
        return Err(CliError::usage(format!(
            "--config {key}=... cannot be given to the service: it would be in its command line"
        ))
        .with_hint(format!("put {key} in the config file of the state directory instead")));
    }
    let mut args = ctx.child_args();
    args.push("queue-daemon".into());
    args.push("run".into());
    let spec = UnitSpec {
        program: std::env::current_exe()?,
        args,
        state_dir: ctx.state.root().to_path_buf(),
        path: ctx.env.get("PATH").cloned(),
    };
    let home = config_home(ctx);
    let done = service::install(&home, &spec, &systemctl).map_err(|e| {
        CliError::from(e).with_hint(
            "`systemctl --user` needs your user's systemd; over SSH without a login session, \
             run `loginctl enable-linger` (as root: `loginctl enable-linger USER`) first",
        )
    })?;
    let pid = done.state.as_ref().and_then(|s| s.main_pid);
    if ctx.json {
        return ctx.print_json(
            out,
            &serde_json::json!({
                "unit": done.path,
                "changed": done.changed,
                "active": done.state.as_ref().map(UnitState::is_active),
                "pid": pid,
            }),
        );
    }
    let verb = if done.changed { "wrote" } else { "unchanged:" };
    writeln!(out, "{verb} {}", done.path.display())?;
    match &done.state {
        Some(s) if !s.is_active() => writeln!(
            out,
            "{UNIT_NAME} is enabled, but systemd says it is {} ({}): see \
             `journalctl --user -u {UNIT_NAME}`",
            s.active, s.sub
        )?,
        _ => writeln!(
            out,
            "{UNIT_NAME} is enabled and running{}",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        )?,
    }
    match user(ctx) {
        Some(u) if lingers(u) => {
            writeln!(out, "lingering is on for {u}: it runs without a login and starts at boot")?
        }
        u => writeln!(
            out,
            "It stops when your last session ends. To keep it running without a login and start \
             it at boot: loginctl enable-linger {}",
            u.unwrap_or("$USER")
        )?,
    }
    writeln!(
        out,
        "It reads your config file and `kugetsu env`, not this shell's variables (only PATH is \
         recorded in the unit). Logs: kugetsu queue-daemon logs"
    )?;
    Ok(())
}

/// `queue-daemon uninstall`.
fn uninstall(ctx: &Ctx, out: &mut dyn Write) -> Result<(), CliError> {
    let done = service::uninstall(&config_home(ctx), &Systemctl::default())?;
    if ctx.json {
        return ctx.print_json(
            out,
            &serde_json::json!({"removed": done.removed, "warnings": done.warnings}),
        );
    }
    for w in &done.warnings {
        writeln!(out, "warning: {w}")?;
    }
    match &done.removed {
        Some(path) => writeln!(out, "stopped and removed {UNIT_NAME} ({})", path.display())?,
        None => writeln!(
            out,
            "{UNIT_NAME} is not installed ({})",
            service::unit_path(&config_home(ctx)).display()
        )?,
    }
    Ok(())
}

/// For `queue-daemon status`: whether the daemon (`pid`) runs under the installed unit, as a
/// line of text and a JSON value; `None` when no unit is installed.
pub fn status(ctx: &Ctx, pid: Option<u32>) -> Option<(String, serde_json::Value)> {
    let (path, state) = service::status(&config_home(ctx), &Systemctl::default())?;
    let json = serde_json::json!({
        "unit": path,
        "active": state.as_ref().map(|s| s.active.clone()),
        "enabled": state.as_ref().map(|s| s.file_state.clone()),
        "under_systemd": state.as_ref().is_some_and(|s| s.main_pid.is_some() && s.main_pid == pid),
    });
    let text = match state {
        Some(s) if s.main_pid.is_some() && s.main_pid == pid => {
            format!("under systemd: {UNIT_NAME} ({}, {})", s.file_state, s.active)
        }
        Some(s) => format!(
            "not under systemd: {UNIT_NAME} is installed ({}) but {}{}",
            s.file_state,
            s.active,
            if s.sub.is_empty() { String::new() } else { format!(" ({})", s.sub) }
        ),
        None => format!("{UNIT_NAME} is installed, but systemd could not be asked about it"),
    };
    Some((text, json))
}
