//! Tracing: a serde `Deserializer` that records what a type asks for instead of reading input.
//!
//! A type's `Deserialize` asks for a bool, a struct with these fields, an enum with those
//! variants…; the tracer answers with placeholder values and writes down each request. One pass
//! reaches one variant of every enum; passes repeat until every variant of every enum met has
//! been reached. Recursion is cut where a container appears a second time on the current path:
//! options come back `None`, sequences and maps empty, and an enum already on the path takes a
//! unit variant (or its first).

use std::collections::BTreeMap;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::{
    Container, Field, InterfaceTypes, MethodTypes, REMOTE_NAME, Shape, Variant, VariantData,
};
use crate::schema::InterfaceSchema;

/// How many passes tracing one interface may take (each reaches at least one more variant).
const MAX_PASSES: usize = 512;
/// How many passes without progress tracing makes before it gives up on unknown parts (enough
/// for every variant of an enum to be taken in turn at every place it appears).
const STALL_PASSES: usize = 64;
/// How deeply containers may nest on one path before tracing gives up.
const MAX_DEPTH: usize = 64;
/// Homogeneous tuples longer than this (`[u8; 32]`) are described as arrays.
const ARRAY_FROM: usize = 4;

/// A shape being traced: [`Shape`] plus "not known yet".
#[derive(Clone, Debug, Default, PartialEq)]
enum T {
    #[default]
    Unknown,
    Known(Box<Node>),
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Leaf(Shape),
    Option(T),
    Seq(T),
    Map(T, T),
    Tuple(Vec<T>),
    Named(&'static str),
    Remote,
}

#[derive(Clone, Debug)]
enum Rec {
    Unit,
    Newtype(T),
    Tuple(Vec<T>),
    Struct(Vec<(&'static str, T)>),
    Enum {
        names: &'static [&'static str],
        variants: Vec<Option<VRec>>,
        /// Encounters in the current pass (`pass` tells which): once all variants were reached,
        /// the `k`-th encounter of pass `p` takes variant `(k + p) mod n`, so over `n` passes
        /// every place the enum appears sees every variant (and what nests inside it).
        cursor: usize,
        pass: usize,
    },
}

#[derive(Clone, Debug)]
enum VRec {
    Unit,
    Newtype(T),
    Tuple(Vec<T>),
    Struct(Vec<(&'static str, T)>),
}

/// Why a type cannot be traced.
#[derive(Debug)]
struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        Error(msg.to_string())
    }
}

type Result<V> = std::result::Result<V, Error>;

fn merge(into: &mut T, from: T) -> Result<()> {
    let T::Known(b) = from else { return Ok(()) };
    let T::Known(a) = into else {
        *into = T::Known(b);
        return Ok(());
    };
    match (&mut **a, *b) {
        (Node::Option(x), Node::Option(y)) | (Node::Seq(x), Node::Seq(y)) => merge(x, y),
        (Node::Map(k, v), Node::Map(k2, v2)) => {
            merge(k, k2)?;
            merge(v, v2)
        }
        (Node::Tuple(xs), Node::Tuple(ys)) if xs.len() == ys.len() => {
            for (x, y) in xs.iter_mut().zip(ys) {
                merge(x, y)?;
            }
            Ok(())
        }
        (x, y) if *x == y => Ok(()),
        (x, y) => Err(Error(format!(
            "a value is deserialized as {x:?} once and as {y:?} another time"
        ))),
    }
}

fn merge_all(into: &mut [T], from: Vec<T>) -> Result<()> {
    for (a, b) in into.iter_mut().zip(from) {
        merge(a, b)?;
    }
    Ok(())
}

fn merge_fields(into: &mut [(&'static str, T)], from: Vec<(&'static str, T)>) -> Result<()> {
    for (a, b) in into.iter_mut().zip(from) {
        merge(&mut a.1, b.1)?;
    }
    Ok(())
}

/// What tracing has learnt so far, across passes.
#[derive(Default)]
struct State {
    containers: BTreeMap<&'static str, Rec>,
    /// The containers on the current path.
    path: Vec<&'static str>,
    /// The enum variants taken on the current path.
    taken: Vec<(&'static str, u32)>,
    /// Whether this pass reached something new.
    progress: bool,
    /// The pass under way.
    pass: usize,
}

impl State {
    /// Whether every variant of every enum met has been reached.
    fn complete(&self) -> bool {
        self.containers.values().all(|c| match c {
            Rec::Enum { variants, .. } => variants.iter().all(Option::is_some),
            _ => true,
        })
    }
}

impl State {
    /// Puts container `name` on the path.
    fn enter(&mut self, name: &'static str) -> Result<()> {
        if self.path.len() >= MAX_DEPTH {
            return Err(Error(format!(
                "`{name}` nests more than {MAX_DEPTH} levels deep (a type that contains itself \
                 without an Option, a collection or a unit variant to end it)"
            )));
        }
        self.path.push(name);
        Ok(())
    }

    /// Whether exploration stops here: a container repeats on the path.
    fn cut(&self) -> bool {
        let p = &self.path;
        p.len() > MAX_DEPTH || p.iter().enumerate().any(|(i, n)| p[..i].contains(n))
    }

    fn record(&mut self, name: &'static str, rec: Rec) -> Result<()> {
        match self.containers.get_mut(name) {
            None => {
                self.progress = true;
                self.containers.insert(name, rec);
                Ok(())
            }
            Some(existing) => match (existing, rec) {
                (Rec::Unit, Rec::Unit) => Ok(()),
                (Rec::Newtype(a), Rec::Newtype(b)) => merge(a, b),
                (Rec::Tuple(a), Rec::Tuple(b)) if a.len() == b.len() => merge_all(a, b),
                (Rec::Struct(a), Rec::Struct(b)) if a.len() == b.len() => merge_fields(a, b),
                (Rec::Enum { .. }, Rec::Enum { .. }) => Ok(()),
                _ => Err(Error(format!("two different types are called `{name}`"))),
            },
        }
    }

    /// The variant to take at an encounter with enum `name`.
    fn pick_variant(&mut self, name: &'static str, names: &'static [&'static str]) -> Result<u32> {
        if names.is_empty() {
            return Err(Error(format!("enum `{name}` has no variants")));
        }
        let on_path = self.path.contains(&name);
        let cut = self.cut();
        let this_pass = self.pass;
        let entry = self.containers.entry(name).or_insert_with(|| Rec::Enum {
            names,
            variants: vec![None; names.len()],
            cursor: 0,
            pass: this_pass,
        });
        let Rec::Enum {
            variants,
            cursor,
            pass,
            ..
        } = entry
        else {
            return Err(Error(format!("two different types are called `{name}`")));
        };
        if on_path {
            // Recursion: a unit variant ends the path soonest; failing one, a variant not
            // already taken on this path.
            if let Some(i) = variants.iter().position(|v| matches!(v, Some(VRec::Unit))) {
                return Ok(i as u32);
            }
            let taken = &self.taken;
            return (0..names.len() as u32)
                .find(|i| !taken.contains(&(name, *i)))
                .ok_or_else(|| {
                    Error(format!(
                        "enum `{name}` contains itself in every variant: no value of it ends"
                    ))
                });
        }
        if let Some(i) = variants.iter().position(Option::is_none) {
            self.progress = true;
            return Ok(i as u32);
        }
        if cut {
            // Below a cut nothing new is learnt: end the path soonest.
            return Ok(variants
                .iter()
                .position(|v| matches!(v, Some(VRec::Unit)))
                .unwrap_or(0) as u32);
        }
        if *pass != this_pass {
            *pass = this_pass;
            *cursor = 0;
        }
        let i = (*cursor + this_pass) % variants.len();
        *cursor += 1;
        Ok(i as u32)
    }

    fn record_variant(&mut self, name: &'static str, index: u32, data: VRec) -> Result<()> {
        let Some(Rec::Enum { variants, .. }) = self.containers.get_mut(name) else {
            return Err(Error(format!("enum `{name}` was not recorded")));
        };
        let Some(slot) = variants.get_mut(index as usize) else {
            return Err(Error(format!("enum `{name}` has no variant {index}")));
        };
        match (slot.as_mut(), data) {
            (None, d) => *slot = Some(d),
            (Some(VRec::Newtype(a)), VRec::Newtype(b)) => merge(a, b)?,
            (Some(VRec::Tuple(a)), VRec::Tuple(b)) => merge_all(a, b)?,
            (Some(VRec::Struct(a)), VRec::Struct(b)) => merge_fields(a, b)?,
            _ => {}
        }
        Ok(())
    }
}

/// The recording deserializer: writes what is asked of it into `out`.
struct De<'a> {
    st: &'a mut State,
    out: &'a mut T,
}

impl De<'_> {
    fn set(&mut self, node: Node) -> Result<()> {
        merge(self.out, T::Known(Box::new(node)))
    }

    fn leaf(&mut self, s: Shape) -> Result<()> {
        self.set(Node::Leaf(s))
    }
}

macro_rules! leaf {
    ($method:ident, $shape:ident, $visit:ident, $value:expr) => {
        fn $method<V: Visitor<'de>>(mut self, v: V) -> Result<V::Value> {
            self.leaf(Shape::$shape)?;
            v.$visit($value)
        }
    };
}

impl<'de> de::Deserializer<'de> for De<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value> {
        Err(Error(
            "a type deserializes itself by looking at the data (an untagged or flattened enum, \
             `deserialize_any`): its shape cannot be traced"
                .into(),
        ))
    }

    leaf!(deserialize_bool, Bool, visit_bool, false);
    leaf!(deserialize_i8, I8, visit_i8, 1);
    leaf!(deserialize_i16, I16, visit_i16, 1);
    leaf!(deserialize_i32, I32, visit_i32, 1);
    leaf!(deserialize_i64, I64, visit_i64, 1);
    leaf!(deserialize_i128, I128, visit_i128, 1);
    leaf!(deserialize_u8, U8, visit_u8, 1);
    leaf!(deserialize_u16, U16, visit_u16, 1);
    leaf!(deserialize_u32, U32, visit_u32, 1);
    leaf!(deserialize_u64, U64, visit_u64, 1);
    leaf!(deserialize_u128, U128, visit_u128, 1);
    leaf!(deserialize_f32, F32, visit_f32, 0.0);
    leaf!(deserialize_f64, F64, visit_f64, 0.0);
    leaf!(deserialize_char, Char, visit_char, 'a');
    leaf!(deserialize_str, Str, visit_str, "");
    leaf!(deserialize_string, Str, visit_string, String::new());
    // Sixteen bytes satisfy the common fixed-size binary types (UUIDs among them).
    leaf!(deserialize_bytes, Bytes, visit_bytes, &[0u8; 16]);
    leaf!(deserialize_byte_buf, Bytes, visit_byte_buf, vec![0u8; 16]);

    fn deserialize_unit<V: Visitor<'de>>(mut self, v: V) -> Result<V::Value> {
        self.leaf(Shape::Unit)?;
        v.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let mut inner = T::Unknown;
        let r = if self.st.cut() {
            v.visit_none()
        } else {
            v.visit_some(De {
                st: self.st,
                out: &mut inner,
            })
        };
        merge(self.out, T::Known(Box::new(Node::Option(inner))))?;
        r
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value> {
        self.set(Node::Named(name))?;
        self.st.record(name, Rec::Unit)?;
        v.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value> {
        if name == REMOTE_NAME {
            self.set(Node::Remote)?;
            let mut ignored = T::Unknown;
            return v.visit_newtype_struct(De {
                st: self.st,
                out: &mut ignored,
            });
        }
        self.set(Node::Named(name))?;
        self.st.enter(name)?;
        let mut inner = T::Unknown;
        let r = v.visit_newtype_struct(De {
            st: self.st,
            out: &mut inner,
        });
        self.st.path.pop();
        self.st.record(name, Rec::Newtype(inner))?;
        r
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let n = usize::from(!self.st.cut());
        let mut items = Items::new(self.st, n);
        let r = v.visit_seq(&mut items);
        let inner = items.slots.pop().unwrap_or_default();
        merge(self.out, T::Known(Box::new(Node::Seq(inner))))?;
        r
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value> {
        let mut items = Items::new(self.st, len);
        let r = v.visit_seq(&mut items);
        merge(self.out, T::Known(Box::new(Node::Tuple(items.slots))))?;
        r
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value> {
        self.set(Node::Named(name))?;
        self.st.enter(name)?;
        let mut items = Items::new(self.st, len);
        let r = v.visit_seq(&mut items);
        let items = items.slots;
        self.st.path.pop();
        self.st.record(name, Rec::Tuple(items))?;
        r
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let mut key = T::Unknown;
        let mut value = T::Unknown;
        let r = if self.st.cut() {
            v.visit_map(Entries {
                st: self.st,
                key: None,
                value: None,
            })
        } else {
            v.visit_map(Entries {
                st: self.st,
                key: Some(&mut key),
                value: Some(&mut value),
            })
        };
        merge(self.out, T::Known(Box::new(Node::Map(key, value))))?;
        r
    }

    fn deserialize_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        self.set(Node::Named(name))?;
        self.st.enter(name)?;
        let mut items = Items::new(self.st, fields.len());
        let r = v.visit_seq(&mut items);
        let slots = items.slots;
        self.st.path.pop();
        let rec = fields.iter().copied().zip(slots).collect();
        self.st.record(name, Rec::Struct(rec))?;
        r
    }

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        self.set(Node::Named(name))?;
        let index = self.st.pick_variant(name, variants)?;
        self.st.enter(name)?;
        self.st.taken.push((name, index));
        let r = v.visit_enum(OneVariant {
            st: self.st,
            name,
            index,
        });
        self.st.taken.pop();
        self.st.path.pop();
        r
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _v: V) -> Result<V::Value> {
        Err(Error(
            "an identifier outside an enum cannot be traced".into(),
        ))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_unit()
    }

    fn is_human_readable(&self) -> bool {
        // As MessagePack: compact forms (bytes for UUIDs, numbers for times).
        false
    }
}

/// The elements of a sequence, tuple or struct, each written to its own slot.
struct Items<'a> {
    st: &'a mut State,
    slots: Vec<T>,
    next: usize,
}

impl<'a> Items<'a> {
    fn new(st: &'a mut State, n: usize) -> Self {
        Items {
            st,
            slots: vec![T::Unknown; n],
            next: 0,
        }
    }
}

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>> {
        let Some(slot) = self.slots.get_mut(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        seed.deserialize(De {
            st: self.st,
            out: slot,
        })
        .map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.slots.len() - self.next)
    }
}

/// The one entry (or none) of a map.
struct Entries<'a> {
    st: &'a mut State,
    key: Option<&'a mut T>,
    value: Option<&'a mut T>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let Some(key) = self.key.take() else {
            return Ok(None);
        };
        seed.deserialize(De {
            st: self.st,
            out: key,
        })
        .map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value> {
        let Some(value) = self.value.take() else {
            return Err(Error("a map value was asked for twice".into()));
        };
        seed.deserialize(De {
            st: self.st,
            out: value,
        })
    }
}

/// The variant tracing takes at one encounter of an enum.
struct OneVariant<'a> {
    st: &'a mut State,
    name: &'static str,
    index: u32,
}

impl<'de, 'a> EnumAccess<'de> for OneVariant<'a> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self)> {
        let id = seed.deserialize(self.index.into_deserializer())?;
        Ok((id, self))
    }
}

impl<'de> VariantAccess<'de> for OneVariant<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        self.st.record_variant(self.name, self.index, VRec::Unit)
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value> {
        let mut inner = T::Unknown;
        let r = seed.deserialize(De {
            st: self.st,
            out: &mut inner,
        });
        self.st
            .record_variant(self.name, self.index, VRec::Newtype(inner))?;
        r
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value> {
        let mut items = Items::new(self.st, len);
        let r = v.visit_seq(&mut items);
        let items = items.slots;
        self.st
            .record_variant(self.name, self.index, VRec::Tuple(items))?;
        r
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        let mut items = Items::new(self.st, fields.len());
        let r = v.visit_seq(&mut items);
        let rec = fields.iter().copied().zip(items.slots).collect();
        self.st
            .record_variant(self.name, self.index, VRec::Struct(rec))?;
        r
    }
}

/// What the function `#[remote]` writes for an interface calls, method by method.
#[doc(hidden)]
pub struct TypeTracer {
    st: State,
    methods: Vec<MethodSlots>,
    /// The method being traced in this pass.
    current: usize,
}

struct MethodSlots {
    name: String,
    args: Vec<(String, T)>,
    ok: T,
    err: T,
    error: Option<String>,
}

impl TypeTracer {
    /// Starts the method called `name`.
    pub fn method(&mut self, name: &str) {
        match self.methods.iter().position(|m| m.name == name) {
            Some(i) => self.current = i,
            None => {
                self.methods.push(MethodSlots {
                    name: name.to_string(),
                    args: Vec::new(),
                    ok: T::Unknown,
                    err: T::Unknown,
                    error: None,
                });
                self.current = self.methods.len() - 1;
            }
        }
    }

    fn trace<X: DeserializeOwned>(
        &mut self,
        what: &str,
        slot: impl Fn(&mut MethodSlots) -> &mut T,
    ) {
        let Some(m) = self.methods.get_mut(self.current) else {
            return;
        };
        if m.error.is_some() {
            return;
        }
        let mut out = T::Unknown;
        self.st.path.clear();
        self.st.taken.clear();
        let r = X::deserialize(De {
            st: &mut self.st,
            out: &mut out,
        });
        let m = &mut self.methods[self.current];
        let r = r.and_then(|_| merge(slot(m), out));
        if let Err(e) = r {
            m.error = Some(format!("cannot trace the type of {what}: {e}"));
        }
    }

    /// The argument called `name` of the current method has type `A`.
    pub fn arg<A: DeserializeOwned>(&mut self, name: &str) {
        if let Some(m) = self.methods.get_mut(self.current)
            && !m.args.iter().any(|(n, _)| n == name)
        {
            m.args.push((name.to_string(), T::Unknown));
        }
        let name = name.to_string();
        self.trace::<A>(&format!("argument `{name}`"), move |m| {
            let i = m.args.iter().position(|(n, _)| *n == name).unwrap_or(0);
            &mut m.args[i].1
        });
    }

    /// The current method returns `Result<R, E>`.
    pub fn result<R: DeserializeOwned, E: DeserializeOwned>(&mut self) {
        self.trace::<R>("the result", |m| &mut m.ok);
        self.trace::<E>("the error", |m| &mut m.err);
    }
}

fn unknowns(t: &T) -> usize {
    match t {
        T::Unknown => 1,
        T::Known(node) => match &**node {
            Node::Option(x) | Node::Seq(x) => unknowns(x),
            Node::Map(k, v) => unknowns(k) + unknowns(v),
            Node::Tuple(ts) => ts.iter().map(unknowns).sum(),
            Node::Leaf(_) | Node::Named(_) | Node::Remote => 0,
        },
    }
}

fn unknowns_in(fields: &[(&'static str, T)]) -> usize {
    fields.iter().map(|(_, t)| unknowns(t)).sum()
}

impl TypeTracer {
    /// How many parts of the shapes traced so far are still unknown.
    fn unknown_parts(&self) -> usize {
        let containers: usize = self
            .st
            .containers
            .values()
            .map(|c| match c {
                Rec::Unit => 0,
                Rec::Newtype(t) => unknowns(t),
                Rec::Tuple(ts) => ts.iter().map(unknowns).sum(),
                Rec::Struct(fs) => unknowns_in(fs),
                Rec::Enum { variants, .. } => variants
                    .iter()
                    .flatten()
                    .map(|v| match v {
                        VRec::Unit => 0,
                        VRec::Newtype(t) => unknowns(t),
                        VRec::Tuple(ts) => ts.iter().map(unknowns).sum(),
                        VRec::Struct(fs) => unknowns_in(fs),
                    })
                    .sum(),
            })
            .sum();
        let methods: usize = self
            .methods
            .iter()
            .filter(|m| m.error.is_none())
            .map(|m| {
                m.args.iter().map(|(_, t)| unknowns(t)).sum::<usize>()
                    + unknowns(&m.ok)
                    + unknowns(&m.err)
            })
            .sum();
        containers + methods
    }
}

/// Traces an interface: passes over its methods until nothing new is reached.
pub(super) fn trace_interface(
    schema: &'static InterfaceSchema,
    trace: fn(&mut TypeTracer),
) -> std::result::Result<InterfaceTypes, String> {
    let mut t = TypeTracer {
        st: State::default(),
        methods: Vec::new(),
        current: 0,
    };
    // Done when every enum variant met was reached and no part of any shape is unknown. A part
    // first met where recursion is cut (an option left `None`) is reached in a later pass, when
    // the variant leading to it is taken higher up; passes go on while they make progress.
    let mut unknown = usize::MAX;
    let mut stalled = 0;
    for pass in 0..MAX_PASSES {
        t.st.progress = false;
        t.st.pass = pass;
        trace(&mut t);
        let now = t.unknown_parts();
        if t.st.complete() && now == 0 {
            return finish(schema, t);
        }
        if t.st.progress || now < unknown {
            stalled = 0;
        } else {
            stalled += 1;
            if stalled > STALL_PASSES {
                // What is still unknown is unreachable: `finish` says where.
                return finish(schema, t);
            }
        }
        unknown = unknown.min(now);
    }
    Err(format!("tracing did not finish within {MAX_PASSES} passes"))
}

fn finish(
    schema: &'static InterfaceSchema,
    t: TypeTracer,
) -> std::result::Result<InterfaceTypes, String> {
    let mut containers = BTreeMap::new();
    for (name, rec) in &t.st.containers {
        let c = container(name, rec).map_err(|e| format!("type `{name}`: {e}"))?;
        containers.insert(name.to_string(), c);
    }
    let methods = t
        .methods
        .into_iter()
        .map(|m| {
            let traced = (|| -> std::result::Result<_, String> {
                let args = m
                    .args
                    .iter()
                    .map(|(n, s)| {
                        Ok(Field {
                            name: n.clone(),
                            shape: shape(s)?,
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, String>>()?;
                Ok((args, shape(&m.ok)?, shape(&m.err)?))
            })();
            match (m.error, traced) {
                (None, Ok((args, ok, err))) => MethodTypes {
                    name: m.name,
                    args,
                    ok,
                    err,
                    error: None,
                },
                (error, traced) => MethodTypes {
                    name: m.name,
                    args: Vec::new(),
                    ok: Shape::Unit,
                    err: Shape::Unit,
                    error: error.or(traced.err()),
                },
            }
        })
        .collect();
    Ok(InterfaceTypes {
        schema: schema.clone(),
        methods,
        containers,
        references: Vec::new(),
    })
}

fn shape(t: &T) -> std::result::Result<Shape, String> {
    let T::Known(node) = t else {
        return Err("a part of a type could not be reached by tracing".into());
    };
    Ok(match &**node {
        Node::Leaf(s) => s.clone(),
        Node::Option(t) => Shape::Option(Box::new(shape(t)?)),
        Node::Seq(t) => Shape::Seq(Box::new(shape(t)?)),
        Node::Map(k, v) => Shape::Map {
            key: Box::new(shape(k)?),
            value: Box::new(shape(v)?),
        },
        Node::Tuple(ts) => {
            let items = ts
                .iter()
                .map(shape)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if items.len() > ARRAY_FROM && items.windows(2).all(|w| w[0] == w[1]) {
                Shape::Array {
                    len: items.len(),
                    item: Box::new(items[0].clone()),
                }
            } else {
                Shape::Tuple(items)
            }
        }
        Node::Named(n) => Shape::Named(n.to_string()),
        Node::Remote => Shape::Remote,
    })
}

fn fields(fs: &[(&'static str, T)]) -> std::result::Result<Vec<Field>, String> {
    fs.iter()
        .map(|(n, t)| {
            Ok(Field {
                name: n.to_string(),
                shape: shape(t)?,
            })
        })
        .collect()
}

fn shapes(ts: &[T]) -> std::result::Result<Vec<Shape>, String> {
    ts.iter().map(shape).collect()
}

fn container(name: &str, rec: &Rec) -> std::result::Result<Container, String> {
    Ok(match rec {
        Rec::Unit => Container::Unit,
        Rec::Newtype(t) => Container::Newtype(shape(t)?),
        Rec::Tuple(ts) => Container::Tuple(shapes(ts)?),
        Rec::Struct(fs) => Container::Struct(fields(fs)?),
        Rec::Enum {
            names, variants, ..
        } => {
            let mut out = Vec::with_capacity(variants.len());
            for (n, v) in names.iter().zip(variants) {
                let data = match v {
                    None => return Err(format!("variant `{n}` of `{name}` was not reached")),
                    Some(VRec::Unit) => VariantData::Unit,
                    Some(VRec::Newtype(t)) => VariantData::Newtype(shape(t)?),
                    Some(VRec::Tuple(ts)) => VariantData::Tuple(shapes(ts)?),
                    Some(VRec::Struct(fs)) => VariantData::Struct(fields(fs)?),
                };
                out.push(Variant {
                    name: n.to_string(),
                    data,
                });
            }
            Container::Enum(out)
        }
    })
}
