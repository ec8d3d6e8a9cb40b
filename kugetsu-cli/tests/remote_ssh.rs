//! `scripts/sshd-setup.sh` against the real `sshd`: the script configures a scratch sshd
//! (its own configuration step, checked by the real `sshd -t`/`-T`), the test starts that sshd
//! on a free loopback port, and a generated key logs in and runs `kugetsu list`, `start` and
//! `continue` on the fake agent as a real non-root user; passwords and unknown keys are
//! refused, and a second run of the script changes nothing; a link planted in `~/.ssh` is
//! refused without touching what it points to, and a reload that fails leaves the previous
//! configuration, repaired by the next run.
//!
//! What the script does to the system beyond sshd's configuration (`systemctl`, `useradd`, the
//! package managers) runs against stand-ins on `PATH` that record their calls. The login needs
//! a real account: the test makes one (`kgt<pid>`, its home in the scratch directory) and
//! removes it. It needs root and `openssh-server`; without them it prints why and passes as
//! skipped, unless `KUGETSU_REAL_SSHD=1` (set in CI) makes that a failure.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use support::{Env, wait_for};

const SSHD: &str = "/usr/sbin/sshd";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/sshd-setup.sh")
}

/// Whether the real parts are here; when not, says why (a failure under `KUGETSU_REAL_SSHD=1`).
fn available() -> bool {
    let why = if !is_root() {
        "it needs root (sshd logs in another user)"
    } else if !Path::new(SSHD).exists() {
        "sshd is not installed (Debian package openssh-server)"
    } else {
        // sshd's privilege separation directory (its systemd unit makes it; here, nobody has).
        std::fs::create_dir_all("/run/sshd").unwrap();
        return true;
    };
    skip(why);
    false
}

fn skip(why: &str) {
    assert!(
        std::env::var_os("KUGETSU_REAL_SSHD").is_none_or(|v| v != "1"),
        "KUGETSU_REAL_SSHD=1 but {why}"
    );
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED: the real sshd: {why}\n").as_bytes(),
    );
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

/// A real account for the login, removed again when the test ends.
struct User {
    name: String,
}

impl User {
    fn create(tag: &str, home: &Path, password: &str) -> User {
        let name = format!("kgt{tag}{}", std::process::id());
        let out = run(Command::new("useradd")
            .args(["-M", "-U", "-s", "/bin/bash", "-d"])
            .arg(home)
            .arg(&name));
        assert!(out.status.success(), "useradd: {}", text(&out));
        let user = User { name };
        let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(
            chpasswd.stdin.as_mut().unwrap(),
            format!("{}:{password}\n", user.name).as_bytes(),
        )
        .unwrap();
        drop(chpasswd.stdin.take());
        assert!(chpasswd.wait().unwrap().success(), "chpasswd");
        user
    }

    fn owns(&self, dir: &Path) {
        let out = run(Command::new("chown").arg("-R").arg(format!("{0}:{0}", self.name)).arg(dir));
        assert!(out.status.success(), "chown: {}", text(&out));
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = run(Command::new("userdel").arg(&self.name));
    }
}

/// The scratch sshd: its main configuration (what a distribution ships, here with a loopback
/// port, a scratch host key and no PAM) including `sshd_config.d`, where the script writes;
/// and stand-ins for what the script must not really do.
struct Scratch {
    dir: tempfile::TempDir,
    port: u16,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(etc.join("sshd_config.d")).unwrap();
        let out = run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(etc.join("host_key")));
        assert!(out.status.success(), "{}", text(&out));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = etc.display();
        std::fs::write(
            etc.join("sshd_config"),
            format!(
                "Include {d}/sshd_config.d/*.conf\nPort {port}\nListenAddress 127.0.0.1\n\
                 HostKey {d}/host_key\nPidFile {d}/sshd.pid\nUsePAM no\n"
            ),
        )
        .unwrap();
        let standin = dir.path().join("standin");
        std::fs::create_dir_all(&standin).unwrap();
        let s = standin.display();
        let systemctl = format!(
            "#!/bin/sh\necho \"systemctl $*\" >> '{s}/calls'\nq=\ncase \"$2\" in --quiet) q=1; set -- \"$1\" \"$3\";; esac\n\
             [ -e '{s}/fail-'\"$1\" ] && exit 1\n\
             case \"$1\" in\n  is-system-running) echo running ;;\n  is-active) [ -e '{s}/active-'\"$2\" ] ;;\n  \
             is-enabled) [ -e '{s}/enabled-'\"$2\" ] ;;\n  start|reload|restart) touch '{s}/active-'\"$2\" ;;\n  \
             enable) touch '{s}/enabled-'\"$2\" ;;\nesac\n"
        );
        std::fs::write(standin.join("systemctl"), systemctl).unwrap();
        for name in ["useradd", "apt-get", "dnf", "visudo"] {
            std::fs::write(
                standin.join(name),
                format!("#!/bin/sh\necho \"{name} $*\" >> '{s}/calls'\n"),
            )
            .unwrap();
        }
        for entry in std::fs::read_dir(&standin).unwrap() {
            let p = entry.unwrap().path();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        Scratch { dir, port }
    }

    fn etc(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    /// Runs the script with the stand-ins first on `PATH` and this box's configuration.
    fn setup(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.path().join("standin").display(),
            std::env::var("PATH").unwrap()
        );
        run(Command::new("bash")
            .arg(script())
            .args(args)
            .env("PATH", path)
            .env("KUGETSU_SSHD_CONFIG", self.etc().join("sshd_config"))
            .current_dir(self.dir.path()))
    }

    /// The stand-ins' calls since the last time this was asked.
    fn calls(&self) -> Vec<String> {
        let path = self.dir.path().join("standin/calls");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        text.lines().map(str::to_string).collect()
    }

    fn start_sshd(&self) -> Option<Sshd> {
        let log = self.etc().join("sshd.log");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(self.etc().join("sshd_config"))
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut sshd = Sshd(child);
        let mut exited = false;
        wait_for("sshd to listen", || {
            exited = sshd.0.try_wait().unwrap().is_some();
            exited
                || std::fs::read_to_string(&log).unwrap_or_default().contains("Server listening on")
        });
        if exited {
            skip(&format!(
                "sshd did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
            return None;
        }
        Some(sshd)
    }
}

struct Sshd(Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a change to a file would touch: content, mode, owner, group, mtime (s, ns).
type FileFacts = (Vec<u8>, u32, u32, u32, i64, i64);

/// Every file below `roots` with its [`FileFacts`].
fn tree(roots: &[PathBuf]) -> BTreeMap<PathBuf, FileFacts> {
    fn walk(p: &Path, out: &mut BTreeMap<PathBuf, FileFacts>) {
        let Ok(m) = std::fs::symlink_metadata(p) else { return };
        let content = if m.is_file() { std::fs::read(p).unwrap() } else { Vec::new() };
        out.insert(
            p.to_path_buf(),
            (content, m.mode(), m.uid(), m.gid(), m.mtime(), m.mtime_nsec()),
        );
        if m.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    for r in roots {
        walk(r, &mut out);
    }
    out
}

/// Debian's sshd unit is `ssh`, Fedora's `sshd`.
fn sshd_unit() -> &'static str {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if os.contains("debian") || os.contains("ubuntu") { "ssh.service" } else { "sshd.service" }
}

#[test]
fn a_key_logs_in_and_runs_kugetsu_passwords_and_unknown_keys_do_not() {
    if !available() {
        return;
    }
    let env = support::ready();
    let password = "correct horse battery staple";
    let user = User::create("s", &env.home, password);
    user.owns(env.tmp.path());
    let b = Scratch::new();
    let keys = b.dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for name in ["id", "stranger"] {
        let out = run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(keys.join(name)));
        assert!(out.status.success(), "{}", text(&out));
    }
    let pubkey = keys.join("id.pub");

    let out = b.setup(&["--authorized-key", pubkey.to_str().unwrap(), &user.name]);
    assert!(out.status.success(), "{}", text(&out));
    let unit = sshd_unit();
    let calls = b.calls();
    assert!(calls.contains(&format!("systemctl start {unit}")), "{calls:?}");
    assert!(calls.contains(&format!("systemctl enable {unit}")), "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("useradd")), "the user existed: {calls:?}");
    let ssh_dir = env.home.join(".ssh");
    let auth = ssh_dir.join("authorized_keys");
    assert_eq!(std::fs::metadata(&ssh_dir).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(std::fs::metadata(&auth).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&auth).unwrap(),
        std::fs::read_to_string(&pubkey).unwrap(),
        "the key, once"
    );

    // Again: nothing changes, and sshd is neither restarted nor reloaded.
    let watched = [b.etc(), ssh_dir.clone()];
    let before = tree(&watched);
    let out = b.setup(&["--authorized-key", pubkey.to_str().unwrap(), &user.name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Nothing to change"), "{}", text(&out));
    let calls = b.calls();
    assert!(calls.iter().all(|c| c.starts_with("systemctl is-")), "only questions: {calls:?}");
    assert_eq!(tree(&watched), before, "the second run changed something");

    let Some(_sshd) = b.start_sshd() else { return };
    let ssh = |extra: &[&str], remote: &str| {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-p", &b.port.to_string()])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"])
            .args(extra)
            .arg(format!("{}@127.0.0.1", user.name))
            .arg(remote);
        run(&mut cmd)
    };
    let id = keys.join("id");
    let key = ["-o", "BatchMode=yes", "-i", id.to_str().unwrap()];
    let kugetsu = env!("CARGO_BIN_EXE_kugetsu");
    let elsewhere = env.elsewhere();
    let remote = |args: &str| format!("cd '{}' && '{kugetsu}' {args}", elsewhere.display());

    let out = ssh(&key, "id -un");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", user.name));
    let out = ssh(&key, &remote("list"));
    assert!(out.status.success(), "{}", text(&out));
    let out = ssh(&key, &remote("start '#1' 'do the work'"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("local.test/demo/app#1: completed"),
        "{}",
        text(&out)
    );
    let work = env.path("worktrees/local.test-demo-app-1/WORK.md");
    assert_eq!(std::fs::read_to_string(&work).unwrap(), "done\n");
    let uid = run(Command::new("id").arg("-u").arg(&user.name));
    assert_eq!(
        std::fs::metadata(&work).unwrap().uid().to_string(),
        String::from_utf8_lossy(&uid.stdout).trim(),
        "the agent ran as the user who logged in"
    );
    let out = ssh(&key, &remote("continue '#1' 'and the tests'"));
    assert!(out.status.success(), "{}", text(&out));
    let out = ssh(&key, &remote("list"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("#1"), "{}", text(&out));

    let out = ssh(&["-o", "BatchMode=yes", "-i", keys.join("stranger").to_str().unwrap()], "true");
    assert_eq!(out.status.code(), Some(255), "an unknown key: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{}", text(&out));

    // The right password, offered by an askpass program, is refused: sshd offers no way to use it.
    let askpass = keys.join("askpass");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
    std::fs::set_permissions(&askpass, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap();
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-p", &b.port.to_string()])
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"])
        .args(["-o", "PreferredAuthentications=password,keyboard-interactive"])
        .arg(format!("{}@127.0.0.1", user.name))
        .arg("true")
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0");
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(255), "a password: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied (publickey)"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_configuration_sshd_would_not_apply_is_never_left_in_place() {
    if !available() {
        return;
    }
    let env = Env::new();
    let user = User::create("c", &env.home, "unused password");
    user.owns(env.tmp.path());
    let b = Scratch::new();
    let dropin = b.etc().join("sshd_config.d/10-kugetsu.conf");

    // A file read earlier (as cloud images ship) turns passwords back on.
    let cloud = b.etc().join("sshd_config.d/05-cloud.conf");
    std::fs::write(&cloud, "PasswordAuthentication yes\n").unwrap();
    let out = b.setup(&[&user.name]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not apply 'passwordauthentication no'"),
        "{}",
        text(&out)
    );
    assert!(!dropin.exists(), "the overridden configuration was left in place");
    let calls = b.calls();
    assert!(!calls.iter().any(|c| c.contains("start") || c.contains("reload")), "{calls:?}");
    std::fs::remove_file(&cloud).unwrap();

    // A configuration sshd rejects: nothing is written at all.
    let main = b.etc().join("sshd_config");
    let good = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, format!("{good}NoSuchOption yes\n")).unwrap();
    let out = b.setup(&[&user.name]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("sshd rejects the configuration; nothing was changed"),
        "{}",
        text(&out)
    );
    assert!(!dropin.exists());
}

#[test]
fn a_dry_run_changes_nothing_and_says_what_it_would_do() {
    if !available() {
        return;
    }
    let b = Scratch::new();
    let fedora = b.dir.path().join("os-release");
    std::fs::write(&fedora, "NAME=\"Fedora Linux\"\nID=fedora\n").unwrap();
    let before = tree(&[b.etc()]);
    let name = format!("kgtnone{}", std::process::id());
    for (os, unit) in [(None, sshd_unit()), (Some(&fedora), "sshd.service")] {
        let mut cmd = Command::new("bash");
        let path = format!(
            "{}:{}",
            b.dir.path().join("standin").display(),
            std::env::var("PATH").unwrap()
        );
        cmd.arg(script())
            .args(["--dry-run", &name])
            .env("PATH", path)
            .env("KUGETSU_SSHD_CONFIG", b.etc().join("sshd_config"));
        if let Some(os) = os {
            cmd.env("KUGETSU_OS_RELEASE", os);
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in [
            format!("would run: useradd --create-home --shell /bin/bash {name}"),
            format!("would write {}/sshd_config.d/10-kugetsu.conf:", b.etc().display()),
            "    PasswordAuthentication no".to_string(),
            "sshd -t accepts the new configuration".to_string(),
            format!("would run: systemctl start {unit}"),
            "Dry run: ".to_string(),
        ] {
            assert!(stdout.contains(&line), "{line:?} missing:\n{}", text(&out));
        }
        let calls = b.calls();
        assert!(calls.iter().all(|c| c.starts_with("systemctl is-")), "{calls:?}");
    }
    assert_eq!(tree(&[b.etc()]), before);

    let out = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"])
        .arg(script()));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("this needs root"), "{}", text(&out));
}

/// The script runs as root in a home the user controls: a link the user planted at
/// `~/.ssh/authorized_keys` (or at `~/.ssh`) is refused, and the file it points to (here one
/// only root may change) is neither chmod-ed, chown-ed nor appended to.
#[test]
fn a_symlinked_key_file_is_refused_and_nothing_outside_ssh_changes() {
    if !available() {
        return;
    }
    let env = Env::new();
    let user = User::create("l", &env.home, "unused password");
    let b = Scratch::new();
    let keys = b.dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let out = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(keys.join("id")));
    assert!(out.status.success(), "{}", text(&out));
    let pubkey = keys.join("id.pub");
    // Root's file the link points to, and a directory of root's for the linked `.ssh`.
    let victims = b.dir.path().join("victims");
    std::fs::create_dir_all(victims.join("dir")).unwrap();
    std::fs::write(victims.join("shadow"), "root:secret:\n").unwrap();
    std::fs::set_permissions(victims.join("shadow"), PermissionsExt::from_mode(0o640)).unwrap();
    let ssh_dir = env.home.join(".ssh");
    for what in ["authorized_keys", ".ssh"] {
        let _ = std::fs::remove_dir_all(&ssh_dir);
        let _ = std::fs::remove_file(&ssh_dir);
        if what == ".ssh" {
            std::os::unix::fs::symlink(victims.join("dir"), &ssh_dir).unwrap();
        } else {
            std::fs::create_dir_all(&ssh_dir).unwrap();
            std::os::unix::fs::symlink(victims.join("shadow"), ssh_dir.join("authorized_keys"))
                .unwrap();
        }
        user.owns(env.tmp.path());
        let before = tree(&[victims.clone(), b.etc()]);
        let out = b.setup(&["--authorized-key", pubkey.to_str().unwrap(), &user.name]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is a symbolic link; refusing"),
            "{what}: {}",
            text(&out)
        );
        assert_eq!(tree(&[victims.clone(), b.etc()]), before, "{what}: something changed");
        let calls = b.calls();
        assert!(calls.iter().all(|c| c.starts_with("systemctl is-")), "{calls:?}");
    }
}

/// A reload that fails after the new configuration was written: the previous one is put back
/// (sshd -T reports exactly what it did before, so the running sshd and its files agree), and
/// the next run, asking sshd -T rather than trusting its own file, writes and reloads again. A
/// run killed between writing and reloading leaves a note that makes the next run reload.
#[test]
fn a_failed_reload_leaves_the_previous_configuration_and_the_next_run_repairs_it() {
    if !available() {
        return;
    }
    let env = Env::new();
    let user = User::create("r", &env.home, "unused password");
    user.owns(env.tmp.path());
    let b = Scratch::new();
    let unit = sshd_unit();
    let standin = b.dir.path().join("standin");
    std::fs::write(standin.join(format!("active-{unit}")), "").unwrap();
    let dropin = b.etc().join("sshd_config.d/10-kugetsu.conf");
    let pending = b.etc().join("sshd_config.d/.10-kugetsu.conf.pending");
    let effective = || {
        let out = run(Command::new(SSHD).arg("-T").arg("-f").arg(b.etc().join("sshd_config")));
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = effective();
    assert!(before.contains("\npasswordauthentication yes\n"), "{before}");

    std::fs::write(standin.join("fail-reload"), "").unwrap();
    let out = b.setup(&[&user.name]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the previous configuration was put back"),
        "{}",
        text(&out)
    );
    assert!(b.calls().contains(&format!("systemctl reload {unit}")));
    assert_eq!(effective(), before, "sshd -T reports what it did before");
    assert!(!dropin.exists() && !pending.exists());

    std::fs::remove_file(standin.join("fail-reload")).unwrap();
    let out = b.setup(&[&user.name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(b.calls().contains(&format!("systemctl reload {unit}")), "repaired");
    assert!(effective().contains("\npasswordauthentication no\n"));
    assert!(dropin.exists() && !pending.exists());

    // Killed between writing and reloading: the note makes the next run reload.
    std::fs::write(&pending, "").unwrap();
    let out = b.setup(&[&user.name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(b.calls().contains(&format!("systemctl reload {unit}")), "{}", text(&out));
    assert!(!pending.exists());
    let out = b.setup(&[&user.name]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Nothing to change"), "{}", text(&out));
    assert!(b.calls().iter().all(|c| c.starts_with("systemctl is-")));
}
