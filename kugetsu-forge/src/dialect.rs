//! Where each forge keeps its issues and what they look like, as its public REST docs say:
//! GitHub `GET /repos/{o}/{r}/issues` (pull requests included, marked by `pull_request`),
//! GitLab `GET /projects/{url-encoded path}/issues` (`iid`, `description`, `state: opened`,
//! labels as strings), Gitea `GET /repos/{o}/{r}/issues?type=issues`.

use kugetsu_core::forge::{ForgeKind, Issue};
use serde_json::Value;

use crate::http::encode;

/// Issues per page asked for (the most GitHub and GitLab give; Gitea caps it itself).
const PER_PAGE: u32 = 100;

fn owner_repo(repo: &str) -> String {
    repo.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// The first page's URL of the open issues of `repo` with `label`, and its description.
pub fn list_url(kind: ForgeKind, api: &str, repo: &str, label: &str) -> (String, String) {
    let label = encode(label);
    match kind {
        ForgeKind::Github => (
            format!(
                "{api}/repos/{}/issues?labels={label}&state=open&per_page={PER_PAGE}",
                owner_repo(repo)
            ),
            format!("GET /repos/{repo}/issues"),
        ),
        ForgeKind::Gitlab => (
            format!(
                "{api}/projects/{}/issues?labels={label}&state=opened&per_page={PER_PAGE}",
                encode(repo)
            ),
            format!("GET /projects/{}/issues", encode(repo)),
        ),
        ForgeKind::Gitea => (
            format!(
                "{api}/repos/{}/issues?labels={label}&state=open&type=issues&limit={PER_PAGE}",
                owner_repo(repo)
            ),
            format!("GET /repos/{repo}/issues"),
        ),
    }
}

/// The URL of issue `number` of `repo`, and its description.
pub fn issue_url(kind: ForgeKind, api: &str, repo: &str, number: u64) -> (String, String) {
    match kind {
        ForgeKind::Github | ForgeKind::Gitea => (
            format!("{api}/repos/{}/issues/{number}", owner_repo(repo)),
            format!("GET /repos/{repo}/issues/{number}"),
        ),
        ForgeKind::Gitlab => (
            format!("{api}/projects/{}/issues/{number}", encode(repo)),
            format!("GET /projects/{}/issues/{number}", encode(repo)),
        ),
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// One issue from its JSON; `None` for a pull request (GitHub and Gitea list them as issues).
pub fn parse_issue(kind: ForgeKind, v: &Value) -> Result<Option<Issue>, String> {
    if v.get("pull_request").is_some_and(|p| !p.is_null()) {
        return Ok(None);
    }
    let (number_key, body_key, open_state) = match kind {
        ForgeKind::Gitlab => ("iid", "description", "opened"),
        ForgeKind::Github | ForgeKind::Gitea => ("number", "body", "open"),
    };
    let number = v
        .get(number_key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("an issue without a numeric {number_key:?}"))?;
    let labels = v
        .get("labels")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .filter_map(|l| l.as_str().or_else(|| l.get("name").and_then(Value::as_str)))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(Issue {
        number,
        title: text(v, "title"),
        body: text(v, body_key),
        open: text(v, "state") == open_state,
        labels,
    }))
}

/// The issues of one listing page (pull requests left out).
pub fn parse_issues(kind: ForgeKind, body: &str) -> Result<Vec<Issue>, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let list = value.as_array().ok_or("a listing that is not a JSON array")?;
    let mut issues = Vec::new();
    for v in list {
        issues.extend(parse_issue(kind, v)?);
    }
    Ok(issues)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_each_forges_docs() {
        let (url, _) = list_url(ForgeKind::Gitlab, "https://gitlab.com/api/v4", "g/sub/p", "a b");
        assert_eq!(
            url,
            "https://gitlab.com/api/v4/projects/g%2Fsub%2Fp/issues?labels=a%20b&state=opened&per_page=100"
        );
        let (url, _) = list_url(ForgeKind::Gitea, "http://127.0.0.1:3000/api/v1", "o/r", "k");
        assert!(url.ends_with("/repos/o/r/issues?labels=k&state=open&type=issues&limit=100"));
    }

    #[test]
    fn pull_requests_are_skipped_and_shapes_read() {
        let gh = r#"[{"number":1,"title":"t","body":null,"state":"open","labels":[{"name":"kugetsu"}]},
                     {"number":2,"title":"pr","state":"open","labels":[],"pull_request":{"url":"x"}}]"#;
        let issues = parse_issues(ForgeKind::Github, gh).unwrap();
        assert_eq!(issues.len(), 1);
        assert_eq!((issues[0].body.as_str(), issues[0].open), ("", true));
        let gl = r#"[{"id":99,"iid":3,"title":"t","description":"d","state":"opened","labels":["kugetsu"]}]"#;
        let issues = parse_issues(ForgeKind::Gitlab, gl).unwrap();
        assert_eq!((issues[0].number, issues[0].labels[0].as_str()), (3, "kugetsu"));
        assert!(parse_issues(ForgeKind::Gitea, r#"{"message":"no"}"#).is_err());
        assert!(parse_issues(ForgeKind::Gitea, r#"[{"title":"x"}]"#).is_err());
    }
}
