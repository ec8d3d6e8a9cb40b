//! `fake-claude`: the scripted stand-in for the Claude Code CLI (see `kugetsu_claude::fake`).

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(kugetsu_claude::fake::main(std::env::args().skip(1).collect()))
}
