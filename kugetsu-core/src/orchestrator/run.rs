//! Agent turns: `start` (a fresh worktree and a fork of the base), `continue`, the PM agent's
//! turn, and the bookkeeping around each (issue lock, agent slot, session state, outcome).

use super::*;

/// What `start` needs.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The issue to start (its worktree and session are made if missing).
    pub issue: IssueRef,
    /// The first message to its agent.
    pub message: String,
    /// Where its repository comes from.
    pub source: RepoSource,
    /// Branch from this ref instead of the default branch.
    pub base_ref: Option<String>,
    /// Recreate the worktree even if that loses work.
    pub force: bool,
}

/// What `start` and `continue` report.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The issue, as it is written in the index.
    pub issue_ref: String,
    /// Its agent session.
    pub session_id: SessionId,
    /// Its worktree.
    pub worktree_path: PathBuf,
    /// How the run ended.
    pub outcome: RunOutcome,
    /// The run's log file.
    pub log_path: PathBuf,
    /// What the turn used, as the agent reported it (`null`: unknown).
    pub usage: Option<crate::usage::TurnUsage>,
}

/// One turn of an issue's session, for [`Orchestrator::run_turn`].
struct Turn<'a> {
    issue: &'a IssueRef,
    session: &'a SessionId,
    dir: &'a Path,
    session_path: &'a Path,
    message: &'a str,
    env: AgentEnv,
}

/// Forwards events to the caller's sink, records the agent pid in the session file, watches
/// each step's usage against the budgets and keeps the last text the agent said.
struct RecordingSink<'a> {
    inner: &'a mut dyn EventSink,
    orch: &'a Orchestrator,
    session_path: PathBuf,
    budget: super::budget::BudgetWatch<'a>,
    said: Option<String>,
}

impl EventSink for RecordingSink<'_> {
    fn spawned(&mut self, pid: u32) {
        let _ = self.orch.update_session(&self.session_path, |s| s.agent_pid = Some(pid));
        self.inner.spawned(pid);
    }
    fn event(&mut self, event: &crate::agent::AgentEvent) {
        if let crate::agent::AgentEvent::Usage { usage } = event {
            self.budget.step(usage);
        }
        if let crate::agent::AgentEvent::Text { text } = event
            && !text.trim().is_empty()
        {
            self.said = Some(text.clone());
        }
        self.inner.event(event);
    }
}

impl Orchestrator {
    /// `start`: a fresh worktree and a fork of the base session for the issue, then the first
    /// agent turn with `message`, inside a concurrency slot.
    pub fn start(
        &self,
        opts: &StartOptions,
        progress: &mut dyn WorktreeProgress,
        interrupt: &AtomicBool,
        sink: &mut dyn EventSink,
    ) -> Result<RunSummary, OrchestratorError> {
        self.start_from(opts, None, progress, interrupt, sink)
    }

    /// `start` of an issue that moved here from a lost host with its history: the worktree is
    /// made, then rebuilt with the carried work, and the session is imported from the carried
    /// export instead of forked from the base (what was not carried is made as `start` makes
    /// it); then the turn runs as `continue` would.
    pub fn start_moved(
        &self,
        opts: &StartOptions,
        moved: &MovedHistory,
        progress: &mut dyn WorktreeProgress,
        interrupt: &AtomicBool,
        sink: &mut dyn EventSink,
    ) -> Result<RunSummary, OrchestratorError> {
        self.start_from(opts, Some(moved), progress, interrupt, sink)
    }

    fn start_from(
        &self,
        opts: &StartOptions,
        moved: Option<&MovedHistory>,
        progress: &mut dyn WorktreeProgress,
        interrupt: &AtomicBool,
        sink: &mut dyn EventSink,
    ) -> Result<RunSummary, OrchestratorError> {
        let index = self.index_or_err()?;
        let base = self.base_session(&index)?;
        // Every fork is of the base: one another driver made cannot be forked by this one.
        let base_path = self.state.base_session_path();
        if let Some(file) = storage::read_json::<SessionFile>(&base_path)? {
            self.check_driver("the base session", &base_path, &file)?;
        }
        if index.pm_agent.is_none() {
            return Err(OrchestratorError::PmMissing);
        }
        let issue = &opts.issue;
        let key = issue.to_string();
        let name = format!("{}.json", issue.file_name());
        self.with_issue_lock(issue, || {
            // Refuse a name already owned by another ref (the mapping is injective; this guards
            // against hash collisions and hand-edited indexes).
            let index = self.index_or_err()?;
            // Only the repository part folds: an id like `#-Discuss` is the user's own word.
            let same_issue = |r: &str| match (r.rsplit_once('#'), key.rsplit_once('#')) {
                (Some((repo, id)), Some((key_repo, key_id))) => {
                    id == key_id && repo.eq_ignore_ascii_case(key_repo)
                }
                _ => false,
            };
            if let Some(other) = index.issues.keys().find(|r| **r != key && same_issue(r)) {
                return Err(OrchestratorError::CaseVariant {
                    issue: key.clone(),
                    existing: other.clone(),
                });
            }
            if let Some((other, _)) = index.issues.iter().find(|(r, f)| **f == name && **r != key) {
                return Err(OrchestratorError::NameCollision {
                    issue: key.clone(),
                    name: name.clone(),
                    existing: other.clone(),
                });
            }
            // A spent budget refuses before anything is made.
            self.check_budget(Some(issue))?;
            // The slot first: with every slot busy and no wait allowed, nothing is changed (the
            // caller may queue the whole `start` for the daemon instead).
            self.wait_for_provider()?;
            let _slot = self.acquire_slot()?;
            let wt_path = self.state.worktree_path(issue);
            let env = self.env.agent_env(DEFAULT_AGENT)?;
            // The fork needs the worktree (the agent takes the new session's directory from it),
            // but what it needs of the base can be had while the worktree is made.
            let agent = &self.agent;
            let info = std::thread::scope(|scope| {
                let prepared = scope.spawn(|| agent.prepare_fork(&base, &env, false));
                let info = self.worktrees.create(
                    &WorktreeRequest {
                        source: opts.source.clone(),
                        path: wt_path.clone(),
                        branch: issue.branch(),
                        base_ref: opts.base_ref.clone(),
                        force: opts.force,
                    },
                    progress,
                    interrupt,
                );
                match prepared.join() {
                    Ok(Ok(())) => {}
                    // The fork's to report: it does the same work again.
                    Ok(Err(e)) => tracing::debug!(error = %e, "preparing the fork failed"),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
                info
            })?;
            let request = ForkRequest {
                base: base.clone(),
                dir: info.path.clone(),
                title: key.clone(),
                env: env.clone(),
            };
            if let Some(saved) = moved.and_then(|m| m.worktree.as_deref()) {
                self.worktrees.restore_unsaved(&info.path, saved)?;
            }
            let session = match moved.and_then(|m| m.session.as_deref()) {
                Some(export) => self.agent.import_session(export, &request)?,
                None => self.agent.fork_session(&request)?,
            };
            let session_path = self.state.session_path(&name);
            // Starting an issue again keeps what its earlier turns spent: its budget is the
            // issue's, not the session's.
            let spent = storage::read_json::<SessionFile>(&session_path)
                .ok()
                .flatten()
                .and_then(|f| f.usage);
            let file = SessionFile {
                kind: SessionKind::Forked,
                issue_ref: Some(key.clone()),
                agent_session_id: session.clone().into(),
                agent: Some(self.settings.driver.clone()),
                agent_major: (self.agent.agent_major() > 1).then(|| self.agent.agent_major()),
                worktree_path: Some(info.path.clone()),
                created_at: self.clock.now(),
                state: SessionState::Idle,
                directory: None,
                branch: Some(issue.branch()),
                agent_pid: None,
                last_run: None,
                usage: spent,
                extra: Default::default(),
            };
            self.write_session(&session_path, &file)?;
            self.update_index(|index| {
                index.issues.insert(key.clone(), name.clone());
                Ok(())
            })?;
            self.run_turn(
                &Turn {
                    issue,
                    session: &session,
                    dir: &info.path,
                    session_path: &session_path,
                    message: &opts.message,
                    env,
                },
                sink,
            )
        })
    }

    /// `continue`: one more turn of the issue's existing session.
    pub fn continue_issue(
        &self,
        issue: &IssueRef,
        message: &str,
        sink: &mut dyn EventSink,
    ) -> Result<RunSummary, OrchestratorError> {
        self.with_issue_lock(issue, || {
            let (session_path, file) = self.issue_session(issue)?;
            self.check_driver(&issue.to_string(), &session_path, &file)?;
            let session = agent_session_id(&file.agent_session_id, &session_path)?;
            let dir = self.checked_worktree(issue, &file)?;
            let env = self.env.agent_env(DEFAULT_AGENT)?;
            self.check_budget(Some(issue))?;
            self.wait_for_provider()?;
            let _slot = self.acquire_slot()?;
            self.run_turn(
                &Turn {
                    issue,
                    session: &session,
                    dir: &dir,
                    session_path: &session_path,
                    message,
                    env,
                },
                sink,
            )
        })
    }

    /// Whether the issue has a session (for the daemon's start-or-continue choice).
    pub fn has_session(&self, issue: &IssueRef) -> Result<bool, OrchestratorError> {
        let index = self.index_or_err()?;
        Ok(index.issues.contains_key(&issue.to_string()))
    }

    /// Settles a turn nobody supervises any more: `issue`'s session says `running`, but its
    /// agent process is gone (the kugetsu or daemon running the turn was killed; the agent ran
    /// on or died with it). Nobody read the turn's outcome, so the session becomes `failed`,
    /// which `continue` resumes. Returns whether it did; a turn still supervised (its issue
    /// lock is held) or a session not marked running is left alone.
    pub fn settle_abandoned_run(&self, issue: &IssueRef) -> Result<bool, OrchestratorError> {
        let (path, _) = self.issue_session(issue)?;
        let settled = self.with_issue_lock(issue, || {
            let mut settled = false;
            self.update_session(&path, |s| {
                if s.state == SessionState::Running
                    && s.agent_pid.is_none_or(|pid| !self.settings.liveness.is_running(pid))
                {
                    s.state = SessionState::Failed;
                    s.agent_pid = None;
                    settled = true;
                }
            })?;
            Ok(settled)
        });
        match settled {
            Err(OrchestratorError::AlreadyRunning { .. }) => Ok(false),
            other => other,
        }
    }

    /// Asks whoever supervises `issue`'s running turn (a foreground `start`/`continue` or the
    /// queue daemon, in any process) to stop it, as Ctrl-C would: the turn is then recorded as
    /// `interrupted`. A turn nobody supervises any more is settled at once instead (as `list`
    /// would). Returns the session's state after the request: `running` while the supervisor
    /// stops the agent, or what settling left.
    pub fn request_stop(
        &self,
        issue: &IssueRef,
        by: &str,
    ) -> Result<SessionState, OrchestratorError> {
        let (_, file) = self.issue_session(issue)?;
        if file.state != SessionState::Running {
            return Err(OrchestratorError::NotRunning {
                issue: issue.to_string(),
                state: file.state.to_string(),
            });
        }
        if self.settle_abandoned_run(issue)? {
            return Ok(self.issue_session(issue)?.1.state);
        }
        crate::control::StopRequests::new(&self.state).request(issue, by, self.clock.now())?;
        Ok(SessionState::Running)
    }

    /// Sends a message to the PM agent (the daemon's dispatch of a queue item without an issue
    /// ref). Takes no slot: the PM agent does not count against `MAX_CONCURRENT_AGENTS`.
    pub fn message_pm(
        &self,
        message: &str,
        sink: &mut dyn EventSink,
    ) -> Result<RunOutcome, OrchestratorError> {
        let index = self.index_or_err()?;
        let id = index.pm_agent.as_ref().ok_or(OrchestratorError::PmMissing)?;
        let path = self.state.pm_session_path();
        let session = agent_session_id(id, &self.state.index_path())?;
        let lock = self.state.lock_path(PM_AGENT);
        self.wait_for_provider()?;
        let file: SessionFile = storage::read_json(&path)?.ok_or(OrchestratorError::PmMissing)?;
        self.check_driver("the PM agent session", &path, &file)?;
        let dir = file
            .directory
            .clone()
            .or_else(|| file.worktree_path.clone())
            .ok_or_else(|| OrchestratorError::NoDirectory { path: path.clone() })?;
        // Only the daily budget limits the PM agent, checked before its turn (its turns are
        // short; an issue's turn is watched step by step).
        self.check_budget(None)?;
        storage::with_exclusive_lock(&lock, || {
            let log_path = self.run_log_path(PM_AGENT);
            let report = self.agent.run(
                &RunRequest {
                    session,
                    dir,
                    prompt: message.into(),
                    env: self.env.agent_env(PM_AGENT)?,
                    limits: self.turn_limits(None),
                    log_path: log_path.clone(),
                },
                sink,
            )?;
            self.record_spending(&log_path, &report.outcome, report.usage.as_ref());
            if super::budget::counts(&report.outcome, report.usage.as_ref()) {
                self.update_session(&path, |s| {
                    s.usage.get_or_insert_default().add_turn(report.usage.as_ref());
                })?;
            }
            if let RunOutcome::RateLimited(limit) = &report.outcome {
                self.pause_provider(limit);
            }
            Ok(report.outcome)
        })
    }

    /// Runs one turn of an issue's session (the caller holds the issue lock and a slot) and
    /// records how it went in the session file.
    fn run_turn(
        &self,
        turn: &Turn<'_>,
        sink: &mut dyn EventSink,
    ) -> Result<RunSummary, OrchestratorError> {
        let Turn { issue, session, dir, session_path, message, ref env } = *turn;
        let started = self.clock.now();
        // A stop asked for from another process (`request_stop`) reaches the driver as the
        // same interrupt Ctrl-C triggers. A request left from an earlier turn is not for this
        // one; it is dropped before the session says `running`, so none made since is lost.
        let stops = crate::control::StopRequests::new(&self.state);
        stops.clear(issue)?;
        self.update_session(session_path, |s| {
            s.state = SessionState::Running;
            s.agent_pid = None;
        })?;
        let log_path = self.run_log_path(&issue.file_name());
        let spent_before = storage::read_json::<SessionFile>(session_path)?
            .and_then(|f| f.usage)
            .unwrap_or_default();
        if let Some(observer) = &self.observer {
            observer.turn_started(issue, dir);
        }
        let mut recording = RecordingSink {
            inner: sink,
            orch: self,
            session_path: session_path.to_path_buf(),
            budget: super::budget::BudgetWatch::new(self, spent_before),
            said: None,
        };
        let done = AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    if stops.is_requested(issue) {
                        tracing::debug!(%issue, "stop requested");
                        self.settings.interrupt.trigger(0);
                        return;
                    }
                    std::thread::park_timeout(crate::control::STOP_POLL);
                }
            });
            let result = self.agent.run(
                &RunRequest {
                    session: session.clone(),
                    dir: dir.to_path_buf(),
                    prompt: message.into(),
                    env: env.clone(),
                    limits: self.turn_limits(Some(issue)),
                    log_path: log_path.clone(),
                },
                &mut recording,
            );
            done.store(true, Ordering::SeqCst);
            watcher.thread().unpark();
            result
        });
        let _ = stops.clear(issue);
        let finished = self.clock.now();
        let (outcome, exit_code, reported) = match &result {
            Ok(report) => (report.outcome.clone(), report.exit_code, report.usage),
            Err(e) => (RunOutcome::Failed { message: e.to_string() }, None, None),
        };
        let outcome = recording.budget.outcome(outcome);
        let usage = recording.budget.total(reported);
        if let RunOutcome::RateLimited(limit) = &outcome {
            self.pause_provider(limit);
        }
        self.update_session(session_path, |s| {
            s.state = SessionState::after(&outcome);
            s.agent_pid = None;
            s.ran_with_major(self.agent.agent_major());
            s.last_run = Some(LastRun {
                outcome: outcome.clone(),
                started_at: started,
                finished_at: finished,
                exit_code,
                usage,
            });
            if super::budget::counts(&outcome, usage.as_ref()) {
                s.usage.get_or_insert_default().add_turn(usage.as_ref());
            }
        })?;
        self.record_spending(&log_path, &outcome, usage.as_ref());
        if let Some(observer) = &self.observer {
            let said = recording.said.as_deref();
            let usage = usage.as_ref();
            observer.turn_ended(&TurnEnd { issue, worktree: dir, outcome: &outcome, said, usage });
        }
        result?;
        Ok(RunSummary {
            issue_ref: issue.to_string(),
            session_id: session.clone(),
            worktree_path: dir.to_path_buf(),
            outcome,
            log_path,
            usage,
        })
    }

    /// Waits for an agent slot as long as the settings allow, in short steps so that a stop
    /// request ends the wait at once.
    fn acquire_slot(&self) -> Result<Box<dyn crate::queue::SlotGuard>, OrchestratorError> {
        const STEP: Duration = Duration::from_millis(250);
        let interrupt = &self.settings.interrupt;
        let deadline = Instant::now().checked_add(self.settings.slot_wait);
        loop {
            if interrupt.is_triggered() {
                return Err(OrchestratorError::Interrupted { signal: interrupt.describe() });
            }
            let left = deadline.map_or(STEP, |d| d.saturating_duration_since(Instant::now()));
            // Asked afresh at every step: a limit raised while we wait frees us at once.
            let limit = self.settings.max_agents.get();
            match self.slots.acquire(limit, left.min(STEP)) {
                Ok(slot) => return Ok(slot),
                Err(QueueError::NoSlot { .. }) if left > STEP => {}
                Err(QueueError::NoSlot { limit, .. }) => {
                    return Err(
                        QueueError::NoSlot { limit, waited: self.settings.slot_wait }.into()
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
