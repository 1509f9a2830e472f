//! The segment tracker's requests: datagrams on its socket (`+name` registers a segment
//! name to unlink, `-name` forgets it), any bytes, with any fds beside them.
//!
//! The tracker's receive loop runs in this process (it unlinks nothing here) and its table
//! must hold exactly the names a set would: every valid name registered and not forgotten,
//! never a name with `/` or NUL, `.` or `..`; every fd that came with a request closed.
//!
//! Script: per datagram (at most 32), a control byte (fds beside it, and their kind), an operation
//! byte, and a length-prefixed name. (An empty datagram is not sent: on a
//! `SOCK_SEQPACKET` socket it reads as the end of the stream, and mproc never sends one.)

#![no_main]

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd};

use libfuzzer_sys::fuzz_target;
use mproc_fuzz::{FdKind, Script, check_fds, make_fds};

/// The most requests of one input: each costs a few system calls, and the kernel's work,
/// not the tracker's, would otherwise take most of the run (the table's growth past 64
/// names is a unit test's job).
const REQUESTS: usize = 32;

/// The longest datagram the tracker reads whole: an operation and a 255-byte name.
const ENTRY: usize = 256;

fuzz_target!(|data: &[u8]| {
    run(data);
    check_fds();
});

fn run(data: &[u8]) {
    let mut script = Script::new(data);
    let (ours, theirs) = mproc_sys::seqpacket_pair().expect("seqpacket pair");
    let mut model = BTreeSet::new();
    for _ in 0..REQUESTS {
        if script.is_empty() {
            break;
        }
        let control = script.byte();
        let op = match script.byte() % 3 {
            0 => b'+',
            1 => b'-',
            _ => script.byte(),
        };
        let name = script.chunk();
        let datagram = [&[op][..], name].concat();
        let fds = make_fds(FdKind::from_bits(control >> 2), usize::from(control & 3));
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        let piece = [std::io::IoSlice::new(&datagram)];
        if mproc_sys::send_vectored_with_fds(theirs.as_fd(), &piece, &fds, true).is_err() {
            break; // the socket is full: the requester stops there
        }
        apply(&mut model, &datagram);
    }
    drop(theirs);
    let names: BTreeSet<Vec<u8>> = mproc_sys::fuzz_tracker_requests(ours.as_fd())
        .into_iter()
        .collect();
    assert_eq!(names, model);
}

/// What a request does to the set of names.
fn apply(model: &mut BTreeSet<Vec<u8>>, datagram: &[u8]) {
    if !(2..=ENTRY).contains(&datagram.len()) {
        return;
    }
    let name = &datagram[1..];
    if name.contains(&b'/') || name.contains(&0) || name == b"." || name == b".." {
        return;
    }
    match datagram[0] {
        b'+' => {
            model.insert(name.to_vec());
        }
        b'-' => {
            model.remove(name);
        }
        _ => {}
    }
}
