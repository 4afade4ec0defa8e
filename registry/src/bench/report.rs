//! The report: each measurement becomes a figure with its placement, ratio and CPU count, shown
//! as a table or as JSON lines.

use serde::Serialize;

use super::measurement::{Measurement, Unit};
use super::placement::Placement;
use super::transport::TransportKind;
use crate::table::{Align, Table};

/// One printed figure. **Output format:** `--json` prints it as it is; scripts read it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Figure {
    /// A stable identifier, `null_call_p50`.
    pub(crate) metric: String,
    /// What a reader sees, `null call p50`.
    pub(crate) label: String,
    /// Our runtime's value.
    pub(crate) value: f64,
    pub(crate) unit: Unit,
    /// `same`, `split` or `none`.
    pub(crate) placement: &'static str,
    pub(crate) server_cpu: Option<usize>,
    pub(crate) client_cpu: Option<usize>,
    pub(crate) transport: &'static str,
    /// The raw twin's value in the same unit, where the figure has one.
    pub(crate) raw: Option<f64>,
    /// `value / raw`.
    pub(crate) ratio: Option<f64>,
    /// CPUs available to the benchmark (`std::thread::available_parallelism`).
    pub(crate) cpus: usize,
    /// Calls timed or completed.
    pub(crate) samples: u64,
}

/// The figures of one placement's measurements.
pub(crate) fn figures(
    measured: Vec<Measurement>,
    placement: &Placement,
    transport: TransportKind,
    cpus: usize,
) -> Vec<Figure> {
    measured
        .into_iter()
        .map(|m| Figure {
            ratio: m.raw.filter(|raw| *raw > 0.0).map(|raw| m.ours / raw),
            metric: m.metric,
            label: m.label,
            value: m.ours,
            unit: m.unit,
            placement: placement.name,
            server_cpu: placement.server_cpu,
            client_cpu: placement.client_cpu,
            transport: transport.name(),
            raw: m.raw,
            cpus,
            samples: m.samples,
        })
        .collect()
}

/// One figure as a JSON line (without the newline).
pub(crate) fn json_line(figure: &Figure) -> String {
    serde_json::to_string(figure).expect("a figure is plain data and always serializes")
}

/// The figures as an aligned table, a blank line between placements.
pub(crate) fn table(figures: &[Figure]) -> String {
    let mut t = Table::new(&[
        "METRIC",
        "OURS",
        "RAW BASELINE",
        "RATIO",
        "TRANSPORT",
        "PLACEMENT",
        "CPUS",
    ])
    .align(1, Align::Right)
    .align(2, Align::Right)
    .align(3, Align::Right)
    .align(6, Align::Right);
    let mut previous = None;
    for f in figures {
        let placement = Placement {
            name: f.placement,
            server_cpu: f.server_cpu,
            client_cpu: f.client_cpu,
        };
        let group = (f.transport, placement.cell());
        if previous.as_ref().is_some_and(|p| *p != group) {
            t.push(Vec::new());
        }
        let dash = || "—".to_string();
        t.push(vec![
            f.label.clone(),
            value(f.value, f.unit),
            f.raw.map_or_else(dash, |raw| value(raw, f.unit)),
            f.ratio.map_or_else(dash, |r| format!("{r:.2}×")),
            f.transport.to_string(),
            placement.cell(),
            f.cpus.to_string(),
        ]);
        previous = Some(group);
    }
    t.render()
}

/// A value with its unit: `12.3 µs`, `215,000/s`, `200/min`, `1.02×`, `1,234 B`.
fn value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Micros if v < 10.0 => format!("{v:.2} µs"),
        Unit::Micros if v < 1_000.0 => format!("{v:.1} µs"),
        Unit::Micros => format!("{} µs", thousands(v)),
        Unit::CallsPerSecond | Unit::LookupsPerSecond => format!("{}/s", thousands(v)),
        Unit::MessagesPerReference => format!("{v:.2}"),
        Unit::PerMinute => format!("{}/min", thousands(v)),
        Unit::Ratio => format!("{v:.2}×"),
        Unit::Bytes => format!("{} B", thousands(v)),
        Unit::BytesPerSecond if v >= 1e9 => format!("{:.2} GB/s", v / 1e9),
        Unit::BytesPerSecond => format!("{:.0} MB/s", v / 1e6),
    }
}

/// `v` rounded to an integer, its digits grouped by three: `1,234,567`.
pub(crate) fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    if v < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_three_significant_digits_or_group_thousands() {
        assert_eq!(value(4.321, Unit::Micros), "4.32 µs");
        assert_eq!(value(72.46, Unit::Micros), "72.5 µs");
        assert_eq!(value(1234.4, Unit::Micros), "1,234 µs");
        assert_eq!(value(219_000.4, Unit::CallsPerSecond), "219,000/s");
        assert_eq!(value(999.6, Unit::LookupsPerSecond), "1,000/s");
        assert_eq!(value(1.004, Unit::MessagesPerReference), "1.00");
        assert_eq!(value(199.7, Unit::PerMinute), "200/min");
        assert_eq!(value(1.049, Unit::Ratio), "1.05×");
        assert_eq!(value(1234.4, Unit::Bytes), "1,234 B");
        assert_eq!(thousands(0.2), "0");
        assert_eq!(thousands(-1234.0), "-1,234");
    }

    fn measurement(metric: &str, ours: f64, raw: Option<f64>) -> Measurement {
        Measurement {
            metric: metric.into(),
            label: metric.replace('_', " "),
            unit: Unit::Micros,
            ours,
            raw,
            samples: 10,
        }
    }

    #[test]
    fn figures_carry_placement_cpus_and_ratio() {
        let same = Placement {
            name: "same",
            server_cpu: Some(1),
            client_cpu: Some(1),
        };
        let f = figures(
            vec![
                measurement("null_call_p50", 20.0, Some(4.0)),
                measurement("registry_lookup_p50", 30.0, None),
            ],
            &same,
            TransportKind::Tcp,
            2,
        );
        assert_eq!(f[0].ratio, Some(5.0));
        assert_eq!(f[1].ratio, None);
        assert_eq!(
            (f[0].placement, f[0].cpus, f[0].transport),
            ("same", 2, "tcp")
        );
        let json: serde_json::Value = serde_json::from_str(&json_line(&f[0])).unwrap();
        for key in [
            "metric",
            "value",
            "unit",
            "placement",
            "transport",
            "raw",
            "ratio",
            "cpus",
        ] {
            assert!(json.get(key).is_some(), "no {key} in {json}");
        }
        assert_eq!(json["unit"], "us");

        let none = Placement {
            name: "none",
            server_cpu: None,
            client_cpu: None,
        };
        let mut all = f.clone();
        all.extend(figures(
            vec![measurement("null_call_p50", 30.0, Some(10.0))],
            &none,
            TransportKind::Tcp,
            2,
        ));
        assert_eq!(
            table(&all),
            "METRIC                  OURS  RAW BASELINE  RATIO  TRANSPORT  PLACEMENT  CPUS\n\
             null call p50        20.0 µs       4.00 µs  5.00×  tcp        same 1/1      2\n\
             registry lookup p50  30.0 µs             —      —  tcp        same 1/1      2\n\
             \n\
             null call p50        30.0 µs       10.0 µs  3.00×  tcp        none          2\n"
        );
    }
}
