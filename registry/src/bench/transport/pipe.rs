//! The raw twin over a child's pipes: the client starts the raw echo server as its child and
//! talks to it over the child's stdin and stdout, as the runtime's pipe transport does.

use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A child process and its two pipes. The child ends when its stdin closes (on drop).
pub(crate) struct ChildPipes {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
}

impl ChildPipes {
    /// Starts `command` with its stdin and stdout piped to us.
    pub(crate) fn spawn(mut command: Command) -> io::Result<Self> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(io::Error::other("the child's pipes were not created"));
        };
        Ok(ChildPipes {
            child,
            stdin: Some(stdin),
            stdout,
        })
    }
}

impl Read for ChildPipes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stdout.read(buf)
    }
}

impl Write for ChildPipes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.stdin {
            Some(s) => s.write(buf),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ChildPipes {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The raw echo server's side: echoes stdin to stdout until stdin ends.
pub(crate) fn echo_stdio() -> io::Result<()> {
    let mut input = std::fs::File::from(rustix::io::dup(rustix::stdio::stdin())?);
    let mut output = std::fs::File::from(rustix::io::dup(rustix::stdio::stdout())?);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => output.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
