//! The queue's record reader over a ring whose header and bytes another process
//! scribbled on: head and tail, counters, flags, the holders' table, record headers and
//! payloads, a side datagram taken away.
//!
//! Every get must give a message or a typed error, the gets must come to an end (the queue
//! empty or closed), and the queue must stay usable or say why not: no panic, no hang, no
//! allocation beyond the cap whatever length a record header claims.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mproc_fuzz::check_fds;

fuzz_target!(|data: &[u8]| {
    mproc_queue::fuzz::scribbled_ring(data).expect("making a queue");
    check_fds();
});
