//! The `undertone` binary: a thin shell over the library.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    // Errors are shown as their chain of causes (`{e:#}` below), never with a backtrace, so
    // a RUST_BACKTRACE set for panics must not make every library error capture one: tract
    // builds and drops errors while it optimises a model, and capturing a backtrace for each
    // costs the note model's load about 10 ms of CPU.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: first thing in main, before any thread exists that could read the
        // environment.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    let cli = undertone::cmds::Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(undertone::web::logs::TeeStderr)
        .init();
    match undertone::cmds::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<undertone::cmds::StdoutClosed>() => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
