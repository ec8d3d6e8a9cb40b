//! The fake's session store (one JSON file standing in for opencode's SQLite database), ids of
//! the real shape, and the directory a command works in (`PWD` first, as the real binary).

use super::*;

#[derive(Serialize, Deserialize, Default)]
pub(super) struct Store {
    #[serde(default)]
    pub(super) counter: u64,
    #[serde(default)]
    pub(super) sessions: Vec<Session>,
}

#[derive(Serialize, Deserialize, Clone)]
pub(super) struct Session {
    pub(super) id: String,
    pub(super) slug: String,
    pub(super) project_id: String,
    pub(super) parent_id: Option<String>,
    pub(super) directory: String,
    pub(super) title: String,
    pub(super) permission: Option<Value>,
    pub(super) created: u64,
    pub(super) updated: u64,
    pub(super) messages: Vec<Value>,
    /// What only the 2.x dialect keeps (`None` for a session made by the 1.x dialect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) v2: Option<v2::V2Session>,
}

/// The root sessions (not forks' children) of `project`, newest first, as opencode lists them.
pub(super) fn project_roots<'a>(store: &'a Store, project: &str) -> Vec<&'a Session> {
    let mut roots: Vec<&Session> = store
        .sessions
        .iter()
        .filter(|s| s.parent_id.is_none() && s.project_id == project)
        .collect();
    roots.sort_by(|a, b| a.id.cmp(&b.id));
    roots
}

pub(super) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub(super) fn store_path() -> Res<PathBuf> {
    if let Some(db) = env("OPENCODE_DB") {
        return Ok(PathBuf::from(db));
    }
    let data = match (env("XDG_DATA_HOME"), env("HOME")) {
        (Some(x), _) => PathBuf::from(x),
        (None, Some(h)) => Path::new(&h).join(".local/share"),
        (None, None) => return fail("neither XDG_DATA_HOME nor HOME is set"),
    };
    Ok(data.join("opencode").join("opencode-fake.json"))
}

/// Runs `f` on the store under an exclusive lock, saving it afterwards.
pub(super) fn with_store<T>(f: impl FnOnce(&mut Store) -> Res<T>) -> Res<T> {
    let path = store_path()?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .or_else(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    }
    let lock_path = path.with_extension("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .or_else(|e| fail(format!("cannot open {}: {e}", lock_path.display())))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .or_else(|e| fail(format!("cannot lock {}: {e}", lock_path.display())))?;
    let mut store: Store = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .or_else(|e| fail(format!("corrupt store {}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Store::default(),
        Err(e) => return fail(format!("cannot read {}: {e}", path.display())),
    };
    let out = f(&mut store)?;
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(&store).or_else(|e| fail(e.to_string()))?;
    fs::write(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, &path))
        .or_else(|e| fail(format!("cannot save store: {e}")))?;
    Ok(out)
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// An id of opencode's shape: prefix, 12 hex of (ms * 4096 + counter) (inverted for sessions),
/// 14 base62 characters.
pub(super) fn new_id(store: &mut Store, prefix: &str) -> String {
    store.counter += 1;
    let mut v = now_ms().wrapping_mul(0x1000).wrapping_add(store.counter % 0x1000);
    if prefix == "ses" {
        v = !v;
    }
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // Not random, but unique enough for a fake: a mix of time, pid and counter.
    let mut x = now_ms()
        ^ (u64::from(std::process::id()) << 32)
        ^ store.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut id = format!("{prefix}_{:012x}", v & 0xffff_ffff_ffff);
    for _ in 0..14 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        id.push(ALPHABET[(x % 62) as usize] as char);
    }
    id
}

pub(super) fn deny_rules() -> Value {
    json!([
        {"permission": "question", "pattern": "*", "action": "deny"},
        {"permission": "plan_enter", "pattern": "*", "action": "deny"},
        {"permission": "plan_exit", "pattern": "*", "action": "deny"}
    ])
}

/// The project of a directory: its git repository (all worktrees of one repository share it),
/// else `global`, like the real CLI.
pub(super) fn project_of(dir: &Path) -> String {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        let git = d.join(".git");
        if git.is_dir() {
            return project_key(&git);
        }
        if git.is_file() {
            let text = fs::read_to_string(&git).unwrap_or_default();
            if let Some(gitdir) = text.trim().strip_prefix("gitdir:") {
                let gitdir = d.join(gitdir.trim());
                let common = fs::read_to_string(gitdir.join("commondir"))
                    .map(|c| gitdir.join(c.trim()))
                    .unwrap_or(gitdir);
                return project_key(&common);
            }
        }
        cur = d.parent();
    }
    "global".to_owned()
}

pub(super) fn project_key(git_common_dir: &Path) -> String {
    let p = git_common_dir.canonicalize().unwrap_or_else(|_| git_common_dir.to_owned());
    // FNV-1a of the path: stable, and the same for every worktree of the repository.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in p.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The directory this process works in, decided as opencode 1.18.33 decides it: `PWD` when it
/// is set (whatever the real cwd is), else the cwd.
pub(super) fn cwd() -> Res<PathBuf> {
    if let Some(pwd) = env("PWD") {
        let p = PathBuf::from(pwd);
        return Ok(p.canonicalize().unwrap_or(p));
    }
    let d = std::env::current_dir().or_else(|e| fail(format!("no current directory: {e}")))?;
    Ok(d.canonicalize().unwrap_or(d))
}

pub(super) fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
