//! The object table: every object a runtime has exported, by id.
//!
//! **Invariant:** one object (by identity) has one id for the life of the runtime, so references
//! to it compare equal everywhere. Objects stay exported until the runtime stops (leases that
//! release them are future work; see ARCHITECTURE.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::id::{IdMap, ObjId};
use crate::remote::Exported;

#[derive(Default)]
struct Objects {
    by_id: IdMap<ObjId, Arc<dyn Exported>>,
    by_identity: IdMap<usize, ObjId>,
}

/// The objects a runtime serves.
pub(crate) struct ObjectTable {
    objects: Mutex<Objects>,
    next: AtomicU64,
}

impl Default for ObjectTable {
    fn default() -> Self {
        ObjectTable {
            objects: Mutex::default(),
            next: AtomicU64::new(ObjId::FIRST_DYNAMIC),
        }
    }
}

impl ObjectTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exports `obj` (or finds its id if it is exported already).
    pub(crate) fn export(&self, obj: Arc<dyn Exported>) -> ObjId {
        let mut t = self.lock();
        let key = obj.identity();
        if let Some(id) = t.by_identity.get(&key) {
            return *id;
        }
        let id = ObjId(self.next.fetch_add(1, Ordering::Relaxed));
        t.by_identity.insert(key, id);
        t.by_id.insert(id, obj);
        id
    }

    /// Exports `obj` under a well-known id.
    pub(crate) fn export_as(&self, id: ObjId, obj: Arc<dyn Exported>) {
        let mut t = self.lock();
        t.by_identity.insert(obj.identity(), id);
        t.by_id.insert(id, obj);
    }

    /// Stops serving the object with this identity; true if it was exported.
    pub(crate) fn unexport(&self, identity: usize) -> bool {
        let mut t = self.lock();
        match t.by_identity.remove(&identity) {
            Some(id) => t.by_id.remove(&id).is_some(),
            None => false,
        }
    }

    pub(crate) fn get(&self, id: ObjId) -> Option<Arc<dyn Exported>> {
        self.lock().by_id.get(&id).cloned()
    }

    /// How many objects are exported.
    pub(crate) fn len(&self) -> usize {
        self.lock().by_id.len()
    }
}
