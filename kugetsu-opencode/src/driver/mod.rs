//! [`OpencodeDriver`]: the [`AgentDriver`] that runs the real opencode CLI, one module per
//! operation, each with its `impl`: `create` and `run` are turns (`turn`: the run and its log),
//! `fork` makes a session of another directory, `list` lists and deletes, `db` reads and writes
//! the session store, `permissions` puts back the deny rules, `helper` runs the short commands
//! around them all, and `options` is how the driver is set up. Each works around what the CLI
//! really does where it meets it (the crate's README lists every quirk). All of them return
//! [`AgentError`]: the error of the seam they implement.
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

mod create;
mod db;
mod fork;
mod helper;
mod list;
mod options;
mod permissions;
mod run;
pub(crate) mod turn;

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use kugetsu_core::agent::{
    AgentDriver, AgentEnv, AgentError, AgentSessionInfo, CreateSessionRequest, EventSink,
    ForkRequest, Repair, RunReport, RunRequest, SessionId, WarmGuard,
};
use kugetsu_process::{CommandSpec, Io, build_command};

pub use options::OpencodeOptions;

use crate::command::SHELL_DIR_VARS;

/// Drives the opencode CLI. Cheap to share between threads: it holds only its options.
#[derive(Debug, Clone)]
pub struct OpencodeDriver {
    opts: OpencodeOptions,
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

    pub(crate) fn spawn_error(&self, source: std::io::Error) -> AgentError {
        AgentError::Spawn { program: self.opts.program.clone(), source }
    }

    /// An opencode command: the program with `args` in `cwd`, with the base env, the agent's
    /// env and the hygiene of [`build_command`] (and opencode's own: [`SHELL_DIR_VARS`]).
    pub(crate) fn command(
        &self,
        args: &[OsString],
        cwd: Option<&Path>,
        env: Option<&AgentEnv>,
        io: Io,
    ) -> Command {
        build_command(&CommandSpec {
            program: &self.opts.program,
            args,
            cwd,
            base_env: &self.opts.base_env,
            agent_env: env,
            drop_vars: SHELL_DIR_VARS,
            io,
            die_with_parent: self.opts.die_with_parent,
        })
    }
}

impl AgentDriver for OpencodeDriver {
    /// The provider of `--model provider/model`: the `providerID` opencode names with a
    /// refusal.
    fn provider(&self) -> Option<String> {
        crate::limits::provider_of(self.opts.model.as_deref())
    }

    fn create_session(
        &self,
        req: &CreateSessionRequest,
        sink: &mut dyn EventSink,
    ) -> Result<RunReport, AgentError> {
        if req.interactive { self.create_interactive(req) } else { self.create_headless(req, sink) }
    }

    fn fork_session(&self, req: &ForkRequest) -> Result<SessionId, AgentError> {
        self.fork(req)
    }

    fn run(&self, req: &RunRequest, sink: &mut dyn EventSink) -> Result<RunReport, AgentError> {
        self.run_session(req, sink)
    }

    fn delete_session(&self, id: &SessionId) -> Result<(), AgentError> {
        self.delete(id)
    }

    fn session_exists(&self, id: &SessionId) -> Result<bool, AgentError> {
        Ok(self.session_row(id)?.is_some())
    }

    fn list_sessions(&self, dir: &Path) -> Result<Vec<AgentSessionInfo>, AgentError> {
        self.sessions_in(dir)
    }

    fn repair_session(&self, id: &SessionId) -> Result<Option<Repair>, AgentError> {
        self.repair(id)
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
        self.prepare(base, env, refresh)
    }

    /// Starts a fork server (see [`OpencodeDriver::start_fork_server`]) unless forks through
    /// one are off or a matching one already runs.
    fn keep_warm(&self, env: &AgentEnv) -> Result<Option<WarmGuard>, AgentError> {
        self.warm(env)
    }

    fn session_info(&self, id: &SessionId) -> Result<Option<AgentSessionInfo>, AgentError> {
        self.stored_info(id)
    }

    fn export_session(&self, id: &SessionId, env: &AgentEnv) -> Result<String, AgentError> {
        self.export_whole(id, env)
    }

    fn import_session(&self, export: &str, req: &ForkRequest) -> Result<SessionId, AgentError> {
        self.import_whole(export, req)
    }
}
