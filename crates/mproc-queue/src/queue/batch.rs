//! The batch calls of [`Queue`]: `put_many` and `get_many` (with their `_timeout` and `try_`
//! forms), a run of small messages moved with one hold of the lock, one store and one
//! wake-up.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BATCH, Queue, refused, with_scratch};
use crate::error::{Error, GetError, PutError};
use crate::ring::{self, Payload, Refused};

impl<T: Serialize + DeserializeOwned> Queue<T> {
    fn put_many_until(
        &self,
        values: impl IntoIterator<Item = T>,
        deadline: Option<Instant>,
    ) -> Result<(), PutError<Vec<T>>> {
        let mut values = values.into_iter();
        if self.ring.is_joinable() {
            // A JoinableQueue counts one item per put.
            while let Some(v) = values.next() {
                if let Err(e) = self.put_until(v, deadline) {
                    let rest = |v| std::iter::once(v).chain(values).collect();
                    return Err(match e {
                        PutError::Full(v) => PutError::Full(rest(v)),
                        PutError::Closed(v) => PutError::Closed(rest(v)),
                        PutError::Disconnected(v) => PutError::Disconnected(rest(v)),
                        PutError::Failed(v, e) => PutError::Failed(rest(v), e),
                    });
                }
            }
            return Ok(());
        }
        let mut chunk = Vec::with_capacity(BATCH);
        let mut recs = Vec::with_capacity(BATCH);
        with_scratch(|buf| {
            loop {
                let (alone, failed) = self.encode_chunk(&mut values, &mut chunk, &mut recs, buf);
                let unput = |done: usize, chunk: &mut Vec<T>, alone: Option<T>, values| {
                    chunk
                        .drain(done..)
                        .chain(alone)
                        .chain(values)
                        .collect::<Vec<T>>()
                };
                // The chunk first: the values before a failed one are in the queue.
                let (mut done, mut at) = (0, 0);
                while done < chunk.len() {
                    match self.ring.put_span(&buf[at..], &recs[done..], deadline) {
                        Ok(n) => {
                            at += recs[done..done + n].iter().sum::<usize>();
                            done += n;
                        }
                        Err(r) => {
                            let alone = alone.map(|(v, ..)| v).or(failed.map(|(v, _)| v));
                            return Err(refused(r, unput(done, &mut chunk, alone, values)));
                        }
                    }
                }
                if let Some((v, e)) = failed {
                    let rest = unput(0, &mut Vec::new(), Some(v), values);
                    return Err(PutError::Failed(rest, e));
                }
                match alone {
                    Some((v, start, fds)) => {
                        if let Err(r) = self.ring.put(&mut buf[start..], fds, deadline) {
                            return Err(refused(r, unput(0, &mut Vec::new(), Some(v), values)));
                        }
                    }
                    None if chunk.len() < BATCH => return Ok(()),
                    None => {}
                }
            }
        })
    }

    /// Encodes up to [`BATCH`] values from `values` into `buf` as whole records (into
    /// `chunk`, their lengths into `recs`), stopping early at one that must travel alone
    /// (handles inside, or large: returned with where its record starts and its fds) or
    /// that cannot be encoded (returned with its error).
    #[allow(clippy::type_complexity)]
    fn encode_chunk(
        &self,
        values: &mut impl Iterator<Item = T>,
        chunk: &mut Vec<T>,
        recs: &mut Vec<usize>,
        buf: &mut Vec<u8>,
    ) -> (
        Option<(T, usize, Vec<std::os::fd::OwnedFd>)>,
        Option<(T, Error)>,
    ) {
        chunk.clear();
        recs.clear();
        buf.clear();
        let max_bytes = self.ring.batch_max_bytes();
        while chunk.len() < BATCH && buf.len() < max_bytes {
            let Some(v) = values.next() else { break };
            let start = buf.len();
            buf.resize(start + ring::REC_HEADER, 0);
            let fds = match mproc_wire::encode_into(&v, buf) {
                Ok(fds) => fds,
                Err(e) => {
                    buf.truncate(start);
                    return (None, Some((v, Error::from(e))));
                }
            };
            let len = buf.len() - start - ring::REC_HEADER;
            if !fds.is_empty() || len > self.ring.inline_max() {
                return (Some((v, start, fds)), None);
            }
            ring::inline_header(buf, start);
            recs.push(buf.len() - start);
            chunk.push(v);
        }
        (None, None)
    }

    fn get_many_until(&self, max: usize, deadline: Option<Instant>) -> Result<Vec<T>, GetError> {
        let mut out = Vec::with_capacity(max.min(BATCH));
        if max == 0 {
            return Ok(out);
        }
        with_scratch(|buf| {
            let got = self.ring.get_many(buf, max, deadline, |bytes| {
                out.push(mproc_wire::decode_from(bytes, Vec::new())?);
                Ok(())
            });
            let value = match got {
                Ok(None) => return Ok(()),
                Ok(Some(Payload::Inline)) => mproc_wire::decode_from(buf, Vec::new()),
                Ok(Some(Payload::WithFds(fds))) => mproc_wire::decode_from(buf, fds),
                Ok(Some(Payload::Sealed(sealed))) => {
                    let (bytes, fds) = *sealed;
                    mproc_wire::decode_from(bytes.as_slice(), fds)
                }
                Ok(Some(Payload::Segment(lent))) => crate::ring::spill::decode(*lent),
                Ok(Some(Payload::Bad(e))) | Err(Refused::Failed(e)) => {
                    return Err(GetError::Failed(e));
                }
                Err(Refused::Timeout) => return Err(GetError::Empty),
                Err(Refused::Closed) => return Err(GetError::Closed),
                Err(Refused::Disconnected) => return Err(GetError::Disconnected),
            };
            out.push(value.map_err(Error::from)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Puts every value of `values` at the back, in order, waiting for room as `put`
    /// does: the values go in batches of up to 64, each with one hold of the producers'
    /// lock and one wake-up of the consumers (room permitting).
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put), with the values not put, in order (the rest of `values`
    /// is collected into it); the ones before them are in the queue.
    ///
    /// ```
    /// let q = mproc_queue::Queue::new()?;
    /// q.put_many(0..100u32)?;
    /// assert_eq!(q.len(), 100);
    /// assert_eq!(q.get_many(64)?, (0..64).collect::<Vec<_>>());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_many(&self, values: impl IntoIterator<Item = T>) -> Result<(), PutError<Vec<T>>> {
        self.put_many_until(values, None)
    }

    /// Like [`put_many`](Queue::put_many), waiting at most `timeout` in all for room.
    ///
    /// # Errors
    ///
    /// [`PutError::Full`] with the values not put when no room came in time; otherwise
    /// as `put_many`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = mproc_queue::Queue::bounded(3)?;
    /// let rest = q.put_many_timeout(1..=5, Duration::from_millis(10)).unwrap_err();
    /// assert!(rest.is_full());
    /// assert_eq!(rest.into_inner(), [4, 5]);
    /// assert_eq!(q.len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_many_timeout(
        &self,
        values: impl IntoIterator<Item = T>,
        timeout: Duration,
    ) -> Result<(), PutError<Vec<T>>> {
        self.put_many_until(values, mproc_sys::deadline_after(timeout))
    }

    /// Puts as many of `values` as there is room for now, in order.
    ///
    /// # Errors
    ///
    /// [`PutError::Full`] with the values not put; otherwise as `put_many`.
    ///
    /// ```
    /// let q = mproc_queue::Queue::bounded(2)?;
    /// assert_eq!(q.try_put_many(['a', 'b', 'c']).unwrap_err().into_inner(), ['c']);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_put_many(
        &self,
        values: impl IntoIterator<Item = T>,
    ) -> Result<(), PutError<Vec<T>>> {
        self.put_many_until(values, Some(Instant::now()))
    }

    /// Takes up to `max` messages from the front: waits for one, as `get` does, then
    /// takes it and those waiting right behind it, with one hold of the consumers' lock
    /// and one wake-up of the producers. Returns at least one message (none only for a
    /// `max` of 0).
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get). A message that does not deserialize as a `T` ends the
    /// batch before it; when it is the first, it is consumed and its error returned.
    ///
    /// ```
    /// let q = mproc_queue::Queue::new()?;
    /// q.put_many(["a", "b", "c"].map(String::from))?;
    /// assert_eq!(q.get_many(2)?, ["a", "b"]);
    /// assert_eq!(q.get_many(2)?, ["c"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_many(&self, max: usize) -> Result<Vec<T>, GetError> {
        self.get_many_until(max, None)
    }

    /// Like [`get_many`](Queue::get_many), waiting at most `timeout` for the first.
    ///
    /// # Errors
    ///
    /// [`GetError::Empty`] when nothing came in time; otherwise as `get_many`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = mproc_queue::Queue::<u8>::new()?;
    /// assert!(q.get_many_timeout(8, Duration::from_millis(10)).unwrap_err().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_many_timeout(&self, max: usize, timeout: Duration) -> Result<Vec<T>, GetError> {
        self.get_many_until(max, mproc_sys::deadline_after(timeout))
    }

    /// Takes up to `max` of the messages waiting now, without waiting.
    ///
    /// # Errors
    ///
    /// [`GetError::Empty`] at once when none is waiting (or another consumer holds the
    /// lock); otherwise as `get_many`.
    ///
    /// ```
    /// let q = mproc_queue::Queue::new()?;
    /// q.put_many([1, 2, 3])?;
    /// assert_eq!(q.try_get_many(10)?, [1, 2, 3]);
    /// assert!(q.try_get_many(10).unwrap_err().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_get_many(&self, max: usize) -> Result<Vec<T>, GetError> {
        self.get_many_until(max, Some(Instant::now()))
    }
}
