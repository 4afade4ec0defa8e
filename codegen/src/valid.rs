//! Validation of the model: every rule a remote trait must follow, each broken rule reported at
//! the tokens that break it.
//!
//! Errors are collected in a [`Ctxt`] rather than returned one at a time, so that a trait with
//! three mistakes gets three diagnostics in one compilation.

use crate::ast::{self, Interface, Method};
use quote::ToTokens;
use std::cell::RefCell;
use std::fmt::Display;
use syn::{Receiver, ReturnType, TraitItem, Type};

/// Collects the errors found while reading and validating one macro input (serde_derive's
/// `Ctxt`).
///
/// **Invariant:** a `Ctxt` must be consumed by [`Ctxt::check`]; dropping it unchecked panics, so
/// that no code path can forget to report what it collected.
pub(crate) struct Ctxt {
    /// `None` once checked.
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    /// An empty context.
    pub(crate) fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Records `msg` at the span of `tokens` (from their first to their last token).
    pub(crate) fn error_spanned_by<T: ToTokens, M: Display>(&self, tokens: T, msg: M) {
        self.syn_error(syn::Error::new_spanned(tokens.into_token_stream(), msg));
    }

    /// Records an error that already carries its span.
    pub(crate) fn syn_error(&self, err: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("Ctxt used after check")
            .push(err);
    }

    /// Consumes the context: `Ok` if nothing was recorded, else all errors combined into one.
    pub(crate) fn check(self) -> syn::Result<()> {
        let errors = self.errors.borrow_mut().take().expect("Ctxt checked twice");
        let mut errors = errors.into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for err in errors {
            combined.combine(err);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("oxrmi-codegen: a Ctxt was dropped without being checked");
        }
    }
}

/// The message for a method whose return type is not `Result<T, E>`.
const RETURN_MSG: &str = "remote methods return `Result<T, E>` where `E: From<oxrmi::RemoteError>`";

/// Checks a remote trait against every rule, recording each violation in `cx`.
pub(crate) fn check_interface(cx: &Ctxt, iface: &Interface<'_>) {
    let item = iface.item;
    if let Some(unsafety) = &item.unsafety {
        cx.error_spanned_by(unsafety, "remote traits cannot be `unsafe`");
    }
    if let Some(auto) = &item.auto_token {
        cx.error_spanned_by(auto, "remote traits cannot be `auto` traits");
    }
    if !iface.generics.params.is_empty() {
        cx.error_spanned_by(iface.generics, "remote traits cannot be generic");
    }
    if let Some(where_clause) = &iface.generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            "remote traits cannot have a `where` clause; put the bounds in the supertraits",
        );
    }
    for other in &iface.other_items {
        let msg = match other {
            TraitItem::Type(_) => "remote traits cannot have associated types",
            TraitItem::Const(_) => "remote traits cannot have associated constants",
            TraitItem::Macro(_) => "remote traits cannot contain macro invocations",
            _ => "remote traits can only contain `async fn` methods",
        };
        cx.error_spanned_by(other, msg);
    }
    for method in &iface.methods {
        check_method(cx, method);
    }
}

/// Checks one method: `async fn name(&self, a: A, b: B) -> Result<T, E>`.
fn check_method(cx: &Ctxt, method: &Method<'_>) {
    let sig = method.sig;
    if let Some(constness) = &sig.constness {
        cx.error_spanned_by(constness, "remote methods cannot be `const`");
    }
    if sig.asyncness.is_none() {
        cx.error_spanned_by(sig.fn_token, "remote methods must be `async fn`");
    }
    if let Some(unsafety) = &sig.unsafety {
        cx.error_spanned_by(unsafety, "remote methods cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(abi, "remote methods cannot be `extern`");
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, "remote methods cannot be variadic");
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(&sig.generics, "remote methods cannot be generic");
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        cx.error_spanned_by(where_clause, "remote methods cannot have a `where` clause");
    }

    match method.receiver {
        Some(receiver) if is_ref_self(receiver) => {}
        Some(receiver) => cx.error_spanned_by(receiver, "remote methods take `&self`"),
        None => cx.error_spanned_by(ident_and_inputs(sig), "remote methods take `&self`"),
    }

    for arg in &method.args {
        match arg.ident {
            None => cx.error_spanned_by(arg.pat, "remote method arguments must be plain names"),
            Some(ident) if ident.to_string().starts_with("__") => {
                cx.error_spanned_by(ident, "argument names starting with `__` are reserved");
            }
            Some(_) => {}
        }
        match ast::ungroup(arg.ty) {
            Type::Reference(_) => cx.error_spanned_by(
                arg.ty,
                "remote method arguments must be owned types (the server decodes them): \
                 `String` rather than `&str`, `Vec<T>` rather than `&[T]`",
            ),
            Type::ImplTrait(_) => cx.error_spanned_by(
                arg.ty,
                "remote method arguments cannot be `impl Trait`; use a concrete type",
            ),
            _ => {}
        }
    }

    match (&sig.output, method.ok_ty, method.err_ty) {
        // No return type to point at: blame the whole signature.
        (ReturnType::Default, _, _) => cx.error_spanned_by(sig, RETURN_MSG),
        (ReturnType::Type(_, ty), None, _) | (ReturnType::Type(_, ty), _, None) => {
            cx.error_spanned_by(ty, RETURN_MSG);
        }
        (ReturnType::Type(..), Some(ok), Some(err)) => {
            for ty in [ok, err] {
                if matches!(ast::ungroup(ty), Type::Reference(_)) {
                    cx.error_spanned_by(
                        ty,
                        "remote methods return owned types (the result is sent back): \
                         `String` rather than `&str`",
                    );
                }
            }
            if method.oneway.is_some() && !ast::is_unit(ok) {
                cx.error_spanned_by(
                    ok,
                    "a #[oneway] method cannot return a value; \
                     its result type must be `Result<(), E>`",
                );
            }
        }
    }
}

/// Whether the receiver is exactly `&self` (not `&mut self`, `&'a self`, `self: &Self`, ...).
fn is_ref_self(receiver: &Receiver) -> bool {
    matches!(receiver.reference, Some((_, None)))
        && receiver.mutability.is_none()
        && receiver.colon_token.is_none()
}

/// A method's name and parenthesised argument list, for diagnostics about the argument list as
/// a whole (a missing receiver).
fn ident_and_inputs(sig: &syn::Signature) -> proc_macro2::TokenStream {
    let mut tokens = sig.ident.to_token_stream();
    sig.paren_token
        .surround(&mut tokens, |tokens| sig.inputs.to_tokens(tokens));
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::TraitArgs;
    use syn::{ItemTrait, parse_quote};

    /// The messages reported for `item`, in order.
    fn messages(item: ItemTrait) -> Vec<String> {
        let cx = Ctxt::new();
        let iface = Interface::from_syn(&cx, &item, TraitArgs::default());
        check_interface(&cx, &iface);
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn valid_trait_passes() {
        let item = parse_quote! {
            pub trait Counter: Send + Sync {
                async fn add(&self, n: i64, mut by: i64) -> Result<i64, RemoteError>;
                async fn get(&self) -> std::result::Result<i64, RemoteError>;
                #[oneway]
                async fn log(&self, line: String) -> Result<(), RemoteError>;
                async fn with_default(&self) -> Result<(), RemoteError> { Ok(()) }
            }
        };
        assert_eq!(messages(item), Vec::<String>::new());
    }

    #[test]
    fn every_error_is_collected() {
        let item = parse_quote! {
            trait Bad<T> {
                type Item;
                fn not_async(&self) -> Result<(), E>;
                async fn generic<U>(&self) -> Result<(), E>;
                async fn by_value(self) -> Result<(), E>;
                async fn by_mut(&mut self) -> Result<(), E>;
                async fn no_receiver(n: i64) -> Result<(), E>;
                async fn no_result(&self) -> i64;
                async fn no_return(&self);
                #[oneway]
                async fn oneway_value(&self) -> Result<i64, E>;
                async fn pattern(&self, (a, b): (i32, i32)) -> Result<(), E>;
                async fn reserved(&self, __n: i32) -> Result<(), E>;
                async fn borrowed(&self, s: &str) -> Result<(), E>;
                async unsafe fn dangerous(&self) -> Result<(), E>;
            }
        };
        let expected = [
            "remote traits cannot be generic",
            "remote traits cannot have associated types",
            "remote methods must be `async fn`",
            "remote methods cannot be generic",
            "remote methods take `&self`",
            "remote methods take `&self`",
            "remote methods take `&self`",
            RETURN_MSG,
            RETURN_MSG,
            "a #[oneway] method cannot return a value; its result type must be `Result<(), E>`",
            "remote method arguments must be plain names",
            "argument names starting with `__` are reserved",
            "remote method arguments must be owned types",
            "remote methods cannot be `unsafe`",
        ];
        let got = messages(item);
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        for (got, expected) in got.iter().zip(expected) {
            assert!(got.starts_with(expected), "{got:?} vs {expected:?}");
        }
    }
}
