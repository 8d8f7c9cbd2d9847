use std::process::ExitCode;

fn main() -> ExitCode {
    coach::cli::main()
}
