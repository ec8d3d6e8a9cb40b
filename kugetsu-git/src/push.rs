//! Pushing an issue branch over smart HTTP(S), in-process: gix 0.90 has no push, so this is
//! one built from gix's own parts. gix-transport's blocking HTTP client asks the remote's
//! `git-receive-pack` for its refs (the same client, TLS roots and token routing as a fetch:
//! the token goes as the Basic password, never in the URL), the branch's objects the remote
//! lacks are written as a pack with gix-pack's entry writer, and the update command, the pack
//! and the remote's `report-status` answer travel as git's pack protocol has them.
//!
//! It never forces: the remote branch must be absent, or an ancestor of ours (fast-forward);
//! otherwise someone else's commits are there and the push is refused without a request to
//! update. A branch with no commits beyond what the remote has is not pushed at all. Only
//! `http://` and `https://` remotes are supported: `ssh://`, `git://` and local paths would
//! need a `git` program or an ssh session at run time.

use std::io::Write as _;
use std::path::Path;

use gix::ObjectId;
use gix::protocol::transport::client::blocking_io::{ReadlineBufRead, Transport as _};
use gix::protocol::transport::client::{MessageKind, TransportWithoutIO as _, WriteMode};
use gix::protocol::transport::{Protocol, Service};
use kugetsu_core::worktree::RepoSource;

use crate::GitConfig;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The remote branch now points at our commit (`already` when it did before).
    Pushed {
        /// The commit.
        commit: ObjectId,
        /// Nothing had to be sent.
        already: bool,
    },
    /// The branch has no commits the remote lacks: nothing pushed.
    NothingToPush,
    /// Not pushed, and pushing again will not help until a person looks: why.
    Refused(String),
}

/// Why a push failed (it may work later).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The worktree or its branch could not be read.
    #[error("push {branch} from {path}: {message}")]
    Local {
        /// The worktree.
        path: std::path::PathBuf,
        /// The branch.
        branch: String,
        /// Why.
        message: String,
    },
    /// The remote could not be reached or answered badly.
    #[error("push {branch} to {url}: {message}")]
    Remote {
        /// The remote (no credentials: URLs with a password are refused before).
        url: String,
        /// The branch.
        branch: String,
        /// Why, with the token masked.
        message: String,
    },
}

/// Pushes `refs/heads/<branch>` of the repository of `worktree` to `source` (its URL and
/// token), never forcing.
pub fn push_branch(
    worktree: &Path,
    branch: &str,
    source: &RepoSource,
    config: GitConfig,
) -> Result<PushOutcome, PushError> {
    let local_err = |message: String| PushError::Local {
        path: worktree.to_path_buf(),
        branch: branch.to_string(),
        message,
    };
    let secret = source.token.as_ref().map(|t| t.expose().to_string()).unwrap_or_default();
    let remote_err = |message: String| PushError::Remote {
        url: source.url.clone(),
        branch: branch.to_string(),
        message: kugetsu_core::secrets::redact(&message, &[secret.as_str()]),
    };
    let url = crate::mirror::parse_url(&source.url).map_err(|e| local_err(e.to_string()))?;
    if !matches!(url.scheme, gix::url::Scheme::Http | gix::url::Scheme::Https) {
        return Ok(PushOutcome::Refused(format!(
            "push over {} is not supported (only http and https remotes)",
            url.scheme.as_str()
        )));
    }
    let repo =
        gix::open_opts(worktree, config.open_options()).map_err(|e| local_err(e.to_string()))?;
    let full = format!("refs/heads/{branch}");
    let ours = repo
        .find_reference(full.as_str())
        .map_err(|e| local_err(e.to_string()))?
        .into_fully_peeled_id()
        .map_err(|e| local_err(e.to_string()))?
        .detach();

    let mut transport = gix::protocol::transport::client::blocking_io::http::connect::<
        gix::protocol::transport::client::blocking_io::http::reqwest::Remote,
    >(url, Protocol::V1, false);
    if let Some(token) = &source.token {
        let identity = gix::sec::identity::Account {
            username: "x-access-token".into(),
            password: token.expose().to_string(),
            oauth_refresh_token: None,
        };
        transport.set_identity(identity).map_err(|e| remote_err(e.to_string()))?;
    }
    let remote_refs = {
        let answer = transport
            .handshake(Service::ReceivePack, &[])
            .map_err(|e| remote_err(e.to_string()))?;
        let Some(mut lines) = answer.refs else {
            return Err(remote_err("no refs in the receive-pack advertisement".into()));
        };
        let refs = gix::protocol::handshake::refs::from_v1_refs_received_as_part_of_handshake_and_capabilities(
            &mut *lines,
            answer.capabilities.iter(),
        )
        .map_err(|e| remote_err(e.to_string()))?
        .0;
        refs.into_iter()
            .filter_map(|r| match r {
                gix::protocol::handshake::Ref::Direct { full_ref_name, object }
                | gix::protocol::handshake::Ref::Peeled { full_ref_name, object, .. } => {
                    Some((full_ref_name.to_string(), object))
                }
                _ => None,
            })
            .filter(|(_, id)| !id.is_null())
            .collect::<Vec<_>>()
    };
    let theirs = remote_refs.iter().find(|(name, _)| *name == full).map(|(_, id)| *id);
    // What the remote has, as git records it after a push: the branch's tracking ref, so the
    // pushed commits no longer count as work a removal would lose.
    let track = |repo: &gix::Repository| {
        let name = format!("refs/remotes/origin/{branch}");
        repo.reference(name.as_str(), ours, gix::refs::transaction::PreviousValue::Any, "push")
            .map(|_| ())
            .map_err(|e| local_err(e.to_string()))
    };
    if theirs == Some(ours) {
        track(&repo)?;
        return Ok(PushOutcome::Pushed { commit: ours, already: true });
    }
    let is_ancestor = |old: ObjectId| -> bool {
        repo.find_object(old).is_ok()
            && repo.merge_base(old, ours).is_ok_and(|base| base.is_some_and(|b| b.detach() == old))
    };
    if let Some(old) = theirs
        && !is_ancestor(old)
    {
        return Ok(PushOutcome::Refused(format!(
            "the remote branch {branch} has commits kugetsu did not make (at {}); not forcing",
            old.to_hex_with_len(8)
        )));
    }
    // What the remote has that we have too: its tips, hidden from the walk.
    let known: Vec<ObjectId> =
        remote_refs.iter().map(|(_, id)| *id).filter(|id| repo.find_object(*id).is_ok()).collect();
    let ids =
        crate::unsaved::ids_hiding(&repo, ours, known).map_err(|e| local_err(e.to_string()))?;
    if ids.is_empty() && theirs.is_none() {
        return Ok(PushOutcome::NothingToPush);
    }
    let objects =
        crate::carry::missing_objects(&repo, &ids).map_err(|e| local_err(e.to_string()))?;
    let pack = write_pack(&repo, &objects).map_err(local_err)?;

    let old = theirs.unwrap_or_else(|| ObjectId::null(repo.object_hash()));
    let command =
        format!("{old} {ours} {full}\0report-status agent=kugetsu/{}\n", env!("CARGO_PKG_VERSION"));
    let request = transport
        .request(WriteMode::Binary, MessageKind::Flush, false)
        .map_err(|e| remote_err(e.to_string()))?;
    let (mut writer, mut reader) = request.into_parts();
    let sent = (|| {
        writer.write_all(format!("{:04x}", command.len() + 4).as_bytes())?;
        writer.write_all(command.as_bytes())?;
        writer.write_all(b"0000")?;
        writer.write_all(&pack)?;
        writer.flush()
    })();
    drop(writer);
    sent.map_err(|e| remote_err(e.to_string()))?;
    let report = read_report(&mut *reader).map_err(|e| remote_err(e.to_string()))?;
    let unpacked = report.iter().any(|l| l == "unpack ok");
    match report.iter().find(|l| l.starts_with("ok ") || l.starts_with("ng ")) {
        Some(line) if unpacked && line == &format!("ok {full}") => {
            track(&repo)?;
            Ok(PushOutcome::Pushed { commit: ours, already: false })
        }
        Some(line) if line.starts_with("ng ") => {
            let why = line.trim_start_matches("ng ").trim_start_matches(full.as_str()).trim();
            Ok(PushOutcome::Refused(format!("the remote refused {branch}: {why}")))
        }
        _ => Err(remote_err(format!("unexpected answer: {}", report.join(" | ")))),
    }
}

/// The `report-status` lines of the remote's answer.
fn read_report(reader: &mut dyn ReadlineBufRead) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.readline_str(&mut line)? == 0 {
            return Ok(lines);
        }
        lines.push(line.trim_end().to_string());
        if lines.len() > 1000 {
            return Ok(lines);
        }
    }
}

/// A version-2 pack of `objects`, undeltified.
fn write_pack(repo: &gix::Repository, objects: &[ObjectId]) -> Result<Vec<u8>, String> {
    use gix_pack::data::output;
    let mut entries = Vec::with_capacity(objects.len());
    for id in objects {
        let object = repo.find_object(*id).map_err(|e| e.to_string())?;
        let data = gix::objs::Data::new(&object.data, object.kind, repo.object_hash());
        let count = output::Count::from_data(*id, None);
        let entry = output::Entry::from_data(&count, &data, gix::zlib::Compression::DEFAULT)
            .map_err(|e| e.to_string())?;
        entries.push(entry);
    }
    let n =
        u32::try_from(entries.len()).map_err(|_| "too many objects for one pack".to_string())?;
    let mut pack = Vec::new();
    let mut writer = output::bytes::FromEntriesIter::new(
        std::iter::once(Ok(entries)),
        &mut pack,
        n,
        gix_pack::data::Version::V2,
        repo.object_hash(),
    );
    for written in writer.by_ref() {
        written.map_err(|e| e.to_string())?;
    }
    drop(writer);
    Ok(pack)
}
