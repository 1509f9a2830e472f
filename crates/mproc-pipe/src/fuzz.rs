//! Entry points for the fuzz targets (built with `cfg(fuzzing)` only): the client's side of
//! the handshake against a server that sent any bytes.

use std::io::Write as _;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Runs a client's side of the handshake, with key `key`, against a server that sent
/// `bytes` (as much of them as the socket takes) and then stopped writing.
///
/// # Errors
///
/// What [`Client::connect`](crate::Client::connect) reports for that server: such a
/// server can never pass, as it cannot know the key.
pub fn client_handshake(bytes: &[u8], key: &[u8]) -> Result<()> {
    let (ours, theirs) =
        mproc_sys::socketpair().map_err(|e| Error::io("making a socketpair", e))?;
    let mut server = UnixStream::from(theirs);
    server
        .set_nonblocking(true)
        .map_err(|e| Error::io("configuring a socket", e))?;
    let _ = server.write(bytes); // a full socket keeps the rest
    server
        .shutdown(Shutdown::Write)
        .map_err(|e| Error::io("closing a socket", e))?;
    // The server's end stays open for what the client writes; the deadline is never
    // reached, as everything the server sent is there already.
    let deadline = Instant::now() + Duration::from_secs(60);
    crate::auth::client_handshake(ours.as_fd(), key, deadline).map(drop)
}
