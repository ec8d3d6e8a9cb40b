//! The name of this machine, as the kernel has it.

/// The machine's host name (`/proc/sys/kernel/hostname`), or `None` when it cannot be read or
/// is empty. The caller decides what stands in for it (the CLI: `HOSTNAME`, then `localhost`).
pub fn machine_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_has_a_name_without_its_newline() {
        if let Some(name) = machine_name() {
            assert!(!name.is_empty() && name == name.trim(), "{name:?}");
        }
    }
}
