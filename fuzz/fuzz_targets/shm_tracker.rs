//! The segment tracker's requests: datagrams on its socket (`+name` registers a segment
//! name to unlink, `-name` forgets it; `=` and `~` do the same at a file, a device and
//! inode before the name), any bytes, with any fds beside them.
//!
//! The tracker's receive loop runs in this process (it unlinks nothing here) and its table
//! must hold exactly the registrations a set of (name, file) would: every valid name
//! registered (at its file, or none) and not forgotten (at that file, or at every file by
//! `-name`), never a name with `/` or NUL, `.` or `..`; every fd that came with a request
//! closed.
//!
//! Script: per datagram (at most 32), a control byte (fds beside it, and their kind), an
//! operation byte (its low bits choose `+`, `-`, `=`, `~` or a raw byte, its high bit a
//! second name chunk, for names past 255 bytes), for `=` and `~` a file byte (a small
//! device and inode, or, with its high bit, two u64s after it), and a length-prefixed name.
//! (An empty datagram is not sent: on a `SOCK_SEQPACKET` socket it reads as the end of the
//! stream, and mproc never sends one.)

#![no_main]

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd};

use libfuzzer_sys::fuzz_target;
use mproc_fuzz::{FdKind, Script, check_fds, make_fds};

/// The most requests of one input: each costs a few system calls, and the kernel's work,
/// not the tracker's, would otherwise take most of the run (the table's growth past 64
/// names is a unit test's job).
const REQUESTS: usize = 32;

/// The longest name the tracker takes.
const MAX_NAME: usize = 255;

/// A registration: a name, and the file (device, inode) it must still be, if any.
type Registration = (Vec<u8>, Option<(u64, u64)>);

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
        let choice = script.byte();
        let mut datagram = Vec::new();
        match choice % 5 {
            0 => datagram.push(b'+'),
            1 => datagram.push(b'-'),
            op @ (2 | 3) => {
                datagram.push(if op == 2 { b'=' } else { b'~' });
                let file = script.byte();
                let (dev, ino) = if file & 0x80 != 0 {
                    (script.u64(), script.u64())
                } else {
                    (u64::from(file >> 4 & 7), u64::from(file & 15))
                };
                datagram.extend_from_slice(&dev.to_le_bytes());
                datagram.extend_from_slice(&ino.to_le_bytes());
            }
            _ => datagram.push(script.byte()),
        }
        datagram.extend_from_slice(script.chunk());
        if choice & 0x80 != 0 {
            datagram.extend_from_slice(script.chunk());
        }
        let fds = make_fds(FdKind::from_bits(control >> 2), usize::from(control & 3));
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        let piece = [std::io::IoSlice::new(&datagram)];
        if mproc_sys::send_vectored_with_fds(theirs.as_fd(), &piece, &fds, true).is_err() {
            break; // the socket is full: the requester stops there
        }
        apply(&mut model, &datagram);
    }
    drop(theirs);
    let registered: BTreeSet<Registration> = mproc_sys::fuzz_tracker_requests(ours.as_fd())
        .into_iter()
        .collect();
    assert_eq!(registered, model);
}

/// What a request does to the set of registrations.
fn apply(model: &mut BTreeSet<Registration>, datagram: &[u8]) {
    let Some((&op, rest)) = datagram.split_first() else {
        return;
    };
    let (register, file, name) = match op {
        b'+' | b'-' => (op == b'+', None, rest),
        b'=' | b'~' if rest.len() >= 16 => {
            let dev = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
            let ino = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
            (op == b'=', Some((dev, ino)), &rest[16..])
        }
        _ => return,
    };
    if name.is_empty()
        || name.len() > MAX_NAME
        || name.contains(&b'/')
        || name.contains(&0)
        || name == b"."
        || name == b".."
    {
        return;
    }
    match (register, file) {
        (true, _) => {
            model.insert((name.to_vec(), file));
        }
        (false, None) => model.retain(|(n, _)| n != name),
        (false, Some(_)) => {
            model.remove(&(name.to_vec(), file));
        }
    }
}
