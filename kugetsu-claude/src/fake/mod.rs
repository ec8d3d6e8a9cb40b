//! The fake Claude Code (`fake-claude`): a scripted stand-in for `claude -p` 2.1.328, with the
//! dialect the driver relies on and nothing more:
//!
//! - `-p --output-format stream-json --verbose` (without `--verbose`: the real error, exit 1);
//!   the prompt is the positional argument, else stdin read to EOF; neither: exit 1;
//! - `--session-id UUID` (not a UUID, or in use: exit 1), `--resume ID` (unknown: an
//!   `error_during_execution` result, exit 1), `--resume BASE --fork-session --session-id NEW`
//!   (history copied with `cwd` rewritten to the current directory, stored under it);
//! - transcripts at `<config>/projects/<cwd, every non-alphanumeric byte '-'>/<id>.jsonl`,
//!   `<config>` = `CLAUDE_CONFIG_DIR` or `$HOME/.claude`; the real cwd counts, never `PWD`;
//! - permissions as in `-p`: a `Write` runs only under `--permission-mode acceptEdits` and
//!   inside the cwd, a `Bash` call only with `--allowedTools Bash`; anything else is refused
//!   at once (`system/permission_denied`, `permission_denials`) and the run exits 0;
//! - stream-json lines shaped like the real ones (`system/init`, `assistant`, `user`,
//!   `system/api_retry`, `result` with `usage` and `total_cost_usd`); unknown flags:
//!   `error: unknown option '--x'`, exit 1; `--version`;
//! - `--max-budget-usd X`: checked after each model request of the turn (a turn with a tool
//!   call makes two, each half its `cost`): once what the process spent reaches X, no tool
//!   runs and the turn ends with an `error_max_budget_usd` result
//!   (`terminal_reason: "budget_exhausted"`), exit 1.
//!
//! Scripting: `FAKE_CLAUDE_SCRIPT=<file>`, JSON `{"turns": [TURN, ...], "default": TURN}`; each
//! turn consumes the first TURN (removed from the file), else `default`, else `{"mode":"ok"}`.
//! A TURN's `cost` (default 0.0124) is what it adds to the session's `total_cost_usd`, which
//! is the session's running total as in the real one (kept in the transcript, so a resume and
//! a fork go on from it). A TURN has a `mode`:
//! - `ok` (`text`): a text answer;
//! - `tool` (`path`, `content`, `text`): a `Write` of `path` (relative to the cwd), then text;
//! - `bash` (`command`, `text`): a `Bash` call running `sh -c command` in the cwd;
//! - `api_error` (`status`, `message`, `retries`, `delay_ms`, `error`): `retries`
//!   `system/api_retry` lines (`error` from the status: 429 `rate_limit`, 529 `overloaded`),
//!   each followed by a wait of `delay_ms` (default 10) as the real one waits out
//!   `retry-after`, then the synthetic `assistant` line (`is_api_error_message`, `error`) and
//!   an `is_error` result (`terminal_reason: "api_error"`), exit 1. With `error:
//!   "billing_error"` (a used-up credit balance; `message` is the text) nothing is retried.
//!   Unlike the real one, the delay has no jitter and the retries are not capped at 10 nor by
//!   `CLAUDE_CODE_MAX_RETRIES`, and a 400 is not silently re-sent;
//! - `hang` (`detached`): a `Bash` call that never ends; with `detached`, its command runs in
//!   a process group of its own (as the real Bash tool's `setsid`) and prints its pid first;
//!   the fake then ignores SIGTERM, as the real one takes a while to stop during a tool.
//!
//! `FAKE_CLAUDE_RECORD=<file>` appends one JSON line per invocation: `argv`, `cwd`,
//! `env_names`, `stdin`.

#![allow(clippy::print_stdout, clippy::print_stderr)] // A CLI stand-in: printing is its job.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The version the fake stands in for.
pub const VERSION: &str = "2.1.328";

/// What the command line asked for.
#[derive(Debug, Default)]
struct Flags {
    print: bool,
    format: Option<String>,
    verbose: bool,
    session_id: Option<String>,
    resume: Option<String>,
    fork: bool,
    mode: Option<String>,
    /// `--max-budget-usd`.
    max_budget: Option<f64>,
    allowed: Vec<String>,
    disallowed: Vec<String>,
    prompt: Option<String>,
}

/// Runs the fake with `args` (without the program name); returns the exit code.
pub fn main(args: Vec<String>) -> u8 {
    match run(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}");
            1
        }
    }
}

fn run(args: Vec<String>) -> Result<u8, String> {
    if args.iter().any(|a| a == "--version" || a == "-v") {
        println!("{VERSION} (Claude Code)");
        return Ok(0);
    }
    let flags = parse(&args)?;
    if !flags.print {
        return Err("the fake Claude Code has no TUI: use -p".into());
    }
    if flags.format.as_deref() != Some("stream-json") {
        return Err("the fake Claude Code speaks only --output-format stream-json".into());
    }
    if !flags.verbose {
        return Err(
            "Error: When using --print, --output-format=stream-json requires --verbose".into()
        );
    }
    let mut stdin = String::new();
    if flags.prompt.is_none() {
        let _ = std::io::stdin().read_to_string(&mut stdin);
    }
    record(&args, &stdin);
    let prompt = flags.prompt.clone().unwrap_or(stdin);
    if prompt.is_empty() {
        return Err("Error: Input must be provided either through stdin or as a prompt argument when using --print".into());
    }
    let cwd = std::env::current_dir().map_err(|e| format!("no cwd: {e}"))?;
    let config = config_dir()?;
    let id = session(&flags, &config, &cwd)?;
    let Some(id) = id else {
        return Ok(1);
    };
    let turn = next_turn();
    // The session's running total, as the real one restores it on a resume (a fork's history
    // carries its base's).
    let spent_before = find(&config, &id).map(|p| spent_in(&p)).unwrap_or(0.0);
    let cost = turn.get("cost").and_then(Value::as_f64).unwrap_or(DEFAULT_COST);
    let out =
        Out { id: id.clone(), cwd: cwd.clone(), spent_before, cost, spent: Default::default() };
    out.line(json!({"type": "system", "subtype": "init", "session_id": id, "cwd": cwd,
        "model": "claude-opus-5-5", "permissionMode": flags.mode.clone().unwrap_or("default".into()),
        "tools": tools(&flags), "claude_code_version": VERSION, "apiKeySource": "ANTHROPIC_API_KEY"}));
    let transcript = transcript_path(&config, &cwd, &id);
    append(
        &transcript,
        &json!({"type": "user", "sessionId": id, "cwd": cwd,
        "message": {"role": "user", "content": prompt}}),
    )?;
    let code = play(&out, &flags, &turn)?;
    let total = if code == 0 { spent_before + cost } else { spent_before + out.spent.get() };
    append(
        &transcript,
        &json!({"type": "assistant", "sessionId": id, "cwd": cwd, "total_cost_usd": total,
        "message": {"role": "assistant", "content": [{"type": "text", "text": "turn done"}]}}),
    )?;
    Ok(code)
}

fn parse(args: &[String]) -> Result<Flags, String> {
    let mut f = Flags::default();
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let mut value =
            || it.next().cloned().ok_or_else(|| format!("error: option '{a}' argument missing"));
        match a.as_str() {
            "-p" | "--print" => f.print = true,
            "--verbose" => f.verbose = true,
            "--fork-session" => f.fork = true,
            "--output-format" => f.format = Some(value()?),
            "--session-id" => f.session_id = Some(value()?),
            "--resume" | "-r" => f.resume = Some(value()?),
            "--permission-mode" => f.mode = Some(value()?),
            "--max-budget-usd" => {
                let v = value()?;
                let usd = v.parse::<f64>().ok().filter(|u| *u > 0.0);
                f.max_budget = Some(usd.ok_or_else(|| {
                    format!("error: --max-budget-usd {v} is not a positive number")
                })?);
            }
            "--model" => {
                value()?;
            }
            "--allowedTools" | "--allowed-tools" | "--disallowedTools" | "--disallowed-tools" => {
                let mut tools = Vec::new();
                while let Some(v) = it.next_if(|v| !v.starts_with('-')) {
                    tools.extend(v.split([',', ' ']).filter(|t| !t.is_empty()).map(String::from));
                }
                if a.starts_with("--allowed") {
                    f.allowed.extend(tools)
                } else {
                    f.disallowed.extend(tools)
                }
            }
            other if other.starts_with('-') => {
                return Err(format!("error: unknown option '{other}'"));
            }
            prompt => f.prompt = Some(prompt.to_owned()),
        }
    }
    Ok(f)
}

/// The session this turn runs in, made (new or forked) if asked; `None` after reporting an
/// unknown `--resume` as the real CLI does.
fn session(f: &Flags, config: &Path, cwd: &Path) -> Result<Option<String>, String> {
    if let Some(id) = &f.session_id
        && !crate::args::is_uuid(id)
    {
        return Err("Error: Invalid session ID. Must be a valid UUID.".into());
    }
    let in_use = |id: &str| find(config, id).is_some();
    match (&f.resume, f.fork) {
        (None, _) => {
            let id = f.session_id.clone().unwrap_or_else(random_id);
            if in_use(&id) {
                return Err(format!("Error: Session ID {id} is already in use."));
            }
            Ok(Some(id))
        }
        (Some(resume), fork) => {
            let Some(base) = find(config, resume) else {
                let line = json!({"type": "result", "subtype": "error_during_execution", "is_error": true,
                    "errors": [format!("No conversation found with session ID: {resume}")]});
                println!("{line}");
                eprintln!("No conversation found with session ID: {resume}");
                return Ok(None);
            };
            if !fork {
                return Ok(Some(resume.clone()));
            }
            let id = f.session_id.clone().unwrap_or_else(random_id);
            if in_use(&id) {
                return Err(format!("Error: Session ID {id} is already in use."));
            }
            let history = std::fs::read_to_string(&base).map_err(|e| e.to_string())?;
            let target = transcript_path(config, cwd, &id);
            for line in history.lines() {
                let Ok(mut v) = serde_json::from_str::<Value>(line) else { continue };
                v["cwd"] = json!(cwd);
                v["sessionId"] = json!(id);
                append(&target, &v)?;
            }
            Ok(Some(id))
        }
    }
}

/// What a turn costs unless its script says: one request at the default model's prices.
const DEFAULT_COST: f64 = 0.0124;

/// The last running total a transcript records.
fn spent_in(transcript: &Path) -> f64 {
    std::fs::read_to_string(transcript)
        .unwrap_or_default()
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok()?.get("total_cost_usd")?.as_f64())
        .unwrap_or(0.0)
}

struct Out {
    id: String,
    cwd: PathBuf,
    /// The session's total before this turn.
    spent_before: f64,
    /// What this turn costs if it succeeds.
    cost: f64,
    /// What a turn that did not succeed spent (its requests up to a spending cap).
    spent: std::cell::Cell<f64>,
}

impl Out {
    fn line(&self, v: Value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    }

    fn assistant(&self, content: Value) {
        self.line(json!({"type": "assistant", "session_id": self.id,
            "message": {"role": "assistant", "content": content,
                "usage": {"input_tokens": 40, "output_tokens": 12}}}));
    }

    fn tool_result(&self, tool_id: &str, content: &str, is_error: bool) {
        self.line(json!({"type": "user", "session_id": self.id, "message": {"role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": content,
                "is_error": is_error}]}}));
    }

    fn result(&self, text: &str, denials: &[Value], is_error: bool, reason: &str) {
        self.line(json!({"type": "result", "subtype": "success", "is_error": is_error,
            "num_turns": 2, "result": text, "session_id": self.id,
            "total_cost_usd": self.spent_before + if is_error { 0.0 } else { self.cost },
            "stop_reason": if is_error { Value::Null } else { json!("end_turn") },
            "terminal_reason": reason,
            "usage": {"input_tokens": 40, "cache_creation_input_tokens": 2000,
                "cache_read_input_tokens": 10000, "output_tokens": 12},
            "permission_denials": denials, "result_index": 0}));
    }

    /// Whether `--max-budget-usd` is reached once `spent` of this turn's cost is: then the
    /// turn's result says so.
    fn capped(&self, f: &Flags, spent: f64, requests: u32) -> bool {
        let Some(cap) = f.max_budget.filter(|cap| spent >= *cap) else { return false };
        self.spent.set(spent);
        self.line(json!({"type": "result", "subtype": "error_max_budget_usd", "is_error": true,
            "num_turns": requests, "session_id": self.id,
            "total_cost_usd": self.spent_before + spent, "terminal_reason": "budget_exhausted",
            "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0, "output_tokens": 0},
            "errors": [format!("Reached maximum budget (${cap})")],
            "permission_denials": [], "result_index": 0}));
        true
    }

    /// A tool call the permissions refuse: reported three ways, as the real CLI does.
    fn deny(&self, tool: &str, tool_id: &str, input: &Value, why: &str, denials: &mut Vec<Value>) {
        self.line(json!({"type": "system", "subtype": "permission_denied", "tool_name": tool,
            "tool_use_id": tool_id, "message": why,
            "decision_reason_type": "user-rejected"}));
        self.tool_result(tool_id, why, true);
        denials.push(json!({"tool_name": tool, "tool_use_id": tool_id, "tool_input": input}));
    }
}

fn play(out: &Out, f: &Flags, turn: &Value) -> Result<u8, String> {
    let s = |k: &str| turn.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let text = turn.get("text").and_then(Value::as_str).unwrap_or("done").to_owned();
    let mut denials = Vec::new();
    match s("mode").as_str() {
        "tool" => {
            let path = s("path");
            let input = json!({"file_path": out.cwd.join(&path), "content": s("content")});
            out.assistant(
                json!([{"type": "tool_use", "id": "toolu_1", "name": "Write", "input": input}]),
            );
            if out.capped(f, out.cost / 2.0, 1) {
                return Ok(1);
            }
            let target = out.cwd.join(&path);
            let inside = !Path::new(&path).is_absolute() && !path.split('/').any(|p| p == "..");
            if f.mode.as_deref() == Some("acceptEdits")
                && inside
                && !f.disallowed.iter().any(|t| t == "Write")
            {
                std::fs::write(&target, s("content")).map_err(|e| e.to_string())?;
                out.tool_result("toolu_1", "File created successfully", false);
            } else {
                let why = format!(
                    "Claude requested permissions to write to {}, but you haven't granted it yet.",
                    target.display()
                );
                out.deny("Write", "toolu_1", &input, &why, &mut denials);
            }
        }
        "bash" | "hang" => {
            let hang = s("mode") == "hang";
            let command = if hang { "sleep 3600".to_owned() } else { s("command") };
            let input = json!({"command": command});
            out.assistant(
                json!([{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": input}]),
            );
            if out.capped(f, out.cost / 2.0, 1) {
                return Ok(1);
            }
            if !f.allowed.iter().any(|t| t == "Bash") {
                out.deny("Bash", "toolu_1", &input, "This command requires approval", &mut denials);
            } else if hang {
                hang_in_tool(turn.get("detached").and_then(Value::as_bool) == Some(true));
            } else {
                let o = std::process::Command::new("sh")
                    .args(["-c", &command])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .map_err(|e| e.to_string())?;
                out.tool_result(
                    "toolu_1",
                    &String::from_utf8_lossy(&o.stdout),
                    !o.status.success(),
                );
            }
        }
        "api_error" => {
            let retries = turn.get("retries").and_then(Value::as_u64).unwrap_or(0);
            let status = turn.get("status").and_then(Value::as_u64).unwrap_or(529);
            let delay = turn.get("delay_ms").and_then(Value::as_u64).unwrap_or(10);
            let kind = match (s("error").as_str(), status) {
                ("", 429) => "rate_limit".to_owned(),
                ("", 529) => "overloaded".to_owned(),
                ("", 401) => "authentication_failed".to_owned(),
                ("", _) => "unknown".to_owned(),
                (error, _) => error.to_owned(),
            };
            // A used-up credit balance is not retried.
            let retries = if kind == "billing_error" { 0 } else { retries };
            for attempt in 1..=retries {
                out.line(json!({"type": "system", "subtype": "api_retry", "attempt": attempt,
                    "max_retries": 10, "retry_delay_ms": delay, "error_status": status,
                    "error": kind}));
                // Claude Code waits out `retry-after` before the next attempt.
                std::thread::sleep(std::time::Duration::from_millis(delay));
            }
            let message = match kind.as_str() {
                "billing_error" => s("message"),
                "rate_limit" => format!("API Error: Request rejected (429) · {}", s("message")),
                _ => format!("API Error: {status} {}", s("message")),
            };
            out.line(json!({"type": "assistant", "session_id": out.id, "error": kind,
                "api_error_status": status, "is_api_error_message": true,
                "message": {"role": "assistant", "model": "<synthetic>",
                    "content": [{"type": "text", "text": message}]}}));
            out.result(&message, &[], true, "api_error");
            return Ok(1);
        }
        _ => {}
    }
    out.assistant(json!([{"type": "text", "text": text}]));
    let requests = if matches!(s("mode").as_str(), "tool" | "bash") { 2 } else { 1 };
    if out.capped(f, out.cost, requests) {
        return Ok(1);
    }
    out.result(&text, &denials, false, "completed");
    Ok(0)
}

/// The Bash tool running a command that never ends; with `detached`, in a process group of its
/// own (whose pid is printed as the tool's progress) so that only a kill of its group, not of
/// the fake's, ends it. The fake ignores SIGTERM meanwhile.
fn hang_in_tool(detached: bool) -> ! {
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("3600").stdin(std::process::Stdio::null());
    if detached {
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    }
    if let Ok(child) = cmd.spawn() {
        println!(
            "{}",
            json!({"type": "system", "subtype": "task_started", "task_id": child.id().to_string()})
        );
        let _ = std::io::stdout().flush();
    }
    ignore_sigterm();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn ignore_sigterm() {
    // A handler that only sets a flag nobody reads: SIGTERM no longer ends the process.
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, flag);
}

fn tools(f: &Flags) -> Vec<&'static str> {
    ["Bash", "Edit", "Read", "Write", "AskUserQuestion", "ExitPlanMode"]
        .into_iter()
        .filter(|t| !f.disallowed.iter().any(|d| d == t))
        .collect()
}

fn config_dir() -> Result<PathBuf, String> {
    match std::env::var_os("CLAUDE_CONFIG_DIR").filter(|v| !v.is_empty()) {
        Some(d) => Ok(PathBuf::from(d)),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".claude"))
            .ok_or_else(|| "HOME is not set".into()),
    }
}

fn transcript_path(config: &Path, cwd: &Path, id: &str) -> PathBuf {
    let encoded: String = cwd
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    config.join("projects").join(encoded).join(format!("{id}.jsonl"))
}

fn find(config: &Path, id: &str) -> Option<PathBuf> {
    std::fs::read_dir(config.join("projects"))
        .ok()?
        .flatten()
        .map(|p| p.path().join(format!("{id}.jsonl")))
        .find(|p| p.is_file())
}

fn append(path: &Path, v: &Value) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{v}").map_err(|e| e.to_string())
}

fn random_id() -> String {
    crate::args::new_session_id().map(|id| id.to_string()).unwrap_or_default()
}

/// The next scripted turn (consumed from the script's `turns`), else its `default`.
fn next_turn() -> Value {
    let Some(path) = std::env::var_os("FAKE_CLAUDE_SCRIPT") else { return json!({"mode": "ok"}) };
    let Ok(text) = std::fs::read_to_string(&path) else { return json!({"mode": "ok"}) };
    let Ok(mut script) = serde_json::from_str::<Value>(&text) else { return json!({"mode": "ok"}) };
    if let Some(turns) = script.get_mut("turns").and_then(Value::as_array_mut)
        && !turns.is_empty()
    {
        let turn = turns.remove(0);
        let _ = std::fs::write(&path, script.to_string());
        return turn;
    }
    script.get("default").cloned().unwrap_or(json!({"mode": "ok"}))
}

fn record(args: &[String], stdin: &str) {
    let Some(path) = std::env::var_os("FAKE_CLAUDE_RECORD") else { return };
    let env_names: Vec<String> =
        std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
    let line = json!({"argv": args, "cwd": std::env::current_dir().ok(), "env_names": env_names,
        "stdin": stdin});
    let _ = append(Path::new(&path), &line);
}
