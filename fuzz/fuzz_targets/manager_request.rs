//! The manager's requests: a connection's bytes (frames of postcard `Request`s, or
//! anything else) read with the server's frame limit, decoded, and served by a server.
//!
//! Script: a byte choosing the frame limit, then the stream. Decoding must stop at the
//! first bad frame or undecodable request with a typed error; every request decoded is
//! served (creating, publishing, changing objects, a registered type's calls) with a reply
//! and no panic, and no memory beyond the cap however large a count or length it names.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mproc_fuzz::{Script, check_fds};

fuzz_target!(|data: &[u8]| {
    let mut script = Script::new(data);
    let max_message = [64, 4096, 1 << 20, 4 << 30][usize::from(script.byte() & 3)];
    let stream = script.rest();
    let replies = mproc_manager::fuzz::serve_bytes(stream, max_message);
    // Each request is a frame of at least its 16-byte header.
    assert!(replies.len() <= stream.len() / 16);
    check_fds();
});
