//! What the client role reports to the parent: one JSON object a line on its stdout.

use serde::{Deserialize, Serialize};

/// The unit of a measured value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Unit {
    /// Microseconds per round trip.
    #[serde(rename = "us")]
    Micros,
    /// Completed calls (or raw messages) per second.
    #[serde(rename = "calls/s")]
    CallsPerSecond,
    /// Completed registry lookups per second.
    #[serde(rename = "lookups/s")]
    LookupsPerSecond,
    /// Messages per reference received and dropped.
    #[serde(rename = "msgs/ref")]
    MessagesPerReference,
    /// Messages received per minute.
    #[serde(rename = "/min")]
    PerMinute,
    /// One figure divided by another of the same unit.
    #[serde(rename = "ratio")]
    Ratio,
    /// Bytes of memory.
    #[serde(rename = "bytes")]
    Bytes,
    /// Payload bytes per second each way (an echo moves as many back as out).
    #[serde(rename = "bytes/s")]
    BytesPerSecond,
}

/// One figure as measured, before the parent adds its placement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Measurement {
    /// A stable identifier, `null_call_p50`.
    pub(crate) metric: String,
    /// What a reader sees, `null call p50`.
    pub(crate) label: String,
    pub(crate) unit: Unit,
    /// Our runtime's value.
    pub(crate) ours: f64,
    /// The raw twin's value, where the figure has one.
    pub(crate) raw: Option<f64>,
    /// Calls timed (or completed, for rates; messages counted; objects measured) to get `ours`.
    pub(crate) samples: u64,
}
