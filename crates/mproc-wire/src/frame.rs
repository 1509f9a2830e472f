//! Frames on a Unix stream socket: a 16-byte header, then the body, with the message's fds
//! sent beside the header's first byte.
//!
//! Header (little endian): magic `b"MP"`, version `1`, flags, fd count (`u32`), body length
//! (`u64`). Flag bit 0 says the body travels in an extra, last fd (a memfd) instead of on
//! the stream: bodies above [`Limits::inline_max`] go that way, so the writer never blocks
//! on a slow reader for them and a 1 GiB body costs one copy on each side.
//!
//! This file holds the format both ends agree on: `write` sends frames, `read` receives
//! them.

pub(crate) mod read;
pub(crate) mod write;

/// Size of a frame header in bytes.
pub const HEADER_LEN: usize = 16;
const MAGIC: [u8; 2] = *b"MP";
const VERSION: u8 = 1;
const FLAG_BODY_IN_FD: u8 = 1;

/// Size limits of a connection, checked on both sides before anything is allocated.
///
/// ```
/// let limits = mproc_wire::Limits { max_message: 1 << 20, ..Default::default() };
/// assert!(limits.inline_max <= limits.max_message as usize);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest body a message may have (sender refuses, receiver rejects).
    pub max_message: u64,
    /// Bodies up to this size travel on the stream; larger ones in a memfd.
    pub inline_max: usize,
    /// The most fds one message may carry.
    pub max_fds: u32,
}

impl Default for Limits {
    /// 4 GiB messages, bodies above 64 KiB by memfd, 64 fds.
    fn default() -> Self {
        Self {
            max_message: 4 << 30,
            inline_max: 64 << 10,
            max_fds: 64,
        }
    }
}

/// The fields of a frame header.
#[derive(Clone, Copy, Debug)]
struct Header {
    /// Flag bits; [`FLAG_BODY_IN_FD`] is the only one this version knows.
    flags: u8,
    /// How many fds the message carries (not counting a body's memfd).
    fds: u32,
    /// The body's length in bytes.
    len: u64,
}

impl Header {
    /// Makes the header of a body of `len` bytes with `fds` fds, the body on the stream or
    /// in a memfd.
    fn new(len: u64, fds: u32, body_in_fd: bool) -> Self {
        let flags = if body_in_fd { FLAG_BODY_IN_FD } else { 0 };
        Self { flags, fds, len }
    }

    /// Encodes the header as it goes on the stream.
    fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..2].copy_from_slice(&MAGIC);
        h[2] = VERSION;
        h[3] = self.flags;
        h[4..8].copy_from_slice(&self.fds.to_le_bytes());
        h[8..16].copy_from_slice(&self.len.to_le_bytes());
        h
    }

    /// Reads a header's fields; `None` when the bytes do not start with our magic and
    /// version (garbage).
    fn parse(h: &[u8; HEADER_LEN]) -> Option<Self> {
        if h[0..2] != MAGIC || h[2] != VERSION {
            return None;
        }
        Some(Self {
            flags: h[3],
            fds: u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")),
            len: u64::from_le_bytes(h[8..16].try_into().expect("8 bytes")),
        })
    }

    /// Returns whether the body travels in an extra, last fd instead of on the stream.
    fn body_in_fd(self) -> bool {
        self.flags & FLAG_BODY_IN_FD != 0
    }

    /// Returns whether flag bits that this version does not know are set.
    fn has_unknown_flags(self) -> bool {
        self.flags & !FLAG_BODY_IN_FD != 0
    }
}
