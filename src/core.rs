//! `certman-core`: the whole of certman. The `certman` launcher (`src/main.rs`) runs it for
//! every command line that no `certman agent` runs.

mod process_guard;

fn main() -> std::process::ExitCode {
    process_guard::no_core_dumps();
    certman::cli::main()
}
