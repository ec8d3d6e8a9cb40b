//! README promises about configuration and the install, tried through the `kugetsu` binary:
//! the precedence of the config layers (`--config KEY=VALUE` highest), `--state-dir`,
//! `KUGETSU_LOG`, colour only on a terminal and never with `NO_COLOR`, `KUGETSU_TEMP_DIR` reaching
//! the agent, `KUGETSU_VERBOSITY`, the daemon's poll interval, `scripts/kugetsu-install.sh`, and
//! SKILL.md given to the agents at `init`.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{Env, json, read, ready};

fn append_config(env: &Env, line: &str) {
    let config = read(&env.path("config"));
    std::fs::write(env.path("config"), format!("{config}{line}\n")).unwrap();
}

fn issue_refs(env: &Env) -> Vec<String> {
    let rows = json(&env.run(&["list", "--json"]).stdout);
    rows.as_array().unwrap().iter().map(|r| r["issue_ref"].as_str().unwrap().to_string()).collect()
}

/// The line of `doctor`'s settings table for `key`.
fn doctor_setting(env: &Env, args: &[&str], key: &str) -> String {
    let out = env.run(&[args, &["doctor"]].concat());
    let prefix = format!("  {key} ");
    let line = out.stdout.lines().find(|l| l.starts_with(&prefix));
    line.unwrap_or_else(|| panic!("no {key} in:\n{}{}", out.stdout, out.stderr)).to_string()
}

/// Defaults < the `config` file < the environment < `--config KEY=VALUE`: each layer decides
/// what a command does when the ones above it are silent, and `doctor` says which one did. An
/// unknown key or a flag that is not KEY=VALUE is a usage error (exit 2).
#[test]
fn config_flag_beats_environment_beats_file() {
    let mut env = ready();
    let repo = env.tmp.path().join("repo");
    std::fs::write(
        env.path("repos.json"),
        serde_json::to_vec(&serde_json::json!({
            "local.test/demo/app": repo, "github.com/o/env": repo, "github.com/o/flag": repo,
        }))
        .unwrap(),
    )
    .unwrap();
    // The file says local.test/demo/app (see support::sample_repo).
    assert_eq!(env.run(&["start", "#1", "file"]).code, 0);
    env.set("KUGETSU_DEFAULT_REPO", "github.com/o/env");
    assert_eq!(env.run(&["start", "#2", "environment"]).code, 0);
    let out = env.run(&["--config", "KUGETSU_DEFAULT_REPO=github.com/o/flag", "start", "#3", "x"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = env.run(&["start", "#4", "y", "-C", "KUGETSU_DEFAULT_REPO=github.com/o/flag"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        issue_refs(&env)[2..],
        [
            "github.com/o/env#2",
            "github.com/o/flag#3",
            "github.com/o/flag#4",
            "local.test/demo/app#1"
        ]
    );

    let config = env.path("config").display().to_string();
    // The file names the agent program by its old name, which is read as the new one.
    let line = doctor_setting(&env, &[], "KUGETSU_AGENT_BIN");
    assert!(line.ends_with(&format!("({config}:1)")), "{line}");
    let line = doctor_setting(&env, &[], "KUGETSU_DEFAULT_REPO");
    assert!(line.contains("github.com/o/env") && line.ends_with("(environment)"), "{line}");
    let flag = ["--config", "KUGETSU_DEFAULT_REPO=github.com/o/flag"];
    let line = doctor_setting(&env, &flag, "KUGETSU_DEFAULT_REPO");
    assert!(line.contains("github.com/o/flag") && line.ends_with("(command line)"), "{line}");
    let line = doctor_setting(&env, &[], "QUEUE_CLEANUP_AGE_DAYS");
    assert!(line.contains(" 7 ") && line.ends_with("(default)"), "{line}");

    let out = env.run(&["--config", "NO_SUCH_KEY=1", "list"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("unknown setting NO_SUCH_KEY"), "{}", out.stderr);
    let out = env.run(&["--config", "KUGETSU_DEFAULT_REPO", "list"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("is not KEY=VALUE"), "{}", out.stderr);
}

/// `--state-dir` overrides `KUGETSU_HOME` (relative to where the shell stands), for the command
/// and for what it starts in the background (the daemon).
#[test]
fn state_dir_flag_beats_kugetsu_home() {
    let env = ready();
    let other = env.tmp.path().join("other-state");
    let flag = other.to_str().unwrap();
    let out = env.run(&["--state-dir", flag, "status"]);
    assert_eq!((out.code, out.stdout.as_str()), (3, "kugetsu_not_initialized\n"));
    assert_eq!(env.run(&["status"]).stdout, "ok\n", "KUGETSU_HOME is initialized");

    let out = env.run(&["--state-dir", flag, "env", "set", "ONLY_THERE", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(read(&other.join("env/default.env")).contains("ONLY_THERE"));
    assert!(!read(&env.path("env/default.env")).contains("ONLY_THERE"));
    let out = env.run(&["--state-dir", "relative-state", "env", "set", "REL", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(env.elsewhere().join("relative-state/env/default.env").is_file());

    let out = env.run(&["--state-dir", flag, "queue-daemon", "start"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(other.join("queue/daemon.pid").is_file(), "the daemon uses the flag's directory");
    assert_eq!(env.run(&["queue-daemon", "status"]).stdout, "not running\n");
    let out = env.run(&["--state-dir", flag, "queue-daemon", "stop"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("queue daemon stopped"), "{}", out.stdout);
}

/// `KUGETSU_AGENT_BIN` names the agent program; `KUGETSU_OPENCODE_BIN`, its old name, is read
/// in every layer, and the new name wins in the same one. A program that cannot be run fails
/// with the configured driver's install hint.
#[test]
fn the_agent_program_has_a_neutral_name_and_the_old_one_still_works() {
    let mut env = ready();
    assert!(read(&env.path("config")).starts_with("KUGETSU_OPENCODE_BIN="), "the old name");
    assert_eq!(env.run(&["start", "#1", "x"]).code, 0);
    let missing = env.tmp.path().join("no-such-agent");
    env.set("KUGETSU_AGENT_BIN", missing.to_str().unwrap());
    let out = env.run(&["continue", "#1", "x"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("cannot run the agent program {}", missing.display())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.ends_with(
            "Hint: install opencode (`npm install -g @opencode/cli`, or 1.x: `npm install -g \
             opencode-ai`) or set KUGETSU_AGENT_BIN; `kugetsu demo` needs neither\n"
        ),
        "{}",
        out.stderr
    );
    let line = doctor_setting(&env, &[], "KUGETSU_AGENT_BIN");
    assert!(line.contains("no-such-agent") && line.ends_with("(environment)"), "{line}");
    // The old name in the environment: the new one, set too, wins.
    let fake = env.tmp.path().join("bin/opencode");
    env.set("KUGETSU_OPENCODE_BIN", fake.to_str().unwrap());
    assert_eq!(env.run(&["continue", "#1", "x"]).code, 1);
    let mut env = ready();
    env.set("KUGETSU_OPENCODE_BIN", missing.to_str().unwrap());
    assert_eq!(env.run(&["start", "#1", "x"]).code, 1, "the environment beats the file");
    let flag = format!("KUGETSU_OPENCODE_BIN={}", fake.display());
    assert_eq!(env.run(&["--config", &flag, "start", "#1", "x"]).code, 0, "a flag beats both");
}

/// `--debug` logs to stderr; `KUGETSU_LOG` is its filter (and alone logs nothing).
#[test]
fn kugetsu_log_filters_the_debug_log() {
    let mut env = ready();
    let out = env.run(&["--debug", "start", "#1", "x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(" DEBUG kugetsu_git"), "{}", out.stderr);
    assert!(out.stderr.contains(" DEBUG kugetsu_opencode"), "{}", out.stderr);

    env.set("KUGETSU_LOG", "kugetsu_git=debug");
    let out = env.run(&["--debug", "start", "#2", "x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(" DEBUG kugetsu_git"), "{}", out.stderr);
    assert!(!out.stderr.contains("kugetsu_opencode"), "{}", out.stderr);

    // The agent's argv is logged where every agent's command is built.
    env.set("KUGETSU_LOG", "kugetsu_process=debug");
    let out = env.run(&["--debug", "continue", "#2", "x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(" DEBUG kugetsu_process"), "{}", out.stderr);
    assert!(out.stderr.contains("building agent command"), "{}", out.stderr);
    assert!(!out.stderr.contains("kugetsu_git"), "{}", out.stderr);
    let out = env.run(&["continue", "#2", "no --debug"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("DEBUG"), "{}", out.stderr);

    env.set("KUGETSU_LOG", "off");
    let out = env.run(&["--debug", "continue", "#2", "x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("DEBUG"), "{}", out.stderr);
}

/// Runs `kugetsu args...` on a pseudo-terminal (util-linux `script`), with the environment of
/// `env`'s runs, `NO_COLOR` only if `no_color`; returns what the terminal showed.
fn on_a_terminal(env: &Env, args: &[&str], no_color: bool) -> String {
    let shell_env = env.command(args);
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let line = std::iter::once(env!("CARGO_BIN_EXE_kugetsu"))
        .chain(args.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]);
    for (k, v) in shell_env.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    // A terminal's shell has TERM set; NO_COLOR only when asked.
    cmd.env("TERM", "xterm-256color");
    if !no_color {
        cmd.env_remove("NO_COLOR");
    }
    let out = cmd
        .current_dir(env.elsewhere())
        .stdin(Stdio::null())
        .output()
        .expect("util-linux `script` runs a command on a pseudo-terminal");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// SGR sequences (colour, bold): `ESC [ ... m`.
fn has_colour(text: &str) -> bool {
    text.split('\x1b').skip(1).any(|s| {
        s.strip_prefix('[')
            .and_then(|s| s.find(|c: char| !c.is_ascii_digit() && c != ';').map(|i| &s[i..]))
            .is_some_and(|rest| rest.starts_with('m'))
    })
}

/// Colour on a terminal only, and never with `NO_COLOR` set.
#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let env = ready();
    for args in [&["--help"][..], &["start"], &["queue", "--help"]] {
        let shown = on_a_terminal(&env, args, false);
        assert!(has_colour(&shown), "{args:?} on a terminal: {shown:?}");
        assert!(shown.contains("Usage"), "{shown}");
        let plain = on_a_terminal(&env, args, true);
        assert!(!plain.contains('\x1b'), "{args:?} with NO_COLOR: {plain:?}");
        assert!(plain.contains("Usage"), "{plain}");
        let out = env.command(args).env_remove("NO_COLOR").output().unwrap();
        let piped = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(!piped.contains('\x1b'), "{args:?} into a pipe: {piped:?}");
        assert!(piped.contains("Usage"), "{piped}");
    }
    let shown = on_a_terminal(&env, &["start", "#1", "on a terminal"], true);
    assert!(shown.contains("local.test/demo/app#1: completed"), "{shown}");
    assert!(!has_colour(&shown), "{shown:?}");
}

/// A stand-in `opencode` that appends its first argument and the `KUGETSU_TEMP_DIR` it was
/// given to `dump`, then runs the fake agent; made the agent program in the config file.
fn dump_temp_dir(env: &Env) -> PathBuf {
    let dump = env.tmp.path().join("temp-dirs.txt");
    let wrapper = env.tmp.path().join("opencode-wrapper.sh");
    let fake = env.tmp.path().join("bin/opencode");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s %s\\n' \"$1\" \"${{KUGETSU_TEMP_DIR-unset}}\" >> '{}'\nexec '{}' \"$@\"\n",
            dump.display(),
            fake.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let config = read(&env.path("config")).replace(
        &format!("KUGETSU_OPENCODE_BIN={}", fake.display()),
        &format!("KUGETSU_OPENCODE_BIN={}", wrapper.display()),
    );
    std::fs::write(env.path("config"), config).unwrap();
    dump
}

/// Every agent run gets `KUGETSU_TEMP_DIR`: `~/.local/share/opencode/tool-output` by default, or
/// the configured directory.
#[test]
fn the_temp_dir_reaches_the_agent() {
    let mut env = ready();
    let dump = dump_temp_dir(&env);
    let last_run = || read(&dump).lines().rfind(|l| l.starts_with("run ")).unwrap().to_string();

    assert_eq!(env.run(&["start", "#1", "default"]).code, 0);
    let default = env.home.join(".local/share/opencode/tool-output");
    assert_eq!(last_run(), format!("run {}", default.display()));

    let mine = env.tmp.path().join("my-tool-output");
    env.set("KUGETSU_TEMP_DIR", mine.to_str().unwrap());
    assert_eq!(env.run(&["continue", "#1", "from the environment"]).code, 0);
    assert_eq!(last_run(), format!("run {}", mine.display()));

    let flag = env.tmp.path().join("flag-tool-output");
    let flag = format!("KUGETSU_TEMP_DIR={}", flag.display());
    assert_eq!(env.run(&["--config", &flag, "continue", "#1", "from the flag"]).code, 0);
    assert_eq!(last_run(), format!("run {}", flag.trim_start_matches("KUGETSU_TEMP_DIR=")));
    // Every opencode process, not only runs.
    assert!(read(&dump).lines().all(|l| !l.ends_with(" unset")), "{}", read(&dump));
}

/// `KUGETSU_VERBOSITY=quiet` drops what the agent says from the progress, keeping its tool
/// calls; `default` shows both. A `--config` setting reaches a `--detach` run too.
#[test]
fn quiet_verbosity_prints_less() {
    let env = ready();
    let out = env.run(&["start", "#1", "x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("  agent: wrote WORK.md"), "{}", out.stderr);
    assert!(out.stderr.contains("  tool write"), "{}", out.stderr);

    let out = env.run(&["--config", "KUGETSU_VERBOSITY=quiet", "continue", "#1", "x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("agent: "), "{}", out.stderr);
    assert!(out.stderr.contains("  tool write"), "{}", out.stderr);
    assert!(out.stdout.contains("local.test/demo/app#1: completed"), "results are kept");

    let out = env.run(&["--config", "KUGETSU_VERBOSITY=quiet", "continue", "#1", "x", "--detach"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = PathBuf::from(out.stdout.lines().find_map(|l| l.strip_prefix("log: ")).unwrap());
    support::wait_for("the background run", || read(&log).contains(": completed"));
    assert!(!read(&log).contains("agent: "), "{}", read(&log));
    assert!(read(&log).contains("  tool write"), "{}", read(&log));
}

/// `QUEUE_DAEMON_INTERVAL_MINUTES` is read: `doctor` shows it with where it comes from, and the
/// daemon polls at that interval (its log says so when it starts).
#[test]
fn the_poll_interval_is_read() {
    let mut env = ready();
    append_config(&env, "QUEUE_DAEMON_INTERVAL_MINUTES=2");
    let line = doctor_setting(&env, &[], "QUEUE_DAEMON_INTERVAL_MINUTES");
    let config = env.path("config").display().to_string();
    assert!(line.contains(" 2 ") && line.contains(&format!("({config}:")), "{line}");
    env.set("QUEUE_DAEMON_INTERVAL_MINUTES", "3");
    let line = doctor_setting(&env, &[], "QUEUE_DAEMON_INTERVAL_MINUTES");
    assert!(line.contains(" 3 ") && line.ends_with("(environment)"), "{line}");

    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    let mut log = String::new();
    support::wait_for("the daemon's start in its log", || {
        log = env.run(&["queue-daemon", "logs"]).stdout;
        log.contains("daemon started")
    });
    assert!(log.contains("poll every 180s"), "{log}");
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
}

/// The agents' manual reaches them at `init`: both priming prompts carry SKILL.md whole, and
/// `workspace/SKILL.md` in the state directory is a copy.
#[test]
fn skill_md_reaches_the_agents_at_init() {
    let skill = include_str!("../SKILL.md");
    let (env, _repo) = Env::with_fake_agent();
    let record = env.tmp.path().join("record.jsonl");
    assert_eq!(env.run(&["env", "set", "FAKE_OPENCODE_RECORD", record.to_str().unwrap()]).code, 0);
    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(read(&env.path("workspace/SKILL.md")), skill);

    let prompts: Vec<String> = read(&record)
        .lines()
        .map(json)
        .filter(|r| r["argv"][0] == "run")
        .filter_map(|r| r["message"].as_str().map(str::to_string))
        .collect();
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert!(prompts[0].starts_with("You are a developer agent managed by kugetsu."));
    assert!(prompts[1].starts_with("You are the PM agent of kugetsu."));
    for p in &prompts {
        assert!(p.ends_with(skill), "SKILL.md is in the prompt whole: {p}");
    }
    // And they are the first messages of the sessions init recorded.
    let db = json(&read(&env.tmp.path().join("fake-db.json")));
    let rows = json(&env.run(&["list", "--json"]).stdout);
    for (row, prompt) in rows.as_array().unwrap().iter().zip(&prompts) {
        let id = &row["session_id"];
        let session = db["sessions"].as_array().unwrap().iter().find(|s| &s["id"] == id).unwrap();
        assert_eq!(&session["messages"][0]["parts"][0]["text"], prompt, "{}", row["issue_ref"]);
    }
}

/// The workspace's root, where the install script lives.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A program on this machine's usual PATH.
fn system_program(name: &str) -> PathBuf {
    ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed"))
}

/// A PATH of only what the install script may use besides cargo (a stand-in that records its
/// arguments and installs this `kugetsu`), so that anything else it ran (a download tool, git)
/// would fail it.
struct Install {
    tmp: tempfile::TempDir,
}

impl Install {
    fn new(with_cargo: bool) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("path");
        std::fs::create_dir_all(&bin).unwrap();
        for tool in ["dirname", "basename", "mkdir", "cat"] {
            std::os::unix::fs::symlink(system_program(tool), bin.join(tool)).unwrap();
        }
        if with_cargo {
            let cargo = bin.join("cargo");
            std::fs::write(
                &cargo,
                format!(
                    "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{log}'\n[ \"$1\" = install ] || exit 1\n\
                     root=\"${{CARGO_INSTALL_ROOT:-${{CARGO_HOME:-$HOME/.cargo}}}}\"\n\
                     {mkdir} -p \"$root/bin\" && {ln} -sf '{exe}' \"$root/bin/kugetsu\"\n",
                    log = tmp.path().join("cargo.log").display(),
                    mkdir = system_program("mkdir").display(),
                    ln = system_program("ln").display(),
                    exe = env!("CARGO_BIN_EXE_kugetsu"),
                ),
            )
            .unwrap();
            std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        std::fs::create_dir_all(tmp.path().join("home")).unwrap();
        Install { tmp }
    }

    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    /// Runs the script for a user whose login shell is `shell`; exit code, stdout, stderr.
    fn run(&self, shell: &str, extra_path: Option<&Path>) -> (Option<i32>, String, String) {
        let mut path = self.tmp.path().join("path").display().to_string();
        if let Some(extra) = extra_path {
            path = format!("{}:{path}", extra.display());
        }
        let out = Command::new(system_program("bash"))
            .arg(workspace_root().join("scripts/kugetsu-install.sh"))
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.home())
            .env("SHELL", shell)
            .env("CARGO_INSTALL_ROOT", self.root())
            .current_dir(self.tmp.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    }
}

/// `scripts/kugetsu-install.sh` installs with `cargo install --locked --path kugetsu-cli` and
/// nothing else from the network, adds completions for the user's shell (bash, zsh, fish), says
/// when the install directory is not on PATH, and says what to do next.
#[test]
fn the_install_script_installs_and_adds_completions() {
    let root = workspace_root().canonicalize().unwrap();
    for (shell, file, marker) in [
        ("/bin/bash", ".local/share/bash-completion/completions/kugetsu", "complete -F"),
        ("/usr/bin/zsh", ".zfunc/_kugetsu", "#compdef kugetsu"),
        ("/usr/bin/fish", ".config/fish/completions/kugetsu.fish", "complete -c kugetsu"),
    ] {
        let install = Install::new(true);
        let (code, stdout, stderr) = install.run(shell, None);
        assert_eq!(code, Some(0), "{shell}: {stdout}{stderr}");
        assert_eq!(stderr, "", "{shell}");
        let cargo = read(&install.tmp.path().join("cargo.log"));
        assert_eq!(cargo, format!("install --locked --path {}/kugetsu-cli\n", root.display()));
        let bin = install.root().join("bin");
        assert!(stdout.starts_with(&format!("installing kugetsu from {}\n", root.display())));
        assert!(stdout.contains(&format!("note: {} is not on your PATH", bin.display())));
        let completion = install.home().join(file);
        assert!(read(&completion).contains(marker), "{shell}: {}", completion.display());
        assert!(read(&completion).contains("queue-daemon"), "{shell}");
        assert!(stdout.contains(&completion.display().to_string()), "{stdout}");
        assert!(stdout.contains("\nkugetsu 0.1.0\n"), "the installed kugetsu runs: {stdout}");
        assert!(stdout.contains("Next:\n  kugetsu demo"), "{stdout}");
    }

    // The install directory on PATH: no note. An unknown shell: no completions, no error.
    let install = Install::new(true);
    let (code, stdout, stderr) =
        install.run("/bin/unknown-shell", Some(&install.root().join("bin")));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("note:"), "{stdout}");
    assert!(!stdout.contains("completions"), "{stdout}");
}

/// Without cargo the script stops at once, saying where to get it, and installs nothing.
#[test]
fn the_install_script_needs_cargo() {
    let install = Install::new(false);
    let (code, stdout, stderr) = install.run("/bin/bash", None);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "Error: cargo is not installed; install Rust from https://rustup.rs and run this again\n"
    );
    assert!(!install.root().exists());
    assert_eq!(std::fs::read_dir(install.home()).unwrap().count(), 0);
}

/// The install script passes shellcheck, where shellcheck is installed.
#[test]
#[allow(clippy::print_stderr)] // Says why it checked nothing.
fn the_install_script_passes_shellcheck() {
    let script = workspace_root().join("scripts/kugetsu-install.sh");
    match Command::new("shellcheck").arg(&script).output() {
        Ok(out) => assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("shellcheck not run ({e}); install it to check {}", script.display()),
    }
}

/// `KUGETSU_AGENT` picks the driver: the default is opencode, and a name no driver answers to
/// stops every command that would run an agent with a usage error naming it and the known
/// drivers; `doctor` still runs and reports it, and nothing in the state changes.
#[test]
fn kugetsu_agent_names_the_driver_and_an_unknown_one_is_refused() {
    let env = ready();
    assert!(doctor_setting(&env, &[], "KUGETSU_AGENT").contains("opencode"));
    let before = read(&env.path("index.json"));
    let out = env.run(&["--config", "KUGETSU_AGENT=codex", "start", "#1", "hello"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("KUGETSU_AGENT=codex: no such agent driver"), "{}", out.stderr);
    assert!(out.stderr.contains("Hint: known drivers: opencode"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().next().map(|l| l.starts_with("Error: ")), Some(true));
    assert_eq!(read(&env.path("index.json")), before, "nothing was started");
    let out = env.run(&["--config", "KUGETSU_AGENT=codex", "doctor"]);
    assert!(out.stdout.contains("no such agent driver"), "{}{}", out.stdout, out.stderr);
    let out = env.run(&["--config", "KUGETSU_AGENT=Open", "list"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("is not a driver name"), "{}", out.stderr);
}
