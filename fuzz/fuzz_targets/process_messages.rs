//! The messages between processes: a child's request as the child reads it, a child's
//! reply as its parent reads it (`Child::join`), a fork request as the fork server reads
//! it, the fork server's reply as the parent reads it. Each from a socket whose peer sent
//! any bytes, with any fds, and closed.
//!
//! Script: a byte choosing the reader, then what the peer sends (see
//! `mproc_fuzz::stream_from`). Each read must give a message or a typed error: no panic,
//! no wait (the peer is gone), no allocation beyond the cap. Nothing is forked or run.

#![no_main]

use std::os::fd::AsFd;

use libfuzzer_sys::fuzz_target;
use mproc_fuzz::{Script, check_fds, stream_from};
use mproc_process::fuzz::{Reader, read};

fuzz_target!(|data: &[u8]| {
    let mut script = Script::new(data);
    let reader = [
        Reader::ChildRequest,
        Reader::ChildReply,
        Reader::ForkRequest,
        Reader::ForkReply,
    ][usize::from(script.byte() & 3)];
    let sock = stream_from(&mut script);
    let _ = read(reader, sock.as_fd());
    drop(sock);
    check_fds();
});
