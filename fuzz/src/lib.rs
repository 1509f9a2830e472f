//! What every fuzz target shares: the memory cap, a reader of the fuzz input as a script,
//! and the check that inputs leave no fd behind.
//!
//! A target turns its input into what a hostile or broken peer could send (bytes on a
//! socket, fds beside them, words in shared memory), feeds it to the decoder, and checks
//! that the outcome is a value or a typed error: a panic, an abort, a hang (libFuzzer's
//! `-timeout`), more memory than [`MEMORY_CAP`] held at once, or fds that pile up is a
//! crash that libFuzzer saves as an input to replay.

use std::alloc::System;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, OnceLock, PoisonError};

use cap::Cap;

/// The most memory the Rust code of a target may hold at once. An input is at most a few
/// KiB: a decoder that believes a length prefix and reserves gigabytes fails here (the
/// allocation returns null, Rust aborts, libFuzzer reports the crash), even when the pages
/// are never touched (which `-rss_limit_mb` alone would miss).
pub const MEMORY_CAP: usize = 256 << 20;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, MEMORY_CAP);

/// The bytes of a fuzz input read front to back; past the end everything reads as zero,
/// so that every input is a valid script.
#[derive(Debug)]
pub struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    /// Reads `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Takes the next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// Takes the next little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Takes the next little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// Takes the next little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// Takes up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }

    /// Takes a length byte, then that many bytes (fewer at the end).
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = self.byte() as usize;
        self.take(n)
    }

    /// Takes the rest.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

/// Kinds of fd a peer can put beside its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// A memfd holding [`MEMFD_BYTES`] bytes.
    Memfd,
    /// A memfd whose size says a MiB more than its pages hold (a sparse file: a lying
    /// body).
    SparseMemfd,
    /// The read end of a pipe.
    Pipe,
    /// One end of a stream socketpair.
    Socket,
    /// A memfd of [`MEMFD_BYTES`] bytes whose size is sealed (what a segment travels as).
    SealedMemfd,
    /// A size-sealed memfd of 64 KiB (the size of a chunk of mproc's arena).
    SealedChunk,
    /// One end of a `SOCK_SEQPACKET` pair (what a queue's side socket is).
    Seqpacket,
    /// `/dev/null`: a character device.
    DevNull,
}

/// The bytes a memfd of kind [`FdKind::Memfd`] or [`FdKind::SealedMemfd`] holds (all
/// 0x5a).
pub const MEMFD_BYTES: usize = 4096;

impl FdKind {
    /// The kind a script's low three bits name.
    pub fn from_bits(bits: u8) -> Self {
        [
            FdKind::Memfd,
            FdKind::SparseMemfd,
            FdKind::Pipe,
            FdKind::Socket,
            FdKind::SealedMemfd,
            FdKind::SealedChunk,
            FdKind::Seqpacket,
            FdKind::DevNull,
        ][usize::from(bits & 7)]
    }
}

/// Returns `n` new fds of `kind` (duplicates of one made per process: making a memfd
/// for every input would cost most of the run).
///
/// # Panics
///
/// When the OS refuses (out of fds: a leak somewhere).
pub fn make_fds(kind: FdKind, n: usize) -> Vec<OwnedFd> {
    static POOL: OnceLock<[OwnedFd; 8]> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let memfd = |len: usize, extra: u64, sealed: bool| {
            let fd = mproc_sys::memfd_create("mproc-fuzz").expect("memfd");
            let file = std::fs::File::from(fd);
            use std::io::Write;
            (&file)
                .write_all(&vec![0x5a; len])
                .expect("writing a memfd");
            file.set_len(len as u64 + extra).expect("sizing a memfd");
            let fd = OwnedFd::from(file);
            if sealed {
                use std::os::fd::AsFd;
                mproc_sys::seal_size(fd.as_fd()).expect("sealing a memfd");
            }
            fd
        };
        [
            memfd(MEMFD_BYTES, 0, false),
            memfd(MEMFD_BYTES, 1 << 20, false),
            mproc_sys::pipe().expect("pipe").0,
            mproc_sys::socketpair().expect("socketpair").0,
            memfd(MEMFD_BYTES, 0, true),
            memfd(64 << 10, 0, true),
            mproc_sys::seqpacket_pair().expect("seqpacket pair").0,
            OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null")),
        ]
    });
    let fd = &pool[kind as usize];
    (0..n)
        .map(|_| fd.try_clone().expect("duplicating an fd"))
        .collect()
}

/// The most pieces [`stream_from`] sends (the last takes the rest of the script): each is
/// a `sendmsg`, and the kernel's work, not the reader's, would otherwise take most of the
/// run.
pub const PIECES: usize = 12;

/// Plays a peer on a stream socket: sends the rest of `script` as pieces (a control byte
/// saying how many fds go beside the piece, and of what kind, then a length-prefixed
/// chunk), then closes its end. Returns the other end. A peer whose socket is full stops
/// sending there.
///
/// # Panics
///
/// When the OS refuses a socketpair.
pub fn stream_from(script: &mut Script<'_>) -> OwnedFd {
    use std::os::fd::{AsFd, BorrowedFd};
    let (ours, theirs) = mproc_sys::socketpair().expect("socketpair");
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
        let piece = [std::io::IoSlice::new(bytes)];
        match mproc_sys::send_vectored_with_fds(theirs.as_fd(), &piece, &fds, true) {
            Ok(n) if n == bytes.len() => {}
            _ => break,
        }
    }
    ours
}

/// Checks, every few inputs, that the open fds do not pile up: a decoder that leaks an fd
/// per input would otherwise fail much later with "too many open files", far from the
/// input that leaked. Call it at the end of every input.
///
/// # Panics
///
/// When the open fds grew by more than [`FD_SLACK`] since the first input.
pub fn check_fds() {
    static WATCH: Mutex<(u64, Option<usize>)> = Mutex::new((0, None));
    let mut watch = WATCH.lock().unwrap_or_else(PoisonError::into_inner);
    let (inputs, baseline) = &mut *watch;
    *inputs += 1;
    if *inputs % 256 != 1 {
        return;
    }
    let open = mproc_sys::open_fd_count().expect("counting open fds");
    match *baseline {
        None => *baseline = Some(open),
        Some(base) => assert!(
            open <= base + FD_SLACK,
            "fds leak: {open} open after {inputs} inputs, {base} after the first"
        ),
    }
}

/// Open fds over the count after the first input that mean a leak. Above zero: lazily
/// opened process-wide things (the segment tracker's socket, say) are not leaks.
pub const FD_SLACK: usize = 32;
