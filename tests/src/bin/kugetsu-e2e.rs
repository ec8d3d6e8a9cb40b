//! The `kugetsu` program, as a binary of this package so that its end-to-end tests can start it
//! (and start it under a driver's program name, as its bundled fake, like `kugetsu demo` does).

fn main() -> std::process::ExitCode {
    kugetsu_cli::main()
}
