//! `oxrmi bench`: the runtime's call latency and throughput, each figure next to its raw twin:
//! the same traffic over the bare transport, measured in the same run and placement; and the
//! costs of distributed lifetimes, which have no raw twin: a reference received and dropped,
//! lease renewals against handles held, the owner's memory per object and per holder.
//!
//! The parent process measures nothing itself. For each placement it spawns four children of
//! this executable, each pinned with `taskset` where asked: `bench-server` (a runtime serving
//! the [`Bench`](interface::Bench) object and a registry), `bench-raw-server` (a byte echo on the
//! bare transport), a second `bench-server` with a short lease for the lifetime figures, and
//! `bench-client` (which times calls against them and prints one JSON
//! [`Measurement`](measurement::Measurement) a line). The parent turns those into the report.
//!
//! # Layout
//! - `driver`: the `bench` command: placements in turn, children spawned, report printed.
//! - `placement`: `--pin`, the CPUs each role runs on, and `taskset`.
//! - `child_process`: starting a role and reading its endpoint; stopping it.
//! - `server`, `raw_server`: the two server roles; `parent_watch`: a role ends with its parent.
//! - `client`: the client role: which figures, in which order.
//! - `oxrmi_calls`, `raw_calls`: the timed loops, over oxrmi and over the bare transport.
//! - `interface`: the remote interface measured; `transport`: the transports measurable.
//! - `grpc`: `--transport grpc`: the bridge against a hand-written tonic service.
//! - `plan`: how many calls and for how long; `stats`: percentiles.
//! - `lifetimes`: the figures of distributed lifetimes: a reference received and dropped,
//!   lease renewals against handles held, the owner's memory per object and per holder.
//! - `resident`: a process's resident memory.
//! - `measurement`: what the client reports; `report`: figures as a table or JSON lines.
//! - `registry_store`: `--registry STORE`: lookups and binds through a registry node on etcd
//!   beside the in-memory registry, in the same run.

mod child_process;
mod client;
mod driver;
mod grpc;
mod interface;
mod lifetimes;
mod measurement;
mod oxrmi_calls;
mod parent_watch;
mod placement;
mod plan;
mod raw_calls;
mod raw_server;
mod registry_store;
mod report;
mod resident;
mod server;
pub(crate) mod stats;
mod transport;

pub(crate) use client::run as run_client;
pub(crate) use driver::run;
pub(crate) use placement::Pin;
pub(crate) use plan::BENCH_LEASE_MS;
pub(crate) use raw_server::run as run_raw_server;
pub(crate) use server::run as run_server;
pub(crate) use transport::{TransportChoice, TransportKind};
