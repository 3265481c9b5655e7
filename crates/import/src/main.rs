//! `ferry-import`: the target side of ferry.
#![allow(clippy::print_stderr, clippy::print_stdout, clippy::exit)]

mod args;
mod cmd;
mod dupes;
mod exit;
mod pipeline;
mod priority;
mod private;
mod setup;
mod summary;

pub use exit::ExitStatus;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Check a ferry bundle and load it into the User Management store.
///
/// A bundle comes from `ferry-export`. Check it (`validate`), fix what it reports by hand
/// in a text editor and accept the edits (`seal`), then load it into a store (`load`), and
/// log in as one of its users (`login`) to see the password they always had still work.
///
/// Examples:
///
///   $ ferry-import validate bundle/ --schema schemas/scim-user.json
///   $ ferry-import seal bundle/
///   $ ferry-import load bundle/ --schema schemas/scim-user.json --target users.db
///   $ echo 'alice-Passw0rd!' | ferry-import login --target users.db --user alice
///   $ ferry-import verify bundle/ --target users.db --schema schemas/scim-user.json
///   $ ferry-import convert bundle/ --to ndjson --out bundle-ndjson/
///
/// Exit status: 0 all good; 1 the command ran and found problems (invalid records, failed
/// records, a wrong password); 2 it could not run (no such file, a bad schema file, a
/// bundle changed since it was sealed).
#[derive(Parser, Debug)]
#[command(
    name = "ferry-import",
    version,
    verbatim_doc_comment,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Validate(cmd::validate::Args),
    Load(cmd::load::Args),
    Login(cmd::login::Args),
    Seal(cmd::seal::Args),
    Plan(cmd::plan::Args),
    Verify(cmd::verify::Args),
    Convert(cmd::convert::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    priority::helper_pool();
    let result = match cli.command {
        Command::Validate(a) => cmd::validate::run(a),
        Command::Load(a) => cmd::load::run(a),
        Command::Login(a) => cmd::login::run(a),
        Command::Seal(a) => cmd::seal::run(a),
        Command::Plan(a) => cmd::plan::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Convert(a) => cmd::convert::run(a),
    };
    match result {
        Ok(status) => status.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
