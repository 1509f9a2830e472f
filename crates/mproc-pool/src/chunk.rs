//! Cutting a call's items into serialized chunks: Python's default chunk size, each chunk
//! encoded so that an item which cannot be serialized fails alone.

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, ErrorKind};
use crate::manager::{Chunk, Deliveries};
use crate::sink::{Delivery, Sink, Span};
use crate::task::{Call, Payload};

/// Python's rule for `map`'s chunk size: about four chunks per worker.
///
/// ```text
/// chunksize, extra = divmod(len(iterable), len(self._pool) * 4)
/// if extra: chunksize += 1
/// ```
pub(crate) fn default_chunksize(items: usize, processes: usize) -> usize {
    let per = processes.max(1) * 4;
    items.div_ceil(per).max(1)
}

/// Serializes `items` (the call's items from index `start`) into chunks of `chunksize`.
/// A chunk that does not serialize is tried item by item: the items that fail get their
/// error in `failed`, the others travel as chunks of one.
pub(crate) fn encode<A: Serialize>(
    items: &[A],
    start: usize,
    chunksize: usize,
    call: Call,
    sink: &Arc<dyn Sink>,
    failed: &mut Deliveries,
) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let _ = encode_streaming(items, start, chunksize, call, sink, failed, |batch| {
        chunks.extend(batch);
        Ok(())
    });
    chunks
}

/// Like [`encode`], handing the chunks to `submit` as they are made, in batches of about
/// [`BATCH_BYTES`], so that workers start on the first chunks while the rest are being
/// serialized. Stops at the first error of `submit`.
pub(crate) fn encode_streaming<A: Serialize>(
    items: &[A],
    start: usize,
    chunksize: usize,
    call: Call,
    sink: &Arc<dyn Sink>,
    failed: &mut Deliveries,
    mut submit: impl FnMut(Vec<Chunk>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut chunks = Vec::new();
    let mut bytes = 0;
    for (n, part) in items.chunks(chunksize.max(1)).enumerate() {
        if bytes >= BATCH_BYTES || chunks.len() >= BATCH_CHUNKS {
            submit(std::mem::take(&mut chunks))?;
            bytes = 0;
        }
        let first = start + n * chunksize;
        let make = |args: Payload, start: usize, len: usize| Chunk {
            sink: sink.clone(),
            span: Span { start, len },
            call,
            args: Arc::new(args),
        };
        match Payload::encode_sized(part, 16 + std::mem::size_of_val(part)) {
            Ok(args) => {
                bytes += args.len();
                chunks.push(make(args, first, part.len()));
            }
            Err(_) => {
                for (i, item) in part.iter().enumerate() {
                    match Payload::encode(std::slice::from_ref(item)) {
                        Ok(args) => chunks.push(make(args, first + i, 1)),
                        Err(e) => {
                            let e = Error::new(
                                ErrorKind::Encode,
                                "the task's argument could not be serialized",
                            )
                            .with_source(e);
                            failed.push((
                                sink.clone(),
                                Span {
                                    start: first + i,
                                    len: 1,
                                },
                                Delivery::Failed(e),
                            ));
                        }
                    }
                }
            }
        }
    }
    if chunks.is_empty() {
        return Ok(());
    }
    submit(chunks)
}

/// Serialized chunks are handed to the pool once they reach this many bytes ...
const BATCH_BYTES: usize = 64 << 10;
/// ... or this many chunks.
const BATCH_CHUNKS: usize = 256;

#[cfg(test)]
mod tests {
    use super::default_chunksize;

    #[test]
    fn default_chunksize_is_pythons() {
        // divmod(1_000_000, 8) = (125000, 0); divmod(10, 8) = (1, 2) -> 2; divmod(3, 8) -> 1.
        assert_eq!(default_chunksize(1_000_000, 2), 125_000);
        assert_eq!(default_chunksize(10, 2), 2);
        assert_eq!(default_chunksize(3, 2), 1);
        assert_eq!(default_chunksize(16, 2), 2);
        assert_eq!(default_chunksize(0, 4), 1);
    }
}
