//! Pipes, connections, wait, and authenticated listeners between processes, under the start
//! method named by `MPROC_START_METHOD`. Every test runs inside a deadline that kills its
//! children.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use mproc::pipe::{Address, Client, Connection, ErrorKind, Listener, Receiver, Sender};
use mproc_tests::{builder, deadline};

mproc::init_before_main!();

const LIMIT: Duration = Duration::from_secs(60);
const KEY: &[u8] = b"the right key";

// Most conversations below end with an explicit "stop"; the end-of-stream ones (the
// pattern every pipe tutorial shows) work under fork too, because a forked child closes
// its copies of the parent's mproc handles that are not in its argument.

/// Echoes strings back in upper case until "stop"; returns how many.
fn echo_upper(mut conn: Connection<String>) -> usize {
    let mut n = 0;
    while let Ok(s) = conn.recv() {
        if s == "stop" {
            break;
        }
        conn.send(&s.to_uppercase()).unwrap();
        n += 1;
    }
    n
}

/// Answers each number with its square, over a pipe with a type each way, until 0.
fn squares(mut conn: Connection<u64, u32>) -> u32 {
    let mut last = 0;
    while let Ok(x) = conn.recv() {
        if x == 0 {
            break;
        }
        conn.send(&(u64::from(x) * u64::from(x))).unwrap();
        last = x;
    }
    last
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Sends `n` bytes of a pattern, once as a typed message and once as raw bytes.
fn send_big((mut tx, n, typed): (Sender<Vec<u8>>, usize, bool)) {
    if typed {
        tx.send(&pattern(n)).unwrap();
    } else {
        tx.send_bytes(&pattern(n)).unwrap();
    }
}

/// Sends a huge message as raw bytes (never finishing: it is killed midway).
fn send_forever(mut tx: Sender<()>) {
    let big = vec![7u8; 1 << 30];
    let _ = tx.send_bytes(&big);
}

/// Receives a connection through a pipe, then talks over it.
fn receive_an_end(mut control: Receiver<Connection<String>>) -> String {
    let mut conn = control.recv().unwrap();
    conn.send(&"through a pipe".to_string()).unwrap();
    conn.recv().unwrap()
}

/// A client in another process: connect, authenticate, one round trip. Errors come back as
/// the kind's name.
fn client_round_trip((address, key, text): (String, Vec<u8>, String)) -> Result<String, String> {
    let address: Address = address
        .parse()
        .map_err(|e: mproc::pipe::Error| e.to_string())?;
    let mut conn =
        Client::connect::<String, String>(&address, &key).map_err(|e| format!("{:?}", e.kind()))?;
    conn.send(&text).map_err(|e| format!("{:?}", e.kind()))?;
    conn.recv().map_err(|e| format!("{:?}", e.kind()))
}

fn frame_header(len: u64) -> Vec<u8> {
    let mut h = b"MP\x01\x00".to_vec();
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h
}

#[test]
fn a_pipe_end_passed_to_a_child_works_both_ways() {
    deadline(LIMIT, || {
        let (mut ours, theirs) = mproc::pipe::<String>().unwrap();
        let mut child = builder().spawn(echo_upper, theirs).unwrap();
        for word in ["ping", "pong", "ünïcode"] {
            ours.send(&word.to_string()).unwrap();
            assert_eq!(ours.recv().unwrap(), word.to_uppercase());
        }
        ours.send(&"stop".to_string()).unwrap();
        assert_eq!(child.join().unwrap(), 3);
    });
}

#[test]
fn duplex_carries_a_type_each_way() {
    deadline(LIMIT, || {
        let (mut ask, answer) = mproc::duplex::<u32, u64>().unwrap();
        let mut child = builder().spawn(squares, answer).unwrap();
        for x in [3u32, 70_000, u32::MAX] {
            ask.send(&x).unwrap();
            assert_eq!(ask.recv().unwrap(), u64::from(x) * u64::from(x));
        }
        ask.send(&0).unwrap();
        assert_eq!(child.join().unwrap(), u32::MAX);
    });
}

#[test]
fn sixteen_and_256_mib_messages_round_trip_between_processes() {
    deadline(Duration::from_secs(120), || {
        // Typed `Vec<u8>` goes element by element through serde (slow in a debug build), so
        // the 256 MiB case uses the bytes API; both cross the same frames.
        for (n, typed) in [(16usize << 20, true), (256 << 20, false), (16 << 20, false)] {
            let (tx, mut rx) = mproc::channel::<Vec<u8>>().unwrap();
            let mut child = builder().spawn(send_big, (tx, n, typed)).unwrap();
            let v = if typed {
                rx.recv().unwrap()
            } else {
                rx.recv_bytes().unwrap()
            };
            assert_eq!(v.len(), n);
            assert!(v == pattern(n));
            child.join().unwrap();
        }
    });
}

#[test]
fn the_peer_gone_is_disconnected_at_once() {
    deadline(LIMIT, || {
        // Dropped in this process.
        let (a, mut b) = mproc::pipe::<u8>().unwrap();
        drop(a);
        assert_eq!(b.recv().unwrap_err().kind(), ErrorKind::Disconnected);
        assert_eq!(
            b.recv_timeout(Duration::from_secs(30)).unwrap_err().kind(),
            ErrorKind::Disconnected
        );
        // Held by a child that ends without sending.
        let (tx, mut rx) = mproc::channel::<Vec<u8>>().unwrap();
        let mut child = builder().spawn(|_tx: Sender<Vec<u8>>| (), tx).unwrap();
        child.join().unwrap();
        let t0 = Instant::now();
        assert_eq!(rx.recv().unwrap_err().kind(), ErrorKind::Disconnected);
        assert!(t0.elapsed() < Duration::from_secs(30));
    });
}

#[test]
fn a_child_sigkilled_mid_send_is_a_disconnect_not_a_hang() {
    deadline(LIMIT, || {
        let (tx, mut rx) = mproc::channel::<()>().unwrap();
        let mut child = builder().spawn(send_forever, tx).unwrap();
        // Wait until part of the 1 GiB message is in flight, then kill the sender.
        assert!(rx.poll(Some(Duration::from_secs(30))).unwrap());
        child.kill().unwrap();
        child.wait().unwrap();
        let err = rx.recv_bytes().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    });
}

#[test]
fn timeouts_try_recv_and_poll() {
    deadline(LIMIT, || {
        let (mut a, mut b) = mproc::pipe::<u32>().unwrap();
        let t0 = Instant::now();
        assert_eq!(
            b.recv_timeout(Duration::from_millis(100))
                .unwrap_err()
                .kind(),
            ErrorKind::Timeout
        );
        assert!(t0.elapsed() >= Duration::from_millis(100));
        assert_eq!(b.try_recv().unwrap(), None);
        assert!(!b.poll(Some(Duration::ZERO)).unwrap());
        a.send(&5).unwrap();
        assert!(b.poll(Some(Duration::from_secs(5))).unwrap());
        assert_eq!(b.try_recv().unwrap(), Some(5));
    });
}

#[test]
fn bytes_api_and_buffer_too_short() {
    deadline(LIMIT, || {
        let (mut a, mut b) = mproc::pipe::<()>().unwrap();
        a.send_bytes(b"short").unwrap();
        a.send_bytes(&[9u8; 100]).unwrap();
        a.send_bytes(b"after").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"short");
        let err = b.recv_bytes_into(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BufferTooShort);
        assert_eq!(err.needed(), Some(100));
        assert_eq!(err.into_message().unwrap(), vec![9u8; 100]);
        assert_eq!(b.recv_bytes().unwrap(), b"after");
    });
}

#[test]
fn a_byte_receive_that_times_out_mid_body_resumes_intact() {
    deadline(LIMIT, || {
        let (raw, theirs) = mproc_sys::socketpair().unwrap();
        let mut conn: Connection<(), ()> = Connection::from(theirs);
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut frame = frame_header(body.len() as u64);
        frame.extend_from_slice(&body[..6000]);
        mproc_sys::send_with_fds(raw.as_fd(), &frame, &[]).unwrap();
        let mut buf = vec![0u8; 16_384];
        let err = conn
            .recv_bytes_into_timeout(&mut buf, Duration::from_millis(50))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        mproc_sys::send_with_fds(raw.as_fd(), &body[6000..], &[]).unwrap();
        let n = conn
            .recv_bytes_into_timeout(&mut buf, Duration::from_secs(10))
            .unwrap();
        assert_eq!(&buf[..n], &body[..]);
    });
}

#[test]
fn send_timeout_to_a_peer_that_does_not_read() {
    deadline(LIMIT, || {
        let (mut a, mut b) = mproc::pipe::<Vec<u8>>().unwrap();
        let mut sent = 0usize;
        let err = loop {
            match a.send_timeout(&vec![sent as u8; 32 << 10], Duration::from_millis(20)) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::Timeout);
        // The peer reads now: every committed message arrives, then the line is clear.
        let reader = std::thread::spawn(move || {
            (0..sent).all(|i| b.recv().unwrap() == vec![i as u8; 32 << 10])
        });
        a.flush_timeout(Duration::from_secs(30)).unwrap();
        assert!(!a.has_pending_send());
        assert!(reader.join().unwrap());
    });
}

/// Fills `a` with `send_timeout` until one commits only in part (or times out).
fn fill_until_pending(a: &mut Connection<Vec<u8>>) -> usize {
    let mut committed = 0;
    for i in 0..10_000 {
        match a.send_timeout(&vec![i as u8; 40 << 10], Duration::from_millis(5)) {
            Ok(()) => {
                committed += 1;
                if a.has_pending_send() {
                    return committed;
                }
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Timeout),
        }
    }
    panic!("never got a partly sent message");
}

#[test]
fn close_sends_the_rest_of_a_committed_message() {
    deadline(LIMIT, || {
        let (mut a, mut b) = mproc::pipe::<Vec<u8>>().unwrap();
        let committed = fill_until_pending(&mut a);
        let reader = std::thread::spawn(move || {
            (0..committed).all(|i| b.recv().unwrap() == vec![i as u8; 40 << 10])
        });
        a.close().unwrap();
        assert!(
            reader.join().unwrap(),
            "a committed message was lost or damaged"
        );
    });
}

#[test]
fn a_peer_gone_mid_frame_breaks_the_sender_instead_of_corrupting() {
    deadline(LIMIT, || {
        let (mut a, b) = mproc::pipe::<Vec<u8>>().unwrap();
        fill_until_pending(&mut a);
        drop(b);
        // The rest cannot go: the writer is broken, and says so from now on.
        assert_ne!(
            a.flush_timeout(Duration::from_secs(5)).unwrap_err().kind(),
            ErrorKind::Timeout
        );
        let err = a.send(&vec![1]).unwrap_err();
        // Said by the wire, the cause of the pipe's error.
        let mut chain = err.to_string();
        let mut cause = std::error::Error::source(&err);
        while let Some(c) = cause {
            chain = format!("{chain}: {c}");
            cause = c.source();
        }
        assert!(chain.contains("middle of a message"), "{chain}");
    });
}

#[test]
fn size_limits_refuse_on_sending_and_skip_on_receiving() {
    deadline(LIMIT, || {
        let (mut a, mut b) = mproc::pipe::<Vec<u8>>().unwrap();
        a.set_max_message(1024);
        assert_eq!(
            a.send(&vec![0; 2048]).unwrap_err().kind(),
            ErrorKind::TooLarge
        );
        a.set_max_message(1 << 20);
        b.set_max_message(1024);
        a.send(&vec![1; 4096]).unwrap();
        a.send(&vec![2; 10]).unwrap();
        assert_eq!(b.recv().unwrap_err().kind(), ErrorKind::TooLarge);
        assert_eq!(b.recv().unwrap(), vec![2; 10], "the stream stays in sync");
    });
}

#[test]
fn a_malicious_length_prefix_is_an_error_without_allocation_or_desync() {
    deadline(LIMIT, || {
        let (raw, theirs) = mproc_sys::socketpair().unwrap();
        let mut conn: Connection<(), ()> = Connection::from(theirs);
        // 2^62 bytes announced: refused at once, nothing allocated.
        mproc_sys::send_with_fds(raw.as_fd(), &frame_header(1 << 62), &[]).unwrap();
        assert_eq!(conn.recv_bytes().unwrap_err().kind(), ErrorKind::TooLarge);
        // A smaller oversized frame with its body, then a good frame: skipped, then read.
        conn.set_max_message(64);
        let (raw, theirs) = mproc_sys::socketpair().unwrap();
        let mut conn: Connection<(), ()> = Connection::from(theirs);
        conn.set_max_message(64);
        let mut bytes = frame_header(1000);
        bytes.extend(vec![0xEE; 1000]);
        bytes.extend(frame_header(2));
        bytes.extend(b"ok");
        mproc_sys::send_with_fds(raw.as_fd(), &bytes, &[]).unwrap();
        assert_eq!(conn.recv_bytes().unwrap_err().kind(), ErrorKind::TooLarge);
        assert_eq!(conn.recv_bytes().unwrap(), b"ok");
        // Garbage: corrupt, and it stays so.
        mproc_sys::send_with_fds(raw.as_fd(), b"not a frame at all", &[]).unwrap();
        assert_eq!(conn.recv_bytes().unwrap_err().kind(), ErrorKind::Corrupt);
    });
}

#[test]
fn a_pipe_end_sent_through_another_pipe_works_in_the_child() {
    deadline(LIMIT, || {
        let (mut control_tx, control_rx) = mproc::channel::<Connection<String>>().unwrap();
        let mut child = builder().spawn(receive_an_end, control_rx).unwrap();
        let (mut ours, theirs) = mproc::pipe::<String>().unwrap();
        control_tx.send(&theirs).unwrap();
        drop(theirs);
        assert_eq!(ours.recv().unwrap(), "through a pipe");
        ours.send(&"and back".to_string()).unwrap();
        assert_eq!(child.join().unwrap(), "and back");
    });
}

#[test]
fn no_fd_leaks_over_10000_pipes_and_1000_transferred_ends() {
    deadline(LIMIT, || {
        // Other tests of this binary open fds concurrently: measure in a child, alone.
        let mut c = builder().spawn(count_leaks, ()).unwrap();
        let (before, after) = c.join().unwrap();
        assert_eq!(before, after, "fds before and after");
    });
}

fn count_leaks(_: ()) -> (usize, usize) {
    let before = mproc_sys::open_fd_count().unwrap();
    for _ in 0..10_000 {
        let (a, b) = mproc::pipe::<u8>().unwrap();
        drop((a, b));
    }
    let (mut tx, mut rx) = mproc::channel::<Connection<u8>>().unwrap();
    for i in 0..1_000 {
        let (mut a, b) = mproc::pipe::<u8>().unwrap();
        tx.send(&b).unwrap();
        drop(b);
        let mut b = rx.recv().unwrap();
        a.send(&(i as u8)).unwrap();
        assert_eq!(b.recv().unwrap(), i as u8);
    }
    drop((tx, rx));
    (before, mproc_sys::open_fd_count().unwrap())
}

#[test]
fn wait_reports_ready_connections_and_sentinels() {
    deadline(LIMIT, || {
        let (mut a1, b1) = mproc::pipe::<u8>().unwrap();
        let (_a2, b2) = mproc::pipe::<u8>().unwrap();
        let mut child = builder()
            .spawn(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 100)
            .unwrap();
        assert_eq!(
            mproc::wait(&[&b1, &b2], Some(Duration::from_millis(20))).unwrap(),
            Vec::<usize>::new()
        );
        a1.send(&1).unwrap();
        assert_eq!(
            mproc::wait(&[&b1, &b2], Some(Duration::from_secs(10))).unwrap(),
            [0]
        );
        let sentinel = child.sentinel();
        assert_eq!(
            mproc::wait(&[&b2, &sentinel], Some(Duration::from_secs(30))).unwrap(),
            [1]
        );
        child.join().unwrap();
    });
}

fn unique(tag: &str) -> String {
    format!(
        "mproc-test-{tag}-{}-{}",
        std::process::id(),
        mproc::get_start_method()
    )
}

/// Serves `n` authenticated clients on `listener` (echoing with a prefix) and waits for
/// `refusals` refused ones; returns what `accept` reported for those.
fn serve(listener: &mut Listener, n: usize, refusals: usize) -> Vec<ErrorKind> {
    let mut refused = Vec::new();
    let mut served = 0;
    while served < n || refused.len() < refusals {
        match listener.accept_timeout::<String, String>(Duration::from_secs(30)) {
            Ok(mut conn) => {
                let s = conn.recv().unwrap();
                conn.send(&format!("served {s}")).unwrap();
                served += 1;
            }
            Err(e) if e.kind() == ErrorKind::Timeout => panic!("no client within 30 s"),
            Err(e) => refused.push(e.kind()),
        }
    }
    refused
}

#[test]
fn listener_and_client_over_a_name_a_path_and_tcp() {
    deadline(LIMIT, || {
        let dir = std::env::temp_dir().join(unique("path"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        for address in [
            unique("name"),
            path.display().to_string(),
            "tcp://127.0.0.1:0".to_string(),
        ] {
            let mut listener = Listener::bind(address.parse().unwrap(), KEY).unwrap();
            let bound = listener.address().to_string();
            let mut child = builder()
                .spawn(
                    client_round_trip,
                    (bound.clone(), KEY.to_vec(), "hello".into()),
                )
                .unwrap();
            assert!(serve(&mut listener, 1, 0).is_empty());
            assert_eq!(
                child.join().unwrap(),
                Ok("served hello".to_string()),
                "{bound}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_server_may_send_first_right_after_accept() {
    // The verdict and the server's first message can arrive in one receive: the client's
    // connection must keep what its handshake read.
    deadline(LIMIT, || {
        let mut listener = Listener::bind(unique("sendfirst").parse().unwrap(), KEY).unwrap();
        let bound = listener.address().clone();
        let client = std::thread::spawn(move || {
            let mut conn = Client::connect::<u32, String>(&bound, KEY).unwrap();
            std::thread::sleep(Duration::from_millis(100)); // let both frames land together
            (conn.recv().unwrap(), conn.recv().unwrap())
        });
        let mut conn = listener.accept::<String, u32>().unwrap();
        conn.send(&"first".to_string()).unwrap();
        conn.send(&"second".to_string()).unwrap();
        assert_eq!(
            client.join().unwrap(),
            ("first".to_string(), "second".to_string())
        );
    });
}

#[test]
fn a_wrong_key_fails_on_both_sides_and_the_listener_goes_on() {
    deadline(LIMIT, || {
        let mut listener = Listener::bind(unique("wrongkey").parse().unwrap(), KEY).unwrap();
        let bound = listener.address().to_string();
        let mut bad = builder()
            .spawn(
                client_round_trip,
                (bound.clone(), b"wrong".to_vec(), "x".into()),
            )
            .unwrap();
        let mut good = builder()
            .spawn(client_round_trip, (bound, KEY.to_vec(), "y".into()))
            .unwrap();
        let refused = serve(&mut listener, 1, 1);
        assert_eq!(refused, [ErrorKind::Authentication]);
        assert_eq!(bad.join().unwrap(), Err("Authentication".to_string()));
        assert_eq!(good.join().unwrap(), Ok("served y".to_string()));
    });
}

#[test]
fn garbage_and_stalling_peers_are_dropped_without_holding_up_others() {
    deadline(LIMIT, || {
        let mut listener = Listener::bind("tcp://127.0.0.1:0".parse().unwrap(), KEY).unwrap();
        listener.set_handshake_timeout(Duration::from_millis(500));
        let Address::Tcp(addr) = *listener.address() else {
            unreachable!()
        };
        // A staller: connects and says nothing. A garbage sender: a huge length, then noise.
        let staller = std::net::TcpStream::connect(addr).unwrap();
        let mut garbage = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut garbage, &frame_header(1 << 40)).unwrap();
        std::io::Write::write_all(&mut garbage, &[0xAB; 4096]).unwrap();
        // A peer that skips the handshake and sends an application message at once.
        let mut rude = std::net::TcpStream::connect(addr).unwrap();
        let msg = mproc::wire::encode(&"let me in".to_string()).unwrap();
        std::io::Write::write_all(
            &mut rude,
            &[frame_header(msg.bytes().len() as u64), msg.bytes().to_vec()].concat(),
        )
        .unwrap();
        // Good clients are served meanwhile, without waiting for the staller's deadline.
        let bound = listener.address().to_string();
        let mut good = builder()
            .spawn(client_round_trip, (bound.clone(), KEY.to_vec(), "a".into()))
            .unwrap();
        let mut refused = serve(&mut listener, 1, 0);
        assert_eq!(good.join().unwrap(), Ok("served a".to_string()));
        // None of the three ever yields a connection. The rude peer's message is judged as a
        // failed answer (an authentication error); the garbage and the silence are dropped
        // without a word once their deadline passes.
        loop {
            match listener.accept_timeout::<String, String>(Duration::from_millis(1500)) {
                Ok(_) => panic!("an unauthenticated peer got a connection"),
                Err(e) if e.kind() == ErrorKind::Timeout => break,
                Err(e) => refused.push(e.kind()),
            }
        }
        assert_eq!(refused, [ErrorKind::Authentication]);
        drop((staller, garbage, rude));
        // And the listener still serves.
        let mut again = builder()
            .spawn(client_round_trip, (bound, KEY.to_vec(), "b".into()))
            .unwrap();
        serve(&mut listener, 1, 0);
        assert_eq!(again.join().unwrap(), Ok("served b".to_string()));
    });
}

#[test]
fn a_stale_socket_file_is_replaced_but_a_live_one_is_not() {
    deadline(LIMIT, || {
        let dir = std::env::temp_dir().join(unique("stale"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        // A listener that "crashed": its socket file stays, nobody listens.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let address = Address::Path(path.clone());
        let live = Listener::bind(address.clone(), KEY).unwrap();
        // A second listener on a live name is refused.
        assert_eq!(
            Listener::bind(address, KEY).unwrap_err().kind(),
            ErrorKind::Io
        );
        drop(live);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn wait_then_accept_without_blocking_completes_handshakes() {
    // An event loop: wait on the listener (and its handshakes), then accept without waiting.
    deadline(LIMIT, || {
        let mut listener = Listener::bind(unique("evloop").parse().unwrap(), KEY).unwrap();
        let bound = listener.address().clone();
        let client = std::thread::spawn(move || {
            let mut c = Client::connect::<u8, u8>(&bound, KEY).unwrap();
            c.send(&42).unwrap();
        });
        let t0 = Instant::now();
        let mut conn = loop {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the handshake never completed"
            );
            mproc::wait(&[&listener], Some(Duration::from_secs(5))).unwrap();
            match listener.accept_timeout::<u8, u8>(Duration::ZERO) {
                Ok(conn) => break conn,
                Err(e) if e.kind() == ErrorKind::Timeout => continue,
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(conn.recv().unwrap(), 42);
        client.join().unwrap();
    });
}

#[test]
fn bind_never_deletes_a_file_that_is_not_a_socket() {
    deadline(LIMIT, || {
        let dir = std::env::temp_dir().join(unique("notasocket"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notes.txt");
        std::fs::write(&path, b"precious").unwrap();
        assert!(Listener::bind(Address::Path(path.clone()), KEY).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn huge_timeouts_do_not_panic() {
    deadline(LIMIT, || {
        let (mut a, mut b) = mproc::pipe::<u8>().unwrap();
        a.send(&1).unwrap();
        assert_eq!(b.recv_timeout(Duration::MAX).unwrap(), 1);
        let mut c = builder().spawn(|x: u8| x, 3).unwrap();
        assert_eq!(c.join_timeout(Duration::MAX).unwrap(), 3);
    });
}

#[test]
fn an_impostor_listener_is_refused_by_the_client() {
    deadline(LIMIT, || {
        // A server that speaks the protocol but does not know the key.
        let mut impostor =
            Listener::bind("tcp://127.0.0.1:0".parse().unwrap(), b"not the key").unwrap();
        let bound = impostor.address().clone();
        let client = std::thread::spawn(move || {
            Client::connect::<String, String>(&bound, KEY)
                .map(drop)
                .map_err(|e| e.kind())
        });
        let _ = impostor.accept_timeout::<String, String>(Duration::from_secs(10));
        assert_eq!(client.join().unwrap(), Err(ErrorKind::Authentication));
    });
}

#[test]
fn a_server_that_hangs_up_during_the_handshake_is_disconnected_not_a_wrong_key() {
    deadline(LIMIT, || {
        // What a client sees when the listener's process is killed after the kernel
        // queued its connection: the socket is accepted, then closed without a word.
        let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let bound: Address = format!("tcp://{}", gone.local_addr().unwrap())
            .parse()
            .unwrap();
        let client = std::thread::spawn(move || {
            Client::connect::<String, String>(&bound, KEY)
                .map(drop)
                .map_err(|e| e.kind())
        });
        drop(gone.accept().unwrap());
        assert_eq!(client.join().unwrap(), Err(ErrorKind::Disconnected));
    });
}

// ---- the end of the stream, under every method ---------------------------------------

/// Echoes until the stream ends; returns how many it echoed.
fn echo_to_the_end(mut conn: Connection<String>) -> usize {
    let mut n = 0;
    while let Ok(s) = conn.recv() {
        conn.send(&s).unwrap();
        n += 1;
    }
    n
}

/// Sums what arrives until the sender is gone.
fn sum_to_the_end(mut rx: Receiver<u64>) -> u64 {
    let mut sum = 0;
    while let Ok(v) = rx.recv() {
        sum += v;
    }
    sum
}

#[test]
fn a_child_reading_until_the_parent_drops_its_end_sees_the_end() {
    deadline(LIMIT, || {
        // Other pipes open in this process at the fork, which the child must not keep.
        let (bystander, _other) = mproc::pipe::<u8>().unwrap();
        let (mut ours, theirs) = mproc::pipe::<String>().unwrap();
        let mut child = builder().spawn(echo_to_the_end, theirs).unwrap();
        ours.send(&"hello".to_string()).unwrap();
        assert_eq!(ours.recv().unwrap(), "hello");
        drop(ours);
        assert_eq!(child.join_timeout(Duration::from_secs(60)).unwrap(), 1);
        // One-way: the sender's end dropped after the fork.
        let (mut tx, rx) = mproc::channel::<u64>().unwrap();
        let mut child = builder().spawn(sum_to_the_end, rx).unwrap();
        for v in 1..=10 {
            tx.send(&v).unwrap();
        }
        drop(tx);
        assert_eq!(child.join_timeout(Duration::from_secs(60)).unwrap(), 55);
        drop(bystander);
    });
}
