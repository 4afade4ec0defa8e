//! Cross-process tests: every test talks to at least one separate OS process
//! (`oxrmi-test-peer`), over a real transport.
//!
//! Behaviour tests are written once and run per transport with [`behaviour!`]: TCP, Unix
//! sockets, FIFOs and a child's pipes (the pipes only where no third party needs to reach the
//! server); new transports are added in `harness::Transport`.

mod harness;

mod auth;
mod blocking;
mod calls;
mod concurrency;
mod deadlines;
mod errors;
#[cfg(feature = "etcd")]
mod etcd;
mod faults;
mod grpc;
mod grpc_python;
mod hostile;
mod lifetimes;
mod limits;
mod load;
mod netns;
mod path_choice;
mod pipes;
mod references;
mod registry;
mod remote_host;
mod shm;
mod slow_peers;
mod tls;
mod unix_security;
