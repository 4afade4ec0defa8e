//! Protocol Buffers (proto3) descriptions of remote interfaces, for gRPC clients of the bridge.
//!
//! One `.proto` file per interface; the rules, which the gRPC bridge decodes and encodes by:
//!
//! - **Package and service.** The interface `a::b::Trait` (or `#[remote(name = "a.b.Trait")]`)
//!   becomes `package a.b.trait;` (the module path plus the trait's name in snake case) with
//!   `service Trait`, in the file `a/b/trait.proto`. One package per interface keeps every file
//!   self-contained: two interfaces never compete for a message name.
//! - **Methods.** `fn do_thing(&self, x: T, y: U) -> Result<R, E>` becomes
//!   `rpc DoThing(DoThingRequest) returns (DoThingReply)`: the request has one field per argument,
//!   in order, numbered from 1; the reply has the result in field 1 (`result`), or no field when
//!   `R` is `()` (one-way methods too). `DoThingAppError` holds `E` in field 1 (`error`): an
//!   application error travels in the gRPC status details as a `google.protobuf.Any` of it.
//! - **Scalars.** `bool`; `i8`–`i32` → `int32`, `i64` → `int64`; `u8`–`u32` → `uint32`, `u64` →
//!   `uint64`; `f32` → `float`, `f64` → `double`; `String`, `char` → `string`; `i128`/`u128` →
//!   `string` (decimal); bytes (`serde_bytes`) and `Vec<u8>` → `bytes`; `()` → the empty
//!   message `Unit`.
//! - **Containers.** `Option<T>` → `optional T`; `Vec<T>`, sets and arrays → `repeated T`; maps
//!   with integer, bool, `char` or string keys → `map<K, V>`, other maps → `repeated` entries
//!   with `key` and `value`; tuples → a message with fields `item0`, `item1`…; where proto3
//!   cannot nest (an `Option` of a list, a list of lists, a list in a `oneof`), a wrapper message
//!   named after the shape (`ListOfInt32`, `OptionalString`…) holds it in field 1, `value`.
//! - **User types.** A struct becomes a message of the same name with its fields in order; a
//!   newtype struct is its content (unless it contains itself: then a message with `value`); a
//!   tuple struct a message with `item0`…; an enum of unit variants a proto `enum` whose values
//!   are `TYPE_VARIANT` in order; any other enum a message with a `oneof value` holding one field
//!   per variant (snake-case name, numbered from 1), tuple and struct variants as nested messages.
//! - **References.** `Remote<dyn X>` → `ObjectRef { string id = 1; string interface = 2; }`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::types::{Container, Field, InterfaceTypes, Shape, VariantData};

/// The name of the message every reference becomes.
pub const OBJECT_REF: &str = "ObjectRef";
/// The name of the empty message `()` becomes.
pub const UNIT: &str = "Unit";

/// One generated `.proto` file: one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtoFile {
    /// The file's path, as `import` would name it: `a/b/trait.proto`.
    pub path: String,
    /// Its package: `a.b.trait`.
    pub package: String,
    /// Its service: `Trait`.
    pub service: String,
    /// The interface it describes.
    pub interface: String,
    /// The file's text.
    pub text: String,
}

impl ProtoFile {
    /// The full name of the service, `package.Service`, as gRPC paths use it.
    pub fn service_name(&self) -> String {
        format!("{}.{}", self.package, self.service)
    }

    /// Writes the file under `dir` at its [`path`](Self::path), creating directories; returns
    /// the path written.
    pub fn write_under(
        &self,
        dir: impl AsRef<std::path::Path>,
    ) -> std::io::Result<std::path::PathBuf> {
        let path = dir.as_ref().join(&self.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &self.text)?;
        Ok(path)
    }
}

/// The `.proto` of interface `T`, from its types traced in this process: the build-time way to
/// write it (from a build script or a small binary of a crate that depends on the interfaces),
/// identical to what `oxrmi proto` prints for a runtime serving `T`.
///
/// ```
/// #[oxrmi::remote(name = "demo.Greeter")]
/// pub trait Greeter: Send + Sync {
///     async fn greet(&self, name: String) -> Result<String, oxrmi::RemoteError>;
/// }
///
/// let file = oxrmi::proto::file_of::<dyn Greeter>().unwrap();
/// assert_eq!(file.path, "demo/greeter.proto");
/// let dir = std::env::temp_dir().join(format!("oxrmi-doc-{}", std::process::id()));
/// let written = file.write_under(&dir).unwrap();
/// assert!(std::fs::read_to_string(&written).unwrap().contains("service Greeter"));
/// # std::fs::remove_dir_all(dir).unwrap();
/// ```
pub fn file_of<T: ?Sized + crate::Interface>() -> Result<ProtoFile, ProtoError> {
    let types = crate::types::describe::<T>().map_err(|reason| ProtoError {
        interface: T::NAME.to_string(),
        reason,
    })?;
    render(&types)
}

/// Why an interface has no `.proto`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interface `{interface}` cannot be described in protobuf: {reason}")]
pub struct ProtoError {
    /// The interface.
    pub interface: String,
    /// Why.
    pub reason: String,
}

/// The package and service an interface name maps to.
pub fn package_and_service(interface: &str) -> (String, String) {
    let parts: Vec<&str> = interface
        .split("::")
        .flat_map(|p| p.split('.'))
        .filter(|p| !p.is_empty())
        .collect();
    let (service, modules) = match parts.split_last() {
        Some((last, rest)) => (ident(last), rest.iter().map(|p| ident(p)).collect()),
        None => ("Service".to_string(), Vec::new()),
    };
    let mut package: Vec<String> = modules;
    package.push(snake(&service));
    (package.join("."), service)
}

/// The gRPC method name of a Rust method: `do_thing` → `DoThing`.
pub fn rpc_name(method: &str) -> String {
    pascal(method)
}

/// The request message of method `rpc` (as [`rpc_name`] gives it).
pub fn request_name(rpc: &str) -> String {
    format!("{rpc}Request")
}

/// The reply message of method `rpc`.
pub fn reply_name(rpc: &str) -> String {
    format!("{rpc}Reply")
}

/// The message that holds method `rpc`'s application error.
pub fn error_name(rpc: &str) -> String {
    format!("{rpc}AppError")
}

/// How a value of some shape sits in a message field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// `T name = n;`
    Single(String),
    /// `optional T name = n;`
    Optional(String),
    /// `repeated T name = n;`
    Repeated(String),
    /// `map<K, V> name = n;`
    Map(String, String),
}

/// The layout rules over one interface's types, shared by the renderer and the bridge's codec.
pub(crate) struct Layout<'a> {
    pub(crate) types: &'a InterfaceTypes,
}

impl<'a> Layout<'a> {
    pub(crate) fn new(types: &'a InterfaceTypes) -> Self {
        Layout { types }
    }

    /// The container called `name`.
    pub(crate) fn container(&self, name: &str) -> Option<&'a Container> {
        self.types.containers.get(name)
    }

    /// Whether the newtype `name` is written as its content (it does not contain itself).
    pub(crate) fn transparent(&self, name: &str) -> bool {
        match self.container(name) {
            Some(Container::Newtype(inner)) => !self.reaches(inner, name, &mut BTreeSet::new()),
            _ => false,
        }
    }

    fn reaches<'b>(&'b self, shape: &'b Shape, target: &str, seen: &mut BTreeSet<&'b str>) -> bool {
        match shape {
            Shape::Named(n) => {
                if n == target {
                    return true;
                }
                if !seen.insert(n) {
                    return false;
                }
                match self.container(n) {
                    Some(Container::Newtype(s)) => self.reaches(s, target, seen),
                    Some(Container::Tuple(ss)) => ss.iter().any(|s| self.reaches(s, target, seen)),
                    Some(Container::Struct(fs)) => {
                        fs.iter().any(|f| self.reaches(&f.shape, target, seen))
                    }
                    Some(Container::Enum(vs)) => vs.iter().any(|v| match &v.data {
                        VariantData::Unit => false,
                        VariantData::Newtype(s) => self.reaches(s, target, seen),
                        VariantData::Tuple(ss) => ss.iter().any(|s| self.reaches(s, target, seen)),
                        VariantData::Struct(fs) => {
                            fs.iter().any(|f| self.reaches(&f.shape, target, seen))
                        }
                    }),
                    Some(Container::Unit) | None => false,
                }
            }
            Shape::Option(s) | Shape::Seq(s) | Shape::Array { item: s, .. } => {
                self.reaches(s, target, seen)
            }
            Shape::Map { key, value } => {
                self.reaches(key, target, seen) || self.reaches(value, target, seen)
            }
            Shape::Tuple(ss) => ss.iter().any(|s| self.reaches(s, target, seen)),
            _ => false,
        }
    }

    /// Whether a value of `shape` can hold a reference (`Remote`) anywhere inside.
    #[cfg(feature = "grpc")]
    pub(crate) fn has_remote(&self, shape: &Shape) -> bool {
        self.mentions_remote(shape, &mut BTreeSet::new())
    }

    #[cfg(feature = "grpc")]
    fn mentions_remote<'b>(&'b self, shape: &'b Shape, seen: &mut BTreeSet<&'b str>) -> bool {
        let all = |ss: &'b [Shape], seen: &mut BTreeSet<&'b str>| {
            ss.iter().any(|s| self.mentions_remote(s, seen))
        };
        match shape {
            Shape::Remote => true,
            Shape::Option(s) | Shape::Seq(s) | Shape::Array { item: s, .. } => {
                self.mentions_remote(s, seen)
            }
            Shape::Map { key, value } => {
                self.mentions_remote(key, seen) || self.mentions_remote(value, seen)
            }
            Shape::Tuple(ss) => all(ss, seen),
            Shape::Named(n) => {
                if !seen.insert(n) {
                    return false;
                }
                match self.container(n) {
                    Some(Container::Newtype(s)) => self.mentions_remote(s, seen),
                    Some(Container::Tuple(ss)) => all(ss, seen),
                    Some(Container::Struct(fs)) => {
                        fs.iter().any(|f| self.mentions_remote(&f.shape, seen))
                    }
                    Some(Container::Enum(vs)) => vs.iter().any(|v| match &v.data {
                        VariantData::Unit => false,
                        VariantData::Newtype(s) => self.mentions_remote(s, seen),
                        VariantData::Tuple(ss) => all(ss, seen),
                        VariantData::Struct(fs) => {
                            fs.iter().any(|f| self.mentions_remote(&f.shape, seen))
                        }
                    }),
                    Some(Container::Unit) | None => false,
                }
            }
            _ => false,
        }
    }

    /// Follows transparent newtypes to the shape that is actually written.
    pub(crate) fn resolve<'b>(&'b self, shape: &'b Shape) -> &'b Shape
    where
        'a: 'b,
    {
        let mut s = shape;
        for _ in 0..64 {
            match s {
                Shape::Named(n) if self.transparent(n) => match self.container(n) {
                    Some(Container::Newtype(inner)) => s = inner,
                    _ => return s,
                },
                _ => return s,
            }
        }
        s
    }

    /// Whether the enum `name` has only unit variants (a proto `enum`).
    pub(crate) fn is_plain_enum(&self, name: &str) -> bool {
        matches!(self.container(name), Some(Container::Enum(vs))
            if !vs.is_empty() && vs.iter().all(|v| v.data == VariantData::Unit))
    }

    /// Whether `key` can be a proto map key.
    pub(crate) fn is_map_key(&self, key: &Shape) -> bool {
        matches!(
            self.resolve(key),
            Shape::Bool
                | Shape::I8
                | Shape::I16
                | Shape::I32
                | Shape::I64
                | Shape::U8
                | Shape::U16
                | Shape::U32
                | Shape::U64
                | Shape::Str
                | Shape::Char
        )
    }

    /// How a value of `shape` sits in a field.
    pub(crate) fn form(&self, shape: &Shape) -> Form {
        let shape = self.resolve(shape);
        match shape {
            Shape::Option(inner) => match self.form(inner) {
                Form::Single(t) => Form::Optional(t),
                _ => Form::Optional(wrapper_name(inner)),
            },
            Shape::Seq(inner) | Shape::Array { item: inner, .. } => {
                if matches!(self.resolve(inner), Shape::U8) {
                    return Form::Single("bytes".into());
                }
                match self.form(inner) {
                    Form::Single(t) => Form::Repeated(t),
                    _ => Form::Repeated(wrapper_name(inner)),
                }
            }
            Shape::Map { key, value } => {
                if !self.is_map_key(key) {
                    return Form::Repeated(entry_name(key, value));
                }
                let k = self
                    .scalar(self.resolve(key))
                    .unwrap_or("string")
                    .to_string();
                match self.form(value) {
                    Form::Single(t) => Form::Map(k, t),
                    _ => Form::Map(k, wrapper_name(value)),
                }
            }
            other => Form::Single(self.type_name(other)),
        }
    }

    /// Whether a value of `shape` needs a wrapper message where a plain field type is expected
    /// (a list item, a map value, a `oneof` member).
    pub(crate) fn needs_wrapper(&self, shape: &Shape) -> bool {
        !matches!(self.form(shape), Form::Single(_))
    }

    fn scalar(&self, shape: &Shape) -> Option<&'static str> {
        Some(match shape {
            Shape::Bool => "bool",
            Shape::I8 | Shape::I16 | Shape::I32 => "int32",
            Shape::I64 => "int64",
            Shape::U8 | Shape::U16 | Shape::U32 => "uint32",
            Shape::U64 => "uint64",
            Shape::F32 => "float",
            Shape::F64 => "double",
            Shape::Str | Shape::Char | Shape::I128 | Shape::U128 => "string",
            Shape::Bytes => "bytes",
            _ => return None,
        })
    }

    /// The type of a field holding a single (non-repeated, non-optional) value of `shape`.
    fn type_name(&self, shape: &Shape) -> String {
        if let Some(s) = self.scalar(shape) {
            return s.to_string();
        }
        match shape {
            Shape::Unit => UNIT.into(),
            Shape::Remote => OBJECT_REF.into(),
            Shape::Named(n) => n.clone(),
            Shape::Tuple(_) => wrapper_name(shape),
            // Containers are handled by `form`.
            other => wrapper_name(other),
        }
    }
}

/// The name of the message that wraps a value of `shape` (or holds a tuple).
pub(crate) fn wrapper_name(shape: &Shape) -> String {
    shape_name(shape)
}

/// The name of the entry message of a map whose keys cannot be proto map keys.
pub(crate) fn entry_name(key: &Shape, value: &Shape) -> String {
    format!("MapOf{}To{}Entry", shape_name(key), shape_name(value))
}

fn shape_name(shape: &Shape) -> String {
    match shape {
        Shape::Unit => "Unit".into(),
        Shape::Bool => "Bool".into(),
        Shape::I8 => "Int8".into(),
        Shape::I16 => "Int16".into(),
        Shape::I32 => "Int32".into(),
        Shape::I64 => "Int64".into(),
        Shape::I128 => "Int128".into(),
        Shape::U8 => "Uint8".into(),
        Shape::U16 => "Uint16".into(),
        Shape::U32 => "Uint32".into(),
        Shape::U64 => "Uint64".into(),
        Shape::U128 => "Uint128".into(),
        Shape::F32 => "Float".into(),
        Shape::F64 => "Double".into(),
        Shape::Char => "Char".into(),
        Shape::Str => "String".into(),
        Shape::Bytes => "Bytes".into(),
        Shape::Option(s) => format!("Optional{}", shape_name(s)),
        Shape::Seq(s) | Shape::Array { item: s, .. } => format!("ListOf{}", shape_name(s)),
        Shape::Map { key, value } => format!("MapOf{}To{}", shape_name(key), shape_name(value)),
        Shape::Tuple(ss) => {
            let mut n = String::from("Tuple");
            for s in ss {
                n.push_str(&shape_name(s));
            }
            n
        }
        Shape::Named(n) => n.clone(),
        Shape::Remote => OBJECT_REF.into(),
    }
}

/// The proto field name of a tuple's `i`-th item.
pub(crate) fn item_name(i: usize) -> String {
    format!("item{i}")
}

/// The proto field name of an enum variant in its `oneof`.
pub(crate) fn variant_field(name: &str) -> String {
    snake(name)
}

/// The proto name of an enum value.
pub(crate) fn enum_value_name(enum_name: &str, variant: &str) -> String {
    format!("{}_{}", snake(enum_name), snake(variant)).to_uppercase()
}

/// Renders the `.proto` of one interface.
pub fn render(types: &InterfaceTypes) -> Result<ProtoFile, ProtoError> {
    let interface = types.schema.name.to_string();
    let fail = |reason: String| ProtoError {
        interface: interface.clone(),
        reason,
    };
    let (package, service) = package_and_service(&interface);
    let layout = Layout::new(types);
    let mut r = Renderer {
        layout: &layout,
        defs: BTreeMap::new(),
        pending: Vec::new(),
    };

    // Request, reply and error messages; the service.
    let mut service_text = String::new();
    doc_comment(&mut service_text, &types.schema.docs, "");
    writeln!(service_text, "service {service} {{").ok();
    for m in &types.methods {
        let rpc = rpc_name(&m.name);
        let schema = types.schema.method(&m.name);
        if let Some(e) = &m.error {
            writeln!(service_text, "  // {rpc}: not available over gRPC: {e}").ok();
            continue;
        }
        if let Some(s) = schema {
            doc_comment(&mut service_text, &s.docs, "  ");
        }
        writeln!(
            service_text,
            "  rpc {rpc}({}) returns ({});",
            request_name(&rpc),
            reply_name(&rpc)
        )
        .ok();
        let oneway = schema.is_some_and(|s| s.oneway);
        let mut req = format!("message {} {{\n", request_name(&rpc));
        for (i, a) in m.args.iter().enumerate() {
            r.field(&mut req, "  ", &a.shape, &a.name, i + 1);
        }
        req.push_str("}\n");
        let mut reply = format!("message {} {{\n", reply_name(&rpc));
        if !oneway && r.layout.resolve(&m.ok) != &Shape::Unit {
            r.field(&mut reply, "  ", &m.ok, "result", 1);
        }
        reply.push_str("}\n");
        let mut err = format!("message {} {{\n", error_name(&rpc));
        r.field(&mut err, "  ", &m.err, "error", 1);
        err.push_str("}\n");
        for (name, text) in [
            (request_name(&rpc), req),
            (reply_name(&rpc), reply),
            (error_name(&rpc), err),
        ] {
            r.define(name, text).map_err(fail)?;
        }
    }
    service_text.push_str("}\n");
    r.drain().map_err(fail)?;

    let mut text = String::new();
    writeln!(
        text,
        "// Generated by oxrmi from the remote interface `{interface}`. Do not edit.\n\
         syntax = \"proto3\";\n\npackage {package};\n"
    )
    .ok();
    text.push_str(&service_text);
    for (_, def) in r.defs {
        text.push('\n');
        text.push_str(&def);
    }
    Ok(ProtoFile {
        path: format!("{}.proto", package.replace('.', "/")),
        package,
        service,
        interface,
        text,
    })
}

struct Renderer<'l, 'a> {
    layout: &'l Layout<'a>,
    /// Message and enum definitions by name.
    defs: BTreeMap<String, String>,
    /// Shapes whose messages are still to be defined.
    pending: Vec<Shape>,
}

impl Renderer<'_, '_> {
    fn define(&mut self, name: String, text: String) -> Result<(), String> {
        match self.defs.get(&name) {
            Some(existing) if *existing != text => Err(format!(
                "two different messages would be called `{name}` (rename one of the types)"
            )),
            _ => {
                self.defs.insert(name, text);
                Ok(())
            }
        }
    }

    /// Writes one field and queues the messages its type needs.
    fn field(&mut self, out: &mut String, indent: &str, shape: &Shape, name: &str, number: usize) {
        let form = self.layout.form(shape);
        self.need(shape);
        let line = match form {
            Form::Single(t) => format!("{t} {name} = {number};"),
            Form::Optional(t) => format!("optional {t} {name} = {number};"),
            Form::Repeated(t) => format!("repeated {t} {name} = {number};"),
            Form::Map(k, v) => format!("map<{k}, {v}> {name} = {number};"),
        };
        writeln!(out, "{indent}{line}").ok();
    }

    /// Queues the definitions a field of `shape` refers to.
    fn need(&mut self, shape: &Shape) {
        self.pending.push(shape.clone());
    }

    /// Defines everything queued, recursively.
    fn drain(&mut self) -> Result<(), String> {
        let mut done: BTreeSet<Shape> = BTreeSet::new();
        while let Some(shape) = self.pending.pop() {
            if !done.insert(shape.clone()) {
                continue;
            }
            self.define_for(&shape)?;
        }
        Ok(())
    }

    fn define_for(&mut self, shape: &Shape) -> Result<(), String> {
        let layout = self.layout;
        let resolved = layout.resolve(shape).clone();
        match &resolved {
            Shape::Unit => self.define(UNIT.into(), format!("message {UNIT} {{}}\n")),
            Shape::Remote => self.define(
                OBJECT_REF.into(),
                format!(
                    "// A remote object: send `id` back in the `oxrmi-object` metadata to call it.\n\
                     message {OBJECT_REF} {{\n  string id = 1;\n  string interface = 2;\n}}\n"
                ),
            ),
            Shape::Option(inner) | Shape::Seq(inner) | Shape::Array { item: inner, .. } => {
                let bytes = !matches!(resolved, Shape::Option(_))
                    && matches!(layout.resolve(inner), Shape::U8);
                if !bytes {
                    if layout.needs_wrapper(inner) {
                        self.wrapper(inner)?;
                    }
                    self.need(inner);
                }
                Ok(())
            }
            Shape::Map { key, value } => {
                if !layout.is_map_key(key) {
                    let mut t = format!("message {} {{\n", entry_name(key, value));
                    self.field(&mut t, "  ", key, "key", 1);
                    self.field(&mut t, "  ", value, "value", 2);
                    t.push_str("}\n");
                    return self.define(entry_name(key, value), t);
                }
                if layout.needs_wrapper(value) {
                    self.wrapper(value)?;
                }
                self.need(value);
                Ok(())
            }
            Shape::Tuple(items) => {
                let name = wrapper_name(&resolved);
                let mut t = format!("message {name} {{\n");
                for (i, s) in items.iter().enumerate() {
                    self.field(&mut t, "  ", s, &item_name(i), i + 1);
                }
                t.push_str("}\n");
                self.define(name, t)
            }
            Shape::Named(n) => self.container(n),
            _ => Ok(()),
        }
    }

    /// A message holding a value of `shape` in field 1, `value`.
    fn wrapper(&mut self, shape: &Shape) -> Result<(), String> {
        let name = wrapper_name(shape);
        let mut t = format!("message {name} {{\n");
        self.field(&mut t, "  ", shape, "value", 1);
        t.push_str("}\n");
        self.define(name, t)
    }

    fn container(&mut self, name: &str) -> Result<(), String> {
        let layout = self.layout;
        let Some(c) = layout.container(name) else {
            return Err(format!("the type `{name}` was not traced"));
        };
        let mut t = String::new();
        match c {
            Container::Unit => {
                writeln!(t, "message {name} {{}}").ok();
            }
            Container::Newtype(inner) => {
                // Only newtypes that contain themselves get here (the others are transparent).
                writeln!(t, "message {name} {{").ok();
                self.field(&mut t, "  ", inner, "value", 1);
                t.push_str("}\n");
            }
            Container::Tuple(items) => {
                writeln!(t, "message {name} {{").ok();
                for (i, s) in items.iter().enumerate() {
                    self.field(&mut t, "  ", s, &item_name(i), i + 1);
                }
                t.push_str("}\n");
            }
            Container::Struct(fields) => {
                writeln!(t, "message {name} {{").ok();
                self.fields(&mut t, "  ", fields);
                t.push_str("}\n");
            }
            Container::Enum(variants) if layout.is_plain_enum(name) => {
                writeln!(t, "enum {name} {{").ok();
                for (i, v) in variants.iter().enumerate() {
                    writeln!(t, "  {} = {i};", enum_value_name(name, &v.name)).ok();
                }
                t.push_str("}\n");
            }
            Container::Enum(variants) => {
                writeln!(t, "message {name} {{").ok();
                let mut nested = String::new();
                writeln!(t, "  oneof value {{").ok();
                for (i, v) in variants.iter().enumerate() {
                    let field = variant_field(&v.name);
                    match &v.data {
                        VariantData::Unit => {
                            self.need(&Shape::Unit);
                            writeln!(t, "    {UNIT} {field} = {};", i + 1).ok();
                        }
                        VariantData::Newtype(s) => {
                            if layout.needs_wrapper(s) {
                                self.wrapper(s)?;
                                writeln!(t, "    {} {field} = {};", wrapper_name(s), i + 1).ok();
                            } else {
                                self.field(&mut t, "    ", s, &field, i + 1);
                            }
                        }
                        VariantData::Tuple(items) => {
                            writeln!(nested, "  message {} {{", v.name).ok();
                            for (j, s) in items.iter().enumerate() {
                                self.field(&mut nested, "    ", s, &item_name(j), j + 1);
                            }
                            nested.push_str("  }\n");
                            writeln!(t, "    {} {field} = {};", v.name, i + 1).ok();
                        }
                        VariantData::Struct(fields) => {
                            writeln!(nested, "  message {} {{", v.name).ok();
                            self.fields(&mut nested, "    ", fields);
                            nested.push_str("  }\n");
                            writeln!(t, "    {} {field} = {};", v.name, i + 1).ok();
                        }
                    }
                }
                t.push_str("  }\n");
                t.push_str(&nested);
                t.push_str("}\n");
            }
        }
        self.define(name.to_string(), t)
    }

    fn fields(&mut self, out: &mut String, indent: &str, fields: &[Field]) {
        for (i, f) in fields.iter().enumerate() {
            self.field(out, indent, &f.shape, &f.name, i + 1);
        }
    }
}

fn doc_comment(out: &mut String, docs: &str, indent: &str) {
    for line in docs.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            writeln!(out, "{indent}//").ok();
        } else {
            writeln!(out, "{indent}// {}", line.trim_start()).ok();
        }
    }
}

/// A valid proto identifier from any text.
fn ident(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// `DoThing` → `do_thing`; `HTTPServer` → `http_server`.
fn snake(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if i > 0 && (prev_lower || next_lower) && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `do_thing` → `DoThing`.
fn pascal(s: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    if out.is_empty() { "Method".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_rules() {
        assert_eq!(
            package_and_service("oxrmi_tests::Counter"),
            ("oxrmi_tests.counter".into(), "Counter".into())
        );
        assert_eq!(
            package_and_service("oxrmi.Registry"),
            ("oxrmi.registry".into(), "Registry".into())
        );
        assert_eq!(
            package_and_service("a::b::HTTPServer"),
            ("a.b.http_server".into(), "HTTPServer".into())
        );
        assert_eq!(rpc_name("do_thing"), "DoThing");
        assert_eq!(enum_value_name("Color", "DarkRed"), "COLOR_DARK_RED");
    }
}

#[cfg(test)]
mod render_tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::{Deserialize, Serialize};

    use crate::{Remote, RemoteError, remote};

    /// A point.
    #[derive(Serialize, Deserialize)]
    pub(super) struct Point {
        x: i32,
        y: i32,
        label: Option<String>,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) enum Color {
        Red,
        DarkGreen,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) enum Figure {
        Empty,
        Dot(Point),
        Line(Point, Point),
        Poly { points: Vec<Point>, color: Color },
        Ids(Vec<u64>),
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct UserId(u64);

    #[derive(Serialize, Deserialize, Debug)]
    pub(super) enum DrawError {
        OutOfInk,
        Remote(RemoteError),
    }

    impl From<RemoteError> for DrawError {
        fn from(e: RemoteError) -> Self {
            DrawError::Remote(e)
        }
    }

    /// Draws things.
    #[remote(name = "oxrmi.test.Canvas")]
    pub(super) trait Canvas: Send + Sync {
        /// Draws one figure.
        async fn draw(&self, figure: Figure, owner: UserId) -> Result<u64, DrawError>;
        async fn everything(
            &self,
            a: Vec<Vec<i64>>,
            b: Option<Vec<String>>,
            c: HashMap<String, Vec<u8>>,
            d: BTreeMap<(i32, i32), Color>,
            e: (bool, char),
            #[allow(unused)] f: serde_bytes::ByteBuf,
        ) -> Result<Vec<Option<Point>>, RemoteError>;
        async fn sub(&self) -> Result<Remote<dyn Canvas>, RemoteError>;
        #[oneway]
        async fn log(&self, line: String) -> Result<(), RemoteError>;
    }

    #[test]
    fn renders_every_shape() {
        let types = crate::types::describe::<dyn Canvas>().unwrap();
        let f = super::render(&types).unwrap();
        println!("{}", f.text);
        assert_eq!(f.path, "oxrmi/test/canvas.proto");
        for line in [
            "package oxrmi.test.canvas;",
            "rpc Draw(DrawRequest) returns (DrawReply);",
            "  Figure figure = 1;\n  uint64 owner = 2;",
            "repeated ListOfInt64 a = 1;",
            "optional ListOfString b = 2;",
            "map<string, bytes> c = 3;",
            "repeated MapOfTupleInt32Int32ToColorEntry d = 4;",
            "TupleBoolChar e = 5;",
            "bytes f = 6;",
            "repeated OptionalPoint result = 1;",
            "ObjectRef result = 1;",
            "COLOR_DARK_GREEN = 1;",
            "    Unit empty = 1;",
            "    Point dot = 2;",
            "    Line line = 3;",
            "    ListOfUint64 ids = 5;",
            "optional string label = 3;",
        ] {
            assert!(f.text.contains(line), "missing `{line}` in\n{}", f.text);
        }
    }
}
