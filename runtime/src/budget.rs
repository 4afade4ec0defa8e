//! Decode budgets: how much memory a peer's bytes may decode into.
//!
//! A frame's size bounds the bytes a peer sends, not what they become: one byte of MessagePack
//! (an empty string, say) is a 24-byte `String` in a `Vec<String>`, so a 16 MiB frame could
//! decode into hundreds of megabytes. Every value a peer sends is therefore decoded through
//! [`Counted`], a serde `Deserializer` wrapper that charges a [`Budget`] as the value is built,
//! before the memory is taken:
//!
//! - each element of a sequence costs the size of the element's type (`size_of`, at least 1),
//!   each entry of a map the sizes of its key and value types;
//! - each string or byte buffer costs its length;
//! - a collection longer than the collection-length limit is refused from its declared length,
//!   before any element is decoded;
//! - per argument, `#[limit(len = N)]` bounds the length of the argument's outermost collection,
//!   string or byte buffer, and `#[limit(size = N)]` the bytes the argument may decode into.
//!
//! Heap memory owned by an element beyond its inline size (a `Box` in it, say) is charged when
//! that memory is itself decoded from a sequence, string or map, which is how it grows from a
//! peer's bytes. A collection's length header is not believed for pre-allocation: the size hint
//! handed to serde is at most [`HINT_CAP`] elements, so a header claiming millions of elements
//! (at every level of a nested value) reserves nothing it has not paid for; longer collections
//! grow as their elements arrive, so the memory taken stays within about twice what was
//! charged (three times while a vector moves to a larger buffer).
//!
//! **Invariant:** every path that decodes bytes from a peer into a user's type (call arguments
//! in `marshal::ArgsDecoder`, results and errors in `marshal::decode_value`) goes through
//! [`Counted`] with the runtime's [`DecodeLimits`].

use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use crate::RemoteError;

/// The default most bytes one message (a call's arguments together, or a result) may decode
/// into: four times the default frame size.
pub const DEFAULT_MAX_DECODED_SIZE: usize = 64 * 1024 * 1024;

/// The default most elements (or map entries) of one collection in a decoded value. Every
/// element takes at least one byte of a frame, so with the default frame size it is the frame
/// that binds; lower it (`RuntimeBuilder::max_collection_len`) to bound collections tighter.
pub const DEFAULT_MAX_COLLECTION_LEN: usize = 16 * 1024 * 1024;

/// A runtime's bounds on decoding one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DecodeLimits {
    /// Most bytes a message may decode into.
    pub(crate) max_decoded: u64,
    /// Most elements of one collection.
    pub(crate) max_len: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_decoded: DEFAULT_MAX_DECODED_SIZE as u64,
            max_len: DEFAULT_MAX_COLLECTION_LEN as u64,
        }
    }
}

/// Limits an interface declares on one argument with `#[limit(...)]`.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgLimit {
    /// Most elements, entries or bytes of the argument's outermost collection, string or
    /// byte buffer.
    pub len: Option<u64>,
    /// Most bytes the argument may decode into.
    pub size: Option<u64>,
}

/// Which bound a decode ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exceeded {
    /// The message's decoded size.
    Size(u64),
    /// A collection's length (the runtime's limit).
    Len(u64),
    /// The declared length of the argument.
    ArgLen(u64),
    /// The declared decoded size of the argument.
    ArgSize(u64),
}

impl Exceeded {
    /// The error for this bound, met while decoding `what` (`argument `x` of `put``, `the
    /// result of `get``).
    pub(crate) fn error(self, what: &str) -> RemoteError {
        let (what, limit) = match self {
            Exceeded::Size(l) => (
                format!("the decoded size of {what} (with what came before it)"),
                l,
            ),
            Exceeded::Len(l) => (format!("the length of a collection in {what}"), l),
            Exceeded::ArgLen(l) => (format!("the length of {what}"), l),
            Exceeded::ArgSize(l) => (format!("the decoded size of {what}"), l),
        };
        RemoteError::LimitExceeded { what, limit }
    }
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Size(l) => write!(f, "decodes into more than {l} bytes"),
            Exceeded::Len(l) => write!(f, "holds a collection of more than {l} elements"),
            Exceeded::ArgLen(l) => write!(f, "is longer than its declared limit of {l}"),
            Exceeded::ArgSize(l) => write!(f, "decodes into more than its declared {l} bytes"),
        }
    }
}

/// What one message may still decode into; shared by its arguments.
pub(crate) struct Budget {
    limits: DecodeLimits,
    /// Bytes left for the message.
    left: Cell<u64>,
    /// Bytes left for the argument being decoded (`u64::MAX` when it declares no size).
    arg_left: Cell<u64>,
    /// The declared size of the argument being decoded, for the error.
    arg_size: Cell<Option<u64>>,
    /// The bound that stopped the decode, if one did.
    exceeded: Cell<Option<Exceeded>>,
}

impl Budget {
    pub(crate) fn new(limits: DecodeLimits) -> Budget {
        Budget {
            limits,
            left: Cell::new(limits.max_decoded),
            arg_left: Cell::new(u64::MAX),
            arg_size: Cell::new(None),
            exceeded: Cell::new(None),
        }
    }

    /// Starts an argument with its declared size, if any.
    pub(crate) fn start_arg(&self, size: Option<u64>) {
        self.arg_left.set(size.unwrap_or(u64::MAX));
        self.arg_size.set(size);
    }

    /// The bound a failed decode ran into; `None` when it failed for another reason.
    pub(crate) fn exceeded(&self) -> Option<Exceeded> {
        self.exceeded.get()
    }

    fn trip<E: de::Error>(&self, why: Exceeded) -> E {
        self.exceeded.set(Some(why));
        E::custom(format_args!("the value {why}"))
    }

    fn charge<E: de::Error>(&self, bytes: u64) -> Result<(), E> {
        let Some(left) = self.left.get().checked_sub(bytes) else {
            return Err(self.trip(Exceeded::Size(self.limits.max_decoded)));
        };
        let Some(arg_left) = self.arg_left.get().checked_sub(bytes) else {
            let size = self.arg_size.get().unwrap_or(0);
            return Err(self.trip(Exceeded::ArgSize(size)));
        };
        self.left.set(left);
        if self.arg_left.get() != u64::MAX {
            self.arg_left.set(arg_left);
        }
        Ok(())
    }

    fn refund(&self, bytes: u64) {
        self.left.set(self.left.get().saturating_add(bytes));
        if self.arg_left.get() != u64::MAX {
            self.arg_left.set(self.arg_left.get().saturating_add(bytes));
        }
    }

    /// Checks a collection's length: against the argument's declared length when the
    /// collection is the argument's outermost value (`top`), and the runtime's limit.
    fn check_len<E: de::Error>(&self, len: usize, top: Option<u64>) -> Result<(), E> {
        let len = len as u64;
        if let Some(limit) = top
            && len > limit
        {
            return Err(self.trip(Exceeded::ArgLen(limit)));
        }
        if len > self.limits.max_len {
            return Err(self.trip(Exceeded::Len(self.limits.max_len)));
        }
        Ok(())
    }

    /// Checks and charges a string or byte buffer of `len` bytes.
    fn buffer<E: de::Error>(&self, len: usize, top: Option<u64>) -> Result<(), E> {
        if let Some(limit) = top
            && len as u64 > limit
        {
            return Err(self.trip(Exceeded::ArgLen(limit)));
        }
        self.charge(len as u64)
    }
}

/// The most elements a collection's size hint promises serde, whatever its header claims.
pub(crate) const HINT_CAP: usize = 16;

fn cost<T>() -> u64 {
    std::mem::size_of::<T>().max(1) as u64
}

/// A `Deserializer` that charges `budget` for what it decodes (see the module docs). `top` is
/// the declared length of the argument when this is its outermost value.
pub(crate) struct Counted<'b, D> {
    pub(crate) inner: D,
    pub(crate) budget: &'b Budget,
    pub(crate) top: Option<u64>,
}

impl<'b, D> Counted<'b, D> {
    fn wrap<V>(&self, visitor: V) -> Wrap<'b, V> {
        Wrap {
            inner: visitor,
            budget: self.budget,
            top: self.top,
        }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                let visitor = self.wrap(visitor);
                self.inner.$method($($arg,)* visitor)
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Counted<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any(), deserialize_bool(), deserialize_i8(), deserialize_i16(),
        deserialize_i32(), deserialize_i64(), deserialize_i128(), deserialize_u8(),
        deserialize_u16(), deserialize_u32(), deserialize_u64(), deserialize_u128(),
        deserialize_f32(), deserialize_f64(), deserialize_char(), deserialize_str(),
        deserialize_string(), deserialize_bytes(), deserialize_byte_buf(), deserialize_option(),
        deserialize_unit(), deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str), deserialize_seq(),
        deserialize_tuple(len: usize), deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_map(), deserialize_struct(name: &'static str, fields: &'static [&'static str]),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(), deserialize_ignored_any(),
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A `Visitor` that charges for strings and buffers and wraps what it is handed.
struct Wrap<'b, V> {
    inner: V,
    budget: &'b Budget,
    top: Option<u64>,
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool), visit_i8(i8), visit_i16(i16), visit_i32(i32), visit_i64(i64),
        visit_i128(i128), visit_u8(u8), visit_u16(u16), visit_u32(u32), visit_u64(u64),
        visit_u128(u128), visit_f32(f32), visit_f64(f64), visit_char(char),
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.budget.buffer(v.len(), self.top)?;
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.budget.buffer(v.len(), self.top)?;
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.budget.buffer(v.len(), self.top)?;
        self.inner.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.budget.buffer(v.len(), self.top)?;
        self.inner.visit_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        self.budget.buffer(v.len(), self.top)?;
        self.inner.visit_borrowed_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.budget.buffer(v.len(), self.top)?;
        self.inner.visit_byte_buf(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Counted {
            inner: d,
            budget: self.budget,
            top: self.top,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Counted {
            inner: d,
            budget: self.budget,
            top: self.top,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        if let Some(len) = seq.size_hint() {
            self.budget.check_len(len, self.top)?;
        }
        self.inner.visit_seq(Seq {
            inner: seq,
            budget: self.budget,
            tally: Tally::new(self.budget, self.top),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        if let Some(len) = map.size_hint() {
            self.budget.check_len(len, self.top)?;
        }
        self.inner.visit_map(Map {
            inner: map,
            budget: self.budget,
            tally: Tally::new(self.budget, self.top),
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Enum {
            inner: data,
            budget: self.budget,
        })
    }
}

/// A `DeserializeSeed` whose deserializer is [`Counted`] (nested values: no declared length).
struct Seed<'b, S> {
    inner: S,
    budget: &'b Budget,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Counted {
            inner: d,
            budget: self.budget,
            top: None,
        })
    }
}

/// The elements of one collection counted against its limit: the argument's declared length
/// for its outermost value (`top`), else the runtime's.
struct Tally {
    limit: u64,
    count: u64,
}

impl Tally {
    fn new(budget: &Budget, top: Option<u64>) -> Tally {
        let max_len = budget.limits.max_len;
        Tally {
            limit: top.map_or(max_len, |t| t.min(max_len)),
            count: 0,
        }
    }

    /// Counts one more element.
    fn one<E: de::Error>(&mut self, budget: &Budget) -> Result<(), E> {
        self.count += 1;
        if self.count > self.limit {
            let why = if self.limit < budget.limits.max_len {
                Exceeded::ArgLen(self.limit)
            } else {
                Exceeded::Len(self.limit)
            };
            return Err(budget.trip(why));
        }
        Ok(())
    }
}

/// Sequence access that counts and charges each element.
struct Seq<'b, A> {
    inner: A,
    budget: &'b Budget,
    tally: Tally,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let cost = cost::<T::Value>();
        self.budget.charge(cost)?;
        let next = self.inner.next_element_seed(Seed {
            inner: seed,
            budget: self.budget,
        })?;
        match next {
            Some(v) => {
                self.tally.one(self.budget)?;
                Ok(Some(v))
            }
            None => {
                self.budget.refund(cost);
                Ok(None)
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint().map(|n| n.min(HINT_CAP))
    }
}

/// Map access that counts entries and charges each key and value.
struct Map<'b, A> {
    inner: A,
    budget: &'b Budget,
    tally: Tally,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let cost = cost::<K::Value>();
        self.budget.charge(cost)?;
        let next = self.inner.next_key_seed(Seed {
            inner: seed,
            budget: self.budget,
        })?;
        match next {
            Some(k) => {
                self.tally.one(self.budget)?;
                Ok(Some(k))
            }
            None => {
                self.budget.refund(cost);
                Ok(None)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.budget.charge(cost::<V::Value>())?;
        self.inner.next_value_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint().map(|n| n.min(HINT_CAP))
    }
}

/// Enum access whose variant's contents are decoded through [`Counted`].
struct Enum<'b, A> {
    inner: A,
    budget: &'b Budget,
}

impl<'de, 'b, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'b, A> {
    type Error = A::Error;
    type Variant = Variant<'b, A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let (value, variant) = self.inner.variant_seed(Seed {
            inner: seed,
            budget: self.budget,
        })?;
        Ok((
            value,
            Variant {
                inner: variant,
                budget: self.budget,
            },
        ))
    }
}

/// The contents of one variant, decoded through [`Counted`].
struct Variant<'b, A> {
    inner: A,
    budget: &'b Budget,
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(
            len,
            Wrap {
                inner: visitor,
                budget: self.budget,
                top: None,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(
            fields,
            Wrap {
                inner: visitor,
                budget: self.budget,
                top: None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    fn decode<T: for<'de> Deserialize<'de>>(
        bytes: &[u8],
        limits: DecodeLimits,
        arg: ArgLimit,
    ) -> Result<T, Option<Exceeded>> {
        let budget = Budget::new(limits);
        budget.start_arg(arg.size);
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        T::deserialize(Counted {
            inner: &mut de,
            budget: &budget,
            top: arg.len,
        })
        .map_err(|_| budget.exceeded())
    }

    fn limits(max_decoded: u64, max_len: u64) -> DecodeLimits {
        DecodeLimits {
            max_decoded,
            max_len,
        }
    }

    #[test]
    fn values_within_the_bounds_decode_as_without_the_wrapper() {
        #[derive(Deserialize, serde::Serialize, Debug, PartialEq)]
        enum E {
            Unit,
            New(String),
            Tuple(u8, Vec<u16>),
            Struct {
                a: Option<Box<E>>,
                b: BTreeMap<String, i64>,
            },
        }
        let value = vec![
            E::Unit,
            E::New("x".repeat(10)),
            E::Tuple(3, vec![1, 2, 3]),
            E::Struct {
                a: Some(Box::new(E::New("inner".into()))),
                b: [("k".to_string(), -5)].into_iter().collect(),
            },
        ];
        let bytes = rmp_serde::to_vec(&value).unwrap();
        let back: Vec<E> = decode(&bytes, DecodeLimits::default(), ArgLimit::default()).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn many_small_strings_cannot_inflate_past_the_decoded_size() {
        // 100,000 empty strings: 100 KB of MessagePack, 2.4 MB of `String`s.
        let value = vec![String::new(); 100_000];
        let bytes = rmp_serde::to_vec(&value).unwrap();
        assert!(bytes.len() < 110_000);
        let e = decode::<Vec<String>>(&bytes, limits(1_000_000, u64::MAX), ArgLimit::default());
        assert_eq!(e.unwrap_err(), Some(Exceeded::Size(1_000_000)));
        let ok = decode::<Vec<String>>(&bytes, limits(3_000_000, u64::MAX), ArgLimit::default());
        assert_eq!(ok.unwrap().len(), 100_000);
    }

    #[test]
    fn a_collection_longer_than_the_limit_is_refused_from_its_header() {
        let bytes = rmp_serde::to_vec(&vec![1u8; 11]).unwrap();
        let e = decode::<Vec<u8>>(&bytes, limits(u64::MAX, 10), ArgLimit::default());
        assert_eq!(e.unwrap_err(), Some(Exceeded::Len(10)));
        // A header claiming more than the bytes hold is refused by length before decoding.
        let mut lying = vec![0xdd];
        lying.extend_from_slice(&u32::MAX.to_be_bytes());
        let e = decode::<Vec<u8>>(&lying, limits(u64::MAX, 10), ArgLimit::default());
        assert_eq!(e.unwrap_err(), Some(Exceeded::Len(10)));
        let map: BTreeMap<u8, u8> = (0..11).map(|i| (i, i)).collect();
        let bytes = rmp_serde::to_vec(&map).unwrap();
        let e = decode::<BTreeMap<u8, u8>>(&bytes, limits(u64::MAX, 10), ArgLimit::default());
        assert_eq!(e.unwrap_err(), Some(Exceeded::Len(10)));
    }

    #[test]
    fn declared_argument_limits_apply_to_the_outermost_value_only() {
        let arg = ArgLimit {
            len: Some(3),
            size: None,
        };
        let nested = rmp_serde::to_vec(&vec![vec![0u8; 10]; 3]).unwrap();
        assert!(decode::<Vec<Vec<u8>>>(&nested, DecodeLimits::default(), arg).is_ok());
        let long = rmp_serde::to_vec(&vec![0u8; 4]).unwrap();
        let e = decode::<Vec<u8>>(&long, DecodeLimits::default(), arg);
        assert_eq!(e.unwrap_err(), Some(Exceeded::ArgLen(3)));
        // Through an Option, and for strings (in bytes).
        let e = decode::<Option<String>>(
            &rmp_serde::to_vec(&Some("abcd")).unwrap(),
            DecodeLimits::default(),
            arg,
        );
        assert_eq!(e.unwrap_err(), Some(Exceeded::ArgLen(3)));
        let size = ArgLimit {
            len: None,
            size: Some(100),
        };
        let e = decode::<Vec<String>>(
            &rmp_serde::to_vec(&vec!["x"; 10]).unwrap(),
            DecodeLimits::default(),
            size,
        );
        assert_eq!(e.unwrap_err(), Some(Exceeded::ArgSize(100)));
    }
}
