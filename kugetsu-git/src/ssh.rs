//! `ssh://` remotes without prompts.
//!
//! gix runs the system `ssh` for these remotes. Left alone, `ssh` asks on the terminal for an
//! unknown host key or a key's passphrase; kugetsu's starts often run where nobody answers (the
//! daemon, an agent's shell) or under a progress bar, so a prompt is a hang or a garbled screen.
//! Unless the user chose an ssh command themselves (`GIT_SSH_COMMAND`, `GIT_SSH`, or
//! `core.sshCommand` in their git configuration), kugetsu runs `ssh -o BatchMode=yes`, which
//! fails at once where it would have prompted; keys from `ssh-agent` and unencrypted keys still
//! work. The setting lives only in memory: nothing is written to the mirror's configuration, so
//! `git` run by hand or by an agent in a worktree behaves as the user configured it.

use gix::bstr::ByteSlice;

use crate::config::GitConfig;

/// The command gix runs for `ssh://` remotes when the user configured none.
pub(crate) const BATCH_SSH: &str = "ssh -o BatchMode=yes";

/// Environment variables through which git users choose their ssh command.
const SSH_COMMAND_VARS: [&str; 2] = ["GIT_SSH_COMMAND", "GIT_SSH"];

/// Configuration overrides making `url` (if it is an `ssh://` or scp-like remote) use
/// [`BATCH_SSH`]; empty when the user chose an ssh command or the remote is not ssh.
pub(crate) fn overrides(config: GitConfig, url: &str) -> Vec<String> {
    let is_ssh = gix::url::parse(url.as_bytes().as_bstr())
        .is_ok_and(|url| url.scheme == gix::url::Scheme::Ssh);
    if !is_ssh || (config == GitConfig::User && user_chose_ssh_command()) {
        return Vec::new();
    }
    // `ssh.variant=ssh` tells gix which options the command understands, instead of having it
    // run the command once more to find out.
    vec![format!("core.sshCommand={BATCH_SSH}"), "ssh.variant=ssh".to_string()]
}

/// Whether the environment or the user's global git configuration names an ssh command.
fn user_chose_ssh_command() -> bool {
    if SSH_COMMAND_VARS.iter().any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty())) {
        return true;
    }
    let configured = |file: Result<gix::config::File, _>| {
        file.ok().is_some_and(|f| f.string("core.sshCommand").is_some())
    };
    configured(gix::config::File::from_globals())
        || configured(gix::config::File::from_environment_overrides())
}
