//! Showing what is happening: progress bars for clone, fetch and checkout (on a terminal only)
//! and a running account of what the agent does (tools it runs, what it says).

use std::io::Write;

use kugetsu_core::agent::{AgentEvent, EventSink, ToolStatus};
use kugetsu_core::worktree::{WorktreePhase, WorktreeProgress};

/// Progress bars on stderr when it is a terminal; nothing otherwise.
pub struct Bars {
    enabled: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Bars {
    /// Bars that draw only if `enabled` (stderr is a terminal).
    pub fn new(enabled: bool) -> Self {
        Bars { enabled, bar: None }
    }
}

impl WorktreeProgress for Bars {
    fn phase(&mut self, phase: WorktreePhase, total: Option<u64>) {
        if !self.enabled {
            return;
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        let label = match phase {
            WorktreePhase::Clone => "cloning",
            WorktreePhase::Fetch => "fetching",
            WorktreePhase::Checkout => "checking out",
        };
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label);
        self.bar = Some(bar);
    }
    fn advance(&mut self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }
    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Prints the agent's events as short lines (on stderr, so stdout stays for results).
pub struct EventPrinter<W: Write> {
    out: W,
    quiet: bool,
}

impl<W: Write> EventPrinter<W> {
    /// A printer; `quiet` drops the agent's text and keeps tool calls and errors.
    pub fn new(out: W, quiet: bool) -> Self {
        EventPrinter { out, quiet }
    }
}

/// The first non-blank line of an agent's `text`, cut to `max` characters, as printable text.
fn one_line(text: &str, max: usize) -> String {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if first.chars().count() > max {
        format!("{}…", shown(&first.chars().take(max).collect::<String>()))
    } else {
        shown(first)
    }
}

/// `text` with its control characters spelled out (`\u{1b}`): what an agent prints must not
/// drive the user's terminal (an escape can retitle it, set its clipboard, or redraw lines).
fn shown(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() })
        .collect()
}

impl<W: Write> EventSink for EventPrinter<W> {
    fn spawned(&mut self, pid: u32) {
        let _ = writeln!(self.out, "  agent started (pid {pid})");
    }
    fn event(&mut self, event: &AgentEvent) {
        let line = match event {
            AgentEvent::Text { text } if !self.quiet => format!("  agent: {}", one_line(text, 100)),
            AgentEvent::ToolUse { tool, status, title, error } => {
                let what = title.as_deref().map(|t| one_line(t, 80)).unwrap_or_default();
                match status {
                    ToolStatus::Error => format!(
                        "  tool {} failed: {}",
                        shown(tool),
                        one_line(error.as_deref().unwrap_or("error"), 80)
                    ),
                    _ if what.is_empty() || what == *tool => format!("  tool {}", shown(tool)),
                    _ => format!("  tool {}: {what}", shown(tool)),
                }
            }
            AgentEvent::PermissionRejected { permission } => {
                format!("  permission rejected: {}", shown(permission))
            }
            AgentEvent::Error { name, message } => {
                format!("  error {}: {}", shown(name), one_line(message, 100))
            }
            _ => return,
        };
        let _ = writeln!(self.out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_words_cannot_drive_the_terminal() {
        let mut out = Vec::new();
        let mut printer = EventPrinter::new(&mut out, false);
        let osc52 = "\u{1b}]52;c;aGk=\u{7}done \u{1b}[2J";
        printer.event(&AgentEvent::Text { text: osc52.into() });
        printer.event(&AgentEvent::ToolUse {
            tool: "ba\u{1b}[1msh".into(),
            status: ToolStatus::Error,
            title: None,
            error: Some("\u{9b}31m".into()),
        });
        printer.event(&AgentEvent::PermissionRejected { permission: "x\u{7}".into() });
        printer.event(&AgentEvent::Error { name: "E\u{1b}".into(), message: "m\u{8}".into() });
        let printed = String::from_utf8(out).unwrap();
        assert!(!printed.chars().any(|c| c.is_control() && c != '\n'), "{printed:?}");
        assert!(printed.contains("agent: \\u{1b}]52;c;aGk=\\u{7}done \\u{1b}[2J"), "{printed:?}");
        assert!(printed.contains("tool ba\\u{1b}[1msh failed: \\u{9b}31m"), "{printed:?}");
    }
}
