//! The shapes of the values a remote interface's methods take and return, traced from their
//! serde implementations: what the gRPC bridge and `oxrmi proto` turn into protobuf messages.
//!
//! `#[remote]` writes, for every interface, a function that names each argument, result and
//! error type to a [`TypeTracer`]; tracing runs each type's `Deserialize` against a recording
//! deserializer (`trace`), so the shapes are exactly what goes on the wire, serde attributes
//! included, without a derive of ours. A `Remote<dyn X>` inside any of them is
//! recognised and recorded as [`Shape::Remote`].
//!
//! Tracing has the limits of its method: a type whose `Deserialize` rejects the placeholder
//! values the tracer feeds it (one for integers, zero for floats, sixteen zero bytes, an empty
//! string), or that looks at the data to decide what it is (`#[serde(untagged)]`,
//! `#[serde(flatten)]`: `deserialize_any`), cannot be traced; the method is then described with
//! the error and left out of the `.proto`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde::{Deserialize, Serialize};

use crate::marshal::MarshalCtx;
use crate::object::InterfaceEntry;
use crate::runtime::RuntimeInner;
use crate::schema::InterfaceSchema;

mod trace;

pub use trace::TypeTracer;

/// The serde name under which a `Remote` travels (a newtype around its reference): tracing
/// recognises references by it. rmp-serde writes newtypes transparently, so it is not on the wire.
pub(crate) const REMOTE_NAME: &str = "oxrmi::Remote";

/// The shape of one value, as serde sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Shape {
    /// `()`.
    Unit,
    /// `bool`.
    Bool,
    /// `i8`.
    I8,
    /// `i16`.
    I16,
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `i128`.
    I128,
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
    /// `u128`.
    U128,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `char`.
    Char,
    /// A string.
    Str,
    /// Bytes serialized as bytes (`serde_bytes`).
    Bytes,
    /// `Option<T>`.
    Option(Box<Shape>),
    /// A sequence (`Vec<T>`, sets).
    Seq(Box<Shape>),
    /// A map.
    Map {
        /// The keys' shape.
        key: Box<Shape>,
        /// The values' shape.
        value: Box<Shape>,
    },
    /// A tuple.
    Tuple(Vec<Shape>),
    /// A fixed-size array `[T; N]`.
    Array {
        /// The items' shape.
        item: Box<Shape>,
        /// `N`.
        len: usize,
    },
    /// A struct or enum, described in [`InterfaceTypes::containers`] under this name.
    Named(String),
    /// A reference to a remote object (`Remote<dyn X>`).
    Remote,
}

/// A named struct or enum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Container {
    /// `struct A;`
    Unit,
    /// `struct A(T);`
    Newtype(Shape),
    /// `struct A(T, U);`
    Tuple(Vec<Shape>),
    /// `struct A { a: T }`
    Struct(Vec<Field>),
    /// An enum: its variants in declaration order (their index is their position).
    Enum(Vec<Variant>),
}

/// A named field of a struct or struct variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The field's serde name.
    pub name: String,
    /// Its shape.
    pub shape: Shape,
}

/// One variant of an enum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// The variant's serde name.
    pub name: String,
    /// What it carries.
    pub data: VariantData,
}

/// What an enum variant carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VariantData {
    /// Nothing: `A`.
    Unit,
    /// One value: `A(T)`.
    Newtype(Shape),
    /// Several: `A(T, U)`.
    Tuple(Vec<Shape>),
    /// Named fields: `A { a: T }`.
    Struct(Vec<Field>),
}

/// The shapes of one method's arguments, result and error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodTypes {
    /// The method's name.
    pub name: String,
    /// The arguments' names and shapes, in order.
    pub args: Vec<Field>,
    /// The shape of `T` in `Result<T, E>`.
    pub ok: Shape,
    /// The shape of `E`.
    pub err: Shape,
    /// Why the method could not be traced, if it could not (its shapes are then `Unit`).
    pub error: Option<String>,
}

/// An interface's description with the shapes of everything its methods exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceTypes {
    /// The interface as `#[remote]` described it.
    pub schema: InterfaceSchema,
    /// Per method, in declaration order.
    pub methods: Vec<MethodTypes>,
    /// The structs and enums the shapes name.
    pub containers: BTreeMap<String, Container>,
    /// The interfaces of the typed references (`Remote<dyn X>`) its methods take or return:
    /// objects of these may reach a client through it.
    #[serde(default)]
    pub references: Vec<String>,
}

impl InterfaceTypes {
    /// The types of the method called `name`.
    pub fn method(&self, name: &str) -> Option<&MethodTypes> {
        self.methods.iter().find(|m| m.name == name)
    }
}

thread_local! {
    /// The interfaces of typed references met while tracing, when tracing collects them.
    static REFERENCED: std::cell::RefCell<Option<Vec<InterfaceEntry>>> =
        const { std::cell::RefCell::new(None) };
}

/// Interfaces seen as typed references while tracing, by name: how an interface nobody has
/// exported yet (a factory's product) is found.
static KNOWN: OnceLock<Mutex<BTreeMap<&'static str, InterfaceEntry>>> = OnceLock::new();

/// Called by a typed `Remote<T>` decoded while tracing: `T`'s objects may travel through the
/// interface being traced.
pub(crate) fn note_reference(schema: &'static InterfaceSchema, trace: fn(&mut TypeTracer)) {
    REFERENCED.with(|r| {
        if let Some(v) = r.borrow_mut().as_mut() {
            v.push((schema, trace));
        }
    });
}

fn known(name: &str) -> Option<InterfaceEntry> {
    KNOWN
        .get()?
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
        .copied()
}

/// The traced types of interfaces, per interface name: tracing is deterministic, so it runs once
/// per process.
static CACHE: OnceLock<Mutex<BTreeMap<&'static str, Traced>>> = OnceLock::new();

/// An interface's types, or why they cannot be traced.
pub(crate) type Traced = Arc<Result<InterfaceTypes, String>>;

/// The types of the interface whose schema and tracing function are given, traced once per
/// process. `rt` stands behind the placeholder handles references decode to while tracing.
pub(crate) fn of(
    rt: &Arc<RuntimeInner>,
    schema: &'static InterfaceSchema,
    trace: fn(&mut TypeTracer),
) -> Traced {
    let key: &'static str = &schema.name;
    let cache = CACHE.get_or_init(Default::default);
    if let Some(t) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(key)
    {
        return t.clone();
    }
    let ctx = MarshalCtx {
        rt: rt.clone(),
        conn: None,
    };
    let previous = REFERENCED.with(|r| r.borrow_mut().replace(Vec::new()));
    let mut traced = crate::marshal::tracing(&ctx, || trace::trace_interface(schema, trace));
    let referenced = REFERENCED.with(|r| std::mem::replace(&mut *r.borrow_mut(), previous));
    let mut names: Vec<String> = Vec::new();
    {
        let mut k = KNOWN
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (s, t) in referenced.unwrap_or_default() {
            k.insert(&s.name, (s, t));
            if s.name != schema.name && !names.iter().any(|n| *n == s.name) {
                names.push(s.name.to_string());
            }
        }
    }
    if let Ok(t) = &mut traced {
        names.sort();
        t.references = names;
    }
    let traced = Arc::new(traced);
    if let Err(e) = &*traced {
        tracing::warn!(interface = %schema.name, error = %e, "cannot describe the interface's types");
    }
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, traced.clone());
    traced
}

/// Interfaces of the runtime's own machinery, which are not offered to tools and gRPC clients.
const INTERNAL: [&str; 2] = ["oxrmi.Leases", "oxrmi.Bootstrap"];

/// The interfaces `rt` serves: those of its exported objects and of the local objects bound in
/// its registry, sorted by name, the runtime's own machinery (leases, bootstrap) left out.
pub(crate) fn served(rt: &Arc<RuntimeInner>) -> Vec<InterfaceEntry> {
    let mut v = rt.objects.interfaces();
    if let Some(reg) = &rt.registry {
        v.extend(reg.local_interfaces());
    }
    v.retain(|(s, _)| !INTERNAL.contains(&&*s.name));
    // And the interfaces whose objects those hand out or take (a factory's products), before
    // any such object exists: a client can have their stubs first.
    let mut i = 0;
    while i < v.len() {
        let (schema, trace) = v[i];
        if let Ok(t) = &*of(rt, schema, trace) {
            for name in &t.references {
                if !v.iter().any(|(s, _)| s.name == *name)
                    && let Some(entry) = known(name)
                {
                    v.push(entry);
                }
            }
        }
        i += 1;
    }
    v.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    v.dedup_by(|a, b| a.0.name == b.0.name);
    v
}

/// The types of `interface`, which `rt` must serve.
pub(crate) fn of_served(
    rt: &Arc<RuntimeInner>,
    interface: &str,
) -> Result<InterfaceTypes, crate::RemoteError> {
    let (schema, trace) = served(rt)
        .into_iter()
        .find(|(s, _)| s.name == interface)
        .ok_or_else(|| crate::RemoteError::NoSuchObject {
            object: format!("any object of interface `{interface}`"),
        })?;
    (*of(rt, schema, trace))
        .clone()
        .map_err(|detail| crate::RemoteError::Marshalling {
            what: format!("the types of interface `{interface}`"),
            detail,
        })
}

/// The types of interface `T`, traced in this process: for build scripts and tools that write a
/// `.proto` without a running server (see [`crate::proto::render`]).
///
/// ```
/// #[oxrmi::remote]
/// pub trait Greeter: Send + Sync {
///     async fn greet(&self, name: String) -> Result<String, oxrmi::RemoteError>;
/// }
///
/// let types = oxrmi::types::describe::<dyn Greeter>().unwrap();
/// let file = oxrmi::proto::render(&types).unwrap();
/// assert!(file.text.contains("rpc Greet(GreetRequest) returns (GreetReply);"));
/// ```
pub fn describe<T: ?Sized + crate::Interface>() -> Result<InterfaceTypes, String> {
    let rt = crate::default_runtime();
    (*of(&rt.inner, T::schema(), T::__trace)).clone()
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::{Container, Shape, VariantData};
    use crate::{Remote, RemoteError, remote};

    #[derive(Serialize, Deserialize)]
    struct Tree {
        value: i32,
        children: Vec<Tree>,
    }

    #[derive(Serialize, Deserialize)]
    enum List {
        Cons(i32, Box<List>),
        Nil,
    }

    #[derive(Serialize, Deserialize)]
    enum Op {
        Add(i64),
        Neg,
        Scale { by: f64 },
    }

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Num(i64),
        Text(String),
    }

    #[remote(name = "oxrmi.test.Shapes")]
    trait Shapes: Send + Sync {
        async fn tree(&self, t: Tree) -> Result<List, RemoteError>;
        async fn ops(&self, ops: Vec<Op>) -> Result<Option<Remote<dyn Shapes>>, RemoteError>;
        async fn ids(&self, id: uuid::Uuid, hash: [u8; 32]) -> Result<(), RemoteError>;
        async fn loose(&self, l: Loose) -> Result<(), RemoteError>;
    }

    #[test]
    fn traces_recursive_and_nested_types() {
        let t = super::describe::<dyn Shapes>().unwrap();
        let tree = t.method("tree").unwrap();
        assert_eq!(tree.error, None);
        assert_eq!(tree.args[0].shape, Shape::Named("Tree".into()));
        assert_eq!(
            t.containers["Tree"],
            Container::Struct(vec![
                super::Field {
                    name: "value".into(),
                    shape: Shape::I32
                },
                super::Field {
                    name: "children".into(),
                    shape: Shape::Seq(Box::new(Shape::Named("Tree".into())))
                },
            ])
        );
        let Container::Enum(list) = &t.containers["List"] else {
            panic!("List is an enum")
        };
        assert_eq!(
            list[0].data,
            VariantData::Tuple(vec![Shape::I32, Shape::Named("List".into())])
        );
        assert_eq!(list[1].data, VariantData::Unit);
        // An enum inside a list has every variant reached.
        let Container::Enum(ops) = &t.containers["Op"] else {
            panic!("Op is an enum")
        };
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[2].name, "Scale");
        assert_eq!(
            t.method("ops").unwrap().ok,
            Shape::Option(Box::new(Shape::Remote))
        );
        let ids = t.method("ids").unwrap();
        assert_eq!(ids.args[0].shape, Shape::Bytes);
        assert_eq!(
            ids.args[1].shape,
            Shape::Array {
                item: Box::new(Shape::U8),
                len: 32
            }
        );
    }

    #[test]
    fn a_type_that_looks_at_the_data_is_reported_not_traced() {
        let t = super::describe::<dyn Shapes>().unwrap();
        let loose = t.method("loose").unwrap();
        let e = loose.error.as_deref().unwrap_or_default();
        assert!(e.contains("argument `l`") && e.contains("untagged"), "{e}");
        let f = crate::proto::render(&t).unwrap();
        assert!(
            f.text.contains("// Loose: not available over gRPC"),
            "{}",
            f.text
        );
        assert!(
            f.text
                .contains("rpc Tree(TreeRequest) returns (TreeReply);")
        );
    }

    #[test]
    fn traces_the_runtime_s_own_interfaces() {
        for t in [
            super::describe::<dyn crate::introspect::Introspect>(),
            super::describe::<dyn crate::registry::Registry>(),
        ] {
            let t = t.unwrap();
            assert!(t.methods.iter().all(|m| m.error.is_none()), "{t:?}");
            crate::proto::render(&t).unwrap();
        }
    }
}
