//! The env-file parser (`EnvFile::parse`) on arbitrary text: an error naming the file and a
//! line that exists, or a file whose every key is a shell identifier and every value can live
//! in an environment. Every parsed value survives being written back (`set` quotes it), edits
//! change only the key they name, and no sensitive value is ever shown unmasked.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use kugetsu_core::agent::AgentEnv;
use kugetsu_core::env_file::{
    EnvFile, EnvFileError, MASK, is_sensitive, mask_value, validate_key, validate_value,
};
use libfuzzer_sys::fuzz_target;

const PATH: &str = "/state/env/default.env";

fn reparse(text: &str) -> BTreeMap<String, String> {
    EnvFile::parse(Path::new(PATH), text).expect("text kugetsu wrote parses").vars()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new(PATH);
    let file = match EnvFile::parse(path, text) {
        Ok(file) => file,
        Err(EnvFileError::Syntax { path: p, line, message }) => {
            assert_eq!(p, path);
            let lines = text.split('\n').count();
            assert!((1..=lines).contains(&line), "line {line} of {lines}: {message}");
            assert!(!message.is_empty());
            return;
        }
        Err(e) => panic!("parsing text can only fail on syntax: {e}"),
    };
    let vars = file.vars();
    for (key, value) in &vars {
        validate_key(key).expect("a parsed key is an identifier");
        validate_value(key, value).expect("a parsed value fits an environment");
        assert_eq!(file.get(key), Some(value.as_str()), "the last assignment wins");
        // Masking: a sensitive non-empty value is never shown, anything else is shown as is.
        let shown = mask_value(key, value);
        if is_sensitive(key) && !value.is_empty() {
            assert_eq!(shown, MASK, "{key}");
        } else {
            assert_eq!(shown, value, "{key}");
        }
    }
    // The environment's Debug output is the masked map, never a raw sensitive value.
    let masked: BTreeMap<&str, &str> =
        vars.iter().map(|(k, v)| (k.as_str(), mask_value(k, v))).collect();
    assert_eq!(format!("{:?}", AgentEnv(vars.clone())), format!("{masked:?}"));
    assert_eq!(reparse(file.text()), vars, "parsing is deterministic");

    // Every value round-trips through kugetsu's own quoting.
    let mut fresh = EnvFile::empty(path);
    for (key, value) in &vars {
        assert_eq!(fresh.set(key, value).expect("set a parsed value"), None);
    }
    assert_eq!(fresh.vars(), vars, "written:\n{}", fresh.text());
    assert_eq!(reparse(fresh.text()), vars);

    // Editing one key keeps every other one; a new key is appended, the old text kept.
    let value = text.lines().last().unwrap_or_default();
    if validate_value("V", value).is_err() {
        return;
    }
    if let Some(key) = vars.keys().next() {
        let mut edited = file.clone();
        let previous = edited.set(key, value).expect("set");
        assert_eq!(previous.as_ref(), vars.get(key));
        let mut expected = vars.clone();
        expected.insert(key.clone(), value.to_string());
        assert_eq!(edited.vars(), expected);
        assert_eq!(reparse(edited.text()), expected);

        let mut removed = file.clone();
        assert!(removed.remove(key).expect("remove"));
        expected.remove(key);
        assert_eq!(removed.vars(), expected);
        assert_eq!(reparse(removed.text()), expected);
        assert!(!removed.remove(key).expect("remove again"));
    }
    let new_key = "KUGETSU_FUZZ_NEW";
    if !vars.contains_key(new_key) {
        let mut appended = file.clone();
        assert_eq!(appended.set(new_key, value).expect("set a new key"), None);
        assert!(appended.text().starts_with(text), "the old text is kept as it was");
        let mut expected = vars.clone();
        expected.insert(new_key.to_string(), value.to_string());
        assert_eq!(reparse(appended.text()), expected);
    }
});
