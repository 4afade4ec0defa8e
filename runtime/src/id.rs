//! Identifiers that travel on the wire, as newtypes so they cannot be mixed up.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

/// Identifies one runtime (one process may hold several) for its whole life.
///
/// A fresh random id is drawn at start, so a restarted server is a different runtime: handles to
/// objects of the old one fail with "no such object" instead of reaching an unrelated object.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuntimeId(uuid::Uuid);

impl RuntimeId {
    /// Draws a new random runtime id.
    pub fn random() -> Self {
        RuntimeId(uuid::Uuid::new_v4())
    }

    /// The runtime id with these 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        RuntimeId(uuid::Uuid::from_bytes(bytes))
    }

    /// The id as 16 bytes, as it is sent in the handshake.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The whole id as 32 hex digits (`Display` shows only the first 8).
    pub fn full(&self) -> String {
        self.0.simple().to_string()
    }
}

impl std::str::FromStr for RuntimeId {
    type Err = InvalidRuntimeId;

    /// Parses the 32 hex digits of [`full`](Self::full) (hyphenated forms are accepted too).
    fn from_str(s: &str) -> Result<Self, InvalidRuntimeId> {
        uuid::Uuid::parse_str(s)
            .map(RuntimeId)
            .map_err(|_| InvalidRuntimeId(s.to_string()))
    }
}

/// A text that is not a runtime id (32 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a runtime id (32 hex digits)")]
pub struct InvalidRuntimeId(pub String);

impl fmt::Display for RuntimeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The first group is enough to tell runtimes apart in logs and stays readable.
        let s = self.0.simple().to_string();
        f.write_str(&s[..8])
    }
}

impl fmt::Debug for RuntimeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RuntimeId({})", self.0)
    }
}

/// Identifies an exported object within its owner's runtime.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjId(pub u64);

impl ObjId {
    /// The registry every runtime with `.registry()` serves, reachable without a lookup.
    pub const REGISTRY: ObjId = ObjId(1);
    /// The lease service (distributed garbage collection) every runtime serves.
    pub const LEASES: ObjId = ObjId(2);
    /// The introspection service every runtime serves (`oxrmi ipcs`).
    pub const INTROSPECT: ObjId = ObjId(3);
    /// The bootstrap service through which a parent and its child find each other's objects.
    pub const BOOTSTRAP: ObjId = ObjId(4);
    /// The first id handed out to ordinary exported objects; ids below are reserved for
    /// well-known objects (registry, introspection).
    pub(crate) const FIRST_DYNAMIC: u64 = 16;
}

impl fmt::Display for ObjId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Identifies one call on one connection; the reply carries it back.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct CallId(pub(crate) u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A hash map keyed by ids we hand out ourselves (call ids, object ids, addresses): they need
/// no protection against chosen collisions, and SipHash showed in profiles of the call path.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A multiplicative hasher for integer keys (Fibonacci hashing); byte input is folded in
/// eight bytes at a time.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}
