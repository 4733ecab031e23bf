//! `dagctl-runner tasks run DAG RUN TASK [--try N] [--map-index N]` (and `tasks host`, the runner host that
//! forks them): the task runner alone (no engine, no web,
//! no store code), which the local executor starts for each try when it sits beside `dagctl`: a smaller binary
//! starts faster, and every try pays that start.

fn main() -> std::process::ExitCode {
    // As `dagctl`: what a task writes is for its user alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "tasks") {
        match args.next() {
            Some(verb) if verb == "run" => return dagctl::runner::run_main(),
            Some(verb) if verb == "host" => return dagctl::runner::host_main(),
            _ => {}
        }
    }
    eprintln!(
        "usage: dagctl-runner tasks run DAG_ID RUN_ID TASK_ID [--try N] [--map-index N] (started by an executor)"
    );
    std::process::ExitCode::from(2)
}
