//! The library side of the `oxrmi` tool: the registry stores the tool offers besides the
//! runtime's in-memory one, for programs (and tests) that serve a registry themselves.
//!
//! # Feature flags
//! - `etcd`: `etcd::EtcdStore`, bindings kept in etcd and shared by several registry nodes
//!   (`oxrmi registry --store etcd://...`). Its build needs `protoc`.
#[cfg(feature = "etcd")]
pub mod etcd;
