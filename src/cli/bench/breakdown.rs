//! `--breakdown`: the members' write-path stages reset before the run and printed after it
//! (as `baton cluster stages`).

use std::time::Duration;

use crate::cli::output::Printer;
use crate::cli::CliError;
use crate::client::ClientOptions;

fn options(base: &ClientOptions) -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(5),
        ..base.clone()
    }
}

/// Resets the stages of every member, printing nothing.
pub(super) async fn reset(endpoints: &[String], base: &ClientOptions) -> Result<(), CliError> {
    let mut quiet = Printer::sink();
    crate::cli::commands::stages(endpoints, options(base), true, &mut quiet).await
}

/// Prints the stages of every member to `out`.
pub(super) async fn print(
    endpoints: &[String],
    base: &ClientOptions,
    out: &mut Printer,
) -> Result<(), CliError> {
    crate::cli::commands::stages(endpoints, options(base), false, out).await
}
