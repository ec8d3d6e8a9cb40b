//! Reporting back on a watched issue: what a turn's start and end write on the tracker, and in
//! which order. Core decides and queues; the CLI's sender makes the requests.
//!
//! A [`Report`] is the whole state the issue should show after a turn's start or end: its
//! status label, the one comment kugetsu keeps there (outcome, branch, cost, a short summary of
//! what the agent said, the pull request), and whether the branch is to be pushed and its draft
//! pull request opened. It waits in the outbox ([`crate::outbox`], the webhooks' durable queue,
//! under the target `forge:<issue ref>`), so a daemon restart resumes it and a run never waits
//! for the forge; a newer report of the same issue replaces an older one not yet made.
//!
//! Making one ([`apply`]) is idempotent: labels send only the difference, the comment is found
//! again by its marker line ([`marker`]), the pull request by its head branch, and a push of a
//! commit the remote has is a no-op. A crash between a write and its record repeats the report,
//! never a comment.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::agent::RunOutcome;
use crate::forge::{Forge, ForgeError, PullRef};

/// The longest summary of what the agent said put in the comment, in characters.
pub const MAX_SUMMARY_CHARS: usize = 600;
/// The outbox target prefix of reports.
pub const TARGET_PREFIX: &str = "forge:";

/// The status labels (`KUGETSU_REPORT_LABELS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusLabels {
    /// While a turn runs.
    pub running: String,
    /// When a turn ended needing a person.
    pub blocked: String,
    /// When a turn completed.
    pub done: String,
}

impl StatusLabels {
    /// Parses `running,blocked,done` (three non-empty names), or `off` (`None`).
    pub fn parse(v: &str) -> Result<Option<Self>, String> {
        let v = v.trim();
        if v == "off" {
            return Ok(None);
        }
        let names: Vec<&str> = v.split(',').map(str::trim).collect();
        match names.as_slice() {
            [r, b, d] if [r, b, d].iter().all(|n| !n.is_empty() && n.len() <= 100) => {
                Ok(Some(StatusLabels {
                    running: r.to_string(),
                    blocked: b.to_string(),
                    done: d.to_string(),
                }))
            }
            _ => Err("is not three label names separated by commas, or `off`".into()),
        }
    }

    fn all(&self) -> [&String; 3] {
        [&self.running, &self.blocked, &self.done]
    }
}

impl fmt::Display for StatusLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.running, self.blocked, self.done)
    }
}

/// Where a watched issue's turn stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A turn runs.
    Running,
    /// The last turn ended needing a person (blocked, failed, hung, timed out, stopped).
    Blocked,
    /// The last turn completed.
    Done,
}

impl Phase {
    /// The phase a turn that ended with `outcome` leaves.
    pub fn after(outcome: &RunOutcome) -> Self {
        match outcome {
            RunOutcome::Completed => Phase::Done,
            _ => Phase::Blocked,
        }
    }
}

/// The branch to push and the draft pull request to open or update after a completed turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullPlan {
    /// The issue's worktree.
    pub worktree: PathBuf,
    /// The pull request's title.
    pub title: String,
}

/// What a watched issue should show after a turn's start or end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The issue (`instance/owner/repo#N`).
    pub issue_ref: String,
    /// Its number on the forge.
    pub number: u64,
    /// Where its turn stands.
    pub phase: Phase,
    /// How the turn ended, as `kugetsu` words it (empty while running).
    pub outcome: String,
    /// The issue's branch.
    pub branch: String,
    /// What the turn cost in USD, when known.
    pub cost_usd: Option<f64>,
    /// What the agent said last, secrets masked, cut to [`MAX_SUMMARY_CHARS`].
    pub summary: String,
    /// The status labels (`None`: leave labels alone).
    pub labels: Option<StatusLabels>,
    /// Push and open a draft pull request (a completed turn, pull requests on).
    pub pull: Option<PullPlan>,
    /// What kugetsu left uncommitted in the worktree and why (`notes.txt: holds a secret`),
    /// or why it could not commit at all; masked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_committed: Vec<String>,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// The branch is on the remote at our commit (pushed now or before).
    Branch,
    /// The branch has no commits beyond its base: nothing to push, no pull request.
    NothingToPush,
    /// Refused (the remote branch has commits kugetsu did not make), with why: reported in
    /// the comment, not retried.
    Refused(String),
}

/// Pushes an issue's branch from its worktree: `Err` is a failure to try again later.
pub type Push<'a> = &'a dyn Fn(&PullPlan, &str) -> Result<Pushed, String>;

/// Why a report could not be made now (it is tried again).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The forge failed.
    #[error("report on {issue_ref}: {source}")]
    Forge {
        /// The issue.
        issue_ref: String,
        /// Why.
        #[source]
        source: ForgeError,
    },
    /// The push failed.
    #[error("report on {issue_ref}: push {branch}: {message}")]
    Push {
        /// The issue.
        issue_ref: String,
        /// The branch.
        branch: String,
        /// Why.
        message: String,
    },
}

/// The hidden line that names the comment of `issue_ref`.
pub fn marker(issue_ref: &str) -> String {
    format!("<!-- kugetsu:report {issue_ref} -->")
}

/// The outbox target of `issue_ref`'s reports.
pub fn target(issue_ref: &str) -> String {
    format!("{TARGET_PREFIX}{issue_ref}")
}

/// `text` made safe and short for the comment: cut to [`MAX_SUMMARY_CHARS`], no HTML comment
/// (which could hide text or fake a marker), no mention that would notify someone, quoted.
pub fn summary_of(text: &str) -> String {
    let text = text.trim();
    let mut cut: String = text.chars().take(MAX_SUMMARY_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut.replace("<!--", "&lt;!--").replace('@', "@\u{200b}")
}

/// The comment's text for `report`, with the pull request if there is one and `note` (a push
/// refused) if any.
pub fn comment_body(report: &Report, pull: Option<&PullRef>, note: Option<&str>) -> String {
    let status = match report.phase {
        Phase::Running => "a turn is running".to_string(),
        _ => format!("the last turn ended: **{}**", report.outcome),
    };
    let mut out = format!("**kugetsu**: {status}\n\n- Branch: `{}`\n", report.branch);
    if let Some(p) = pull {
        let link = if p.url.is_empty() { format!("#{}", p.number) } else { p.url.clone() };
        out.push_str(&format!("- Pull request: {link} (draft)\n"));
    }
    if let Some(note) = note {
        out.push_str(&format!("- Not pushed: {note}\n"));
    }
    if !report.not_committed.is_empty() {
        let list: Vec<String> =
            report.not_committed.iter().map(|n| summary_of(&n.replace('`', "'"))).collect();
        out.push_str(&format!("- Not committed: {}\n", list.join("; ")));
    }
    if report.phase != Phase::Running {
        let cost = report.cost_usd.map_or("unknown".to_string(), |c| format!("${c:.2}"));
        out.push_str(&format!("- Cost: {cost}\n"));
        if !report.summary.is_empty() {
            out.push_str("\nThe agent said:\n\n");
            for line in report.summary.lines() {
                out.push_str(&format!("> {line}\n"));
            }
        }
    }
    out.push('\n');
    out.push_str(&marker(&report.issue_ref));
    out
}

/// The pull request's body: it links (and on merge closes) the issue.
pub fn pull_body(report: &Report) -> String {
    format!(
        "Closes #{}.\n\nOpened by kugetsu from the branch `{}`; later turns push to it.",
        report.number, report.branch
    )
}

/// Makes `report` on `forge` (`repo` is the repository's path there): labels, then the push and
/// the draft pull request, then the comment that names them.
pub fn apply(
    report: &Report,
    forge: &dyn Forge,
    repo: &str,
    push: Push<'_>,
) -> Result<(), ReportError> {
    let forge_err = |source| ReportError::Forge { issue_ref: report.issue_ref.clone(), source };
    if let Some(labels) = &report.labels {
        let on = match report.phase {
            Phase::Running => &labels.running,
            Phase::Blocked => &labels.blocked,
            Phase::Done => &labels.done,
        };
        let off: Vec<String> = labels.all().into_iter().filter(|l| *l != on).cloned().collect();
        forge.set_labels(repo, report.number, std::slice::from_ref(on), &off).map_err(forge_err)?;
    }
    let (mut pull, mut note) = (None, None);
    if let Some(plan) = &report.pull {
        let pushed = push(plan, &report.branch).map_err(|message| ReportError::Push {
            issue_ref: report.issue_ref.clone(),
            branch: report.branch.clone(),
            message,
        })?;
        match pushed {
            Pushed::Branch => {
                let body = pull_body(report);
                let made = forge.ensure_draft_pull(repo, &report.branch, &plan.title, &body);
                pull = Some(made.map_err(forge_err)?);
            }
            Pushed::NothingToPush => {}
            Pushed::Refused(why) => note = Some(why),
        }
    }
    let body = comment_body(report, pull.as_ref(), note.as_deref());
    forge
        .upsert_comment(repo, report.number, &marker(&report.issue_ref), &body)
        .map_err(forge_err)?;
    Ok(())
}

#[cfg(test)]
mod tests;
