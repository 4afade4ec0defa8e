//! Protobuf ↔ MessagePack for one interface, by its traced shapes: a request's fields become the
//! call's arguments as the method's own `Deserialize` expects them, and the reply's MessagePack
//! becomes the reply message. The mapping is [`crate::proto`]'s, through its [`Layout`].
//!
//! Both directions stream: arguments are written by `Serialize` impls that read the decoded
//! `DynamicMessage`, results are read by `DeserializeSeed`s that build the reply message; no
//! intermediate tree. References (`ObjectRef`) go through the bridge's [`Handles`].

use std::collections::HashMap;
use std::fmt;

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, MapKey, MessageDescriptor, ReflectMessage,
    Value,
};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, SerializeMap, SerializeSeq, SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use super::handles::Handles;
use crate::AnyRemote;
use crate::proto::{self, Layout};
use crate::runtime::RuntimeInner;
use crate::types::{Container, Shape, VariantData};

/// What converting one interface's values needs.
pub(crate) struct Codec<'a> {
    pub(crate) layout: Layout<'a>,
    pub(crate) pool: &'a DescriptorPool,
    pub(crate) package: &'a str,
    pub(crate) handles: &'a Handles,
    pub(crate) bridge: &'a std::sync::Arc<RuntimeInner>,
    /// The served runtime, whose objects references may name by a bare id.
    pub(crate) served: &'a RuntimeInner,
}

impl Codec<'_> {
    fn message(&self, name: &str) -> Result<MessageDescriptor, String> {
        let full = format!("{}.{name}", self.package);
        self.pool
            .get_message_by_name(&full)
            .ok_or_else(|| format!("no message `{full}` in the descriptors"))
    }
}

fn field(desc: &MessageDescriptor, number: usize) -> Result<FieldDescriptor, String> {
    desc.get_field(number as u32)
        .ok_or_else(|| format!("message `{}` has no field {number}", desc.full_name()))
}

fn value_field(desc: &MessageDescriptor) -> Result<FieldDescriptor, String> {
    field(desc, 1)
}

// ---------------------------------------------------------------------------------------------
// Protobuf → MessagePack (arguments)

/// The value of a field of a decoded request (or of a message inside it), as `Serialize`.
pub(crate) struct Arg<'c, 'm> {
    c: &'c Codec<'c>,
    shape: &'m Shape,
    m: &'m DynamicMessage,
    fd: &'m FieldDescriptor,
}

impl<'c, 'm> Arg<'c, 'm> {
    /// The value of field `fd` of `m`, of shape `shape`.
    pub(crate) fn field(
        c: &'c Codec<'c>,
        shape: &'m Shape,
        m: &'m DynamicMessage,
        fd: &'m FieldDescriptor,
    ) -> Self {
        Arg { c, shape, m, fd }
    }
}

impl Serialize for Arg<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ser_field(self.c, self.shape, self.m, self.fd, s)
    }
}

fn bad<E: ser::Error>(msg: impl fmt::Display) -> E {
    E::custom(msg)
}

fn ser_field<S: Serializer>(
    c: &Codec<'_>,
    shape: &Shape,
    m: &DynamicMessage,
    fd: &FieldDescriptor,
    s: S,
) -> Result<S::Ok, S::Error> {
    let resolved = c.layout.resolve(shape);
    if let Shape::Option(inner) = resolved {
        if !m.has_field(fd) {
            return s.serialize_none();
        }
        let v = m.get_field(fd);
        return s.serialize_some(&Item {
            c,
            shape: inner,
            v: &v,
        });
    }
    let v = m.get_field(fd);
    ser_value(c, resolved, &v, s)
}

fn int<T: TryFrom<i64>, E: ser::Error>(v: i64, ty: &str) -> Result<T, E> {
    T::try_from(v).map_err(|_| bad(format!("{v} is out of range for {ty}")))
}

fn uint<T: TryFrom<u64>, E: ser::Error>(v: u64, ty: &str) -> Result<T, E> {
    T::try_from(v).map_err(|_| bad(format!("{v} is out of range for {ty}")))
}

fn expect<T, E: ser::Error>(v: Option<T>, what: &str, got: &Value) -> Result<T, E> {
    v.ok_or_else(|| bad(format!("expected {what}, found {got:?}")))
}

fn ser_value<S: Serializer>(
    c: &Codec<'_>,
    shape: &Shape,
    v: &Value,
    s: S,
) -> Result<S::Ok, S::Error> {
    let shape = c.layout.resolve(shape);
    match shape {
        Shape::Unit => s.serialize_unit(),
        Shape::Bool => s.serialize_bool(expect(v.as_bool(), "a bool", v)?),
        Shape::I8 => s.serialize_i8(int(expect(v.as_i32(), "an int32", v)?.into(), "i8")?),
        Shape::I16 => s.serialize_i16(int(expect(v.as_i32(), "an int32", v)?.into(), "i16")?),
        Shape::I32 => s.serialize_i32(expect(v.as_i32(), "an int32", v)?),
        Shape::I64 => s.serialize_i64(expect(v.as_i64(), "an int64", v)?),
        Shape::U8 => s.serialize_u8(uint(expect(v.as_u32(), "a uint32", v)?.into(), "u8")?),
        Shape::U16 => s.serialize_u16(uint(expect(v.as_u32(), "a uint32", v)?.into(), "u16")?),
        Shape::U32 => s.serialize_u32(expect(v.as_u32(), "a uint32", v)?),
        Shape::U64 => s.serialize_u64(expect(v.as_u64(), "a uint64", v)?),
        Shape::I128 => {
            let t = expect(v.as_str(), "a string", v)?;
            s.serialize_i128(t.trim().parse().map_err(|e| bad(format!("`{t}`: {e}")))?)
        }
        Shape::U128 => {
            let t = expect(v.as_str(), "a string", v)?;
            s.serialize_u128(t.trim().parse().map_err(|e| bad(format!("`{t}`: {e}")))?)
        }
        Shape::F32 => s.serialize_f32(expect(v.as_f32(), "a float", v)?),
        Shape::F64 => s.serialize_f64(expect(v.as_f64(), "a double", v)?),
        Shape::Char => {
            let t = expect(v.as_str(), "a string", v)?;
            let mut chars = t.chars();
            match (chars.next(), chars.next()) {
                (Some(ch), None) => s.serialize_char(ch),
                _ => Err(bad(format!("expected one character, found `{t}`"))),
            }
        }
        Shape::Str => s.serialize_str(expect(v.as_str(), "a string", v)?),
        Shape::Bytes => s.serialize_bytes(expect(v.as_bytes(), "bytes", v)?),
        Shape::Seq(inner) | Shape::Array { item: inner, .. } => {
            let len = match shape {
                Shape::Array { len, .. } => Some(*len),
                _ => None,
            };
            if matches!(c.layout.resolve(inner), Shape::U8) {
                let bytes = expect(v.as_bytes(), "bytes", v)?;
                return ser_items(len, bytes.len(), bytes.iter(), s, |b, out| out.push(b));
            }
            let items = expect(v.as_list(), "a list", v)?;
            ser_items(len, items.len(), items.iter(), s, |item, out| {
                out.push(&Item {
                    c,
                    shape: inner,
                    v: item,
                })
            })
        }
        Shape::Map { key, value } => {
            if c.layout.is_map_key(key) {
                let map = expect(v.as_map(), "a map", v)?;
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, val) in map {
                    m.serialize_key(&Key { c, shape: key, k })?;
                    m.serialize_value(&Item {
                        c,
                        shape: value,
                        v: val,
                    })?;
                }
                m.end()
            } else {
                let entries = expect(v.as_list(), "a list of entries", v)?;
                let mut m = s.serialize_map(Some(entries.len()))?;
                for e in entries {
                    let e = expect(e.as_message(), "an entry message", e)?;
                    let d = e.descriptor();
                    let (kf, vf) = (field(&d, 1).map_err(bad)?, field(&d, 2).map_err(bad)?);
                    m.serialize_key(&Arg::field(c, key, e, &kf))?;
                    m.serialize_value(&Arg::field(c, value, e, &vf))?;
                }
                m.end()
            }
        }
        Shape::Tuple(items) => {
            let m = expect(v.as_message(), "a message", v)?;
            ser_fields(c, items.iter(), m, s)
        }
        Shape::Named(name) => ser_named(c, name, v, s),
        Shape::Remote => {
            let m = expect(v.as_message(), "an ObjectRef", v)?;
            let id = m
                .get_field_by_number(1)
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            if id.is_empty() {
                return Err(bad("an ObjectRef without an id"));
            }
            let h = c
                .handles
                .get(c.bridge, c.served, &id)
                .map_err(|s| bad(s.message()))?;
            h.serialize(s)
        }
        Shape::Option(_) => Err(bad("an optional value outside a field")),
    }
}

/// Collects items then writes them as a sequence (`Vec`) or a tuple (`[T; N]`, length checked).
fn ser_items<'i, I, T: 'i, S: Serializer>(
    len: Option<usize>,
    n: usize,
    items: I,
    s: S,
    mut push: impl FnMut(T, &mut Items<S>) -> Result<(), S::Error>,
) -> Result<S::Ok, S::Error>
where
    I: Iterator<Item = T>,
{
    match len {
        Some(want) if want != n => Err(bad(format!("expected {want} items, found {n}"))),
        Some(want) => {
            let mut out = Items::Tuple(s.serialize_tuple(want)?);
            for i in items {
                push(i, &mut out)?;
            }
            out.end()
        }
        None => {
            let mut out = Items::Seq(s.serialize_seq(Some(n))?);
            for i in items {
                push(i, &mut out)?;
            }
            out.end()
        }
    }
}

/// A sequence being written: a `Vec`'s, or a fixed-size array's (a tuple in serde).
enum Items<S: Serializer> {
    Seq(S::SerializeSeq),
    Tuple(S::SerializeTuple),
}

impl<S: Serializer> Items<S> {
    fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), S::Error> {
        match self {
            Items::Seq(q) => q.serialize_element(v),
            Items::Tuple(t) => t.serialize_element(v),
        }
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        match self {
            Items::Seq(q) => q.end(),
            Items::Tuple(t) => t.end(),
        }
    }
}

/// A value where a plain field type is expected (a list item, a map value, an optional's
/// content): through its wrapper message if its shape needs one.
struct Item<'c, 'v> {
    c: &'c Codec<'c>,
    shape: &'v Shape,
    v: &'v Value,
}

impl Serialize for Item<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.c.layout.needs_wrapper(self.shape) {
            let w = expect(self.v.as_message(), "a wrapper message", self.v)?;
            let fd = value_field(&w.descriptor()).map_err(bad)?;
            ser_field(self.c, self.shape, w, &fd, s)
        } else {
            ser_value(self.c, self.shape, self.v, s)
        }
    }
}

/// A map key.
struct Key<'c, 'v> {
    c: &'c Codec<'c>,
    shape: &'v Shape,
    k: &'v MapKey,
}

impl Serialize for Key<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = match self.k {
            MapKey::Bool(b) => Value::Bool(*b),
            MapKey::I32(n) => Value::I32(*n),
            MapKey::I64(n) => Value::I64(*n),
            MapKey::U32(n) => Value::U32(*n),
            MapKey::U64(n) => Value::U64(*n),
            MapKey::String(t) => Value::String(t.clone()),
        };
        ser_value(self.c, self.shape, &v, s)
    }
}

/// The fields of a message, numbered from 1, as a tuple (structs, tuples and tuple variants
/// are arrays in MessagePack).
fn ser_fields<'s, S: Serializer>(
    c: &Codec<'_>,
    shapes: impl ExactSizeIterator<Item = &'s Shape>,
    m: &DynamicMessage,
    s: S,
) -> Result<S::Ok, S::Error> {
    let d = m.descriptor();
    let mut t = s.serialize_tuple(shapes.len())?;
    for (i, shape) in shapes.enumerate() {
        let fd = field(&d, i + 1).map_err(bad)?;
        t.serialize_element(&Arg::field(c, shape, m, &fd))?;
    }
    t.end()
}

/// The content of an enum variant, as the map value `{variant: content}`.
struct VariantContent<'c, 'm> {
    c: &'c Codec<'c>,
    data: &'m VariantData,
    m: &'m DynamicMessage,
    fd: &'m FieldDescriptor,
}

impl Serialize for VariantContent<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.c;
        match self.data {
            VariantData::Unit => s.serialize_unit(),
            VariantData::Newtype(shape) => {
                if c.layout.needs_wrapper(shape) {
                    let v = self.m.get_field(self.fd);
                    Item { c, shape, v: &v }.serialize(s)
                } else {
                    Arg::field(c, shape, self.m, self.fd).serialize(s)
                }
            }
            VariantData::Tuple(items) => {
                let v = self.m.get_field(self.fd);
                let inner = expect(v.as_message(), "a message", &v)?;
                ser_fields(c, items.iter(), inner, s)
            }
            VariantData::Struct(fields) => {
                let v = self.m.get_field(self.fd);
                let inner = expect(v.as_message(), "a message", &v)?;
                ser_fields(c, fields.iter().map(|f| &f.shape), inner, s)
            }
        }
    }
}

fn ser_named<S: Serializer>(c: &Codec<'_>, name: &str, v: &Value, s: S) -> Result<S::Ok, S::Error> {
    let Some(container) = c.layout.container(name) else {
        return Err(bad(format!("unknown type `{name}`")));
    };
    match container {
        Container::Unit => s.serialize_tuple(0)?.end(),
        Container::Newtype(inner) => {
            // Not transparent (it contains itself): a message with `value`.
            let m = expect(v.as_message(), "a message", v)?;
            let fd = value_field(&m.descriptor()).map_err(bad)?;
            Arg::field(c, inner, m, &fd).serialize(s)
        }
        Container::Tuple(items) => {
            let m = expect(v.as_message(), "a message", v)?;
            ser_fields(c, items.iter(), m, s)
        }
        Container::Struct(fields) => {
            let m = expect(v.as_message(), "a message", v)?;
            ser_fields(c, fields.iter().map(|f| &f.shape), m, s)
        }
        Container::Enum(variants) if c.layout.is_plain_enum(name) => {
            let n = expect(v.as_enum_number(), "an enum value", v)?;
            let variant = usize::try_from(n)
                .ok()
                .and_then(|i| variants.get(i))
                .ok_or_else(|| bad(format!("{n} is not a value of enum `{name}`")))?;
            s.serialize_str(&variant.name)
        }
        Container::Enum(variants) => {
            let m = expect(v.as_message(), "a message", v)?;
            let d = m.descriptor();
            let set = (1..=variants.len())
                .find(|&i| d.get_field(i as u32).is_some_and(|fd| m.has_field(&fd)));
            let Some(i) = set else {
                return Err(bad(format!("no variant of `{name}` is set")));
            };
            let variant = &variants[i - 1];
            if variant.data == VariantData::Unit {
                return s.serialize_str(&variant.name);
            }
            let fd = field(&d, i).map_err(bad)?;
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry(
                &variant.name,
                &VariantContent {
                    c,
                    data: &variant.data,
                    m,
                    fd: &fd,
                },
            )?;
            map.end()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MessagePack → protobuf (results and errors)

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// The value of a field: `None` leaves the field unset (`Option::None`).
    Field,
    /// A single value where a plain field type is expected.
    Value,
    /// A value through its wrapper message if its shape needs one.
    Item,
}

/// Reads a value of `shape` from MessagePack, as the protobuf value of its field.
pub(crate) struct Read<'c, 's> {
    c: &'c Codec<'c>,
    shape: &'s Shape,
    mode: Mode,
}

impl<'c, 's> Read<'c, 's> {
    /// The value of a field of shape `shape`.
    pub(crate) fn field(c: &'c Codec<'c>, shape: &'s Shape) -> Self {
        Read {
            c,
            shape,
            mode: Mode::Field,
        }
    }
}

fn err<E: de::Error>(msg: impl fmt::Display) -> E {
    E::custom(msg)
}

fn message_with<E: de::Error>(
    desc: MessageDescriptor,
    fields: Vec<(usize, Value)>,
) -> Result<Value, E> {
    let mut m = DynamicMessage::new(desc);
    for (n, v) in fields {
        m.try_set_field_by_number(n as u32, v)
            .map_err(|e| err(format!("{}: field {n}: {e}", m.descriptor().full_name())))?;
    }
    Ok(Value::Message(m))
}

impl<'de> DeserializeSeed<'de> for Read<'_, '_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        let c = self.c;
        match self.mode {
            Mode::Item if c.layout.needs_wrapper(self.shape) => {
                let desc = c.message(&proto::wrapper_name(self.shape)).map_err(err)?;
                let inner = Read::field(c, self.shape).deserialize(d)?;
                let fields = inner.map(|v| vec![(1, v)]).unwrap_or_default();
                message_with(desc, fields).map(Some)
            }
            Mode::Field => {
                if let Shape::Option(inner) = c.layout.resolve(self.shape) {
                    return d.deserialize_option(OptionVisitor { c, inner });
                }
                Read {
                    mode: Mode::Value,
                    ..self
                }
                .deserialize(d)
            }
            Mode::Item | Mode::Value => read_value(c, self.shape, d).map(Some),
        }
    }
}

struct OptionVisitor<'c, 's> {
    c: &'c Codec<'c>,
    inner: &'s Shape,
}

impl<'de> Visitor<'de> for OptionVisitor<'_, '_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an optional value")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        Read {
            c: self.c,
            shape: self.inner,
            mode: Mode::Item,
        }
        .deserialize(d)
    }
}

fn need<E: de::Error>(v: Option<Value>) -> Result<Value, E> {
    v.ok_or_else(|| err("a value is missing"))
}

fn read_value<'de, D: Deserializer<'de>>(
    c: &Codec<'_>,
    shape: &Shape,
    d: D,
) -> Result<Value, D::Error> {
    let resolved = c.layout.resolve(shape);
    Ok(match resolved {
        Shape::Unit => {
            <()>::deserialize(d)?;
            message_with(c.message(proto::UNIT).map_err(err)?, Vec::new())?
        }
        Shape::Bool => Value::Bool(bool::deserialize(d)?),
        Shape::I8 | Shape::I16 | Shape::I32 => Value::I32(i32::deserialize(d)?),
        Shape::I64 => Value::I64(i64::deserialize(d)?),
        Shape::U8 | Shape::U16 | Shape::U32 => Value::U32(u32::deserialize(d)?),
        Shape::U64 => Value::U64(u64::deserialize(d)?),
        Shape::I128 => Value::String(i128::deserialize(d)?.to_string()),
        Shape::U128 => Value::String(u128::deserialize(d)?.to_string()),
        Shape::F32 => Value::F32(f32::deserialize(d)?),
        Shape::F64 => Value::F64(f64::deserialize(d)?),
        Shape::Char => Value::String(char::deserialize(d)?.to_string()),
        Shape::Str => Value::String(String::deserialize(d)?),
        Shape::Bytes => Value::Bytes(serde_bytes::ByteBuf::deserialize(d)?.into_vec().into()),
        Shape::Seq(inner) | Shape::Array { item: inner, .. } => {
            if matches!(c.layout.resolve(inner), Shape::U8) {
                let bytes: Vec<u8> = d.deserialize_seq(ByteList)?;
                Value::Bytes(bytes.into())
            } else {
                Value::List(d.deserialize_seq(SeqOf { c, shape: inner })?)
            }
        }
        Shape::Map { key, value } => {
            if c.layout.is_map_key(key) {
                Value::Map(d.deserialize_map(MapOf { c, key, value })?)
            } else {
                let desc = c.message(&proto::entry_name(key, value)).map_err(err)?;
                Value::List(d.deserialize_map(EntriesOf {
                    c,
                    key,
                    value,
                    desc,
                })?)
            }
        }
        Shape::Tuple(items) => {
            let desc = c.message(&proto::wrapper_name(resolved)).map_err(err)?;
            d.deserialize_seq(FieldsOf {
                c,
                shapes: items.iter().collect(),
                desc,
            })?
        }
        Shape::Named(name) => read_named(c, name, d)?,
        Shape::Remote => {
            let h = AnyRemote::deserialize(d)?;
            let interface = h.interface().to_string();
            let id = c.handles.keep(h);
            message_with(
                c.message(proto::OBJECT_REF).map_err(err)?,
                vec![(1, Value::String(id)), (2, Value::String(interface))],
            )?
        }
        Shape::Option(inner) => {
            // Only through a wrapper (an optional list item, say): the wrapper's `value`.
            let v = d.deserialize_option(OptionVisitor { c, inner })?;
            need(v)?
        }
    })
}

/// A byte list read element by element (the `Vec<u8>` that is not `serde_bytes`).
struct ByteList;

impl<'de> Visitor<'de> for ByteList {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of bytes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = a.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }
}

struct SeqOf<'c, 's> {
    c: &'c Codec<'c>,
    shape: &'s Shape,
}

impl<'de> Visitor<'de> for SeqOf<'_, '_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Vec<Value>, A::Error> {
        let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = a.next_element_seed(Read {
            c: self.c,
            shape: self.shape,
            mode: Mode::Item,
        })? {
            out.push(need(v)?);
        }
        Ok(out)
    }
}

struct MapOf<'c, 's> {
    c: &'c Codec<'c>,
    key: &'s Shape,
    value: &'s Shape,
}

impl<'de> Visitor<'de> for MapOf<'_, '_> {
    type Value = HashMap<MapKey, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut out = HashMap::with_capacity(a.size_hint().unwrap_or(0).min(4096));
        while let Some(k) = a.next_key_seed(Read {
            c: self.c,
            shape: self.key,
            mode: Mode::Value,
        })? {
            let key = match need(k)? {
                Value::Bool(b) => MapKey::Bool(b),
                Value::I32(n) => MapKey::I32(n),
                Value::I64(n) => MapKey::I64(n),
                Value::U32(n) => MapKey::U32(n),
                Value::U64(n) => MapKey::U64(n),
                Value::String(t) => MapKey::String(t),
                other => return Err(err(format!("{other:?} cannot be a map key"))),
            };
            let v = a.next_value_seed(Read {
                c: self.c,
                shape: self.value,
                mode: Mode::Item,
            })?;
            out.insert(key, need(v)?);
        }
        Ok(out)
    }
}

struct EntriesOf<'c, 's> {
    c: &'c Codec<'c>,
    key: &'s Shape,
    value: &'s Shape,
    desc: MessageDescriptor,
}

impl<'de> Visitor<'de> for EntriesOf<'_, '_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = a.next_key_seed(Read::field(self.c, self.key))? {
            let v = a.next_value_seed(Read::field(self.c, self.value))?;
            let mut fields = Vec::with_capacity(2);
            if let Some(k) = k {
                fields.push((1, k));
            }
            if let Some(v) = v {
                fields.push((2, v));
            }
            out.push(message_with(self.desc.clone(), fields)?);
        }
        Ok(out)
    }
}

/// The fields of a message, numbered from 1, read from an array (structs, tuples, variants).
struct FieldsOf<'c, 's> {
    c: &'c Codec<'c>,
    shapes: Vec<&'s Shape>,
    desc: MessageDescriptor,
}

impl<'de> Visitor<'de> for FieldsOf<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {} fields", self.shapes.len())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut fields = Vec::with_capacity(self.shapes.len());
        for (i, shape) in self.shapes.iter().enumerate() {
            match a.next_element_seed(Read::field(self.c, shape))? {
                Some(Some(v)) => fields.push((i + 1, v)),
                Some(None) => {}
                None => {
                    return Err(err(format!(
                        "expected {} fields, found {i}",
                        self.shapes.len()
                    )));
                }
            }
        }
        message_with(self.desc, fields)
    }

    fn visit_map<A: MapAccess<'de>>(self, _a: A) -> Result<Value, A::Error> {
        Err(err(
            "a struct encoded with field names (the bridge reads compact structs)",
        ))
    }
}

fn read_named<'de, D: Deserializer<'de>>(
    c: &Codec<'_>,
    name: &str,
    d: D,
) -> Result<Value, D::Error> {
    let Some(container) = c.layout.container(name) else {
        return Err(err(format!("unknown type `{name}`")));
    };
    match container {
        Container::Unit => d.deserialize_seq(FieldsOf {
            c,
            shapes: Vec::new(),
            desc: c.message(name).map_err(err)?,
        }),
        Container::Newtype(inner) => {
            let v = Read::field(c, inner).deserialize(d)?;
            message_with(
                c.message(name).map_err(err)?,
                v.map(|v| vec![(1, v)]).unwrap_or_default(),
            )
        }
        Container::Tuple(items) => d.deserialize_seq(FieldsOf {
            c,
            shapes: items.iter().collect(),
            desc: c.message(name).map_err(err)?,
        }),
        Container::Struct(fields) => d.deserialize_seq(FieldsOf {
            c,
            shapes: fields.iter().map(|f| &f.shape).collect(),
            desc: c.message(name).map_err(err)?,
        }),
        Container::Enum(_) => d.deserialize_any(EnumVisitor { c, name }),
    }
}

struct EnumVisitor<'c, 'n> {
    c: &'c Codec<'c>,
    name: &'n str,
}

impl EnumVisitor<'_, '_> {
    fn variants(&self) -> &[crate::types::Variant] {
        match self.c.layout.container(self.name) {
            Some(Container::Enum(v)) => v,
            _ => &[],
        }
    }

    fn index_of<E: de::Error>(&self, id: VariantId<'_>) -> Result<usize, E> {
        let vs = self.variants();
        match id {
            VariantId::Index(i) => usize::try_from(i).ok().filter(|i| *i < vs.len()),
            VariantId::Name(n) => vs.iter().position(|v| v.name == n),
        }
        .ok_or_else(|| err(format!("no such variant of `{}`", self.name)))
    }

    fn unit<E: de::Error>(&self, i: usize) -> Result<Value, E> {
        if self.c.layout.is_plain_enum(self.name) {
            return Ok(Value::EnumNumber(i as i32));
        }
        let unit = message_with(self.c.message(proto::UNIT).map_err(err)?, Vec::new())?;
        message_with(self.c.message(self.name).map_err(err)?, vec![(i + 1, unit)])
    }
}

enum VariantId<'a> {
    Index(u64),
    Name(&'a str),
}

impl<'de> Visitor<'de> for EnumVisitor<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value of enum `{}`", self.name)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        let i = self.index_of(VariantId::Name(v))?;
        self.unit(i)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        let i = self.index_of(VariantId::Index(v))?;
        self.unit(i)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.visit_u64(u64::try_from(v).map_err(|_| err("a negative variant index"))?)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let key: VariantKey = a
            .next_key()?
            .ok_or_else(|| err(format!("an empty map for enum `{}`", self.name)))?;
        let i = match &key {
            VariantKey::Index(n) => self.index_of(VariantId::Index(*n))?,
            VariantKey::Name(n) => self.index_of(VariantId::Name(n))?,
        };
        let c = self.c;
        let variant = &self.variants()[i];
        let content = match &variant.data {
            VariantData::Unit => {
                a.next_value::<de::IgnoredAny>()?;
                return self.unit(i);
            }
            VariantData::Newtype(shape) => need(a.next_value_seed(Read {
                c,
                shape,
                mode: Mode::Item,
            })?)?,
            VariantData::Tuple(items) => a.next_value_seed(SeqSeed(FieldsOf {
                c,
                shapes: items.iter().collect(),
                desc: c
                    .message(&format!("{}.{}", self.name, variant.name))
                    .map_err(err)?,
            }))?,
            VariantData::Struct(fields) => a.next_value_seed(SeqSeed(FieldsOf {
                c,
                shapes: fields.iter().map(|f| &f.shape).collect(),
                desc: c
                    .message(&format!("{}.{}", self.name, variant.name))
                    .map_err(err)?,
            }))?,
        };
        message_with(c.message(self.name).map_err(err)?, vec![(i + 1, content)])
    }
}

/// A variant key: its name (rmp-serde's form) or its index.
enum VariantKey {
    Index(u64),
    Name(String),
}

impl<'de> Deserialize<'de> for VariantKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = VariantKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a variant name or index")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VariantKey, E> {
                Ok(VariantKey::Name(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<VariantKey, E> {
                Ok(VariantKey::Index(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<VariantKey, E> {
                u64::try_from(v)
                    .map(VariantKey::Index)
                    .map_err(|_| err("a negative variant index"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A visitor of an array, as a seed.
struct SeqSeed<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for SeqSeed<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_seq(self.0)
    }
}
