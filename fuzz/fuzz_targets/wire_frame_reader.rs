//! The wire's `FrameReader` over a socket whose peer sends any bytes, with any fds beside
//! them, in any pieces, then closes.
//!
//! Script: a byte of limits, then pieces: a control byte (fds beside the piece: how many
//! and what kind) and a length-prefixed chunk of stream bytes. Every read must end in a
//! message or a typed error; once the peer is gone and everything is sent, a read can
//! never time out, and the reader must reach the end (`Disconnected`/`Truncated`) or stay
//! poisoned (`Corrupt`) in a bounded number of reads. (A peer whose socket is full stops
//! sending there.)

#![no_main]

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use mproc_fuzz::{FdKind, Script, check_fds, make_fds};
use mproc_wire::{ErrorKind, FrameReader, Limits};

/// The most pieces a peer sends (the last takes the rest of the input): each is a
/// `sendmsg`, and the kernel's work, not the reader's, would otherwise take most of the run.
const PIECES: usize = 12;

fuzz_target!(|data: &[u8]| {
    run(data);
    check_fds();
});

fn run(data: &[u8]) {
    let mut script = Script::new(data);
    let choice = script.byte();
    let limits = Limits {
        max_message: [64, 4096, 1 << 20, 4 << 30][usize::from(choice & 3)],
        inline_max: [0, 16, 4096, 64 << 10][usize::from(choice >> 2 & 3)],
        max_fds: [0, 1, 4, 64][usize::from(choice >> 4 & 3)],
    };
    let into_buffer = choice & 0x40 != 0;
    let (ours, theirs) = mproc_sys::socketpair().expect("socketpair");
    // The peer: every piece, then gone.
    for piece in 0..PIECES {
        if script.is_empty() {
            break;
        }
        let control = script.byte();
        let chunk = if piece + 1 < PIECES {
            script.chunk()
        } else {
            script.rest()
        };
        let fds = make_fds(FdKind::from_bits(control >> 2), usize::from(control & 3));
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        // Fds need a byte to travel with on a stream socket.
        let bytes = if chunk.is_empty() && !fds.is_empty() {
            &[0u8][..]
        } else {
            chunk
        };
        if bytes.is_empty() {
            continue;
        }
        // Many small pieces with fds fill the socket's buffer: the peer stops there.
        let piece = [std::io::IoSlice::new(bytes)];
        match mproc_sys::send_vectored_with_fds(theirs.as_fd(), &piece, &fds, true) {
            Ok(n) if n == bytes.len() => {}
            _ => break,
        }
    }
    drop(theirs);

    let mut reader = FrameReader::new();
    let mut buf = [0u8; 64];
    // Each read consumes at least one byte or ends the stream: the input bounds the reads.
    for _ in 0..=data.len() + 2 {
        let deadline = Some(Instant::now());
        let got = if into_buffer {
            reader
                .read_into(ours.as_fd(), &limits, &mut buf, deadline)
                .map(|r| r.map_or_else(|m| m.bytes().len(), |n| n))
        } else {
            reader
                .read(ours.as_fd(), &limits, deadline)
                .map(|m| m.bytes().len())
        };
        match got {
            Ok(len) => assert!(len as u64 <= limits.max_message, "a message over the limit"),
            Err(e) => match e.kind() {
                ErrorKind::Disconnected | ErrorKind::Truncated => {
                    assert!(!reader.in_frame(), "a reader at the end is between frames");
                    return;
                }
                ErrorKind::Corrupt => {
                    // Poisoned for good, without touching the socket again.
                    let again = reader.read(ours.as_fd(), &limits, deadline);
                    assert_eq!(again.unwrap_err().kind(), ErrorKind::Corrupt);
                    return;
                }
                ErrorKind::TooLarge => {}
                kind => panic!("unexpected error {kind:?} from a closed peer: {e}"),
            },
        }
    }
    panic!("the reader did not reach the end of a closed stream");
}
