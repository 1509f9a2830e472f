//! The `Listener`'s accept path: a peer connects over a local socket, sends any bytes
//! instead of its answer to the challenge, and stops writing.
//!
//! One listener serves every input, as a server serves every peer. Each input's peer must
//! be dropped (a timeout) or refused (`Authentication`), within the accepts that follow,
//! and the listener must go on accepting: garbage costs it nothing.

#![no_main]

use std::io::Write as _;
use std::net::Shutdown;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mproc_fuzz::check_fds;
use mproc_pipe::{Address, ErrorKind, Listener};

/// The listener, and the abstract socket name it listens on.
fn listener() -> &'static Mutex<(Listener, String)> {
    static LISTENER: OnceLock<Mutex<(Listener, String)>> = OnceLock::new();
    LISTENER.get_or_init(|| {
        let name = format!("mproc-fuzz-listener-{}", std::process::id());
        let listener =
            Listener::bind(Address::Name(name.clone()), b"fuzz key").expect("binding the listener");
        Mutex::new((listener, name))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut guard = listener().lock().unwrap_or_else(PoisonError::into_inner);
    let (listener, name) = &mut *guard;
    let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
    let mut peer = UnixStream::connect_addr(&address).expect("connecting");
    peer.set_nonblocking(true).expect("nonblocking");
    let _ = peer.write(data); // a full socket keeps the rest
    peer.shutdown(Shutdown::Write).expect("shutdown");
    // The first accept takes the peer and sends its challenge; the next reads what it sent.
    let mut outcome = None;
    for _ in 0..3 {
        match listener.accept_timeout::<(), ()>(Duration::ZERO) {
            Err(e) if e.kind() == ErrorKind::Timeout => {}
            other => {
                outcome = Some(other);
                break;
            }
        }
    }
    if let Some(outcome) = outcome {
        let err = outcome.expect_err("a peer that does not know the key was accepted");
        assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    }
    drop(peer);
    check_fds();
});
