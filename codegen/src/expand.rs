//! Generation: one function per generated item.
//!
//! For a trait the output is the trait itself (rewritten by [`trait_def`]) followed by one
//! `const _: () = { ... };` block holding everything else, so that no generated name leaks into
//! the user's module:
//!
//! - [`schema_static`]: `static __SCHEMA: InterfaceSchema`, the interface's description;
//! - [`stub_struct`] and [`stub_impl`]: `struct __Stub(StubHandle)`, the client stub, and its
//!   implementation of the trait (each method encodes its arguments and calls the remote side);
//! - [`interface_impl`]: `impl Interface for dyn Trait`, which ties the schema, the stub and the
//!   server-side dispatch ([`dispatch_arm`], one per method) to the trait object type;
//! - [`wrap_impl`]: `impl<O: Trait> Wrap<O> for dyn Trait`, which lets the runtime turn any
//!   implementor into the trait object.
//!
//! **Invariant:** every path in the output is absolute (`::oxrmi::__private::…`, `::core::…`,
//! `::std::…`), and every local the generated code introduces starts with `__` (a prefix
//! [`crate::valid`] forbids in argument names), so nothing the user defines or names can change
//! what the output means. The one exception is the `Box` that `async_trait` itself emits
//! unqualified (dtolnay/async-trait#132).

use crate::ast::{Arg, Interface, Method};
use crate::attr::{self, TraitArgs};
use crate::fallback;
use crate::valid::{self, Ctxt};
use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{
    Attribute, FnArg, ImplItem, ItemImpl, ItemTrait, Pat, PatIdent, TraitItem, TypeParamBound,
    parse_quote,
};

/// Expands `#[remote(args)] trait ...`.
pub(crate) fn remote_trait(args: TokenStream, item: &ItemTrait) -> TokenStream {
    let cx = Ctxt::new();
    let args = TraitArgs::parse(&cx, args);
    let iface = Interface::from_syn(&cx, item, args);
    valid::check_interface(&cx, &iface);
    match cx.check() {
        Ok(()) => interface(&iface),
        Err(err) => fallback::remote_trait(item, err),
    }
}

/// Expands `#[remote(args)] impl Trait for Type { ... }`: the impl with `async_trait` applied and
/// `#[oneway]` markers (copied from the trait for the reader's benefit) removed.
pub(crate) fn remote_impl(args: TokenStream, item: &ItemImpl) -> TokenStream {
    let cx = Ctxt::new();
    if !args.is_empty() {
        cx.error_spanned_by(
            &args,
            "#[oxrmi::remote] on an impl takes no arguments; the interface name goes on the trait",
        );
    }
    match &item.trait_ {
        None => {
            // Blame `impl Type`: the part that lacks `Trait for`.
            let (impl_token, self_ty) = (&item.impl_token, &item.self_ty);
            cx.error_spanned_by(
                quote!(#impl_token #self_ty),
                "#[oxrmi::remote] on an impl needs `impl RemoteTrait for Type`",
            );
        }
        Some((Some(bang), _, _)) => {
            cx.error_spanned_by(bang, "#[oxrmi::remote] cannot go on a negative impl");
        }
        Some((None, _, _)) => {}
    }
    let mut item = item.clone();
    for impl_item in &mut item.items {
        if let ImplItem::Fn(method) = impl_item {
            attr::strip_oneway(&mut method.attrs);
        }
    }
    match cx.check() {
        Ok(()) => {
            item.attrs.insert(0, async_trait_attr());
            item.into_token_stream()
        }
        Err(err) => fallback::remote_impl(item, err),
    }
}

/// `#[::oxrmi::__private::async_trait]`, the re-export of `async_trait::async_trait`.
pub(crate) fn async_trait_attr() -> Attribute {
    parse_quote!(#[::oxrmi::__private::async_trait])
}

/// Everything generated for a valid remote trait.
fn interface(iface: &Interface<'_>) -> TokenStream {
    let trait_def = trait_def(iface);
    let schema = schema_static(iface);
    let stub_struct = stub_struct();
    let stub_impl = stub_impl(iface);
    let interface_impl = interface_impl(iface);
    let wrap_impl = wrap_impl(iface);
    quote! {
        #trait_def

        const _: () = {
            #schema
            #stub_struct
            #stub_impl
            #interface_impl
            #wrap_impl
        };
    }
}

/// The trait as written, minus `#[oneway]`, plus `async_trait` and the `Send + Sync`
/// supertraits the trait object needs to cross threads.
fn trait_def(iface: &Interface<'_>) -> TokenStream {
    let mut item = iface.item.clone();
    for trait_item in &mut item.items {
        if let TraitItem::Fn(method) = trait_item {
            attr::strip_oneway(&mut method.attrs);
            attr::strip_limits(&mut method.sig);
        }
    }
    let has = |name: &str| {
        item.supertraits.iter().any(|bound| match bound {
            TypeParamBound::Trait(bound) => {
                matches!(bound.modifier, syn::TraitBoundModifier::None)
                    && bound.lifetimes.is_none()
                    && bound
                        .path
                        .segments
                        .last()
                        .is_some_and(|last| last.ident == name && last.arguments.is_empty())
            }
            _ => false,
        })
    };
    let (has_send, has_sync) = (has("Send"), has("Sync"));
    if !has_send {
        item.supertraits.push(parse_quote!(::core::marker::Send));
    }
    if !has_sync {
        item.supertraits.push(parse_quote!(::core::marker::Sync));
    }
    if !item.supertraits.is_empty() && item.colon_token.is_none() {
        item.colon_token = Some(Default::default());
    }
    item.attrs.insert(0, async_trait_attr());
    item.into_token_stream()
}

/// The interface's name: `name = "..."` if given, else `module_path!()::Trait`.
fn interface_name(iface: &Interface<'_>) -> TokenStream {
    match &iface.name_override {
        Some(name) => name.to_token_stream(),
        None => {
            let ident = iface.ident.unraw().to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #ident))
        }
    }
}

/// `static __SCHEMA: InterfaceSchema`: names, argument and result types as written, `oneway`
/// flags and doc comments.
fn schema_static(iface: &Interface<'_>) -> TokenStream {
    let name = interface_name(iface);
    let docs = &iface.docs;
    let methods = iface.methods.iter().map(method_schema);
    quote! {
        static __SCHEMA: ::oxrmi::__private::InterfaceSchema = ::oxrmi::__private::InterfaceSchema {
            name: ::oxrmi::__private::Cow::Borrowed(#name),
            methods: ::oxrmi::__private::Cow::Borrowed(&[#(#methods),*]),
            docs: ::oxrmi::__private::Cow::Borrowed(#docs),
        };
    }
}

/// One `MethodSchema` of the schema's method list.
fn method_schema(method: &Method<'_>) -> TokenStream {
    let name = method.ident.unraw().to_string();
    let args = method.args.iter().map(|arg| {
        let name = arg_ident(arg).unraw().to_string();
        let ty = arg.ty.to_token_stream().to_string();
        let max_len = option_u64(arg.limits.len);
        let max_size = option_u64(arg.limits.size);
        quote! {
            ::oxrmi::__private::ArgSchema {
                name: ::oxrmi::__private::Cow::Borrowed(#name),
                ty: ::oxrmi::__private::Cow::Borrowed(#ty),
                max_len: #max_len,
                max_size: #max_size,
            }
        }
    });
    let ok = ok_ty(method).to_token_stream().to_string();
    let err = err_ty(method).to_token_stream().to_string();
    let oneway = method.oneway.is_some();
    let docs = &method.docs;
    quote! {
        ::oxrmi::__private::MethodSchema {
            name: ::oxrmi::__private::Cow::Borrowed(#name),
            args: ::oxrmi::__private::Cow::Borrowed(&[#(#args),*]),
            ok: ::oxrmi::__private::Cow::Borrowed(#ok),
            err: ::oxrmi::__private::Cow::Borrowed(#err),
            oneway: #oneway,
            docs: ::oxrmi::__private::Cow::Borrowed(#docs),
        }
    }
}

/// `struct __Stub(StubHandle)`: the client side of a remote object.
fn stub_struct() -> TokenStream {
    quote! {
        struct __Stub(::oxrmi::__private::StubHandle);
    }
}

/// `impl Trait for __Stub`: every method sends its arguments to the remote object.
fn stub_impl(iface: &Interface<'_>) -> TokenStream {
    let ident = iface.ident;
    let methods = iface.methods.iter().map(stub_method);
    quote! {
        #[::oxrmi::__private::async_trait]
        impl #ident for __Stub {
            #(#methods)*
        }
    }
}

/// One method of the stub: the user's signature, a body that encodes the arguments in order and
/// awaits the call (or the one-way send).
fn stub_method(method: &Method<'_>) -> TokenStream {
    // The signature as written, except that `mut n` becomes `n`: the stub never mutates an
    // argument, and `mut` would draw an `unused_mut` warning in the user's crate. `#[limit]`
    // is the receiver's business, not the stub's.
    let mut sig = method.sig.clone();
    attr::strip_limits(&mut sig);
    for input in &mut sig.inputs {
        if let FnArg::Typed(typed) = input
            && let Pat::Ident(PatIdent { ident, .. }) = &*typed.pat
        {
            let ident = ident.clone();
            *typed.pat = parse_quote!(#ident);
        }
    }
    let name = method.ident.unraw().to_string();
    let count = method.args.len();
    let mutability = (count > 0).then(|| quote!(mut));
    let pushes = method.args.iter().map(|arg| {
        let ident = arg_ident(arg);
        let arg_name = ident.unraw().to_string();
        quote! {
            if let ::core::result::Result::Err(__e) = __args.push(#arg_name, &#ident) {
                return ::core::result::Result::Err(::core::convert::From::from(__e));
            }
        }
    });
    let err = err_ty(method);
    let call = if method.oneway.is_some() {
        quote!(self.0.call_oneway::<#err>(__args).await)
    } else {
        let ok = ok_ty(method);
        quote!(self.0.call::<#ok, #err>(#name, __args).await)
    };
    // The encoder comes from the handle rather than `ArgsEncoder::new`: it carries the runtime's
    // marshalling context and the connection the call will use, so a `Remote` passed as an
    // argument is exported into that runtime and counted as held by that peer (its lease).
    quote! {
        #sig {
            let #mutability __args = match self.0.args(#name, #count).await {
                ::core::result::Result::Ok(__a) => __a,
                ::core::result::Result::Err(__e) => {
                    return ::core::result::Result::Err(::core::convert::From::from(__e));
                }
            };
            #(#pushes)*
            #call
        }
    }
}

/// `impl Interface for dyn Trait`: the name, the schema, the stub constructor and the server-side
/// dispatch.
fn interface_impl(iface: &Interface<'_>) -> TokenStream {
    let ident = iface.ident;
    let name = interface_name(iface);
    let arms = iface
        .methods
        .iter()
        .map(|method| dispatch_arm(iface, method));
    let traces = iface.methods.iter().map(trace_method);
    quote! {
        impl ::oxrmi::__private::Interface for dyn #ident {
            const NAME: &'static str = #name;

            fn schema() -> &'static ::oxrmi::__private::InterfaceSchema {
                &__SCHEMA
            }

            fn __stub(__handle: ::oxrmi::__private::StubHandle) -> ::std::sync::Arc<Self> {
                ::std::sync::Arc::new(__Stub(__handle))
            }

            fn __trace(__t: &mut ::oxrmi::__private::TypeTracer) {
                #(#traces)*
            }

            fn __dispatch(
                __this: ::std::sync::Arc<Self>,
                __method: &str,
                __args: &[u8],
                __ctx: &::oxrmi::__private::CallCtx,
            ) -> ::core::option::Option<
                ::oxrmi::__private::BoxFuture<'static, ::oxrmi::__private::Outcome>,
            > {
                match __method {
                    #(#arms)*
                    _ => ::core::option::Option::None,
                }
            }
        }
    }
}

/// The lines of `__trace` for one method: its name, each argument's type, its result types.
fn trace_method(method: &Method<'_>) -> TokenStream {
    let name = method.ident.unraw().to_string();
    let args = method.args.iter().map(|arg| {
        let arg_name = arg_ident(arg).unraw().to_string();
        let ty = arg.ty;
        quote!(__t.arg::<#ty>(#arg_name);)
    });
    let ok = ok_ty(method);
    let err = err_ty(method);
    quote! {
        __t.method(#name);
        #(#args)*
        __t.result::<#ok, #err>();
    }
}

/// `Some(n)` or `None` as tokens.
fn option_u64(n: Option<u64>) -> TokenStream {
    match n {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    }
}

/// Decoding one argument: `next` for an argument without limits, `next_limited` with them.
fn decode_arg(arg: &Arg<'_>) -> TokenStream {
    let name = arg_ident(arg).unraw().to_string();
    let ty = arg.ty;
    if arg.limits.len.is_none() && arg.limits.size.is_none() {
        return quote!(__a.next::<#ty>(#name)?);
    }
    let len = option_u64(arg.limits.len);
    let size = option_u64(arg.limits.size);
    quote! {
        __a.next_limited::<#ty>(#name, ::oxrmi::__private::ArgLimit { len: #len, size: #size })?
    }
}

/// One arm of the dispatch `match`: decode every argument synchronously (so a malformed call
/// fails before any future exists), then call the trait method through UFCS, which an inherent
/// method of the same name cannot shadow.
fn dispatch_arm(iface: &Interface<'_>, method: &Method<'_>) -> TokenStream {
    let trait_ident = iface.ident;
    let method_ident = method.ident;
    let name = method.ident.unraw().to_string();
    let count = method.args.len();
    let idents: Vec<_> = method.args.iter().map(arg_ident).collect();
    let decodes = method.args.iter().map(decode_arg);
    let tys: Vec<_> = method.args.iter().map(|arg| arg.ty).collect();
    let decoder = if count == 0 {
        quote!(let _ = __ctx.args(__args, #name, #count)?;)
    } else {
        quote!(let mut __a = __ctx.args(__args, #name, #count)?;)
    };
    // Spanned at the method's name so that a type error here (the result not `Serialize`, say)
    // points at the method rather than at the attribute.
    let call = quote_spanned! {method.span=>
        __ctx.encode_result(#trait_ident::#method_ident(&*__this, #(#idents),*).await)
    };
    quote! {
        #name => {
            let __decoded = (|| -> ::core::result::Result<(#(#tys,)*), ::oxrmi::RemoteError> {
                #decoder
                ::core::result::Result::Ok((#(#decodes,)*))
            })();
            ::core::option::Option::Some(match __decoded {
                ::core::result::Result::Ok((#(#idents,)*)) => {
                    let __ctx = ::core::clone::Clone::clone(__ctx);
                    ::std::boxed::Box::pin(async move { #call })
                }
                ::core::result::Result::Err(__e) => ::oxrmi::__private::failed(__e),
            })
        }
    }
}

/// `impl<O: Trait> Wrap<O> for dyn Trait`: lets `Remote::<dyn Trait>::new(obj)` accept any
/// implementor. The orphan rule allows it because `dyn Trait` is local to the user's crate.
fn wrap_impl(iface: &Interface<'_>) -> TokenStream {
    let ident = iface.ident;
    quote! {
        impl<__O: #ident + 'static> ::oxrmi::__private::Wrap<__O> for dyn #ident {
            fn wrap(__obj: ::std::sync::Arc<__O>) -> ::std::sync::Arc<Self> {
                __obj
            }
        }
    }
}

/// The name of a validated argument.
fn arg_ident<'a>(arg: &crate::ast::Arg<'a>) -> &'a proc_macro2::Ident {
    arg.ident
        .expect("validated: remote method arguments are plain names")
}

/// `T` of a validated method's `Result<T, E>`.
fn ok_ty<'a>(method: &Method<'a>) -> &'a syn::Type {
    method
        .ok_ty
        .expect("validated: remote methods return Result")
}

/// `E` of a validated method's `Result<T, E>`.
fn err_ty<'a>(method: &Method<'a>) -> &'a syn::Type {
    method
        .err_ty
        .expect("validated: remote methods return Result")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::{TokenStream, TokenTree};

    fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
        remote_trait(args, &syn::parse2(item).unwrap())
    }

    /// Every identifier in `tokens`, with whether it directly follows `::`.
    fn idents(tokens: TokenStream, out: &mut Vec<(String, bool)>) {
        let mut colons = 0;
        for tree in tokens {
            match tree {
                TokenTree::Group(group) => {
                    idents(group.stream(), out);
                    colons = 0;
                }
                TokenTree::Ident(ident) => {
                    out.push((ident.to_string(), colons >= 2));
                    colons = 0;
                }
                TokenTree::Punct(punct) if punct.as_char() == ':' => colons += 1,
                _ => colons = 0,
            }
        }
    }

    #[test]
    fn output_names_nothing_from_the_prelude() {
        // The user's types are written with absolute paths, so every prelude name that appears
        // bare in the output was put there by the macro.
        let out = expand(
            TokenStream::new(),
            quote! {
                trait Counter {
                    async fn add(&self, n: i64) -> ::std::result::Result<i64, ::oxrmi::RemoteError>;
                    #[oneway]
                    async fn log(&self) -> ::std::result::Result<(), ::oxrmi::RemoteError>;
                }
            },
        );
        let mut all = Vec::new();
        idents(out, &mut all);
        let prelude = [
            "Result", "Ok", "Err", "Option", "Some", "None", "Box", "Arc", "Send", "Sync", "From",
            "Into", "Clone", "Vec", "String",
        ];
        for (ident, qualified) in all {
            assert!(
                qualified || !prelude.contains(&ident.as_str()),
                "bare `{ident}` in the output"
            );
        }
    }

    #[test]
    fn oneway_and_name_override() {
        let out = expand(
            quote!(name = "my.Counter"),
            quote! {
                trait Counter: Send {
                    #[oneway]
                    async fn log(&self, line: String) -> Result<(), E>;
                }
            },
        )
        .to_string();
        assert!(out.contains("call_oneway :: < E >"), "{out}");
        assert!(!out.contains("oneway ]"), "{out}");
        assert!(out.contains("\"my.Counter\""), "{out}");
        assert!(!out.contains("module_path"), "{out}");
        // `Send` was there; only `Sync` is added.
        assert!(
            out.contains("trait Counter : Send + :: core :: marker :: Sync"),
            "{out}"
        );
    }

    #[test]
    fn invalid_input_keeps_the_trait() {
        let out = expand(
            TokenStream::new(),
            quote! {
                trait Counter {
                    #[oneway]
                    fn add(&self) -> Result<i64, E>;
                }
            },
        )
        .to_string();
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("trait Counter"), "{out}");
        assert!(!out.contains("oneway ]"), "{out}");
        assert!(!out.contains("__Stub"), "{out}");
    }
}
