//! The child's side: `init()`, the request a parent sends, running the function, and the
//! reply that carries its result (or its panic) back.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use mproc_sys::{FnRef, FnToken};
use mproc_wire::{FrameReader, Limits, Message};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::info::{self, ProcessInfo};

/// Environment marker of a spawned child: `MPROC_CHILD=<fd>:<parent pid>`.
pub(crate) const CHILD_ENV: &str = "MPROC_CHILD";
/// The fd number a spawned child finds its socket at (or the next one; see `spawn`).
pub(crate) const CHILD_FD: i32 = 3;

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Returns whether `init()` ran in this process (or in the parent this one was forked from).
pub(crate) fn initialized() -> bool {
    INITIALIZED.load(Ordering::Relaxed)
}

/// Runs the requested function when this process is an mproc child; returns at once
/// otherwise. Make it the first line of `main`.
///
/// In a child started by the spawn method, `init()` reads the request from the parent, runs
/// the function, sends back its result and exits: it never returns, and the rest of `main`
/// never runs. In any other process it only records that mproc is ready, so that
/// [`spawn`](crate::spawn) may be used; spawning from a program that never called it is an
/// [`ErrorKind::NotInitialized`](crate::ErrorKind::NotInitialized) error rather than a child
/// that runs `main` again.
///
/// For test binaries, whose `main` is not yours, use
/// [`init_before_main!`](crate::init_before_main) instead.
///
/// ```
/// // The first line of `main`:
/// mproc_process::init();
/// // ... the rest of the program, which may now spawn children.
/// assert!(mproc_process::parent_process().is_none());
/// ```
pub fn init() {
    INITIALIZED.store(true, Ordering::SeqCst);
    // Once, here, rather than in every forked child (where it would copy pages).
    install_panic_hook();
    if let Some(marker) = mproc_sys::take_inherited_socket(CHILD_ENV) {
        run_spawned_child(marker);
    }
}

/// Runs `mproc::init()` before `main`, from the executable's constructor section.
///
/// Write it once per test binary (an integration test file, or the crate root of unit
/// tests): children of the test binary then run their function and exit before the test
/// harness starts, so they never run the test suite. It works for any binary, and under
/// cargo-nextest too.
///
/// ```
/// // At the top of tests/my_test.rs:
/// mproc_process::init_before_main!();
///
/// fn double(x: u32) -> u32 { x * 2 }
///
/// // In a test file this function carries #[test].
/// fn doubles_in_a_child() {
///     assert_eq!(mproc_process::spawn(double, 21).unwrap().join().unwrap(), 42);
/// }
/// # doubles_in_a_child();
/// ```
#[macro_export]
macro_rules! init_before_main {
    () => {
        const _: () = {
            extern "C" fn __mproc_init_before_main() {
                $crate::__init_before_main();
            }
            // SAFETY: `.init_array` holds `extern "C" fn()` pointers that the C runtime calls
            // once before `main`; this static is exactly one such pointer.
            #[used]
            #[unsafe(link_section = ".init_array")]
            static __MPROC_INIT_BEFORE_MAIN: extern "C" fn() = __mproc_init_before_main;
        };
    };
}

static BEFORE_MAIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What [`init_before_main!`] runs: [`init`], remembering that this program is a test
/// binary (its exit does not wait for its children).
#[doc(hidden)]
pub fn __init_before_main() {
    BEFORE_MAIN.store(true, std::sync::atomic::Ordering::Relaxed);
    init();
}

/// Whether this program was initialized by [`init_before_main!`].
pub(crate) fn initialized_before_main() -> bool {
    BEFORE_MAIN.load(std::sync::atomic::Ordering::Relaxed)
}

/// What a parent sends its child on the child's socket.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub fingerprint: u64,
    pub thunk: i64,
    pub func: i64,
    pub me: ProcessInfo,
    pub parent: ProcessInfo,
    /// The argument: postcard bytes; its fds are the message's fds.
    pub args: Vec<u8>,
}

/// What a child sends back.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The result: postcard bytes; its fds are the message's fds.
    Ok(Vec<u8>),
    Panicked(String),
    BuildMismatch,
    Encode(String),
    Decode(String),
}

/// `Reply` with borrowed contents: the same bytes on the wire, without a heap allocation.
#[derive(Serialize)]
enum ReplyRef<'a> {
    Ok(&'a [u8]),
}

/// The thunk's output: the reply and the fds of the result.
pub(crate) type Outcome = (Reply, Vec<OwnedFd>);

/// Limits on a child's socket. Replies above `inline_max` travel by memfd; the ones below
/// fit the socket's send buffer, so a child never blocks on its reply (see `Child::wait`).
pub(crate) fn limits() -> Limits {
    Limits {
        inline_max: 32 << 10,
        ..Limits::default()
    }
}

/// The socket buffer a child's end gets: room for an inline reply several times over.
pub(crate) const CHILD_SNDBUF: usize = 256 << 10;

/// Wraps a value's message in an envelope: postcard of the envelope, the value's fds beside.
pub(crate) fn envelope<E: Serialize>(
    make: impl FnOnce(Vec<u8>) -> E,
    inner: Message,
) -> Result<Message, mproc_wire::Error> {
    let (bytes, fds) = inner.into_parts();
    let (outer, _) = mproc_wire::encode(&make(bytes))?.into_parts();
    Ok(Message::from_parts(outer, fds))
}

/// Opens an envelope: the envelope itself, and the fds that belong to the value inside it.
pub(crate) fn open_envelope<E: DeserializeOwned>(
    msg: Message,
) -> Result<(E, Vec<OwnedFd>), mproc_wire::Error> {
    let (bytes, fds) = msg.into_parts();
    Ok((mproc_wire::decode(Message::from_bytes(bytes))?, fds))
}

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

/// Runs `f` and returns its result, or the message of its panic (with where it panicked)
/// instead of unwinding: how a long-lived child, such as a pool's worker, runs one piece of
/// the user's code after another and reports each panic as a value.
///
/// The panic is still printed on standard error by the panic hook, as in any child.
///
/// ```
/// let ok = mproc_process::catch_panic(|| 6 * 7);
/// assert_eq!(ok, Ok(42));
/// let err = mproc_process::catch_panic(|| -> u32 { panic!("no answer") }).unwrap_err();
/// assert!(err.starts_with("no answer (at "));
/// ```
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_panic_hook();
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let text = panic_text(&*payload);
        // Dropping a payload runs the user's code once more, which could panic again.
        std::mem::forget(payload);
        text
    })
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
    crate::child::join_children_now();
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

thread_local! {
    static LAST_PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if let Some(loc) = info.location() {
                LAST_PANIC_AT.with(|l| *l.borrow_mut() = Some(loc.to_string()));
            }
            previous(info);
        }));
    });
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_string());
    match LAST_PANIC_AT.with(|l| l.borrow_mut().take()) {
        Some(at) => format!("{msg} (at {at})"),
        None => msg,
    }
}

/// The spawn method's child: take the inherited socket and serve the request.
fn run_spawned_child(marker: Result<(OwnedFd, String), std::io::Error>) -> ! {
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
    crate::child::join_children_now();
    mproc_sys::exit_now(code)
}
