//! `fake-opencode`: the scripted stand-in for the opencode CLI (see `kugetsu_opencode::fake`
//! and CONFORMANCE.md).

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(kugetsu_opencode::fake::main(std::env::args().skip(1).collect()))
}
