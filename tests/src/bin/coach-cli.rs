//! The `coach` command line, for the end-to-end tests.

fn main() -> std::process::ExitCode {
    coach::cli::main()
}
