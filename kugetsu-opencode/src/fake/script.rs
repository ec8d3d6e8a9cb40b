//! What tests script and read back: the scripted turns (`FAKE_OPENCODE_SCRIPT`) and the record
//! of every invocation (`FAKE_OPENCODE_RECORD`).

use super::*;

pub(super) fn record(argv: &[String], stdin: Option<&str>, message: Option<&str>) {
    let Some(path) = env("FAKE_OPENCODE_RECORD") else { return };
    let mut names: Vec<String> =
        std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
    names.sort();
    let line = json!({
        "argv": argv,
        "cwd": std::env::current_dir().map(|d| path_str(&d)).unwrap_or_default(),
        "pwd": env("PWD"),
        "env_names": names,
        "stdin": stdin,
        "message": message,
    });
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

#[derive(Serialize, Deserialize, Default)]
pub(super) struct Script {
    #[serde(default)]
    pub(super) turns: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) default: Option<Value>,
}

/// The next scripted turn. Turns are consumed: the first one is removed from the script file
/// (under the store lock, so parallel runs each get their own).
pub(super) fn next_turn() -> Res<Value> {
    next_turn_at(env("FAKE_OPENCODE_SCRIPT"))
}

/// [`next_turn`] of the script at `path` (the 2.x serve plays its client's script).
pub(super) fn next_turn_at(path: Option<String>) -> Res<Value> {
    let Some(path) = path else { return Ok(json!({"mode": "ok"})) };
    let text =
        fs::read_to_string(&path).or_else(|e| fail(format!("cannot read script {path}: {e}")))?;
    let mut script: Script =
        serde_json::from_str(&text).or_else(|e| fail(format!("bad script {path}: {e}")))?;
    if script.turns.is_empty() {
        return Ok(script.default.unwrap_or_else(|| json!({"mode": "ok"})));
    }
    let turn = script.turns.remove(0);
    let bytes = serde_json::to_vec(&script).or_else(|e| fail(e.to_string()))?;
    fs::write(&path, bytes).or_else(|e| fail(format!("cannot update script {path}: {e}")))?;
    Ok(turn)
}
