//! `queue-daemon install|uninstall|status` through the binary, with a stand-in `systemctl` on
//! `PATH` that records its calls (and answers `show` as the test tells it), in a scratch
//! `XDG_CONFIG_HOME`. The unit it writes is checked by the real `systemd-analyze verify` where
//! that is installed.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::{Path, PathBuf};

use support::{Env, json, read, wait_for};

const UNIT: &str = "kugetsu-queue-daemon.service";

/// A scratch home whose `PATH` starts with a stand-in `systemctl`: it appends its arguments to
/// `systemctl.calls`, prints `systemctl.show` for `show`, and fails (as a user manager that
/// cannot be reached) the verbs listed in `systemctl.fail`.
struct World {
    env: Env,
    dir: PathBuf,
}

impl World {
    fn new() -> World {
        let (mut env, _repo) = Env::with_fake_agent();
        let dir = env.tmp.path().join("standin");
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!(
            r#"#!/bin/sh
d='{d}'
echo "$*" >> "$d/systemctl.calls"
verb=$2
if grep -qx "$verb" "$d/systemctl.fail" 2>/dev/null; then
    echo "Failed to connect to bus: No medium found" >&2
    exit 1
fi
if [ "$verb" = show ]; then cat "$d/systemctl.show" 2>/dev/null; fi
exit 0
"#,
            d = dir.display()
        );
        let program = dir.join("systemctl");
        std::fs::write(&program, script).unwrap();
        std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
        env.set("PATH", &path);
        // A user's home has a ~/.config; what install adds below it is what must go again.
        std::fs::create_dir_all(env.home.join(".config")).unwrap();
        World { env, dir }
    }

    fn unit(&self) -> PathBuf {
        self.env.home.join(".config/systemd/user").join(UNIT)
    }

    /// The calls since the last time this was asked.
    fn calls(&self) -> Vec<String> {
        let path = self.dir.join("systemctl.calls");
        let text = read(&path);
        let _ = std::fs::remove_file(&path);
        text.lines().map(str::to_string).collect()
    }

    fn show(&self, text: &str) {
        std::fs::write(self.dir.join("systemctl.show"), text).unwrap();
    }

    /// Every file of the home except the state directory (which the runs themselves use).
    fn home_files(&self) -> Vec<PathBuf> {
        self.env
            .all_files()
            .into_iter()
            .filter(|p| p.starts_with(&self.env.home) && !p.starts_with(&self.env.state))
            .collect()
    }
}

fn verify(unit: &Path) {
    let Ok(out) = std::process::Command::new("systemd-analyze").arg("verify").arg(unit).output()
    else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED systemd-analyze verify: systemd-analyze is not installed\n",
        );
        return;
    };
    assert!(
        out.status.success(),
        "systemd-analyze verify rejects the unit:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        read(unit)
    );
}

#[test]
fn install_then_uninstall_leaves_nothing_behind() {
    let w = World::new();
    let before = w.home_files();

    let out = w.env.run(&["queue-daemon", "install"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&format!("{UNIT} is enabled and running\n")), "{}", out.stdout);
    assert!(out.stdout.contains("loginctl enable-linger"), "{}", out.stdout);
    assert_eq!(
        w.calls(),
        [
            "--user daemon-reload".to_string(),
            format!("--user enable {UNIT}"),
            format!("--user restart {UNIT}"),
            format!("--user show {UNIT} --property=ActiveState,SubState,UnitFileState,MainPID"),
        ]
    );
    let text = read(&w.unit());
    let exec = format!(
        "ExecStart=\"{}\" \"--state-dir\" \"{}\" \"queue-daemon\" \"run\"\n",
        env!("CARGO_BIN_EXE_kugetsu"),
        w.env.state.display()
    );
    assert!(text.contains(&exec), "{text}");
    for line in ["Restart=on-failure\n", "KillSignal=SIGTERM\n", "WantedBy=default.target\n"] {
        assert!(text.contains(line), "{line}: {text}");
    }
    verify(&w.unit());

    // Again: the same unit, so nothing is rewritten and the daemon is not restarted.
    let out = w.env.run(&["queue-daemon", "install"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("unchanged: "), "{}", out.stdout);
    assert!(w.calls().contains(&format!("--user start {UNIT}")));

    let out = w.env.run(&["queue-daemon", "uninstall"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        w.calls(),
        [
            format!("--user disable --now {UNIT}"),
            "--user daemon-reload".to_string(),
            format!("--user reset-failed {UNIT}"),
        ]
    );
    assert_eq!(w.home_files(), before, "install then uninstall left something behind");

    let out = w.env.run(&["queue-daemon", "uninstall"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("is not installed"), "{}", out.stdout);
    assert_eq!(w.calls(), Vec::<String>::new(), "nothing to ask systemd");
}

#[test]
fn status_says_whether_systemd_runs_the_daemon() {
    let w = World::new();
    // A daemon that fails at once: install says so rather than "running".
    w.show("ActiveState=failed\nSubState=failed\nUnitFileState=enabled\nMainPID=0\n");
    let out = w.env.run(&["queue-daemon", "install"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("{UNIT} is enabled, but systemd says it is failed (failed)")),
        "{}",
        out.stdout
    );

    w.show("ActiveState=inactive\nSubState=dead\nUnitFileState=enabled\nMainPID=0\n");
    let out = w.env.run(&["queue-daemon", "status"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        format!(
            "not running\nnot under systemd: {UNIT} is installed (enabled) but inactive (dead)\n"
        )
    );

    // The daemon started by hand, then systemd naming it as its main process.
    assert_eq!(w.env.run(&["queue-daemon", "start"]).code, 0);
    let pid = json(&w.env.run(&["--json", "queue-daemon", "status"]).stdout)["pid"].clone();
    w.show(&format!(
        "ActiveState=active\nSubState=running\nUnitFileState=enabled\nMainPID={pid}\n"
    ));
    let out = w.env.run(&["queue-daemon", "status"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.ends_with(&format!("under systemd: {UNIT} (enabled, active)\n")),
        "{}",
        out.stdout
    );
    let status = json(&w.env.run(&["--json", "queue-daemon", "status"]).stdout);
    assert_eq!(status["systemd"]["under_systemd"], true, "{status}");

    assert_eq!(w.env.run(&["queue-daemon", "stop"]).code, 0);
    wait_for("the daemon to stop", || w.env.run(&["queue-daemon", "status"]).code == 1);
}

#[test]
fn install_refuses_while_a_daemon_runs_outside_systemd() {
    let w = World::new();
    assert_eq!(w.env.run(&["queue-daemon", "start"]).code, 0);
    w.show("ActiveState=inactive\nSubState=dead\nUnitFileState=disabled\nMainPID=0\n");
    let out = w.env.run(&["queue-daemon", "install"]);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.starts_with("Error: the queue daemon already runs outside systemd"));
    assert!(!w.unit().exists());
    assert_eq!(w.env.run(&["queue-daemon", "stop"]).code, 0);
}

#[test]
fn a_user_manager_that_cannot_be_reached_leaves_no_unit() {
    let w = World::new();
    let before = w.home_files();
    std::fs::write(w.dir.join("systemctl.fail"), "daemon-reload\n").unwrap();
    let out = w.env.run(&["queue-daemon", "install"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.starts_with(
            "Error: `systemctl --user daemon-reload` failed\n\
             Caused by: Failed to connect to bus: No medium found\n"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Hint: "), "{}", out.stderr);
    assert_eq!(w.home_files(), before, "a failed install left the unit behind");
}

/// A unit's command line is the service's, which every local user can read: the queue's URL
/// given with `--config` is refused there, pointing at the config file, and nothing is written
/// or asked of systemd.
#[test]
fn install_refuses_the_queue_url_on_the_command_line() {
    let world = World::new();
    let url = "KUGETSU_QUEUE_URL=postgres://k:Pw%2Fplanted9@127.0.0.1:9/q";
    let out = world.env.run(&["--config", url, "queue-daemon", "install"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("put KUGETSU_QUEUE_URL in the config file"), "{}", out.stderr);
    assert!(!out.stderr.contains("planted9") && !out.stdout.contains("planted9"));
    assert!(!world.unit().exists());
    assert!(world.calls().is_empty(), "{:?}", world.calls());
}
