//! Where a large payload goes in the consumer's buffer: placed so that the bytes after its
//! first varint (a byte string's or a string's length, when the message is one) start
//! 16-aligned, as the allocation they are decoded into does.
//!
//! Why: decoding a byte string copies it out of the buffer into a fresh allocation, and
//! glibc's `memcpy` of that size is `rep movsb`, which on some CPUs (measured: AMD EPYC,
//! glibc 2.36) runs about 15 times slower when the destination is 1 to 15 bytes past the
//! source modulo 4096 (3.4 GB/s instead of 52 on 64 KiB). A consumer's buffer and the
//! value it decodes sit next to each other on the heap, message after message, so a queue
//! of 64 KiB byte strings hit that case on every message (2.4 GB/s between two processes,
//! 17 between two threads, whose heaps are laid out otherwise). With both ends 16-aligned
//! the distance is a multiple of 16, never in that window. Messages of other shapes are
//! not slowed: at worst they land where they would have.

use crate::error::Result;

/// Payloads shorter than this go at the start of the buffer.
const MIN: usize = 4096;

/// Makes room in `buf` for a payload of `len` bytes, and returns where in it the payload
/// should start; `peek` reads the payload's first bytes (asked only for large payloads).
#[inline]
pub(crate) fn lead(
    buf: &mut Vec<u8>,
    len: usize,
    peek: impl FnOnce(&mut [u8]) -> Result<()>,
) -> Result<usize> {
    if len < MIN {
        return Ok(0);
    }
    let mut head = [0u8; 5];
    peek(&mut head)?;
    // The length of the leading varint (0 when its first 5 bytes do not end one).
    let k = head.iter().position(|b| b & 0x80 == 0).map_or(0, |i| i + 1);
    let need = len + 15;
    buf.reserve(need.saturating_sub(buf.len()));
    Ok((16 - (buf.as_ptr() as usize + k) % 16) % 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_after_the_leading_varint_start_16_aligned() {
        for (head, k) in [([5u8, 0, 0, 0, 0], 1), ([0x80, 0x80, 4, 0, 0], 3)] {
            let mut buf = Vec::new();
            let start = lead(&mut buf, 1 << 16, |h| {
                h.copy_from_slice(&head);
                Ok(())
            })
            .unwrap();
            assert!(start < 16 && buf.capacity() >= start + (1 << 16));
            assert_eq!((buf.as_ptr() as usize + start + k) % 16, 0);
        }
        let mut buf = Vec::new();
        assert_eq!(lead(&mut buf, 100, |_| panic!("not asked")).unwrap(), 0);
    }
}
