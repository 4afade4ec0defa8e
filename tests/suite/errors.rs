//! Every `RemoteError` a peer can cause, each between real processes.

use std::time::Duration;

use oxrmi::{Remote, RemoteError};
use oxrmi_tests::{Counter, Other, VersionTwo};

use crate::harness::{Peer, Transport, behaviour};

behaviour!(no_such_object_after_unexport, |t| async move {
    let server = Peer::serve(t).await;
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    counter.retire().await.unwrap();
    let e = counter.get().await.unwrap_err();
    assert!(matches!(e, RemoteError::NoSuchObject { .. }), "{e:?}");
});

behaviour!(no_such_method_on_version_skew, |t| async move {
    let server = Peer::serve(t).await;
    // The server has version one of the interface; this client version two.
    let v2: Remote<dyn VersionTwo> = oxrmi::lookup(&server.url("versioned")).await.unwrap();
    let e = v2.triple(3).await.unwrap_err();
    match e {
        RemoteError::NoSuchMethod { interface, method } => {
            assert_eq!(interface, "oxrmi.test.Versioned");
            assert_eq!(method, "triple");
        }
        other => panic!("{other:?}"),
    }
});

behaviour!(marshalling_errors_name_the_argument, |t| async move {
    let server = Peer::serve(t).await;
    let v2: Remote<dyn VersionTwo> = oxrmi::lookup(&server.url("versioned")).await.unwrap();
    // Version two sends a string where the server expects an integer.
    let e = v2.double("four".into()).await.unwrap_err();
    match e {
        RemoteError::Marshalling { what, .. } => assert_eq!(what, "argument `x` of `double`"),
        other => panic!("{other:?}"),
    }
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    let e = counter.unencodable().await.unwrap_err();
    match e {
        RemoteError::Marshalling { what, detail } => {
            assert_eq!(what, "the result");
            assert!(detail.contains("refuses to be encoded"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
});

behaviour!(wrong_interface_on_lookup, |t| async move {
    let server = Peer::serve(t).await;
    let e = oxrmi::lookup::<dyn Other>(&server.url("counter"))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        RemoteError::WrongInterface {
            expected: "oxrmi.test.Other".into(),
            found: "oxrmi.test.Counter".into(),
        }
    );
});

behaviour!(a_panic_fails_that_call_only, |t| async move {
    let server = Peer::serve(t).await;
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    let e = counter.panic("kaboom 42".into()).await.unwrap_err();
    assert_eq!(
        e,
        RemoteError::Panic {
            message: "kaboom 42".into()
        }
    );
    // The server goes on serving, on the same connection.
    assert_eq!(counter.add(1).await.unwrap(), 1);
});

behaviour!(
    connection_lost_when_the_server_dies_mid_call,
    |t| async move {
        let mut server = Peer::serve(t).await;
        let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
        counter.get().await.unwrap();
        let call = tokio::spawn({
            let counter = counter.clone();
            async move { counter.sleep(60_000).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = tokio::time::Instant::now();
        server.kill().await;
        let r = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the call hung after its server died")
            .unwrap();
        assert!(
            matches!(r, Err(RemoteError::ConnectionLost { .. })),
            "{r:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        // The next call finds nobody there (a child that died leaves no endpoint to try).
        let e = counter.get().await.unwrap_err();
        let expected = match t {
            Transport::Pipe => matches!(e, RemoteError::Unreachable { .. }),
            _ => matches!(e, RemoteError::ConnectionRefused { .. }),
        };
        assert!(expected, "{e:?}");
    }
);

#[tokio::test]
async fn connection_refused_names_the_endpoint() {
    // A port that was just free: bind, note it, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("tcp://127.0.0.1:{port}/counter");
    let e = oxrmi::lookup::<dyn Counter>(&url).await.unwrap_err();
    match e {
        RemoteError::ConnectionRefused { endpoint, .. } => {
            assert_eq!(endpoint, format!("tcp://127.0.0.1:{port}"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_urls_are_rejected_with_a_reason() {
    for bad in ["counter", "http://h:1/x", "tcp://h/x", "tcp://h:1"] {
        let e = oxrmi::lookup::<dyn Counter>(bad).await.unwrap_err();
        assert!(
            matches!(e, RemoteError::InvalidEndpoint { .. }),
            "{bad}: {e:?}"
        );
    }
}
