//! `Listener::accept_async`: accepting and authenticating peers on tokio's reactor
//! (feature `tokio`).

use std::future::poll_fn;
use std::task::Poll;
use std::time::Instant;

use super::Listener;
use crate::connection::Connection;
use crate::error::{Error, ErrorKind, Result};

impl Listener {
    /// Waits for the next authenticated peer without blocking the thread, and returns its
    /// connection (Python's `accept()`; [`Connection::into_async`] makes it async too).
    ///
    /// Each round runs the listener's non-blocking steps once (accept what is in the
    /// backlog, advance the handshakes that have something to read), then waits on tokio's
    /// reactor until the listening socket or one of the handshakes in progress is
    /// readable. Cancel-safe: dropped midway, handshakes in progress are kept for the next
    /// call, and a peer is handed out only by the call that returns it. A handshake whose
    /// deadline passed is dropped in the next round (no timer wakes a waiting call for it).
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept); [`ErrorKind::Io`] also when no tokio runtime is running
    /// here.
    ///
    /// ```
    /// use mproc_pipe::{Client, Listener};
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let mut listener = Listener::bind("tcp://127.0.0.1:0".parse()?, b"secret")?;
    /// let address = listener.address().clone();
    /// let client = std::thread::spawn(move || {
    ///     let mut conn = Client::connect::<u32, u32>(&address, b"secret")?;
    ///     conn.send(&41)?;
    ///     conn.recv()
    /// });
    /// let mut conn = listener.accept_async::<u32, u32>().await?.into_async()?;
    /// let n = conn.recv_async().await?;
    /// conn.send_async(&(n + 1)).await?;
    /// assert_eq!(client.join().unwrap()?, 42);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub async fn accept_async<S, R>(&mut self) -> Result<Connection<S, R>> {
        loop {
            match self.accept_until(Some(Instant::now())) {
                Err(e) if e.kind() == ErrorKind::Timeout => {}
                done => return done,
            }
            // The set of sockets changes between rounds (handshakes start and end), so each
            // round registers what it waits on; a socket readable when registered wakes the
            // wait at once, so nothing that arrived since the round's own poll is missed.
            let watched = self
                .all_fds()
                .into_iter()
                .map(mproc_sys::register_async)
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| Error::io("registering the listener with tokio's reactor", e))?;
            poll_fn(|cx| {
                for fd in &watched {
                    if fd.poll_read_ready(cx).is_ready() {
                        return Poll::Ready(());
                    }
                }
                Poll::Pending
            })
            .await;
        }
    }
}
