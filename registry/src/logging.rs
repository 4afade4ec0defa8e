//! Logs: tracing events to stderr, filtered by `RUST_LOG` (stdout carries the output tests and
//! scripts parse).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the subscriber. `default` is the filter when `RUST_LOG` is unset or empty.
pub(crate) fn init(default: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => EnvFilter::try_new(&text).unwrap_or_else(|e| {
            eprintln!("oxrmi: ignoring RUST_LOG={text:?} ({e}); using {default:?}");
            EnvFilter::new(default)
        }),
        _ => EnvFilter::new(default),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only where a person reads them, not in a log file or a test's pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
