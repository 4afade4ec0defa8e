//! The gRPC bridge, from a typed Rust tonic client generated at build time from the `.proto`
//! files oxrmi emits (`tests/proto`, checked here against what oxrmi emits now), calling a server
//! in another process.

use std::time::{Duration, Instant};

use prost::Message as _;
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::harness::Peer;

#[allow(
    dead_code,
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic
)]
mod pb {
    pub mod counter {
        tonic::include_proto!("oxrmi.test.counter");
    }
    pub mod bank {
        tonic::include_proto!("oxrmi.test.bank");
    }
    pub mod account {
        tonic::include_proto!("oxrmi.test.account");
    }
    pub mod who_am_i {
        tonic::include_proto!("oxrmi.test.who_am_i");
    }
    pub mod registry {
        tonic::include_proto!("oxrmi.registry");
    }
}

use pb::account::account_client::AccountClient;
use pb::bank::bank_client::BankClient;
use pb::counter::counter_client::CounterClient;
use pb::registry::registry_client::RegistryClient;
use pb::who_am_i::who_am_i_client::WhoAmIClient;

/// `google.rpc.Status`, as the bridge puts it in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// A server with the test objects and the gRPC bridge; its TCP endpoint and gRPC channel.
async fn serve(args: &[&str]) -> (Peer, String, Channel) {
    let mut all = vec!["serve-grpc"];
    all.extend_from_slice(args);
    let peer = Peer::start(&all).await;
    let line = peer.first_line.clone();
    let mut parts = line.split_whitespace();
    let tcp = parts.next().expect("the TCP endpoint").to_string();
    assert_eq!(parts.next(), Some("grpc"), "{line}");
    let grpc = parts.next().expect("the gRPC address");
    let channel = Channel::from_shared(format!("http://{grpc}"))
        .expect("a URI")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect to the bridge");
    (peer, tcp, channel)
}

/// The `ObjectRef` bound to `name`, through the bridge's registry service.
async fn lookup(registry: &mut RegistryClient<Channel>, name: &str) -> pb::registry::ObjectRef {
    registry
        .lookup(pb::registry::LookupRequest { name: name.into() })
        .await
        .expect("lookup")
        .into_inner()
        .result
        .expect("an ObjectRef")
}

fn with_meta<T>(msg: T, key: &'static str, value: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert(key, value.parse().expect("ASCII metadata"));
    r
}

#[test]
fn the_checked_in_protos_are_what_oxrmi_emits() {
    let files = [
        oxrmi::proto::file_of::<dyn oxrmi_tests::Counter>(),
        oxrmi::proto::file_of::<dyn oxrmi_tests::Bank>(),
        oxrmi::proto::file_of::<dyn oxrmi_tests::Account>(),
        oxrmi::proto::file_of::<dyn oxrmi_tests::WhoAmI>(),
        oxrmi::proto::file_of::<dyn oxrmi::registry::Registry>(),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    for f in files {
        let f = f.expect("every test interface has a .proto");
        if std::env::var_os("OXRMI_BLESS").is_some() {
            f.write_under(&dir).expect("write the .proto");
            continue;
        }
        let path = dir.join(&f.path);
        let kept = std::fs::read_to_string(&path).expect("the checked-in .proto");
        assert_eq!(
            kept,
            f.text,
            "{} differs from what oxrmi emits (OXRMI_BLESS=1 rewrites it)",
            path.display()
        );
    }
}

#[tokio::test]
async fn a_typed_tonic_client_calls_an_object() {
    let (_peer, _tcp, ch) = serve(&[]).await;
    let mut counter = CounterClient::new(ch.clone());
    let a = counter
        .add(pb::counter::AddRequest { n: 5 })
        .await
        .expect("add")
        .into_inner()
        .result;
    let b = counter
        .add(pb::counter::AddRequest { n: 5 })
        .await
        .expect("add")
        .into_inner()
        .result;
    assert_eq!(b - a, 5);
    let echo = counter
        .echo(pb::counter::EchoRequest {
            tag: 7,
            data: vec![1; 1000],
            micros: 0,
        })
        .await
        .expect("echo")
        .into_inner()
        .result
        .expect("a result");
    assert_eq!((echo.item0, echo.item1), (7, 1000));
    // A one-way method answers at once with an empty reply; its effect follows.
    counter
        .log(pb::counter::LogRequest {
            line: "from gRPC".into(),
        })
        .await
        .expect("log");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logged = counter
            .logged(pb::counter::LoggedRequest {})
            .await
            .expect("logged")
            .into_inner()
            .result;
        if logged.iter().any(|l| l == "from gRPC") {
            break;
        }
        assert!(Instant::now() < deadline, "the one-way call had no effect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_application_error_arrives_in_the_status_details() {
    let (_peer, _tcp, ch) = serve(&[]).await;
    let mut counter = CounterClient::new(ch);
    let e = counter
        .divide(pb::counter::DivideRequest { by: 0 })
        .await
        .expect_err("division by zero fails");
    assert_eq!(e.code(), Code::Unknown, "{e:?}");
    let details = RpcStatus::decode(e.details()).expect("google.rpc.Status details");
    let any = &details.details[0];
    assert_eq!(
        any.type_url,
        "type.googleapis.com/oxrmi.test.counter.DivideAppError"
    );
    let app = pb::counter::DivideAppError::decode(&any.value[..]).expect("the error message");
    assert!(matches!(
        app.error.and_then(|e| e.value),
        Some(pb::counter::math_error::Value::DivideByZero(_))
    ));
    // A `RemoteError` the method meets keeps its kind's code.
    let e = counter
        .panic(pb::counter::PanicRequest {
            message: "boom".into(),
        })
        .await
        .expect_err("a panic fails the call");
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    assert!(e.message().contains("boom"), "{e:?}");
}

/// The client enforces `grpc-timeout` too, and usually first: either side may end the call, but
/// the handler in the server process must stop either way.
#[tokio::test]
async fn grpc_timeout_ends_the_call_and_its_handler() {
    let (_peer, _tcp, ch) = serve(&[]).await;
    let mut counter = CounterClient::new(ch);
    let mut req = Request::new(pb::counter::SleepRequest { millis: 3_000 });
    req.set_timeout(Duration::from_millis(300));
    let start = Instant::now();
    let e = counter.sleep(req).await.expect_err("the deadline passes");
    let client_side = e.code() == Code::Cancelled && e.message().contains("Timeout expired");
    assert!(e.code() == Code::DeadlineExceeded || client_side, "{e:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // The server stopped the handler rather than letting it run on.
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter
        .cancelled(pb::counter::CancelledRequest {})
        .await
        .expect("cancelled")
        .into_inner()
        .result
        == 0
    {
        assert!(Instant::now() < deadline, "the handler was not cancelled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn references_reach_grpc_clients_as_object_refs() {
    let (_peer, _tcp, ch) = serve(&[]).await;
    let mut bank = BankClient::new(ch.clone());
    let r = bank
        .open(pb::bank::OpenRequest {
            owner: "ann".into(),
        })
        .await
        .expect("open")
        .into_inner()
        .result
        .expect("an ObjectRef");
    assert_eq!(r.interface, "oxrmi.test.Account");
    assert!(!r.id.is_empty());
    let mut account = AccountClient::new(ch.clone());
    let deposit = |n: i64| {
        with_meta(
            pb::account::DepositRequest { amount: n },
            "oxrmi-object",
            &r.id,
        )
    };
    assert_eq!(
        account
            .deposit(deposit(10))
            .await
            .expect("deposit")
            .into_inner()
            .result,
        10
    );
    assert_eq!(
        account
            .deposit(deposit(5))
            .await
            .expect("deposit")
            .into_inner()
            .result,
        15
    );
    let owner = account
        .owner(with_meta(
            pb::account::OwnerRequest {},
            "oxrmi-object",
            &r.id,
        ))
        .await
        .expect("owner")
        .into_inner()
        .result;
    assert_eq!(owner, "ann");
    // And back: a reference as an argument.
    let adopted = bank
        .adopt(pb::bank::AdoptRequest {
            account: Some(pb::bank::ObjectRef {
                id: r.id.clone(),
                interface: r.interface.clone(),
            }),
        })
        .await
        .expect("adopt")
        .into_inner()
        .result;
    assert_eq!(adopted, 15);
    // An id of an object of another interface is refused, and does not change what that
    // object is for anyone else.
    let mut registry = RegistryClient::new(ch.clone());
    let counter = lookup(&mut registry, "counter").await;
    assert_eq!(counter.interface, "oxrmi.test.Counter");
    let e = account
        .owner(with_meta(
            pb::account::OwnerRequest {},
            "oxrmi-object",
            &counter.id,
        ))
        .await
        .expect_err("a counter is not an account");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    CounterClient::new(ch.clone())
        .get(pb::counter::GetRequest {})
        .await
        .expect("the counter is still a counter to others");
    let again = lookup(&mut registry, "counter").await;
    assert_eq!(again.interface, "oxrmi.test.Counter");
    // An id that names nothing.
    let e = account
        .owner(with_meta(
            pb::account::OwnerRequest {},
            "oxrmi-object",
            "nonsense",
        ))
        .await
        .expect_err("a bad id");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = account
        .owner(with_meta(
            pb::account::OwnerRequest {},
            "oxrmi-object",
            "999999",
        ))
        .await
        .expect_err("no such object");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

#[tokio::test]
async fn a_reference_left_unused_is_released_after_the_idle_time() {
    // Handles idle for 300 ms are let go.
    let (_peer, _tcp, ch) = serve(&["300"]).await;
    let mut bank = BankClient::new(ch);
    bank.open(pb::bank::OpenRequest {
        owner: "forgotten".into(),
    })
    .await
    .expect("open");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dropped = bank
            .dropped(pb::bank::DroppedRequest {})
            .await
            .expect("dropped")
            .into_inner()
            .result;
        if dropped.iter().any(|o| o == "forgotten") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the account was not dropped after the bridge let its handle go"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metadata_picks_the_object_and_ambiguity_is_refused() {
    let (_peer, _tcp, ch) = serve(&[]).await;
    let mut registry = RegistryClient::new(ch.clone());
    let counter = lookup(&mut registry, "counter").await;
    registry
        .bind(pb::registry::BindRequest {
            name: "counter2".into(),
            object: Some(counter),
        })
        .await
        .expect("bind through the bridge");
    let mut c = CounterClient::new(ch.clone());
    let e = c
        .get(pb::counter::GetRequest {})
        .await
        .expect_err("two counters are bound");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("counter, counter2"),
        "the candidates are named: {e:?}"
    );
    c.get(with_meta(
        pb::counter::GetRequest {},
        "oxrmi-name",
        "counter2",
    ))
    .await
    .expect("named");
    let e = c
        .get(with_meta(
            pb::counter::GetRequest {},
            "oxrmi-name",
            "nobody",
        ))
        .await
        .expect_err("no such name");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = c
        .get(with_meta(pb::counter::GetRequest {}, "oxrmi-name", "bank"))
        .await
        .expect_err("the bank is not a counter");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    registry
        .unbind(pb::registry::UnbindRequest {
            name: "counter2".into(),
        })
        .await
        .expect("unbind");
    c.get(pb::counter::GetRequest {})
        .await
        .expect("one counter again");
}

/// A CA, a server certificate for `localhost` and a client certificate, as PEM files in a
/// fresh directory: `ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key`.
fn certificates() -> std::path::PathBuf {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    let dir = std::path::PathBuf::from(crate::harness::fresh_path("tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "oxrmi test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, san, usage) in [
        ("server", "localhost", ExtendedKeyUsagePurpose::ServerAuth),
        (
            "client",
            "client.oxrmi.test",
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![san.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, san);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
    dir
}

/// Over mutual TLS: a client with a certificate from the CA gets in; one without a certificate,
/// or speaking plain HTTP/2, does not.
#[tokio::test]
async fn the_bridge_serves_over_mutual_tls() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let dir = certificates();
    let peer = Peer::start(&["serve-grpc-tls", dir.to_str().unwrap()]).await;
    let grpc = peer
        .first_line
        .split_whitespace()
        .nth(2)
        .expect("the gRPC address")
        .to_string();
    let port = grpc.rsplit(':').next().unwrap().to_string();
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let tls = |identity: bool| {
        let mut c = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.pem")))
            .domain_name("localhost");
        if identity {
            c = c.identity(Identity::from_pem(read("client.pem"), read("client.key")));
        }
        c
    };
    let endpoint = |tls_config: Option<ClientTlsConfig>| {
        let scheme = if tls_config.is_some() {
            "https"
        } else {
            "http"
        };
        let mut e = Endpoint::from_shared(format!("{scheme}://localhost:{port}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5));
        if let Some(t) = tls_config {
            e = e.tls_config(t).unwrap();
        }
        e
    };

    let ch = endpoint(Some(tls(true)))
        .connect()
        .await
        .expect("mutual TLS");
    let mut counter = CounterClient::new(ch.clone());
    // The object sees the gRPC client's certificate as the caller's identity.
    let who = WhoAmIClient::new(ch)
        .who(pb::who_am_i::WhoRequest {})
        .await
        .expect("who")
        .into_inner()
        .result;
    assert_eq!(who, "cert:CN=client.oxrmi.test");
    let a = counter
        .add(pb::counter::AddRequest { n: 2 })
        .await
        .expect("add")
        .into_inner()
        .result;
    let b = counter
        .add(pb::counter::AddRequest { n: 2 })
        .await
        .expect("add")
        .into_inner()
        .result;
    assert_eq!(b - a, 2);

    // No client certificate: the handshake fails, nothing is served.
    let refused = match endpoint(Some(tls(false))).connect().await {
        Err(_) => true,
        Ok(ch) => CounterClient::new(ch)
            .get(pb::counter::GetRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate was served");
    // Plain HTTP/2 to a TLS port: refused.
    let refused = match endpoint(None).connect().await {
        Err(_) => true,
        Ok(ch) => CounterClient::new(ch)
            .get(pb::counter::GetRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "a plain-text client was served");
    let _ = std::fs::remove_dir_all(&dir);
}
