//! Cutting a call's items into chunks: Python's default chunk size, and serializing each
//! chunk so that an item which cannot be serialized fails alone.

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, ErrorKind};
use crate::manager::{Chunk, Deliveries};
use crate::result::{Delivery, Sink, Span};
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
    let mut chunks = Vec::with_capacity(items.len().div_ceil(chunksize.max(1)));
    for (n, part) in items.chunks(chunksize.max(1)).enumerate() {
        let first = start + n * chunksize;
        let make = |args: Payload, start: usize, len: usize| Chunk {
            sink: sink.clone(),
            span: Span { start, len },
            call,
            args: Arc::new(args),
        };
        match Payload::encode(part) {
            Ok(args) => chunks.push(make(args, first, part.len())),
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
    chunks
}

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
