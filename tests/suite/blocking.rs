//! Synchronous use from a plain thread, with no tokio set-up by the caller.

use oxrmi::{Remote, RemoteError};
use oxrmi_tests::{Counter, MathError};

use crate::harness::{Peer, Transport};

#[test]
fn blocking_calls_from_a_plain_thread() {
    // The server is started from a small runtime of the test's own; the client side below uses
    // nothing but oxrmi::blocking.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Peer::serve(Transport::Tcp));
    let url = server.url("counter");
    let result = std::thread::spawn(move || -> Result<(), RemoteError> {
        let counter: Remote<dyn Counter> = oxrmi::blocking::lookup(&url)?;
        assert_eq!(oxrmi::blocking::wait(counter.add(5))?, 5);
        assert_eq!(
            oxrmi::blocking::wait(counter.divide(0)),
            Err(MathError::DivideByZero)
        );
        let names: Vec<String> = oxrmi::blocking::list(&url)?
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert!(names.contains(&"counter".to_string()));
        Ok(())
    })
    .join()
    .unwrap();
    result.unwrap();
    drop(server);
}
