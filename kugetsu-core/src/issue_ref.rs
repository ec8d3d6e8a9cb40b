//! Issue references: `instance/owner/repo#id`, issue URLs and short `#14`, and the names they
//! give to state files, worktrees and branches.
//!
//! A ref is hostile input: it becomes a file name, a directory under `worktrees/` and a git
//! branch. So parsing is strict (ASCII only, no empty, `.` or `..` segment, bounded length) and
//! every rejection names the offending part. The file-name form is the spec's
//! (`github.com-shoko-kugetsu-14`) whenever that is unambiguous, and otherwise gets a hash suffix
//! after a `+` (a character no ref segment may hold), which keeps the mapping injective.

use std::fmt;
use std::str::FromStr;

/// Longest ref accepted, in bytes, in its canonical `instance/path#id` form.
pub const MAX_REF_LEN: usize = 200;
/// Longest single segment (instance, owner, group, repo).
pub const MAX_SEGMENT_LEN: usize = 100;
/// Longest issue id.
pub const MAX_ID_LEN: usize = 64;
/// Longest plain file-name form before it is shortened and hashed.
const MAX_PLAIN_NAME_LEN: usize = 150;

/// A parsed issue reference.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IssueRef {
    instance: String,
    /// Owner, any subgroups, and the repository name, in order (at least two).
    path: Vec<String>,
    id: String,
}

/// A repository without an issue: `instance/owner/repo`, used as the default for short refs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoRef {
    instance: String,
    path: Vec<String>,
}

/// Why a ref was rejected; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueRefError {
    /// The text is empty.
    #[error("empty issue ref; expected instance/owner/repo#id, an issue URL, or #id")]
    Empty,
    /// No `#id` part.
    #[error("issue ref {input:?} has no '#<id>'; expected instance/owner/repo#id")]
    MissingId {
        /// The text as given.
        input: String,
    },
    /// Fewer than instance/owner/repo.
    #[error(
        "issue ref {input:?} needs instance/owner/repo before '#', e.g. github.com/owner/repo#14"
    )]
    MissingRepo {
        /// The text as given.
        input: String,
    },
    /// `#14` with no default repository configured.
    #[error("short issue ref {input:?} needs a default repository (set KUGETSU_DEFAULT_REPO)")]
    NoDefaultRepo {
        /// The text as given.
        input: String,
    },
    /// A segment is empty, `.`/`..`, too long, starts with a dot or holds a bad character.
    #[error("issue ref {input:?}: {what} {segment:?} {problem}")]
    BadSegment {
        /// The text as given.
        input: String,
        /// Which part: "instance", "owner or repository", "issue id".
        what: &'static str,
        /// The segment as given (control characters escaped by `Debug`).
        segment: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The whole ref is too long.
    #[error("issue ref is {len} bytes long; at most {MAX_REF_LEN} are allowed")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// A URL that is not an issue URL kugetsu understands.
    #[error(
        "URL {input:?} is not an issue URL (expected https://host/owner/repo/issues/N or .../-/issues/N)"
    )]
    BadUrl {
        /// The text as given.
        input: String,
    },
}

fn check_segment(
    input: &str,
    what: &'static str,
    seg: &str,
    max: usize,
) -> Result<(), IssueRefError> {
    let bad = |problem: String| IssueRefError::BadSegment {
        input: input.to_string(),
        what,
        segment: seg.to_string(),
        problem,
    };
    if seg.is_empty() {
        return Err(bad("is empty".into()));
    }
    if seg == "." || seg == ".." {
        return Err(bad("is not allowed".into()));
    }
    if seg.len() > max {
        return Err(bad(format!("is longer than {max} bytes")));
    }
    if let Some(c) =
        seg.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(bad(format!(
            "contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        )));
    }
    if seg.starts_with('.') {
        return Err(bad("starts with '.'".into()));
    }
    if seg.ends_with('.') {
        return Err(bad("ends with '.'".into()));
    }
    Ok(())
}

fn check_id(input: &str, id: &str) -> Result<(), IssueRefError> {
    check_segment(input, "issue id", id, MAX_ID_LEN)?;
    if id.contains('.') {
        return Err(IssueRefError::BadSegment {
            input: input.to_string(),
            what: "issue id",
            segment: id.to_string(),
            problem: "contains '.'; ids are letters, digits, '_' and '-'".into(),
        });
    }
    Ok(())
}

fn parse_repo(input: &str, repo: &str) -> Result<RepoRef, IssueRefError> {
    let mut parts = repo.split('/');
    let instance = parts.next().unwrap_or_default();
    check_segment(input, "instance", instance, MAX_SEGMENT_LEN)?;
    // No host name starts with '-', and refusing it keeps every file name derived from a ref
    // from looking like a command-line option.
    if instance.starts_with('-') {
        return Err(IssueRefError::BadSegment {
            input: input.to_string(),
            what: "instance",
            segment: instance.to_string(),
            problem: "starts with '-'".into(),
        });
    }
    let path: Vec<String> = parts.map(str::to_string).collect();
    if path.len() < 2 {
        return Err(IssueRefError::MissingRepo { input: input.to_string() });
    }
    for seg in &path {
        check_segment(input, "owner or repository", seg, MAX_SEGMENT_LEN)?;
    }
    Ok(RepoRef { instance: instance.to_ascii_lowercase(), path })
}

impl RepoRef {
    /// Parses `instance/owner/repo` (subgroups allowed).
    pub fn parse(input: &str) -> Result<Self, IssueRefError> {
        let trimmed = input.trim().trim_end_matches('/');
        let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
        if trimmed.is_empty() {
            return Err(IssueRefError::Empty);
        }
        parse_repo(input, trimmed)
    }
    /// The host, lowercased.
    pub fn instance(&self) -> &str {
        &self.instance
    }
    /// Owner, subgroups and repository name.
    pub fn path(&self) -> &[String] {
        &self.path
    }
    /// `owner/.../repo`.
    pub fn path_str(&self) -> String {
        self.path.join("/")
    }
    /// The ref for issue `id` of this repository.
    pub fn issue(&self, id: &str) -> Result<IssueRef, IssueRefError> {
        let input = format!("{self}#{id}");
        check_id(&input, id)?;
        let r =
            IssueRef { instance: self.instance.clone(), path: self.path.clone(), id: id.into() };
        r.check_len()?;
        Ok(r)
    }
    /// Filesystem-safe name of this repository's mirror (`github.com-owner-repo`, hashed when
    /// that would be ambiguous).
    pub fn mirror_key(&self) -> String {
        let segs: Vec<&str> = std::iter::once(self.instance.as_str())
            .chain(self.path.iter().map(String::as_str))
            .collect();
        safe_name(&segs, &self.to_string())
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.instance, self.path.join("/"))
    }
}

impl IssueRef {
    /// Parses a full ref or an issue URL. Short `#14` refs need [`IssueRef::parse_with_default`].
    pub fn parse(input: &str) -> Result<Self, IssueRefError> {
        Self::parse_with_default(input, None)
    }

    /// Parses a full ref, an issue URL, or a short `#id` resolved against `default_repo`.
    pub fn parse_with_default(
        input: &str,
        default_repo: Option<&RepoRef>,
    ) -> Result<Self, IssueRefError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(IssueRefError::Empty);
        }
        if text.len() > MAX_REF_LEN + 64 {
            return Err(IssueRefError::TooLong { len: text.len() });
        }
        if let Some(rest) = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")) {
            return Self::parse_url(input, rest);
        }
        if let Some(id) = text.strip_prefix('#') {
            let Some(repo) = default_repo else {
                return Err(IssueRefError::NoDefaultRepo { input: input.to_string() });
            };
            return repo.issue(id).map_err(|e| match e {
                IssueRefError::BadSegment { what, segment, problem, .. } => {
                    IssueRefError::BadSegment { input: input.to_string(), what, segment, problem }
                }
                other => other,
            });
        }
        let Some((repo, id)) = text.split_once('#') else {
            return Err(IssueRefError::MissingId { input: input.to_string() });
        };
        let repo = parse_repo(input, repo)?;
        check_id(input, id)?;
        let r = IssueRef { instance: repo.instance, path: repo.path, id: id.to_string() };
        r.check_len()?;
        Ok(r)
    }

    fn parse_url(input: &str, rest: &str) -> Result<Self, IssueRefError> {
        let bad = || IssueRefError::BadUrl { input: input.to_string() };
        let rest = rest.split(['?', '#']).next().unwrap_or_default().trim_end_matches('/');
        let mut segs: Vec<&str> = rest.split('/').collect();
        // host / path... / [-] / issues / id
        if segs.len() < 5 {
            return Err(bad());
        }
        // A self-hosted forge on another port: the ref names the host, and `servers.json`
        // supplies the port for cloning.
        if let Some((host, port)) = segs[0].rsplit_once(':')
            && !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
        {
            segs[0] = host;
        }
        let id = segs[segs.len() - 1];
        if !matches!(segs[segs.len() - 2], "issues" | "pull" | "pulls" | "merge_requests") {
            return Err(bad());
        }
        let mut repo_end = segs.len() - 2;
        if segs[repo_end - 1] == "-" {
            repo_end -= 1;
        }
        let repo = parse_repo(input, &segs[..repo_end].join("/"))?;
        check_id(input, id)?;
        let r = IssueRef { instance: repo.instance, path: repo.path, id: id.to_string() };
        r.check_len()?;
        Ok(r)
    }

    fn check_len(&self) -> Result<(), IssueRefError> {
        let len = self.to_string().len();
        if len > MAX_REF_LEN { Err(IssueRefError::TooLong { len }) } else { Ok(()) }
    }

    /// The host, lowercased (`github.com`).
    pub fn instance(&self) -> &str {
        &self.instance
    }
    /// Owner, subgroups and repository name.
    pub fn path(&self) -> &[String] {
        &self.path
    }
    /// The issue id (`14`, `-discuss`).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The repository this issue belongs to.
    pub fn repo(&self) -> RepoRef {
        RepoRef { instance: self.instance.clone(), path: self.path.clone() }
    }
    /// The branch the issue's worktree works on: `fix/issue-<id>`.
    pub fn branch(&self) -> String {
        format!("fix/issue-{}", self.id)
    }

    /// The name of the issue's session file (without `.json`) and worktree directory: the spec's
    /// `github.com-shoko-kugetsu-14` when no segment holds a `-` and it is short enough, else that
    /// form (shortened) followed by `+` and a 64-bit hash of the canonical ref.
    ///
    /// Injective: a plain name splits back into its segments at every `-`, and a hashed name is
    /// told apart by its `+`, which no segment may contain. The name never contains `/`, NUL or
    /// `..` as a component, never starts with a dot, and is at most 167 bytes.
    pub fn file_name(&self) -> String {
        let segs: Vec<&str> = std::iter::once(self.instance.as_str())
            .chain(self.path.iter().map(String::as_str))
            .chain(std::iter::once(self.id.as_str()))
            .collect();
        safe_name(&segs, &self.to_string())
    }
}

fn safe_name(segs: &[&str], canonical: &str) -> String {
    let plain = segs.join("-");
    let ambiguous = segs.iter().any(|s| s.contains('-'));
    if !ambiguous && plain.len() <= MAX_PLAIN_NAME_LEN {
        return plain;
    }
    let mut short: String = plain.chars().take(MAX_PLAIN_NAME_LEN).collect();
    while short.ends_with('.') {
        short.pop();
    }
    format!("{short}+{:016x}", fnv1a64(canonical.as_bytes()))
}

/// FNV-1a: a tiny hash whose value never changes between Rust versions or platforms, which
/// names on disk need (std's hasher is explicitly unstable).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl fmt::Display for IssueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}#{}", self.instance, self.path.join("/"), self.id)
    }
}

impl fmt::Debug for IssueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssueRef({self})")
    }
}

impl FromStr for IssueRef {
    type Err = IssueRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IssueRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IssueRef {
        IssueRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_spec_examples() {
        let r = p("github.com/shoko/kugetsu#14");
        assert_eq!(r.instance(), "github.com");
        assert_eq!(r.path(), ["shoko", "kugetsu"]);
        assert_eq!(r.id(), "14");
        assert_eq!(r.file_name(), "github.com-shoko-kugetsu-14");
        assert_eq!(r.branch(), "fix/issue-14");
        assert_eq!(
            p("gitlab.com/username/project#42").file_name(),
            "gitlab.com-username-project-42"
        );
        let d = p("github.com/shoko/kugetsu#-discuss");
        assert_eq!(d.id(), "-discuss");
        assert_eq!(d.branch(), "fix/issue--discuss");
        assert!(d.file_name().starts_with("github.com-shoko-kugetsu--discuss+"));
    }

    #[test]
    fn parses_subgroups_and_urls() {
        let r = p("gitlab.com/group/sub/repo#42");
        assert_eq!(r.path(), ["group", "sub", "repo"]);
        assert_eq!(r.to_string(), "gitlab.com/group/sub/repo#42");
        assert_eq!(p("https://github.com/o/r/issues/14").to_string(), "github.com/o/r#14");
        assert_eq!(
            p("https://gitlab.com/group/sub/repo/-/issues/42").to_string(),
            "gitlab.com/group/sub/repo#42"
        );
        assert_eq!(
            p("https://gitea.example.org/o/r/issues/7/").to_string(),
            "gitea.example.org/o/r#7"
        );
        assert_eq!(p("https://GitHub.com/o/r/issues/14?x=1#c").to_string(), "github.com/o/r#14");
        assert_eq!(
            p("https://git.example.org:3000/o/r/issues/7").to_string(),
            "git.example.org/o/r#7"
        );
        assert!(IssueRef::parse("https://h:x/o/r/issues/7").is_err());
        assert!(IssueRef::parse("https://tok@h/o/r/issues/7").is_err());
    }

    #[test]
    fn short_refs_resolve_against_the_default_repo() {
        let repo = RepoRef::parse("github.com/shoko/kugetsu").unwrap();
        let r = IssueRef::parse_with_default("#14", Some(&repo)).unwrap();
        assert_eq!(r.to_string(), "github.com/shoko/kugetsu#14");
        assert_eq!(
            IssueRef::parse("#14"),
            Err(IssueRefError::NoDefaultRepo { input: "#14".into() })
        );
    }

    #[test]
    fn hostile_refs_are_rejected_naming_the_part() {
        for (input, needle) in [
            ("github.com/../../etc#1", "\"..\""),
            ("/etc/passwd#1", "instance \"\" is empty"),
            ("github.com/o/r#1/../x", "issue id"),
            ("github.com/o/r#a\0b", "issue id"),
            ("github.com/o/\u{440}epo#1", "contains"),
            ("github.com/o/.hidden#1", "starts with '.'"),
            ("-rf/o/r#1", "instance \"-rf\" starts with '-'"),
            ("github.com/o#1", "needs instance/owner/repo"),
            ("github.com/o/r", "no '#<id>'"),
            ("github.com/o/r#", "issue id \"\" is empty"),
            ("github.com/o/r#1.2", "contains '.'"),
            ("https://github.com/o/r/commits/1", "not an issue URL"),
        ] {
            let err = IssueRef::parse(input).expect_err(input).to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
        let long = format!("github.com/o/{}#1", "r".repeat(300));
        assert!(IssueRef::parse(&long).is_err());
        let long = format!("github.com/{}/{}#1", "o".repeat(99), "r".repeat(99));
        assert!(matches!(IssueRef::parse(&long), Err(IssueRefError::TooLong { .. })));
    }

    #[test]
    fn ambiguous_plain_names_are_hashed_apart() {
        let a = p("github.com/a-b/c#1");
        let b = p("github.com/a/b-c#1");
        assert_ne!(a.file_name(), b.file_name());
        let c = p("github.com/a/b/c#1");
        assert_eq!(c.file_name(), "github.com-a-b-c-1");
        assert_ne!(a.file_name(), c.file_name());
    }
}
