//! The object table: every object a runtime has exported, by id.
//!
//! **Invariant:** one object (by identity) has one id while it is exported, so references to it
//! compare equal everywhere. An ordinary object stays exported while some remote runtime holds
//! a lease on it (`holders > 0`, maintained by [`LeaseTable`](crate::lease::LeaseTable)); a
//! well-known object (registry, lease service) is pinned for the life of the runtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::id::{IdMap, ObjId};
use crate::remote::Exported;

struct Entry {
    obj: Arc<dyn Exported>,
    /// Remote runtimes counting this object in their lease.
    holders: u32,
    /// Never removed by lease accounting.
    pinned: bool,
}

#[derive(Default)]
struct Objects {
    by_id: IdMap<ObjId, Entry>,
    by_identity: IdMap<usize, ObjId>,
}

/// One exported object as introspection shows it.
pub(crate) struct ObjectView {
    pub(crate) id: ObjId,
    pub(crate) interface: String,
    /// Handles in this process besides the table's own.
    pub(crate) local_handles: usize,
    pub(crate) pinned: bool,
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

    /// Exports `obj` (or finds its id if it is exported already). The caller counts the new
    /// reference with [`add_holder`](Self::add_holder) (through the lease table) at once.
    pub(crate) fn export(&self, obj: Arc<dyn Exported>) -> ObjId {
        let mut t = self.lock();
        let key = obj.identity();
        if let Some(id) = t.by_identity.get(&key) {
            return *id;
        }
        let id = ObjId(self.next.fetch_add(1, Ordering::Relaxed));
        t.by_identity.insert(key, id);
        t.by_id.insert(
            id,
            Entry {
                obj,
                holders: 0,
                pinned: false,
            },
        );
        id
    }

    /// Exports `obj` under a well-known id, for the life of the runtime.
    pub(crate) fn export_as(&self, id: ObjId, obj: Arc<dyn Exported>) {
        let mut t = self.lock();
        t.by_identity.insert(obj.identity(), id);
        t.by_id.insert(
            id,
            Entry {
                obj,
                holders: 0,
                pinned: true,
            },
        );
    }

    /// One more remote runtime holds `id`.
    pub(crate) fn add_holder(&self, id: ObjId) {
        if let Some(e) = self.lock().by_id.get_mut(&id) {
            e.holders += 1;
        }
    }

    /// One remote runtime less holds `id`; returns the object if that was the last and the table
    /// let go of it (the caller drops it outside the lock: its `Drop` may run then).
    pub(crate) fn remove_holder(&self, id: ObjId) -> Option<Arc<dyn Exported>> {
        let mut t = self.lock();
        let e = t.by_id.get_mut(&id)?;
        e.holders = e.holders.saturating_sub(1);
        if e.holders > 0 || e.pinned {
            return None;
        }
        let e = t.by_id.remove(&id)?;
        t.by_identity.remove(&e.obj.identity());
        Some(e.obj)
    }

    /// Stops serving the object with this identity; true if it was exported.
    pub(crate) fn unexport(&self, identity: usize) -> bool {
        let removed = {
            let mut t = self.lock();
            match t.by_identity.remove(&identity) {
                Some(id) => t.by_id.remove(&id),
                None => None,
            }
        };
        removed.is_some()
    }

    pub(crate) fn get(&self, id: ObjId) -> Option<Arc<dyn Exported>> {
        self.lock().by_id.get(&id).map(|e| e.obj.clone())
    }

    /// How many objects are exported.
    pub(crate) fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Every exported object.
    pub(crate) fn view(&self) -> Vec<ObjectView> {
        let t = self.lock();
        let mut v: Vec<ObjectView> = t
            .by_id
            .iter()
            .map(|(id, e)| ObjectView {
                id: *id,
                interface: e.obj.schema().name.to_string(),
                local_handles: e.obj.handles().saturating_sub(1),
                pinned: e.pinned,
            })
            .collect();
        v.sort_by_key(|o| o.id);
        v
    }
}
