//! `oxrmi`: the command-line tool of oxrmi.
//!
//! - `oxrmi registry`: a standalone registry server, like Java's `rmiregistry`.
//! - `oxrmi list`: the names bound in a registry and their interfaces.
//! - `oxrmi ipcs`: a runtime's objects, who keeps each alive, what it holds, its connections.
//! - `oxrmi bench`: call latency and throughput of the runtime, each figure next to a raw
//!   baseline on the same transport measured in the same run.
//!
//! # Layout
//! - `cli`: the command line (clap), and nothing else.
//! - `serve_registry`: the `registry` command; `shutdown_signal`: Ctrl-C and SIGTERM.
//! - `list_bindings`: the `list` command; `ipcs`: the `ipcs` command.
//! - `bench`: the `bench` command and the hidden child roles it spawns.
//! - `one_request`: one request to a remote runtime with short timeouts (`list`, `ipcs`).
//! - `table`: aligned text tables; `logging`: tracing to stderr; `tokio_runtime`: an executor
//!   sized to the CPUs this process may use.
//!
//! Errors go to stderr as one line per cause, with exit code 1 (2 for a bad command line); a
//! closed stdout (`oxrmi list | head`) is a clean exit, as in ripgrep.

mod bench;
mod cli;
mod ipcs;
mod list_bindings;
mod logging;
mod one_request;
mod proto;
mod serve_registry;
mod shutdown_signal;
mod table;
mod tokio_runtime;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// mimalloc rather than glibc's allocator: a server passing large values allocates and frees
/// buffers of the same sizes call after call, and glibc hands such memory back to the kernel
/// between calls (trimming the heap, unmapping large blocks), so every call pays page faults to
/// get it back; mimalloc keeps it for reuse. The library itself leaves the choice to the
/// program that links it (see the README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.command.default_log_level());
    let result = match cli.command {
        Command::Registry(args) => serve_registry::run(args),
        Command::List(args) => list_bindings::run(args),
        Command::Ipcs(args) => ipcs::run(args),
        Command::Proto(args) => proto::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BenchServer(args) => bench::run_server(args),
        Command::BenchRawServer(args) => bench::run_raw_server(args),
        Command::BenchClient(args) => bench::run_client(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever read our output has stopped reading: nothing is wrong with us.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxrmi: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
