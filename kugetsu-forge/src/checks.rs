//! What the loop reads back from a pull request, as each forge documents it: the pull request
//! of a branch (its head commit, open or merged), the checks of a commit (GitHub check runs
//! and the combined commit status; Gitea the combined status; GitLab the commit's latest
//! pipeline, with the tail of each failed job's log), and the reviews that request changes
//! (GitHub `CHANGES_REQUESTED`, Gitea `REQUEST_CHANGES`; GitLab a reviewer whose state is
//! `requested_changes`, with that reviewer's latest comment on the merge request).

use kugetsu_core::forge::{Checks, ChecksState, ForgeError, ForgeKind, PullState, Review};
use serde_json::Value;

use crate::http::encode;
use crate::writes::Writer;

/// The lines of a failed job's log kept.
const LOG_TAIL_LINES: usize = 40;
/// The most failed jobs whose logs are read.
const MAX_LOGS: usize = 3;

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default().trim().to_string()
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

impl Writer<'_> {
    /// See [`kugetsu_core::forge::Forge::find_pull`].
    pub fn find_pull(&self, repo: &str, branch: &str) -> Result<Option<PullState>, ForgeError> {
        let base = self.base(repo);
        let list = match self.kind {
            ForgeKind::Github => {
                let owner = repo.split('/').next().unwrap_or(repo);
                let head = encode(&format!("{owner}:{branch}"));
                format!("{base}/pulls?state=all&head={head}&per_page=100")
            }
            ForgeKind::Gitlab => format!(
                "{base}/merge_requests?state=all&source_branch={}&per_page=100",
                encode(branch)
            ),
            ForgeKind::Gitea => format!("{base}/pulls?state=all&limit=50"),
        };
        let mut found: Vec<PullState> = self
            .get_all(&list)?
            .iter()
            .filter_map(|p| {
                let (number, head, sha, open, merged) = match self.kind {
                    ForgeKind::Gitlab => (
                        p.get("iid")?.as_u64()?,
                        text(p, "/source_branch"),
                        text(p, "/sha"),
                        text(p, "/state") == "opened",
                        text(p, "/state") == "merged",
                    ),
                    _ => (
                        p.get("number")?.as_u64()?,
                        text(p, "/head/ref"),
                        text(p, "/head/sha"),
                        text(p, "/state") == "open",
                        p.get("merged").and_then(Value::as_bool).unwrap_or(false)
                            || p.get("merged_at").is_some_and(|m| !m.is_null()),
                    ),
                };
                (head == branch).then_some(PullState { number, head_sha: sha, open, merged })
            })
            .collect();
        found.sort_by_key(|p| p.number);
        Ok(found.pop())
    }

    /// See [`kugetsu_core::forge::Forge::checks`].
    pub fn checks(&self, repo: &str, sha: &str) -> Result<Checks, ForgeError> {
        let base = self.base(repo);
        let (mut failed, mut pending, mut passed) = (Vec::new(), false, false);
        match self.kind {
            ForgeKind::Github | ForgeKind::Gitea => {
                if self.kind == ForgeKind::Github {
                    let runs =
                        self.get_one(&format!("{base}/commits/{sha}/check-runs?per_page=100"))?;
                    for run in
                        runs.get("check_runs").and_then(Value::as_array).into_iter().flatten()
                    {
                        match (text(run, "/status").as_str(), text(run, "/conclusion").as_str()) {
                            (s, _) if s != "completed" => pending = true,
                            (_, "success" | "neutral" | "skipped") => passed = true,
                            _ => {
                                let parts = [
                                    text(run, "/name"),
                                    text(run, "/output/title"),
                                    text(run, "/output/summary"),
                                    tail(&text(run, "/output/text")),
                                ];
                                let parts: Vec<String> =
                                    parts.into_iter().filter(|p| !p.is_empty()).collect();
                                failed.push(parts.join("\n"));
                            }
                        }
                    }
                }
                let status = self.get_one(&format!("{base}/commits/{sha}/status"))?;
                for s in status.get("statuses").and_then(Value::as_array).into_iter().flatten() {
                    let state = match text(s, "/state").as_str() {
                        "" => text(s, "/status"),
                        other => other.to_string(),
                    };
                    match state.as_str() {
                        "success" => passed = true,
                        "pending" | "" => pending = true,
                        _ => failed.push(format!(
                            "{}: {} {}",
                            text(s, "/context"),
                            text(s, "/description"),
                            text(s, "/target_url")
                        )),
                    }
                }
            }
            ForgeKind::Gitlab => {
                let url = format!(
                    "{base}/pipelines?sha={}&per_page=1&order_by=id&sort=desc",
                    encode(sha)
                );
                let pipelines = self.get_all(&url)?;
                if let Some(p) = pipelines.first() {
                    match text(p, "/status").as_str() {
                        "success" => passed = true,
                        "failed" => {
                            let id = p.get("id").and_then(Value::as_u64).unwrap_or(0);
                            let jobs = self.get_all(&format!(
                                "{base}/pipelines/{id}/jobs?scope[]=failed&per_page=100"
                            ))?;
                            for job in jobs.iter().take(MAX_LOGS) {
                                let name = text(job, "/name");
                                let jid = job.get("id").and_then(Value::as_u64).unwrap_or(0);
                                let answer =
                                    self.http.get(&format!("{base}/jobs/{jid}/trace"), None)?;
                                failed.push(format!("{name}\n{}", tail(&answer.body)));
                            }
                            if failed.is_empty() {
                                failed.push(format!("pipeline {id} failed"));
                            }
                        }
                        "canceled" | "skipped" => passed = true,
                        _ => pending = true,
                    }
                }
            }
        }
        let state = if !failed.is_empty() {
            ChecksState::Failure
        } else if pending || !passed {
            ChecksState::Pending
        } else {
            ChecksState::Success
        };
        Ok(Checks { state, failures: failed })
    }

    /// See [`kugetsu_core::forge::Forge::changes_requested`].
    pub fn changes_requested(&self, repo: &str, number: u64) -> Result<Vec<Review>, ForgeError> {
        let word = match self.kind {
            ForgeKind::Github => "CHANGES_REQUESTED",
            ForgeKind::Gitea => "REQUEST_CHANGES",
            ForgeKind::Gitlab => return self.gitlab_changes_requested(repo, number),
        };
        let url = format!("{}/pulls/{number}/reviews?per_page=100", self.base(repo));
        let mut out: Vec<Review> = self
            .get_all(&url)?
            .iter()
            .filter(|r| text(r, "/state") == word)
            .filter_map(|r| {
                Some(Review {
                    id: r.get("id")?.as_u64()?,
                    author: text(r, "/user/login"),
                    body: text(r, "/body"),
                })
            })
            .collect();
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// GitLab keeps no review object: a reviewer's state says changes were requested
    /// (`GET …/reviewers`, GitLab 17), and what to change is in their comments. Each reviewer
    /// asking is one review, named by their latest comment's id (so a new comment is a new
    /// review); one who asked without commenting is not acted on, having said nothing to do.
    fn gitlab_changes_requested(&self, repo: &str, number: u64) -> Result<Vec<Review>, ForgeError> {
        let base = self.base(repo);
        let asking: Vec<String> = self
            .get_all(&format!("{base}/merge_requests/{number}/reviewers"))?
            .iter()
            .filter(|r| text(r, "/state") == "requested_changes")
            .map(|r| text(r, "/user/username"))
            .filter(|who| !who.is_empty())
            .collect();
        if asking.is_empty() {
            return Ok(Vec::new());
        }
        let notes = self.get_all(&format!(
            "{base}/merge_requests/{number}/notes?sort=desc&order_by=created_at&per_page=100"
        ))?;
        let mut out: Vec<Review> = asking
            .into_iter()
            .filter_map(|who| {
                let note = notes.iter().find(|n| {
                    text(n, "/author/username") == who
                        && !n.get("system").and_then(Value::as_bool).unwrap_or(false)
                })?;
                Some(Review {
                    id: note.get("id")?.as_u64()?,
                    author: who,
                    body: text(note, "/body"),
                })
            })
            .collect();
        out.sort_by_key(|r| r.id);
        Ok(out)
    }
}
