//! The object table: every object a runtime has exported, by id.
//!
//! **Invariants:** one object (by identity) has one id while it is exported, so references to
//! it compare equal everywhere. The table holds an object *strongly* while some remote runtime
//! holds a lease on it (`holders > 0`, maintained by [`LeaseTable`](crate::lease::LeaseTable))
//! and *weakly* otherwise: it stays reachable by id as long as handles to it remain in this
//! process (a holder whose lease lapsed can still call it, as in Java RMI), but the table never
//! keeps an object alive by itself. Well-known objects (registry, lease service, introspection)
//! are pinned for the life of the runtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::id::{IdMap, ObjId};
use crate::remote::{Exported, Slot};

/// An interface as the object table knows it: its schema and its tracing function.
pub(crate) type InterfaceEntry = (
    &'static crate::schema::InterfaceSchema,
    fn(&mut crate::types::TypeTracer),
);

/// One exported object. Kept small: the table's memory is this times its spare capacity.
struct Entry {
    /// The object's address, its key in `by_identity`.
    identity: usize,
    /// Holds the object weakly, and strongly while `holders > 0` or `pinned`.
    slot: Arc<dyn Slot>,
    /// Remote runtimes counting this object in their lease.
    holders: u32,
    /// Never released by lease accounting.
    pinned: bool,
}

#[derive(Default)]
struct Objects {
    by_id: IdMap<ObjId, Entry>,
    by_identity: IdMap<usize, ObjId>,
}

impl Objects {
    /// The slot of a live object with this id, forgetting the entry if the object is gone.
    fn live(&mut self, id: ObjId) -> Option<Arc<dyn Slot>> {
        let slot = self.by_id.get(&id)?.slot.clone();
        if slot.alive() {
            return Some(slot);
        }
        self.forget(id);
        None
    }

    fn forget(&mut self, id: ObjId) {
        if let Some(e) = self.by_id.remove(&id)
            && self.by_identity.get(&e.identity) == Some(&id)
        {
            self.by_identity.remove(&e.identity);
        }
    }
}

/// One exported object as introspection shows it.
pub(crate) struct ObjectView {
    pub(crate) id: ObjId,
    pub(crate) interface: String,
    /// Handles in this process besides the export table's.
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
        // An address whose object is gone may belong to a new object now: that one gets a new id.
        if let Some(id) = t.by_identity.get(&key).copied()
            && t.live(id).is_some()
        {
            return id;
        }
        let id = ObjId(self.next.fetch_add(1, Ordering::Relaxed));
        t.by_identity.insert(key, id);
        t.by_id.insert(
            id,
            Entry {
                identity: key,
                slot: obj.slot(),
                holders: 0,
                pinned: false,
            },
        );
        id
    }

    /// Exports `obj` under a well-known id, for the life of the runtime.
    pub(crate) fn export_as(&self, id: ObjId, obj: Arc<dyn Exported>) {
        let mut t = self.lock();
        let identity = obj.identity();
        let slot = obj.slot();
        slot.hold();
        t.by_identity.insert(identity, id);
        t.by_id.insert(
            id,
            Entry {
                identity,
                slot,
                holders: 0,
                pinned: true,
            },
        );
    }

    /// One more remote runtime holds `id`: the table holds the object strongly.
    pub(crate) fn add_holder(&self, id: ObjId) {
        if let Some(e) = self.lock().by_id.get_mut(&id) {
            e.holders += 1;
            e.slot.hold();
        }
    }

    /// One remote runtime less holds `id`; at the last, the table lets go of its strong hold and
    /// returns it (the caller drops it outside the lock: the object's `Drop` may run then, if no
    /// handle to it remains in this process).
    pub(crate) fn remove_holder(&self, id: ObjId) -> Option<Arc<dyn Exported>> {
        let mut t = self.lock();
        let e = t.by_id.get_mut(&id)?;
        e.holders = e.holders.saturating_sub(1);
        if e.holders > 0 || e.pinned {
            return None;
        }
        e.slot.release()
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
        // The slot's strong hold, if any, is dropped here, outside the lock.
        removed.is_some()
    }

    /// The slot of the live object with this id.
    pub(crate) fn get(&self, id: ObjId) -> Option<Arc<dyn Slot>> {
        self.lock().live(id)
    }

    /// The schema and tracing function of every interface a live exported object implements.
    pub(crate) fn interfaces(&self) -> Vec<InterfaceEntry> {
        let t = self.lock();
        let mut v: Vec<InterfaceEntry> = t
            .by_id
            .values()
            .filter(|e| e.slot.alive())
            .map(|e| (e.slot.schema(), e.slot.tracer()))
            .collect();
        drop(t);
        v.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        v.dedup_by(|a, b| a.0.name == b.0.name);
        v
    }

    /// Forgets the entries of objects that are gone.
    pub(crate) fn sweep(&self) {
        let mut t = self.lock();
        let dead: Vec<ObjId> = t
            .by_id
            .iter()
            .filter(|(_, e)| !e.slot.alive())
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            t.forget(id);
        }
    }

    /// How many objects are exported.
    pub(crate) fn len(&self) -> usize {
        self.view().len()
    }

    /// Every exported object that is alive.
    pub(crate) fn view(&self) -> Vec<ObjectView> {
        let t = self.lock();
        let mut v: Vec<ObjectView> = t
            .by_id
            .iter()
            .filter(|(_, e)| e.slot.alive())
            .map(|(id, e)| ObjectView {
                id: *id,
                interface: e.slot.schema().name.to_string(),
                local_handles: e.slot.handles(),
                pinned: e.pinned,
            })
            .collect();
        drop(t);
        v.sort_by_key(|o| o.id);
        v
    }
}
