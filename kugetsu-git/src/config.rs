//! Which git configuration applies to kugetsu's mirrors: the user's, as `git` would read it, or
//! only each repository's own. The backend opens mirrors with it and the ssh overrides honour
//! the user's choice of ssh command only when the user's configuration applies.

/// Which git configuration files gix reads besides each repository's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GitConfig {
    /// System, global (`~/.gitconfig`) and `GIT_CONFIG_*` environment configuration apply, as
    /// they do for `git` (proxies, `url.*.insteadOf`, `core.autocrlf`, ...).
    #[default]
    User,
    /// Only the repository's own configuration: for tests and for callers that must not depend
    /// on the user's environment.
    Isolated,
}

impl GitConfig {
    /// gix's open options reading the configuration files this choice names.
    pub(crate) fn open_options(self) -> gix::open::Options {
        match self {
            GitConfig::User => gix::open::Options::default(),
            GitConfig::Isolated => gix::open::Options::isolated(),
        }
    }
}
