//! Attributes the macro understands: the arguments of `#[remote(...)]` on a trait, `#[oneway]` on
//! its methods, and doc comments (which go into the schema).

use crate::valid::Ctxt;
use proc_macro2::TokenStream;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Meta};

/// The arguments of `#[remote(...)]` on a trait.
#[derive(Default)]
pub(crate) struct TraitArgs {
    /// `name = "..."`: the interface name to use instead of `module_path!()::Trait`.
    ///
    /// **Invariant:** when set, the string is not empty (an empty one is reported and dropped).
    pub(crate) name: Option<LitStr>,
}

impl TraitArgs {
    /// Parses the tokens between the parentheses of `#[remote(...)]`, reporting every problem to
    /// `cx` and keeping whatever was understood.
    pub(crate) fn parse(cx: &Ctxt, args: TokenStream) -> Self {
        let mut out = TraitArgs::default();
        if args.is_empty() {
            return out;
        }
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                if out.name.is_some() {
                    cx.error_spanned_by(&meta.path, "duplicate `name` argument");
                } else if lit.value().is_empty() {
                    cx.error_spanned_by(&lit, "the interface name must not be empty");
                } else {
                    out.name = Some(lit);
                }
                Ok(())
            } else {
                Err(meta.error("unknown argument; the only one is `name = \"...\"`"))
            }
        });
        if let Err(err) = syn::parse::Parser::parse2(parser, args) {
            cx.syn_error(err);
        }
        out
    }
}

/// Whether `attr` is a `#[oneway]` attribute (in any form: malformed ones are reported by
/// [`oneway`] and must be stripped all the same).
pub(crate) fn is_oneway(attr: &Attribute) -> bool {
    attr.path().is_ident("oneway")
}

/// Finds the `#[oneway]` attribute among a method's attributes, reporting arguments given to it
/// and repeats.
pub(crate) fn oneway<'a>(cx: &Ctxt, attrs: &'a [Attribute]) -> Option<&'a Attribute> {
    let mut found = None;
    for attr in attrs.iter().filter(|attr| is_oneway(attr)) {
        if !matches!(attr.meta, Meta::Path(_)) {
            cx.error_spanned_by(&attr.meta, "`#[oneway]` takes no arguments");
        }
        if found.is_some() {
            cx.error_spanned_by(attr, "duplicate `#[oneway]` attribute");
        } else {
            found = Some(attr);
        }
    }
    found
}

/// Removes every `#[oneway]` attribute: it is not a real attribute, and the compiler would reject
/// it if it reached the output.
pub(crate) fn strip_oneway(attrs: &mut Vec<Attribute>) {
    attrs.retain(|attr| !is_oneway(attr));
}

/// `#[limit(len = N, size = M)]` on an argument: bounds enforced while the argument is decoded.
#[derive(Default)]
pub(crate) struct ArgLimits {
    /// Most elements, entries or bytes of the argument's outermost collection, string or buffer.
    pub(crate) len: Option<u64>,
    /// Most bytes the argument may decode into.
    pub(crate) size: Option<u64>,
}

/// Whether `attr` is a `#[limit(...)]` attribute (in any form: malformed ones are reported by
/// [`limits`] and must be stripped all the same).
pub(crate) fn is_limit(attr: &Attribute) -> bool {
    attr.path().is_ident("limit")
}

/// Reads the `#[limit(...)]` attribute among an argument's attributes, reporting unknown keys,
/// repeats and values that are not integers.
pub(crate) fn limits(cx: &Ctxt, attrs: &[Attribute]) -> ArgLimits {
    let mut out = ArgLimits::default();
    let mut seen = false;
    for attr in attrs.iter().filter(|attr| is_limit(attr)) {
        if seen {
            cx.error_spanned_by(
                attr,
                "duplicate `#[limit]` attribute; put every bound in one",
            );
            continue;
        }
        seen = true;
        if !matches!(attr.meta, Meta::List(_)) {
            cx.error_spanned_by(attr, "`#[limit]` needs `len = N` and/or `size = N`");
            continue;
        }
        let parsed = attr.parse_nested_meta(|meta| {
            let slot = if meta.path.is_ident("len") {
                &mut out.len
            } else if meta.path.is_ident("size") {
                &mut out.size
            } else {
                return Err(meta.error("unknown limit; the limits are `len = N` and `size = N`"));
            };
            let lit: syn::LitInt = meta.value()?.parse()?;
            let n: u64 = lit.base10_parse()?;
            if slot.is_some() {
                cx.error_spanned_by(&meta.path, "duplicate limit");
            } else {
                *slot = Some(n);
            }
            Ok(())
        });
        if let Err(err) = parsed {
            cx.syn_error(err);
        }
    }
    out
}

/// Removes every `#[limit]` attribute from a signature's arguments: the compiler would reject
/// it if it reached the output.
pub(crate) fn strip_limits(sig: &mut syn::Signature) {
    for input in &mut sig.inputs {
        match input {
            syn::FnArg::Typed(typed) => typed.attrs.retain(|attr| !is_limit(attr)),
            syn::FnArg::Receiver(receiver) => receiver.attrs.retain(|attr| !is_limit(attr)),
        }
    }
}

/// The doc comment carried by `attrs`: one line per line of the source comment, with the single
/// space after `///` removed, trailing blanks trimmed, and blank lines around the text dropped.
pub(crate) fn docs(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        let Meta::NameValue(nv) = &attr.meta else {
            continue;
        };
        if !nv.path.is_ident("doc") {
            continue;
        }
        // `#[doc = include_str!(..)]` and other non-literal docs cannot be read here; skip them.
        if let Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) = &nv.value
        {
            let value = s.value();
            for line in value.split('\n') {
                let line = line.strip_prefix(' ').unwrap_or(line);
                lines.push(line.trim_end().to_owned());
            }
        }
    }
    lines.join("\n").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;
    use syn::parse_quote;

    fn parse(args: TokenStream) -> (Option<String>, Result<(), String>) {
        let cx = Ctxt::new();
        let parsed = TraitArgs::parse(&cx, args);
        let name = parsed.name.map(|lit| lit.value());
        (name, cx.check().map_err(|e| e.to_string()))
    }

    #[test]
    fn trait_args() {
        assert_eq!(parse(quote!()), (None, Ok(())));
        assert_eq!(
            parse(quote!(name = "my.Counter")),
            (Some("my.Counter".to_owned()), Ok(()))
        );
        assert!(
            parse(quote!(label = "x"))
                .1
                .unwrap_err()
                .contains("unknown")
        );
        assert!(parse(quote!(name = "")).1.unwrap_err().contains("empty"));
        assert!(
            parse(quote!(name = "a", name = "b"))
                .1
                .unwrap_err()
                .contains("duplicate")
        );
        assert!(parse(quote!(name = 3)).1.is_err());
    }

    #[test]
    fn oneway_forms() {
        let cx = Ctxt::new();
        let attrs: Vec<Attribute> = vec![parse_quote!(#[doc = "x"]), parse_quote!(#[oneway])];
        assert!(oneway(&cx, &attrs).is_some());
        let bad: Vec<Attribute> = vec![parse_quote!(#[oneway(now)])];
        assert!(oneway(&cx, &bad).is_some());
        let errors = cx.check().unwrap_err().into_iter().count();
        assert_eq!(errors, 1);
    }

    #[test]
    fn limit_forms() {
        let cx = Ctxt::new();
        let attrs: Vec<Attribute> = vec![parse_quote!(#[limit(len = 10, size = 1_000)])];
        let l = limits(&cx, &attrs);
        assert_eq!((l.len, l.size), (Some(10), Some(1000)));
        assert!(cx.check().is_ok());
        for bad in [
            quote!(#[limit(count = 3)]),
            quote!(#[limit(len = "3")]),
            quote!(#[limit]),
            quote!(#[limit(len = 1, len = 2)]),
        ] {
            let cx = Ctxt::new();
            let attrs: Vec<Attribute> = vec![parse_quote!(#bad)];
            limits(&cx, &attrs);
            assert!(cx.check().is_err(), "{bad}");
        }
    }

    #[test]
    fn doc_lines() {
        let attrs: Vec<Attribute> = vec![
            parse_quote!(#[doc = " Adds `n`."]),
            parse_quote!(#[doc = ""]),
            parse_quote!(#[doc = "   indented  "]),
            parse_quote!(#[allow(unused)]),
        ];
        assert_eq!(docs(&attrs), "Adds `n`.\n\n  indented");
        assert_eq!(docs(&[]), "");
    }
}
