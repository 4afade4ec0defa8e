//! The command line: what each command accepts. Parsing only; the commands live elsewhere.

use clap::{Args, Parser, Subcommand};
use oxrmi::Endpoint;

use crate::bench::{BENCH_LEASE_MS, Pin, TransportChoice, TransportKind};

/// The oxrmi command-line tool.
#[derive(Parser, Debug)]
#[command(
    name = "oxrmi",
    version,
    about = "oxrmi: registry server, registry listing, benchmark"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Runs a standalone registry server, like Java's rmiregistry.
    Registry(RegistryArgs),
    /// Lists the names bound in a registry, with their interfaces.
    List(ListArgs),
    /// A runtime's exported objects and who holds them, what it holds of others, and its
    /// connections (like `ipcs -a`).
    Ipcs(IpcsArgs),
    /// Prints the `.proto` of every interface a runtime serves (what its gRPC bridge serves),
    /// or writes one file per interface under a directory.
    Proto(ProtoArgs),
    /// Measures call latency and throughput, each next to a raw baseline from the same run.
    Bench(BenchArgs),
    /// Child role of `bench`: serves the bench object and a registry until stdin closes.
    #[command(hide = true)]
    BenchServer(BenchServerArgs),
    /// Child role of `bench`: echoes bytes on the raw transport until stdin closes.
    #[command(hide = true)]
    BenchRawServer(BenchRawServerArgs),
    /// Child role of `bench`: measures, printing one JSON measurement a line.
    #[command(hide = true)]
    BenchClient(BenchClientArgs),
}

impl Command {
    /// The log filter when `RUST_LOG` is unset: a server reports what it does; the benchmark's
    /// children stay quiet so their logs do not interleave with the report.
    pub(crate) fn default_log_level(&self) -> &'static str {
        match self {
            Command::Registry(_) => "info",
            _ => "warn",
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct RegistryArgs {
    /// Where to listen (repeatable); port 0 picks a free port.
    #[arg(
        long = "listen",
        value_name = "ENDPOINT",
        default_value = "tcp://0.0.0.0:1099"
    )]
    pub(crate) listen: Vec<Endpoint>,
    /// Accept bind, rebind and unbind from other hosts (default: from this host only).
    #[arg(long)]
    pub(crate) allow_remote_writes: bool,
    /// Where the bindings are kept: `memory` (this process) or `etcd://host:port[,host:port]`
    /// (shared by every registry node on that etcd; needs the `etcd` build feature).
    #[arg(long, value_name = "STORE", default_value = "memory")]
    pub(crate) store: String,
    /// The etcd key prefix of the bindings: deployments with different prefixes share a cluster.
    #[arg(long, value_name = "PREFIX", default_value = "/oxrmi/registry/")]
    pub(crate) prefix: String,
    /// Seconds a binding outlives its owner (or the node keeping it) in etcd.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub(crate) lease_ttl: u64,
}

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// The registry's endpoint.
    #[arg(value_name = "ENDPOINT", default_value = "tcp://127.0.0.1:1099")]
    pub(crate) registry: Endpoint,
    /// Print one JSON array of {name, interface} instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct IpcsArgs {
    /// The runtime's endpoint (any oxrmi runtime that listens: a registry, a server).
    #[arg(value_name = "ENDPOINT", default_value = "tcp://127.0.0.1:1099")]
    pub(crate) endpoint: Endpoint,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct ProtoArgs {
    /// The runtime's endpoint (any oxrmi runtime that listens).
    #[arg(value_name = "ENDPOINT", default_value = "tcp://127.0.0.1:1099")]
    pub(crate) endpoint: Endpoint,
    /// Write each interface's file under this directory (`a/b/trait.proto`) instead of printing.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<std::path::PathBuf>,
    /// Only these interfaces (repeatable; default: all).
    #[arg(long = "interface", value_name = "NAME")]
    pub(crate) interfaces: Vec<String>,
}

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// The transport to measure, or all of them in one table.
    #[arg(long, value_enum, default_value_t = TransportChoice::Tcp)]
    pub(crate) transport: TransportChoice,
    /// Print one JSON object per figure, one a line, instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Where the client and server processes run: one core (same), a core each (split),
    /// unpinned (none), or all three in turn.
    #[arg(long, value_enum, default_value_t = Pin::Same)]
    pub(crate) pin: Pin,
    /// About ten times fewer calls and shorter runs: for a quick look, not for quoting.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Instead of the transport figures: lookups and binds through a registry on this store
    /// (`etcd://host:port`) beside the in-memory registry, in the same run.
    #[arg(long, value_name = "STORE")]
    pub(crate) registry: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct BenchServerArgs {
    /// The transport to serve on.
    #[arg(long, value_enum, default_value_t = TransportKind::Tcp)]
    pub(crate) transport: TransportKind,
    /// The lease the server grants on its objects, in milliseconds: short, so that the
    /// renewal figures count renewals within seconds.
    #[arg(long, value_name = "MS", default_value_t = BENCH_LEASE_MS)]
    pub(crate) lease_ms: u64,
}

#[derive(Args, Debug)]
pub(crate) struct BenchRawServerArgs {
    /// The transport to serve on.
    #[arg(long, value_enum, default_value_t = TransportKind::Tcp)]
    pub(crate) transport: TransportKind,
    /// Over shared memory: how long to spin before sleeping, in microseconds.
    #[arg(long, value_name = "US")]
    pub(crate) raw_spin_us: Option<u64>,
}

#[derive(Args, Debug)]
pub(crate) struct BenchClientArgs {
    /// The transport to measure.
    #[arg(long, value_enum, default_value_t = TransportKind::Tcp)]
    pub(crate) transport: TransportKind,
    /// The bench server's endpoint (its registry holds the bench object). Absent over pipes:
    /// the client starts its servers as children then.
    #[arg(long, value_name = "ENDPOINT")]
    pub(crate) server: Option<Endpoint>,
    /// The raw echo server's endpoint.
    #[arg(long, value_name = "ENDPOINT")]
    pub(crate) raw: Option<Endpoint>,
    /// The endpoint of the bench server for the lifetime figures (short lease, fresh).
    #[arg(long, value_name = "ENDPOINT")]
    pub(crate) lifetimes: Option<Endpoint>,
    /// Over pipes: the CPU to pin the servers the client starts to.
    #[arg(long, value_name = "CPU")]
    pub(crate) server_cpu: Option<usize>,
    /// Over shared memory: how long the raw twin spins before sleeping, in microseconds.
    #[arg(long, value_name = "US")]
    pub(crate) raw_spin_us: Option<u64>,
    /// Fewer calls and shorter runs.
    #[arg(long)]
    pub(crate) quick: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("oxrmi").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn registry_listens_on_1099_by_default_and_repeats_listen() {
        let Command::Registry(a) = parse(&["registry"]).unwrap().command else {
            panic!("not the registry command");
        };
        assert_eq!(a.listen, vec![Endpoint::tcp("0.0.0.0", 1099)]);
        assert!(!a.allow_remote_writes);

        let Command::Registry(a) = parse(&[
            "registry",
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            "tcp://[::1]:0",
            "--allow-remote-writes",
        ])
        .unwrap()
        .command
        else {
            panic!("not the registry command");
        };
        assert_eq!(
            a.listen,
            vec![Endpoint::tcp("127.0.0.1", 0), Endpoint::tcp("::1", 0)]
        );
        assert!(a.allow_remote_writes);
    }

    #[test]
    fn a_bad_endpoint_is_refused_with_the_reason() {
        let e = parse(&["list", "localhost:1099"]).unwrap_err().to_string();
        assert!(e.contains("invalid endpoint `localhost:1099`"), "{e}");
    }

    #[test]
    fn bench_names_the_transports_that_exist() {
        let e = parse(&["bench", "--transport", "carrier-pigeon"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("possible values: tcp, unix, fifo, pipe, shm, grpc, all"),
            "{e}"
        );
        let Command::Bench(a) = parse(&["bench", "--pin", "all", "--quick", "--json"])
            .unwrap()
            .command
        else {
            panic!("not the bench command");
        };
        assert_eq!(
            (a.pin, a.transport, a.quick, a.json),
            (Pin::All, TransportChoice::Tcp, true, true)
        );
    }

    #[test]
    fn the_bench_server_grants_a_short_lease_unless_told() {
        let Command::BenchServer(a) = parse(&["bench-server"]).unwrap().command else {
            panic!("not the bench-server role");
        };
        assert_eq!(a.lease_ms, BENCH_LEASE_MS);
        let Command::BenchServer(a) = parse(&["bench-server", "--lease-ms", "250"])
            .unwrap()
            .command
        else {
            panic!("not the bench-server role");
        };
        assert_eq!(a.lease_ms, 250);
    }
}
