//! `kugetsu` on a terminal, as a user at one runs it: a python3 relay gives it a 40x120
//! pseudo-terminal, keeps everything drawn, and types what the test writes. For the suites
//! whose agent opens a TUI (the interactive `init`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::support::Env;

/// Relays a pseudo-terminal (40x120) between its child and its own stdin/stdout-less caller:
/// what the child draws goes to `PTY_LOG`, what arrives on stdin is typed into it.
const PTY_RELAY: &str = r#"
import os, pty, sys, struct, fcntl, termios, select
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 120, 0, 0))
out = open(os.environ["PTY_LOG"], "wb")
stdin_open = True
while True:
    r, _, _ = select.select([fd] + ([0] if stdin_open else []), [], [], 0.2)
    if fd in r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out.write(data)
        out.flush()
    if 0 in r:
        data = os.read(0, 1024)
        if data:
            os.write(fd, data)
        else:
            stdin_open = False
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"#;

/// Whether python3 (the relay) runs; without it the test is skipped after saying so, unless
/// the variable `required` is `1` (then it fails).
pub fn relay_available(required: &str) -> bool {
    if std::process::Command::new("python3").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os(required).is_none_or(|v| v != "1"),
        "{required}=1 but python3 (the pseudo-terminal relay) is missing"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED: no python3 to relay a pseudo-terminal");
    false
}

/// A `kugetsu` running on a pseudo-terminal.
pub struct Terminal {
    child: Child,
    keys: ChildStdin,
    log: PathBuf,
}

impl Terminal {
    /// `kugetsu args...` started as [`Env::command`] starts it, but on a terminal
    /// (`TERM=xterm-256color`).
    pub fn start(env: &Env, args: &[&str]) -> Terminal {
        let relay = env.tmp.path().join("pty_relay.py");
        std::fs::write(&relay, PTY_RELAY).unwrap();
        let log = env.tmp.path().join("pty.log");
        let mut cmd = env.program("python3");
        cmd.arg(&relay).arg(env!("CARGO_BIN_EXE_kugetsu")).args(args);
        cmd.env("TERM", "xterm-256color").env("PTY_LOG", &log);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let keys = child.stdin.take().unwrap();
        Terminal { child, keys, log }
    }

    /// Types `keys` (Ctrl-C is `\x03`, Enter `\r`).
    pub fn type_keys(&mut self, keys: &[u8]) {
        let _ = self.keys.write_all(keys);
    }

    /// Everything drawn so far, without escape sequences.
    pub fn shown(&self) -> String {
        self.last(usize::MAX)
    }

    /// The last `max` characters drawn, without escape sequences: for messages.
    pub fn last(&self, max: usize) -> String {
        visible(&String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()), max)
    }

    /// The pid of the command on the terminal (the relay's child), while it runs.
    pub fn command_pid(&self) -> Option<u32> {
        let relay = self.child.id();
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok()?;
            (ppid == relay).then_some(pid)
        })
    }

    /// How `kugetsu` exited, once it has.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

/// Waits until `ready` (called every 200 ms; it may type) says the moment has come, then sends
/// `sig` (a `kill -s` name) to the command on the terminal and waits for it to exit. Fails if
/// the command ends first, or after 120 s with what was shown. How it exited, and its last
/// lines.
pub fn signal_when(
    terminal: &mut Terminal,
    mut ready: impl FnMut(&mut Terminal) -> bool,
    sig: &str,
) -> (ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready(terminal) {
        assert!(Instant::now() < deadline, "never ready:\n{}", terminal.last(3000));
        assert!(terminal.try_wait().is_none(), "it ended first:\n{}", terminal.last(3000));
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = terminal.command_pid().expect("the command runs on the terminal");
    super::support::signal(pid, sig);
    loop {
        if let Some(status) = terminal.try_wait() {
            return (status, terminal.last(3000));
        }
        assert!(Instant::now() < deadline, "it did not stop:\n{}", terminal.last(3000));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kugetsu init` on a terminal, stopped by SIGTERM (a closed SSH session, a `kill`) once
/// `ready` says so (see [`signal_when`]): asserts that it failed; what it showed last.
pub fn init_stopped_by_sigterm(env: &Env, ready: impl FnMut(&mut Terminal) -> bool) -> String {
    let mut terminal = Terminal::start(env, &["init"]);
    let (status, shown) = signal_when(&mut terminal, ready, "TERM");
    assert_ne!(status.code(), Some(0), "init stopped:\n{shown}");
    shown
}

/// `kugetsu status` says kugetsu is not initialized (exit 3).
pub fn assert_not_initialized(env: &Env) {
    let out = env.run(&["status"]);
    assert_eq!(out.code, 3, "not initialized: {}{}", out.stdout, out.stderr);
}

/// Drives a command that runs one TUI after another (`init`: the base's, then the PM's) until it
/// exits: each round `step` looks at the terminal and says which TUI now runs, if it can tell
/// (by the prompts the model got); that TUI is left with `quit` once, 2 s later (its answer
/// drawn), and again if it is still there 15 s after. Fails after 180 s with what was shown.
pub fn leave_each_tui(
    terminal: &mut Terminal,
    mut step: impl FnMut(&mut Terminal) -> Option<usize>,
    quit: impl Fn(&mut Terminal),
) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut quit_sent: Option<(usize, Instant)> = None;
    loop {
        if let Some(status) = terminal.try_wait() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the command never finished; the terminal showed:\n{}",
            terminal.last(3000)
        );
        let current = step(terminal);
        let due = current.is_some_and(|tui| match quit_sent {
            Some((sent, at)) if sent == tui => at.elapsed() > Duration::from_secs(15),
            _ => true,
        });
        if let (true, Some(tui)) = (due, current) {
            std::thread::sleep(Duration::from_secs(2));
            quit(terminal);
            quit_sent = Some((tui, Instant::now()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Drop for Terminal {
    /// A test that failed midway leaves nothing running: the relay's end closes the terminal,
    /// which hangs up on `kugetsu` and its TUI.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a terminal showed, without its escape sequences, last `max` characters. Cursor moves
/// along the line (`CSI n C` forward, `CSI n G` to a column: how some TUIs draw blanks) are
/// shown as spaces.
fn visible(drawn: &str, max: usize) -> String {
    let mut out = String::new();
    let mut col = 0usize;
    let mut chars = drawn.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // OSC: up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                // CSI and the rest: up to the final letter.
                _ => {
                    let mut param = String::new();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() || c == '~' {
                            let n: usize = param.parse().unwrap_or(1).min(1000);
                            let blanks = match c {
                                'C' => n,
                                'G' => n.saturating_sub(1).saturating_sub(col),
                                _ => 0,
                            };
                            out.extend(std::iter::repeat_n(' ', blanks));
                            col += blanks;
                            break;
                        }
                        param.push(c);
                    }
                }
            },
            '\n' => {
                out.push(c);
                col = 0;
            }
            c if c.is_control() => {}
            c => {
                out.push(c);
                col += 1;
            }
        }
    }
    let skip = out.chars().count().saturating_sub(max);
    out.chars().skip(skip).collect()
}
