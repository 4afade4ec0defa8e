//! The model of a remote interface: the parts of a trait the generated code needs, read out of
//! the syntax tree.
//!
//! Building the model never fails: parts that do not have the expected shape are recorded as
//! `None` (or kept aside), and [`crate::valid`] reports them. Expansion only ever sees a model
//! that passed validation.

use crate::attr::{self, TraitArgs};
use crate::valid::Ctxt;
use proc_macro2::{Ident, Span};
use syn::{
    Attribute, FnArg, GenericArgument, Generics, ItemTrait, LitStr, Pat, PathArguments, Receiver,
    ReturnType, Signature, TraitItem, TraitItemFn, Type,
};

/// A remote trait: `#[remote] pub trait Counter: Send + Sync { ... }`.
pub(crate) struct Interface<'a> {
    /// The trait as the user wrote it; expansion re-emits it with small changes.
    pub(crate) item: &'a ItemTrait,
    /// The trait's name.
    pub(crate) ident: &'a Ident,
    /// The trait's generics; validation requires them to be empty.
    pub(crate) generics: &'a Generics,
    /// `name = "..."` from `#[remote(name = "...")]`, replacing `module_path!()::Trait`.
    pub(crate) name_override: Option<LitStr>,
    /// The trait's doc comment, for the schema.
    pub(crate) docs: String,
    /// The trait's methods, in source order.
    pub(crate) methods: Vec<Method<'a>>,
    /// Trait items that are not methods (associated types, consts, macros); validation rejects
    /// every one of them.
    pub(crate) other_items: Vec<&'a TraitItem>,
}

/// One method of a remote trait.
pub(crate) struct Method<'a> {
    /// The method's signature as written.
    pub(crate) sig: &'a Signature,
    /// The method's name.
    pub(crate) ident: &'a Ident,
    /// The receiver, if the method has one; validation requires exactly `&self`.
    pub(crate) receiver: Option<&'a Receiver>,
    /// The arguments after the receiver.
    pub(crate) args: Vec<Arg<'a>>,
    /// `T` of the `Result<T, E>` return type; `None` when the return type has another shape.
    pub(crate) ok_ty: Option<&'a Type>,
    /// `E` of the `Result<T, E>` return type; `None` when the return type has another shape.
    pub(crate) err_ty: Option<&'a Type>,
    /// The `#[oneway]` attribute, if present.
    pub(crate) oneway: Option<&'a Attribute>,
    /// The method's doc comment, for the schema.
    pub(crate) docs: String,
    /// Where the method is named: generated code that calls the method is spanned here, so
    /// that type errors in it (say, `T` is not `Serialize`) point at the method.
    pub(crate) span: Span,
}

/// One argument of a remote method (not the receiver).
pub(crate) struct Arg<'a> {
    /// The pattern as written.
    pub(crate) pat: &'a Pat,
    /// The argument's name; `None` when the pattern is not a plain name (`mut n` is a plain name).
    pub(crate) ident: Option<&'a Ident>,
    /// The argument's type.
    pub(crate) ty: &'a Type,
    /// Its `#[limit(...)]`, enforced while it is decoded.
    pub(crate) limits: attr::ArgLimits,
}

impl<'a> Interface<'a> {
    /// Reads the model out of a trait; `args` are the already parsed `#[remote(...)]` arguments.
    pub(crate) fn from_syn(cx: &Ctxt, item: &'a ItemTrait, args: TraitArgs) -> Self {
        let mut methods = Vec::new();
        let mut other_items = Vec::new();
        for trait_item in &item.items {
            match trait_item {
                TraitItem::Fn(method) => methods.push(Method::from_syn(cx, method)),
                other => other_items.push(other),
            }
        }
        Interface {
            item,
            ident: &item.ident,
            generics: &item.generics,
            name_override: args.name,
            docs: attr::docs(&item.attrs),
            methods,
            other_items,
        }
    }
}

impl<'a> Method<'a> {
    fn from_syn(cx: &Ctxt, method: &'a TraitItemFn) -> Self {
        let sig = &method.sig;
        let args = sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Typed(typed) => Some(Arg {
                    pat: &typed.pat,
                    ident: plain_name(&typed.pat),
                    ty: &typed.ty,
                    limits: attr::limits(cx, &typed.attrs),
                }),
                FnArg::Receiver(receiver) => {
                    for attr in receiver.attrs.iter().filter(|a| attr::is_limit(a)) {
                        cx.error_spanned_by(attr, "`#[limit]` goes on an argument, not on `self`");
                    }
                    None
                }
            })
            .collect();
        let (ok_ty, err_ty) = match &sig.output {
            ReturnType::Type(_, ty) => match result_types(ty) {
                Some((ok, err)) => (Some(ok), Some(err)),
                None => (None, None),
            },
            ReturnType::Default => (None, None),
        };
        Method {
            sig,
            ident: &sig.ident,
            receiver: sig.receiver(),
            args,
            ok_ty,
            err_ty,
            oneway: attr::oneway(cx, &method.attrs),
            docs: attr::docs(&method.attrs),
            span: sig.ident.span(),
        }
    }
}

/// The name bound by an argument pattern, if it is a plain name: `n` or `mut n`, not `ref n`,
/// `n @ ..`, `_` or a destructuring pattern.
fn plain_name(pat: &Pat) -> Option<&Ident> {
    match pat {
        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(&p.ident),
        _ => None,
    }
}

/// `(T, E)` if `ty` is `Result<T, E>` under any path (`Result`, `std::result::Result`, ...).
pub(crate) fn result_types(ty: &Type) -> Option<(&Type, &Type)> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(generic) = &last.arguments else {
        return None;
    };
    let mut types = generic.args.iter().map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(Some(ok)), Some(Some(err)), None) => Some((ok, err)),
        _ => None,
    }
}

/// Whether `ty` is the unit type `()`.
pub(crate) fn is_unit(ty: &Type) -> bool {
    matches!(ungroup(ty), Type::Tuple(tuple) if tuple.elems.is_empty())
}

/// Looks through the invisible groups `macro_rules!` puts around `$t:ty` and through
/// parentheses.
pub(crate) fn ungroup(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::ToTokens;
    use syn::parse_quote;

    fn result(ty: Type) -> Option<(String, String)> {
        result_types(&ty).map(|(ok, err)| {
            (
                ok.to_token_stream().to_string(),
                err.to_token_stream().to_string(),
            )
        })
    }

    #[test]
    fn result_shapes() {
        let some = |ok: &str, err: &str| Some((ok.to_owned(), err.to_owned()));
        assert_eq!(
            result(parse_quote!(Result<i64, RemoteError>)),
            some("i64", "RemoteError")
        );
        assert_eq!(
            result(parse_quote!(::std::result::Result<(), MyError>)),
            some("()", "MyError")
        );
        assert_eq!(result(parse_quote!(Result<i64>)), None);
        assert_eq!(result(parse_quote!(Result<i64, E, F>)), None);
        assert_eq!(result(parse_quote!(Result<'a, E>)), None);
        assert_eq!(result(parse_quote!(Option<i64>)), None);
        assert_eq!(result(parse_quote!(<X as Y>::Result<A, B>)), None);
        assert_eq!(result(parse_quote!(i64)), None);
    }

    #[test]
    fn plain_names() {
        let name = |pat: Pat| plain_name(&pat).map(ToString::to_string);
        assert_eq!(name(parse_quote!(n)), Some("n".to_owned()));
        assert_eq!(name(parse_quote!(mut n)), Some("n".to_owned()));
        assert_eq!(name(parse_quote!(ref n)), None);
        assert_eq!(name(parse_quote!(_)), None);
        assert_eq!(name(parse_quote!((a, b))), None);
    }

    #[test]
    fn model() {
        let item: ItemTrait = parse_quote! {
            /// A counter.
            trait Counter {
                /// Adds.
                async fn add(&self, n: i64) -> Result<i64, E>;
                #[oneway]
                async fn log(&self, line: String, mut level: u8) -> Result<(), E>;
                type Extra;
            }
        };
        let cx = Ctxt::new();
        let iface = Interface::from_syn(&cx, &item, TraitArgs::default());
        cx.check().unwrap();
        assert_eq!(iface.docs, "A counter.");
        assert_eq!(iface.methods.len(), 2);
        assert_eq!(iface.other_items.len(), 1);
        let add = &iface.methods[0];
        assert_eq!(add.docs, "Adds.");
        assert!(add.oneway.is_none() && add.receiver.is_some());
        let log = &iface.methods[1];
        assert!(log.oneway.is_some() && is_unit(log.ok_ty.unwrap()));
        assert_eq!(log.args[1].ident.unwrap(), "level");
    }
}
