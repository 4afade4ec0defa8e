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
use tonic::Status;

use super::status;

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
    /// `served` (which the bridge then keeps). A bad id is `INVALID_ARGUMENT`, an object that
    /// does not exist (or is no longer held) `NOT_FOUND`.
    pub(crate) fn get(
        &self,
        bridge: &Arc<RuntimeInner>,
        served: &RuntimeInner,
        id: &str,
    ) -> Result<AnyRemote, Status> {
        if let Some((h, used)) = self.map().get_mut(id) {
            *used = Instant::now();
            return Ok(h.clone());
        }
        if id.contains('@') {
            return Err(Status::not_found(format!(
                "object `{id}` is no longer held by the bridge (unused for longer than {:?})",
                self.idle
            )));
        }
        let n: u64 = id.parse().map_err(|_| {
            Status::invalid_argument(format!(
                "`{id}` is not an object id (ids are `N` or `N@RUNTIME`, from an ObjectRef)"
            ))
        })?;
        if n < ObjId::FIRST_DYNAMIC {
            return Err(Status::invalid_argument(format!(
                "object {n} is one of the runtime's own: call its service without `oxrmi-object`"
            )));
        }
        // The object's own interface, never the one the caller assumed: a handle is shared by
        // every later user of the same object.
        let interface = served
            .objects
            .get(ObjId(n))
            .map(|slot| slot.schema().name.to_string())
            .ok_or_else(|| Status::not_found(format!("no such object: {n}")))?;
        let target = ObjRef {
            runtime: Some(self.served),
            object: ObjId(n),
            interface,
            endpoints: Vec::new(),
            lease: 0,
            transit: 0,
        };
        let h = AnyRemote::import(bridge.clone(), target).map_err(|e| status::from_remote(&e))?;
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
