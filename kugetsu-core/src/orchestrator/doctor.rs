//! `doctor`: cross-checks of the state files, the worktrees and the agent's sessions, each
//! problem explained in a sentence and repaired with `fix` where that is safe.

use super::*;
use crate::session::RecordedSessionId;

/// One problem `doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What it is about (a path, an issue, a session).
    pub subject: String,
    /// The problem, in a sentence.
    pub problem: String,
    /// What `--fix` did, or would do.
    pub remedy: String,
    /// Whether it was fixed in this run.
    pub fixed: bool,
}

impl Orchestrator {
    /// `doctor`: cross-checks the index, session files, worktrees and agent sessions, explains
    /// each problem, and with `fix` repairs what it safely can.
    pub fn doctor(
        &self,
        fix: bool,
        fix_permissions: bool,
    ) -> Result<Vec<Finding>, OrchestratorError> {
        let mut findings = Vec::new();
        let index = match self.read_index() {
            Ok(Some(i)) => i,
            Ok(None) => {
                findings.push(Finding {
                    subject: self.state.index_path().display().to_string(),
                    problem: "no index: kugetsu is not initialized".into(),
                    remedy: "run `kugetsu init`".into(),
                    fixed: false,
                });
                return Ok(findings);
            }
            Err(e) => {
                findings.push(Finding {
                    subject: self.state.index_path().display().to_string(),
                    problem: e.to_string(),
                    remedy: "inspect the kept copy; run `kugetsu init --force` to start over"
                        .into(),
                    fixed: false,
                });
                return Ok(findings);
            }
        };
        for (label, id, path) in [
            ("base session", &index.base, self.state.base_session_path()),
            ("PM agent session", &index.pm_agent, self.state.pm_session_path()),
        ] {
            match id {
                None => findings.push(Finding {
                    subject: label.into(),
                    problem: format!("the {label} is not recorded in the index"),
                    remedy: "run `kugetsu init --force`".into(),
                    fixed: false,
                }),
                Some(id) => {
                    let file = storage::read_json::<SessionFile>(&path).and_then(|f| {
                        f.ok_or_else(|| StorageError::Io {
                            action: "read",
                            path: path.clone(),
                            source: std::io::ErrorKind::NotFound.into(),
                        })
                    });
                    let dir = match file {
                        Ok(f) => {
                            if let Some(finding) = self.other_driver(label, &f) {
                                // Its id means nothing to the driver configured: not asked.
                                findings.push(finding);
                                continue;
                            }
                            f.directory
                        }
                        Err(e) => {
                            findings.push(Finding {
                                subject: path.display().to_string(),
                                problem: format!("the {label} file is unusable: {e}"),
                                remedy: "run `kugetsu init --force`".into(),
                                fixed: false,
                            });
                            None
                        }
                    };
                    let known = self.check_agent_session(
                        label,
                        id,
                        dir.as_deref(),
                        fix_permissions,
                        &mut findings,
                    );
                    if known
                        && path == self.state.base_session_path()
                        && let Ok(base) = id.valid()
                    {
                        self.refresh_fork_source(base, &mut findings);
                    }
                }
            }
        }
        for (issue, name) in &index.issues {
            let Ok(r) = IssueRef::parse(issue) else {
                findings.push(Finding {
                    subject: issue.clone(),
                    problem: "the index holds an invalid issue ref".into(),
                    remedy: "remove it with `kugetsu destroy` or edit index.json".into(),
                    fixed: false,
                });
                continue;
            };
            let file = match self.checked_session_path(&r, name).map(|p| {
                let f = storage::read_json::<SessionFile>(&p);
                (p, f)
            }) {
                Ok((_, Ok(Some(f)))) => f,
                Ok((p, Ok(None))) => {
                    let fixed = fix
                        && self
                            .update_index(|i| {
                                i.issues.remove(issue);
                                Ok(())
                            })
                            .is_ok();
                    findings.push(Finding {
                        subject: issue.clone(),
                        problem: format!("its session file {} is missing", p.display()),
                        remedy: "drop the index entry".into(),
                        fixed,
                    });
                    continue;
                }
                Ok((_, Err(e))) => {
                    findings.push(Finding {
                        subject: issue.clone(),
                        problem: e.to_string(),
                        remedy: "inspect the kept copy, then `kugetsu destroy` and start again"
                            .into(),
                        fixed: false,
                    });
                    continue;
                }
                Err(e) => {
                    findings.push(Finding {
                        subject: issue.clone(),
                        problem: e.to_string(),
                        remedy: "edit index.json".into(),
                        fixed: false,
                    });
                    continue;
                }
            };
            let worktree = match self.checked_worktree(&r, &file) {
                Ok(dir) if !dir.is_dir() => {
                    findings.push(Finding {
                        subject: issue.clone(),
                        problem: format!("its worktree {} is missing", dir.display()),
                        remedy: "run `kugetsu start` again to recreate it".into(),
                        fixed: false,
                    });
                    None
                }
                Ok(dir) => Some(dir),
                Err(e) => {
                    findings.push(Finding {
                        subject: issue.clone(),
                        problem: e.to_string(),
                        remedy: "destroy the issue and start it again".into(),
                        fixed: false,
                    });
                    None
                }
            };
            if file.state == SessionState::Running
                && file.agent_pid.is_none_or(|pid| !self.settings.liveness.is_running(pid))
            {
                // A run whose process is gone (killed with its kugetsu): it is not running.
                let fixed = fix && self.settle_abandoned_run(&r).unwrap_or(false);
                findings.push(Finding {
                    subject: issue.clone(),
                    problem: "marked running, but no agent process is alive".into(),
                    remedy: "mark it failed so it can be continued".into(),
                    fixed,
                });
            }
            if let Some(finding) = self.other_driver(issue, &file) {
                findings.push(finding);
                continue;
            }
            self.check_agent_session(
                issue,
                &file.agent_session_id,
                worktree.as_deref(),
                fix_permissions,
                &mut findings,
            );
        }
        // A sessions/ or worktrees/ that cannot be listed (a planted symlink, a file in its
        // place) is one more finding: doctor reports everything it can rather than stopping.
        let orphans = match self.prune(false) {
            Ok(orphans) => orphans,
            Err(e) => {
                findings.push(Finding {
                    subject: self.state.root().display().to_string(),
                    problem: e.to_string(),
                    remedy:
                        "replace it with the real directory (kugetsu never follows links there)"
                            .into(),
                    fixed: false,
                });
                PruneReport::default()
            }
        };
        for p in orphans.session_files.iter().chain(&orphans.worktrees) {
            findings.push(Finding {
                subject: p.display().to_string(),
                problem: "orphaned: no index entry refers to it".into(),
                remedy: "run `kugetsu prune --force`".into(),
                fixed: false,
            });
        }
        if fix {
            for p in self.worktrees.prune()? {
                findings.push(Finding {
                    subject: p.display().to_string(),
                    problem: "a stale worktree registration (its directory is gone)".into(),
                    remedy: "dropped the registration".into(),
                    fixed: true,
                });
            }
        }
        Ok(findings)
    }

    /// A finding when `file`'s session was made by another driver than the one configured, or
    /// last run by a newer major version of its agent.
    fn other_driver(&self, subject: &str, file: &SessionFile) -> Option<Finding> {
        let made_by = file.agent();
        let major = self.agent.agent_major();
        if made_by == self.settings.driver && file.agent_major() > major {
            return Some(Finding {
                subject: subject.to_string(),
                problem: format!(
                    "last run by {made_by} {}.x, but the configured program is {major}.x: its \
                     session is left unchecked and `continue` and `destroy` refuse it",
                    file.agent_major()
                ),
                remedy: format!("use {made_by} {}.x or newer", file.agent_major()),
                fixed: false,
            });
        }
        (made_by != self.settings.driver).then(|| Finding {
            subject: subject.to_string(),
            problem: format!(
                "made by the agent driver {made_by}, but {} is configured: its session is left \
                 unchecked and `continue` and `destroy` refuse it",
                self.settings.driver
            ),
            remedy: format!("set {}={made_by} to work on it", crate::config::KUGETSU_AGENT),
            fixed: false,
        })
    }

    /// Checks the agent's session `id`: that the agent knows it, that it would run it in `dir`
    /// (the directory kugetsu recorded for it, when there is one), and with `fix_permissions`
    /// its permission rules. Returns whether the agent knows it.
    fn check_agent_session(
        &self,
        subject: &str,
        id: &RecordedSessionId,
        dir: Option<&Path>,
        fix_permissions: bool,
        findings: &mut Vec<Finding>,
    ) -> bool {
        let Ok(sid) = id.valid() else {
            findings.push(Finding {
                subject: subject.into(),
                problem: format!("invalid session id {:?}", id.as_str()),
                remedy: "destroy and recreate it".into(),
                fixed: false,
            });
            return false;
        };
        match self.agent.session_info(sid) {
            Ok(Some(info)) => {
                // Runs start a session in the directory kugetsu recorded for it; the agent runs
                // it in its own, and hangs silently where the two differ. Only a hand-made
                // change moves a session, so runs do not look: this is where it is caught.
                if let Some(dir) = dir
                    && !info.directory.as_os_str().is_empty()
                    && !same_dir(&info.directory, dir)
                {
                    findings.push(Finding {
                        subject: subject.into(),
                        problem: format!(
                            "session {sid} lives in {}, not in {}, where kugetsu runs it: the agent would hang",
                            info.directory.display(),
                            dir.display()
                        ),
                        remedy: "destroy and recreate it (`kugetsu destroy`, then `init` or `start`)"
                            .into(),
                        fixed: false,
                    });
                }
                if fix_permissions {
                    match self.agent.repair_session(sid) {
                        Ok(Some(repair)) => findings.push(Finding {
                            subject: subject.into(),
                            problem: format!("session {sid} {}", repair.problem),
                            remedy: repair.done,
                            fixed: true,
                        }),
                        Ok(None) => {}
                        Err(e) => findings.push(Finding {
                            subject: subject.into(),
                            problem: format!("cannot check session {sid}: {e}"),
                            remedy: "check the agent program's installation".into(),
                            fixed: false,
                        }),
                    }
                }
                true
            }
            Ok(None) => {
                findings.push(Finding {
                    subject: subject.into(),
                    problem: format!("the agent has no session {sid}"),
                    remedy: "destroy and recreate it (`kugetsu destroy`, then `init` or `start`)"
                        .into(),
                    fixed: false,
                });
                false
            }
            Err(e) => {
                findings.push(Finding {
                    subject: subject.into(),
                    problem: format!("cannot ask the agent about {sid}: {e}"),
                    remedy: "check the agent program and its settings (`KUGETSU_AGENT` names the driver)".into(),
                    fixed: false,
                });
                false
            }
        }
    }

    /// Prepares forks of the base session `id` anew (a driver may export it again), so
    /// that a base changed inside the agent since `init` reaches the issues started after.
    fn refresh_fork_source(&self, base: &SessionId, findings: &mut Vec<Finding>) {
        let prepared =
            self.env.agent_env(DEFAULT_AGENT).map_err(|e| e.to_string()).and_then(|env| {
                self.agent.prepare_fork(base, &env, true).map_err(|e| e.to_string())
            });
        if let Err(e) = prepared {
            findings.push(Finding {
                subject: "base session".into(),
                problem: format!("cannot prepare forks of {base}: {e}"),
                remedy:
                    "check the agent program and its settings (`KUGETSU_AGENT` names the driver)"
                        .into(),
                fixed: false,
            });
        }
    }
}

/// Whether two paths name the same directory (links resolved where they exist).
fn same_dir(a: &Path, b: &Path) -> bool {
    let resolve = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_owned());
    resolve(a) == resolve(b)
}
