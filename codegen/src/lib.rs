//! The `#[oxrmi::remote]` attribute: from one Rust trait, the client stub, the server-side
//! dispatch and the schema of a remote interface.
//!
//! This is the proc-macro half of [oxrmi](https://example.invalid/oxrmi); use it through the
//! `oxrmi` crate, which re-exports the attribute as `oxrmi::remote` and provides everything the
//! generated code refers to (under `oxrmi::__private`, which is not a public API). A crate that
//! uses the attribute needs no other dependency: not on `async-trait`, `serde` or `tokio`.
//!
//! ```text
//! use oxrmi::RemoteError;
//!
//! /// A counter that lives in another process.
//! #[oxrmi::remote]
//! pub trait Counter {
//!     /// Adds `n` and returns the new value.
//!     async fn add(&self, n: i64) -> Result<i64, RemoteError>;
//!     /// Writes a line to the server's log; the caller does not wait for it.
//!     #[oneway]
//!     async fn log(&self, line: String) -> Result<(), RemoteError>;
//! }
//!
//! struct MyCounter(std::sync::atomic::AtomicI64);
//!
//! #[oxrmi::remote]
//! impl Counter for MyCounter {
//!     async fn add(&self, n: i64) -> Result<i64, RemoteError> {
//!         Ok(self.0.fetch_add(n, std::sync::atomic::Ordering::SeqCst) + n)
//!     }
//!     async fn log(&self, line: String) -> Result<(), RemoteError> {
//!         println!("{line}");
//!         Ok(())
//!     }
//! }
//! ```
//!
//! (Not compiled here: this crate cannot depend on `oxrmi`, which depends on it. The same shapes
//! are compiled by the trybuild cases in `runtime/tests/ui/pass/`.)
//!
//! # Layout
//!
//! The macro works in four steps, one module each (the structure of thiserror's `impl/` and of
//! serde_derive's `internals/`):
//!
//! - `attr`: the attributes it understands: `#[remote(name = "...")]`, `#[oneway]`, doc
//!   comments;
//! - `ast`: the model of a remote trait, read out of the syntax tree;
//! - `valid`: the rules a remote trait must follow; every broken rule is reported, each at the
//!   tokens that break it;
//! - `expand`: the generated code, one function per generated item;
//! - `fallback`: what is emitted instead when the input breaks a rule: the errors plus the
//!   user's item, so that one mistake does not cascade into "cannot find trait" errors.

#![forbid(unsafe_code)]

mod ast;
mod attr;
mod expand;
mod fallback;
mod valid;

use proc_macro::TokenStream;
use quote::{ToTokens, quote};
use syn::Item;

/// Makes a trait a remote interface, or makes an impl of one usable with `async fn`.
///
/// # On a trait
///
/// Every method must have the shape `async fn name(&self, a: A, b: B) -> Result<T, E>`, where
/// the arguments are plain names (not patterns, not starting with `__`) of owned types, `A`,
/// `B` and `T` are `Serialize + DeserializeOwned`, and `E` is too and also
/// `From<oxrmi::RemoteError>` (a failed call, such as a lost connection, arrives as an `E`).
/// Methods cannot be generic; the trait cannot be generic and cannot have associated types or
/// constants. Methods may have default bodies.
///
/// `#[oneway]` on a method whose result type is `Result<(), E>` makes calls to it
/// fire-and-forget: the caller gets `Ok(())` once the call is sent.
///
/// `#[remote(name = "my.Counter")]` sets the interface's name, which clients and servers must
/// agree on; by default it is the trait's path, `module_path!()::Trait`.
///
/// The trait gets `Send + Sync` supertraits if it lacks them, and `async fn` methods become
/// methods returning boxed futures (as with `async_trait`), so that `dyn Trait` works. The
/// attribute also implements the runtime's traits for `dyn Trait`: a client stub, the
/// server-side dispatch and the interface's schema; none of these add names to your module.
///
/// # On an impl
///
/// `#[remote] impl Trait for Type { ... }` lets the impl use `async fn` for the trait's methods.
/// `#[oneway]` markers copied from the trait are accepted and ignored.
#[proc_macro_attribute]
pub fn remote(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args.into(), item.into()).into()
}

/// Dispatches on what the attribute was put on.
fn expand(
    args: proc_macro2::TokenStream,
    input: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    match syn::parse2::<Item>(input.clone()) {
        Ok(Item::Trait(item)) => expand::remote_trait(args, &item),
        Ok(Item::Impl(item)) => expand::remote_impl(args, &item),
        Ok(other) => {
            let err = syn::Error::new_spanned(
                item_head(&other),
                "#[oxrmi::remote] goes on a trait or on an impl of a remote trait",
            )
            .to_compile_error();
            // Keep the item so that its uses do not fail too.
            quote!(#err #other)
        }
        Err(err) => {
            // Not an item syn understands. rustc parsed it before calling us, so it is valid Rust
            // (newer syntax, say): keep it unchanged beside the error.
            let err = err.to_compile_error();
            quote!(#err #input)
        }
    }
}

/// The tokens that say what an item is, for blaming the item without underlining all of it:
/// `struct Foo`, `fn foo`, `enum Foo`, ...; the whole item for kinds without a name.
fn item_head(item: &Item) -> proc_macro2::TokenStream {
    macro_rules! head {
        ($($kind:ident => $token:ident),* $(,)?) => {
            match item {
                $(Item::$kind(item) => {
                    let (token, ident) = (&item.$token, &item.ident);
                    quote!(#token #ident)
                })*
                Item::Fn(item) => {
                    let (token, ident) = (&item.sig.fn_token, &item.sig.ident);
                    quote!(#token #ident)
                }
                other => other.to_token_stream(),
            }
        };
    }
    head! {
        Struct => struct_token,
        Enum => enum_token,
        Union => union_token,
        Mod => mod_token,
        Type => type_token,
        Const => const_token,
        Static => static_token,
        TraitAlias => trait_token,
    }
}
