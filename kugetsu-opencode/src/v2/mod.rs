//! [`OpencodeV2Driver`]: the [`AgentDriver`] of opencode 2 (`@opencode/cli`, checked against
//! 2.1.2), beside the 1.x one (whose `export`, `import`, `db` and `/sync/replay` are gone in
//! 2.x). Every operation talks to the state directory's private serve ([`serve`]): sessions
//! are made, forked, moved, listed, read and deleted over its HTTP API ([`sessions`]), exported
//! and imported whole for another host ([`transfer`]), and a turn is `opencode run --server URL -s ID` whose end is read from the session afterwards
//! ([`turn`]). The 1.x driver lends its run supervision and log ([`crate::driver`]).

mod http;
pub mod serve;
mod sessions;
mod transfer;
mod turn;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use kugetsu_core::agent::{
    AgentDriver, AgentEnv, AgentError, AgentSessionInfo, CreateSessionRequest, EventSink,
    ForkRequest, Repair, RunReport, RunRequest, SessionId, WarmGuard,
};

use crate::driver::{OpencodeDriver, OpencodeOptions};
use serve::{Registration, ServeHandle};

/// Drives opencode 2 through a private serve. Clones share the serve this driver started
/// (if it had to start one), which is stopped when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct OpencodeV2Driver {
    v1: OpencodeDriver,
    owned: Arc<Mutex<Option<ServeHandle>>>,
    /// The registered serve once found answering: asked again only if its process ends, so a
    /// command's operations do not each re-read the registration and call `/api/info`.
    found: Arc<Mutex<Option<Registration>>>,
    /// Forks made whose move into their directories (or that directory's load) still runs in
    /// the background (see [`sessions`]).
    forks: Arc<Mutex<HashMap<SessionId, FinishingFork>>>,
}

/// The background work that puts a fork where it belongs (see [`sessions`]).
type FinishingFork = std::thread::JoinHandle<Result<(), AgentError>>;

impl Drop for OpencodeV2Driver {
    /// A fork begun is finished before the driver (and a serve it owns) goes.
    fn drop(&mut self) {
        self.settle_all();
    }
}

impl OpencodeV2Driver {
    /// What this driver cannot do that the 1.x one can.
    pub const LIMITS: &'static [&'static str] =
        &["a turn's tools run under the serve, which the turns of every session of the state \
         directory share: while one runs a tool, a stalled turn of another is judged hung only \
         once that tool pauses (or at the run's timeout)"];

    /// A driver with these options. It needs [`OpencodeOptions::export_cache`]: the serve is
    /// registered there.
    pub fn new(options: OpencodeOptions) -> Self {
        OpencodeV2Driver {
            v1: OpencodeDriver::new(options),
            owned: Arc::default(),
            found: Arc::default(),
            forks: Arc::default(),
        }
    }

    /// Its options.
    pub fn options(&self) -> &OpencodeOptions {
        self.v1.options()
    }

    /// The serve this driver started and still holds, if any (its pid and URL).
    pub fn own_serve(&self) -> Option<(u32, String)> {
        let owned = self.owned.lock().ok()?;
        owned.as_ref().map(|h| (h.pid(), h.url().to_owned()))
    }

    fn cache(&self) -> Result<&Path, AgentError> {
        self.options().export_cache.as_deref().ok_or_else(|| AgentError::CommandFailed {
            command: "serve".into(),
            message: "the opencode 2 driver needs a cache directory to register its serve in"
                .into(),
        })
    }

    /// The serve to talk to: the one this driver started, else the registered one (the
    /// daemon's) if it answers, else a new one of its own (held until the driver is dropped).
    fn serve(&self) -> Result<Registration, AgentError> {
        let cache = self.cache()?;
        let opts = self.options();
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = owned.as_mut()
            && handle.alive()
        {
            return Ok(handle.registration().clone());
        }
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reg) = found.as_ref()
            && kugetsu_process::procfs::is_running(reg.pid)
        {
            serve::touch(cache);
            return Ok(reg.clone());
        }
        *found = serve::registered(cache, &opts.program, opts.helper_timeout);
        if let Some(reg) = found.as_ref() {
            serve::touch(cache);
            return Ok(reg.clone());
        }
        drop(found);
        let handle = self.start_serve(opts.die_with_parent, false)?;
        let reg = handle.registration().clone();
        *owned = Some(handle);
        Ok(reg)
    }

    fn start_serve(
        &self,
        die_with_parent: bool,
        register: bool,
    ) -> Result<ServeHandle, AgentError> {
        let opts = self.options();
        serve::start(&serve::StartSpec {
            program: &opts.program,
            base_env: &opts.base_env,
            dir: opts.helper_dir.as_deref(),
            cache: self.cache()?,
            stop: &opts.interrupt,
            die_with_parent,
            register,
        })
    }
}

impl AgentDriver for OpencodeV2Driver {
    /// The provider of `--model provider/model`: the `providerID` opencode names with a
    /// refusal.
    fn provider(&self) -> Option<String> {
        crate::limits::provider_of(self.options().model.as_deref())
    }

    fn agent_major(&self) -> u32 {
        2
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
        Ok(self.stored(id)?.is_some())
    }

    fn list_sessions(&self, dir: &Path) -> Result<Vec<AgentSessionInfo>, AgentError> {
        self.sessions_in(dir)
    }

    fn repair_session(&self, id: &SessionId) -> Result<Option<Repair>, AgentError> {
        self.repair(id)
    }

    /// Starts the serve for the guard's lifetime (with the parent-death signal: the keeper's
    /// thread lives as long as the guard), unless [`OpencodeOptions::fork_server`] is off.
    fn keep_warm(&self, _env: &AgentEnv) -> Result<Option<WarmGuard>, AgentError> {
        if !self.options().fork_server {
            return Ok(None);
        }
        Ok(Some(WarmGuard::new(self.start_serve(true, true)?)))
    }

    fn session_info(&self, id: &SessionId) -> Result<Option<AgentSessionInfo>, AgentError> {
        Ok(self.stored(id)?.map(|s| s.info()))
    }

    fn export_session(&self, id: &SessionId, env: &AgentEnv) -> Result<String, AgentError> {
        self.export_whole(id, env)
    }

    fn import_session(&self, export: &str, req: &ForkRequest) -> Result<SessionId, AgentError> {
        self.import_whole(export, req)
    }
}
