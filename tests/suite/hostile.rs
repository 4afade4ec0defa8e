//! Hostile peers speaking raw bytes: each gets an error frame where possible and is
//! disconnected, and the server keeps serving everyone else.

use std::time::Duration;

use oxrmi::__private::RawLink;
use oxrmi::Remote;
use oxrmi_tests::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Peer, behaviour};

/// Connects a raw byte stream (the transport, without our handshake) to the peer's endpoint.
pub(crate) async fn raw(server: &Peer) -> RawLink {
    let endpoint: oxrmi::Endpoint = server.endpoint().parse().unwrap();
    RawLink::connect(&endpoint).await.unwrap()
}

/// Reads everything until the server closes, bounded in time; a hang fails the test.
async fn read_to_close(s: &mut RawLink) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server did not close the hostile connection");
    out
}

/// Our preamble and a minimal hello frame: `[runtime id (16 bytes), [], nil, lease 1000 ms]`.
pub(crate) fn handshake() -> Vec<u8> {
    let mut v = b"OXRMI\0\x00\x05".to_vec();
    let mut body = vec![0x01, 0x94, 0xc4, 0x10];
    body.extend_from_slice(&[0xab; 16]);
    body.extend_from_slice(&[0x90, 0xc0, 0xcd, 0x03, 0xe8]);
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(&body);
    v
}

/// Whether the bytes contain an error frame (kind 6) whose text contains `needle`.
fn has_error_frame(bytes: &[u8], needle: &str) -> bool {
    let text = String::from_utf8_lossy(bytes);
    bytes.contains(&0x06) && text.contains(needle)
}

async fn still_serves(server: &Peer) {
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    counter.add(1).await.unwrap();
}

behaviour!(random_bytes_are_refused, addressable, |t| async move {
    let server = Peer::serve(t).await;
    let mut s = raw(&server).await;
    // Deterministic garbage (an LCG): not the magic, so refused at the preamble.
    let mut x: u32 = 12345;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    let _ = s.write_all(&garbage).await;
    let reply = read_to_close(&mut s).await;
    assert!(has_error_frame(&reply, "bad magic"), "{reply:?}");
    still_serves(&server).await;
});

behaviour!(
    a_wrong_version_gets_an_error_frame,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        let mut s = raw(&server).await;
        let mut hs = handshake();
        hs[7] = 99;
        s.write_all(&hs).await.unwrap();
        let reply = read_to_close(&mut s).await;
        assert!(
            reply.starts_with(b"OXRMI\0\x00\x05"),
            "the server sends its own preamble first"
        );
        assert!(
            has_error_frame(&reply, "version 99"),
            "{:?}",
            String::from_utf8_lossy(&reply)
        );
        still_serves(&server).await;
    }
);

behaviour!(
    an_oversized_length_is_refused_before_allocation,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        let mut s = raw(&server).await;
        let mut bytes = handshake();
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        s.write_all(&bytes).await.unwrap();
        let reply = read_to_close(&mut s).await;
        assert!(
            has_error_frame(&reply, "exceeds the limit"),
            "{:?}",
            String::from_utf8_lossy(&reply)
        );
        still_serves(&server).await;
    }
);

behaviour!(
    an_unknown_frame_kind_is_refused,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        let mut s = raw(&server).await;
        let mut bytes = handshake();
        bytes.extend_from_slice(&[0, 0, 0, 3, 0x7f, 0x00, 0x00]);
        s.write_all(&bytes).await.unwrap();
        let reply = read_to_close(&mut s).await;
        assert!(
            has_error_frame(&reply, "unknown frame kind"),
            "{:?}",
            String::from_utf8_lossy(&reply)
        );
        still_serves(&server).await;
    }
);

behaviour!(
    a_malformed_call_header_is_refused,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        let mut s = raw(&server).await;
        let mut bytes = handshake();
        // A call frame whose header is a string instead of an array.
        bytes.extend_from_slice(&[0, 0, 0, 3, 0x02, 0xa1, b'x']);
        s.write_all(&bytes).await.unwrap();
        let reply = read_to_close(&mut s).await;
        assert!(
            has_error_frame(&reply, "malformed call header"),
            "{:?}",
            String::from_utf8_lossy(&reply)
        );
        still_serves(&server).await;
    }
);

behaviour!(
    a_silent_peer_does_not_hold_the_server,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        // Connects and says nothing; others are served meanwhile.
        let _silent = raw(&server).await;
        still_serves(&server).await;
    }
);
