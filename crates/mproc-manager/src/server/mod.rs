//! The server process: every authenticated connection served in a thread of its own, each
//! request run against the object table.
//!
//! A request is data (see `protocol`): the server stores values as their encoded bytes and
//! never runs code that a peer chose. Each object has its own mutex, held for the whole of
//! one operation, which is what makes every operation atomic. Operations that wait (a
//! queue's `get`, a lock's `acquire`) wait on the object's condition variable in the
//! connection's thread, and give up when the caller's connection closes, so a process that
//! dies while waiting takes nothing (no item, no lock) with it.

#[cfg(fuzzing)]
pub mod fuzz;
mod objects;
mod reaper;

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mproc_pipe::{Address, Connection, Listener};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::protocol::{Fault, Kind, Out, Owner, Reply, Request};
use crate::registry::Registry;
use crate::spin::Spin;
use objects::{Object, State};

type Conn = Connection<Reply, Request>;

/// How long a new connection may take to introduce itself.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Each connection's thread: requests of the built-in types decode on the heap, but a
/// registered type's `new`, `handle` and request decoding run here too.
pub(crate) const THREAD_STACK: usize = 1 << 20;

/// The limits one server enforces, so that no client can exhaust it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The largest request or reply, in bytes.
    pub(crate) max_message: u64,
    /// The most connections open at once.
    pub(crate) max_connections: usize,
}

/// What the owner sends the server process.
#[derive(Serialize, Deserialize)]
pub(crate) struct ServerArgs {
    pub(crate) address: String,
    pub(crate) authkey: ByteBuf,
    pub(crate) limits: Limits,
    /// What the owner's `Shutdown` carries: other clients cannot stop the server.
    pub(crate) owner_token: u64,
    /// Where the server says it listens (the bound address), or why it cannot.
    pub(crate) ready: Connection<Result<String, String>>,
}

/// The server process's main function.
pub(crate) fn serve<R: Registry>(args: ServerArgs) {
    let ServerArgs {
        address,
        authkey,
        limits,
        owner_token,
        mut ready,
    } = args;
    let bound = address
        .parse::<Address>()
        .and_then(|a| Listener::bind(a, &authkey));
    let mut listener = match bound {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(&Err(format!(
                "listening on {address}: {}",
                mproc_sys::with_causes(&e)
            )));
            return;
        }
    };
    if ready.send(&Ok(listener.address().to_string())).is_err() {
        return; // the owner is gone already
    }
    drop(ready);
    let server = Arc::new(Server::new(
        limits,
        owner_token,
        R::create,
        reaper::Reaper::start(),
    ));
    loop {
        let mut conn = match listener.accept::<Reply, Request>() {
            Ok(c) => c,
            // A wrong key: that peer is dropped, the others go on.
            Err(e) if e.kind() == mproc_pipe::ErrorKind::Authentication => continue,
            Err(_) => {
                // The listening socket failed (out of fds, say): try again shortly.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        conn.set_max_message(limits.max_message);
        if server.connections.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            server.connections.fetch_sub(1, Ordering::AcqRel);
            // In a thread of its own: the refusal waits for the peer's hello.
            let max = limits.max_connections;
            let _ = std::thread::Builder::new()
                .stack_size(THREAD_STACK)
                .spawn(move || refuse_busy(conn, max));
            continue;
        }
        let slot = Slot(Arc::clone(&server));
        // A thread that cannot start drops its slot, and the connection with it.
        let _ = std::thread::Builder::new()
            .name("mproc-manager-conn".into())
            .stack_size(THREAD_STACK)
            .spawn(move || slot.0.serve_connection(conn));
    }
}

/// A connection's place under the cap, given back however its thread ends.
struct Slot(Arc<Server>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's session and reaper entry, ended however its thread ends.
struct Registered<'a> {
    server: &'a Server,
    id: u64,
    session: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.server.reaper.forget(self.id);
        self.server.leave(self.session);
    }
}

/// Tells a connection over the limit why it is closed.
fn refuse_busy(mut conn: Conn, max: usize) {
    if let Ok(Request::Hello { .. }) = conn.recv_timeout(Duration::from_millis(200)) {
        let _ = conn.send_timeout(
            &Err((
                Fault::Busy,
                format!("the manager serves at most {max} connections at once"),
            )),
            Duration::from_millis(200),
        );
    }
}

/// A custom type's constructor, from the registry the server was started with.
type CreateCustom = fn(&str, &[u8]) -> Option<Result<Box<dyn crate::registry::Erased>, String>>;

pub(crate) struct Server {
    objects: Mutex<HashMap<u64, Arc<Object>>>,
    names: Mutex<HashMap<String, u64>>,
    /// Open connections per client session.
    sessions: Mutex<HashMap<u64, usize>>,
    next_id: AtomicU64,
    next_connection: AtomicU64,
    connections: AtomicUsize,
    reaper: Arc<reaper::Reaper>,
    limits: Limits,
    owner_token: u64,
    create_custom: CreateCustom,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The caller of a request being served, to notice that it went away.
pub(crate) struct Caller<'a> {
    fd: BorrowedFd<'a>,
}

impl Caller<'_> {
    /// Whether the caller is still there. It never sends while it waits for a reply, so a
    /// readable connection means it closed, broke the protocol, or its process ended (the
    /// reaper shut the connection down): it is gone.
    pub(crate) fn alive(&self) -> bool {
        !matches!(
            mproc_sys::poll_readable(&[self.fd], Some(Duration::ZERO)).as_deref(),
            Ok([true])
        )
    }
}

impl Server {
    /// Makes a server with no objects and no connections.
    fn new(
        limits: Limits,
        owner_token: u64,
        create_custom: CreateCustom,
        reaper: Arc<reaper::Reaper>,
    ) -> Self {
        Server {
            objects: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            next_connection: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            reaper,
            limits,
            owner_token,
            create_custom,
        }
    }

    fn serve_connection(&self, mut conn: Conn) {
        let session = match conn.recv_timeout(HELLO_TIMEOUT) {
            Ok(Request::Hello { session }) => session,
            _ => return, // not a manager client
        };
        if conn.send(&Ok(Out::Num(self.limits.max_message))).is_err() {
            return;
        }
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        self.reaper.watch(id, conn.as_fd());
        *lock(&self.sessions).entry(session).or_default() += 1;
        let _registered = Registered {
            server: self,
            id,
            session,
        };
        let spin = Spin::default();
        loop {
            // Garbage, an oversized frame, a closed connection, or one the reaper shut down:
            // this client is done.
            let request = match spin.recv(&mut conn, None) {
                Ok(Some(request)) => request,
                Ok(None) => match conn.recv() {
                    Ok(request) => request,
                    Err(_) => break,
                },
                Err(_) => break,
            };
            let shutdown =
                matches!(&request, Request::Shutdown { token } if *token == self.owner_token);
            let reply = self.handle(request, &Caller { fd: conn.as_fd() });
            match conn.send(&reply) {
                Ok(()) => {}
                Err(e) if e.kind() == mproc_pipe::ErrorKind::TooLarge => {
                    let too_large = Err((
                        Fault::TooLarge,
                        format!(
                            "the reply is larger than the manager's limit of {} bytes",
                            self.limits.max_message
                        ),
                    ));
                    if conn.send(&too_large).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
            if shutdown {
                let _ = conn.flush_timeout(Duration::from_secs(1));
                mproc_sys::exit_now(0);
            }
        }
    }

    /// A connection of `session` closed; when it was its last, the process is gone, and the
    /// locks it held are released (Python's would stay locked for ever).
    fn leave(&self, session: u64) {
        // Held until the locks are released: a new connection of the same process (one that
        // dropped every proxy, then made a new one) waits to register, so a lock it takes
        // next is not released by this walk.
        let mut sessions = lock(&self.sessions);
        let Some(n) = sessions.get_mut(&session) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        sessions.remove(&session);
        let objects: Vec<Arc<Object>> = lock(&self.objects).values().cloned().collect();
        for object in objects {
            object.release_session(session);
        }
    }

    fn handle(&self, request: Request, caller: &Caller<'_>) -> Reply {
        match request {
            Request::Hello { .. } => Err((Fault::InvalidInput, "a second hello".into())),
            Request::Create {
                kind,
                type_name,
                init,
            } => {
                let state = match &kind {
                    Kind::Custom(name) => {
                        let init = match init {
                            crate::protocol::Init::Custom(b) => b,
                            _ => return Err((Fault::InvalidInput, "no initial value".into())),
                        };
                        let create = self.create_custom;
                        match mproc_process::catch_panic(|| create(name, &init)) {
                            Err(panic) => {
                                return Err((
                                    Fault::Handler,
                                    format!("the shared type's `new` panicked: {panic}"),
                                ));
                            }
                            Ok(Some(Ok(object))) => State::Custom(object),
                            Ok(Some(Err(message))) => return Err((Fault::Handler, message)),
                            Ok(None) => {
                                return Err((
                                    Fault::NotRegistered,
                                    format!(
                                        "the manager was not started with a shared type named {name:?}"
                                    ),
                                ));
                            }
                        }
                    }
                    _ => State::new(&kind, init)?,
                };
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let object = Arc::new(Object::new(kind, type_name, state));
                lock(&self.objects).insert(id, object);
                Ok(Out::Id(id))
            }
            Request::Publish { name, id } => {
                if !lock(&self.objects).contains_key(&id) {
                    return Err(no_such(id));
                }
                lock(&self.names).insert(name, id);
                Ok(Out::Unit)
            }
            Request::Lookup {
                name,
                kind,
                type_name,
            } => {
                let Some(id) = lock(&self.names).get(&name).copied() else {
                    return Err((
                        Fault::NoSuchObject,
                        format!("nothing is published under {name:?}"),
                    ));
                };
                let object = self.object(id)?;
                // Names without module paths: another program defines the same item type
                // in a crate of its own.
                if object.kind != kind || object.type_name != type_name {
                    return Err((
                        Fault::WrongType,
                        format!("{name:?} is a {}, not a {type_name}", object.type_name),
                    ));
                }
                Ok(Out::Id(id))
            }
            Request::Unpublish { name } => Ok(Out::Bool(lock(&self.names).remove(&name).is_some())),
            Request::Op { id, op } => self.object(id)?.apply(op, caller),
            Request::Stats => Ok(Out::Stats {
                objects: lock(&self.objects).len() as u64,
                connections: self.connections.load(Ordering::Relaxed) as u64,
            }),
            Request::Shutdown { token } if token == self.owner_token => Ok(Out::Unit),
            Request::Shutdown { .. } => Err((
                Fault::NotOwner,
                "only the manager that started the server can shut it down".into(),
            )),
        }
    }

    fn object(&self, id: u64) -> Result<Arc<Object>, (Fault, String)> {
        lock(&self.objects)
            .get(&id)
            .cloned()
            .ok_or_else(|| no_such(id))
    }
}

fn no_such(id: u64) -> (Fault, String) {
    (
        Fault::NoSuchObject,
        format!("the manager has no object #{id}"),
    )
}

/// The owner of a lock, as the server records it (for messages).
pub(crate) fn describe(owner: &Owner) -> String {
    format!("thread {} of session {:x}", owner.thread, owner.session)
}
