//! The client side: each process's connections to a manager, opened on first use, then reused.
//!
//! A process keeps one [`Endpoint`] per manager, shared by every proxy to it. A call takes an
//! idle connection (or opens one: authenticate, then `Hello` with the process's session), does
//! one request and reply on it, and puts it back, so threads call side by side, each on its
//! own connection, and a blocking call (a lock's `acquire`) holds up no one else. A child made
//! by fork does not use its parent's connections: it opens its own.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use mproc_pipe::{Address, Client, Connection};

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{Fault, Out, Owner, Reply, Request};
use crate::spin::Spin;

type Conn = Connection<Request, Reply>;

/// How long connecting and authenticating may take when the call itself has no deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a process's calls to one manager go.
pub(crate) struct Endpoint {
    address: Address,
    authkey: Vec<u8>,
    idle: Mutex<Idle>,
    /// How long a call spins for its reply before it sleeps.
    spin: Spin,
}

/// The connections not in use, and the process they belong to.
struct Idle {
    /// The [`process_tag`] of the process that opened them.
    pid: u64,
    conns: Vec<Conn>,
    /// Connections whose call timed out: each still owes the reply of that call, and is
    /// usable again once the reply came (and was dropped). They stay open meanwhile: the
    /// server counts a process as alive while it has a connection, and releases the locks
    /// of a process it thinks gone.
    late: Vec<Conn>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The endpoint for `address` in this process, shared by every proxy to that manager.
pub(crate) fn endpoint(address: &Address, authkey: &[u8]) -> Arc<Endpoint> {
    static ENDPOINTS: Mutex<Vec<Weak<Endpoint>>> = Mutex::new(Vec::new());
    let mut all = lock(&ENDPOINTS);
    all.retain(|w| w.strong_count() > 0);
    if let Some(e) = all
        .iter()
        .filter_map(Weak::upgrade)
        .find(|e| e.address == *address && e.authkey == authkey)
    {
        return e;
    }
    let e = Arc::new(Endpoint {
        address: address.clone(),
        authkey: authkey.to_vec(),
        idle: Mutex::new(Idle {
            pid: process_tag(),
            conns: Vec::new(),
            late: Vec::new(),
        }),
        spin: Spin::default(),
    });
    all.push(Arc::downgrade(&e));
    e
}

/// Tells this process from a child forked from it, without a system call on every call: a
/// count of forks that the child side of a fork handler bumps (with the pid in the top bits
/// when the handler could not be registered).
fn process_tag() -> u64 {
    static FORKS: AtomicU64 = AtomicU64::new(0);
    static HANDLER: OnceLock<bool> = OnceLock::new();
    extern "C" fn nothing() {}
    extern "C" fn forked() {
        FORKS.fetch_add(1, Ordering::Relaxed);
    }
    if *HANDLER.get_or_init(|| mproc_sys::at_fork(nothing, nothing, forked).is_ok()) {
        FORKS.load(Ordering::Relaxed)
    } else {
        1 << 63 | u64::from(std::process::id())
    }
}

/// This process's session: a random number the server uses to tell processes apart (a lock
/// held by a process that dies is released when its last connection closes). A forked child
/// draws its own.
pub(crate) fn session() -> u64 {
    // Keyed by the same fork tag as the idle connections: a new process, a new session.
    static SESSION: Mutex<Option<(u64, u64)>> = Mutex::new(None);
    let mut s = lock(&SESSION);
    let tag = process_tag();
    match *s {
        Some((t, session)) if t == tag => session,
        _ => {
            let mut bytes = [0u8; 8];
            // Without the kernel's randomness, the pid and the clock still tell processes
            // apart.
            if mproc_sys::random_bytes(&mut bytes).is_err() {
                let pid = u64::from(std::process::id());
                bytes = (pid << 32 ^ mproc_sys::monotonic_ns()).to_le_bytes();
            }
            let session = u64::from_le_bytes(bytes);
            *s = Some((tag, session));
            session
        }
    }
}

/// The calling thread, as a lock's owner.
pub(crate) fn owner() -> Owner {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static THREAD: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    Owner {
        session: session(),
        thread: THREAD.with(|t| *t),
    }
}

impl Endpoint {
    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    pub(crate) fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    /// Sends `request` and waits for its reply, until `deadline` at the latest.
    pub(crate) fn call(&self, request: &Request, deadline: Option<Instant>) -> Result<Out> {
        self.call_with(request, deadline, true)
    }

    /// Like [`call`](Self::call); `quick` says the reply should come at once (the request
    /// does not wait in the server), so the caller spins for it before it sleeps.
    pub(crate) fn call_with(
        &self,
        request: &Request,
        deadline: Option<Instant>,
        quick: bool,
    ) -> Result<Out> {
        let mut conn = self.checkout(deadline)?;
        let spin = quick.then_some(&self.spin);
        let (e, phase) = match exchange(&mut conn, request, deadline, spin) {
            Ok(Ok(out)) => {
                self.checkin(conn);
                return Ok(out);
            }
            Ok(Err((fault, message))) => {
                self.checkin(conn);
                return Err(Error::from_fault(fault, message));
            }
            Err(failure) => failure,
        };
        match (e.kind(), phase) {
            // Nothing went out: the connection is as good as before.
            (ErrorKind::TooLarge | ErrorKind::Encode, _) => self.checkin(conn),
            (ErrorKind::Timeout, Phase::Send) if !conn.has_pending_send() => self.checkin(conn),
            // Half a request went out: the connection cannot be used again. Its replacement
            // comes first, so that the server never sees this process without a connection
            // (it would release the locks the process holds).
            (ErrorKind::Timeout, Phase::Send) => {
                if let Ok(fresh) = self.open(deadline_after(Duration::from_secs(1))) {
                    self.checkin(fresh);
                }
            }
            // The reply may still come: set the connection aside until it has.
            (ErrorKind::Timeout, Phase::Receive) => {
                let mut idle = lock(&self.idle);
                if idle.pid == process_tag() {
                    idle.late.push(conn);
                }
            }
            // The server is gone, or closed the idle connections it had: drop those that
            // are closed (readable while idle), so that the next call connects afresh.
            (ErrorKind::Disconnected, _) => {
                let mut idle = lock(&self.idle);
                idle.conns.retain(|c| !readable(c));
                idle.late.retain(|c| !readable(c));
            }
            _ => {}
        }
        Err(e)
    }

    /// An idle connection of this process, or a new one.
    fn checkout(&self, deadline: Option<Instant>) -> Result<Conn> {
        {
            let mut idle = lock(&self.idle);
            let pid = process_tag();
            if idle.pid != pid {
                // Forked: those are the parent's connections (closing our copies leaves
                // the parent's open).
                idle.conns.clear();
                idle.late.clear();
                idle.pid = pid;
            }
            if !idle.late.is_empty() {
                idle.collect_late();
            }
            if let Some(conn) = idle.conns.pop() {
                return Ok(conn);
            }
        }
        self.open(deadline)
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = lock(&self.idle);
        if idle.pid == process_tag() {
            idle.conns.push(conn);
        }
    }

    /// Connects, authenticates, and introduces this process.
    fn open(&self, deadline: Option<Instant>) -> Result<Conn> {
        let timeout = deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(CONNECT_TIMEOUT)
            .min(CONNECT_TIMEOUT)
            .max(Duration::from_millis(1));
        let mut conn =
            Client::connect_timeout::<Request, Reply>(&self.address, &self.authkey, timeout)
                .map_err(|e| {
                    let doing = format!("connecting to the manager at {}", self.address);
                    let err = Error::pipe(&doing, e);
                    match err.kind() {
                        ErrorKind::Authentication | ErrorKind::Timeout => err,
                        // Nobody listens there any more.
                        _ => Error::new(ErrorKind::Disconnected, format!("{doing}: it is gone"))
                            .with_source(err),
                    }
                })?;
        let hello = Request::Hello { session: session() };
        let deadline = Some(deadline.unwrap_or_else(|| Instant::now() + CONNECT_TIMEOUT));
        match exchange(&mut conn, &hello, deadline, None).map_err(|(e, _)| e)? {
            Ok(Out::Num(max_message)) => {
                conn.set_max_message(max_message);
                Ok(conn)
            }
            Ok(_) => Err(Error::unexpected()),
            Err((Fault::Busy, message)) => Err(Error::new(ErrorKind::Busy, message)),
            Err((fault, message)) => Err(Error::from_fault(fault, message)),
        }
    }
}

impl Idle {
    /// Returns to use the late connections whose reply has come; drops broken ones.
    fn collect_late(&mut self) {
        for mut conn in std::mem::take(&mut self.late) {
            match conn.try_recv() {
                Ok(Some(_late_reply)) => self.conns.push(conn),
                Ok(None) => self.late.push(conn),
                Err(_) => {}
            }
        }
    }
}

/// Whether an idle connection has something to read: an end of stream (its server closed
/// it) or bytes nobody asked for; either way it cannot be used.
fn readable(conn: &Conn) -> bool {
    !matches!(
        mproc_sys::poll_readable(&[conn.as_fd()], Some(Duration::ZERO)).as_deref(),
        Ok([false])
    )
}

/// Where an exchange failed.
#[derive(Clone, Copy, Debug)]
enum Phase {
    Send,
    Receive,
}

/// One request and its reply on `conn`.
fn exchange(
    conn: &mut Conn,
    request: &Request,
    deadline: Option<Instant>,
    spin: Option<&Spin>,
) -> std::result::Result<Reply, (Error, Phase)> {
    let left = |d: Instant| d.saturating_duration_since(Instant::now());
    let sent = match deadline {
        None => conn.send(request),
        Some(d) => conn.send_timeout(request, left(d)).and_then(|()| {
            while conn.has_pending_send() {
                conn.flush_timeout(left(d))?;
            }
            Ok(())
        }),
    };
    sent.map_err(|e| {
        (
            Error::pipe("sending a request to the manager", e),
            Phase::Send,
        )
    })?;
    let spun = match spin {
        Some(spin) => spin.recv(conn, deadline),
        None => Ok(None),
    };
    let reply = match (spun, deadline) {
        (Ok(Some(reply)), _) => Ok(reply),
        (Err(e), _) => Err(e),
        (Ok(None), None) => conn.recv(),
        (Ok(None), Some(d)) => conn.recv_timeout(left(d)),
    };
    reply.map_err(|e| {
        let error = match e.kind() {
            mproc_pipe::ErrorKind::Timeout => Error::new(
                ErrorKind::Timeout,
                "the manager did not answer in time; the call may or may not have taken effect",
            ),
            mproc_pipe::ErrorKind::Disconnected => Error::new(
                ErrorKind::Disconnected,
                "the manager's server is gone (shut down or killed)",
            ),
            _ => Error::pipe("receiving the manager's reply", e),
        };
        (error, Phase::Receive)
    })
}

/// `Instant::now() + d`, or `None` when that is too far away to represent.
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    mproc_sys::deadline_after(d)
}
