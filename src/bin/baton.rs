//! `baton`: the command-line client. Parses arguments and hands them to [`baton::cli`].

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    baton::cli::run(baton::cli::Cli::parse()).await
}
