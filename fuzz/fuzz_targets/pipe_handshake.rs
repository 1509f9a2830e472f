//! The pipe's handshake, client side: a server (or something posing as one) sends any
//! bytes instead of its challenge and verdict.
//!
//! The input is what the server sends before it stops writing. The client must refuse it
//! with a typed error (it cannot know the key), never panic or wait past the end.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mproc_fuzz::check_fds;
use mproc_pipe::ErrorKind;

fuzz_target!(|data: &[u8]| {
    let err = mproc_pipe::fuzz::client_handshake(data, b"fuzz key")
        .expect_err("a server that does not know the key passed the handshake");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Authentication | ErrorKind::Disconnected
        ),
        "{:?}: {err}",
        err.kind()
    );
    check_fds();
});
