//! [`OpencodeOptions`]: how the driver runs opencode, set once by whoever wires it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use kugetsu_core::interrupt::Interrupt;

/// How to run opencode: [`OpencodeOptions::new`] gives the defaults, and one setter per option
/// changes them.
#[derive(Debug, Clone)]
pub struct OpencodeOptions {
    pub(crate) program: PathBuf,
    pub(crate) base_env: Vec<(OsString, OsString)>,
    pub(crate) also_mask: Vec<String>,
    pub(crate) model: Option<String>,
    pub(crate) agent: Option<String>,
    pub(crate) kill_grace: Duration,
    pub(crate) helper_timeout: Duration,
    pub(crate) helper_dir: Option<PathBuf>,
    pub(crate) interrupt: Interrupt,
    pub(crate) die_with_parent: bool,
    pub(crate) export_cache: Option<PathBuf>,
    pub(crate) fork_server: bool,
    pub(crate) replay_timeout: Duration,
}

impl OpencodeOptions {
    /// Options for `program` (from the config or `KUGETSU_AGENT_BIN`; resolved by the caller,
    /// this crate reads no environment), with an empty base env, a 5 s kill grace, a 120 s
    /// helper limit, forks through a warm serve allowed but no cache directory to find one in,
    /// and processes that outlive their spawner.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        OpencodeOptions {
            program: program.into(),
            base_env: Vec::new(),
            also_mask: Vec::new(),
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

    /// The environment every opencode process starts from (`PATH`, `HOME`, `XDG_*`, provider
    /// keys...). The process env is cleared first; `GIT_*` variables are dropped from this.
    pub fn base_env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.base_env = vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self
    }

    /// Values masked in everything the driver logs, shows or keeps, beyond the sensitive
    /// values of the environments it hands opencode: secrets an agent can read without having
    /// them in its environment (the shared queue's password, kept in a file for the PM agent).
    pub fn also_mask(mut self, values: impl IntoIterator<Item = String>) -> Self {
        self.also_mask = values.into_iter().collect();
        self
    }

    /// `--model provider/model` for runs.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// `--agent NAME` for runs.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Time between SIGTERM and SIGKILL when a run is stopped.
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// Limit for the short helper commands (`session list`, `export`, `import`, `db`).
    pub fn helper_timeout(mut self, timeout: Duration) -> Self {
        self.helper_timeout = timeout;
        self
    }

    /// Working directory of the helper commands that concern no particular directory (`db`,
    /// `session delete`); without one they inherit this process's. Give a directory that lasts
    /// (the state directory): the user's shell directory can be deleted while kugetsu runs.
    pub fn helper_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.helper_dir = Some(dir.into());
        self
    }

    /// The stop request every opencode process obeys (the CLI triggers it on SIGINT, SIGTERM
    /// and SIGHUP): a run then ends as
    /// [`RunOutcome::Interrupted`](kugetsu_core::agent::RunOutcome::Interrupted), a helper
    /// command as [`AgentError::Interrupted`](kugetsu_core::agent::AgentError::Interrupted).
    pub fn interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// Whether opencode processes die with the thread that started them (see
    /// [`kugetsu_process::CommandSpec::die_with_parent`]): on for foreground runs, off for the
    /// daemon, whose agents a later daemon adopts.
    pub fn die_with_parent(mut self, yes: bool) -> Self {
        self.die_with_parent = yes;
        self
    }

    /// A private directory where the base session's export is kept between forks (created
    /// `0700` when first needed; see the `export_cache` module). Without one, the base is
    /// exported on every fork.
    pub fn export_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.export_cache = Some(dir.into());
        self
    }

    /// Whether forks go through a warm `opencode serve` registered in the export cache
    /// directory when one runs (see [`crate::serve`]), and whether
    /// [`AgentDriver::keep_warm`](kugetsu_core::agent::AgentDriver::keep_warm) starts one.
    /// Needs [`OpencodeOptions::export_cache`].
    pub fn fork_server(mut self, yes: bool) -> Self {
        self.fork_server = yes;
        self
    }

    /// How long a fork waits for the serve's answer before it imports instead.
    pub fn replay_timeout(mut self, timeout: Duration) -> Self {
        self.replay_timeout = timeout;
        self
    }
}
