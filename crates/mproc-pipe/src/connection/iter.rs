//! Receiving in a loop: `for msg in conn.iter()`, until the other end is gone.

use std::iter::FusedIterator;

use serde::de::DeserializeOwned;

use super::{Connection, Receiver};
use crate::error::{ErrorKind, Result};

/// The item a loop over received messages (an iterator or a stream) yields for one receive,
/// setting `ended` when the loop is over: [`ErrorKind::Disconnected`] ends it without being
/// yielded; a message that was skipped ([`ErrorKind::TooLarge`]) or could not be
/// deserialized ([`ErrorKind::Decode`]) is yielded and the loop goes on with the next one;
/// any other error is yielded, then the loop ends, the connection being unable to receive
/// further (a corrupt stream, a failing socket).
pub(crate) fn loop_item<R>(received: Result<R>, ended: &mut bool) -> Option<Result<R>> {
    match received {
        Ok(value) => Some(Ok(value)),
        Err(e) if e.kind() == ErrorKind::Disconnected => {
            *ended = true;
            None
        }
        Err(e) => {
            *ended = !matches!(e.kind(), ErrorKind::TooLarge | ErrorKind::Decode);
            Some(Err(e))
        }
    }
}

/// The messages a connection receives, one blocking [`recv`](Connection::recv) each, until
/// the other end is gone; made by [`Connection::iter`] (or `for msg in &mut conn`).
///
/// Items are `Result<R>`: the end of the stream ([`ErrorKind::Disconnected`]) is the end of
/// the iteration, not an item. A message that was too large or not an `R` is an `Err` item,
/// and the iteration goes on after it; any other error (a corrupt stream, a failing socket)
/// is the last item.
///
/// ```
/// let (mut a, mut b) = mproc_pipe::pipe::<u8>()?;
/// a.send(&1)?;
/// drop(a);
/// let mut it = b.iter();
/// assert_eq!(it.next().transpose()?, Some(1));
/// assert!(it.next().is_none());
/// # Ok::<(), mproc_pipe::Error>(())
/// ```
#[derive(Debug)]
pub struct Iter<'a, S, R> {
    conn: &'a mut Connection<S, R>,
    done: bool,
}

impl<S, R> Connection<S, R> {
    /// Returns an iterator over the messages this end receives, ending when the other end
    /// is gone (closed, dropped, or its process died). See [`Iter`] for the errors.
    ///
    /// ```
    /// let (mut a, mut b) = mproc_pipe::pipe::<u32>()?;
    /// for i in 0..3 {
    ///     a.send(&i)?;
    /// }
    /// drop(a);
    /// let got: Vec<u32> = b.iter().collect::<Result<_, _>>()?;
    /// assert_eq!(got, [0, 1, 2]);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn iter(&mut self) -> Iter<'_, S, R> {
        Iter {
            conn: self,
            done: false,
        }
    }
}

impl<S, R: DeserializeOwned> Iterator for Iter<'_, S, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        if self.done {
            return None;
        }
        let received = self.conn.recv();
        loop_item(received, &mut self.done)
    }
}

impl<S, R: DeserializeOwned> FusedIterator for Iter<'_, S, R> {}

impl<'a, S, R: DeserializeOwned> IntoIterator for &'a mut Connection<S, R> {
    type Item = Result<R>;
    type IntoIter = Iter<'a, S, R>;

    /// Iterates over the received messages, as [`Connection::iter`].
    ///
    /// ```
    /// let (mut a, mut b) = mproc_pipe::pipe::<String>()?;
    /// a.send(&"only".to_string())?;
    /// drop(a);
    /// for msg in &mut b {
    ///     assert_eq!(msg?, "only");
    /// }
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    fn into_iter(self) -> Iter<'a, S, R> {
        self.iter()
    }
}

impl<T> Receiver<T> {
    /// Returns an iterator over the values received, ending when the sender is gone; see
    /// [`Connection::iter`].
    ///
    /// ```
    /// let (mut tx, mut rx) = mproc_pipe::channel::<u8>()?;
    /// tx.send(&7)?;
    /// drop(tx);
    /// assert_eq!(rx.iter().map(Result::unwrap).collect::<Vec<_>>(), [7]);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn iter(&mut self) -> Iter<'_, (), T> {
        self.0.iter()
    }
}
