//! The child process of client-sim's `crash` scenario when client-sim runs inside a test: a test
//! harness cannot be that child itself.

fn main() -> std::process::ExitCode {
    client_sim::child_main_from_args()
}
