//! The wire's `FrameReader` over a socket whose peer sends any bytes, with any fds beside
//! them, in any pieces, then closes.
//!
//! Script: a byte of limits, then what the peer sends (see `mproc_fuzz::stream_from`:
//! pieces of bytes with fds of several kinds beside them). Every read must end in a
//! message or a typed error; once the peer is gone and everything is sent, a read can
//! never time out, and the reader must reach the end (`Disconnected`/`Truncated`) or stay
//! poisoned (`Corrupt`) in a bounded number of reads.

#![no_main]

use std::os::fd::AsFd;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use mproc_fuzz::{Script, check_fds, stream_from};
use mproc_wire::{ErrorKind, FrameReader, Limits};

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
    let ours = stream_from(&mut script);

    let mut reader = FrameReader::new();
    let mut buf = [0u8; 64];
    // Each read consumes at least one byte or ends the stream: the input bounds the reads.
    for _ in 0..=data.len() + 2 {
        let deadline = Some(Instant::now());
        let got = if into_buffer {
            reader
                .read_into(ours.as_fd(), &limits, &mut buf, deadline)
                .map(|r| r.unwrap_or_else(|m| m.bytes().len()))
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
