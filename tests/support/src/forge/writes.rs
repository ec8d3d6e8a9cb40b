//! The stand-in's endpoints for reporting back, per dialect as the forges document them:
//! the repository (`default_branch`), an issue's comments (GitLab: notes) listed, posted and
//! edited, its labels added and removed (GitHub by name, GitLab through `add_labels` and
//! `remove_labels` on the issue, Gitea by the ids of the repository's labels), and pull
//! requests (GitLab: merge requests) listed by head branch, opened and edited; for the loop, a
//! commit's checks (GitHub check runs and combined status, Gitea combined status, GitLab
//! pipelines with their failed jobs and traces) and reviews requesting changes, as the test
//! sets them. Listings send an `ETag`; every answer carries the rate-limit headers.

use serde_json::{Value, json};

use super::{Dialect, StandInForge, State, query_param};

type Answer = (u16, Vec<(String, String)>, String);

/// A comment on an issue.
#[derive(Debug, Clone)]
pub(super) struct Comment {
    id: u64,
    issue: u64,
    body: String,
}

/// A pull (merge) request of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandInPull {
    /// Its number (GitLab: iid).
    pub number: u64,
    /// The head (source) branch.
    pub head: String,
    /// The base (target) branch.
    pub base: String,
    /// Title as sent.
    pub title: String,
    /// Body (GitLab: description).
    pub body: String,
    /// Opened as a draft (GitHub's `draft`; GitLab's `Draft:` and Gitea's `WIP:` titles).
    pub draft: bool,
    /// The commit its head is at (set by the test: the stand-in knows no git).
    pub sha: String,
    /// Merged (then not open).
    pub merged: bool,
}

/// A check of a commit: a check run on GitHub, a commit status on Gitea, a pipeline with one
/// job on GitLab.
#[derive(Debug, Clone)]
pub(super) struct Check {
    sha: String,
    name: String,
    passed: bool,
    text: String,
}

/// A review requesting changes.
#[derive(Debug, Clone)]
pub(super) struct Rev {
    pull: u64,
    id: u64,
    author: String,
    body: String,
}

fn not_found() -> Answer {
    (404, vec![], "{\"message\":\"Not Found\"}".into())
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

impl StandInForge {
    /// The bodies of the comments on issue `number`, oldest first.
    pub fn comments(&self, number: u64) -> Vec<String> {
        let s = self.state.lock().expect("stand-in state");
        s.comments.iter().filter(|c| c.issue == number).map(|c| c.body.clone()).collect()
    }

    /// The labels of issue `number`.
    pub fn labels(&self, number: u64) -> Vec<String> {
        let s = self.state.lock().expect("stand-in state");
        s.issues.iter().find(|i| i.number == number).map(|i| i.labels.clone()).unwrap_or_default()
    }

    /// The pull (merge) requests opened.
    pub fn pulls(&self) -> Vec<StandInPull> {
        self.state.lock().expect("stand-in state").pulls.clone()
    }

    /// Puts the head of pull request `number` at commit `sha`.
    pub fn set_head(&self, number: u64, sha: &str) {
        let mut s = self.state.lock().expect("stand-in state");
        s.pulls.iter_mut().filter(|p| p.number == number).for_each(|p| p.sha = sha.to_string());
    }

    /// Merges pull request `number`.
    pub fn merge(&self, number: u64) {
        let mut s = self.state.lock().expect("stand-in state");
        s.pulls.iter_mut().filter(|p| p.number == number).for_each(|p| p.merged = true);
    }

    /// Adds a finished check of commit `sha` that `passed` or failed saying `text`.
    pub fn add_check(&self, sha: &str, name: &str, passed: bool, text: &str) {
        let mut s = self.state.lock().expect("stand-in state");
        s.checks.push(Check { sha: sha.into(), name: name.into(), passed, text: text.into() });
    }

    /// Adds a review of pull request `pull` by `author` that requests changes.
    pub fn request_changes(&self, pull: u64, author: &str, body: &str) {
        let mut s = self.state.lock().expect("stand-in state");
        // Two ids a review: GitLab's stand-in gives each a system note too.
        s.next_id += 2;
        let id = 7000 + s.next_id;
        s.reviews.push(Rev { pull, id, author: author.into(), body: body.into() });
    }

    fn checks_answer(&self, s: &State, what: &str, sha: &str) -> Answer {
        let checks: Vec<&Check> = s.checks.iter().filter(|c| c.sha == sha).collect();
        let word = |c: &Check| if c.passed { "success" } else { "failure" };
        let body = match (self.dialect, what) {
            (Dialect::Github, "check-runs") => {
                let runs: Vec<Value> = checks
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        json!({"id": i + 1, "name": c.name, "status": "completed",
                               "conclusion": word(c),
                               "output": {"title": format!("{} {}", c.name, word(c)),
                                          "summary": "", "text": c.text}})
                    })
                    .collect();
                json!({"total_count": runs.len(), "check_runs": runs})
            }
            (Dialect::Github, "status") => json!({"state": "pending", "statuses": []}),
            (Dialect::Gitea, "status") => {
                let statuses: Vec<Value> = checks
                    .iter()
                    .map(|c| {
                        json!({"context": c.name, "status": word(c), "description": c.text,
                                    "target_url": ""})
                    })
                    .collect();
                let all = if checks.iter().all(|c| c.passed) { "success" } else { "failure" };
                json!({"state": all, "statuses": statuses})
            }
            _ => return not_found(),
        };
        (200, self.quota(s), body.to_string())
    }

    fn comment_json(&self, c: &Comment) -> Value {
        json!({ "id": c.id, "body": c.body, "user": { "login": "kugetsu" } })
    }

    fn pull_json(&self, p: &StandInPull) -> Value {
        let web = format!("{}/o/r/pull/{}", self.base_url(), p.number);
        match self.dialect {
            Dialect::Gitlab => json!({
                "id": 9000 + p.number, "iid": p.number, "source_branch": p.head,
                "target_branch": p.base, "title": p.title, "description": p.body,
                "draft": p.draft, "state": if p.merged { "merged" } else { "opened" },
                "web_url": web, "sha": p.sha,
            }),
            _ => json!({
                "id": 9000 + p.number, "number": p.number,
                "head": { "ref": p.head, "sha": p.sha }, "base": { "ref": p.base },
                "title": p.title, "body": p.body, "draft": p.draft,
                "state": if p.merged { "closed" } else { "open" }, "merged": p.merged,
                "html_url": web,
            }),
        }
    }

    fn listing(&self, s: &State, items: Vec<Value>) -> Answer {
        let body = Value::Array(items).to_string();
        let mut headers = self.quota(s);
        headers.push(("ETag".into(), format!("W/\"{:x}\"", fnv(&body))));
        (200, headers, body)
    }

    /// Answers every request but the issue listing and an issue's GET.
    pub(super) fn answer_more(&self, method: &str, target: &str, body: &[u8]) -> Answer {
        let mut s = self.state.lock().expect("stand-in state");
        if let Some(after) = s.retry_after_once.take() {
            return (403, vec![("Retry-After".into(), after.to_string())], "{}".into());
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let Some(rest) = path.strip_prefix(self.prefix()) else { return not_found() };
        let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        s.remaining = s.remaining.saturating_sub(1);
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        let number = |i: usize| parts.get(i).and_then(|p| p.parse::<u64>().ok());
        let gitlab = self.dialect == Dialect::Gitlab;
        match (method, parts.as_slice()) {
            ("GET", []) => {
                (200, self.quota(&s), json!({ "id": 1, "default_branch": "main" }).to_string())
            }
            ("GET", ["issues", _, kind]) if *kind == if gitlab { "notes" } else { "comments" } => {
                let n = number(1).unwrap_or(0);
                let items: Vec<Value> = s
                    .comments
                    .iter()
                    .filter(|c| c.issue == n)
                    .map(|c| self.comment_json(c))
                    .collect();
                self.listing(&s, items)
            }
            ("POST", ["issues", _, kind]) if *kind == if gitlab { "notes" } else { "comments" } => {
                let issue = number(1).unwrap_or(0);
                if !s.issues.iter().any(|i| i.number == issue) {
                    return not_found();
                }
                s.next_id += 1;
                let c = Comment { id: 5000 + s.next_id, issue, body: text(&sent, "body") };
                s.comments.push(c.clone());
                (201, self.quota(&s), self.comment_json(&c).to_string())
            }
            ("PATCH", ["issues", "comments", _]) if !gitlab => {
                self.edit_comment(&mut s, number(2), &sent)
            }
            ("PUT", ["issues", _, "notes", _]) if gitlab => {
                self.edit_comment(&mut s, number(3), &sent)
            }
            ("PUT", ["issues", _]) if gitlab => {
                let n = number(1).unwrap_or(0);
                let split = |key: &str| -> Vec<String> {
                    text(&sent, key)
                        .split(',')
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect()
                };
                let (add, remove) = (split("add_labels"), split("remove_labels"));
                self.relabel(&mut s, n, &add, &remove)
            }
            ("POST", ["issues", _, "labels"]) if !gitlab => {
                let n = number(1).unwrap_or(0);
                let given =
                    sent.get("labels").and_then(Value::as_array).cloned().unwrap_or_default();
                let mut names = Vec::new();
                for l in given {
                    match (self.dialect, l) {
                        (Dialect::Github, Value::String(name)) => names.push(name),
                        (Dialect::Gitea, Value::Number(id)) => {
                            let id = id.as_u64().unwrap_or(0);
                            match s.repo_labels.iter().find(|(i, _)| *i == id) {
                                Some((_, name)) => names.push(name.clone()),
                                None => return (422, self.quota(&s), "{}".into()),
                            }
                        }
                        _ => return (422, self.quota(&s), "{}".into()),
                    }
                }
                self.relabel(&mut s, n, &names, &[])
            }
            ("DELETE", ["issues", _, "labels", which]) if !gitlab => {
                let n = number(1).unwrap_or(0);
                let name = match self.dialect {
                    Dialect::Gitea => which
                        .parse::<u64>()
                        .ok()
                        .and_then(|id| s.repo_labels.iter().find(|(i, _)| *i == id))
                        .map(|(_, name)| name.clone()),
                    _ => Some(super::decode(which)),
                };
                let has = |s: &State, name: &str| {
                    s.issues.iter().any(|i| i.number == n && i.labels.iter().any(|l| l == name))
                };
                match name {
                    Some(name) if has(&s, &name) => self.relabel(&mut s, n, &[], &[name]),
                    _ => not_found(),
                }
            }
            ("GET", ["labels"]) if self.dialect == Dialect::Gitea => {
                let items = s
                    .repo_labels
                    .iter()
                    .map(|(id, name)| json!({"id": id, "name": name}))
                    .collect();
                self.listing(&s, items)
            }
            ("POST", ["labels"]) if self.dialect == Dialect::Gitea => {
                s.next_id += 1;
                let id = s.next_id;
                let name = text(&sent, "name");
                s.repo_labels.push((id, name.clone()));
                (201, self.quota(&s), json!({"id": id, "name": name}).to_string())
            }
            ("GET", [kind]) if *kind == if gitlab { "merge_requests" } else { "pulls" } => {
                let head = match self.dialect {
                    Dialect::Github => query_param(query, "head")
                        .map(super::decode)
                        .map(|h| h.split_once(':').map_or(h.clone(), |(_, b)| b.to_string())),
                    Dialect::Gitlab => query_param(query, "source_branch").map(super::decode),
                    Dialect::Gitea => None,
                };
                let open_only = matches!(query_param(query, "state"), Some("open" | "opened"));
                let items = s
                    .pulls
                    .iter()
                    .filter(|p| head.as_ref().is_none_or(|h| &p.head == h))
                    .filter(|p| !(open_only && p.merged))
                    .map(|p| self.pull_json(p))
                    .collect();
                self.listing(&s, items)
            }
            ("POST", [kind]) if *kind == if gitlab { "merge_requests" } else { "pulls" } => {
                let (head, base, body) = match self.dialect {
                    Dialect::Gitlab => ("source_branch", "target_branch", "description"),
                    _ => ("head", "base", "body"),
                };
                let title = text(&sent, "title");
                let draft = match self.dialect {
                    Dialect::Github => sent.get("draft").and_then(Value::as_bool) == Some(true),
                    Dialect::Gitlab => title.starts_with("Draft:"),
                    Dialect::Gitea => title.starts_with("WIP:"),
                };
                let (head, base) = (text(&sent, head), text(&sent, base));
                if s.pulls.iter().any(|p| p.head == head) || head.is_empty() || base.is_empty() {
                    return (422, self.quota(&s), "{\"message\":\"Validation Failed\"}".into());
                }
                let number = 100 + s.pulls.len() as u64 + 1;
                let body = text(&sent, body);
                let (sha, merged) = (String::new(), false);
                let pull = StandInPull { number, head, base, title, body, draft, sha, merged };
                s.pulls.push(pull.clone());
                (201, self.quota(&s), self.pull_json(&pull).to_string())
            }
            ("PATCH" | "PUT", [kind, _])
                if *kind == if gitlab { "merge_requests" } else { "pulls" }
                    && (method == "PUT") == gitlab =>
            {
                let key = if gitlab { "description" } else { "body" };
                let n = number(1).unwrap_or(0);
                match s.pulls.iter_mut().find(|p| p.number == n) {
                    Some(p) => {
                        p.body = text(&sent, key);
                        let p = p.clone();
                        (200, self.quota(&s), self.pull_json(&p).to_string())
                    }
                    None => not_found(),
                }
            }
            ("GET", ["commits", sha, what]) if !gitlab => self.checks_answer(&s, what, sha),
            ("GET", ["pulls", _, "reviews"]) if !gitlab => {
                let n = number(1).unwrap_or(0);
                let state = if self.dialect == Dialect::Github {
                    "CHANGES_REQUESTED"
                } else {
                    "REQUEST_CHANGES"
                };
                let items = s
                    .reviews
                    .iter()
                    .filter(|r| r.pull == n)
                    .map(|r| {
                        json!({"id": r.id, "state": state, "body": r.body,
                                    "user": {"login": r.author}})
                    })
                    .collect();
                self.listing(&s, items)
            }
            ("GET", ["merge_requests", _, "reviewers"]) if gitlab => {
                let n = number(1).unwrap_or(0);
                let mut asked: Vec<&str> = Vec::new();
                for r in s.reviews.iter().filter(|r| r.pull == n) {
                    if !asked.contains(&r.author.as_str()) {
                        asked.push(&r.author);
                    }
                }
                let items = asked
                    .iter()
                    .enumerate()
                    .map(|(i, who)| {
                        json!({"user": {"id": i + 1, "username": who}, "state": "requested_changes"})
                    })
                    .collect();
                self.listing(&s, items)
            }
            ("GET", ["merge_requests", _, "notes"]) if gitlab => {
                let n = number(1).unwrap_or(0);
                // Newest first, as asked; a system note between them, as GitLab writes one for
                // each state change.
                let mut items: Vec<Value> = s
                    .reviews
                    .iter()
                    .filter(|r| r.pull == n)
                    .flat_map(|r| {
                        [
                            json!({"id": r.id, "body": r.body, "system": false,
                                   "author": {"username": r.author}}),
                            json!({"id": r.id + 1, "body": "requested changes", "system": true,
                                   "author": {"username": r.author}}),
                        ]
                    })
                    .collect();
                items.reverse();
                self.listing(&s, items)
            }
            ("GET", ["pipelines"]) if gitlab => {
                let sha = query_param(query, "sha").unwrap_or_default();
                let checks: Vec<&Check> = s.checks.iter().filter(|c| c.sha == sha).collect();
                let items = if checks.is_empty() {
                    vec![]
                } else {
                    let failed = checks.iter().any(|c| !c.passed);
                    let id = s.checks.iter().position(|c| c.sha == sha).unwrap_or(0) + 1;
                    vec![
                        json!({"id": id, "sha": sha, "status": if failed { "failed" } else { "success" }}),
                    ]
                };
                self.listing(&s, items)
            }
            ("GET", ["pipelines", id, "jobs"]) if gitlab => {
                let first = id.parse::<usize>().unwrap_or(0).saturating_sub(1);
                let sha = s.checks.get(first).map(|c| c.sha.clone()).unwrap_or_default();
                let items = s
                    .checks
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.sha == sha && !c.passed)
                    .map(|(i, c)| json!({"id": i + 1, "name": c.name, "status": "failed"}))
                    .collect();
                self.listing(&s, items)
            }
            ("GET", ["jobs", id, "trace"]) if gitlab => {
                let i = id.parse::<usize>().unwrap_or(0).saturating_sub(1);
                match s.checks.get(i) {
                    Some(c) => (200, self.quota(&s), c.text.clone()),
                    None => not_found(),
                }
            }
            _ => not_found(),
        }
    }

    fn edit_comment(&self, s: &mut State, id: Option<u64>, sent: &Value) -> Answer {
        match s.comments.iter_mut().find(|c| Some(c.id) == id) {
            Some(c) => {
                c.body = text(sent, "body");
                let c = c.clone();
                (200, self.quota(s), self.comment_json(&c).to_string())
            }
            None => not_found(),
        }
    }

    fn relabel(&self, s: &mut State, n: u64, add: &[String], remove: &[String]) -> Answer {
        let Some(issue) = s.issues.iter_mut().find(|i| i.number == n) else { return not_found() };
        for l in add {
            if !issue.labels.contains(l) {
                issue.labels.push(l.clone());
            }
        }
        issue.labels.retain(|l| !remove.contains(l));
        let labels: Vec<Value> = issue.labels.iter().map(|l| json!({"name": l})).collect();
        // The issue listing's ETag changes with its labels.
        s.version += 1;
        (200, self.quota(s), Value::Array(labels).to_string())
    }
}

/// A short hash for an `ETag`.
pub(super) fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}
