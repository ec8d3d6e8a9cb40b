//! The opencode event parser on arbitrary lines of stdout and stderr: never panics.
#![no_main]

use kugetsu_opencode::events::{parse_stderr_line, parse_stdout_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        let _ = parse_stdout_line(line);
        let _ = parse_stderr_line(line);
    }
});
