//! `init`: the base and PM agent sessions, primed and recorded in the index.

use super::*;

/// What `init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Re-initialize over an existing state.
    pub force: bool,
    /// Create sessions through the TUI (needs a terminal) rather than headless.
    pub interactive: bool,
    /// Directory the base and PM agent sessions live in.
    pub session_dir: PathBuf,
    /// The base session's priming prompt.
    pub base_prompt: String,
    /// The PM agent's priming prompt.
    pub pm_prompt: String,
}

/// What `init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    /// The base session.
    pub base: SessionId,
    /// The PM agent session.
    pub pm_agent: SessionId,
}

impl Orchestrator {
    /// `init`: creates the base and PM agent sessions and records them in the index.
    pub fn init(
        &self,
        opts: &InitOptions,
        sink: &mut dyn EventSink,
    ) -> Result<InitReport, OrchestratorError> {
        self.state.ensure()?;
        if let Some(index) = self.read_index()?
            && let Some(base) = index.base
            && !opts.force
        {
            return Err(OrchestratorError::AlreadyInitialized {
                root: self.state.root().into(),
                base: base.to_string(),
            });
        }
        let now = self.clock.now();
        let mut create = |title: &str, prompt: &str, agent: &str| {
            let req = CreateSessionRequest {
                title: title.into(),
                prompt: prompt.into(),
                dir: opts.session_dir.clone(),
                env: self.env.agent_env(agent)?,
                interactive: opts.interactive,
                limits: self.settings.limits,
                log_path: self.run_log_path(agent),
            };
            let report = self.agent.create_session(&req, sink)?;
            if !report.outcome.is_success() {
                // The session exists but its priming failed: report it rather than keep a
                // half-primed base that every issue would inherit.
                let _ = self.agent.delete_session(&report.session);
                return Err(OrchestratorError::Agent(AgentError::NoSession {
                    outcome: report.outcome,
                }));
            }
            Ok::<_, OrchestratorError>(report.session)
        };
        let base = create("kugetsu base", &opts.base_prompt, DEFAULT_AGENT)?;
        let pm = create("kugetsu pm-agent", &opts.pm_prompt, PM_AGENT)?;
        // What every fork of the base needs, done now rather than on the first `start`. A
        // failure here is no failure of `init`: the fork does it again and says why.
        if let Err(e) = self.agent.prepare_fork(&base, &self.env.agent_env(DEFAULT_AGENT)?, true) {
            tracing::warn!(base = %base, error = %e, "cannot prepare forks of the base session");
        }
        let file = |kind: SessionKind, id: &SessionId| SessionFile {
            kind,
            issue_ref: None,
            agent_session_id: id.clone().into(),
            agent: Some(self.settings.driver.clone()),
            agent_major: (self.agent.agent_major() > 1).then(|| self.agent.agent_major()),
            worktree_path: None,
            created_at: now,
            state: SessionState::Idle,
            directory: Some(opts.session_dir.clone()),
            branch: None,
            agent_pid: None,
            last_run: None,
            usage: None,
            extra: Default::default(),
        };
        self.write_session(&self.state.base_session_path(), &file(SessionKind::Base, &base))?;
        self.write_session(&self.state.pm_session_path(), &file(SessionKind::PmAgent, &pm))?;
        self.update_index(|index| {
            index.base = Some(base.clone().into());
            index.pm_agent = Some(pm.clone().into());
            Ok(())
        })?;
        Ok(InitReport { base, pm_agent: pm })
    }
}
