//! `oxrmi list`: the names bound in a registry and their interfaces, as a table or JSON.

use std::io::Write;

use oxrmi::registry::{Binding, StoreStatus};
use oxrmi::{Endpoint, RemoteError, Runtime};

use crate::cli::ListArgs;
use crate::one_request;
use crate::table::Table;

/// Fetches the bindings and prints them.
pub(crate) fn run(args: ListArgs) -> anyhow::Result<()> {
    let registry = args.registry.clone();
    let (bindings, store) = one_request::run(
        &format!("cannot list the registry at {registry}"),
        |rt| async move {
            let bindings = rt.registry_at(&registry).list().await?;
            Ok((bindings, store_status(&rt, &registry).await?))
        },
    )?;
    let text = if args.json {
        // The JSON stays the array of bindings; the store goes to stderr.
        if let Some(s) = &store {
            eprintln!("{}", store_line(s));
        }
        let mut json = serde_json::to_string(&bindings)?;
        json.push('\n');
        json
    } else {
        let mut text = store
            .as_ref()
            .map(|s| format!("{}\n\n", store_line(s)))
            .unwrap_or_default();
        text.push_str(&render(&bindings));
        text
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    if bindings.is_empty() && !args.json {
        eprintln!("(no names are bound in {})", args.registry);
    }
    Ok(())
}

/// The store of the registry at `endpoint`; `None` from a runtime that serves no registry or
/// from a registry older than `Registry::store`.
pub(crate) async fn store_status(
    rt: &Runtime,
    endpoint: &Endpoint,
) -> Result<Option<StoreStatus>, RemoteError> {
    match rt.registry_at(endpoint).store().await {
        Ok(s) => Ok(Some(s)),
        Err(RemoteError::NoSuchObject { .. } | RemoteError::NoSuchMethod { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One line on a registry's store: what it is, its health, and why.
pub(crate) fn store_line(s: &StoreStatus) -> String {
    let health = match (s.healthy, s.stale) {
        (true, _) => "healthy",
        (false, true) => "UNHEALTHY, lookups from a stale cache, writes refused",
        (false, false) => "UNHEALTHY, writes refused",
    };
    format!(
        "store {}  {health}  {} bindings  ({})",
        s.store, s.bindings, s.detail
    )
}

/// The bindings as an aligned NAME / INTERFACE table.
fn render(bindings: &[Binding]) -> String {
    let mut table = Table::new(&["NAME", "INTERFACE"]);
    for b in bindings {
        table.push(vec![b.name.clone(), b.interface.clone()]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_line_says_when_writes_are_refused() {
        let mut s = StoreStatus {
            store: "etcd://127.0.0.1:2379 prefix /oxrmi/registry/".into(),
            healthy: true,
            stale: false,
            detail: "cache current".into(),
            bindings: 3,
        };
        assert_eq!(
            store_line(&s),
            "store etcd://127.0.0.1:2379 prefix /oxrmi/registry/  healthy  3 bindings  (cache current)"
        );
        s.healthy = false;
        s.stale = true;
        assert!(store_line(&s).contains("UNHEALTHY, lookups from a stale cache, writes refused"));
    }

    #[test]
    fn bindings_render_as_an_aligned_table() {
        let b = |name: &str, interface: &str| Binding {
            name: name.into(),
            interface: interface.into(),
        };
        assert_eq!(
            render(&[
                b("bench", "oxrmi.bench.Bench"),
                b("a-long-name", "app::Counter")
            ]),
            "NAME         INTERFACE\n\
             bench        oxrmi.bench.Bench\n\
             a-long-name  app::Counter\n"
        );
    }
}
