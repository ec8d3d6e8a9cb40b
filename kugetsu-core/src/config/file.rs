//! The `config` file in the state directory: reading it, and the commented template `init`
//! writes, made from the settings table.

use std::path::PathBuf;

use super::ConfigError;
use super::settings::{DefaultValue, SETTINGS};
use crate::shell;
use crate::state::StateDir;
use crate::storage;

/// The `config` file's path and text, `None` when there is none.
pub(super) fn read_config_file(state: &StateDir) -> Result<Option<(PathBuf, String)>, ConfigError> {
    let path = state.config_path();
    let Some(bytes) = storage::read_bytes(&path)? else { return Ok(None) };
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        ConfigError::NotUtf8 { path: path.clone(), line }
    })?;
    Ok(Some((path, text)))
}

/// The commented `config` file `init` writes: the spec's header, then every setting commented
/// out with its default, so that uncommenting a line is all a user has to do.
pub fn default_config_text() -> String {
    let mut out = String::from(
        "# User configuration overrides\n\
         # Values set here take precedence over defaults\n\
         # Changes take effect immediately (no re-init needed)\n\
         # Environment variables of the same name override this file.\n",
    );
    for setting in SETTINGS {
        let (default, example) = match setting.default {
            DefaultValue::Is(value) => (value.to_string(), setting.example.unwrap_or(value)),
            DefaultValue::Unset(words) => (format!("({words})"), setting.example.unwrap_or("")),
        };
        out.push_str(&format!(
            "\n# {} (default: {default})\n# {}={}\n",
            setting.summary,
            setting.name,
            // `~/` stays unquoted: the file expands it, as a shell would.
            if example.starts_with("~/") { example.to_string() } else { shell::quote(example) }
        ));
    }
    out
}

/// Writes [`default_config_text`] to `state`'s `config` unless a file is already there (a
/// user's settings are never replaced). Returns whether it wrote one.
pub fn write_default_config(state: &StateDir) -> Result<bool, ConfigError> {
    let path = state.config_path();
    storage::with_exclusive_lock(&state.lock_path("config"), || {
        if storage::read_bytes(&path)?.is_some() {
            return Ok(false);
        }
        storage::atomic_write(&path, default_config_text().as_bytes())?;
        Ok(true)
    })
}

/// README.md's settings table (header included), one row per setting.
pub fn readme_table() -> String {
    let mut out = String::from("| key | default | meaning |\n|---|---|---|\n");
    for setting in SETTINGS {
        out.push_str(&setting.readme_row());
        out.push('\n');
    }
    out
}
