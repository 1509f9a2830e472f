//! `Listener` and `Client`: connections between unrelated processes, over a local socket
//! (through interprocess: a Unix domain socket here) or TCP, after mutual authentication.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::str::FromStr;
use std::time::{Duration, Instant};

use interprocess::local_socket::{
    self as ls, GenericFilePath, GenericNamespaced, ListenerNonblockingMode, ListenerOptions,
    ToFsName, ToNsName, traits::Listener as _,
};
use mproc_wire::{ErrorKind as WireKind, FrameReader};

use crate::auth::{self, NONCE_LEN};
use crate::connection::{Connection, Transport};
use crate::error::{Error, ErrorKind, Result};

#[cfg(feature = "tokio")]
mod async_accept;

/// A deadline too far away to represent: a year is as good as never here.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

/// The most handshakes in progress at once; a connection beyond it takes the place of the
/// oldest, so a crowd of silent peers can neither exhaust our fds nor lock everyone out (a
/// real peer answers its challenge in one round trip).
const MAX_PENDING: usize = 128;

/// A TCP peer silent this long is probed; unanswered probes every `KEEPALIVE_INTERVAL`,
/// `KEEPALIVE_PROBES` of them, end the connection (a vanished machine is noticed in about
/// 25 s instead of never).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 3;

/// Sets up a TCP connection: no Nagle delay, and keepalive.
fn tune_tcp(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let _ = mproc_sys::set_tcp_keepalive(
        s.as_fd(),
        KEEPALIVE_IDLE,
        KEEPALIVE_INTERVAL,
        KEEPALIVE_PROBES,
    );
}

/// How long a connecting peer may take to authenticate before it is dropped.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a [`Listener`] listens and a [`Client`] connects.
///
/// Parsed from a string: `tcp://IP:PORT`, `IP:PORT` or `HOST:PORT` (resolved when parsed)
/// is TCP; a string with a `/` is a local socket at that path in the filesystem; any other
/// string is a local socket name in the abstract namespace (Linux: no file, nothing to
/// clean up).
///
/// ```
/// use mproc_pipe::Address;
/// assert!(matches!("127.0.0.1:0".parse::<Address>()?, Address::Tcp(_)));
/// assert!(matches!("localhost:5000".parse::<Address>()?, Address::Tcp(_)));
/// assert!(matches!("/tmp/my.sock".parse::<Address>()?, Address::Path(_)));
/// assert!(matches!("my-service".parse::<Address>()?, Address::Name(_)));
/// # Ok::<(), mproc_pipe::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A local socket with a file at this path.
    Path(std::path::PathBuf),
    /// A local socket name in the abstract namespace (no file).
    Name(String),
    /// A TCP address. OS handles cannot travel over TCP.
    Tcp(SocketAddr),
}

impl FromStr for Address {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::new(ErrorKind::Io, format!("not an address: {s:?}"));
        if let Some(rest) = s.strip_prefix("tcp://") {
            return rest.parse().map(Address::Tcp).map_err(|_| bad());
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Address::Tcp(addr));
        }
        // `host:port` with a name: TCP too, resolved now (not a local socket named so).
        if let Some((host, port)) = s.rsplit_once(':')
            && !host.is_empty()
            && !s.contains('/')
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
        {
            use std::net::ToSocketAddrs;
            return s
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
                .map(Address::Tcp)
                .ok_or_else(bad);
        }
        if s.is_empty() {
            return Err(bad());
        }
        Ok(if s.contains('/') {
            Address::Path(s.into())
        } else {
            Address::Name(s.to_string())
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Path(p) => write!(f, "{}", p.display()),
            Address::Name(n) => f.write_str(n),
            Address::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

enum Inner {
    Local(ls::Listener),
    Tcp(TcpListener),
}

/// A connection being authenticated.
struct Pending {
    sock: OwnedFd,
    transport: Transport,
    reader: FrameReader,
    nonce: [u8; NONCE_LEN],
    deadline: Instant,
}

/// Accepts authenticated connections: Python's `multiprocessing.connection.Listener`.
///
/// Every connecting peer must prove it knows the key (and learns that the listener does)
/// before [`accept`](Self::accept) hands out its connection. Peers that give a wrong key,
/// send garbage or stall are dropped after the handshake deadline, and the handshakes of
/// several peers run side by side, so such peers never hold up the others. TCP connections
/// (both ends) probe a silent peer: one whose machine vanished is noticed in about 25 s, and
/// a blocked receive then fails instead of waiting for ever.
///
/// ```
/// use mproc_pipe::{Client, Listener};
/// let mut listener = Listener::bind("tcp://127.0.0.1:0".parse()?, b"secret")?;
/// let address = listener.address().clone();
/// let client = std::thread::spawn(move || {
///     let mut conn = Client::connect::<String, String>(&address, b"secret")?;
///     conn.send(&"hello".to_string())?;
///     conn.recv()
/// });
/// let mut conn = listener.accept::<String, String>()?;
/// let greeting = conn.recv()?;
/// conn.send(&format!("{greeting} back"))?;
/// assert_eq!(client.join().unwrap()?, "hello back");
/// # Ok::<(), mproc_pipe::Error>(())
/// ```
pub struct Listener {
    inner: Inner,
    address: Address,
    key: Vec<u8>,
    pending: Vec<Pending>,
    handshake_timeout: Duration,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("pending", &self.pending.len())
            .finish()
    }
}

fn local_name(address: &Address) -> std::io::Result<ls::Name<'_>> {
    match address {
        Address::Path(p) => p.as_path().to_fs_name::<GenericFilePath>(),
        Address::Name(n) => n.as_str().to_ns_name::<GenericNamespaced>(),
        Address::Tcp(_) => unreachable!("not a local address"),
    }
}

fn bind_local(address: &Address) -> std::io::Result<ls::Listener> {
    let create = || {
        ListenerOptions::new()
            .name(local_name(address)?)
            .nonblocking(ListenerNonblockingMode::Accept)
            .create_sync()
    };
    match (create(), address) {
        (Err(e), Address::Path(path)) if e.kind() == std::io::ErrorKind::AddrInUse => {
            // A socket file is there. If nobody listens on it, it is left over from a
            // listener that crashed: replace it. If somebody does (or it is not a socket at
            // all), the name is taken; nothing else is ever deleted.
            use std::os::unix::fs::FileTypeExt;
            let is_socket =
                std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
            let probe = ls::ConnectOptions::new()
                .name(local_name(address)?)
                .wait_mode(interprocess::ConnectWaitMode::Timeout(
                    Duration::from_millis(200),
                ))
                .connect_sync();
            match probe {
                Err(c) if is_socket && c.kind() == std::io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)?;
                    create()
                }
                _ => Err(e),
            }
        }
        (r, _) => r,
    }
}

impl Listener {
    /// Listens on `address` for peers that know `authkey`.
    ///
    /// A socket file left behind by a crashed listener is replaced (nobody answers on it);
    /// one that a live listener uses is an error.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the address is taken or cannot be bound.
    pub fn bind(address: Address, authkey: &[u8]) -> Result<Self> {
        let (inner, address) = match &address {
            Address::Tcp(addr) => {
                let l = TcpListener::bind(addr)
                    .map_err(|e| Error::io(&format!("binding {address}"), e))?;
                l.set_nonblocking(true)
                    .map_err(|e| Error::io("configuring the listener", e))?;
                let bound = l
                    .local_addr()
                    .map_err(|e| Error::io("reading the bound address", e))?;
                (Inner::Tcp(l), Address::Tcp(bound))
            }
            _ => {
                let l = bind_local(&address)
                    .map_err(|e| Error::io(&format!("binding {address}"), e))?;
                (Inner::Local(l), address)
            }
        };
        Ok(Self {
            inner,
            address,
            key: authkey.to_vec(),
            pending: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Returns the address listened on (for TCP port 0, with the port the OS chose).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Sets how long a connecting peer may take to authenticate (default 5 s).
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake_timeout = timeout;
    }

    /// Waits for the next authenticated peer and returns its connection (Python's
    /// `accept()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Authentication`] when a peer presented a wrong key (as Python's
    /// `accept` raises `AuthenticationError`); that peer is dropped and the listener can
    /// accept again at once. Peers that send garbage or stall are dropped silently.
    /// [`ErrorKind::Io`] when the listening socket fails.
    pub fn accept<S, R>(&mut self) -> Result<Connection<S, R>> {
        self.accept_until(None)
    }

    /// Like [`accept`](Self::accept), giving up after `timeout` with
    /// [`ErrorKind::Timeout`]. Peers in the middle of authenticating are kept for the next
    /// call.
    pub fn accept_timeout<S, R>(&mut self, timeout: Duration) -> Result<Connection<S, R>> {
        self.accept_until(mproc_sys::deadline_after(timeout))
    }

    fn accept_until<S, R>(&mut self, deadline: Option<Instant>) -> Result<Connection<S, R>> {
        loop {
            let now = Instant::now();
            self.pending.retain(|p| p.deadline > now);
            let wake = self
                .pending
                .iter()
                .map(|p| p.deadline)
                .chain(deadline)
                .min();
            let mut fds = vec![self.as_fd()];
            fds.extend(self.pending.iter().map(|p| p.sock.as_fd()));
            let timeout = wake.map(|w| w.saturating_duration_since(now));
            let ready = mproc_sys::poll_readable(&fds, timeout)
                .map_err(|e| Error::io("waiting for peers", e))?;
            // Progress the handshakes that have something to read.
            let readable: Vec<usize> = (0..self.pending.len()).filter(|i| ready[i + 1]).collect();
            for i in readable.into_iter().rev() {
                if let Some(outcome) = self.progress(i) {
                    return outcome;
                }
            }
            if ready[0] {
                self.accept_new()?;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "no authenticated peer arrived in time",
                ));
            }
        }
    }

    /// Accepts every connection waiting in the backlog and sends each its challenge.
    fn accept_new(&mut self) -> Result<()> {
        let mut took_one = false;
        loop {
            let accepted = match &self.inner {
                Inner::Local(l) => l.accept().map(|s| (local_stream_fd(s), Transport::Unix)),
                Inner::Tcp(l) => l.accept().map(|(s, _)| {
                    tune_tcp(&s);
                    (OwnedFd::from(s), Transport::Tcp)
                }),
            };
            let (sock, transport) = match accepted {
                Ok(a) => a,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
                // Linux reports a full fd table before an empty backlog: once this round
                // has taken a connection, that is no failure (it is served, and the others
                // wait in the backlog until fds are free).
                Err(e)
                    if took_one
                        && matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(Error::io("accepting a connection", e)),
            };
            took_one = true;
            if self.pending.len() >= MAX_PENDING {
                let oldest = (0..self.pending.len()).min_by_key(|&i| self.pending[i].deadline);
                if let Some(i) = oldest {
                    self.pending.swap_remove(i);
                }
            }
            let nonce = auth::nonce()?;
            // A peer that is gone before its challenge is simply forgotten.
            if mproc_wire::write_frame(sock.as_fd(), &auth::challenge(&nonce), &[], &auth::limits())
                .is_ok()
            {
                let deadline =
                    mproc_sys::deadline_after(self.handshake_timeout).unwrap_or_else(far_future);
                self.pending.push(Pending {
                    sock,
                    transport,
                    reader: FrameReader::new(),
                    nonce,
                    deadline,
                });
            }
        }
    }

    /// Reads what pending peer `i` sent; returns its connection once it is authenticated,
    /// or an authentication error when it presented a wrong key.
    fn progress<S, R>(&mut self, i: usize) -> Option<Result<Connection<S, R>>> {
        let p = &mut self.pending[i];
        let answer = match p
            .reader
            .read(p.sock.as_fd(), &auth::limits(), Some(Instant::now()))
        {
            Ok(answer) => answer,
            Err(e) if e.kind() == WireKind::Timeout => return None, // more to come
            Err(_) => {
                self.pending.swap_remove(i); // garbage, oversized, or gone
                return None;
            }
        };
        let p = self.pending.swap_remove(i);
        let (verdict, ok) = auth::judge(&self.key, &p.nonce, answer.bytes());
        let sent = mproc_wire::write_frame(p.sock.as_fd(), &verdict, &[], &auth::limits());
        match (ok, sent) {
            (true, Ok(())) => Some(Ok(Connection::with_reader(p.sock, p.transport, p.reader))),
            (true, Err(_)) => None, // authenticated, then gone at once
            (false, _) => Some(Err(Error::auth(
                "a peer presented a wrong authentication key; it was dropped",
            ))),
        }
    }
}

fn local_stream_fd(stream: ls::Stream) -> OwnedFd {
    match stream {
        ls::Stream::UdSocket(s) => OwnedFd::from(s),
    }
}

impl Listener {
    /// The listening fd and those of the handshakes in progress (for `wait`).
    pub(crate) fn all_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = vec![self.as_fd()];
        fds.extend(self.pending.iter().map(|p| p.sock.as_fd()));
        fds
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.inner {
            Inner::Local(ls::Listener::UdSocket(l)) => l.as_fd(),
            Inner::Tcp(l) => l.as_fd(),
        }
    }
}

/// Connects to a [`Listener`]: Python's `multiprocessing.connection.Client`.
#[derive(Debug)]
pub struct Client(());

impl Client {
    /// Connects to `address` and authenticates with `authkey`, both ways, within 5 s.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Authentication`] when the listener refuses the key, does not know it
    /// itself, or is not an mproc listener; [`ErrorKind::Io`] when nobody listens there.
    ///
    /// ```no_run
    /// let mut conn = mproc_pipe::Client::connect::<String, String>(&"my-service".parse()?, b"secret")?;
    /// conn.send(&"hi".to_string())?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn connect<S, R>(address: &Address, authkey: &[u8]) -> Result<Connection<S, R>> {
        Self::connect_timeout(address, authkey, DEFAULT_HANDSHAKE_TIMEOUT)
    }

    /// Like [`connect`](Self::connect), with `timeout` for connecting and authenticating.
    pub fn connect_timeout<S, R>(
        address: &Address,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<Connection<S, R>> {
        let deadline = mproc_sys::deadline_after(timeout).unwrap_or_else(far_future);
        let fail = |e| Error::io(&format!("connecting to {address}"), e);
        let (sock, transport) = match address {
            Address::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, timeout).map_err(fail)?;
                tune_tcp(&s);
                (OwnedFd::from(s), Transport::Tcp)
            }
            _ => {
                let name = local_name(address).map_err(fail)?;
                let s = ls::ConnectOptions::new()
                    .name(name)
                    .wait_mode(interprocess::ConnectWaitMode::Timeout(timeout))
                    .connect_sync()
                    .map_err(fail)?;
                (local_stream_fd(s), Transport::Unix)
            }
        };
        let reader = auth::client_handshake(sock.as_fd(), authkey, deadline)?;
        Ok(Connection::with_reader(sock, transport, reader))
    }
}
