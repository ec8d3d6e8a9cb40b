//! [`OpencodeDriver`]: the [`AgentDriver`] that runs the real opencode CLI.
//!
//! It works around what the CLI really does (see the crate docs): the prompt goes on stdin with
//! no positional argument (positional arguments with spaces get wrapped in quotes), every run
//! has a wall-clock and an idle limit and kills its whole process group, a run is judged by its
//! events and not only its exit code (a rejected permission exits 0), and a fork is made by
//! export and import into the target directory (a fork made by `run --fork` keeps the base's
//! directory, and a run elsewhere hangs).
//!
//! Every opencode process costs about a second or more before it does anything, and 190 to
//! 330 MB (measured with 1.18.33: 0.9 s for `--version`, 1.3 to 2.2 s for `export`, `import` or
//! `db`), so the driver spends as few as the guarantees allow: a fork is one `import` (the
//! base's export is kept, see the `export_cache` module), and a run is the `run` alone. Neither
//! re-reads the session with `opencode db` afterwards, because what such a read would check
//! holds by construction, verified against the real opencode 1.18.33 (`tests/real_opencode.rs`):
//! - `import` prints `Imported session: ID`, and the id is checked against the one the rewrite
//!   gave the document;
//! - `import` stores the session with its own working directory as the session's directory
//!   (whatever the document says), and the driver starts it in the target directory with `PWD`
//!   set to it;
//! - `import` keeps the document's `permission` rules as they are, and the rewrite put the deny
//!   rules there;
//! - a session kugetsu imported into a worktree stays there: nothing moves it but a hand-made
//!   `opencode db` update.
//!
//! What remains is checked only when a run went wrong: a run that printed no event at all (an
//! unknown session, or one that lives in another directory and so hangs silently until the idle
//! limit) is explained with one look at its stored row.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kugetsu_core::agent::{
    AgentDriver, AgentEnv, AgentError, AgentSessionInfo, CreateSessionRequest, EventSink,
    ForkRequest, Repair, RunLimits, RunOutcome, RunReport, RunRequest, SessionId, WarmGuard,
};
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::secrets::{redact, secret_values};
use kugetsu_core::storage::FILE_MODE;
use serde::Deserialize;
use serde_json::Value;

use kugetsu_process::supervise::{self as process, Ended, Limits, Seen, Stream};
use kugetsu_process::{CommandSpec, Io, build_command};

use crate::command::SHELL_DIR_VARS;
use crate::events::{EventLog, strip_ansi};
use crate::export_cache;
use crate::fork::{IdGen, ensure_rules, replay_body, rewrite_export};
use crate::outcome::classify;
use crate::serve::{self, ServeHandle};

/// How to run opencode.
#[derive(Debug, Clone)]
pub struct OpencodeOptions {
    /// The opencode program (from the config or `KUGETSU_OPENCODE_BIN`; resolved by the
    /// caller, this crate reads no environment).
    pub program: PathBuf,
    /// The environment every opencode process starts from (`PATH`, `HOME`, `XDG_*`, provider
    /// keys...). The process env is cleared first; `GIT_*` variables are dropped from this.
    pub base_env: Vec<(OsString, OsString)>,
    /// `--model provider/model` for runs, if set.
    pub model: Option<String>,
    /// `--agent NAME` for runs, if set.
    pub agent: Option<String>,
    /// Time between SIGTERM and SIGKILL when a run is stopped.
    pub kill_grace: Duration,
    /// Limit for the short helper commands (`session list`, `export`, `import`, `db`).
    pub helper_timeout: Duration,
    /// Working directory of the helper commands that concern no particular directory (`db`,
    /// `session delete`); `None` inherits this process's. Give a directory that lasts (the
    /// state directory): the user's shell directory can be deleted while kugetsu runs.
    pub helper_dir: Option<PathBuf>,
    /// Stops whatever opencode process runs when triggered (the CLI triggers it on SIGINT,
    /// SIGTERM and SIGHUP): the run ends as [`RunOutcome::Interrupted`], a helper command as
    /// [`AgentError::Interrupted`].
    pub interrupt: Interrupt,
    /// Whether opencode processes die with the thread that started them (see
    /// [`CommandSpec::die_with_parent`]): on for foreground runs, off for the daemon, whose
    /// agents a later daemon adopts.
    pub die_with_parent: bool,
    /// A private directory where the base session's export is kept between forks (see
    /// the `export_cache` module); `None` exports the base on every fork.
    pub export_cache: Option<PathBuf>,
    /// Whether forks go through a warm `opencode serve` registered in the export cache
    /// directory when one runs (see the `serve` module), and whether
    /// [`AgentDriver::keep_warm`] starts one. Needs [`OpencodeOptions::export_cache`].
    pub fork_server: bool,
    /// How long a fork waits for the serve's answer before it imports instead.
    pub replay_timeout: Duration,
}

impl OpencodeOptions {
    /// Options for `program` with an empty base env and default limits.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        OpencodeOptions {
            program: program.into(),
            base_env: Vec::new(),
            model: None,
            agent: None,
            kill_grace: Duration::from_secs(5),
            helper_timeout: Duration::from_secs(120),
            helper_dir: None,
            interrupt: Interrupt::new(),
            die_with_parent: false,
            export_cache: None,
            fork_server: true,
            replay_timeout: crate::serve::REPLAY_TIMEOUT,
        }
    }

    /// Turns forks through a warm `opencode serve` on or off.
    pub fn fork_server(mut self, yes: bool) -> Self {
        self.fork_server = yes;
        self
    }

    /// Sets how long a fork waits for the serve's answer.
    pub fn replay_timeout(mut self, timeout: Duration) -> Self {
        self.replay_timeout = timeout;
        self
    }

    /// Keeps the base session's export in `dir` (created `0700` when first needed).
    pub fn export_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.export_cache = Some(dir.into());
        self
    }

    /// Sets the helper commands' working directory.
    pub fn helper_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.helper_dir = Some(dir.into());
        self
    }

    /// Sets the stop request every opencode process obeys.
    pub fn interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// Makes opencode processes die with the thread that started them.
    pub fn die_with_parent(mut self, yes: bool) -> Self {
        self.die_with_parent = yes;
        self
    }

    /// Sets the base environment.
    pub fn base_env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.base_env = vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self
    }

    /// Sets the model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets the agent.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Sets the SIGTERM-to-SIGKILL grace period.
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// Sets the helper-command limit.
    pub fn helper_timeout(mut self, timeout: Duration) -> Self {
        self.helper_timeout = timeout;
        self
    }
}

/// Drives the opencode CLI. Cheap to share between threads: it holds only its options.
#[derive(Debug, Clone)]
pub struct OpencodeDriver {
    opts: OpencodeOptions,
}

/// What one headless turn needs.
#[derive(Clone, Copy)]
struct Turn<'a> {
    args: &'a [OsString],
    dir: &'a Path,
    env: &'a AgentEnv,
    prompt: &'a str,
    limits: RunLimits,
    log_path: &'a Path,
}

/// The stream seen, the outcome, the exit code.
type TurnResult = (EventLog, RunOutcome, Option<i32>);

/// One helper command's result.
struct Helper {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Helper {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
    /// The `Error:` line of stderr without colours, else its last non-empty line.
    fn error_line(&self) -> String {
        let plain = strip_ansi(&self.stderr);
        let lines: Vec<&str> = plain.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        lines
            .iter()
            .find_map(|l| l.strip_prefix("Error:").map(str::trim))
            .or(lines.last().copied())
            .map(str::to_owned)
            .unwrap_or_else(|| match self.status.and_then(|s| s.code()) {
                Some(code) => format!("exited with code {code}"),
                None => "killed".to_owned(),
            })
    }
    fn not_found(&self) -> bool {
        strip_ansi(&self.stderr).contains("Session not found")
    }
}

#[derive(Deserialize)]
struct ListedSession {
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    directory: PathBuf,
}

impl OpencodeDriver {
    /// A driver with these options.
    pub fn new(options: OpencodeOptions) -> Self {
        OpencodeDriver { opts: options }
    }

    /// Its options.
    pub fn options(&self) -> &OpencodeOptions {
        &self.opts
    }

    fn spawn_error(&self, source: std::io::Error) -> AgentError {
        AgentError::Spawn { program: self.opts.program.clone(), source }
    }

    /// Runs a helper command to its end under the helper timeout.
    fn helper(
        &self,
        what: &str,
        args: &[OsString],
        cwd: Option<&Path>,
        env: Option<&AgentEnv>,
    ) -> Result<Helper, AgentError> {
        let cmd = build_command(&CommandSpec {
            program: &self.opts.program,
            args,
            cwd: cwd.or(self.opts.helper_dir.as_deref()),
            base_env: &self.opts.base_env,
            agent_env: env,
            drop_vars: SHELL_DIR_VARS,
            io: Io::NullStdin,
            die_with_parent: self.opts.die_with_parent,
        });
        let limits =
            Limits { timeout: self.opts.helper_timeout, idle: None, grace: self.opts.kill_grace };
        let (ended, out, err) = process::run_captured(cmd, None, limits, &self.opts.interrupt)
            .map_err(|e| self.spawn_error(e))?;
        let status = match ended {
            Ended::Exited(s) => Some(s),
            Ended::Interrupted => {
                return Err(AgentError::Interrupted { signal: self.opts.interrupt.describe() });
            }
            Ended::TimedOut(d) | Ended::Hung(d) => {
                return Err(AgentError::CommandFailed {
                    command: what.to_owned(),
                    message: format!("no answer after {}s, killed", d.as_secs()),
                });
            }
        };
        Ok(Helper {
            status,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    }

    /// `opencode db "<sql>" --format json`, rows as JSON objects.
    fn db(&self, sql: &str) -> Result<Vec<serde_json::Map<String, Value>>, AgentError> {
        let args = os(&["db", sql, "--format", "json"]);
        let h = self.helper("db", &args, None, None)?;
        if !h.ok() {
            return Err(AgentError::CommandFailed {
                command: "db".into(),
                message: h.error_line(),
            });
        }
        let text = h.stdout.trim();
        if text.is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(text).map_err(|e| AgentError::Protocol {
            command: "db".into(),
            detail: format!("not a JSON list of rows: {e}"),
        })
    }

    /// The stored row of a session: (directory, permission JSON text), or None.
    fn session_row(&self, id: &SessionId) -> Result<Option<(String, Option<String>)>, AgentError> {
        let rows =
            self.db(&format!("SELECT id, directory, permission FROM session WHERE id = '{id}'"))?;
        Ok(rows.into_iter().next().map(|row| {
            let dir = row.get("directory").and_then(Value::as_str).unwrap_or_default().to_owned();
            let perm = row.get("permission").and_then(Value::as_str).map(str::to_owned);
            (dir, perm)
        }))
    }

    fn run_args(&self, session: Option<&SessionId>, title: Option<&str>) -> Vec<OsString> {
        let mut args = os(&["run", "--format", "json"]);
        if let Some(id) = session {
            args.push(format!("--session={id}").into());
        }
        if let Some(title) = title {
            args.push(format!("--title={title}").into());
        }
        if let Some(model) = &self.opts.model {
            args.push(format!("--model={model}").into());
        }
        if let Some(agent) = &self.opts.agent {
            args.push(format!("--agent={agent}").into());
        }
        args
    }

    /// Runs one headless turn: prompt on stdin, events parsed and streamed, output appended to
    /// the log, the end classified.
    fn turn(&self, t: &Turn<'_>, sink: &mut dyn EventSink) -> Result<TurnResult, AgentError> {
        let Turn { args, dir, env, prompt, limits, log_path } = *t;
        // Checked here: a missing cwd would otherwise look like a missing opencode program.
        if !dir.is_dir() {
            return Err(AgentError::Io {
                action: "run opencode in",
                path: dir.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let mut log_file = open_log(log_path)?;
        let header = format!(
            "=== {} opencode {} (in {})\n",
            unix_now(),
            args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
            dir.display()
        );
        let mut log_err = write_log(&mut log_file, header.as_bytes(), None);
        let cmd = build_command(&CommandSpec {
            program: &self.opts.program,
            args,
            cwd: Some(dir),
            base_env: &self.opts.base_env,
            agent_env: Some(env),
            drop_vars: SHELL_DIR_VARS,
            io: Io::PipedStdin,
            die_with_parent: self.opts.die_with_parent,
        });
        let secret_values = sensitive_values(&self.opts.base_env, env);
        let secrets: Vec<&str> = secret_values.iter().map(String::as_str).collect();
        let mut events = EventLog::default();
        let plimits = Limits {
            timeout: limits.timeout,
            idle: Some(limits.idle_timeout),
            grace: self.opts.kill_grace,
        };
        let stop = &self.opts.interrupt;
        let ended =
            process::run(cmd, Some(prompt.as_bytes().to_vec()), plimits, stop, &mut |seen| {
                let (stream, bytes) = match seen {
                    Seen::Spawned(pid) => return sink.spawned(pid),
                    Seen::Line(stream, bytes) => (stream, bytes),
                };
                // Secrets never reach the log or the caller, even when the agent prints them.
                let line = redact(&String::from_utf8_lossy(bytes), &secrets);
                log_err = write_log(&mut log_file, line.as_bytes(), log_err.take());
                if !line.ends_with('\n') {
                    log_err = write_log(&mut log_file, b"\n", log_err.take());
                }
                match stream {
                    Stream::Stdout => {
                        for ev in events.stdout_line(&line) {
                            sink.event(&ev);
                        }
                    }
                    Stream::Stderr => {
                        if let Some(ev) = events.stderr_line(&line) {
                            sink.event(&ev);
                        }
                    }
                }
            })
            .map_err(|e| self.spawn_error(e))?;
        let (outcome, code) = classify(ended, &events, stop);
        let footer = format!("=== {} {}\n", unix_now(), outcome.describe());
        log_err = write_log(&mut log_file, footer.as_bytes(), log_err.take());
        if let Some(source) = log_err {
            return Err(AgentError::Io {
                action: "append to the run log",
                path: log_path.to_owned(),
                source,
            });
        }
        Ok((events, outcome, code))
    }

    /// The base session's export: the kept one when its key still matches, else a fresh
    /// `opencode export` (kept for the next fork). Also says whether it came from the cache.
    fn base_export(
        &self,
        base: &SessionId,
        env: &AgentEnv,
        refresh: bool,
    ) -> Result<(Value, bool), AgentError> {
        let cache = self.opts.export_cache.as_deref();
        let key = export_cache::key(base, &self.opts.program, &self.opts.base_env, env);
        // No secret is kept in kugetsu's files outside the env files: a transcript that shows
        // one (an agent that printed a token) is exported on every fork instead.
        let secrets = sensitive_values(&self.opts.base_env, env);
        if let Some(dir) = cache
            && !refresh
            && let Some(doc) = export_cache::load(dir, &key)
        {
            if !export_cache::holds_any(&doc, &secrets) {
                return Ok((doc, true));
            }
            export_cache::forget(dir);
        }
        // The helper directory, not the worktree: the export finds the session by its id from
        // anywhere, so it can run before (or while) the worktree is made.
        let export = self.helper("export", &os(&["export", base.as_str()]), None, Some(env))?;
        if !export.ok() {
            if export.not_found() {
                if let Some(dir) = cache {
                    export_cache::forget(dir);
                }
                return Err(AgentError::SessionNotFound { id: base.clone() });
            }
            return Err(AgentError::CommandFailed {
                command: "export".into(),
                message: export.error_line(),
            });
        }
        let doc: Value = serde_json::from_str(export.stdout.trim()).map_err(|e| {
            AgentError::Protocol { command: "export".into(), detail: format!("not JSON: {e}") }
        })?;
        match cache {
            Some(dir) if export_cache::holds_any(&doc, &secrets) => export_cache::forget(dir),
            Some(dir) => export_cache::store(dir, &key, &doc),
            None => {}
        }
        Ok((doc, false))
    }

    /// Makes `doc` rewritten a new session of `dir` through the registered `opencode serve`
    /// (see the `serve` module); why not, when it cannot.
    fn replay_fork(&self, doc: &Value, req: &ForkRequest, dir: &str) -> Result<SessionId, String> {
        let cache = match &self.opts.export_cache {
            Some(cache) if self.opts.fork_server => cache,
            _ => return Err("forks through a serve are off".into()),
        };
        let key = export_cache::program_key(&self.opts.program, &self.opts.base_env, &req.env);
        let reg = serve::usable(cache, &key)?;
        let mut doc = doc.clone();
        let mut ids = IdGen::new();
        let new_id =
            rewrite_export(&mut doc, dir, &req.title, &mut ids).map_err(|e| e.to_string())?;
        let body = replay_body(&doc, dir, &mut ids).map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        let answered = serve::replay(&reg, &body, self.opts.replay_timeout)?;
        if answered != new_id {
            return Err(format!("the serve made session {answered}, not {new_id}"));
        }
        serve::touch(cache);
        tracing::debug!(session = %new_id, pid = reg.pid, ms = started.elapsed().as_millis() as u64,
            "forked through the opencode serve");
        SessionId::new(new_id).map_err(|e| e.to_string())
    }

    /// Starts an `opencode serve` for forks and registers it in the export cache directory;
    /// it is stopped and unregistered when the handle is dropped. `env` is the agent's
    /// environment, as a fork gets it (forks use the serve only when its program and session
    /// store match theirs).
    pub fn start_fork_server(&self, env: &AgentEnv) -> Result<ServeHandle, AgentError> {
        let cache = self.opts.export_cache.as_deref().ok_or_else(|| AgentError::CommandFailed {
            command: "serve".into(),
            message: "no cache directory to register the serve in".into(),
        })?;
        serve::start(&serve::StartSpec {
            program: &self.opts.program,
            base_env: &self.opts.base_env,
            agent_env: env,
            dir: self.opts.helper_dir.as_deref(),
            cache,
            key: export_cache::program_key(&self.opts.program, &self.opts.base_env, env),
            stop: &self.opts.interrupt,
            ready_timeout: self.opts.helper_timeout,
        })
    }

    /// Imports `doc` rewritten into a new session titled `title` whose directory is `dir`.
    fn import_fork(
        &self,
        doc: &Value,
        req: &ForkRequest,
        dir: &str,
    ) -> Result<SessionId, AgentError> {
        let mut doc = doc.clone();
        let new_id = rewrite_export(&mut doc, dir, &req.title, &mut IdGen::new()).map_err(|e| {
            AgentError::Protocol { command: "export".into(), detail: e.to_string() }
        })?;
        let new_id = SessionId::new(new_id).map_err(|e| AgentError::Protocol {
            command: "export".into(),
            detail: e.to_string(),
        })?;
        // The transcript can hold secrets: a private temp file, removed when dropped, in the
        // helper directory (the private state directory) when there is one, so a TMPDIR of the
        // user's shell that is missing or shared does not decide whether a fork works.
        let mut builder = tempfile::Builder::new();
        builder.prefix(".kugetsu-fork-").suffix(".json");
        let made = match &self.opts.helper_dir {
            Some(dir) => builder.tempfile_in(dir),
            None => builder.tempfile(),
        };
        let mut tmp = made.map_err(|source| AgentError::Io {
            action: "create a temp file for",
            path: "the fork".into(),
            source,
        })?;
        let bytes = serde_json::to_vec(&doc).map_err(|e| AgentError::Protocol {
            command: "export".into(),
            detail: e.to_string(),
        })?;
        tmp.write_all(&bytes).and_then(|()| tmp.flush()).map_err(|source| AgentError::Io {
            action: "write",
            path: tmp.path().to_owned(),
            source,
        })?;
        // The import stores the session with its working directory (the target, with `PWD` set
        // to it) as the session's directory, and keeps the document's permission rules.
        let import = self.helper(
            "import",
            &[OsString::from("import"), tmp.path().as_os_str().to_owned()],
            Some(&req.dir),
            Some(&req.env),
        )?;
        if !import.ok() {
            return Err(AgentError::CommandFailed {
                command: "import".into(),
                message: import.error_line(),
            });
        }
        let printed = strip_ansi(&import.stdout).lines().find_map(|l| {
            l.trim().strip_prefix("Imported session:").map(|id| id.trim().to_owned())
        });
        match printed {
            Some(id) if id == new_id.as_str() => Ok(new_id),
            other => Err(AgentError::Protocol {
                command: "import".into(),
                detail: format!("expected `Imported session: {new_id}`, got {other:?}"),
            }),
        }
    }

    /// Explains a run that printed no event at all, with one look at its stored row: opencode
    /// did not know the session (`Session not found` on stderr), or the session lives in
    /// another directory, where opencode prints nothing and never ends. Anything else keeps
    /// the run's own outcome.
    fn explain_silent_run(&self, req: &RunRequest) -> Result<(), AgentError> {
        match self.session_row(&req.session) {
            Ok(None) => Err(AgentError::SessionNotFound { id: req.session.clone() }),
            Ok(Some((stored, _))) if !same_dir(Path::new(&stored), &req.dir) => {
                Err(AgentError::CommandFailed {
                    command: "run".into(),
                    message: format!(
                        "session {} lives in {stored}, not in {}; opencode runs a session only in \
                         its own directory and would hang running it there",
                        req.session,
                        req.dir.display()
                    ),
                })
            }
            Ok(Some(_)) => Ok(()),
            Err(e) => {
                tracing::warn!(session = %req.session, error = %e, "cannot look up a silent run's session");
                Ok(())
            }
        }
    }

    fn create_interactive(&self, req: &CreateSessionRequest) -> Result<RunReport, AgentError> {
        if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
            return Err(AgentError::NeedsTerminal);
        }
        let before: Vec<SessionId> =
            self.list_sessions(&req.dir)?.into_iter().map(|s| s.id).collect();
        let mut args = vec![OsString::from(format!("--prompt={}", req.prompt))];
        if let Some(model) = &self.opts.model {
            args.push(format!("--model={model}").into());
        }
        if let Some(agent) = &self.opts.agent {
            args.push(format!("--agent={agent}").into());
        }
        let mut cmd = build_command(&CommandSpec {
            program: &self.opts.program,
            args: &args,
            cwd: Some(&req.dir),
            base_env: &self.opts.base_env,
            agent_env: Some(&req.env),
            drop_vars: SHELL_DIR_VARS,
            io: Io::Terminal,
            die_with_parent: self.opts.die_with_parent,
        });
        let child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let status = process::wait_foreground(child, self.opts.kill_grace, &self.opts.interrupt)
            .map_err(|e| self.spawn_error(e))?;
        if self.opts.interrupt.is_triggered() {
            return Err(AgentError::Interrupted { signal: self.opts.interrupt.describe() });
        }
        // Ctrl-C is how a user leaves the TUI; pressed twice, the second can end opencode by the
        // signal while it shuts down. That is a quit, not a failed priming.
        let quit_by_user = {
            use std::os::unix::process::ExitStatusExt;
            status.signal() == Some(rustix::process::Signal::INT.as_raw())
                || status.code() == Some(130)
        };
        let outcome = if status.success() || quit_by_user {
            RunOutcome::Completed
        } else {
            RunOutcome::Failed { message: format!("the opencode TUI exited with {status}") }
        };
        // The TUI prints no id: the new session is the newest one of this directory's project
        // that was not there before.
        let after = self.list_sessions(&req.dir)?;
        let Some(new) = after.into_iter().find(|s| !before.contains(&s.id)) else {
            return Err(AgentError::NoSession { outcome });
        };
        // TUI sessions get no deny rules, and a headless run of them could hang on a question.
        self.fix_permissions(&new.id)?;
        let title = req.title.replace('\'', "''");
        self.db(&format!("UPDATE session SET title = '{title}' WHERE id = '{}'", new.id))?;
        Ok(RunReport { session: new.id, outcome, exit_code: status.code() })
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn open_log(path: &Path) -> Result<File, AgentError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| AgentError::Io {
            action: "create the directory of the run log",
            path: parent.to_owned(),
            source,
        })?;
    }
    // Private from creation, like every state file: it holds what the agent printed.
    OpenOptions::new().create(true).append(true).mode(FILE_MODE).open(path).map_err(|source| {
        AgentError::Io { action: "open the run log", path: path.to_owned(), source }
    })
}

/// The secret values of the base env and the agent's env, by the one rule of
/// [`kugetsu_core::secrets::secret_values`].
fn sensitive_values(base: &[(OsString, OsString)], env: &AgentEnv) -> Vec<String> {
    let from_base = base.iter().filter_map(|(k, v)| Some((k.to_str()?, v.to_str()?)));
    let from_env = env.0.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    secret_values(from_base.chain(from_env))
}

/// Appends to the log, keeping the first error (the run goes on; the error is reported at the
/// end).
fn write_log(
    file: &mut File,
    bytes: &[u8],
    prev: Option<std::io::Error>,
) -> Option<std::io::Error> {
    if prev.is_some() {
        return prev;
    }
    file.write_all(bytes).err()
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let ca = a.canonicalize().unwrap_or_else(|_| a.to_owned());
    let cb = b.canonicalize().unwrap_or_else(|_| b.to_owned());
    ca == cb
}

fn dir_text(dir: &Path) -> Result<String, AgentError> {
    let abs = dir.canonicalize().map_err(|source| AgentError::Io {
        action: "resolve the session directory",
        path: dir.to_owned(),
        source,
    })?;
    abs.to_str().map(str::to_owned).ok_or_else(|| AgentError::Io {
        action: "use (not UTF-8) the session directory",
        path: dir.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8"),
    })
}

impl AgentDriver for OpencodeDriver {
    fn create_session(
        &self,
        req: &CreateSessionRequest,
        sink: &mut dyn EventSink,
    ) -> Result<RunReport, AgentError> {
        if req.interactive {
            return self.create_interactive(req);
        }
        let args = self.run_args(None, Some(&req.title));
        let (events, outcome, exit_code) = self.turn(
            &Turn {
                args: &args,
                dir: &req.dir,
                env: &req.env,
                prompt: &req.prompt,
                limits: req.limits,
                log_path: &req.log_path,
            },
            sink,
        )?;
        match events.session {
            Some(session) => Ok(RunReport { session, outcome, exit_code }),
            None => Err(AgentError::NoSession { outcome }),
        }
    }

    fn fork_session(&self, req: &ForkRequest) -> Result<SessionId, AgentError> {
        let dir = dir_text(&req.dir)?;
        let (doc, kept) = self.base_export(&req.base, &req.env, false)?;
        match self.replay_fork(&doc, req, &dir) {
            Ok(id) => return Ok(id),
            Err(why) => tracing::debug!(reason = %why, "forking by import, not through a serve"),
        }
        match self.import_fork(&doc, req, &dir) {
            // A kept export that no longer imports (made by another opencode than the key
            // could tell, or damaged): once more from a fresh export.
            Err(e) if kept => {
                tracing::warn!(error = %e, "a fork from the kept base export failed; exporting anew");
                let (doc, _) = self.base_export(&req.base, &req.env, true)?;
                self.import_fork(&doc, req, &dir)
            }
            other => other,
        }
    }

    fn run(&self, req: &RunRequest, sink: &mut dyn EventSink) -> Result<RunReport, AgentError> {
        // No look at the session before the run: kugetsu runs a session in the directory it
        // imported it into (see the module docs). A run that prints nothing is explained after.
        let args = self.run_args(Some(&req.session), None);
        let (events, outcome, exit_code) = self.turn(
            &Turn {
                args: &args,
                dir: &req.dir,
                env: &req.env,
                prompt: &req.prompt,
                limits: req.limits,
                log_path: &req.log_path,
            },
            sink,
        )?;
        if events.events.is_empty()
            && matches!(
                outcome,
                RunOutcome::Failed { .. } | RunOutcome::Hung { .. } | RunOutcome::TimedOut { .. }
            )
        {
            self.explain_silent_run(req)?;
        }
        Ok(RunReport { session: req.session.clone(), outcome, exit_code })
    }

    fn delete_session(&self, id: &SessionId) -> Result<(), AgentError> {
        let h =
            self.helper("session delete", &os(&["session", "delete", id.as_str()]), None, None)?;
        if h.ok() {
            if let Some(dir) = &self.opts.export_cache {
                export_cache::forget_if_of(dir, id);
            }
            Ok(())
        } else if h.not_found() {
            Err(AgentError::SessionNotFound { id: id.clone() })
        } else {
            Err(AgentError::CommandFailed {
                command: "session delete".into(),
                message: h.error_line(),
            })
        }
    }

    fn session_exists(&self, id: &SessionId) -> Result<bool, AgentError> {
        Ok(self.session_row(id)?.is_some())
    }

    fn list_sessions(&self, dir: &Path) -> Result<Vec<AgentSessionInfo>, AgentError> {
        let h = self.helper(
            "session list",
            &os(&["session", "list", "--format", "json"]),
            Some(dir),
            None,
        )?;
        if !h.ok() {
            return Err(AgentError::CommandFailed {
                command: "session list".into(),
                message: h.error_line(),
            });
        }
        parse_session_list(&h.stdout)
    }

    fn repair_session(&self, id: &SessionId) -> Result<Option<Repair>, AgentError> {
        Ok(self.fix_permissions(id)?.then(|| Repair {
            problem: "lacked the permission rules that keep headless runs from hanging".into(),
            done: "re-applied them".into(),
        }))
    }

    /// Exports the base and keeps the export for the next forks, unless one is kept under the
    /// same key already (`refresh` exports anyway). Nothing without an
    /// [`OpencodeOptions::export_cache`].
    fn prepare_fork(
        &self,
        base: &SessionId,
        env: &AgentEnv,
        refresh: bool,
    ) -> Result<(), AgentError> {
        if self.opts.export_cache.is_none() {
            return Ok(());
        }
        self.base_export(base, env, refresh).map(|_| ())
    }

    /// Starts a fork server (see [`OpencodeDriver::start_fork_server`]) unless forks through
    /// one are off or a matching one already runs.
    fn keep_warm(&self, env: &AgentEnv) -> Result<Option<WarmGuard>, AgentError> {
        let Some(cache) = self.opts.export_cache.as_deref().filter(|_| self.opts.fork_server)
        else {
            return Ok(None);
        };
        let key = export_cache::program_key(&self.opts.program, &self.opts.base_env, env);
        if let Ok(reg) = serve::usable(cache, &key) {
            tracing::debug!(pid = reg.pid, "an opencode serve for forks runs already");
            return Ok(None);
        }
        Ok(Some(WarmGuard::new(self.start_fork_server(env)?)))
    }

    fn session_info(&self, id: &SessionId) -> Result<Option<AgentSessionInfo>, AgentError> {
        let rows =
            self.db(&format!("SELECT id, title, directory FROM session WHERE id = '{id}'"))?;
        Ok(rows.into_iter().next().map(|row| {
            let text = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            AgentSessionInfo {
                id: id.clone(),
                title: text("title"),
                directory: PathBuf::from(text("directory")),
            }
        }))
    }
}

impl OpencodeDriver {
    /// Re-applies the permission rules that keep a headless session from hanging (forks made
    /// by opencode itself lose them: upstream #30779). Returns whether anything changed.
    pub fn fix_permissions(&self, id: &SessionId) -> Result<bool, AgentError> {
        let Some((_, perm)) = self.session_row(id)? else {
            return Err(AgentError::SessionNotFound { id: id.clone() });
        };
        self.apply_rules(id, perm.as_deref())
    }

    /// Writes the deny rules into session `id` whose stored `permission` is `perm`, unless they
    /// are all there already; returns whether it wrote.
    fn apply_rules(&self, id: &SessionId, perm: Option<&str>) -> Result<bool, AgentError> {
        let mut rules = match perm.map(serde_json::from_str::<Value>) {
            None => Value::Null,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return Err(AgentError::Protocol {
                    command: "db".into(),
                    detail: format!("permission of session {id} is not JSON: {e}"),
                });
            }
        };
        if !ensure_rules(&mut rules) {
            return Ok(false);
        }
        let text = rules.to_string().replace('\'', "''");
        self.db(&format!("UPDATE session SET permission = '{text}' WHERE id = '{id}'"))?;
        Ok(true)
    }
}

/// Parses `session list --format json` (nothing at all when there are no sessions).
fn parse_session_list(stdout: &str) -> Result<Vec<AgentSessionInfo>, AgentError> {
    let text = stdout.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let listed: Vec<ListedSession> =
        serde_json::from_str(text).map_err(|e| AgentError::Protocol {
            command: "session list".into(),
            detail: format!("not a JSON session list: {e}"),
        })?;
    listed
        .into_iter()
        .map(|s| {
            let id = SessionId::new(s.id).map_err(|e| AgentError::Protocol {
                command: "session list".into(),
                detail: e.to_string(),
            })?;
            Ok(AgentSessionInfo { id, title: s.title, directory: s.directory })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_list_parsing() {
        assert_eq!(parse_session_list("").map(|v| v.len()).ok(), Some(0));
        let out = r#"[
  {"id": "ses_df5eb4af9ffemK92KrwWdJZMY3", "title": "base", "updated": 1, "created": 1, "projectId": "global", "directory": "/p"}
]"#;
        let list = parse_session_list(out).expect("parses");
        assert_eq!(list[0].id.as_str(), "ses_df5eb4af9ffemK92KrwWdJZMY3");
        assert_eq!(list[0].directory, PathBuf::from("/p"));
        assert!(parse_session_list("garbage").is_err());
        assert!(parse_session_list(r#"[{"id": "ses_x'; --"}]"#).is_err());
    }
}
