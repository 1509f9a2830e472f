//! Async pipes (`AsyncConnection`, `Listener::accept_async`) and the blocking `conn.iter()`,
//! between processes, under the start method named by `MPROC_START_METHOD`. Every test runs
//! inside a deadline, on a tokio runtime with a single thread: a hidden blocking call would
//! deadlock the test instead of passing it.

use std::future::{Future, poll_fn};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures_core::Stream;
use mproc::pipe::{
    Address, AsyncConnection, Client, Connection, ErrorKind, Listener, Receiver, Sender,
};
use mproc::wire::Fd;
use mproc_tests::{builder, deadline};
use serde_bytes::ByteBuf;

mproc::init_before_main!();

const LIMIT: Duration = Duration::from_secs(120);
const KEY: &[u8] = b"the async key";
const BIG: usize = 8 << 20;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

fn frame_header(len: u64) -> Vec<u8> {
    let mut h = b"MP\x01\x00".to_vec();
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h
}

/// The next message of a stream (what `StreamExt::next` does, without futures-util).
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// A blocking child: answers each number with the next one, until `None`; returns how many.
fn echo_next(mut conn: Connection<Option<u64>>) -> u64 {
    let mut n = 0;
    while let Ok(Some(x)) = conn.recv() {
        conn.send(&Some(x + 1)).unwrap();
        n += 1;
    }
    n
}

#[test]
fn fifty_children_are_served_by_one_task() {
    const CHILDREN: usize = 50;
    const ROUNDS: u64 = 20;
    deadline(LIMIT, || {
        let mut children = Vec::new();
        let mut ends = Vec::new();
        for _ in 0..CHILDREN {
            let (ours, theirs) = mproc::pipe::<Option<u64>>().unwrap();
            children.push(builder().spawn(echo_next, theirs).unwrap());
            ends.push(ours);
        }
        let total = runtime().block_on(async {
            // One task: each conversation is a future, and this task polls all fifty of them
            // in one hand-written loop (nothing is spawned). A wake-up polls every pending
            // conversation; those whose socket is not ready return at once.
            type Conversation = Pin<Box<dyn Future<Output = u64>>>;
            let mut conversations: Vec<Option<Conversation>> = ends
                .into_iter()
                .enumerate()
                .map(|(id, end)| {
                    let mut conn: AsyncConnection<Option<u64>> = end.into_async().unwrap();
                    let conversation: Conversation = Box::pin(async move {
                        let mut sum = 0;
                        for round in 0..ROUNDS {
                            let x = id as u64 * 1000 + round;
                            conn.send_async(&Some(x)).await.unwrap();
                            let answer = conn.recv_async().await.unwrap();
                            assert_eq!(answer, Some(x + 1));
                            sum += x + 1;
                        }
                        conn.send_async(&None).await.unwrap();
                        sum
                    });
                    Some(conversation)
                })
                .collect();
            let mut total = 0;
            poll_fn(|cx| {
                for slot in &mut conversations {
                    if let Some(conversation) = slot
                        && let Poll::Ready(sum) = conversation.as_mut().poll(cx)
                    {
                        total += sum;
                        *slot = None;
                    }
                }
                if conversations.iter().all(Option::is_none) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            total
        });
        let expected: u64 = (0..CHILDREN as u64)
            .flat_map(|id| (0..ROUNDS).map(move |r| id * 1000 + r + 1))
            .sum();
        assert_eq!(total, expected);
        for mut child in children {
            assert_eq!(child.join().unwrap(), ROUNDS);
        }
    });
}

/// A blocking child: sends 8 MiB, then receives 8 MiB (a parent that could not receive
/// while it sends would deadlock with it); returns whether what it got was right.
fn swap_big(mut conn: Connection<ByteBuf>) -> bool {
    conn.send(&ByteBuf::from(pattern(BIG, 1))).unwrap();
    conn.recv().unwrap().into_vec() == pattern(BIG, 2)
}

#[test]
fn eight_mib_both_ways_at_once_while_another_task_ticks() {
    deadline(LIMIT, || {
        let (ours, theirs) = mproc::pipe::<ByteBuf>().unwrap();
        let mut child = builder().spawn(swap_big, theirs).unwrap();
        let ticks = runtime().block_on(async {
            let ticks = Arc::new(AtomicU64::new(0));
            let ticker = tokio::spawn({
                let ticks = ticks.clone();
                async move {
                    loop {
                        ticks.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                }
            });
            let mut conn = ours.into_async().unwrap();
            // Send and receive at once on one connection: queue the message, then flush it
            // and receive in the same poll loop.
            conn.start_send(&ByteBuf::from(pattern(BIG, 2))).unwrap();
            let (mut flushed, mut got) = (false, None);
            poll_fn(|cx| {
                if !flushed && let Poll::Ready(r) = conn.poll_flush(cx) {
                    r.unwrap();
                    flushed = true;
                }
                if got.is_none()
                    && let Poll::Ready(r) = conn.poll_recv(cx)
                {
                    got = Some(r.unwrap());
                }
                if flushed && got.is_some() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            assert!(got.unwrap().into_vec() == pattern(BIG, 1));
            // The same both ways in turn, with send_async and recv_async.
            ticker.abort();
            ticks.load(Ordering::Relaxed)
        });
        // Neither side can finish its send before the other reads, so this task had to
        // wait, and the other task ran meanwhile.
        assert!(ticks > 0, "the other task never ran during the transfer");
        assert!(child.join().unwrap());
    });
}

/// A blocking child: receives a pipe end and answers on it, then sends back an end of a
/// pipe of its own and speaks on that.
fn trade_ends(mut control: Connection<Connection<String>>) {
    let mut given = control.recv().unwrap();
    given.send(&"over the end you sent".to_string()).unwrap();
    let (mut mine, yours) = mproc::pipe::<String>().unwrap();
    control.send(&yours).unwrap();
    drop(yours);
    mine.send(&"over the end I sent".to_string()).unwrap();
    assert_eq!(mine.recv().unwrap(), "thanks");
}

#[test]
fn pipe_ends_travel_through_async_connections() {
    deadline(LIMIT, || {
        let (control, theirs) = mproc::pipe::<Connection<String>>().unwrap();
        let mut child = builder().spawn(trade_ends, theirs).unwrap();
        runtime().block_on(async {
            let mut control = control.into_async().unwrap();
            let (ours, to_send) = mproc::pipe::<String>().unwrap();
            control.send_async(&to_send).await.unwrap();
            drop(to_send);
            let mut ours = ours.into_async().unwrap();
            assert_eq!(ours.recv_async().await.unwrap(), "over the end you sent");
            let received = control.recv_async().await.unwrap();
            let mut received = received.into_async().unwrap();
            assert_eq!(received.recv_async().await.unwrap(), "over the end I sent");
            received.send_async(&"thanks".to_string()).await.unwrap();
            // The child is gone once it returns: both ends see the end of the stream.
            assert_eq!(
                ours.recv_async().await.unwrap_err().kind(),
                ErrorKind::Disconnected
            );
        });
        child.join().unwrap();
    });
}

/// A child that writes one 8 MiB frame by hand on a raw socket: the header and 1 MiB, then,
/// once told, the rest; twice.
fn write_in_two_parts((sock, mut go): (Fd, Receiver<()>)) {
    let sock = std::os::unix::net::UnixStream::from(sock.into_owned());
    let mut sock = &sock;
    for seed in [3, 4] {
        let body = pattern(BIG, seed);
        std::io::Write::write_all(&mut sock, &frame_header(BIG as u64)).unwrap();
        std::io::Write::write_all(&mut sock, &body[..1 << 20]).unwrap();
        go.recv().unwrap();
        std::io::Write::write_all(&mut sock, &body[1 << 20..]).unwrap();
    }
}

#[test]
fn a_receive_dropped_midway_loses_nothing() {
    deadline(LIMIT, || {
        let (raw, ours) = mproc_sys::socketpair().unwrap();
        let (mut go, go_rx) = mproc::channel::<()>().unwrap();
        let mut child = builder()
            .spawn(write_in_two_parts, (Fd::from(raw), go_rx))
            .unwrap();
        let conn = runtime().block_on(async {
            let mut conn = Connection::from(ours).into_async().unwrap();
            // The header and 1 MiB arrive, the rest does not: the receive is dropped by
            // the timeout in the middle of the frame (once the first bytes are there).
            assert!(conn.get_ref().poll(Some(Duration::from_secs(60))).unwrap());
            let cut = tokio::time::timeout(Duration::from_millis(300), conn.recv_bytes_async());
            assert!(cut.await.is_err(), "the frame cannot be complete yet");
            assert!(!conn.get_ref().has_buffered_message());
            go.send(&()).unwrap();
            assert_eq!(conn.recv_bytes_async().await.unwrap(), pattern(BIG, 3));
            // Again, finished by a blocking receive this time.
            let cut = tokio::time::timeout(Duration::from_millis(300), conn.recv_bytes_async());
            assert!(cut.await.is_err());
            conn.into_inner()
        });
        let mut conn = conn;
        go.send(&()).unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), pattern(BIG, 4));
        child.join().unwrap();
    });
}

/// A child that holds its end and never sends (it is killed).
fn hold_silently(_conn: Connection<u64>) {
    std::thread::sleep(Duration::from_secs(600));
}

/// A child that is killed in the middle of sending a 1 GiB message.
fn send_forever(mut tx: Connection<(), ()>) {
    let _ = tx.send_bytes(&vec![7u8; 1 << 30]);
}

#[test]
fn a_peer_killed_while_a_receive_waits_is_the_blocking_error() {
    deadline(LIMIT, || {
        // Blocking: the receive waits, the peer is killed from another thread.
        let (mut ours, theirs) = mproc::pipe::<u64>().unwrap();
        let child = builder().spawn(hold_silently, theirs).unwrap();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            child.kill().unwrap();
            child
        });
        let blocking = ours.recv().unwrap_err().kind();
        killer.join().unwrap().wait().unwrap();
        // Async: the receive waits on the reactor, the peer is killed by another task.
        let (ours, theirs) = mproc::pipe::<u64>().unwrap();
        let child = builder().spawn(hold_silently, theirs).unwrap();
        let (awaited, mut child) = runtime().block_on(async {
            let mut ours = ours.into_async().unwrap();
            let killer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                child.kill().unwrap();
                child
            });
            let kind = ours.recv_async().await.unwrap_err().kind();
            (kind, killer.await.unwrap())
        });
        child.wait().unwrap();
        assert_eq!(blocking, ErrorKind::Disconnected);
        assert_eq!(awaited, blocking);
        // Killed in the middle of a message: the same again, then the stream ends.
        let (ours, theirs) = mproc::pipe::<()>().unwrap();
        let mut child = builder().spawn(send_forever, theirs).unwrap();
        runtime().block_on(async {
            let mut conn = ours.into_async().unwrap();
            assert!(conn.get_ref().poll(Some(Duration::from_secs(30))).unwrap());
            child.kill().unwrap();
            let err = conn.recv_bytes_async().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
            assert!(next(&mut conn).await.is_none(), "the stream ends there");
        });
        child.wait().unwrap();
    });
}

/// The futures can move between the threads of a multi-thread runtime (checked when this
/// file compiles).
#[allow(dead_code)]
fn futures_are_send(mut conn: AsyncConnection<String, u64>, s: &String) {
    fn send<T: Send>(_: T) {}
    send(conn.recv_async());
    send(conn.send_async(s));
    send(conn.recv_bytes_async());
    send(conn);
}

#[test]
fn garbage_and_oversized_prefixes_are_errors_not_panics() {
    deadline(LIMIT, || {
        runtime().block_on(async {
            let (raw, theirs) = mproc_sys::socketpair().unwrap();
            let mut conn = Connection::from(theirs).into_async().unwrap();
            // 2^62 bytes announced: refused at once, nothing allocated.
            mproc_sys::send_with_fds(raw.as_fd(), &frame_header(1 << 62), &[]).unwrap();
            let err = conn.recv_bytes_async().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");

            // Raw bytes written on the other end's socket.
            let (raw, theirs) = mproc::pipe::<u32>().unwrap();
            let mut conn = theirs.into_async().unwrap();
            conn.set_max_message(64);
            let mut bytes = frame_header(1000);
            bytes.extend(vec![0xEE; 1000]);
            bytes.extend(frame_header(3)); // not a u32: three bytes of garbage varint
            bytes.extend([0xFF, 0xFF, 0xFF]);
            bytes.extend(frame_header(1));
            bytes.extend([7]);
            bytes.extend(b"not a frame at all");
            mproc_sys::send_with_fds(raw.as_fd(), &bytes, &[]).unwrap();
            // As a stream: the oversized frame and the undecodable one are errors and the
            // stream goes on; garbage is the last item.
            let kind = |item: Option<mproc::pipe::Result<u32>>| item.unwrap().unwrap_err().kind();
            assert_eq!(kind(next(&mut conn).await), ErrorKind::TooLarge);
            assert_eq!(kind(next(&mut conn).await), ErrorKind::Decode);
            assert_eq!(next(&mut conn).await.unwrap().unwrap(), 7);
            assert_eq!(kind(next(&mut conn).await), ErrorKind::Corrupt);
            assert!(next(&mut conn).await.is_none());
            // The connection itself keeps saying so.
            let err = conn.recv_async().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt);
        });
    });
}

/// A blocking child: sends 1..=n, then ends (its end closes).
fn count_to(mut tx: Sender<u32>) {
    for i in 1..=100 {
        tx.send(&i).unwrap();
    }
}

#[test]
fn iter_and_stream_end_at_disconnected() {
    deadline(LIMIT, || {
        let (tx, mut rx) = mproc::channel::<u32>().unwrap();
        let mut child = builder().spawn(count_to, tx).unwrap();
        let got: Vec<u32> = rx.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(got, (1..=100).collect::<Vec<_>>());
        assert!(
            rx.iter().next().is_none(),
            "a new iterator ends at once too"
        );
        child.join().unwrap();

        // A message that is not a u32 is an item, and the iteration goes on.
        let (mut a, mut b) = mproc::pipe::<u32>().unwrap();
        a.send(&5).unwrap();
        let mut not_a_u32 = frame_header(3);
        not_a_u32.extend([0xFF, 0xFF, 0xFF]); // a varint cut short
        mproc_sys::send_with_fds(a.as_fd(), &not_a_u32, &[]).unwrap();
        a.send(&6).unwrap();
        drop(a);
        let items: Vec<_> = (&mut b).into_iter().collect();
        assert_eq!(items.len(), 3);
        assert_eq!(*items[0].as_ref().unwrap(), 5);
        assert_eq!(items[1].as_ref().unwrap_err().kind(), ErrorKind::Decode);
        assert_eq!(*items[2].as_ref().unwrap(), 6);

        // The async stream of a child's messages ends there too.
        let (ours, theirs) = mproc::duplex::<(), u32>().unwrap();
        let mut child = builder()
            .spawn(
                |mut c: Connection<u32, ()>| {
                    for i in 1..=100 {
                        c.send(&i).unwrap();
                    }
                },
                theirs,
            )
            .unwrap();
        runtime().block_on(async {
            let mut conn = ours.into_async().unwrap();
            let mut got = Vec::new();
            while let Some(item) = next(&mut conn).await {
                got.push(item.unwrap());
            }
            assert_eq!(got, (1..=100).collect::<Vec<_>>());
        });
        child.join().unwrap();
    });
}

/// A client in another process: connect, authenticate, one round trip.
fn client_round_trip((address, n): (String, u32)) -> u32 {
    let address: Address = address.parse().unwrap();
    let mut conn = Client::connect::<u32, u32>(&address, KEY).unwrap();
    conn.send(&n).unwrap();
    conn.recv().unwrap()
}

#[test]
fn accept_async_serves_clients_in_other_processes() {
    deadline(LIMIT, || {
        let mut listener = Listener::bind("tcp://127.0.0.1:0".parse().unwrap(), KEY).unwrap();
        let address = listener.address().to_string();
        let mut clients: Vec<_> = (0..3)
            .map(|n| {
                builder()
                    .spawn(client_round_trip, (address.clone(), n))
                    .unwrap()
            })
            .collect();
        runtime().block_on(async {
            for _ in 0..3 {
                let conn = listener.accept_async::<u32, u32>().await.unwrap();
                let mut conn = conn.into_async().unwrap();
                let n = conn.recv_async().await.unwrap();
                conn.send_async(&(n + 100)).await.unwrap();
            }
        });
        let mut answers: Vec<u32> = clients.iter_mut().map(|c| c.join().unwrap()).collect();
        answers.sort();
        assert_eq!(answers, [100, 101, 102]);
    });
}
