//! The references the bridge has handed to gRPC clients: an `ObjectRef` id names a handle the
//! bridge keeps (and so a lease it holds on the object) until the id goes unused for the idle
//! time; then the handle is dropped and the lease released like any other holder's.
//!
//! Ids: `N` for object `N` of the runtime the bridge serves (the id `oxrmi ipcs` shows), `N@RUNTIME`
//! for an object of another runtime (a reference the served runtime handed out from elsewhere).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::id::{ObjId, RuntimeId};
use crate::remote::{AnyRemote, ObjRef};
use crate::runtime::RuntimeInner;

/// The default time the bridge keeps a handle after its last use by a gRPC client.
pub const DEFAULT_HANDLE_IDLE: Duration = Duration::from_secs(300);

/// Handles by `ObjectRef` id.
pub(crate) struct Handles {
    map: Mutex<HashMap<String, (AnyRemote, Instant)>>,
    /// The served runtime, whose objects have bare numeric ids.
    served: RuntimeId,
    idle: Duration,
}

impl Handles {
    pub(crate) fn new(served: RuntimeId, idle: Duration) -> Self {
        Handles {
            map: Mutex::new(HashMap::new()),
            served,
            idle,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (AnyRemote, Instant)>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The id of a handle.
    pub(crate) fn id_of(&self, h: &AnyRemote) -> String {
        match h.stub().map(|s| s.target()) {
            Some(t) if t.runtime == Some(self.served) => t.object.0.to_string(),
            Some(t) => match t.runtime {
                Some(rt) => format!("{}@{}", t.object.0, rt.full()),
                None => format!("{}@{}", t.object.0, t.endpoints.join(",")),
            },
            // The bridge's own runtime exports nothing; a local handle cannot arrive here.
            None => "0".into(),
        }
    }

    /// Keeps `h` for a gRPC client and returns its id.
    pub(crate) fn keep(&self, h: AnyRemote) -> String {
        let id = self.id_of(&h);
        self.map().insert(id.clone(), (h, Instant::now()));
        id
    }

    /// The handle with this id: one the bridge keeps, or else object `N` of the served runtime
    /// (which the bridge then keeps). `interface` is the interface the caller expects.
    pub(crate) fn get(
        &self,
        bridge: &Arc<RuntimeInner>,
        id: &str,
        interface: &str,
    ) -> Result<AnyRemote, String> {
        if let Some((h, used)) = self.map().get_mut(id) {
            *used = Instant::now();
            return Ok(h.clone());
        }
        let n: u64 = id.parse().map_err(|_| {
            format!(
                "`{id}` is not an object id this bridge has handed out (ids are `N` or `N@RUNTIME`)"
            )
        })?;
        if n < ObjId::FIRST_DYNAMIC {
            return Err(format!(
                "object {n} is one of the runtime's own (use its service instead)"
            ));
        }
        let target = ObjRef {
            runtime: Some(self.served),
            object: ObjId(n),
            interface: interface.to_string(),
            endpoints: Vec::new(),
            lease: 0,
            transit: 0,
        };
        let h = AnyRemote::import(bridge.clone(), target).map_err(|e| e.to_string())?;
        self.map()
            .insert(id.to_string(), (h.clone(), Instant::now()));
        Ok(h)
    }

    /// Drops the handles unused for the idle time; returns how many remain.
    pub(crate) fn expire(&self) -> usize {
        let now = Instant::now();
        let mut gone = Vec::new();
        let mut map = self.map();
        map.retain(|_, (h, used)| {
            let keep = now.duration_since(*used) < self.idle;
            if !keep {
                gone.push(h.clone());
            }
            keep
        });
        let left = map.len();
        drop(map);
        // Dropped outside the lock: releasing a lease may run an object's `Drop` in-process.
        drop(gone);
        left
    }

    /// How often `expire` should run.
    pub(crate) fn sweep_period(&self) -> Duration {
        (self.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(30))
    }
}
