//! `prune`: state nobody refers to any more (session files, worktrees, registrations, temp
//! files), listed, and removed with `force` unless removing it would lose work.

use super::*;

/// What `prune` found (and removed, with `force`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Session files no index entry refers to.
    pub session_files: Vec<PathBuf>,
    /// Worktree directories no session refers to.
    pub worktrees: Vec<PathBuf>,
    /// Orphans kept because removing them would lose work (with the reason).
    pub kept: Vec<(PathBuf, String)>,
    /// Stale worktree registrations dropped from mirrors.
    pub registrations: Vec<PathBuf>,
    /// Temp files left by writers that were killed mid-write.
    pub temp_files: Vec<PathBuf>,
    /// Whether anything was actually removed.
    pub removed: bool,
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let mut out = Vec::new();
    // A state sub-directory planted as a symlink would make prune list, and delete, entries of
    // whatever it points to.
    if dir.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(StorageError::Symlink { path: dir.into() });
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(StorageError::Io { action: "list", path: dir.into(), source }),
    };
    for entry in entries {
        let entry = entry.map_err(|source| StorageError::Io {
            action: "list",
            path: dir.into(),
            source,
        })?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

impl Orchestrator {
    /// `prune`: session files and worktrees no index entry refers to (always keeping base and
    /// PM agent), plus stale worktree registrations. Only reports unless `force`.
    pub fn prune(&self, force: bool) -> Result<PruneReport, OrchestratorError> {
        let index = self.index_or_err()?;
        let mut report = PruneReport::default();
        let known_files: BTreeSet<&str> = index.issues.values().map(String::as_str).collect();
        let mut known_worktrees = BTreeSet::new();
        for name in index.issues.values() {
            if let Ok(Some(f)) = storage::read_json::<SessionFile>(&self.state.session_path(name))
                && let Some(p) = f.worktree_path
            {
                known_worktrees.insert(p);
            }
            if let Some(stem) = name.strip_suffix(".json") {
                known_worktrees.insert(self.state.worktrees_dir().join(stem));
            }
        }
        for entry in read_dir_sorted(&self.state.sessions_dir())? {
            let name =
                entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let keep = name == "base.json"
                || name == "pm-agent.json"
                || name.starts_with('.')
                || !name.ends_with(".json")
                || known_files.contains(name.as_str());
            if !keep {
                report.session_files.push(entry);
            }
        }
        for entry in read_dir_sorted(&self.state.worktrees_dir())? {
            let is_dir = entry.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false);
            if !known_worktrees.contains(&entry) && (is_dir || entry.symlink_metadata().is_ok()) {
                report.worktrees.push(entry);
            }
        }
        if !force {
            // Say now what `--force` would keep, in the words it would use: an orphan worktree
            // with unsaved work.
            for path in std::mem::take(&mut report.worktrees) {
                let unsaved = path
                    .symlink_metadata()
                    .is_ok_and(|m| m.is_dir())
                    .then(|| self.worktrees.unsaved_work(&path).ok())
                    .flatten()
                    .filter(|u| !u.is_empty());
                match unsaved {
                    Some(unsaved) => {
                        let why = WorktreeError::WouldLoseWork { path: path.clone(), unsaved };
                        report.kept.push((path, why.to_string()));
                    }
                    None => report.worktrees.push(path),
                }
            }
            return Ok(report);
        }
        for path in &report.session_files {
            storage::remove_file(path)?;
        }
        let mut removed_worktrees = Vec::new();
        for path in std::mem::take(&mut report.worktrees) {
            match self.remove_orphan_worktree(&path) {
                Ok(()) => removed_worktrees.push(path),
                Err(reason) => report.kept.push((path, reason)),
            }
        }
        report.worktrees = removed_worktrees;
        report.registrations = self.worktrees.prune()?;
        for dir in [
            self.state.root().to_path_buf(),
            self.state.sessions_dir(),
            self.state.queue_items_dir(),
            self.state.env_dir(),
        ] {
            report
                .temp_files
                .extend(storage::remove_stale_temp_files(&dir, &*self.settings.liveness)?);
        }
        report.removed = true;
        Ok(report)
    }

    fn remove_orphan_worktree(&self, path: &Path) -> Result<(), String> {
        let meta = path.symlink_metadata().map_err(|e| e.to_string())?;
        if !meta.is_dir() {
            // A symlink or file planted in worktrees/: remove the entry itself, never its target.
            return std::fs::remove_file(path).map_err(|e| e.to_string());
        }
        match self.worktrees.remove(path, RemoveOptions::default()) {
            Ok(()) => Ok(()),
            Err(WorktreeError::NoSuchWorktree { .. }) => {
                // Not a registered worktree: a leftover directory. remove_dir_all does not
                // follow symlinks inside it.
                std::fs::remove_dir_all(path).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}
