//! The timed loops over the bare transport: the raw twins of our figures. Blocking sockets, one
//! thread, no framing: the least a round trip can cost on this transport.

use std::io;
use std::time::Instant;

use super::plan::{Count, Window};
use super::stats::Samples;
use super::transport::RawStream;

/// Round trips of `size` bytes each way against a byte echo server: write them, read them back.
pub(crate) fn ping_pong(
    stream: &mut dyn RawStream,
    size: usize,
    count: Count,
) -> io::Result<Samples> {
    let out = pattern(size);
    let mut back = vec![0u8; size];
    // Checked once, outside timing: the echo is whole and in order.
    round_trip(stream, &out, &mut back)?;
    if back != out {
        return Err(io::Error::other("the raw echo server returned other bytes"));
    }
    for _ in 0..count.warmup {
        round_trip(stream, &out, &mut back)?;
    }
    let mut nanos = Vec::with_capacity(count.timed);
    let wall = Instant::now();
    for _ in 0..count.timed {
        let t = Instant::now();
        round_trip(stream, &out, &mut back)?;
        nanos.push(t.elapsed().as_nanos() as u64);
    }
    Ok(Samples {
        nanos,
        wall: wall.elapsed(),
    })
}

/// Bytes written at a time in a large round trip.
const CHUNK: usize = 32 * 1024;
/// Bytes a large round trip lets be under way (written, not yet read back) before it reads:
/// below the smallest buffering between us and the echo (a pipe's 64 KiB), so the echo never
/// blocks writing to us while we block writing to it.
const WINDOW: usize = 64 * 1024;

fn round_trip(stream: &mut dyn RawStream, out: &[u8], back: &mut [u8]) -> io::Result<()> {
    if out.len() <= WINDOW {
        stream.write_all(out)?;
        return stream.read_exact(back);
    }
    let (mut written, mut read) = (0, 0);
    while written < out.len() {
        let end = (written + CHUNK).min(out.len());
        stream.write_all(&out[written..end])?;
        written = end;
        while written - read > WINDOW {
            let n = stream.read(&mut back[read..])?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            read += n;
        }
    }
    stream.read_exact(&mut back[read..])
}

/// Messages of `size` bytes kept `in_flight` deep on one connection: whenever whole messages
/// come back, as many go out. Returns completed messages per second of the measured window.
pub(crate) fn pipelined(
    stream: &mut dyn RawStream,
    size: usize,
    in_flight: usize,
    window: Window,
) -> io::Result<f64> {
    let mut buf = vec![0u8; size * in_flight];
    stream.write_all(&buf)?;
    // Bytes of a message only partly back.
    let mut partial = 0usize;
    let mut completed = 0u64;
    let start = Instant::now();
    let from = start + window.warmup;
    let until = from + window.measured;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let whole = (partial + n) / size;
        partial = (partial + n) % size;
        let now = Instant::now();
        if now >= until {
            break;
        }
        if now >= from {
            completed += whole as u64;
        }
        stream.write_all(&buf[..whole * size])?;
    }
    Ok(completed as f64 / window.measured.as_secs_f64())
}

/// A payload that is not all zeros, so a server returning a fresh buffer is caught.
pub(crate) fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}
