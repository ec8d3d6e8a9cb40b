//! [`ClaudeOptions`]: how the driver runs Claude Code, set once by whoever wires it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use kugetsu_core::interrupt::Interrupt;

/// Claude Code stays silent for 300 s on a stalled API stream before it retries the request
/// itself (and the retry usually succeeds), so a run is never judged hung sooner than this:
/// the 300 s plus room for the retry's first output.
pub const MIN_IDLE: Duration = Duration::from_secs(330);

/// How to run Claude Code: [`ClaudeOptions::new`] gives the defaults, and one setter per option
/// changes them.
#[derive(Debug, Clone)]
pub struct ClaudeOptions {
    pub(crate) program: PathBuf,
    pub(crate) state_dir: PathBuf,
    pub(crate) base_env: Vec<(OsString, OsString)>,
    pub(crate) also_mask: Vec<String>,
    pub(crate) model: Option<String>,
    pub(crate) kill_grace: Duration,
    pub(crate) min_idle: Duration,
    pub(crate) interrupt: Interrupt,
    pub(crate) die_with_parent: bool,
}

impl ClaudeOptions {
    /// Options for `program` (resolved by the caller: this crate reads no environment), keeping
    /// the driver's records and Claude Code's temporary files in the private directory
    /// `state_dir` (created `0700` when first needed), with an empty base env, a 5 s kill
    /// grace, [`MIN_IDLE`], and processes that outlive their spawner.
    pub fn new(program: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        ClaudeOptions {
            program: program.into(),
            state_dir: state_dir.into(),
            base_env: Vec::new(),
            also_mask: Vec::new(),
            model: None,
            kill_grace: Duration::from_secs(5),
            min_idle: MIN_IDLE,
            interrupt: Interrupt::new(),
            die_with_parent: false,
        }
    }

    /// The environment every Claude Code process starts from (`PATH`, `HOME`,
    /// `CLAUDE_CONFIG_DIR`, `ANTHROPIC_*`...). The process env is cleared first; `GIT_*`
    /// variables are dropped from this. Where the sessions are is read from it too.
    pub fn base_env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.base_env = vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self
    }

    /// Values masked in everything the driver logs or shows, beyond the sensitive values of
    /// the environments it hands Claude Code.
    pub fn also_mask(mut self, values: impl IntoIterator<Item = String>) -> Self {
        self.also_mask = values.into_iter().collect();
        self
    }

    /// `--model NAME` for runs.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Time between SIGTERM and SIGKILL when a run is stopped.
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// The shortest idle limit a run gets, whatever it asks for (default [`MIN_IDLE`]).
    pub fn min_idle(mut self, min: Duration) -> Self {
        self.min_idle = min;
        self
    }

    /// The stop request every Claude Code process obeys: a run then ends as
    /// [`RunOutcome::Interrupted`](kugetsu_core::agent::RunOutcome::Interrupted).
    pub fn interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// Whether Claude Code processes die with the thread that started them (see
    /// [`kugetsu_process::CommandSpec::die_with_parent`]): on for foreground runs, off for the
    /// daemon's.
    pub fn die_with_parent(mut self, yes: bool) -> Self {
        self.die_with_parent = yes;
        self
    }
}
