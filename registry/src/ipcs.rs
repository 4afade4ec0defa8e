//! `oxrmi ipcs`: like `ipcs -a` for an oxrmi runtime. Its exported objects and who keeps each
//! alive (local handles, remote holders and when their leases expire), what it holds of other
//! runtimes, and its connections; as tables, or JSON.

use std::io::Write;

use oxrmi::introspect::Report;

use crate::cli::IpcsArgs;
use crate::table::Table;
use crate::{list_bindings, one_request};

/// Fetches the report and prints it.
pub(crate) fn run(args: IpcsArgs) -> anyhow::Result<()> {
    let endpoint = args.endpoint.clone();
    let (report, store) = one_request::run(
        &format!("cannot introspect the runtime at {endpoint}"),
        |rt| async move {
            let report = rt.introspect_at(&endpoint).report().await?;
            Ok((report, list_bindings::store_status(&rt, &endpoint).await?))
        },
    )?;
    let text = if args.json {
        // The JSON stays the report; the registry's store goes to stderr.
        if let Some(s) = &store {
            eprintln!("registry {}", list_bindings::store_line(s));
        }
        let mut json = serde_json::to_string_pretty(&report)?;
        json.push('\n');
        json
    } else {
        let mut text = render(&report);
        if let Some(s) = &store {
            // After the summary line: the registry this runtime serves, and its store.
            let at = text.find("\n\n").map_or(text.len(), |i| i + 1);
            text.insert_str(at, &format!("registry {}\n", list_bindings::store_line(s)));
        }
        text
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The report as text: a summary line, then objects (one row per holder), holdings and
/// connections.
fn render(r: &Report) -> String {
    let mut out = format!(
        "runtime {}  endpoints {}  lease {}  renewals received {}  releases received {}\n\n",
        r.runtime,
        if r.endpoints.is_empty() {
            "(none)".to_string()
        } else {
            r.endpoints.join(", ")
        },
        seconds(r.lease_ms),
        r.renewals_received,
        r.releases_received,
    );

    out.push_str("EXPORTED OBJECTS (who keeps each alive)\n");
    let mut objects = Table::new(&[
        "ID",
        "INTERFACE",
        "LOCAL HANDLES",
        "HOLDER",
        "REFS",
        "LEASE EXPIRES IN",
    ]);
    for o in &r.objects {
        let local = if o.pinned {
            "pinned".to_string()
        } else {
            o.local_handles.to_string()
        };
        if o.holders.is_empty() {
            objects.push(vec![
                o.id.to_string(),
                o.interface.clone(),
                local.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for h in &o.holders {
            objects.push(vec![
                o.id.to_string(),
                o.interface.clone(),
                local.clone(),
                h.runtime.clone(),
                h.references.to_string(),
                seconds(h.expires_in_ms),
            ]);
        }
    }
    out.push_str(&objects.render());

    out.push_str("\nHELD OBJECTS OF OTHER RUNTIMES\n");
    let mut held = Table::new(&["OWNER", "ID", "INTERFACE", "HANDLES", "REFS"]);
    for h in &r.holdings {
        held.push(vec![
            h.owner.clone(),
            h.object.to_string(),
            h.interface.clone(),
            h.handles.to_string(),
            h.references.to_string(),
        ]);
    }
    out.push_str(&held.render());

    out.push_str("\nCONNECTIONS\n");
    let mut conns = Table::new(&[
        "PEER",
        "TRANSPORT",
        "ADDRESS",
        "IN FLIGHT",
        "SERVING",
        "SENT",
        "SERVED",
    ]);
    for c in &r.connections {
        // `*` marks the connection new calls to that peer take (its cheapest live one).
        let transport = if c.preferred {
            format!("{}*", c.transport)
        } else {
            c.transport.clone()
        };
        conns.push(vec![
            c.peer.clone(),
            transport,
            c.address.clone(),
            c.calls_in_flight.to_string(),
            c.serving.to_string(),
            c.calls_sent.to_string(),
            c.calls_served.to_string(),
        ]);
    }
    out.push_str(&conns.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxrmi::introspect::{HolderReport, ObjectReport};

    #[test]
    fn one_row_per_holder_says_who_keeps_an_object_alive() {
        let report = Report {
            runtime: "ab12cd34".into(),
            endpoints: vec!["tcp://127.0.0.1:1099".into()],
            lease_ms: 60_000,
            objects: vec![
                ObjectReport {
                    id: 1,
                    interface: "oxrmi.Registry".into(),
                    local_handles: 1,
                    pinned: true,
                    holders: vec![],
                },
                ObjectReport {
                    id: 16,
                    interface: "app::Account".into(),
                    local_handles: 0,
                    pinned: false,
                    holders: vec![
                        HolderReport {
                            runtime: "11111111".into(),
                            references: 2,
                            expires_in_ms: 41_200,
                        },
                        HolderReport {
                            runtime: "22222222".into(),
                            references: 1,
                            expires_in_ms: 9_000,
                        },
                    ],
                },
            ],
            holdings: vec![],
            connections: vec![],
            renewals_received: 3,
            releases_received: 1,
        };
        let text = render(&report);
        assert!(text.starts_with("runtime ab12cd34  endpoints tcp://127.0.0.1:1099  lease 60.0 s"));
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("16 ")).collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(
            rows[0].contains("11111111") && rows[0].contains("41.2 s"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("1 ") && l.contains("pinned")),
            "{text}"
        );
    }
}
