//! The `kugetsu` binary: everything is in the library so tests and the demo share it.

fn main() -> std::process::ExitCode {
    kugetsu_cli::main()
}
