//! `oxrmi list`: the names bound in a registry and their interfaces, as a table or JSON.

use std::io::Write;

use oxrmi::registry::Binding;

use crate::cli::ListArgs;
use crate::one_request;
use crate::table::Table;

/// Fetches the bindings and prints them.
pub(crate) fn run(args: ListArgs) -> anyhow::Result<()> {
    let registry = args.registry.clone();
    let bindings = one_request::run(
        &format!("cannot list the registry at {registry}"),
        |rt| async move { rt.registry_at(&registry).list().await },
    )?;
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
