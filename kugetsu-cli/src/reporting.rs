//! Reporting back on watched issues, wired: the orchestrator's [`TurnObserver`] that queues a
//! report in the outbox when a turn of an issue of a watched repository starts or ends (daemon
//! and foreground alike), and the making of a queued report for the outbox's sender
//! ([`deliver`]): the forge's client and token by the repository's server, the issue's clone
//! URL and token for the push. What a report holds and how it is made is core's
//! ([`kugetsu_core::report`]).

use std::path::Path;
use std::sync::Arc;

use kugetsu_core::config::Config;
use kugetsu_core::env_file::EnvFiles;
use kugetsu_core::orchestrator::{DEFAULT_AGENT, TurnEnd, TurnObserver};
use kugetsu_core::outbox::{Failure, Outbox};
use kugetsu_core::report::{self, Phase, PullPlan, Pushed, Report};
use kugetsu_core::secrets::{Secret, redact};
use kugetsu_core::servers::{Servers, api_for};
use kugetsu_core::watch::Watches;
use kugetsu_core::{IssueRef, RunOutcome, StateDir};

/// Queues the reports of a state directory's watched issues.
pub struct Reporter {
    state: StateDir,
    config: Config,
}

impl Reporter {
    /// The reporter for `state` under `config` (labels, pull requests).
    pub fn new(state: StateDir, config: Config) -> Arc<Self> {
        Arc::new(Reporter { state, config })
    }

    /// The issue's number, when its repository is watched.
    fn watched(&self, issue: &IssueRef) -> Option<u64> {
        let number = issue.id().parse().ok()?;
        let file = Watches::new(&self.state).load().ok()?;
        file.watches.contains_key(&issue.repo().to_string()).then_some(number)
    }

    fn queue(&self, report: &Report) {
        let Ok(payload) = serde_json::to_value(report) else { return };
        let now = time::OffsetDateTime::now_utc();
        let id = format!("report_{}", now.unix_timestamp_nanos());
        let target = report::target(&report.issue_ref);
        match Outbox::new(&self.state).replace(&id, payload, &target, now) {
            Ok(()) => crate::notifications::outbox_added(),
            Err(e) => tracing::warn!(error = %e, "cannot queue the report on {}", report.issue_ref),
        }
    }

    fn report(&self, issue: &IssueRef, number: u64, phase: Phase) -> Report {
        Report {
            issue_ref: issue.to_string(),
            number,
            phase,
            outcome: String::new(),
            branch: issue.branch(),
            cost_usd: None,
            summary: String::new(),
            labels: self.config.report_labels.clone(),
            pull: None,
            not_committed: Vec::new(),
        }
    }
}

impl TurnObserver for Reporter {
    fn turn_started(&self, issue: &IssueRef, _worktree: &Path) {
        if let Some(number) = self.watched(issue) {
            self.queue(&self.report(issue, number, Phase::Running));
        }
    }

    fn turn_ended(&self, end: &TurnEnd<'_>) {
        let Some(number) = self.watched(end.issue) else { return };
        let secrets = crate::notifications::secrets(&self.state, Some(&self.config));
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let mut report = self.report(end.issue, number, Phase::after(end.outcome));
        report.outcome = redact(&end.outcome.describe(), &refs);
        report.summary = report::summary_of(&redact(end.said.unwrap_or_default(), &refs));
        report.cost_usd = end.usage.and_then(|u| u.cost_usd).map(|c| c.get());
        if *end.outcome == RunOutcome::Completed && self.config.pull_requests {
            if self.config.commit_leftovers {
                let said = end.said.unwrap_or_default();
                report.not_committed =
                    crate::leftovers::commit(&self.state, end.issue, end.worktree, said, &secrets);
            }
            report.pull = Some(PullPlan {
                worktree: end.worktree.to_path_buf(),
                title: format!("Issue #{number}"),
            });
        }
        self.queue(&report);
    }
}

/// Makes a queued report (an outbox entry whose target is `forge:…`): `Err` to try again.
pub fn deliver(state: &StateDir, payload: &serde_json::Value) -> Result<(), Failure> {
    let report: Report = serde_json::from_value(payload.clone())
        .map_err(|e| Failure::from(format!("not a report: {e}")))?;
    let issue = IssueRef::parse(&report.issue_ref).map_err(|e| Failure::from(e.to_string()))?;
    let servers = Servers::new(state).load().map_err(|e| Failure::from(e.to_string()))?;
    let target = api_for(&issue.repo(), &servers).map_err(|e| Failure::from(e.to_string()))?;
    let env =
        EnvFiles::new(state).merged(DEFAULT_AGENT).map_err(|e| Failure::from(e.to_string()))?;
    let token = env
        .0
        .get(target.forge.token_var())
        .filter(|t| !t.is_empty())
        .map(|t| Secret::new(t.clone()));
    let forge = kugetsu_forge::HttpForge::new(target.forge, &target.url, token);
    let push = |plan: &PullPlan, branch: &str| push(state, &issue, plan, branch);
    report::apply(&report, &forge, &target.repo, &push).map_err(|e| {
        let retry_after = match &e {
            report::ReportError::Forge {
                source: kugetsu_core::forge::ForgeError::RateLimited { wait, .. },
                ..
            } => Some(*wait),
            _ => None,
        };
        Failure { why: e.to_string(), retry_after }
    })
}

/// Pushes the issue's branch to its repository, with the token its clone uses.
fn push(
    state: &StateDir,
    issue: &IssueRef,
    plan: &PullPlan,
    branch: &str,
) -> Result<Pushed, String> {
    let source = crate::wiring::repo_source_in(state, issue).map_err(|e| e.message)?;
    let config = kugetsu_git::GitConfig::default();
    let pushed = kugetsu_git::push_branch(&plan.worktree, branch, &source, config)
        .map_err(|e| e.to_string())?;
    Ok(match pushed {
        kugetsu_git::PushOutcome::Pushed { .. } => Pushed::Branch,
        kugetsu_git::PushOutcome::NothingToPush => Pushed::NothingToPush,
        kugetsu_git::PushOutcome::Refused(why) => Pushed::Refused(why),
    })
}
