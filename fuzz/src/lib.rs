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
    /// One end of a socketpair.
    Socket,
}

/// The bytes an [`FdKind::Memfd`] holds (all 0x5a).
pub const MEMFD_BYTES: usize = 4096;

impl FdKind {
    /// The kind a script's low two bits name.
    pub fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => FdKind::Memfd,
            1 => FdKind::SparseMemfd,
            2 => FdKind::Pipe,
            _ => FdKind::Socket,
        }
    }
}

/// Returns `n` new fds of `kind` (duplicates of one made per process: making a memfd
/// for every input would cost most of the run).
///
/// # Panics
///
/// When the OS refuses (out of fds: a leak somewhere).
pub fn make_fds(kind: FdKind, n: usize) -> Vec<OwnedFd> {
    static POOL: OnceLock<[OwnedFd; 4]> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let memfd = |extra: u64| {
            let file = std::fs::File::from(mproc_sys::memfd_create("mproc-fuzz").expect("memfd"));
            use std::io::Write;
            (&file)
                .write_all(&[0x5a; MEMFD_BYTES])
                .expect("writing a memfd");
            file.set_len(MEMFD_BYTES as u64 + extra)
                .expect("sizing a memfd");
            OwnedFd::from(file)
        };
        [
            memfd(0),
            memfd(1 << 20),
            mproc_sys::pipe().expect("pipe").0,
            mproc_sys::socketpair().expect("socketpair").0,
        ]
    });
    let fd = &pool[kind as usize];
    (0..n)
        .map(|_| fd.try_clone().expect("duplicating an fd"))
        .collect()
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
