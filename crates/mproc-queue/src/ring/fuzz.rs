//! The entry point of the fuzz target (built with `cfg(fuzzing)` only): a queue whose
//! header and ring another process scribbled on, read until it has nothing more to give.

use std::cell::RefCell;
use std::os::fd::AsFd;
use std::time::Instant;

use super::layout::HEADER_LEN;
use super::{MIN_BYTES, Payload, REC_HEADER, Refused, Ring};
use crate::error::{ErrorKind, Result};

/// What the reads of a scribbled queue gave.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages taken out whole.
    pub messages: usize,
    /// Reads that reported the queue's memory corrupt.
    pub corrupt: usize,
    /// Reads that failed in another way (a large message's memfd gone, say).
    pub failed: usize,
}

/// Takes bytes of a script front to back (zeros past its end).
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> usize {
        usize::from(u16::from_le_bytes([self.byte(), self.byte()]))
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(std::array::from_fn(|_| self.byte()))
    }
}

/// The most gets after the scribbling: a 4 KiB ring holds at most 512 records.
const MAX_GETS: usize = 1024;

/// Takes a small queue as it was made, puts a few messages in it (inline, with an fd,
/// large in a memfd), applies `script`'s scribbles (words of the header, bytes of the
/// ring, a side datagram taken away), then gets until the queue is empty or closed, and
/// puts and gets once more. Never waits: every deadline is now.
///
/// Script: a byte of settings (joinable, the bound on messages), a byte counting the puts
/// and, per put, a byte of its kind and length; then scribbles, each a tag byte and its
/// operands, to the end.
///
/// # Errors
///
/// When the queue cannot be made (out of fds or memory).
///
/// # Panics
///
/// When the gets do not end, or a get fails with an error that is not a typed corrupt or
/// I/O error: that is what the target looks for.
pub fn scribbled_ring(script: &[u8]) -> Result<Outcome> {
    let mut script = Script(script);
    let settings = usize::from(script.byte() & 7);
    PRISTINE.with(|rings| {
        let mut rings = rings.borrow_mut();
        if rings[settings].is_none() {
            rings[settings] = Some(Pristine::new(settings)?);
        }
        let pristine = rings[settings].as_mut().expect("made above");
        pristine.restore()?;
        let outcome = run(&pristine.ring, &mut script);
        // The handle's reused segments and the mappings of those it received are caches
        // bounded per handle (4 + 8): dropped after each input, so the 8 queues kept
        // between inputs do not hold up to 96 fds the fd-leak check would count.
        pristine.forget_segments();
        outcome
    })
}

/// A queue as `Ring::new` made it, and a copy of its shared memory then: making a queue
/// for every input (its memory, sockets and pipe) would cost most of the run, so each
/// input starts from the copy instead.
struct Pristine {
    ring: Ring,
    header: Vec<u8>,
}

thread_local! {
    /// One queue per setting (joinable or not, four bounds on messages).
    static PRISTINE: RefCell<[Option<Pristine>; 8]> = RefCell::new(Default::default());
}

impl Pristine {
    fn new(settings: usize) -> Result<Pristine> {
        let max_messages = [1, 3, 64, usize::MAX][settings >> 1];
        let ring = Ring::new(MIN_BYTES, max_messages, settings & 1 != 0, false, true)?;
        let mut header = vec![0u8; HEADER_LEN];
        ring.core.shared.header_block.copy_to(0, &mut header)?;
        Ok(Pristine { ring, header })
    }

    /// Puts the queue back as it was made: its header and ring bytes, no side datagram
    /// waiting, no cache in this process.
    fn restore(&mut self) -> Result<()> {
        let shm = &self.ring.core.shared;
        loop {
            let mut fds = Vec::new();
            let side = self.ring.side.rx.as_fd();
            if mproc_sys::recv_with_fds(side, &mut [0u8; 4], &mut fds, true).is_err() {
                break;
            }
        }
        shm.header_block.copy_from(0, &self.header)?;
        shm.ring.fill(0, shm.ring.len(), 0)?;
        self.ring.core.forget_caches();
        self.forget_segments();
        Ok(())
    }

    /// Drops the handle's reused segments and its mappings of received ones (a made queue
    /// has none).
    fn forget_segments(&mut self) {
        self.ring.spills = super::spill::Spills::default();
        self.ring.mapped = super::spill::Mapped::default();
    }
}

/// Puts, scribbles and gets on `ring` as `script` says.
fn run(ring: &Ring, script: &mut Script<'_>) -> Result<Outcome> {
    let now = || Some(Instant::now());
    for _ in 0..script.byte() % 8 {
        let kind = script.byte();
        let len = match kind & 3 {
            3 => ring.inline_max() + 1 + usize::from(kind), // a large message: a memfd
            _ => usize::from(kind >> 2),
        };
        let mut buf = vec![kind; REC_HEADER + len];
        let fds = match kind & 3 {
            2 => vec![
                mproc_sys::socketpair()
                    .map_err(|e| crate::error::Error::io("making a socketpair", e))?
                    .0,
            ],
            _ => Vec::new(),
        };
        let _ = ring.put(&mut buf, fds, now());
    }
    scribble(ring, script)?;

    let mut outcome = Outcome::default();
    let mut buf = Vec::new();
    let mut ended = false;
    for _ in 0..MAX_GETS {
        // As a queue's get takes it (a large payload placed aligned in the buffer).
        match ring.get_at(&mut buf, now(), true) {
            Ok((Payload::Inline | Payload::WithFds(_), start)) => {
                assert!(start < 16 && start <= buf.len());
                outcome.messages += 1;
            }
            Ok((Payload::Sealed(_) | Payload::Segment(_), _)) => outcome.messages += 1,
            Ok((Payload::Bad(_), _)) => outcome.failed += 1,
            Err(Refused::Timeout | Refused::Closed | Refused::Disconnected) => {
                ended = true;
                break;
            }
            Err(Refused::Failed(e)) => match e.kind() {
                ErrorKind::Corrupt => outcome.corrupt += 1,
                ErrorKind::Io => outcome.failed += 1,
                kind => panic!("a get of a scribbled queue failed with {kind:?}: {e}"),
            },
        }
    }
    assert!(ended, "{MAX_GETS} gets did not empty a queue of 4 KiB");
    // The queue goes on, or says why not.
    let mut buf = vec![7u8; REC_HEADER + 3];
    let _ = ring.put(&mut buf, Vec::new(), now());
    let _ = ring.get(&mut buf, now());
    let _ = (
        ring.len(),
        ring.is_full(),
        ring.is_closed(),
        ring.unfinished(),
    );
    let _ = ring.task_done();
    let _ = ring.join(now());
    Ok(outcome)
}

/// Applies the script's scribbles to the queue's shared memory.
fn scribble(ring: &Ring, script: &mut Script<'_>) -> Result<()> {
    let shm = &ring.core.shared;
    while !script.0.is_empty() {
        match script.byte() % 4 {
            0 => {
                let at = (script.u16() % HEADER_LEN) & !3;
                shm.header_block.write::<u32>(at, script.u64() as u32)?;
            }
            1 => {
                let at = (script.u16() % HEADER_LEN) & !7;
                shm.header_block.write::<u64>(at, script.u64())?;
            }
            2 => {
                let at = script.u16() % shm.ring.len();
                let n = usize::from(script.byte());
                let bytes: Vec<u8> = (0..n).map(|_| script.byte()).collect();
                let n = n.min(shm.ring.len() - at);
                shm.ring.write_at(at, &bytes[..n])?;
            }
            _ => {
                // A consumer took a side datagram and died.
                let mut fds = Vec::new();
                let _ =
                    mproc_sys::recv_with_fds(ring.side.rx.as_fd(), &mut [0u8; 4], &mut fds, true);
            }
        }
    }
    Ok(())
}
