//! Cross-process tests: every test talks to at least one separate OS process
//! (`oxrmi-test-peer`), over a real transport.
//!
//! Behaviour tests are written once and run per transport with [`behaviour!`]: TCP and Unix
//! sockets today; new transports are added in `harness::Transport`.

mod harness;

mod blocking;
mod calls;
mod concurrency;
mod deadlines;
mod errors;
mod hostile;
mod lifetimes;
mod references;
mod registry;
mod remote_host;
mod unix_security;
