//! [`Remote<dyn Trait>`](Remote): the handle users hold, local or remote; [`AnyRemote`], the
//! same without a static interface; and how both travel on the wire, as references.

use std::any::Any;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::Error as _};

use crate::id::{ObjId, RuntimeId};
use crate::marshal::{CallCtx, MarshalCtx, Outcome};
use crate::schema::InterfaceSchema;
use crate::stub::StubHandle;
use crate::types::TypeTracer;
use crate::{BoxFuture, RemoteError};

/// A remote interface, as `#[remote]` implements it for `dyn Trait`.
///
/// Users do not implement this by hand; they name it in bounds (`T: ?Sized + Interface`) when
/// writing code generic over interfaces.
pub trait Interface: Send + Sync + 'static {
    /// The interface's name on the wire: `module::path::Trait` unless
    /// `#[remote(name = "...")]` says otherwise.
    const NAME: &'static str;

    /// The interface's description.
    fn schema() -> &'static InterfaceSchema;

    /// Makes a client stub that forwards every method to `handle`.
    #[doc(hidden)]
    fn __stub(handle: StubHandle) -> Arc<Self>;

    /// Names every method's argument, result and error types to `tracer` (see
    /// [`crate::types`]).
    #[doc(hidden)]
    fn __trace(tracer: &mut TypeTracer);

    /// Decodes the arguments of `method` and returns the future that runs it, or `None` if the
    /// interface has no such method.
    #[doc(hidden)]
    fn __dispatch(
        this: Arc<Self>,
        method: &str,
        args: &[u8],
        ctx: &CallCtx,
    ) -> Option<BoxFuture<'static, Outcome>>;
}

/// Turns a concrete object into the interface's trait object; `#[remote]` implements it for
/// every implementor, so [`Remote::new`] accepts any of them.
#[doc(hidden)]
pub trait Wrap<O>: Interface {
    /// The unsizing coercion `Arc<O>` → `Arc<dyn Trait>`.
    fn wrap(obj: Arc<O>) -> Arc<Self>;
}

/// A reference on the wire: which object, in which runtime, of which interface, and where its
/// owner can be reached. **Wire type.**
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ObjRef {
    /// The owner; `None` only for well-known objects reached by endpoint (a registry).
    pub(crate) runtime: Option<RuntimeId>,
    pub(crate) object: ObjId,
    pub(crate) interface: String,
    /// The owner's advertised endpoints, as URLs, in order of preference.
    pub(crate) endpoints: Vec<String>,
    /// The epoch of the receiver's lease this reference was counted under; 0 when it was not
    /// counted (forwarded by a third party, or a well-known object): the receiver then acquires
    /// a lease from the owner itself.
    pub(crate) lease: u64,
    /// Non-zero on a reference forwarded by a third party: the forwarder's transit token, which
    /// the receiver hands back (`transit_done`) once it has a lease of its own.
    pub(crate) transit: u64,
}

impl fmt::Display for ObjRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.runtime {
            Some(rt) => write!(f, "{}@{} ({})", self.object, rt, self.interface),
            None => write!(f, "{} ({})", self.object, self.interface),
        }
    }
}

/// An object exported by a runtime, with its interface erased, as the object table keeps it.
pub(crate) trait Exported: Send + Sync + 'static {
    fn schema(&self) -> &'static InterfaceSchema;
    /// The interface's tracing function (`Interface::__trace`).
    fn tracer(&self) -> fn(&mut TypeTracer);
    /// The address of the object: equal for every handle to it in this process.
    fn identity(&self) -> usize;
    fn as_any(&self) -> &dyn Any;
    /// The export table's slot for the object: it holds the object weakly, and strongly while
    /// some runtime holds a lease on it.
    fn slot(&self) -> Arc<dyn Slot>;
}

/// An exported object as the object table keeps it: a weak pointer, and a strong one while
/// remote runtimes hold leases on it. One allocation per exported object.
pub(crate) trait Slot: Send + Sync {
    fn schema(&self) -> &'static InterfaceSchema;
    /// The interface's tracing function (`Interface::__trace`).
    fn tracer(&self) -> fn(&mut TypeTracer);
    /// Whether the object still exists.
    fn alive(&self) -> bool;
    /// Handles to the object in this process, the slot's own strong hold not counted.
    fn handles(&self) -> usize;
    /// Holds the object strongly (it is leased).
    fn hold(&self);
    /// Lets go of the strong hold; returns it for the caller to drop outside its locks (the
    /// object's `Drop` may run then).
    fn release(&self) -> Option<Arc<dyn Exported>>;
    /// Whether the slot holds the object strongly.
    fn is_held(&self) -> bool;
    /// A handle to the object, if it still exists.
    fn object(&self) -> Option<Arc<dyn Exported>>;
    /// As [`Exported::dispatch`]; `None` if the object is gone.
    fn dispatch(
        &self,
        method: &str,
        args: &[u8],
        ctx: &CallCtx,
    ) -> Option<Option<BoxFuture<'static, Outcome>>>;
}

struct SlotOf<T: ?Sized + Interface> {
    weak: std::sync::Weak<T>,
    strong: std::sync::Mutex<Option<Arc<T>>>,
}

impl<T: ?Sized + Interface> SlotOf<T> {
    fn strong(&self) -> std::sync::MutexGuard<'_, Option<Arc<T>>> {
        self.strong
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<T: ?Sized + Interface> Slot for SlotOf<T> {
    fn schema(&self) -> &'static InterfaceSchema {
        T::schema()
    }
    fn tracer(&self) -> fn(&mut TypeTracer) {
        T::__trace
    }
    fn alive(&self) -> bool {
        self.weak.strong_count() > 0
    }
    fn handles(&self) -> usize {
        self.weak.strong_count() - usize::from(self.is_held())
    }
    fn hold(&self) {
        let mut s = self.strong();
        if s.is_none() {
            *s = self.weak.upgrade();
        }
    }
    fn release(&self) -> Option<Arc<dyn Exported>> {
        let obj = self.strong().take()?;
        Some(Arc::new(Local(obj)))
    }
    fn is_held(&self) -> bool {
        self.strong().is_some()
    }
    fn object(&self) -> Option<Arc<dyn Exported>> {
        self.weak
            .upgrade()
            .map(|obj| Arc::new(Local(obj)) as Arc<dyn Exported>)
    }
    fn dispatch(
        &self,
        method: &str,
        args: &[u8],
        ctx: &CallCtx,
    ) -> Option<Option<BoxFuture<'static, Outcome>>> {
        let obj = self.weak.upgrade()?;
        Some(T::__dispatch(obj, method, args, ctx))
    }
}

/// A local object behind its interface.
struct Local<T: ?Sized + Interface>(Arc<T>);

impl<T: ?Sized + Interface> Exported for Local<T> {
    fn schema(&self) -> &'static InterfaceSchema {
        T::schema()
    }
    fn tracer(&self) -> fn(&mut TypeTracer) {
        T::__trace
    }
    fn identity(&self) -> usize {
        identity_of(&self.0)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn slot(&self) -> Arc<dyn Slot> {
        Arc::new(SlotOf {
            weak: Arc::downgrade(&self.0),
            strong: std::sync::Mutex::new(None),
        })
    }
}

fn identity_of<T: ?Sized>(arc: &Arc<T>) -> usize {
    Arc::as_ptr(arc) as *const () as usize
}

/// Who a handle points at: the key of equality and hashing.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Identity {
    /// A local object, by address.
    Local(usize),
    /// A remote object, by owner and id (and by endpoint for well-known objects of an unknown
    /// runtime).
    Remote(Option<RuntimeId>, ObjId, Option<String>),
}

#[derive(Clone)]
enum Origin {
    Local,
    Remote(StubHandle),
}

/// A handle to an object that implements the remote interface `T` (a `dyn Trait`), wherever the
/// object lives.
///
/// It derefs to `T`, so methods are called the same way on local and remote objects; a call on a
/// local object runs directly, without serialization or a socket. Cloning is cheap (an `Arc`).
/// Handles compare and hash by the identity of the object they point at.
///
/// Passed as an argument or returned as a result, a `Remote` travels by reference: the receiver
/// gets a handle whose calls go to the object's owner.
pub struct Remote<T: ?Sized + Interface> {
    obj: Arc<T>,
    origin: Origin,
}

impl<T: ?Sized + Interface> Remote<T> {
    /// Wraps a local object.
    pub fn new<O>(obj: O) -> Self
    where
        T: Wrap<O>,
    {
        Self::from_arc(T::wrap(Arc::new(obj)))
    }

    /// Wraps a local object that is already shared.
    pub fn from_arc(obj: Arc<T>) -> Self {
        Remote {
            obj,
            origin: Origin::Local,
        }
    }

    pub(crate) fn from_stub(handle: StubHandle) -> Self {
        Remote {
            obj: T::__stub(handle.clone()),
            origin: Origin::Remote(handle),
        }
    }

    /// Whether the object lives in this process (calls run directly).
    pub fn is_local(&self) -> bool {
        matches!(self.origin, Origin::Local)
    }

    /// The interface's name.
    pub fn interface(&self) -> &'static str {
        T::NAME
    }

    /// Forgets the static interface.
    pub fn into_any(self) -> AnyRemote {
        match self.origin {
            Origin::Local => AnyRemote {
                inner: AnyInner::Local(Arc::new(Local(self.obj))),
            },
            Origin::Remote(handle) => AnyRemote {
                inner: AnyInner::Remote(handle),
            },
        }
    }

    fn identity(&self) -> Identity {
        match &self.origin {
            Origin::Local => Identity::Local(identity_of(&self.obj)),
            Origin::Remote(h) => h.identity(),
        }
    }
}

impl<T: ?Sized + Interface> Deref for Remote<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.obj
    }
}

impl<T: ?Sized + Interface> Clone for Remote<T> {
    fn clone(&self) -> Self {
        Remote {
            obj: self.obj.clone(),
            origin: self.origin.clone(),
        }
    }
}

impl<T: ?Sized + Interface> PartialEq for Remote<T> {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl<T: ?Sized + Interface> Eq for Remote<T> {}

impl<T: ?Sized + Interface> Hash for Remote<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state)
    }
}

impl<T: ?Sized + Interface> fmt::Debug for Remote<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Local => write!(f, "Remote<{}>(local)", T::NAME),
            Origin::Remote(h) => write!(f, "Remote<{}>({})", T::NAME, h.target()),
        }
    }
}

/// A handle to a remote object whose interface is known only at run time, as a registry holds
/// them. [`downcast`](Self::downcast) checks the interface and gives a typed [`Remote`].
#[derive(Clone)]
pub struct AnyRemote {
    inner: AnyInner,
}

#[derive(Clone)]
enum AnyInner {
    Local(Arc<dyn Exported>),
    Remote(StubHandle),
}

impl AnyRemote {
    /// The name of the interface the object implements.
    pub fn interface(&self) -> &str {
        match &self.inner {
            AnyInner::Local(e) => &e.schema().name,
            AnyInner::Remote(h) => &h.target().interface,
        }
    }

    /// Whether the object lives in this process.
    pub fn is_local(&self) -> bool {
        matches!(self.inner, AnyInner::Local(_))
    }

    /// A typed handle, or [`RemoteError::WrongInterface`] if the object implements another
    /// interface.
    pub fn downcast<T: ?Sized + Interface>(self) -> Result<Remote<T>, RemoteError> {
        let wrong = |found: &str| RemoteError::WrongInterface {
            expected: T::NAME.to_string(),
            found: found.to_string(),
        };
        match self.inner {
            AnyInner::Local(e) => match e.as_any().downcast_ref::<Local<T>>() {
                Some(local) => Ok(Remote::from_arc(local.0.clone())),
                None => Err(wrong(&e.schema().name)),
            },
            AnyInner::Remote(h) => {
                if h.target().interface == T::NAME {
                    Ok(Remote::from_stub(h))
                } else {
                    Err(wrong(&h.target().interface))
                }
            }
        }
    }

    /// A handle around a stub.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn from_stub(h: StubHandle) -> AnyRemote {
        AnyRemote {
            inner: AnyInner::Remote(h),
        }
    }

    /// The stub behind a handle to another runtime's object.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn stub(&self) -> Option<&StubHandle> {
        match &self.inner {
            AnyInner::Local(_) => None,
            AnyInner::Remote(h) => Some(h),
        }
    }

    /// A handle to the object `target` names, in `rt` (a stub unless it is `rt`'s own).
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn import(
        rt: std::sync::Arc<crate::runtime::RuntimeInner>,
        target: ObjRef,
    ) -> Result<AnyRemote, RemoteError> {
        let ctx = MarshalCtx { rt, conn: None };
        AnyRemote::from_ref(target, &ctx)
    }

    /// The schema and tracing function of a local object's interface.
    pub(crate) fn local_interface(&self) -> Option<crate::object::InterfaceEntry> {
        match &self.inner {
            AnyInner::Local(e) => Some((e.schema(), e.tracer())),
            AnyInner::Remote(_) => None,
        }
    }

    /// The local object behind this handle, for the object table.
    ///
    /// Only called on handles made from local objects.
    pub(crate) fn exported(&self) -> Arc<dyn Exported> {
        match &self.inner {
            AnyInner::Local(e) => e.clone(),
            AnyInner::Remote(_) => unreachable!("exported() on a remote handle"),
        }
    }

    /// The identity of the local object behind this handle, if it is local.
    pub(crate) fn local_identity(&self) -> Option<usize> {
        match &self.inner {
            AnyInner::Local(e) => Some(e.identity()),
            AnyInner::Remote(_) => None,
        }
    }

    pub(crate) fn from_exported(e: Arc<dyn Exported>) -> Self {
        AnyRemote {
            inner: AnyInner::Local(e),
        }
    }

    fn identity(&self) -> Identity {
        match &self.inner {
            AnyInner::Local(e) => Identity::Local(e.identity()),
            AnyInner::Remote(h) => h.identity(),
        }
    }

    /// The reference to write on the wire. A local object is exported into `ctx`'s runtime and
    /// counted in the receiving peer's lease; a remote one forwarded to a third party is held
    /// here until the receiver says it has acquired its own lease.
    fn to_ref(&self, ctx: &MarshalCtx) -> Result<ObjRef, RemoteError> {
        let conn = ctx.conn.as_ref().ok_or_else(|| RemoteError::Marshalling {
            what: "a remote reference".into(),
            detail: "no connection to send it over".into(),
        })?;
        match &self.inner {
            AnyInner::Local(e) => {
                let rt = &ctx.rt;
                let id = rt.objects.export(e.clone());
                let lease = rt.leases.sent(&rt.objects, conn.peer(), id)?;
                Ok(ObjRef {
                    runtime: Some(rt.id),
                    object: id,
                    interface: e.schema().name.to_string(),
                    endpoints: rt.advertised(Some(conn)),
                    lease,
                    transit: 0,
                })
            }
            AnyInner::Remote(h) => {
                let mut r = h.target().clone();
                r.transit = 0;
                if r.runtime != Some(conn.peer()) {
                    r.lease = 0;
                    if let (true, Some(owner)) = (h.is_leased(), r.runtime) {
                        // Our handle (and lease) stays until the receiver has its own.
                        let owner_lease = ctx
                            .rt
                            .conns
                            .peer_lease(owner)
                            .unwrap_or_else(|| ctx.rt.leases.duration());
                        r.transit = ctx.rt.holdings.hold_in_transit(h.clone(), owner_lease);
                    }
                }
                Ok(r)
            }
        }
    }

    /// The handle a reference read from the wire stands for in `ctx`'s runtime.
    fn from_ref(r: ObjRef, ctx: &MarshalCtx) -> Result<AnyRemote, RemoteError> {
        if r.runtime == Some(ctx.rt.id) {
            // The reference came home: it is the local object again, no network hop.
            let obj = ctx
                .rt
                .objects
                .get(r.object)
                .and_then(|slot| slot.object())
                .ok_or_else(|| RemoteError::NoSuchObject {
                    object: r.to_string(),
                })?;
            return Ok(AnyRemote::from_exported(obj));
        }
        Ok(AnyRemote {
            inner: AnyInner::Remote(StubHandle::import(ctx.rt.clone(), r, ctx.conn.clone())?),
        })
    }
}

impl<T: ?Sized + Interface> From<Remote<T>> for AnyRemote {
    fn from(r: Remote<T>) -> Self {
        r.into_any()
    }
}

impl PartialEq for AnyRemote {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for AnyRemote {}

impl Hash for AnyRemote {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state)
    }
}

impl fmt::Debug for AnyRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            AnyInner::Local(e) => write!(f, "AnyRemote<{}>(local)", e.schema().name),
            AnyInner::Remote(h) => write!(f, "AnyRemote({})", h.target()),
        }
    }
}

const NO_CONTEXT: &str =
    "a remote reference can only be marshalled by an oxrmi runtime (inside a remote call)";

// A reference travels as a newtype named `types::REMOTE_NAME` around its `ObjRef`: rmp-serde
// writes newtypes transparently (the wire holds the bare `ObjRef`), and type tracing recognises
// a reference by the name.
impl Serialize for AnyRemote {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ctx = MarshalCtx::current().ok_or_else(|| S::Error::custom(NO_CONTEXT))?;
        let r = self
            .to_ref(&ctx)
            .map_err(|e| S::Error::custom(crate::marshal::raise(e)))?;
        s.serialize_newtype_struct(crate::types::REMOTE_NAME, &r)
    }
}

impl<'de> Deserialize<'de> for AnyRemote {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_newtype_struct(crate::types::REMOTE_NAME, RefVisitor)
    }
}

/// Reads a reference: the newtype's content, or (from a deserializer that does not keep
/// newtypes) the `ObjRef` itself.
struct RefVisitor;

impl<'de> serde::de::Visitor<'de> for RefVisitor {
    type Value = AnyRemote;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a remote reference")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<AnyRemote, D::Error> {
        let ctx = MarshalCtx::current().ok_or_else(|| D::Error::custom(NO_CONTEXT))?;
        if crate::marshal::is_tracing() {
            // Only the shape matters; the handle points nowhere and is never called.
            <()>::deserialize(d)?;
            let h = StubHandle::well_known(ctx.rt.clone(), None, ObjId(0), "", Vec::new());
            return Ok(AnyRemote {
                inner: AnyInner::Remote(h),
            });
        }
        let r = ObjRef::deserialize(d)?;
        AnyRemote::from_ref(r, &ctx).map_err(|e| D::Error::custom(crate::marshal::raise(e)))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<AnyRemote, A::Error> {
        self.visit_newtype_struct(serde::de::value::SeqAccessDeserializer::new(seq))
    }
}

impl<T: ?Sized + Interface> Serialize for Remote<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.clone().into_any().serialize(s)
    }
}

impl<'de, T: ?Sized + Interface> Deserialize<'de> for Remote<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let any = AnyRemote::deserialize(d)?;
        if crate::marshal::is_tracing()
            && let AnyInner::Remote(h) = any.inner
        {
            crate::types::note_reference(T::schema(), T::__trace);
            return Ok(Remote::from_stub(h));
        }
        any.downcast().map_err(D::Error::custom)
    }
}

pub(crate) use Identity as HandleIdentity;
