//! The fork server: a single-threaded process, started once by the spawn method, that
//! forks children on request.
//!
//! The parent sends `Fork { daemon, env }` with two fds: the child's end of its data socket,
//! and the write end of a status socket. The server forks; the child serves its request on
//! the data socket exactly like a spawned child; the server replies with the pid and a pidfd
//! of the child, and when it reaps the child it writes the exit status (8 bytes) on the
//! status socket. The server watches its parent through a pidfd: when the parent process
//! ends, it kills its daemonic children and exits. A dead server is noticed and replaced on
//! the next request.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mproc_sys::{ForkOutcome, ForkPermit};
use mproc_wire::{ErrorKind as WireKind, Fd, FrameReader, Limits, Message};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::{Builder, Child, StartMethod};

#[derive(Serialize, Deserialize)]
struct ForkRequest {
    daemon: bool,
    /// What changed in the parent's environment since the server started, and its working
    /// directory if that changed too: the child starts with the parent's present, not with
    /// the server's (the parent's of when the server started).
    changes: Vec<(OsString, Option<OsString>)>,
    cwd: Option<OsString>,
    /// The `Builder`'s overrides, applied after.
    env: Vec<(OsString, Option<OsString>)>,
    data: Fd,
    status: Fd,
    /// The child's request (the bytes and fds of its message), handed over with the fork.
    request: Vec<u8>,
    request_fds: Vec<Fd>,
}

/// The borrowed form of `ForkRequest` that the parent serializes (same wire shape: an
/// `Fd` travels as its index among the frame's fds). The fds go out borrowed, beside the
/// bytes, in index order: the data socket, the status socket, then the request's own, so
/// none is duplicated on the way.
#[derive(Serialize)]
struct ForkRequestRef<'a> {
    daemon: bool,
    changes: Vec<(OsString, Option<OsString>)>,
    cwd: Option<OsString>,
    env: &'a [(OsString, Option<OsString>)],
    data: u32,
    status: u32,
    request: &'a [u8],
    request_fds: &'a [u32],
}

#[derive(Serialize, Deserialize)]
enum ForkReply {
    Forked { pid: u32, pidfd: Fd },
    Failed(String),
}

pub(crate) struct Server {
    child: Child<()>,
    control: OwnedFd,
    reader: FrameReader,
    /// The environment and directory the server started with.
    born: Snapshot,
}

/// A process's environment and working directory at one moment: what a fork server has,
/// since it started from them.
struct Snapshot {
    env: std::collections::HashMap<OsString, OsString>,
    cwd: Option<PathBuf>,
}

impl Snapshot {
    fn now() -> Self {
        Snapshot {
            env: std::env::vars_os().collect(),
            cwd: std::env::current_dir().ok(),
        }
    }

    /// The variables set, changed or removed since: usually none, and then the child has
    /// nothing to do.
    fn env_changes(&self) -> Vec<(OsString, Option<OsString>)> {
        let mut changes = Vec::new();
        let mut seen = 0;
        for (k, v) in std::env::vars_os() {
            match self.env.get(&k) {
                Some(was) => {
                    seen += 1;
                    if *was != v {
                        changes.push((k, Some(v)));
                    }
                }
                None => changes.push((k, Some(v))),
            }
        }
        if seen < self.env.len() {
            let gone = self.env.keys().filter(|k| std::env::var_os(k).is_none());
            changes.extend(gone.map(|k| (k.clone(), None)));
        }
        changes
    }

    /// The working directory, if it is not the one of the snapshot.
    fn cwd_change(&self) -> Option<OsString> {
        let now = std::env::current_dir().ok()?;
        (self.cwd.as_ref() != Some(&now)).then(|| now.into_os_string())
    }
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// The lock of the fork server connection (held across a fork; see `ForkGuards`).
pub(crate) type ServerGuard<'a> = std::sync::MutexGuard<'a, Option<Server>>;

pub(crate) fn lock_server() -> ServerGuard<'static> {
    SERVER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Returns the pid of this process's fork server, if one is running (for diagnostics).
///
/// ```
/// // No child was started through the fork server in this doctest.
/// assert_eq!(mproc_process::fork_server_pid(), None);
/// ```
pub fn fork_server_pid() -> Option<u32> {
    lock_server()
        .as_ref()
        .filter(|s| s.child.is_alive())
        .map(|s| s.child.pid())
}

/// How long a healthy server may take to answer a fork request.
const REPLY_DEADLINE: Duration = Duration::from_secs(30);

fn limits() -> Limits {
    Limits::default()
}

fn start_server() -> Result<Server> {
    let (ours, theirs) =
        mproc_sys::socketpair().map_err(|e| Error::io("creating the fork server's socket", e))?;
    let born = Snapshot::now();
    let child = Builder::new()
        .name("ForkServer")
        .start_method(StartMethod::Spawn)
        .spawn_hidden(serve, Fd::from(theirs))?;
    Ok(Server {
        child,
        control: ours,
        reader: FrameReader::new(),
        born,
    })
}

fn fail(what: &str, e: mproc_wire::Error) -> Error {
    Error::new(ErrorKind::ForkServer, format!("fork server: {what}")).with_source(e)
}

/// Why a fork request failed, which decides what becomes of the server.
enum ForkFailure {
    /// Nothing reached the server (it is gone): no child exists; replace it, try again.
    NotSent(Error),
    /// The server answered that it could not fork (say, EAGAIN at a pids limit), or we
    /// failed before sending: no child exists, and the server is healthy.
    Refused(Error),
    /// The server took the request but gave no usable answer: it may have forked, so the
    /// request must not be sent again; the server is replaced.
    Broken(Error),
    /// The server died with the request unread (its socket was closed with our bytes in
    /// it: `ECONNRESET`): no child exists; replace it, try again.
    NotTaken(Error),
}

/// Stops a server that is broken or gone, and reaps it.
fn retire(server: Option<Server>) {
    if let Some(mut server) = server {
        let _ = server.child.kill();
        let _ = server.child.wait_timeout(Duration::from_secs(5));
    }
}

/// A fork server of your own, forked from this process: the children it starts are
/// forks of this process *as it was when the server started*, so they see the memory of
/// that moment (statics, anything set up before), as fork children do, while this
/// process may have started threads since. Their environment and working directory are
/// this process's at each spawn, as for every child.
///
/// This is how a pool with the fork start method replaces its workers: its manager thread
/// cannot fork the (by then multi-threaded) parent, so it asks the server. Children start
/// with [`Builder::fork_server`]; their [`start_method`](Child::start_method) is `Fork`.
/// The server copies every fd this process had when it started (as any fork does), except
/// mproc's own handles (pipe ends, queue sockets, children), which a fork child closes
/// (see [`StartMethod::Fork`]), and keeps them open while it runs; dropping the last
/// handle kills it. A server that died is
/// not replaced (its snapshot is gone): starting a child through it fails with
/// [`ErrorKind::ForkServer`].
///
/// ```
/// use std::sync::Arc;
/// use mproc_process::{Builder, ForkServer, StartMethod};
/// fn answer(_: ()) -> u32 { 42 }
/// # mproc_process::init();
/// let server = Arc::new(ForkServer::start(None)?);
/// let mut child = Builder::new().fork_server(server.clone()).spawn(answer, ())?;
/// assert_eq!(child.start_method(), StartMethod::Fork);
/// assert_eq!(child.join()?, 42);
/// # Ok::<(), mproc_process::Error>(())
/// ```
pub struct ForkServer {
    server: Mutex<Option<Server>>,
}

impl std::fmt::Debug for ForkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkServer")
            .field("pid", &self.pid())
            .finish()
    }
}

impl ForkServer {
    /// Forks the server from this process now.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ForkRefused`] when other threads exist and no `permit` is given (the
    /// fork method's rule), [`ErrorKind::NotInitialized`] without `init()`,
    /// [`ErrorKind::Io`] when the OS refuses.
    pub fn start(permit: Option<ForkPermit>) -> Result<Self> {
        let (ours, theirs) = mproc_sys::socketpair()
            .map_err(|e| Error::io("creating the fork server's socket", e))?;
        let mut builder = Builder::new()
            .name("ForkServer")
            .start_method(StartMethod::Fork);
        if let Some(p) = permit {
            builder = builder.fork_permit(p);
        }
        let born = Snapshot::now();
        let child = builder.spawn_hidden(serve, Fd::from(theirs))?;
        Ok(ForkServer {
            server: Mutex::new(Some(Server {
                child,
                control: ours,
                reader: FrameReader::new(),
                born,
            })),
        })
    }

    /// Returns the server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.lock()
            .as_ref()
            .filter(|s| s.child.is_alive())
            .map(|s| s.child.pid())
    }

    fn lock(&self) -> ServerGuard<'_> {
        self.server.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn fork_child(
        &self,
        data: OwnedFd,
        daemon: bool,
        env: &[(OsString, Option<OsString>)],
        request: Message,
    ) -> Result<(u32, OwnedFd, OwnedFd)> {
        fork_via(&mut self.lock(), None, data, daemon, env, request)
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        retire(self.lock().take());
    }
}

/// Asks the fork server (starting or restarting it as needed) for a child whose data socket
/// is `data`. Returns its pid, a pidfd, and the socket its exit status will arrive on.
pub(crate) fn fork_child(
    data: OwnedFd,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
    request: Message,
) -> Result<(u32, OwnedFd, OwnedFd)> {
    fork_via(
        &mut lock_server(),
        Some(start_server),
        data,
        daemon,
        env,
        request,
    )
}

/// One child of a batch: its data socket and its request.
pub(crate) struct ForkJob {
    pub data: OwnedFd,
    pub request: Message,
}

/// Asks the fork server (or `server`, a private one) for several children at once: every
/// request is sent before the first answer is read, so the server forks the next child
/// while this process handles the previous one. Returns one outcome per job, in order.
pub(crate) fn fork_children(
    server: Option<&ForkServer>,
    jobs: Vec<ForkJob>,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
) -> Vec<Result<(u32, OwnedFd, OwnedFd)>> {
    match server {
        Some(s) => fork_batch(&mut s.lock(), None, jobs, daemon, env),
        None => fork_batch(&mut lock_server(), Some(start_server), jobs, daemon, env),
    }
}

/// A batch's first request goes alone, the careful way: a server killed just before it
/// (whose socket then resets with the request unread) is replaced and the request sent
/// again, as for a single spawn. Only a request alone can be retried so: once several are
/// in the socket, a reset does not tell which of them the server took. The rest follow
/// pipelined, to the server that answered.
fn fork_batch(
    slot: &mut Option<Server>,
    restart: Option<fn() -> Result<Server>>,
    mut jobs: Vec<ForkJob>,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
) -> Vec<Result<(u32, OwnedFd, OwnedFd)>> {
    if restart.is_none() || jobs.is_empty() {
        return pipeline(slot, restart, jobs, daemon, env);
    }
    let first = jobs.remove(0);
    let mut out = vec![fork_via(
        slot,
        restart,
        first.data,
        daemon,
        env,
        first.request,
    )];
    out.extend(pipeline(slot, restart, jobs, daemon, env));
    out
}

/// Sends every request of a batch before reading the first answer (see `fork_batch`).
fn pipeline(
    slot: &mut Option<Server>,
    restart: Option<fn() -> Result<Server>>,
    jobs: Vec<ForkJob>,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
) -> Vec<Result<(u32, OwnedFd, OwnedFd)>> {
    if jobs.is_empty() {
        return Vec::new();
    }
    let not_started = || {
        Error::new(
            ErrorKind::ForkServer,
            "fork server: not started, an earlier request of the batch failed",
        )
    };
    let mut jobs: Vec<BatchJob> = jobs
        .into_iter()
        .map(|j| {
            let (request, fds) = j.request.into_parts();
            (j.data, request, fds.into_iter().map(Fd::from).collect())
        })
        .collect();
    let n = jobs.len();
    let alive = slot.as_ref().is_some_and(|s| s.child.is_alive());
    let Some(server) = slot.as_mut().filter(|_| alive) else {
        // No server yet, or a dead one: the careful way, one by one (it starts one).
        return one_by_one(slot, restart, jobs, daemon, env);
    };
    // Send the requests, reading the answers in order, with at most `BATCH_IN_FLIGHT`
    // requests unanswered: neither side's socket buffer can fill up.
    let mut pending = std::collections::VecDeque::new();
    let mut out = Vec::with_capacity(n);
    let mut failure = None;
    let mut broken = false;
    let mut sent = 0;
    for (data, request, fds) in &jobs {
        if pending.len() >= BATCH_IN_FLIGHT {
            let status = pending.pop_front().expect("not empty");
            out.push(read_reply_of_batch(server, status, &mut broken));
            if broken {
                break;
            }
        }
        match send_fork(server, data, daemon, env, request, fds) {
            Ok(status) => {
                pending.push_back(status);
                sent += 1;
            }
            Err(f) => {
                failure = Some(f);
                break;
            }
        }
    }
    if sent == 0 && matches!(failure, Some(ForkFailure::NotSent(_))) && restart.is_some() {
        // The server died just now, before taking anything: replace it and go the careful
        // way.
        retire(slot.take());
        return one_by_one(slot, restart, jobs, daemon, env);
    }
    // What was sent is the server's now: close ours while it forks.
    let unsent = jobs.split_off(sent);
    drop(jobs);
    for status in pending {
        if broken {
            // After an answer that went wrong the stream is out of step: no more reading.
            drop(status);
            out.push(Err(Error::new(
                ErrorKind::ForkServer,
                "fork server: no answer read, an earlier answer of the batch went wrong",
            )));
        } else {
            out.push(read_reply_of_batch(server, status, &mut broken));
        }
    }
    let mut unsent = unsent.into_iter();
    if let Some(f) = failure {
        broken |= !matches!(f, ForkFailure::Refused(_));
        unsent.next(); // the job whose request failed
        out.push(Err(f.into_error()));
    }
    out.extend(unsent.map(|_| Err(not_started())));
    if broken {
        // The stream may be out of step with the server: replace it (it is restarted on
        // the next request, or, for a private server, reported dead from then on).
        retire(slot.take());
    }
    out
}

/// At most this many requests of a batch wait for their answers at once.
const BATCH_IN_FLIGHT: usize = 16;

/// Reads the answer to a request of a batch; a failure other than the server's refusal
/// marks the stream `broken`.
fn read_reply_of_batch(
    server: &mut Server,
    status: OwnedFd,
    broken: &mut bool,
) -> Result<(u32, OwnedFd, OwnedFd)> {
    read_fork_reply(server, status).map_err(|f| {
        *broken |= !matches!(f, ForkFailure::Refused(_));
        f.into_error()
    })
}

/// A job of a batch, taken apart: its data socket, its request's bytes and fds.
type BatchJob = (OwnedFd, Vec<u8>, Vec<Fd>);

/// Sends a batch's requests the careful way, one after the other (each may start or
/// replace the server).
fn one_by_one(
    slot: &mut Option<Server>,
    restart: Option<fn() -> Result<Server>>,
    jobs: Vec<BatchJob>,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
) -> Vec<Result<(u32, OwnedFd, OwnedFd)>> {
    jobs.into_iter()
        .map(|(data, request, fds)| {
            let fds = fds.into_iter().map(Fd::into_owned).collect();
            fork_via(
                slot,
                restart,
                data,
                daemon,
                env,
                Message::from_parts(request, fds),
            )
        })
        .collect()
}

impl ForkFailure {
    fn into_error(self) -> Error {
        match self {
            ForkFailure::NotSent(e)
            | ForkFailure::Refused(e)
            | ForkFailure::Broken(e)
            | ForkFailure::NotTaken(e) => e,
        }
    }
}

/// Asks the server in `slot` for a child; `restart` starts a new server when there is none
/// or it died (without it, a dead server is an error).
fn fork_via(
    slot: &mut Option<Server>,
    restart: Option<fn() -> Result<Server>>,
    data: OwnedFd,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
    request: Message,
) -> Result<(u32, OwnedFd, OwnedFd)> {
    let (request, request_fds) = request.into_parts();
    let request_fds: Vec<Fd> = request_fds.into_iter().map(Fd::from).collect();
    let guard = slot;
    for attempt in 0..2 {
        if guard.as_ref().is_none_or(|s| !s.child.is_alive()) {
            let replacing = guard.is_some() || attempt > 0;
            retire(guard.take());
            let Some(restart) = restart else {
                return Err(Error::new(
                    ErrorKind::ForkServer,
                    "this fork server has ended (it is not restarted: its snapshot of the \
                     parent is gone)",
                ));
            };
            *guard = Some(restart()?);
            if replacing {
                crate::diag::debug!(
                    "the fork server was gone; a new one runs (pid {:?})",
                    guard.as_ref().map(|s| s.child.pid())
                );
            }
        }
        let server = guard.as_mut().expect("started above");
        match send_fork(server, &data, daemon, env, &request, &request_fds) {
            Ok(status) => match read_fork_reply(server, status) {
                Ok(r) => return Ok(r),
                Err(ForkFailure::Refused(e)) => return Err(e),
                // A server SIGKILLed just before our request: it never read it, so the
                // request goes to a fresh server, as Python's `ensure_running()` does.
                Err(ForkFailure::NotTaken(_)) if attempt == 0 && restart.is_some() => {
                    retire(guard.take());
                }
                Err(
                    ForkFailure::NotSent(e) | ForkFailure::Broken(e) | ForkFailure::NotTaken(e),
                ) => {
                    retire(guard.take());
                    return Err(e);
                }
            },
            Err(ForkFailure::Refused(e)) => return Err(e),
            Err(ForkFailure::NotSent(_)) if attempt == 0 && restart.is_some() => {
                retire(guard.take())
            }
            Err(ForkFailure::NotSent(e) | ForkFailure::Broken(e) | ForkFailure::NotTaken(e)) => {
                retire(guard.take());
                return Err(e);
            }
        }
    }
    unreachable!("the second attempt returns")
}

fn send_fork(
    server: &mut Server,
    data: &OwnedFd,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
    request: &[u8],
    request_fds: &[Fd],
) -> std::result::Result<OwnedFd, ForkFailure> {
    let local = |what: &str, e: std::io::Error| ForkFailure::Refused(Error::io(what, e));
    let (status_ours, status_theirs) =
        mproc_sys::socketpair().map_err(|e| local("creating a status socket", e))?;
    let indices: Vec<u32> = (2..2 + request_fds.len() as u32).collect();
    let req = ForkRequestRef {
        daemon,
        changes: server.born.env_changes(),
        cwd: server.born.cwd_change(),
        env,
        data: 0,
        status: 1,
        request,
        request_fds: &indices,
    };
    let msg = mproc_wire::encode(&req)
        .map_err(|e| ForkFailure::Refused(fail("encoding a request", e)))?;
    let fds: Vec<BorrowedFd<'_>> = [data.as_fd(), status_theirs.as_fd()]
        .into_iter()
        .chain(request_fds.iter().map(Fd::as_fd))
        .collect();
    mproc_wire::write_frame(server.control.as_fd(), msg.bytes(), &fds, &limits()).map_err(|e| {
        let err = fail("sending a request", e);
        if server.reader.in_frame() {
            ForkFailure::Broken(err)
        } else {
            ForkFailure::NotSent(err)
        }
    })?;
    Ok(status_ours)
}

/// Reads the server's answer to a request just sent; `status` is our end of the child's
/// status socket. Returns the child's pid, a pidfd, and `status`.
fn read_fork_reply(
    server: &mut Server,
    status: OwnedFd,
) -> std::result::Result<(u32, OwnedFd, OwnedFd), ForkFailure> {
    let deadline = Instant::now() + REPLY_DEADLINE;
    let reply = server
        .reader
        .read(server.control.as_fd(), &limits(), Some(deadline))
        .map_err(|e| {
            if e.is_reset() {
                ForkFailure::NotTaken(fail("reading a reply", e))
            } else {
                ForkFailure::Broken(fail("reading a reply", e))
            }
        })?;
    match mproc_wire::decode::<ForkReply>(reply)
        .map_err(|e| ForkFailure::Broken(fail("decoding a reply", e)))?
    {
        ForkReply::Forked { pid, pidfd } => Ok((pid, pidfd.into_owned(), status)),
        ForkReply::Failed(msg) => Err(ForkFailure::Refused(Error::new(
            ErrorKind::ForkServer,
            format!("fork server could not fork: {msg}"),
        ))),
    }
}

/// Sends a reply that carries no fd.
fn send_reply(control: &OwnedFd, reply: &ForkReply) -> std::result::Result<(), mproc_wire::Error> {
    mproc_wire::encode(reply).and_then(|m| mproc_wire::write_message(control.as_fd(), m, &limits()))
}

/// Sends `Forked` with the child's pidfd borrowed beside the bytes (the server keeps its
/// own; nothing is duplicated on the way).
fn send_forked(
    control: &OwnedFd,
    pid: u32,
    pidfd: &OwnedFd,
) -> std::result::Result<(), mproc_wire::Error> {
    let msg = mproc_wire::encode(&ForkedRef::Forked { pid, pidfd: 0 })?;
    mproc_wire::write_frame(control.as_fd(), msg.bytes(), &[pidfd.as_fd()], &limits())
}

/// `ForkReply::Forked` as the server sends it: the same wire shape, the pidfd as its index
/// among the frame's fds.
#[derive(Serialize)]
enum ForkedRef {
    Forked { pid: u32, pidfd: u32 },
}

struct Running {
    pidfd: OwnedFd,
    status: OwnedFd,
    daemon: bool,
}

/// The server's main loop (runs in the server process).
fn serve(control: Fd) {
    let control = control.into_owned();
    let server_pid = std::process::id();
    // Watch the parent *process* (not the thread that started us) through a pidfd.
    let ppid = mproc_sys::getppid();
    if crate::info::parent_process().map(|p| p.pid()) != Some(ppid) {
        return; // the parent is already gone
    }
    let Ok(parent) = mproc_sys::pidfd_open(ppid) else {
        return;
    };
    if mproc_sys::getppid() != ppid {
        return;
    }
    let mut reader = FrameReader::new();
    let mut children: Vec<Running> = Vec::new();
    loop {
        let mut fds = vec![control.as_fd(), parent.as_fd()];
        fds.extend(children.iter().map(|c| c.pidfd.as_fd()));
        // A read can run into the next request (a batch sends several at once): one
        // already in the buffer is served without waiting for the socket.
        let buffered = reader.has_buffered_message();
        let Ok(ready) = mproc_sys::poll_readable(&fds, buffered.then_some(Duration::ZERO)) else {
            break;
        };
        if ready[1] {
            break; // the parent process ended
        }
        // Report and forget the children that ended.
        let mut i = 0;
        children.retain(|c| {
            i += 1;
            if !ready[1 + i] {
                return true;
            }
            if let Ok(Some(st)) = mproc_sys::wait_pidfd(c.pidfd.as_fd(), true) {
                let _ = mproc_sys::send_with_fds(c.status.as_fd(), &st.to_i64().to_le_bytes(), &[]);
            }
            false
        });
        if !ready[0] && !buffered {
            continue;
        }
        let msg = match reader.read(control.as_fd(), &limits(), Some(Instant::now())) {
            Ok(msg) => msg,
            Err(e) if e.kind() == WireKind::Timeout => continue,
            Err(_) => break, // the parent closed the connection, or sent garbage
        };
        let reply = match mproc_wire::decode::<ForkRequest>(msg) {
            Err(e) => ForkReply::Failed(e.to_string()),
            Ok(req) => match mproc_sys::fork(None) {
                Err(e) => ForkReply::Failed(e.to_string()),
                Ok(ForkOutcome::Child) => {
                    let _exit = crate::run::ExitOnUnwind;
                    // Close everything of the server's; keep only the data socket, which
                    // replaces (and so closes) the server's own reply socket.
                    drop(children);
                    drop(control);
                    drop(parent);
                    drop(req.status);
                    // It may hold the next requests, with their fds: not this child's.
                    drop(reader);
                    crate::run::set_reply_socket(req.data.into_owned());
                    crate::spawn::apply_env(&req.changes);
                    crate::spawn::apply_env(&req.env);
                    if let Some(cwd) = &req.cwd
                        && let Err(e) = std::env::set_current_dir(cwd)
                    {
                        crate::diag::warning!("cannot enter the parent's directory {cwd:?}: {e}");
                    }
                    let fds = req.request_fds.into_iter().map(Fd::into_owned).collect();
                    let msg = Message::from_parts(req.request, fds);
                    crate::run::serve_message(msg, req.daemon.then_some(server_pid))
                }
                Ok(ForkOutcome::Parent(pid)) => {
                    // The parent waits for this reply: answer first, and close what the
                    // child took (its socket, its request's fds) afterwards.
                    let handed_over = (req.data, req.request_fds);
                    // A child we cannot track must not run: kill and reap it, and say so.
                    let sent = match crate::spawn::pidfd_or_kill(pid) {
                        Ok(pidfd) => {
                            let sent = send_forked(&control, pid, &pidfd);
                            children.push(Running {
                                pidfd,
                                status: req.status.into_owned(),
                                daemon: req.daemon,
                            });
                            sent
                        }
                        Err(e) => send_reply(
                            &control,
                            &ForkReply::Failed(format!("cannot track the child: {e}")),
                        ),
                    };
                    drop(handed_over);
                    if sent.is_err() {
                        break;
                    }
                    continue;
                }
            },
        };
        if send_reply(&control, &reply).is_err() {
            break;
        }
    }
    for c in &children {
        if c.daemon {
            let _ = mproc_sys::pidfd_send_signal(c.pidfd.as_fd(), mproc_sys::SIGKILL);
        }
    }
}
