//! A child role ends with its parent: the parent holds the child's stdin open and closes it (by
//! exiting, crashing or on purpose) when the role is no longer wanted.

use std::io;

/// Calls `then` on a thread of its own once this process's stdin reaches its end.
pub(crate) fn on_stdin_closed(then: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            // Anything the parent writes is ignored; only the end matters. A read error means
            // the parent's end is gone as well.
            let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
            then();
        })?;
    Ok(())
}
