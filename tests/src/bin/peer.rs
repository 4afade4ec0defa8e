//! A child process for the cross-process tests.
//!
//! - `oxrmi-test-peer serve [ENDPOINT [LEASE_MS]]`: a runtime with a registry holding the test
//!   objects; prints `listening on URL` and serves until its standard input closes.
//! - `oxrmi-test-peer serve-secret ENDPOINT SECRET_FILE`: as `serve`, with a shared secret.
//! - `oxrmi-test-peer serve-authorized UNIX_PATH`: as `serve` on TCP and UNIX_PATH, with
//!   authorization checks (no `panic`; `add` and registry writes only from our own user);
//!   prints `listening on TCP_URL UNIX_URL`.
//! - `oxrmi-test-peer serve-limited CALLS CONNECTIONS`: as `serve` on TCP, with at most CALLS
//!   calls in flight per connection and CONNECTIONS connections.
//! - `oxrmi-test-peer serve-grpc-tls DIR`: as `serve-grpc`, over mutual TLS with the
//!   certificates in DIR (`server.pem`, `server.key`, `ca.pem`).
//! - `oxrmi-test-peer serve-tls DIR [mutual]`: as `serve` on `tls://127.0.0.1:0` with the
//!   certificate DIR/server.pem and key DIR/server.key, plus `whoami` (a
//!   [`oxrmi_tests::Mirror`]) whose calls an authorization check refuses to a certificate of
//!   `CN=mallory`; with `mutual`, client certificates must chain to DIR/ca.pem.
//! - `oxrmi-test-peer keep-tls URL DIR`: as `keep URL advertise`, listening on
//!   `tls://127.0.0.1:0` only, with the certificate DIR/server.pem and key DIR/server.key.
//! - `oxrmi-test-peer who-from-env URL`: through the default runtime (configured from the
//!   environment: `OXRMI_TLS_*`), looks up the [`oxrmi_tests::WhoAmI`] at URL and prints what it
//!   answers.
//! - `oxrmi-test-peer serve-grpc [HANDLE_IDLE_MS]`: as `serve` on TCP, plus the gRPC bridge on
//!   127.0.0.1; prints `listening on URL grpc ADDRESS`.
//! - `oxrmi-test-peer serve-many ENDPOINT..`: as `serve`, listening on every ENDPOINT; prints
//!   `listening on EP1 EP2 ..`.
//! - `oxrmi-test-peer serve-child [LEASE_MS]`: as `serve`, in a child started by
//!   `Runtime::spawn_child`, over its pipes; its bootstrap object is the counter.
//! - `oxrmi-test-peer child-calls-parent TIMES`: in a child started by `Runtime::spawn_child`,
//!   adds 1 to the parent's bootstrap counter TIMES times and exits.
//! - `oxrmi-test-peer spawn-child`: starts a `serve-child` child, calls it, prints `child PID`,
//!   and serves until its standard input closes.
//! - `oxrmi-test-peer serve-open ENDPOINT UID`: as `serve`, with a Unix socket opened to user UID
//!   (mode 0666, UID allowed).
//! - `oxrmi-test-peer hold URL OWNER`: opens an account at the bank at URL, prints `holding`,
//!   and holds it until killed (or its standard input closes).
//! - `oxrmi-test-peer sleep URL MILLIS`: looks up the counter at URL and calls `sleep`, so a
//!   test can kill this process mid-call.
//! - `oxrmi-test-peer bind URL NAME`: binds a fresh counter of its own under NAME in the
//!   registry at URL, prints `bound`, and serves until its standard input closes.
//! - `oxrmi-test-peer hold-and-leave URL OWNER`: opens an account, shuts its runtime down and
//!   exits at once, prints `left`.
//! - `oxrmi-test-peer hold-then-call URL`: holds the counter at URL, prints `holding`, and calls
//!   it again after a line arrives on its standard input (exit status 0 if that call worked).
//! - `oxrmi-test-peer keep URL advertise|hidden`: hands a listener of its own to the hub at
//!   URL, prints `kept`, and serves until its standard input closes; with `advertise` it
//!   listens on a port, with `hidden` on none.
//! - `oxrmi-test-peer serve-load [ENDPOINT]`: as `serve` (on a multi-threaded runtime), plus a
//!   `loadbank` (a [`oxrmi_tests::LoadBank`], which keeps no record per account); prints
//!   `listening on URL`.
//! - `oxrmi-test-peer load ENDPOINT TASKS SECONDS SEED`: the client of the load test (see
//!   `load` below): TASKS concurrent tasks on one runtime call the `serve-load` server at
//!   ENDPOINT for SECONDS, then the runtime shuts down and one JSON line
//!   ([`oxrmi_tests::LoadReport`]) is printed.
//! - `oxrmi-test-peer dropped URL`: prints `dropped OWNER,..`, the owners of the accounts whose
//!   `Drop` ran in the bank at URL, and exits.
//! - `oxrmi-test-peer own-names ENDPOINT REBIND_MS BIND_NAME REBIND_NAME`: binds a fresh counter
//!   of its own under BIND_NAME (`Runtime::bind_url`) and another under REBIND_NAME
//!   (`Runtime::rebind_url`) in the registry at ENDPOINT, checking for a restarted registry every
//!   REBIND_MS; prints `bound` and serves until its standard input closes.
//! - `oxrmi-test-peer serve-slow [KNOB=VALUE..]`: as `serve` on TCP, on a multi-threaded runtime
//!   of 4 worker threads, plus `slow` (a [`oxrmi_tests::TestSlow`]); knobs: `calls` (calls in
//!   flight per connection), `connections` (most connections), `handshake_ms`
//!   (connect/handshake timeout), `stall_ms` (stall timeout), `reply_bytes` (send buffer in
//!   bytes). Prints `listening on URL`.
//! - `oxrmi-test-peer calls URL N default|own`: N sequential `get` calls on the counter at URL,
//!   through the default runtime or a runtime of its own (for profiling the call path).
//! - `oxrmi-test-peer etcd-registry ETCD_URL PREFIX TTL_SECS`: a registry node on TCP whose
//!   bindings are kept in etcd (`etcd://host:port[,..]`) under PREFIX with leases of TTL_SECS;
//!   prints `listening on URL` once its cache is filled, and serves until stdin closes.

use anyhow::{Context, bail};
use oxrmi::Remote;
use oxrmi_tests::{Bank, Counter, Hub, Listener, Recorder, TestCounter, WhoAmI};
use tokio::io::AsyncReadExt;

#[path = "peer/load.rs"]
mod load;

/// Runs a server started by `start` on a multi-threaded tokio runtime of `workers` threads of
/// its own (this process's runtime is single-threaded), so its calls are served in parallel as
/// a real server's are; prints `listening on URL` and serves until standard input closes.
async fn serve_on_threads<F, Fut>(workers: usize, start: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<oxrmi::Runtime>>,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || -> anyhow::Result<()> {
        let tokio_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?;
        tokio_rt.block_on(async move {
            let rt = start().await?;
            println!("listening on {}", rt.endpoints()[0]);
            let _ = stopped.await;
            rt.shutdown();
            Ok(())
        })
    });
    wait_for_stdin_eof().await;
    let _ = stop.send(());
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))?
}

async fn wait_for_stdin_eof() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", rest @ ..] => {
            let listen = rest.first().copied().unwrap_or("tcp://127.0.0.1:0");
            let lease = match rest.get(1) {
                Some(ms) => Some(std::time::Duration::from_millis(ms.parse()?)),
                None => None,
            };
            let rt = oxrmi_tests::start_server(listen, lease).await?;
            println!("listening on {}", rt.endpoints()[0]);
            wait_for_stdin_eof().await;
            rt.shutdown();
        }
        ["serve-load", rest @ ..] => {
            // On a multi-threaded runtime of its own (this process's is single-threaded), so
            // the load's calls are served in parallel, as a real server's would be.
            let listen = rest
                .first()
                .copied()
                .unwrap_or("tcp://127.0.0.1:0")
                .to_string();
            serve_on_threads(2, move || async move {
                let rt = oxrmi_tests::start_server(&listen, None).await?;
                let bank = oxrmi_tests::TestLoadBank::default();
                rt.bind("loadbank", Remote::<dyn oxrmi_tests::LoadBank>::new(bank))
                    .await?;
                Ok(rt)
            })
            .await?;
        }
        ["load", endpoint, tasks, seconds, seed] => {
            let report = load::run(
                endpoint.parse()?,
                tasks.parse()?,
                std::time::Duration::from_secs_f64(seconds.parse()?),
                seed.parse()?,
            )
            .await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        ["serve-grpc", rest @ ..] => {
            // As `serve`, with the gRPC bridge on an ephemeral port of 127.0.0.1 (and registry
            // writes through it allowed); prints `listening on URL grpc ADDRESS`.
            let mut builder = oxrmi::Runtime::builder()
                .listen("tcp://127.0.0.1:0")
                .listen("grpc://127.0.0.1:0")
                .registry_accepts_remote_writes(true);
            if let Some(ms) = rest.first() {
                builder = builder.grpc_handle_idle(std::time::Duration::from_millis(ms.parse()?));
            }
            let rt = oxrmi_tests::start_server_with(builder).await?;
            let grpc = rt.grpc_address().context("no gRPC address")?;
            println!("listening on {} grpc {grpc}", rt.endpoints()[0]);
            wait_for_stdin_eof().await;
            rt.shutdown();
        }
        ["serve-authorized", unix_path] => {
            // As `serve`, on TCP and on a Unix socket, with authorization checks: no `panic`
            // for anyone; `add` on the counter, and registry writes, only from a caller whose
            // user the transport vouches for and is ours (so: over the Unix socket).
            let own = std::fs::metadata("/proc/self").map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.uid()
            })?;
            let local_user = move |c: &oxrmi::authorize::CallInfo<'_>, what: &str| {
                if c.caller.uid() == Some(own) {
                    Ok(())
                } else {
                    Err(format!("{what} needs a caller of user {own}"))
                }
            };
            let builder = oxrmi::Runtime::builder()
                .listen("tcp://127.0.0.1:0")
                .listen(format!("unix://{unix_path}"))
                .authorize(|c| match c.method {
                    "panic" => Err("no panics here".into()),
                    _ => Ok(()),
                })
                .authorize_interface::<dyn Counter>(move |c| match c.method {
                    "add" => local_user(c, "add"),
                    _ => Ok(()),
                })
                .authorize_interface::<dyn oxrmi::registry::Registry>(move |c| match c.method {
                    "bind" | "rebind" | "unbind" => local_user(c, "a registry write"),
                    _ => Ok(()),
                });
            let rt = oxrmi_tests::start_server_with(builder).await?;
            let eps: Vec<String> = rt.endpoints().iter().map(ToString::to_string).collect();
            println!("listening on {}", eps.join(" "));
            wait_for_stdin_eof().await;
            rt.shutdown();
        }
        ["serve-limited", calls, connections] => {
            // As `serve` on TCP, with at most CALLS calls in flight per connection and
            // CONNECTIONS connections.
            let builder = oxrmi::Runtime::builder()
                .listen("tcp://127.0.0.1:0")
                .max_calls_in_flight(calls.parse()?)
                .max_connections(connections.parse()?);
            let rt = oxrmi_tests::start_server_with(builder).await?;
            println!("listening on {}", rt.endpoints()[0]);
            wait_for_stdin_eof().await;
            rt.shutdown();
        }
        ["serve-leases", max] => {
            // As `serve` on TCP, letting each peer hold leases on at most MAX objects.
            let builder = oxrmi::Runtime::builder()
                .listen("tcp://127.0.0.1:0")
                .max_leases_per_peer(max.parse()?);
            let rt = oxrmi_tests::start_server_with(builder).await?;
            println!("listening on {}", rt.endpoints()[0]);
            wait_for_stdin_eof().await;
            rt.shutdown();
        }
        ["serve-store", max_decoded, max_len] => {
            // A `Store` bound as `store` on TCP, decoding within MAX_DECODED bytes per message
            // and MAX_LEN elements per collection.
            let rt = oxrmi::Runtime::builder()
                .listen("tcp://127.0.0.1:0")
                .max_decoded_size(max_decoded.parse()?)
                .max_collection_len(max_len.parse()?)
                .registry()
                .start()
                .await?;
            rt.bind(
                "store",
                Remote::<dyn oxrmi_tests::Store>::new(oxrmi_tests::TestStore::default()),
            )
            .await?;
            println!("listening on {}", rt.endpoints()[0]);
            wait_for_stdin_eof().await;
            rt.shutdown();
        }
        ["serve-slow", knobs @ ..] => {
            // On a multi-threaded runtime of its own, as a real server runs: what a handler
            // that blocks its thread does to the others depends on it.
            let mut builder = oxrmi::Runtime::builder().listen("tcp://127.0.0.1:0");
            for knob in knobs {
                let (name, value) = knob.split_once('=').context("KNOB=VALUE")?;
                let n: u64 = value.parse()?;
                let ms = std::time::Duration::from_millis(n);
                builder = match name {
                    "calls" => builder.max_calls_in_flight(n as usize),
                    "connections" => builder.max_connections(n as usize),
                    "handshake_ms" => builder.connect_timeout(ms),
                    "stall_ms" => builder.stall_timeout(ms),
                    "reply_bytes" => builder.send_buffer_bytes(n as usize),
                    other => bail!("unknown knob {other}"),
                };
            }
            serve_on_threads(4, move || async move {
                let rt = oxrmi_tests::start_server_with(builder).await?;
                let slow = oxrmi_tests::TestSlow::default();
                rt.bind("slow", Remote::<dyn oxrmi_tests::Slow>::new(slow))
                    .await?;
                Ok(rt)
            })
            .await?;
        }
        ["serve-grpc-tls", dir] => {
            // As `serve-grpc`, the bridge over TLS with DIR/server.pem and DIR/server.key, and
            // client certificates required to chain to DIR/ca.pem (mutual TLS).
            let read = |f: &str| std::fs::read(std::path::Path::new(dir).join(f));
            let builder = oxrmi::Runtime::builder()
                .listen("tcp://127.0.0.1:0")
                .listen("grpc://127.0.0.1:0")
                .grpc_tls(read("server.pem")?, read("server.key")?)
                .grpc_tls_client_ca(read("ca.pem")?);
            let rt = oxrmi_tests::start_server_with(builder).await?;
            rt.bind("who", Remote::<dyn WhoAmI>::new(oxrmi_tests::Mirror))
                .await?;
            let grpc = rt.grpc_address().context("no gRPC address")?;
            println!("listening on {} grpc {grpc}", rt.endpoints()[0]);
            wait_for_stdin_eof().await;
            rt.shutdown();
        }
        ["serve-tls", dir, rest @ ..] => {
            let read = |f: &str| std::fs::read(std::path::Path::new(dir).join(f));
            let mut builder = oxrmi::Runtime::builder()
                .listen("tls://127.0.0.1:0")
                .tls_identity(read("server.pem")?, read("server.key")?)
                .authorize_interface::<dyn WhoAmI>(|c| match c.caller.identity() {
                    oxrmi::Identity::Certificate { subject } if subject.contains("CN=mallory") => {
                        Err(format!("{subject} may not ask"))
                    }
                    _ => Ok(()),
                });
            if rest.first() == Some(&"mutual") {
                builder = builder.tls_client_ca(read("ca.pem")?);
            }
            let rt = oxrmi_tests::start_server_with(builder).await?;
            rt.bind("whoami", Remote::<dyn WhoAmI>::new(oxrmi_tests::Mirror))
                .await?;
            println!("listening on {}", rt.endpoints()[0]);
            wait_for_stdin_eof().await;
            rt.shutdown();
        }
        ["keep-tls", url, dir] => {
            let read = |f: &str| std::fs::read(std::path::Path::new(dir).join(f));
            let rt = oxrmi::Runtime::builder()
                .listen("tls://127.0.0.1:0")
                .tls_identity(read("server.pem")?, read("server.key")?)
                .start()
                .await?;
            let hub: Remote<dyn Hub> = rt.lookup_url(url).await?;
            let me = Remote::<dyn Listener>::new(Recorder::default());
            hub.keep(Some(vec![me.clone()])).await?;
            println!("kept");
            wait_for_stdin_eof().await;
            drop(me);
        }
        ["who-from-env", url] => {
            let who: Remote<dyn WhoAmI> = oxrmi::lookup(url).await?;
            println!("{}", who.who().await?);
        }
        ["serve-secret", listen, secret_file] => {
            // As `serve`, requiring every peer to know the secret in SECRET_FILE.
            let builder = oxrmi::Runtime::builder()
                .listen(*listen)
                .shared_secret_file(secret_file);
            let rt = oxrmi_tests::start_server_with(builder).await?;
            println!("listening on {}", rt.endpoints()[0]);
            wait_for_stdin_eof().await;
            rt.shutdown();
        }
        ["serve-many", endpoints @ ..] => {
            // As `serve`, listening on every endpoint given; prints them space-separated.
            let mut builder = oxrmi::Runtime::builder();
            for ep in endpoints {
                builder = builder.listen(*ep);
            }
            let rt = oxrmi_tests::start_server_with(builder).await?;
            let eps: Vec<String> = rt.endpoints().iter().map(ToString::to_string).collect();
            println!("listening on {}", eps.join(" "));
            wait_for_stdin_eof().await;
            rt.shutdown();
        }
        ["serve-child", rest @ ..] => {
            // Started by Runtime::spawn_child: serves the test objects over the pipes, offers
            // the counter as its bootstrap object, and ends when the parent goes.
            let mut builder = oxrmi::Runtime::builder().parent_pipe();
            if let Some(ms) = rest.first() {
                builder = builder.lease(std::time::Duration::from_millis(ms.parse()?));
            }
            let rt = oxrmi_tests::start_server_with(builder).await?;
            let counter: Remote<dyn Counter> = rt.lookup("counter").await?;
            rt.set_bootstrap(counter);
            // Goes to standard error now: the pipes stay clean.
            println!("serving the parent");
            std::future::pending::<()>().await;
        }
        ["child-calls-parent", times] => {
            // Started by Runtime::spawn_child: adds 1 to the parent's bootstrap counter TIMES
            // times, then leaves.
            let rt = oxrmi::Runtime::builder().parent_pipe().start().await?;
            let counter: Remote<dyn Counter> = rt.parent_bootstrap().await?;
            for _ in 0..times.parse::<u32>()? {
                counter.add(1).await?;
            }
            rt.shutdown();
        }
        ["spawn-child"] => {
            // A parent of a `serve-child`: prints the child's pid, then serves until its own
            // stdin closes (or it is killed).
            let rt = oxrmi::Runtime::builder().start().await?;
            let mut cmd = std::process::Command::new(std::env::current_exe()?);
            cmd.arg("serve-child");
            let child = rt.spawn_child(cmd).await?;
            let counter: Remote<dyn Counter> = child.bootstrap().await?;
            counter.add(1).await?;
            println!("child {}", child.pid().unwrap_or(0));
            wait_for_stdin_eof().await;
        }
        ["sleep", url, millis] => {
            let counter: Remote<dyn Counter> = oxrmi::lookup(url).await?;
            println!("calling");
            counter.sleep(millis.parse()?).await?;
        }
        ["bind", url, name] => {
            let rt = oxrmi::Runtime::builder()
                .listen("tcp://127.0.0.1:0")
                .start()
                .await?;
            let counter = Remote::<dyn Counter>::new(TestCounter::default());
            let reg = rt.registry_at(&url.parse::<oxrmi::ObjectUrl>()?.endpoint);
            reg.bind(name.to_string(), counter.into_any())
                .await
                .context("bind")?;
            println!("bound");
            wait_for_stdin_eof().await;
        }
        ["serve-open", listen, uid] => {
            // A Unix endpoint open to another user: socket mode 0666 and `uid` allowed.
            let builder = oxrmi::Runtime::builder()
                .listen(*listen)
                .unix_socket_mode(0o666)
                .allow_unix_uid(uid.parse()?);
            let rt = oxrmi_tests::start_server_with(builder).await?;
            println!("listening on {}", rt.endpoints()[0]);
            wait_for_stdin_eof().await;
            rt.shutdown();
        }
        ["hold", url, owner] => {
            // Opens an account at the bank at URL and holds it until killed.
            let bank: Remote<dyn Bank> = oxrmi::lookup(url).await?;
            let account = bank.open(owner.to_string()).await?;
            account.deposit(1).await?;
            println!("holding");
            wait_for_stdin_eof().await;
            drop(account);
        }
        ["hold-and-leave", url, owner] => {
            // Opens an account, shuts its runtime down and exits at once: the shutdown must
            // release the account, or the bank waits for the lease to expire.
            let bank: Remote<dyn Bank> = oxrmi::lookup(url).await?;
            let account = bank.open(owner.to_string()).await?;
            account.deposit(1).await?;
            oxrmi::default_runtime().shutdown();
            println!("left");
        }
        ["hold-then-call", url] => {
            // Holds the counter at URL, waits for a line on stdin, then calls it: exit status 0
            // if the call worked.
            let counter: Remote<dyn Counter> = oxrmi::lookup(url).await?;
            counter.get().await?;
            println!("holding");
            let mut line = String::new();
            let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
            tokio::io::AsyncBufReadExt::read_line(&mut stdin, &mut line).await?;
            counter.get().await.context("the call after the pause")?;
        }
        ["keep", url, advertise] => {
            // Hands a listener of this process to the hub at URL, then serves until stdin closes.
            // With `advertise`, this process listens, so third parties can reach the listener.
            let mut builder = oxrmi::Runtime::builder();
            if *advertise == "advertise" {
                builder = builder.listen("tcp://127.0.0.1:0");
            }
            let rt = builder.start().await?;
            let hub: Remote<dyn Hub> = rt.lookup_url(url).await?;
            let me = Remote::<dyn Listener>::new(Recorder::default());
            hub.keep(Some(vec![me.clone()])).await?;
            println!("kept");
            wait_for_stdin_eof().await;
            drop(me);
        }
        ["dropped", url] => {
            let rt = oxrmi::Runtime::builder().start().await?;
            let bank: Remote<dyn Bank> = rt.lookup_url(url).await?;
            println!("dropped {}", bank.dropped().await?.join(","));
            rt.shutdown();
        }
        ["own-names", endpoint, rebind_ms, bind_name, rebind_name] => {
            let rt = oxrmi::Runtime::builder()
                .listen("tcp://127.0.0.1:0")
                .rebind_interval(std::time::Duration::from_millis(rebind_ms.parse()?))
                .start()
                .await?;
            let endpoint: oxrmi::Endpoint = endpoint.parse()?;
            let url = |name: &str| oxrmi::ObjectUrl::of(&endpoint, name).to_string();
            rt.bind_url(
                &url(bind_name),
                Remote::<dyn Counter>::new(TestCounter::default()),
            )
            .await
            .context("bind_url")?;
            rt.rebind_url(
                &url(rebind_name),
                Remote::<dyn Counter>::new(TestCounter::default()),
            )
            .await
            .context("rebind_url")?;
            println!("bound");
            wait_for_stdin_eof().await;
            rt.shutdown();
        }
        ["calls", url, n, how] => {
            // Sequential calls on one handle, for profiling the call path: through the default
            // runtime (`default`) or a runtime of this task's own (`own`).
            let counter: Remote<dyn Counter> = match *how {
                "default" => oxrmi::lookup(url).await?,
                _ => {
                    let rt = oxrmi::Runtime::builder().start().await?;
                    rt.lookup_url(url).await?
                }
            };
            let n: u32 = n.parse()?;
            let start = std::time::Instant::now();
            for _ in 0..n {
                counter.get().await?;
            }
            println!(
                "{n} calls, {:.1} us each",
                start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
            );
        }
        #[cfg(feature = "etcd")]
        ["etcd-registry", etcd, prefix, ttl] => {
            use oxrmi_registry::etcd::{EtcdConfig, EtcdStore};
            let mut config = EtcdConfig::from_url(etcd).map_err(anyhow::Error::msg)?;
            config.prefix = prefix.to_string();
            config.lease_ttl = std::time::Duration::from_secs(ttl.parse()?);
            let store = EtcdStore::connect(config).await?;
            if !store.ready(std::time::Duration::from_secs(20)).await {
                bail!("the etcd store did not become healthy");
            }
            let rt = oxrmi::Runtime::builder()
                .listen("tcp://127.0.0.1:0")
                .registry_store(std::sync::Arc::new(store))
                .start()
                .await?;
            println!("listening on {}", rt.endpoints()[0]);
            wait_for_stdin_eof().await;
            rt.shutdown();
        }
        other => bail!("unknown arguments {other:?}"),
    }
    Ok(())
}
