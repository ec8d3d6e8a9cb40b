//! The writes of reporting back, as each forge's REST docs place them: the one comment kugetsu
//! keeps on an issue (GitHub and Gitea `issues/{n}/comments`, GitLab `issues/{iid}/notes`),
//! the labels (GitHub by name, GitLab `add_labels`/`remove_labels`, Gitea by the
//! repository's label ids, made when missing), and the draft pull request of a branch (GitHub
//! `draft: true`, GitLab and Gitea a `Draft:`/`WIP:` title).
//!
//! Each write first reads what is there and writes only what differs, so a write repeated
//! after a crash (done but not recorded) changes nothing: a comment is found by its marker
//! line, a pull request by its head branch, labels are compared by name.

use kugetsu_core::forge::{CommentRef, ForgeError, ForgeKind, PullRef};
use serde_json::{Value, json};

use crate::MAX_PAGES;
use crate::http::{Http, encode};

/// The color a label kugetsu makes on Gitea gets (Gitea requires one).
const LABEL_COLOR: &str = "#ededed";

/// The client's view for writes: the HTTP side and the dialect.
pub(crate) struct Writer<'a> {
    pub http: &'a Http,
    pub kind: ForgeKind,
}

fn ok(status: u16) -> bool {
    (200..300).contains(&status)
}

impl Writer<'_> {
    fn api(&self) -> String {
        self.http.api.clone()
    }

    /// The repository's base URL: `/repos/o/r`, or GitLab's `/projects/<url-encoded path>`.
    pub(crate) fn base(&self, repo: &str) -> String {
        match self.kind {
            ForgeKind::Gitlab => format!("{}/projects/{}", self.http.api, encode(repo)),
            _ => {
                let path: Vec<String> = repo.split('/').map(encode).collect();
                format!("{}/repos/{}", self.http.api, path.join("/"))
            }
        }
    }

    fn what(&self, method: &str, url: &str) -> String {
        let path = url.strip_prefix(&self.http.api).unwrap_or(url);
        format!("{method} {}", path.split('?').next().unwrap_or(path))
    }

    fn status(&self, method: &str, url: &str, status: u16) -> ForgeError {
        ForgeError::Status { api: self.api(), what: self.what(method, url), status }
    }

    pub(crate) fn bad(&self, method: &str, url: &str, message: impl Into<String>) -> ForgeError {
        ForgeError::BadAnswer {
            api: self.api(),
            what: self.what(method, url),
            message: message.into(),
        }
    }

    fn json(&self, method: &str, url: &str, body: &str) -> Result<Value, ForgeError> {
        serde_json::from_str(body).map_err(|e| self.bad(method, url, e.to_string()))
    }

    /// Every element of a paginated listing.
    pub(crate) fn get_all(&self, first: &str) -> Result<Vec<Value>, ForgeError> {
        let mut url = first.to_string();
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let answer = self.http.read(&url)?;
            if !ok(answer.status) {
                return Err(self.status("GET", first, answer.status));
            }
            match self.json("GET", first, &answer.body)? {
                Value::Array(items) => out.extend(items),
                _ => return Err(self.bad("GET", first, "a listing that is not a JSON array")),
            }
            match answer.next {
                Some(next) if self.http.owns(&next) => url = next,
                Some(_) => return Err(self.bad("GET", first, "a next page outside the API")),
                None => return Ok(out),
            }
        }
        Err(self.bad("GET", first, format!("more than {MAX_PAGES} pages")))
    }

    pub(crate) fn get_one(&self, url: &str) -> Result<Value, ForgeError> {
        let answer = self.http.read(url)?;
        if !ok(answer.status) {
            return Err(self.status("GET", url, answer.status));
        }
        self.json("GET", url, &answer.body)
    }

    /// Sends a write; returns the answer's JSON (`null` when empty).
    fn send(&self, method: &str, url: &str, body: Option<&Value>) -> Result<Value, ForgeError> {
        let answer = self.http.write(method, url, body)?;
        if !ok(answer.status) {
            return Err(self.status(method, url, answer.status));
        }
        if answer.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        self.json(method, url, &answer.body)
    }

    fn id_of(&self, v: &Value, key: &str, method: &str, url: &str) -> Result<u64, ForgeError> {
        v.get(key).and_then(Value::as_u64).ok_or_else(|| self.bad(method, url, format!("no {key}")))
    }

    /// See [`kugetsu_core::forge::Forge::upsert_comment`]. `body` is sent with `marker` as its
    /// last line when it does not hold it already.
    pub fn upsert_comment(
        &self,
        repo: &str,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentRef, ForgeError> {
        let body =
            if body.contains(marker) { body.to_string() } else { format!("{body}\n\n{marker}") };
        let base = self.base(repo);
        let list = match self.kind {
            ForgeKind::Github => format!("{base}/issues/{number}/comments?per_page=100"),
            ForgeKind::Gitlab => format!("{base}/issues/{number}/notes?per_page=100&sort=asc"),
            ForgeKind::Gitea => format!("{base}/issues/{number}/comments"),
        };
        let found = self
            .get_all(&list)?
            .into_iter()
            .find(|c| c.get("body").and_then(Value::as_str).is_some_and(|b| b.contains(marker)));
        if let Some(c) = found {
            let id = self.id_of(&c, "id", "GET", &list)?;
            if c.get("body").and_then(Value::as_str) != Some(body.as_str()) {
                let (method, url) = match self.kind {
                    ForgeKind::Gitlab => ("PUT", format!("{base}/issues/{number}/notes/{id}")),
                    _ => ("PATCH", format!("{base}/issues/comments/{id}")),
                };
                self.send(method, &url, Some(&json!({ "body": body })))?;
            }
            return Ok(CommentRef { id });
        }
        let url = list.split('?').next().unwrap_or(&list).to_string();
        let made = self.send("POST", &url, Some(&json!({ "body": body })))?;
        Ok(CommentRef { id: self.id_of(&made, "id", "POST", &url)? })
    }

    /// See [`kugetsu_core::forge::Forge::set_labels`]; `current` are the labels now.
    pub fn set_labels(
        &self,
        repo: &str,
        number: u64,
        current: &[String],
        add: &[String],
        remove: &[String],
    ) -> Result<(), ForgeError> {
        let has = |l: &String| current.iter().any(|c| c.eq_ignore_ascii_case(l));
        let add: Vec<&String> = add.iter().filter(|l| !has(l)).collect();
        let remove: Vec<&String> = remove.iter().filter(|l| has(l)).collect();
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let base = self.base(repo);
        match self.kind {
            ForgeKind::Github => {
                if !add.is_empty() {
                    let url = format!("{base}/issues/{number}/labels");
                    self.send("POST", &url, Some(&json!({ "labels": add })))?;
                }
                for label in remove {
                    let url = format!("{base}/issues/{number}/labels/{}", encode(label));
                    self.delete_tolerating_404(&url)?;
                }
            }
            ForgeKind::Gitlab => {
                let join =
                    |ls: &[&String]| ls.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(",");
                let url = format!("{base}/issues/{number}");
                let body = json!({ "add_labels": join(&add), "remove_labels": join(&remove) });
                self.send("PUT", &url, Some(&body))?;
            }
            ForgeKind::Gitea => {
                let known = self.get_all(&format!("{base}/labels?limit=50"))?;
                let id_of = |name: &str| {
                    known.iter().find_map(|l| {
                        let same = l.get("name").and_then(Value::as_str)? == name;
                        same.then(|| l.get("id").and_then(Value::as_u64)).flatten()
                    })
                };
                let mut ids = Vec::new();
                for label in &add {
                    let id = match id_of(label) {
                        Some(id) => id,
                        None => {
                            let url = format!("{base}/labels");
                            let body = json!({ "name": label, "color": LABEL_COLOR });
                            let made = self.send("POST", &url, Some(&body))?;
                            self.id_of(&made, "id", "POST", &url)?
                        }
                    };
                    ids.push(id);
                }
                if !ids.is_empty() {
                    let url = format!("{base}/issues/{number}/labels");
                    self.send("POST", &url, Some(&json!({ "labels": ids })))?;
                }
                for label in remove {
                    if let Some(id) = id_of(label) {
                        self.delete_tolerating_404(&format!("{base}/issues/{number}/labels/{id}"))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A DELETE whose 404 means it is gone already.
    fn delete_tolerating_404(&self, url: &str) -> Result<(), ForgeError> {
        let answer = self.http.write("DELETE", url, None)?;
        if ok(answer.status) || answer.status == 404 {
            Ok(())
        } else {
            Err(self.status("DELETE", url, answer.status))
        }
    }

    fn default_branch(&self, repo: &str) -> Result<String, ForgeError> {
        let url = self.base(repo);
        let v = self.get_one(&url)?;
        v.get("default_branch")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.bad("GET", &url, "no default_branch"))
    }

    /// See [`kugetsu_core::forge::Forge::ensure_draft_pull`]; an open one gets `body` again.
    pub fn ensure_draft_pull(
        &self,
        repo: &str,
        branch: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRef, ForgeError> {
        let base = self.base(repo);
        let (list, number_key, url_key) = match self.kind {
            ForgeKind::Github => {
                let owner = repo.split('/').next().unwrap_or(repo);
                let head = encode(&format!("{owner}:{branch}"));
                (format!("{base}/pulls?state=open&head={head}&per_page=100"), "number", "html_url")
            }
            ForgeKind::Gitlab => (
                format!("{base}/merge_requests?state=opened&source_branch={}", encode(branch)),
                "iid",
                "web_url",
            ),
            ForgeKind::Gitea => (format!("{base}/pulls?state=open&limit=50"), "number", "html_url"),
        };
        let head_of = |p: &Value| match self.kind {
            ForgeKind::Gitlab => p.get("source_branch").and_then(Value::as_str).map(str::to_string),
            _ => p.pointer("/head/ref").and_then(Value::as_str).map(str::to_string),
        };
        let found =
            self.get_all(&list)?.into_iter().find(|p| head_of(p).as_deref() == Some(branch));
        let pull = |v: &Value, method: &str, url: &str| -> Result<PullRef, ForgeError> {
            Ok(PullRef {
                number: self.id_of(v, number_key, method, url)?,
                url: v.get(url_key).and_then(Value::as_str).unwrap_or_default().to_string(),
            })
        };
        let (body_key, path) = match self.kind {
            ForgeKind::Gitlab => ("description", "merge_requests"),
            _ => ("body", "pulls"),
        };
        if let Some(p) = found {
            let found = pull(&p, "GET", &list)?;
            if p.get(body_key).and_then(Value::as_str) != Some(body) {
                let method = if self.kind == ForgeKind::Gitlab { "PUT" } else { "PATCH" };
                let url = format!("{base}/{path}/{}", found.number);
                self.send(method, &url, Some(&json!({ body_key: body })))?;
            }
            return Ok(found);
        }
        let target = self.default_branch(repo)?;
        let url = format!("{base}/{path}");
        let made = match self.kind {
            ForgeKind::Github => json!({
                "title": title, "head": branch, "base": target, "body": body, "draft": true,
            }),
            ForgeKind::Gitlab => json!({
                "source_branch": branch, "target_branch": target,
                "title": format!("Draft: {title}"), "description": body,
            }),
            ForgeKind::Gitea => json!({
                "head": branch, "base": target, "title": format!("WIP: {title}"), "body": body,
            }),
        };
        let made = self.send("POST", &url, Some(&made))?;
        pull(&made, "POST", &url)
    }
}
