//! The opencode crate's scripted fake (`kugetsu_opencode::fake`, see its CONFORMANCE.md), as a
//! binary of this package so that the conformance suite can find it.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(kugetsu_opencode::fake::main(std::env::args().skip(1).collect()))
}
