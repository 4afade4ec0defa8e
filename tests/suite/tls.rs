//! oxrmi's own transport over TLS (`tls://`): a server process with certificates made at run
//! time; clients in this process (runtimes of their own) and in peer processes. Server
//! authentication, mutual TLS, the caller's identity, and refusals that leave the server serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oxrmi::{Remote, RemoteError, Runtime};
use oxrmi_tests::{Counter, Hub, Listener, Recorder, WhoAmI};

use crate::harness::{Peer, peer_bin};

/// Certificates as PEM files in a fresh directory:
/// - `ca.pem`: the CA of this deployment;
/// - `server.pem`/`.key`: the server, valid for the IP address 127.0.0.1 only (not `localhost`);
/// - `alice.pem`/`.key` (`CN=alice,O=example`) and `mallory.pem`/`.key` (`CN=mallory,O=example`):
///   client certificates from that CA;
/// - `other-ca.pem`, and `stranger.pem`/`.key`: another CA, and a client certificate from it.
fn certificates() -> PathBuf {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let dir = PathBuf::from(crate::harness::fresh_path("tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let ours = ca("oxrmi test CA");
    let theirs = ca("another CA");
    std::fs::write(dir.join("ca.pem"), ours.pem()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), theirs.pem()).unwrap();
    let issue = |file: &str, issuer: &CertifiedIssuer<'_, KeyPair>, sans: &[&str], cn: &str| {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        // Organisation first, common name last (rcgen's default name has a common name first):
        // RFC 4514 prints them the other way round.
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "example");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, issuer).unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
    };
    issue("server", &ours, &["127.0.0.1"], "server");
    issue("alice", &ours, &[], "alice");
    issue("mallory", &ours, &[], "mallory");
    issue("stranger", &theirs, &[], "stranger");
    dir
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap()
}

/// A runtime of this process that trusts `ca` (a file in `dir`) and presents `client`'s
/// certificate, if given.
async fn client(dir: &Path, ca: Option<&str>, client: Option<&str>) -> Runtime {
    let mut b = Runtime::builder().connect_timeout(Duration::from_secs(5));
    if let Some(ca) = ca {
        b = b.tls_trust(read(dir, ca));
    }
    if let Some(who) = client {
        b = b.tls_identity(
            read(dir, &format!("{who}.pem")),
            read(dir, &format!("{who}.key")),
        );
    }
    b.start().await.unwrap()
}

async fn serve_tls(dir: &Path, mutual: bool) -> Peer {
    let mut args = vec!["serve-tls", dir.to_str().unwrap()];
    if mutual {
        args.push("mutual");
    }
    let peer = Peer::start(&args).await;
    assert!(
        peer.endpoint().starts_with("tls://127.0.0.1:"),
        "{}",
        peer.endpoint()
    );
    peer
}

/// Whether the server still serves a client that does everything right.
async fn still_serves(dir: &Path, server: &Peer, client_cert: Option<&str>) {
    let rt = client(dir, Some("ca.pem"), client_cert).await;
    let counter: Remote<dyn Counter> = rt.lookup_url(&server.url("counter")).await.unwrap();
    counter.get().await.unwrap();
    rt.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_calls_and_callbacks_run_over_tls() {
    let dir = certificates();
    let server = serve_tls(&dir, false).await;
    let rt = client(&dir, Some("ca.pem"), None).await;
    let counter: Remote<dyn Counter> = rt.lookup_url(&server.url("counter")).await.unwrap();
    assert_eq!(counter.add(5).await.unwrap(), 5);
    assert_eq!(counter.get().await.unwrap(), 5);
    // A large argument crosses in many TLS records.
    let big = serde_bytes::ByteBuf::from(vec![7u8; 3 << 20]);
    assert_eq!(counter.echo(9, big, 0).await.unwrap(), (9, 3 << 20));
    // A callback: the server calls an object of ours over the same TLS connection (we listen
    // on nothing).
    let hub: Remote<dyn Hub> = rt.lookup_url(&server.url("hub")).await.unwrap();
    let recorder = std::sync::Arc::new(Recorder::default());
    let listener: Remote<dyn Listener> = Remote::from_arc(recorder.clone());
    hub.call_back(listener, "over tls".into()).await.unwrap();
    assert_eq!(recorder.seen().await.unwrap(), vec!["over tls".to_string()]);
    // Without a client certificate the server knows nobody.
    let who: Remote<dyn WhoAmI> = rt.lookup_url(&server.url("whoami")).await.unwrap();
    assert_eq!(who.who().await.unwrap(), "unverified");
    let report = rt.report();
    assert!(
        report.connections.iter().all(|c| c.transport == "tls"),
        "{:?}",
        report.connections
    );
    assert_eq!(rt.connections(), 1);
    rt.shutdown();
}

/// A reference names its owner's `tls://` endpoint: a third runtime that receives it (here from
/// a hub over plain TCP) dials the owner over TLS and verifies it as a lookup would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_to_an_object_behind_tls_is_dialled_over_verified_tls() {
    let dir = certificates();
    let hub_server = Peer::serve(crate::harness::Transport::Tcp).await;
    let keeper = Peer::start(&["keep-tls", &hub_server.url("hub"), dir.to_str().unwrap()]).await;
    assert_eq!(keeper.first_line, "kept");
    let rt = client(&dir, Some("ca.pem"), None).await;
    let hub: Remote<dyn Hub> = rt.lookup_url(&hub_server.url("hub")).await.unwrap();
    let listeners = hub.listeners().await.unwrap();
    assert_eq!(listeners.len(), 1);
    listeners[0]
        .notify("straight to its owner".into())
        .await
        .unwrap();
    assert_eq!(
        listeners[0].seen().await.unwrap(),
        vec!["straight to its owner".to_string()]
    );
    assert!(
        rt.report().connections.iter().any(|c| c.transport == "tls"),
        "{:?}",
        rt.report().connections
    );
    rt.shutdown();
    // Trusting another CA, the same reference cannot be reached: the owner's certificate is
    // checked on this path too.
    let rt = client(&dir, Some("other-ca.pem"), None).await;
    let hub: Remote<dyn Hub> = rt.lookup_url(&hub_server.url("hub")).await.unwrap();
    let listeners = hub.listeners().await.unwrap();
    match listeners[0].seen().await {
        Err(RemoteError::AccessDenied { reason }) => {
            assert!(reason.contains("certificate"), "{reason}")
        }
        other => panic!("expected access denied, got {other:?}"),
    }
    rt.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cannot_verify_the_server_is_refused_clearly() {
    let dir = certificates();
    let server = serve_tls(&dir, false).await;
    // No CA at all: a setup error naming the setting, not a silent trust-all.
    let rt = client(&dir, None, None).await;
    match rt.lookup_url::<dyn Counter>(&server.url("counter")).await {
        Err(RemoteError::Setup { reason }) => assert!(reason.contains("tls_trust"), "{reason}"),
        other => panic!("expected a setup error, got {other:?}"),
    }
    // Another CA: the server's certificate is refused.
    let rt = client(&dir, Some("other-ca.pem"), None).await;
    match rt.lookup_url::<dyn Counter>(&server.url("counter")).await {
        Err(RemoteError::AccessDenied { reason }) => {
            assert!(reason.contains("certificate"), "{reason}")
        }
        other => panic!("expected access denied, got {other:?}"),
    }
    // The right CA, the wrong name: the certificate is for 127.0.0.1, not `localhost`.
    let rt = client(&dir, Some("ca.pem"), None).await;
    let port = server.endpoint().rsplit(':').next().unwrap();
    match rt
        .lookup_url::<dyn Counter>(&format!("tls://localhost:{port}/counter"))
        .await
    {
        Err(RemoteError::AccessDenied { reason }) => {
            assert!(reason.contains("certificate"), "{reason}")
        }
        other => panic!("expected access denied for the wrong name, got {other:?}"),
    }
    still_serves(&dir, &server, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_to_a_tls_port_is_refused_and_the_server_goes_on() {
    let dir = certificates();
    let server = serve_tls(&dir, false).await;
    let addr = server.endpoint().trim_start_matches("tls://").to_string();
    // A peer that never starts its TLS handshake holds neither the accept loop nor the others.
    let _silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let rt = Runtime::builder()
        .connect_timeout(Duration::from_secs(5))
        .start()
        .await
        .unwrap();
    let plain = format!("tcp://{addr}/counter");
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        rt.lookup_url::<dyn Counter>(&plain),
    )
    .await
    .expect("a plain TCP client must be refused, not left waiting");
    assert!(
        matches!(
            r,
            Err(RemoteError::Protocol { .. } | RemoteError::ConnectionLost { .. })
        ),
        "{r:?}"
    );
    still_serves(&dir, &server, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_certificates_of_its_ca_and_shows_who_calls() {
    let dir = certificates();
    let server = serve_tls(&dir, true).await;
    let url = server.url("whoami");
    for (cert, what) in [
        (None, "no client certificate"),
        (Some("stranger"), "a certificate of another CA"),
    ] {
        let rt = client(&dir, Some("ca.pem"), cert).await;
        match rt.lookup_url::<dyn WhoAmI>(&url).await {
            Err(RemoteError::AccessDenied { reason }) => {
                assert!(reason.contains("certificate"), "{what}: {reason}")
            }
            other => panic!("{what}: expected access denied, got {other:?}"),
        }
        rt.shutdown();
    }
    // The object, and the authorization check, see the certificate's subject.
    let rt = client(&dir, Some("ca.pem"), Some("alice")).await;
    let who: Remote<dyn WhoAmI> = rt.lookup_url(&url).await.unwrap();
    assert_eq!(who.who().await.unwrap(), "cert:CN=alice,O=example");
    rt.shutdown();
    let rt = client(&dir, Some("ca.pem"), Some("mallory")).await;
    let who: Remote<dyn WhoAmI> = rt.lookup_url(&url).await.unwrap();
    match who.who().await {
        Err(RemoteError::AccessDenied { reason }) => {
            assert!(reason.contains("CN=mallory,O=example"), "{reason}")
        }
        other => panic!("expected the check to refuse mallory, got {other:?}"),
    }
    rt.shutdown();
    still_serves(&dir, &server, Some("alice")).await;
}

/// The process-wide default runtime of another process, configured by `OXRMI_TLS_*` files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_runtime_takes_its_certificates_from_the_environment() {
    let dir = certificates();
    let server = serve_tls(&dir, true).await;
    let who = |env: Vec<(&'static str, PathBuf)>| {
        let mut cmd = tokio::process::Command::new(peer_bin());
        cmd.args(["who-from-env", &server.url("whoami")])
            .envs(env)
            .kill_on_drop(true);
        async move {
            tokio::time::timeout(Duration::from_secs(20), cmd.output())
                .await
                .expect("the peer finished in time")
                .expect("run the peer")
        }
    };
    let out = who(vec![
        ("OXRMI_TLS_CA_FILE", dir.join("ca.pem")),
        ("OXRMI_TLS_CERT_FILE", dir.join("alice.pem")),
        ("OXRMI_TLS_KEY_FILE", dir.join("alice.key")),
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "cert:CN=alice,O=example"
    );
    // Without its certificate it is refused.
    let out = who(vec![("OXRMI_TLS_CA_FILE", dir.join("ca.pem"))]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("access denied"),
        "{out:?}"
    );
}

#[tokio::test]
async fn start_refuses_bad_tls_settings() {
    let dir = certificates();
    let setup = |r: Result<Runtime, RemoteError>| match r {
        Err(RemoteError::Setup { reason }) => reason,
        other => panic!("expected a setup error, got {other:?}"),
    };
    let reason = setup(Runtime::builder().listen("tls://127.0.0.1:0").start().await);
    assert!(reason.contains("tls_identity"), "{reason}");
    let reason = setup(
        Runtime::builder()
            .tls_identity(read(&dir, "server.pem"), b"not a key".to_vec())
            .start()
            .await,
    );
    assert!(reason.contains("tls_identity"), "{reason}");
    // A key that is not the certificate's.
    let reason = setup(
        Runtime::builder()
            .tls_identity(read(&dir, "server.pem"), read(&dir, "alice.key"))
            .start()
            .await,
    );
    assert!(reason.contains("tls_identity"), "{reason}");
    let reason = setup(
        Runtime::builder()
            .tls_trust(b"garbage".to_vec())
            .start()
            .await,
    );
    assert!(reason.contains("tls_trust"), "{reason}");
}
