//! [`Iter`]: a queue's messages as a blocking iterator.

use std::fmt;
use std::iter::FusedIterator;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Queue;
use crate::error::GetError;

/// The messages of a queue, each taken by a blocking [`get`](Queue::get); made by
/// [`Queue::iter`]. Ends (for good) when the queue is closed and drained
/// ([`GetError::Closed`]), or when nobody else is left to put
/// ([`GetError::Disconnected`]); yields `Err(GetError::Failed(_))` for a message that
/// does not decode (it is consumed) and goes on.
pub struct Iter<'a, T> {
    queue: &'a Queue<T>,
    done: bool,
}

impl<T> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").field("done", &self.done).finish()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Iterates over the messages, waiting for each: `for msg in queue.iter()`, until the
    /// queue is closed and drained or disconnected (see [`Iter`]). Python: `iter(q.get,
    /// sentinel)`, with [`close`](Queue::close) as the sentinel.
    ///
    /// ```
    /// let q = mproc_queue::Queue::new()?;
    /// let producer = q.clone();
    /// std::thread::spawn(move || {
    ///     for i in 0..3u32 {
    ///         producer.put(i).unwrap();
    ///     }
    ///     producer.close();
    /// });
    /// let mut sum = 0;
    /// for msg in q.iter() {
    ///     sum += msg?;
    /// }
    /// assert_eq!(sum, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            queue: self,
            done: false,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Iterator for Iter<'_, T> {
    type Item = Result<T, GetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.queue.get() {
            Err(GetError::Closed | GetError::Disconnected) => {
                self.done = true;
                None
            }
            r => Some(r),
        }
    }
}

impl<T: Serialize + DeserializeOwned> FusedIterator for Iter<'_, T> {}

impl<'a, T: Serialize + DeserializeOwned> IntoIterator for &'a Queue<T> {
    type Item = Result<T, GetError>;
    type IntoIter = Iter<'a, T>;

    /// `for msg in &queue`, as [`Queue::iter`].
    ///
    /// ```
    /// let q = mproc_queue::Queue::new()?;
    /// q.put('a')?;
    /// q.close();
    /// let all: Result<Vec<char>, _> = (&q).into_iter().collect();
    /// assert_eq!(all?, ['a']);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}
