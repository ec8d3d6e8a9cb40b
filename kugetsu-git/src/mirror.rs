//! One bare mirror per repository: cloned once, fetched before every new worktree.
//!
//! The mirror keeps the remote's branches as remote-tracking refs (`refs/remotes/origin/*`, tags
//! too) so that its own `refs/heads/*` namespace is free for the per-issue branches: a fetch can
//! never move or delete an issue branch. `refs/remotes/origin/HEAD` is refreshed from the remote's
//! advertised `HEAD` on every fetch, so "the default branch" follows the remote.
//!
//! A first clone goes to a temporary directory beside the mirror and is renamed into place only
//! when complete, so an interrupted or killed clone never leaves a half-made mirror behind (gix
//! deletes the temporary directory on failure; leftovers of killed processes are swept under the
//! mirror lock by the next clone).
//!
//! Credentials: the token is handed to gix through a connection-scoped credential callback. It is
//! never part of a URL, never written to the mirror's config and never used for anything but
//! answering the server's request. Without a token the callback answers "no credentials", so a
//! server that wants some fails fast with [`WorktreeError::AuthFailed`] instead of prompting on a
//! terminal that a daemon does not have.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::bstr::ByteSlice;
use gix::credentials::helper::Action;
use gix::remote::Direction;
use kugetsu_core::worktree::{RepoSource, Secret, WorktreeError, WorktreePhase, WorktreeProgress};

use crate::error::{self, GitError};
use crate::progress;

/// Where the remote's branches live inside a mirror.
pub(crate) const TRACKING_SPEC: &str = "+refs/heads/*:refs/remotes/origin/*";
/// The mirror's record of the remote's default branch.
pub(crate) const REMOTE_HEAD: &str = "refs/remotes/origin/HEAD";

/// Parses `url`, refusing credentials inside it (they would end up in the mirror's config).
pub(crate) fn parse_url(url: &str) -> Result<gix::Url, WorktreeError> {
    let parsed =
        gix::url::parse(url.as_bytes().as_bstr()).map_err(|e| WorktreeError::RepoNotFound {
            url: url.to_string(),
            source: Some(Box::new(GitError::Invalid(format!("not a valid repository URL: {e}")))),
        })?;
    if parsed.password().is_some() {
        // The URL itself is a secret now: do not echo it.
        return Err(error::other(
            "refusing a repository URL that contains a password",
            GitError::CredentialsInUrl,
        ));
    }
    Ok(parsed)
}

/// Answers the server's credential requests with the token and nothing else.
fn authenticate(
    token: Option<Secret>,
) -> impl FnMut(Action) -> gix::Result<Option<gix::credentials::protocol::Outcome>> + 'static {
    move |action| match action {
        Action::Get(ctx) => Ok(token.as_ref().map(|token| {
            let username = ctx
                .username
                .clone()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "x-access-token".to_string());
            gix::credentials::protocol::Outcome {
                identity: gix::sec::identity::Account {
                    username,
                    password: token.expose().to_string(),
                    oauth_refresh_token: None,
                },
                next: ctx.into(),
            }
        })),
        // Nothing is stored or erased: kugetsu keeps no credential cache.
        Action::Store(_) | Action::Erase(_) => Ok(None),
    }
}

/// Clones `source` as a bare mirror at `mirror`. The caller holds the mirror lock and opens the
/// mirror afterwards.
pub(crate) fn clone(
    source: &RepoSource,
    mirror: &Path,
    open_opts: gix::open::Options,
    sink: &mut dyn WorktreeProgress,
    interrupt: &AtomicBool,
) -> Result<(), WorktreeError> {
    let url = parse_url(&source.url)?;
    let parent = mirror.parent().unwrap_or(Path::new("."));
    let name = mirror.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    sweep_partials(parent, &name);
    let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let token = source.token.clone();
    let fetched = progress::run(sink, WorktreePhase::Clone, "indexing", |node| {
        let mut prepare = gix::clone::PrepareFetch::new(
            url,
            &partial,
            gix::create::Kind::Bare,
            gix::create::Options::default(),
            open_opts,
        )?
        .configure_remote(|remote| {
            Ok(remote
                .with_refspecs(Some(TRACKING_SPEC), Direction::Fetch)?
                .with_fetch_tags(gix::remote::fetch::Tags::All))
        })
        .configure_connection(move |connection| {
            connection.set_credentials(authenticate(token.clone()));
            Ok(())
        });
        let (repo, outcome) = prepare.fetch_only(node, interrupt)?;
        Ok::<_, gix::Error>((repo, outcome))
    });
    let (repo, outcome) = match fetched {
        Ok(done) => done,
        Err(err) => {
            let _ = fs::remove_dir_all(&partial);
            return Err(error::transfer(&source.url, "clone", err));
        }
    };
    record_remote_head(&repo, &outcome.ref_map)
        .map_err(|e| error::at(&partial, "record the default branch in", e))?;
    drop(repo);
    fs::rename(&partial, mirror).map_err(|e| {
        let _ = fs::remove_dir_all(&partial);
        error::at(mirror, "move the new mirror into place at", e)
    })?;
    sync_dir(parent);
    Ok(())
}

/// Removes temporary clones left by killed processes. Only called under the mirror lock, so no
/// live clone of this mirror can be in progress.
fn sweep_partials(parent: &Path, name: &str) {
    let prefix = format!(".{name}.partial-");
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            tracing::debug!(path = %entry.path().display(), "removing an abandoned partial clone");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Fetches `source` into the existing `repo`. The caller holds the mirror lock.
pub(crate) fn fetch(
    repo: &gix::Repository,
    source: &RepoSource,
    sink: &mut dyn WorktreeProgress,
    interrupt: &AtomicBool,
) -> Result<(), WorktreeError> {
    let url = parse_url(&source.url)?;
    let token = source.token.clone();
    let repo_for_fetch = repo.clone();
    let outcome = progress::run(sink, WorktreePhase::Fetch, "indexing", move |mut node| {
        let remote = repo_for_fetch
            .remote_at(url)?
            .with_refspecs(Some(TRACKING_SPEC), Direction::Fetch)?
            .with_fetch_tags(gix::remote::fetch::Tags::All);
        let connection = remote.connect(Direction::Fetch)?.with_credentials(authenticate(token));
        let outcome = connection
            .prepare_fetch(&mut node, Default::default())?
            .receive(&mut node, interrupt)?;
        Ok::<_, gix::Error>(outcome.ref_map)
    })
    .map_err(|err| error::transfer(&source.url, "fetch", err))?;
    record_remote_head(repo, &outcome)
        .map_err(|e| error::at(repo.path(), "record the default branch in", e))
}

/// Points `refs/remotes/origin/HEAD` at the tracking ref of the remote's `HEAD` branch.
fn record_remote_head(
    repo: &gix::Repository,
    ref_map: &gix::remote::fetch::RefMap,
) -> Result<(), gix::Error> {
    use gix::protocol::handshake::Ref;
    let target = ref_map.remote_refs.iter().find_map(|r| match r {
        Ref::Symbolic { full_ref_name, target, .. } if full_ref_name == "HEAD" => {
            Some(target.clone())
        }
        _ => None,
    });
    let Some(target) = target else { return Ok(()) };
    let Some(branch) = target.strip_prefix(b"refs/heads/") else { return Ok(()) };
    let tracking = format!("refs/remotes/origin/{}", branch.as_bstr());
    if repo.try_find_reference(tracking.as_str())?.is_none() {
        return Ok(());
    }
    let tracking: gix::refs::FullName = tracking.try_into().map_err(gix::Error::from_error)?;
    let head: gix::refs::FullName = REMOTE_HEAD.try_into().map_err(gix::Error::from_error)?;
    repo.edit_reference(gix::refs::transaction::RefEdit {
        change: gix::refs::transaction::Change::Update {
            log: Default::default(),
            expected: gix::refs::transaction::PreviousValue::Any,
            new: gix::refs::Target::Symbolic(tracking),
        },
        name: head,
        deref: false,
    })?;
    Ok(())
}

/// The commit and name of the remote's default branch as recorded in the mirror.
pub(crate) fn default_branch(
    repo: &gix::Repository,
    url: &str,
) -> Result<(gix::ObjectId, String), WorktreeError> {
    let mut candidates = vec![REMOTE_HEAD.to_string()];
    candidates.extend(["refs/remotes/origin/main", "refs/remotes/origin/master"].map(String::from));
    for name in candidates {
        let found = repo
            .try_find_reference(name.as_str())
            .map_err(|e| error::at(repo.path(), "read refs of", e))?;
        if let Some(mut reference) = found {
            let id =
                reference.peel_to_id().map_err(|e| error::at(repo.path(), "read refs of", e))?;
            let shown = match reference.name().as_bstr().strip_prefix(b"refs/remotes/") {
                Some(short) => short.as_bstr().to_string(),
                None => name.clone(),
            };
            return Ok((id.detach(), shown));
        }
    }
    let any_branch = repo
        .references()
        .and_then(|refs| Ok(refs.remote_branches()?.next().is_some()))
        .map_err(|e| error::at(repo.path(), "read refs of", e))?;
    if any_branch {
        return Err(error::ctx(
            format!("repository {url} does not say which branch is its default"),
            GitError::Invalid("name a base ref explicitly".into()),
        ));
    }
    Err(error::ctx(format!("repository {url} cannot be used"), GitError::EmptyRepository))
}

/// Resolves the user's `base_ref` in the mirror: a remote branch first, then a tag, a full ref
/// name, a local branch, and finally any revision expression (a commit id).
pub(crate) fn resolve_base(
    repo: &gix::Repository,
    base_ref: &str,
    url: &str,
) -> Result<gix::ObjectId, WorktreeError> {
    let not_found =
        || WorktreeError::BaseRefNotFound { base_ref: base_ref.to_string(), url: url.to_string() };
    let mut candidates = Vec::new();
    if base_ref.starts_with("refs/") {
        candidates.push(base_ref.to_string());
    } else {
        let short = base_ref.strip_prefix("origin/").unwrap_or(base_ref);
        candidates.push(format!("refs/remotes/origin/{short}"));
        candidates.push(format!("refs/tags/{base_ref}"));
        candidates.push(format!("refs/heads/{base_ref}"));
    }
    for name in &candidates {
        let Ok(Some(mut reference)) = repo.try_find_reference(name.as_str()) else { continue };
        if let Ok(commit) = reference.peel_to_commit() {
            return Ok(commit.id);
        }
    }
    let spec = repo.rev_parse_single(base_ref).map_err(|_| not_found())?;
    let commit = spec.object().ok().and_then(|o| o.peel_to_commit().ok()).ok_or_else(not_found)?;
    Ok(commit.id)
}

/// The mirror directory for `key`, refusing keys that could escape `mirrors_dir`.
pub(crate) fn mirror_path(mirrors_dir: &Path, key: &str) -> Result<PathBuf, WorktreeError> {
    let bad = key.is_empty()
        || key.starts_with('.')
        || key.contains(['/', '\\', '\0'])
        || key.len() > 200;
    if bad {
        return Err(error::other(
            format!("invalid repository key {key:?}"),
            GitError::BadMirrorKey(key.to_string()),
        ));
    }
    Ok(mirrors_dir.join(format!("{key}.git")))
}
