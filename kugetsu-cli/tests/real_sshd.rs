//! Remote access through the binary and `scripts/`: `sshd-setup.sh` against a real sshd, the
//! scripts through shellcheck. One module per file, linked as one test binary. Without sshd or
//! shellcheck the tests say why and pass as skipped, unless `KUGETSU_REAL_SSHD=1` is set.

mod support;

mod remote_ssh;
mod setup_scripts;
