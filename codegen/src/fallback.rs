//! Output for invalid input: the errors, plus the user's item in a form that still compiles.
//!
//! Emitting only the errors would make every use of the trait fail too ("cannot find trait
//! `Counter`"), burying the real mistake under cascading errors. So, like thiserror's fallback,
//! the item is kept: with `#[oneway]` removed (the compiler does not know it) and, for a trait
//! and its impls, with `async_trait` applied (so that the user's `#[remote] impl` blocks, which
//! are expanded with it, still match the trait). Nothing else is generated.
//!
//! Two things the validator rejects are also removed from the kept trait, because rustc would
//! report them a second time: a C-variadic `...` argument and `const` on a method.

use crate::attr;
use crate::expand::async_trait_attr;
use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{ItemImpl, ItemTrait, TraitItem};

/// The errors plus the trait, as close to what the user wrote as compiles.
pub(crate) fn remote_trait(item: &ItemTrait, err: syn::Error) -> TokenStream {
    let mut item = item.clone();
    for trait_item in &mut item.items {
        if let TraitItem::Fn(method) = trait_item {
            attr::strip_oneway(&mut method.attrs);
            attr::strip_limits(&mut method.sig);
            method.sig.variadic = None;
            method.sig.constness = None;
        }
    }
    item.attrs.insert(0, async_trait_attr());
    let err = err.to_compile_error();
    quote! {
        #err
        #item
    }
}

/// The errors plus the impl (already stripped of `#[oneway]`): with `async_trait` if it is a
/// trait impl, as written if it is an inherent or negative impl (which `async_trait` would only
/// turn into more errors).
pub(crate) fn remote_impl(mut item: ItemImpl, err: syn::Error) -> TokenStream {
    if matches!(item.trait_, Some((None, _, _))) {
        item.attrs.insert(0, async_trait_attr());
    }
    let err = err.to_compile_error();
    let item = item.into_token_stream();
    quote! {
        #err
        #item
    }
}
