//! The real opencode, pinned, installed from the npm registry into the target directory by the
//! first test that needs it; shared by every test suite that drives the real binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The opencode version the suite is checked against.
pub const VERSION: &str = "1.18.33";
/// The opencode 2 version the 2.x driver is checked against (npm `@opencode/cli`).
pub const VERSION2: &str = "2.1.2";

/// The opencode binary, installed once per target dir; None (after saying why) when it
/// cannot be had.
pub fn opencode() -> Option<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    found(BIN.get_or_init(|| install("opencode-ai", VERSION, VERSION)), VERSION)
}

/// The opencode 2 binary, like [`opencode`]. npm warns that the package's postinstall script
/// is not allowed to run: the binary works without it.
pub fn opencode2() -> Option<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let printed = format!("opencode v{VERSION2}");
    found(BIN.get_or_init(|| install("@opencode/cli", VERSION2, &printed)), VERSION2)
}

fn found(found: &Result<PathBuf, String>, version: &str) -> Option<PathBuf> {
    match found {
        Ok(bin) => Some(bin.clone()),
        Err(why) => {
            if std::env::var_os("KUGETSU_REAL_OPENCODE").is_some_and(|v| v == "1") {
                panic!("KUGETSU_REAL_OPENCODE=1 but the real opencode is unavailable: {why}");
            }
            // Straight to the stderr handle: the harness captures eprintln! of passing tests,
            // and a skip must be seen.
            let _ =
                writeln!(std::io::stderr(), "SKIPPED: real opencode {version} unavailable: {why}");
            None
        }
    }
}

/// npm `package@version` into the target dir; its `opencode` must print `printed`.
fn install(package: &str, version: &str, printed: &str) -> Result<PathBuf, String> {
    let prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("opencode-npm-{version}"));
    let package =
        kugetsu_test_support::npm::Package { name: package, version, bin: "opencode", printed };
    kugetsu_test_support::npm::install(&prefix, &package)
}
