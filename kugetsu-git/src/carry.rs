//! What another host needs to rebuild an issue's worktree: the branch's commits that no
//! remote-tracking branch contains, and the work not committed (modified, staged, untracked
//! and deleted files), in one serializable [`WorktreeCarry`], capped in size.
//!
//! Why not a git bundle: gix 0.90 writes packs only through its lower-level crates and cannot
//! read a bundle back without spawning `git`, and kugetsu needs no `git` program. The carry
//! holds the unpushed commits as raw objects instead (each commit with the trees and blobs its
//! tree has beyond those of the commits the remote has), so the other host gets the very
//! commits, ids included, and writes them into its object store in-process.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use gix::ObjectId;
use gix::objs::Write as _;

use crate::unsaved;

/// The format of [`WorktreeCarry`] this crate writes.
pub const CARRY_FORMAT: u32 = 1;

/// A worktree's unsaved work, ready to travel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorktreeCarry {
    /// [`CARRY_FORMAT`].
    pub format: u32,
    /// The commit `HEAD` was on (hex), `None` on an unborn branch.
    pub head: Option<String>,
    /// The objects of the unpushed commits that the remote does not have.
    pub objects: Vec<CarriedObject>,
    /// Files whose content differs from `HEAD` (not ignored), by path relative to the worktree.
    pub files: Vec<CarriedFile>,
}

/// One git object, as stored in the object database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CarriedObject {
    /// Its id (hex).
    pub id: String,
    /// `commit`, `tree`, `blob` or `tag`.
    pub kind: String,
    /// Its content, base64.
    pub data: String,
}

/// One file of the worktree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CarriedFile {
    /// Relative to the worktree, `/`-separated.
    pub path: String,
    /// The content, base64; `None` when the file was deleted.
    pub content: Option<String>,
    /// Whether it is executable.
    #[serde(default)]
    pub executable: bool,
    /// Whether it is a symbolic link (`content` is then its target).
    #[serde(default)]
    pub symlink: bool,
}

/// Why a carry could not be made or applied.
#[derive(Debug, thiserror::Error)]
pub enum CarryError {
    /// The work is larger than the cap.
    #[error("the unsaved work of {path} takes {size} bytes, over the cap of {cap}")]
    TooBig {
        /// The worktree.
        path: PathBuf,
        /// Its size as carried.
        size: usize,
        /// The cap.
        cap: usize,
    },
    /// A path in a carry that would leave the worktree.
    #[error("a carried file would be written outside the worktree: {0:?}")]
    BadPath(String),
    /// A carry that is not what this crate writes.
    #[error("the carried work is not valid: {0}")]
    Invalid(String),
    /// Reading or writing the repository failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Git {
        /// What was being done.
        action: &'static str,
        /// The worktree.
        path: PathBuf,
        /// The cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading or writing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn git(action: &'static str, path: &Path) -> impl FnOnce(gix::Error) -> CarryError {
    let path = path.to_path_buf();
    move |e| CarryError::Git { action, path, source: Box::new(e) }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CarryError {
    let path = path.to_path_buf();
    move |e| CarryError::Io { action, path, source: e }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl WorktreeCarry {
    /// Its size as carried (its JSON), which the cap applies to.
    pub fn size(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |v| v.len())
    }

    /// Whether there is nothing to carry.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.files.is_empty()
    }
}

/// Every object id of `tree` and below, into `seen`.
fn tree_objects(
    repo: &gix::Repository,
    tree: ObjectId,
    seen: &mut HashSet<ObjectId>,
) -> Result<(), gix::Error> {
    if !seen.insert(tree) {
        return Ok(());
    }
    let mut recorder = gix::traverse::tree::Recorder::default();
    repo.find_tree(tree)?.traverse().breadthfirst(&mut recorder)?;
    seen.extend(recorder.records.into_iter().filter(|e| !e.mode.is_commit()).map(|e| e.oid));
    Ok(())
}

/// The objects of the commits reachable from `tip` that no remote-tracking branch contains.
fn unpushed_objects(
    repo: &gix::Repository,
    tip: ObjectId,
) -> Result<Vec<CarriedObject>, gix::Error> {
    let ids = unsaved::unpushed_ids(repo, tip)?;
    missing_objects(repo, &ids)?
        .into_iter()
        .map(|id| {
            let object = repo.find_object(id)?;
            Ok(CarriedObject {
                id: id.to_string(),
                kind: object.kind.to_string(),
                data: b64().encode(&object.data),
            })
        })
        .collect()
}

/// The objects of the commits `ids` (newest first) that a repository holding their other
/// parents lacks: each commit with the trees and blobs its tree has beyond those of the
/// parents outside `ids`. Oldest first, so a reader can write them in order. Also what a push
/// sends.
pub(crate) fn missing_objects(
    repo: &gix::Repository,
    ids: &[ObjectId],
) -> Result<Vec<ObjectId>, gix::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // What the other side has: the trees of the commits' parents that are not among them.
    let unpushed: HashSet<ObjectId> = ids.iter().copied().collect();
    let mut known = HashSet::new();
    for id in ids {
        for parent in repo.find_commit(*id)?.parent_ids() {
            if !unpushed.contains(&parent.detach()) {
                let tree = repo.find_commit(parent)?.tree_id()?.detach();
                tree_objects(repo, tree, &mut known)?;
            }
        }
    }
    let mut wanted: Vec<ObjectId> = Vec::new();
    let mut mine = HashSet::new();
    for id in ids.iter().rev() {
        let tree = repo.find_commit(*id)?.tree_id()?.detach();
        let mut all = HashSet::new();
        tree_objects(repo, tree, &mut all)?;
        let mut fresh: Vec<ObjectId> =
            all.into_iter().filter(|o| !known.contains(o) && mine.insert(*o)).collect();
        fresh.sort();
        wanted.extend(fresh);
        wanted.push(*id);
    }
    Ok(wanted)
}

fn carried_file(worktree: &Path, rel: &str) -> Result<CarriedFile, CarryError> {
    let path = worktree.join(rel);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(CarriedFile {
                path: rel.into(),
                content: None,
                executable: false,
                symlink: false,
            });
        }
        Err(e) => return Err(io("read", &path)(e)),
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&path).map_err(io("read", &path))?;
        return Ok(CarriedFile {
            path: rel.into(),
            content: Some(b64().encode(target.as_os_str().as_encoded_bytes())),
            executable: false,
            symlink: true,
        });
    }
    let data = std::fs::read(&path).map_err(io("read", &path))?;
    Ok(CarriedFile {
        path: rel.into(),
        content: Some(b64().encode(data)),
        executable: std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0,
        symlink: false,
    })
}

/// The unsaved work of the worktree at `worktree`, refused when it carries more than `cap`
/// bytes.
pub fn save(worktree: &Path, cap: usize) -> Result<WorktreeCarry, CarryError> {
    let repo = gix::open(worktree).map_err(|e| CarryError::Git {
        action: "open",
        path: worktree.to_path_buf(),
        source: Box::new(e),
    })?;
    let head = unsaved::head_commit(&repo).map_err(git("read HEAD of", worktree))?;
    let objects = match head {
        Some(tip) => unpushed_objects(&repo, tip).map_err(git("read the commits of", worktree))?,
        None => Vec::new(),
    };
    let mut files = Vec::new();
    for rel in unsaved::changed_files(&repo).map_err(git("read the status of", worktree))? {
        files.push(carried_file(worktree, &rel)?);
    }
    let carry =
        WorktreeCarry { format: CARRY_FORMAT, head: head.map(|h| h.to_string()), objects, files };
    let size = carry.size();
    if size > cap {
        return Err(CarryError::TooBig { path: worktree.to_path_buf(), size, cap });
    }
    Ok(carry)
}

/// A carried path as a path below `worktree`, refused if it could leave it.
fn inside(worktree: &Path, rel: &str) -> Result<PathBuf, CarryError> {
    let p = Path::new(rel);
    let fine = !rel.is_empty()
        && p.components().all(|c| matches!(c, std::path::Component::Normal(n) if n != ".git"));
    if !fine {
        return Err(CarryError::BadPath(rel.to_string()));
    }
    Ok(worktree.join(p))
}

fn decode(what: &str, data: &str) -> Result<Vec<u8>, CarryError> {
    b64().decode(data).map_err(|e| CarryError::Invalid(format!("{what}: {e}")))
}

/// Rebuilds the unsaved work of `carry` in the worktree at `worktree`, a fresh checkout of the
/// same repository (its branch may be at another commit of the remote's): the carried commits
/// are written into its object store, its branch is moved to the carried `HEAD` and the files
/// and index follow it, then the uncommitted files are written over them.
pub fn restore(worktree: &Path, carry: &WorktreeCarry) -> Result<(), CarryError> {
    if carry.format != CARRY_FORMAT {
        return Err(CarryError::Invalid(format!("format {} is not {CARRY_FORMAT}", carry.format)));
    }
    let repo = gix::open(worktree).map_err(|e| CarryError::Git {
        action: "open",
        path: worktree.to_path_buf(),
        source: Box::new(e),
    })?;
    for object in &carry.objects {
        let kind = gix::objs::Kind::from_bytes(object.kind.as_bytes())
            .map_err(|e| CarryError::Invalid(format!("object {}: {e}", object.id)))?;
        let data = decode(&object.id, &object.data)?;
        let id = repo.objects.write_buf(kind, &data).map_err(|e| CarryError::Git {
            action: "write objects into",
            path: worktree.to_path_buf(),
            source: Box::new(e),
        })?;
        if id != object.id.as_str() {
            return Err(CarryError::Invalid(format!("object {} hashes to {id}", object.id)));
        }
    }
    let now = unsaved::head_commit(&repo).map_err(git("read HEAD of", worktree))?;
    if let Some(head) = &carry.head {
        let head = ObjectId::from_hex(head.as_bytes())
            .map_err(|e| CarryError::Invalid(format!("head {head}: {e}")))?;
        if Some(head) != now {
            move_to(&repo, worktree, now, head)?;
        }
    }
    for file in &carry.files {
        let path = inside(worktree, &file.path)?;
        let _ = std::fs::remove_file(&path);
        let Some(content) = &file.content else { continue };
        let data = decode(&file.path, content)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        write_entry(&path, file, &data)?;
    }
    Ok(())
}

/// Moves the worktree's branch from `from` to `to`: the files that differ between the two
/// commits' trees are rewritten, and the index is made from `to`'s tree.
fn move_to(
    repo: &gix::Repository,
    worktree: &Path,
    from: Option<ObjectId>,
    to: ObjectId,
) -> Result<(), CarryError> {
    let entries = |commit: Option<ObjectId>| -> Result<Vec<_>, gix::Error> {
        let Some(commit) = commit else { return Ok(Vec::new()) };
        let tree = repo.find_commit(commit)?.tree_id()?;
        let mut recorder = gix::traverse::tree::Recorder::default();
        repo.find_tree(tree)?.traverse().breadthfirst(&mut recorder)?;
        Ok(recorder.records.into_iter().filter(|e| !e.mode.is_tree()).collect())
    };
    let old = entries(from).map_err(git("read the tree of", worktree))?;
    let new = entries(Some(to)).map_err(git("read the carried tree in", worktree))?;
    let had: std::collections::HashMap<_, _> =
        old.iter().map(|e| (e.filepath.clone(), (e.oid, e.mode))).collect();
    let keeps: HashSet<_> = new.iter().map(|e| e.filepath.clone()).collect();
    for e in old.iter().filter(|e| !keeps.contains(&e.filepath)) {
        let path = inside(worktree, &e.filepath.to_string())?;
        let _ = std::fs::remove_file(&path);
    }
    for e in new.iter().filter(|e| had.get(&e.filepath) != Some(&(e.oid, e.mode))) {
        let rel = e.filepath.to_string();
        let path = inside(worktree, &rel)?;
        let data = repo
            .find_object(e.oid)
            .map_err(git("read the carried tree in", worktree))?
            .detach()
            .data;
        let _ = std::fs::remove_file(&path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        let file = CarriedFile {
            path: rel,
            content: None,
            executable: e.mode.is_executable(),
            symlink: e.mode.is_link(),
        };
        write_entry(&path, &file, &data)?;
    }
    let branch = repo.head_name().map_err(git("read HEAD of", worktree))?;
    let name =
        branch.ok_or_else(|| CarryError::Invalid("the worktree's HEAD is detached".into()))?;
    repo.reference(name, to, gix::refs::transaction::PreviousValue::Any, "kugetsu: carried over")
        .map_err(git("move the branch of", worktree))?;
    let tree = repo
        .find_commit(to)
        .and_then(|c| c.tree_id())
        .map_err(git("read the carried tree in", worktree))?;
    let mut index = repo.index_from_tree(&tree).map_err(git("make the index of", worktree))?;
    index.write(Default::default()).map_err(|e| CarryError::Git {
        action: "write the index of",
        path: worktree.to_path_buf(),
        source: Box::new(e),
    })?;
    Ok(())
}

fn write_entry(path: &Path, file: &CarriedFile, data: &[u8]) -> Result<(), CarryError> {
    if file.symlink {
        let target = PathBuf::from(String::from_utf8_lossy(data).into_owned());
        return std::os::unix::fs::symlink(&target, path).map_err(io("write", path));
    }
    std::fs::write(path, data).map_err(io("write", path))?;
    if file.executable {
        let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
        std::fs::set_permissions(path, mode).map_err(io("write", path))?;
    }
    Ok(())
}
