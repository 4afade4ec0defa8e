//! Calling oxrmi objects from another language: the gRPC bridge, and a Python client that knows
//! nothing but the address.
//!
//! The server exports a `Library` (a struct argument, an enum error, and a factory returning
//! `Remote<dyn Card>`) in an embedded registry and serves every interface as gRPC on
//! 127.0.0.1. `grpc_interop/client.py` learns the services by server reflection and calls them
//! with plain dicts: no `.proto`, no generated code.
//!
//! - `cargo run --example grpc_interop`: the server, then the Python client against it (Python
//!   from `OXRMI_PYTHON`, else `python3`, with grpcio, grpcio-reflection and grpcio-status; if
//!   they are missing it says how to install them and exits 0 without running the client).
//! - `cargo run --example grpc_interop -- --serve`: only the server. Prints `127.0.0.1:PORT`
//!   and serves until Ctrl-C or SIGTERM; point any gRPC client at it, e.g.
//!   `python3 examples/grpc_interop/client.py 127.0.0.1:PORT` or
//!   `grpcurl -plaintext 127.0.0.1:PORT list`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use oxrmi::{Remote, RemoteError, Runtime, remote};
use serde::{Deserialize, Serialize};
use tokio::process::Command;

/// A book: a struct, so a protobuf message with these fields.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Book {
    /// Its title.
    pub title: String,
    /// Its author.
    pub author: String,
    /// The year it came out.
    pub year: u32,
}

/// An application error: a gRPC client finds it in the status details (`…AppError`).
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
pub enum LibraryError {
    /// No book has this title.
    #[error("no book titled {title:?}")]
    NotFound {
        /// The title asked for.
        title: String,
    },
    /// Someone borrowed it already.
    #[error("the book is lent")]
    AlreadyLent,
    /// The call itself failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// A library: the gRPC service `demo.library.Library`.
#[remote(name = "demo.Library")]
pub trait Library: Send + Sync {
    /// Adds a book; returns how many the library has.
    async fn add(&self, book: Book) -> Result<u32, RemoteError>;
    /// The book titled `title`.
    async fn find(&self, title: String) -> Result<Book, LibraryError>;
    /// A new library card for `reader`, returned by reference (an `ObjectRef` over gRPC).
    async fn open_card(&self, reader: String) -> Result<Remote<dyn Card>, RemoteError>;
}

/// A reader's card: the gRPC service `demo.card.Card`, called on one card by its id.
#[remote(name = "demo.Card")]
pub trait Card: Send + Sync {
    /// Borrows the book titled `title`.
    async fn borrow(&self, title: String) -> Result<Book, LibraryError>;
    /// The titles this card holds.
    async fn loans(&self) -> Result<Vec<String>, RemoteError>;
}

/// The books, and who borrowed which.
#[derive(Default)]
struct Shelf {
    books: BTreeMap<String, Book>,
    lent: BTreeMap<String, String>,
}

type SharedShelf = Arc<Mutex<Shelf>>;

fn lock(shelf: &SharedShelf) -> std::sync::MutexGuard<'_, Shelf> {
    shelf.lock().unwrap_or_else(PoisonError::into_inner)
}

struct MyLibrary(SharedShelf);

#[remote]
impl Library for MyLibrary {
    async fn add(&self, book: Book) -> Result<u32, RemoteError> {
        println!("[server] add {book:?}");
        let mut shelf = lock(&self.0);
        shelf.books.insert(book.title.clone(), book);
        Ok(shelf.books.len() as u32)
    }

    async fn find(&self, title: String) -> Result<Book, LibraryError> {
        let shelf = lock(&self.0);
        shelf
            .books
            .get(&title)
            .cloned()
            .ok_or(LibraryError::NotFound { title })
    }

    async fn open_card(&self, reader: String) -> Result<Remote<dyn Card>, RemoteError> {
        println!("[server] a card for {reader}");
        Ok(Remote::new(MyCard {
            reader,
            shelf: self.0.clone(),
        }))
    }
}

struct MyCard {
    reader: String,
    shelf: SharedShelf,
}

#[remote]
impl Card for MyCard {
    async fn borrow(&self, title: String) -> Result<Book, LibraryError> {
        let mut shelf = lock(&self.shelf);
        let book = shelf.books.get(&title).cloned();
        let book = book.ok_or_else(|| LibraryError::NotFound {
            title: title.clone(),
        })?;
        if shelf.lent.contains_key(&title) {
            return Err(LibraryError::AlreadyLent);
        }
        shelf.lent.insert(title, self.reader.clone());
        Ok(book)
    }

    async fn loans(&self) -> Result<Vec<String>, RemoteError> {
        let shelf = lock(&self.shelf);
        let mine = shelf.lent.iter().filter(|(_, r)| **r == self.reader);
        Ok(mine.map(|(title, _)| title.clone()).collect())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let serve_only = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--serve") => true,
        Some(other) => bail!("unknown argument `{other}` (run with `--serve` or nothing)"),
    };

    // Only a gRPC endpoint: oxrmi clients would need a `tcp://` (or other) one as well.
    let rt = Runtime::builder()
        .listen("grpc://127.0.0.1:0")
        .registry()
        .start()
        .await?;
    let shelf = SharedShelf::default();
    rt.bind(
        "library",
        Remote::<dyn Library>::new(MyLibrary(shelf.clone())),
    )
    .await?;
    let address = rt.grpc_address().context("no gRPC address")?;

    if serve_only {
        println!("{address}");
        until_stopped().await?;
    } else {
        println!("[server] gRPC on {address}; `library` bound in the registry");
        if run_python_client(&address.to_string()).await? {
            // The Python client's calls changed this process's objects.
            let lent = lock(&shelf).lent.clone();
            println!("[server] lent now: {lent:?}");
            ensure!(
                lent.get("Dune").map(String::as_str) == Some("ada"),
                "the Python client's loan did not reach the server"
            );
        }
    }
    rt.shutdown();
    Ok(())
}

/// Until Ctrl-C or SIGTERM.
async fn until_stopped() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Runs `grpc_interop/client.py ADDRESS`; false if Python with grpcio is not there.
async fn run_python_client(address: &str) -> anyhow::Result<bool> {
    let python = std::env::var("OXRMI_PYTHON").unwrap_or_else(|_| "python3".into());
    let usable = Command::new(&python)
        .args(["-c", "import grpc, grpc_reflection, grpc_status"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !usable {
        println!(
            "\n*** SKIPPED the Python client: `{python}` cannot import grpc, grpc_reflection and \
             grpc_status.\n*** To run it:\n***   python3 -m venv /tmp/grpc-venv\n***   \
             /tmp/grpc-venv/bin/pip install grpcio grpcio-reflection grpcio-status\n***   \
             OXRMI_PYTHON=/tmp/grpc-venv/bin/python cargo run --example grpc_interop\n"
        );
        return Ok(false);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/grpc_interop/client.py");
    println!("[server] running {python} {script} {address}");
    let run = Command::new(&python)
        .arg(script)
        .arg(address)
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .context("the Python client did not finish within 60 s")??;
    ensure!(status.success(), "the Python client failed: {status}");
    Ok(true)
}
