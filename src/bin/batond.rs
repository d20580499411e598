//! `batond`: a Baton member. Parses the configuration, sets up logging and runs the server
//! until SIGTERM or SIGINT.

use clap::Parser;

/// mimalloc rather than glibc's allocator: a member allocates and frees small buffers on
/// every request from several threads at once (see the README's Performance section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = baton::config::Args::parse();
    let cfg = match baton::config::Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("batond: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    baton::telemetry::init(cfg.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("batond: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(baton::server::run(cfg));
    // Blocking work still running (a sync stuck on a failing disk) must not keep the process.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "batond stopped");
            eprintln!("batond: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
