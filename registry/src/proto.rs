//! `oxrmi proto`: the `.proto` of every interface a running runtime serves, from the shapes its
//! types trace to (`Introspect::describe`), rendered by [`oxrmi::proto::render`] (the same rules
//! its gRPC bridge serves by).

use std::io::Write;

use anyhow::Context;
use oxrmi::proto::{ProtoFile, render};

use crate::cli::ProtoArgs;
use crate::one_request;

/// Fetches the descriptions, renders them, and prints or writes the files.
pub(crate) fn run(args: ProtoArgs) -> anyhow::Result<()> {
    let endpoint = args.endpoint.clone();
    let wanted = args.interfaces.clone();
    let described = one_request::run(
        &format!("cannot describe the interfaces of the runtime at {endpoint}"),
        |rt| async move {
            let introspect = rt.introspect_at(&endpoint);
            let mut names = introspect.interfaces().await?;
            if !wanted.is_empty() {
                for w in &wanted {
                    if !names.contains(w) {
                        return Err(oxrmi::RemoteError::NoSuchObject {
                            object: format!("any object of interface `{w}`"),
                        });
                    }
                }
                names.retain(|n| wanted.contains(n));
            }
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                let described = introspect.describe(name.clone()).await;
                out.push((name, described));
            }
            Ok(out)
        },
    )?;
    let mut files: Vec<ProtoFile> = Vec::new();
    for (name, described) in described {
        match described
            .map_err(|e| e.to_string())
            .and_then(|t| render(&t).map_err(|e| e.reason))
        {
            Ok(f) => files.push(f),
            Err(reason) => eprintln!("oxrmi proto: skipping interface `{name}`: {reason}"),
        }
    }
    match &args.out {
        Some(dir) => {
            for f in &files {
                let path = f
                    .write_under(dir)
                    .with_context(|| format!("cannot write {} under {}", f.path, dir.display()))?;
                println!("{}", path.display());
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            for (i, f) in files.iter().enumerate() {
                if i > 0 {
                    out.write_all(b"\n")?;
                }
                writeln!(out, "// ---- file: {} ----", f.path)?;
                out.write_all(f.text.as_bytes())?;
            }
            out.flush()?;
        }
    }
    Ok(())
}
