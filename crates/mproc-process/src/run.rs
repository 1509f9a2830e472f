//! A child's run: its request served (the function called), its reply sent, the process
//! ended.

use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;

use mproc_sys::{FnRef, FnToken};
use mproc_wire::{FrameReader, Limits, Message};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::info;
use crate::panic::{catch_panic, panic_text};
use crate::protocol::{
    CHILD_ENV, Outcome, Reply, ReplyRef, Request, envelope, limits, open_envelope,
};

/// The monomorphised thunk: argument bytes in, reply out.
///
/// All the user's code runs inside `catch_unwind`: the argument's `Deserialize`, the
/// function, the result's `Serialize` and its `Drop`.
pub(crate) fn thunk<A: DeserializeOwned, R: Serialize>(f: FnRef<A, R>, args: Message) -> Outcome {
    let f = f.get();
    run_caught(move || match mproc_wire::decode::<A>(args) {
        Ok(arg) => encode_result(f(arg)),
        Err(e) => (
            Reply::Decode(format!(
                "the argument could not be deserialized in the child: {e}"
            )),
            Vec::new(),
        ),
    })
}

/// Encodes a result, consuming it so that its `Drop` runs here too.
pub(crate) fn encode_result<R: Serialize>(r: R) -> Outcome {
    let out = match mproc_wire::encode(&r) {
        Ok(msg) => {
            let (bytes, fds) = msg.into_parts();
            (Reply::Ok(bytes), fds)
        }
        Err(e) => (
            Reply::Encode(format!(
                "the result could not be serialized in the child: {e}"
            )),
            Vec::new(),
        ),
    };
    drop(r);
    out
}

/// Runs the user's code `f`, turning a panic into a `Panicked` reply.
pub(crate) fn run_caught(f: impl FnOnce() -> Outcome) -> Outcome {
    catch_panic(f).unwrap_or_else(|text| (Reply::Panicked(text), Vec::new()))
}

/// Runs the user's `f`, sends its result and exits, without touching the heap when the
/// result is small: in a freshly forked child every page written is a page copied, and the
/// allocator's pages are many. Larger results, panics and failures take the general path.
pub(crate) fn run_and_finish<R: Serialize>(f: impl FnOnce() -> R) -> ! {
    const SMALL: usize = 1024;
    let mut body = [0u8; SMALL];
    let caught = panic::catch_unwind(AssertUnwindSafe(|| {
        let r = f();
        let small = mproc_wire::encode_to_slice(&r, &mut body).map(|(b, fds)| (b.len(), fds));
        match small {
            Ok((len, fds)) => Ok((len, fds)),
            Err(_) => Err(encode_result(r)),
        }
    }));
    match caught {
        Ok(Ok((len, fds))) => {
            let mut frame = [0u8; SMALL + 16];
            let Ok(reply) = postcard::to_slice(&ReplyRef::Ok(&body[..len]), &mut frame) else {
                finish(
                    Reply::Encode("the result could not be framed".into()),
                    Vec::new(),
                )
            };
            finish_bytes(reply, fds)
        }
        Ok(Err((reply, fds))) => finish(reply, fds),
        Err(payload) => {
            let text = panic_text(&*payload);
            std::mem::forget(payload);
            finish(Reply::Panicked(text), Vec::new())
        }
    }
}

/// Sends an encoded `Ok` reply and exits with 0.
fn finish_bytes(reply: &[u8], fds: Vec<OwnedFd>) -> ! {
    let _exit = ExitOnUnwind;
    let Some(sock) = lock_reply().take() else {
        mproc_sys::exit_now(0)
    };
    let borrowed: Vec<std::os::fd::BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    if let Err(e) = mproc_wire::write_frame(sock.as_fd(), reply, &borrowed, &limits())
        && !e.is_disconnect()
    {
        crate::diag::warning!(
            "could not send the result to the parent: {}",
            mproc_sys::with_causes(&e)
        );
    }
    crate::child::registry::join_children_now();
    mproc_sys::exit_now(0)
}

/// Ends a child process if anything unwinds past its entry point: a child never returns
/// into code that is not its own (the fork server's loop, or a forked copy of the parent).
pub(crate) struct ExitOnUnwind;

impl Drop for ExitOnUnwind {
    fn drop(&mut self) {
        mproc_sys::exit_now(1)
    }
}

/// The socket this process sends its reply on, when it is a child. One slot for the whole
/// process (held across fork by `ForkGuards`), so that a child replaces, and so closes, the
/// copy it inherited from the process it was forked from.
static REPLY: Mutex<Option<OwnedFd>> = Mutex::new(None);

pub(crate) type ReplyGuard = std::sync::MutexGuard<'static, Option<OwnedFd>>;

pub(crate) fn lock_reply() -> ReplyGuard {
    REPLY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes `sock` this process's reply socket, closing any inherited one.
pub(crate) fn set_reply_socket(sock: OwnedFd) {
    let old = lock_reply().replace(sock);
    drop(old);
}

/// The spawn method's child: take the inherited socket and serve the request.
pub(crate) fn run_spawned_child(marker: Result<(OwnedFd, String), std::io::Error>) -> ! {
    let _exit = ExitOnUnwind;
    let (sock, rest) = match marker {
        Ok(m) => m,
        Err(e) => {
            crate::diag::warning!("not serving a request: {e}; was this process started by mproc?");
            mproc_sys::exit_now(1)
        }
    };
    let Ok(ppid) = rest.parse::<u32>() else {
        crate::diag::warning!(
            "not serving a request: malformed parent pid {rest:?} in {CHILD_ENV}"
        );
        mproc_sys::exit_now(1)
    };
    if mproc_sys::getppid() != ppid {
        // The parent died before we got here: nobody is waiting for a result.
        mproc_sys::exit_now(1);
    }
    match FrameReader::new().read(sock.as_fd(), &limits(), None) {
        Ok(msg) => {
            set_reply_socket(sock);
            serve_message(msg, Some(ppid))
        }
        // The parent went away before sending anything: nothing to do.
        Err(_) => mproc_sys::exit_now(1),
    }
}

/// Runs the request `msg` and replies on this process's reply socket. Used by spawned
/// children and by children of the fork server (which get their request in memory, with
/// the fork). `expect_parent` is checked again after a daemon child asks to die with its
/// parent, to close the race with a parent that died just before.
pub(crate) fn serve_message(msg: Message, expect_parent: Option<u32>) -> ! {
    let _exit = ExitOnUnwind;
    let (req, fds): (Request, _) = match open_envelope(msg) {
        Ok(r) => r,
        Err(e) => {
            crate::diag::warning!("unreadable request from the parent: {e}");
            mproc_sys::exit_now(1)
        }
    };
    if req.me.daemon && expect_parent.is_some() {
        let _ = mproc_sys::set_parent_death_signal(mproc_sys::SIGKILL);
        if Some(mproc_sys::getppid()) != expect_parent {
            mproc_sys::exit_now(1);
        }
    }
    info::set_current(req.me.clone(), Some(req.parent.clone()));
    let (reply, fds) = match token_from(&req) {
        Some(token) => token.invoke(Message::from_parts(req.args, fds)),
        None => (Reply::BuildMismatch, Vec::new()),
    };
    finish(reply, fds)
}

/// The trust boundary of a child: the function named by the parent's request.
#[allow(unsafe_code)]
fn token_from(req: &Request) -> Option<FnToken<Message, Outcome>> {
    // SAFETY: the request came from our parent, over a socket that only the parent (or the
    // fork server it talks to over its own private socket) could write: an fd the parent
    // created and handed to us at spawn, or to the fork server with the fork request. The
    // parent built the parts with `FnToken::<Message, Outcome>::to_parts` (see
    // `spawn::request_message`), and `from_parts` checks that it runs this same build.
    unsafe { FnToken::<Message, Outcome>::from_parts(req.fingerprint, req.thunk, req.func) }
}

/// Sends the reply and exits: 0 after a result, 1 after a panic or failure (Python's
/// exitcode for an uncaught exception).
///
/// Replies that would not fit the socket's send buffer with room to spare go by memfd, so
/// the child never blocks on its reply (the parent reads it only after the child's end).
pub(crate) fn finish(reply: Reply, fds: Vec<OwnedFd>) -> ! {
    let _exit = ExitOnUnwind;
    let code = i32::from(!matches!(reply, Reply::Ok(_)));
    let Some(sock) = lock_reply().take() else {
        mproc_sys::exit_now(code)
    };
    let room = mproc_sys::send_buffer_size(sock.as_fd()).unwrap_or(0) / 4;
    let limits = Limits {
        inline_max: limits().inline_max.min(room),
        ..limits()
    };
    let sent = envelope(|_| reply, Message::from_parts(Vec::new(), fds))
        .and_then(|m| mproc_wire::write_message(sock.as_fd(), m, &limits));
    if let Err(e) = sent
        && !e.is_disconnect()
    {
        crate::diag::warning!(
            "could not send the result to the parent: {}",
            mproc_sys::with_causes(&e)
        );
    }
    crate::child::registry::join_children_now();
    mproc_sys::exit_now(code)
}
