//! A call's receiving end: the [`Sink`] that the manager hands each chunk's outcome to,
//! decoded into one result per item.

use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::task::{ChunkResults, ItemFailure, Payload};

/// A chunk's place in its call: items `start .. start + len` of the input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub start: usize,
    pub len: usize,
}

/// What a job receives for one chunk.
pub(crate) enum Delivery {
    /// The worker ran it: a serialized `Vec<Result<R, ItemFailure>>`.
    Ran(Payload),
    /// No item of it ran, or its result was lost: every item fails with this error.
    Failed(Error),
}

/// The receiving end of a call: the pool's manager hands it each chunk's outcome.
pub(crate) trait Sink: Send + Sync {
    /// Takes the outcome of the chunk at `span`.
    fn deliver(&self, span: Span, delivery: Delivery);
    /// Returns whether the job needs no more results (it failed, or its reader is gone);
    /// its chunks not yet sent to a worker are then dropped.
    fn is_cancelled(&self) -> bool;
    /// Called under the pool's lock just before a chunk is sent to a worker: `false` when
    /// the job was cancelled (the chunk is dropped), and from then on a cancel fails.
    fn begin(&self) -> bool {
        !self.is_cancelled()
    }
    /// Undoes [`begin`](Sink::begin) for a chunk that could not be sent after all (it goes
    /// back to the pending list).
    fn unbegin(&self) {}
    /// Cancels the job if none of its chunks has been sent (`shutdown(cancel_futures)`).
    fn cancel_pending(&self) {}
}

/// A chunk's results in the parent: the values of the items that succeeded, in order,
/// and the failed items' errors, by index in the call.
pub(crate) struct Outcomes<R> {
    pub values: Vec<R>,
    pub failures: Vec<Error>,
}

impl<R> Outcomes<R> {
    /// Merges values and failures back into one result per item, in order.
    pub(crate) fn into_items(self, span: Span) -> impl Iterator<Item = (usize, Result<R>)> {
        let mut values = self.values.into_iter();
        let mut failures = self.failures.into_iter().peekable();
        (span.start..span.start + span.len).filter_map(move |i| {
            if failures.peek().and_then(Error::index) == Some(i) {
                return failures.next().map(|e| (i, Err(e)));
            }
            values.next().map(|v| (i, Ok(v)))
        })
    }
}

/// Decodes a chunk's outcome; each error names its item's index. Bytes that do not
/// decode as the chunk's results (or do not account for each item exactly once) fail
/// every item of the chunk.
pub(crate) fn chunk_results<R: DeserializeOwned>(span: Span, delivery: Delivery) -> Outcomes<R> {
    let all_fail = |e: Error| Outcomes {
        values: Vec::new(),
        failures: (0..span.len)
            .map(|i| e.clone().at(span.start + i))
            .collect(),
    };
    let payload = match delivery {
        Delivery::Ran(payload) => payload,
        Delivery::Failed(e) => return all_fail(e),
    };
    let (failures, values) = match payload.decode::<ChunkResults<R>>() {
        Ok(r) => r,
        Err(e) => {
            return all_fail(
                Error::new(
                    ErrorKind::Decode,
                    "the task's result could not be deserialized",
                )
                .with_source(e),
            );
        }
    };
    let ordered = failures.windows(2).all(|w| w[0].0 < w[1].0)
        && failures
            .last()
            .is_none_or(|(i, _)| (*i as usize) < span.len);
    if !ordered || failures.len() + values.len() != span.len {
        return all_fail(Error::new(
            ErrorKind::Decode,
            format!(
                "a worker sent {} results and {} failures for a chunk of {}",
                values.len(),
                failures.len(),
                span.len
            ),
        ));
    }
    let failures = failures
        .into_iter()
        .map(|(i, failure)| {
            match failure {
                ItemFailure::Panicked(m) => Error::panicked(m),
                ItemFailure::Encode(m) => Error::new(ErrorKind::Encode, m),
            }
            .at(span.start + i as usize)
        })
        .collect();
    Outcomes { values, failures }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(span: Span, payload: Payload) -> Vec<std::result::Result<u64, ErrorKind>> {
        chunk_results::<u64>(span, Delivery::Ran(payload))
            .into_items(span)
            .map(|(_, r)| r.map_err(|e| e.kind()))
            .collect()
    }

    #[test]
    fn results_and_failures_merge_back_in_order() {
        let sent: ChunkResults<u64> = (vec![(1, ItemFailure::Panicked("boom".into()))], vec![7, 9]);
        let span = Span { start: 10, len: 3 };
        let items: Vec<_> =
            chunk_results::<u64>(span, Delivery::Ran(Payload::encode(&sent).unwrap()))
                .into_items(span)
                .map(|(i, r)| (i, r.map_err(|e| (e.kind(), e.index()))))
                .collect();
        assert_eq!(
            items,
            [
                (10, Ok(7)),
                (11, Err((ErrorKind::Panicked, Some(11)))),
                (12, Ok(9))
            ]
        );
    }

    #[test]
    fn what_a_worker_cannot_have_sent_fails_the_chunk_without_panicking() {
        let span = Span { start: 0, len: 2 };
        let decode_err = Err(ErrorKind::Decode);
        // Garbage bytes.
        let garbage = Payload::encode(&serde_bytes::Bytes::new(&[0xff; 9])).unwrap();
        assert_eq!(decode(span, garbage), [decode_err, decode_err]);
        // Too many values, or too few.
        let three: ChunkResults<u64> = (Vec::new(), vec![1, 2, 3]);
        assert_eq!(
            decode(span, Payload::encode(&three).unwrap()),
            [decode_err, decode_err]
        );
        // A failure out of range, and failures out of order.
        let out: ChunkResults<u64> = (vec![(5, ItemFailure::Encode("x".into()))], vec![1]);
        assert_eq!(
            decode(span, Payload::encode(&out).unwrap()),
            [decode_err, decode_err]
        );
        let unordered: ChunkResults<u64> = (
            vec![
                (1, ItemFailure::Encode("x".into())),
                (0, ItemFailure::Encode("y".into())),
            ],
            Vec::new(),
        );
        assert_eq!(
            decode(span, Payload::encode(&unordered).unwrap()),
            [decode_err, decode_err]
        );
    }
}
