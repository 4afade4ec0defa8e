//! `oxrmi list`: the names bound in a registry and their interfaces, as a table or JSON.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use oxrmi::registry::Binding;
use oxrmi::{Endpoint, Runtime};

use crate::cli::ListArgs;
use crate::table::Table;

/// How long reaching the registry may take: a registry on a live host answers at once; a
/// firewall that drops packets should not keep an interactive command waiting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the listing itself may take once connected.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches the bindings and prints them.
pub(crate) fn run(args: ListArgs) -> anyhow::Result<()> {
    // One request: a single thread does.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let bindings = tokio
        .block_on(fetch(&args.registry))
        .with_context(|| format!("cannot list the registry at {}", args.registry))?;
    let text = if args.json {
        let mut json = serde_json::to_string(&bindings)?;
        json.push('\n');
        json
    } else {
        render(&bindings)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    if bindings.is_empty() && !args.json {
        eprintln!("(no names are bound in {})", args.registry);
    }
    Ok(())
}

async fn fetch(registry: &Endpoint) -> anyhow::Result<Vec<Binding>> {
    let rt = Runtime::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .call_timeout(CALL_TIMEOUT)
        .start()
        .await?;
    let listed = rt.registry_at(registry).list().await;
    rt.shutdown();
    Ok(listed?)
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
