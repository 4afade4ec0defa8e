//! Machine-readable descriptions of remote interfaces, written by `#[remote]`.
//!
//! A description names the interface, its methods, their arguments and result types as the
//! user wrote them. It is static in the process that compiled the interface and travels over
//! the wire (owned) when a tool asks a runtime what it serves.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The description of one remote interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceSchema {
    /// The interface's name: `module::path::Trait` unless `#[remote(name = "...")]` says otherwise.
    pub name: Cow<'static, str>,
    /// The methods, in declaration order.
    pub methods: Cow<'static, [MethodSchema]>,
    /// The trait's doc comment.
    pub docs: Cow<'static, str>,
}

/// The description of one method of a remote interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodSchema {
    /// The method's name, as it travels on the wire.
    pub name: Cow<'static, str>,
    /// The arguments after `&self`, in order.
    pub args: Cow<'static, [ArgSchema]>,
    /// The success type `T` of `Result<T, E>`, as written.
    pub ok: Cow<'static, str>,
    /// The error type `E` of `Result<T, E>`, as written.
    pub err: Cow<'static, str>,
    /// Whether the method is `#[oneway]` (fire and forget).
    pub oneway: bool,
    /// The method's doc comment.
    pub docs: Cow<'static, str>,
}

/// The description of one argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgSchema {
    /// The argument's name.
    pub name: Cow<'static, str>,
    /// Its type, as written.
    pub ty: Cow<'static, str>,
    /// `#[limit(len = N)]`: most elements, entries or bytes of its outermost collection,
    /// string or byte buffer, enforced while it is decoded.
    #[serde(default)]
    pub max_len: Option<u64>,
    /// `#[limit(size = N)]`: most bytes it may decode into.
    #[serde(default)]
    pub max_size: Option<u64>,
}

impl InterfaceSchema {
    /// The method called `name`, if the interface has one.
    pub fn method(&self, name: &str) -> Option<&MethodSchema> {
        self.methods.iter().find(|m| m.name == name)
    }
}

impl std::fmt::Display for MethodSchema {
    /// Prints the method as a signature: `async fn add(&self, n: i64) -> Result<i64, RemoteError>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.oneway {
            f.write_str("#[oneway] ")?;
        }
        write!(f, "async fn {}(&self", self.name)?;
        for a in self.args.iter() {
            f.write_str(", ")?;
            match (a.max_len, a.max_size) {
                (None, None) => {}
                (Some(len), None) => write!(f, "#[limit(len = {len})] ")?,
                (None, Some(size)) => write!(f, "#[limit(size = {size})] ")?,
                (Some(len), Some(size)) => write!(f, "#[limit(len = {len}, size = {size})] ")?,
            }
            write!(f, "{}: {}", a.name, a.ty)?;
        }
        write!(f, ") -> Result<{}, {}>", self.ok, self.err)
    }
}
