//! The side socket: the file descriptors that travel beside a record, as one datagram
//! tagged with the record's side sequence.
//!
//! A SOCK_SEQPACKET pair shared by every holder. A record that carries file descriptors (a
//! large message's sealed memfd, or handles inside the value) sends them as one datagram
//! *before* publishing the record, both under the producers' lock; a consumer takes the
//! datagram under the consumers' lock. Both sides thus see the same order.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::ring::layout::seq_before;
use crate::ring::wait::nap_until;
use crate::ring::{Refused, corrupt};

/// Both ends of the side socket (every holder has both).
pub(crate) struct Side {
    pub(crate) tx: OwnedFd,
    pub(crate) rx: OwnedFd,
}

impl Side {
    /// Sends a record's side datagram (its sequence, then its fds), waiting for room in
    /// the socket until `deadline`. The wait is in naps, as the ring's are: when one ends
    /// with no room and `others_gone()` says nobody else is left to take datagrams, the
    /// send is refused with `Disconnected` (the socket would never drain).
    pub(crate) fn send(
        &self,
        seq: u32,
        fds: &[OwnedFd],
        deadline: Option<Instant>,
        others_gone: impl Fn() -> bool,
    ) -> std::result::Result<(), Refused> {
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let tag = seq.to_le_bytes();
        loop {
            match mproc_sys::send_vectored_with_fds(
                self.tx.as_fd(),
                &[std::io::IoSlice::new(&tag)],
                &borrowed,
                true,
            ) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let (until, last) = nap_until(deadline);
                    match mproc_sys::wait_writable(self.tx.as_fd(), until) {
                        Ok(true) => continue,
                        Ok(false) if last => return Err(Refused::Timeout),
                        Ok(false) if others_gone() => return Err(Refused::Disconnected),
                        Ok(false) => continue,
                        Err(e) => {
                            return Err(Refused::Failed(Error::io(
                                "waiting on the side socket",
                                e,
                            )));
                        }
                    }
                }
                Err(e) => {
                    return Err(Refused::Failed(Error::io(
                        "sending a message's file descriptors",
                        e,
                    )));
                }
            }
        }
    }

    /// Receives the side datagram tagged `seq`, dropping older ones (left by producers
    /// that died before publishing). `None` when it is gone (taken by a consumer that
    /// died before freeing its record).
    pub(crate) fn take(&self, seq: u32) -> Result<Option<Vec<OwnedFd>>> {
        loop {
            let mut tag = [0u8; 4];
            match mproc_sys::peek(self.rx.as_fd(), &mut tag) {
                Ok(4) => {}
                Ok(_) => return Err(corrupt("a side datagram without its tag")),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(Error::io("reading the side socket", e)),
            }
            let found = u32::from_le_bytes(tag);
            if found != seq && !seq_before(found, seq) {
                return Ok(None);
            }
            let mut fds = Vec::new();
            mproc_sys::recv_with_fds(self.rx.as_fd(), &mut tag, &mut fds, true)
                .map_err(|e| Error::io("receiving a message's file descriptors", e))?;
            if found == seq {
                return Ok(Some(fds));
            }
        }
    }
}
