//! The shared-secret handshake between processes: the right secret gets in, a wrong or missing
//! one is refused with `AccessDenied` before any call is decoded, and the secret never travels.
//! Authorization checks: a server's checks refuse calls by caller, interface and method.

use std::time::Duration;

use oxrmi::__private::RawLink;
use oxrmi::{Remote, RemoteError, Runtime};
use oxrmi_tests::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Peer, Transport, behaviour, fresh_path};

const SECRET: &str = "the quick brown fox jumps over the lazy dog";

/// A server in another process that requires `SECRET`.
async fn serve_with_secret(t: Transport) -> (Peer, String) {
    let file = fresh_path("secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let server = Peer::start(&["serve-secret", &t.listen(), &file]).await;
    (server, file)
}

async fn client(secret: Option<&str>) -> Runtime {
    let mut b = Runtime::builder().connect_timeout(Duration::from_secs(5));
    if let Some(s) = secret {
        b = b.shared_secret(s);
    }
    b.start().await.unwrap()
}

behaviour!(
    only_peers_that_know_the_secret_get_in,
    addressable,
    |t| async move {
        let (server, file) = serve_with_secret(t).await;
        let url = server.url("counter");

        let good = client(Some(SECRET)).await;
        let counter: Remote<dyn Counter> = good.lookup_url(&url).await.unwrap();
        assert_eq!(counter.add(1).await.unwrap(), 1);

        for (secret, why) in [
            (
                Some("a wrong secret, long enough to be accepted"),
                "wrong shared secret",
            ),
            (None, "shared secret"),
        ] {
            let bad = client(secret).await;
            let e = bad
                .lookup_url::<dyn Counter>(&url)
                .await
                .expect_err("a peer without the secret got in");
            assert!(
                matches!(&e, RemoteError::AccessDenied { reason } if reason.contains(why)),
                "{e:?}"
            );
        }
        // Nothing the refused peers sent was served; the good client still is.
        assert_eq!(counter.get().await.unwrap(), 1);
        let _ = std::fs::remove_file(file);
    }
);

behaviour!(
    a_runtime_with_a_secret_refuses_a_server_without_one,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        let e = client(Some(SECRET))
            .await
            .lookup_url::<dyn Counter>(&server.url("counter"))
            .await
            .expect_err("a server without the secret was trusted");
        assert!(matches!(e, RemoteError::AccessDenied { .. }), "{e:?}");
    }
);

behaviour!(
    the_secret_never_travels_and_a_call_without_auth_is_not_decoded,
    addressable,
    |t| async move {
        let (server, file) = serve_with_secret(t).await;
        let ep: oxrmi::Endpoint = server.endpoint().parse().unwrap();
        // A raw peer: a hello with a challenge, then a call straight away, no answer.
        let mut s = RawLink::connect(&ep).await.unwrap();
        let mut hello = b"OXRMI\0\x00\x05".to_vec();
        let mut body = vec![0x01, 0x94, 0xc4, 0x10];
        body.extend_from_slice(&[0xab; 16]);
        body.extend_from_slice(&[0x90, 0xc4, 0x20]);
        body.extend_from_slice(&[0x5a; 32]);
        body.extend_from_slice(&[0xcd, 0x03, 0xe8]);
        hello.extend_from_slice(&(body.len() as u32).to_be_bytes());
        hello.extend_from_slice(&body);
        // Call 1 on object 16 (the first exported), method "add", 1 s, flags 0, args [5].
        let call = [
            0x00, 0x00, 0x00, 0x10, 0x02, 0x95, 0x01, 0x10, 0xa3, b'a', b'd', b'd', 0xce, 0x00,
            0x0f, 0x42, 0x40, 0x00, 0x91, 0x05,
        ];
        s.write_all(&hello).await.unwrap();
        s.write_all(&call).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(!text.contains(SECRET), "the secret went over the wire");
        assert!(
            got.windows(2).any(|w| w == [0x07, 0xc4]),
            "the server sent no answer to the challenge: {text}"
        );
        assert!(text.contains("expected an auth frame"), "{got:02x?}");
        // The call was never decoded: the counter is untouched.
        let good = client(Some(SECRET)).await;
        let counter: Remote<dyn Counter> = good.lookup_url(&server.url("counter")).await.unwrap();
        assert_eq!(counter.get().await.unwrap(), 0);
        let _ = std::fs::remove_file(file);
    }
);

#[tokio::test]
async fn a_short_or_unreadable_secret_is_a_setup_error() {
    let e = Runtime::builder()
        .shared_secret("short")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(e, RemoteError::Setup { .. }), "{e:?}");
    let e = Runtime::builder()
        .shared_secret_file("/nonexistent/oxrmi-secret")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(e, RemoteError::Setup { .. }), "{e:?}");
}

/// A server whose checks allow `add` and registry writes only from a caller of its own user
/// (which only a local transport can vouch for) and `panic` to no one.
#[tokio::test]
async fn authorization_checks_decide_by_caller_interface_and_method() {
    let path = fresh_path("authorized.sock");
    let server = Peer::start(&["serve-authorized", &path]).await;
    let eps: Vec<&str> = server.first_line.split_whitespace().collect();
    let (tcp, unix) = (eps[0], eps[1]);
    let counter_at = |ep: &str| {
        let ep: oxrmi::Endpoint = ep.parse().unwrap();
        oxrmi::ObjectUrl::of(&ep, "counter").to_string()
    };

    // Over TCP the caller's user is unknown: `add` and registry writes are refused, other
    // methods run. (Pinned: the cheapest path would move a local client to the Unix socket.)
    let over_tcp = Runtime::builder()
        .pin_transport("tcp")
        .start()
        .await
        .unwrap();
    let counter: Remote<dyn Counter> = over_tcp.lookup_url(&counter_at(tcp)).await.unwrap();
    let e = counter.add(1).await.expect_err("add over TCP");
    assert!(
        matches!(&e, RemoteError::AccessDenied { reason } if reason.contains("add needs a caller of user")),
        "{e:?}"
    );
    assert_eq!(
        counter.get().await.unwrap(),
        0,
        "the refused add did not run"
    );
    let registry = over_tcp.registry_at(&tcp.parse().unwrap());
    let e = registry
        .bind("mine".into(), counter.clone().into_any())
        .await
        .expect_err("a registry write over TCP, from this very host");
    assert!(
        matches!(&e, RemoteError::AccessDenied { reason } if reason.contains("registry write")),
        "the check replaced the host rule: {e:?}"
    );
    let e = counter
        .panic("x".into())
        .await
        .expect_err("panic is refused");
    assert!(
        matches!(&e, RemoteError::AccessDenied { reason } if reason == "no panics here"),
        "{e:?}"
    );

    // Over the Unix socket the kernel vouches for our user: allowed.
    let over_unix = Runtime::builder()
        .pin_transport("unix")
        .start()
        .await
        .unwrap();
    let counter: Remote<dyn Counter> = over_unix.lookup_url(&counter_at(unix)).await.unwrap();
    assert_eq!(counter.add(2).await.unwrap(), 2);
    over_unix
        .registry_at(&unix.parse().unwrap())
        .bind("mine".into(), counter.clone().into_any())
        .await
        .expect("a registry write from our own user");
    let e = counter
        .panic("x".into())
        .await
        .expect_err("panic is refused for all");
    assert!(matches!(e, RemoteError::AccessDenied { .. }), "{e:?}");
    over_tcp.shutdown();
    over_unix.shutdown();
}
