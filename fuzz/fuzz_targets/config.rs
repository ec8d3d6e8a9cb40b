//! The config file parser (`Config::resolve`) on arbitrary text: an error or a config, never a
//! panic, and every error names the file.
#![no_main]

use std::path::Path;

use kugetsu_core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/state/config");
    let env = |name: &str| (name == "HOME_SUFFIX").then(|| "x".to_string());
    match Config::resolve(Path::new("/home/u"), Some((path, text)), &env, &[]) {
        Ok(config) => {
            let _ = config.entries();
            let _ = config.run_limits();
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty());
        }
    }
});
