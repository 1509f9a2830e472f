//! The received messages of an `AsyncConnection` as a `futures_core::Stream` (feature
//! `tokio`).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use futures_core::stream::FusedStream;
use serde::de::DeserializeOwned;

use super::async_io::AsyncConnection;
use super::iter::loop_item;
use crate::error::Result;

/// The received messages, until the other end is gone: as
/// [`Connection::iter`](crate::Connection::iter), a message too large or not an `R` is an
/// `Err` item and the stream goes on; any other error is the last item;
/// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) is the end (`None`).
///
/// ```
/// use std::future::poll_fn;
/// use std::pin::Pin;
/// use futures_core::Stream;
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let (mut a, b) = mproc_pipe::pipe::<u32>()?;
/// let mut b = b.into_async()?;
/// a.send(&1)?;
/// a.send(&2)?;
/// drop(a);
/// let mut got = Vec::new();
/// while let Some(msg) = poll_fn(|cx| Pin::new(&mut b).poll_next(cx)).await {
///     got.push(msg?);
/// }
/// assert_eq!(got, [1, 2]);
/// # Ok::<(), mproc_pipe::Error>(())
/// # })?;
/// # Ok::<(), mproc_pipe::Error>(())
/// ```
impl<S, R: DeserializeOwned> Stream for AsyncConnection<S, R> {
    type Item = Result<R>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        let this = self.get_mut();
        if this.stream_ended {
            return Poll::Ready(None);
        }
        let received = ready!(this.poll_recv(cx));
        Poll::Ready(loop_item(received, &mut this.stream_ended))
    }
}

impl<S, R: DeserializeOwned> FusedStream for AsyncConnection<S, R> {
    fn is_terminated(&self) -> bool {
        self.stream_ended
    }
}
