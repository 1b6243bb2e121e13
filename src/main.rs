//! The `certman` binary.

fn main() -> std::process::ExitCode {
    certman::cli::main()
}
