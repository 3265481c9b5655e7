//! `ferry-export`: the source side of ferry.
#![allow(clippy::print_stderr, clippy::print_stdout, clippy::exit)]

mod args;
mod export;
mod output;

use std::process::ExitCode;

use clap::Parser as _;

// Records are built on the reader thread and freed on the writer thread; glibc's malloc
// serialises such cross-thread frees on an arena lock, mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = args::Args::parse();
    match export::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
