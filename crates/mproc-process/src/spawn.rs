//! Starting a child: `StartMethod`, `Builder`, `spawn`, and the spawn and fork methods.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use mproc_sys::{FnToken, ForkOutcome, ForkPermit};
use mproc_wire::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::child::{Child, Proc, Reaper};
use crate::error::{Error, ErrorKind, Result};
use crate::forkserver::{self, own::ForkServer};
use crate::info::{self, ProcessInfo};
use crate::protocol::{self, Outcome, Request};
use crate::{init, run};

/// How a child process is started.
///
/// ```
/// use mproc_process::StartMethod;
/// assert_eq!("forkserver".parse::<StartMethod>(), Ok(StartMethod::ForkServer));
/// assert_eq!(StartMethod::Spawn.as_str(), "spawn");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// Run this executable again (`/proc/self/exe`); `init()` in `main` serves the request.
    /// The slowest start, the cleanest child: nothing of the parent's memory, no fd but its
    /// own socket.
    Spawn,
    /// Ask a fork server (started once by `Spawn`, single-threaded) to fork the child. The
    /// default on Linux: fork's speed, spawn's safety.
    ForkServer,
    /// Fork this process. The fastest; refused when other threads exist unless
    /// [`Builder::fork_permit`] is given.
    ///
    /// The child gets a copy of the parent's memory and of every fd, but before the
    /// function runs it closes its copies of the mproc handles that are not in its
    /// argument (pipe ends, queue sockets, other children's handles; each is pointed at
    /// `/dev/null`), so the parent dropping its end of a pipe ends the child's stream as
    /// under the other methods. Python's forked child keeps them all, and a reader waiting
    /// for the end of the stream waits for ever. Other fds are left as fork leaves them.
    Fork,
}

impl StartMethod {
    /// Returns Python's name of the method.
    pub fn as_str(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
            StartMethod::Fork => "fork",
        }
    }

    /// Returns every method this platform offers, the default first: Python's
    /// `get_all_start_methods()`.
    pub fn all() -> [StartMethod; 3] {
        [
            StartMethod::ForkServer,
            StartMethod::Spawn,
            StartMethod::Fork,
        ]
    }
}

impl std::fmt::Display for StartMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown start method name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownStartMethod(pub String);

impl std::fmt::Display for UnknownStartMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown start method {:?}; use spawn, forkserver or fork",
            self.0
        )
    }
}

impl std::error::Error for UnknownStartMethod {}

impl FromStr for StartMethod {
    type Err = UnknownStartMethod;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "spawn" => Ok(StartMethod::Spawn),
            "forkserver" => Ok(StartMethod::ForkServer),
            "fork" => Ok(StartMethod::Fork),
            other => Err(UnknownStartMethod(other.to_string())),
        }
    }
}

static DEFAULT_METHOD: AtomicU8 = AtomicU8::new(0);

fn method_code(m: StartMethod) -> u8 {
    match m {
        StartMethod::Spawn => 1,
        StartMethod::ForkServer => 2,
        StartMethod::Fork => 3,
    }
}

/// Sets the start method of children whose builder names none: Python's
/// `set_start_method(method, force=True)`.
///
/// ```
/// mproc_process::set_start_method(mproc_process::StartMethod::Spawn);
/// assert_eq!(mproc_process::get_start_method(), mproc_process::StartMethod::Spawn);
/// ```
pub fn set_start_method(method: StartMethod) {
    DEFAULT_METHOD.store(method_code(method), Ordering::Relaxed);
}

/// Returns the start method of children whose builder names none: the one given to
/// [`set_start_method`], else `MPROC_START_METHOD` from the environment, else `ForkServer`.
///
/// ```
/// let m = mproc_process::get_start_method();
/// assert!(mproc_process::StartMethod::all().contains(&m));
/// ```
pub fn get_start_method() -> StartMethod {
    match DEFAULT_METHOD.load(Ordering::Relaxed) {
        1 => StartMethod::Spawn,
        2 => StartMethod::ForkServer,
        3 => StartMethod::Fork,
        _ => {
            let m = std::env::var("MPROC_START_METHOD")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(StartMethod::ForkServer);
            DEFAULT_METHOD.store(method_code(m), Ordering::Relaxed);
            m
        }
    }
}

/// Options for a child: Python's `Process(name=..., daemon=...)` and context.
///
/// ```
/// use mproc_process::{Builder, StartMethod};
/// fn greet(who: String) -> String { format!("hello, {who}") }
/// # mproc_process::init();
/// let mut child = Builder::new()
///     .name("greeter")
///     .daemon(true)
///     .start_method(StartMethod::Spawn)
///     .env("GREETING_LANG", "en")
///     .spawn(greet, "world".to_string())?;
/// assert_eq!(child.name(), "greeter");
/// assert_eq!(child.join()?, "hello, world");
/// # Ok::<(), mproc_process::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Builder {
    name: Option<String>,
    daemon: bool,
    method: Option<StartMethod>,
    env: Vec<(OsString, Option<OsString>)>,
    executable: Option<PathBuf>,
    permit: Option<ForkPermit>,
    server: Option<Arc<ForkServer>>,
    /// Not joined when this process exits (`join_at_exit(false)`).
    outlive: bool,
}

impl Builder {
    /// Makes a builder with the defaults: a generated name, not daemonic, the default start
    /// method.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the child (Python's `name=`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Makes the child daemonic: it is killed when its parent ends, even by SIGKILL.
    ///
    /// With the spawn and fork methods the kernel's parent-death signal does this, which
    /// fires when the *thread* that started the child exits: start long-lived daemonic
    /// children from a long-lived thread (the fork server, the default, has no such caveat).
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// Whether this process, when it exits (`main` returns or `std::process::exit`), waits
    /// for the child: yes by default for a non-daemonic child, as Python joins its children
    /// at interpreter exit (daemonic children get SIGTERM then, and die with their parent
    /// anyway). `false` lets a child outlive this process: a server left running, say, or a
    /// child that waits for its parent's end ([`ParentProcess::join`](crate::ParentProcess::join)).
    /// Nothing is waited for when the process is killed, aborts, or ends with
    /// [`exit_now`](mproc_sys::exit_now); nor for a child whose `Child` a panic dropped; nor
    /// in a test binary ([`init_before_main!`](crate::init_before_main)), where a failed
    /// test must end the run rather than hang it. A child's own children are joined when its
    /// function returns, as in Python.
    ///
    /// ```
    /// use mproc_process::Builder;
    /// fn nap(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)) }
    /// # mproc_process::init();
    /// // This process may end while the child still naps.
    /// Builder::new().join_at_exit(false).spawn(nap, 10)?;
    /// # Ok::<(), mproc_process::Error>(())
    /// ```
    pub fn join_at_exit(mut self, join: bool) -> Self {
        self.outlive = !join;
        self
    }

    /// Chooses the start method for this child.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Sets an environment variable in the child, on top of the parent's environment as it
    /// is at the spawn (under every start method).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable in the child.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// Runs `path` instead of this executable for the spawn method (Python's
    /// `set_executable`). It must be the same build, or the child refuses the request with
    /// [`ErrorKind::BuildMismatch`].
    pub fn executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.executable = Some(path.into());
        self
    }

    /// Allows the fork method while other threads exist, on your promise (the permit's
    /// safety contract) that they hold no lock and change no memory the child will use.
    pub fn fork_permit(mut self, permit: ForkPermit) -> Self {
        self.permit = Some(permit);
        self
    }

    /// Starts the child through `server`, a [`ForkServer`] of your own: it is a fork of
    /// this process as it was when the server started (its start method is `Fork`), and
    /// this process may have any number of threads now.
    pub fn fork_server(mut self, server: Arc<ForkServer>) -> Self {
        self.server = Some(server);
        self
    }

    /// Starts `f(arg)` in a child process and returns its handle.
    ///
    /// `f` is a plain `fn` item or a closure that captures nothing; `arg` and the result
    /// travel as postcard (the fork method hands `arg` over in memory instead).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotInitialized`] when `init()` never ran, [`ErrorKind::ForkRefused`] for
    /// fork with threads, [`ErrorKind::Encode`] when `arg` cannot be serialized,
    /// [`ErrorKind::ForkServer`] or [`ErrorKind::Io`] when the OS refuses.
    pub fn spawn<A, R>(self, f: fn(A) -> R, arg: A) -> Result<Child<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let outlive = self.outlive;
        let child = self.spawn_inner(f, arg, false)?;
        if outlive {
            child.outlive();
        }
        Ok(child)
    }

    /// Spawns a child that is not one of the user's: not numbered, not in
    /// `active_children()` (the fork server).
    pub(crate) fn spawn_hidden<A, R>(self, f: fn(A) -> R, arg: A) -> Result<Child<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.spawn_inner(f, arg, true)
    }

    /// Starts one child per item of `args`, each running `f(arg)`, and returns them in
    /// order: a list of Python's `Process(target=f, args=(a,)).start()`, faster. Through a
    /// fork server every request is sent before the first answer is read, so the server
    /// forks the next child while this process takes the previous one's answer. With a
    /// [`name`](Self::name), the children are named `{name}-1`, `{name}-2`, ... in order.
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    /// # mproc_process::init();
    /// let children = mproc_process::Builder::new().spawn_batch(square, [2, 3, 4])?;
    /// let squares: Vec<u64> = children.into_iter().map(|mut c| c.join()).collect::<Result<_, _>>()?;
    /// assert_eq!(squares, [4, 9, 16]);
    /// # Ok::<(), mproc_process::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn), for the first child that could not be started; the
    /// children already started are then killed and reaped.
    pub fn spawn_batch<A, R>(
        self,
        f: fn(A) -> R,
        args: impl IntoIterator<Item = A>,
    ) -> Result<Vec<Child<R>>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        check_initialized()?;
        if self.server.is_none() && self.method() != StartMethod::ForkServer {
            // Spawn and fork have nothing to overlap: one after the other.
            let mut out = Vec::new();
            for (i, a) in args.into_iter().enumerate() {
                let mut one = self.clone();
                one.name = self.name.as_ref().map(|n| format!("{n}-{}", i + 1));
                match one.spawn(f, a) {
                    Ok(c) => out.push(c),
                    Err(e) => return Err(kill_all(out, e)),
                }
            }
            return Ok(out);
        }
        let mut prepared = Vec::new();
        let mut jobs = Vec::new();
        for (i, a) in args.into_iter().enumerate() {
            let name = self.name.as_ref().map(|n| format!("{n}-{}", i + 1));
            let me = info::next_child(name, self.daemon);
            let request = request_message(
                FnToken::<Message, Outcome>::new(run::thunk::<A, R>, f),
                me.clone(),
                encode_arg(&a)?,
            )?;
            let (ours, theirs) = child_socketpair()?;
            prepared.push((me, ours));
            jobs.push(forkserver::ForkJob {
                data: theirs,
                request,
            });
        }
        let outcomes =
            forkserver::fork_children(self.server.as_deref(), jobs, self.daemon, &self.env);
        let mut out = Vec::with_capacity(prepared.len());
        let mut first_error = None;
        for ((me, ours), outcome) in prepared.into_iter().zip(outcomes) {
            match outcome {
                Ok((pid, pidfd, status)) => {
                    let proc = Proc::new(
                        ProcessInfo { pid, ..me },
                        self.method(),
                        pidfd,
                        Reaper::Server(status),
                    );
                    out.push(Child::new(Arc::new(proc), ours, true));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(kill_all(out, e)),
            None => {
                if self.outlive {
                    out.iter().for_each(Child::outlive);
                }
                Ok(out)
            }
        }
    }

    /// The method a child of this builder starts by.
    fn method(&self) -> StartMethod {
        match &self.server {
            Some(_) => StartMethod::Fork,
            None => self.method.unwrap_or_else(get_start_method),
        }
    }

    fn spawn_inner<A, R>(self, f: fn(A) -> R, arg: A, hidden: bool) -> Result<Child<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        check_initialized()?;
        let method = self.method();
        let me = if hidden {
            ProcessInfo::new(0, self.name.clone().unwrap_or_default(), self.daemon)
        } else {
            info::next_child(self.name.clone(), self.daemon)
        };
        match method {
            StartMethod::Fork if self.server.is_none() => self.fork(me, f, arg, hidden),
            StartMethod::Spawn | StartMethod::ForkServer | StartMethod::Fork => {
                let token = FnToken::<Message, Outcome>::new(run::thunk::<A, R>, f);
                let request = request_message(token, me.clone(), encode_arg(&arg)?)?;
                let (ours, theirs) = child_socketpair()?;
                if method == StartMethod::Spawn {
                    let (pid, pidfd) = self.exec_self(&theirs)?;
                    drop(theirs);
                    let proc = Proc::new(ProcessInfo { pid, ..me }, method, pidfd, Reaper::Direct);
                    let child = Child::new(Arc::new(proc), ours, !hidden);
                    match mproc_wire::write_message(child.socket(), request, &protocol::limits()) {
                        // A child that died before reading: join reports how it ended.
                        Err(e) if !e.is_disconnect() => Err(e.into()),
                        _ => Ok(child),
                    }
                } else {
                    let (pid, pidfd, status) = match &self.server {
                        Some(server) => {
                            server.fork_child(theirs, self.daemon, &self.env, request)?
                        }
                        None => forkserver::fork_child(theirs, self.daemon, &self.env, request)?,
                    };
                    let proc = Proc::new(
                        ProcessInfo { pid, ..me },
                        method,
                        pidfd,
                        Reaper::Server(status),
                    );
                    Ok(Child::new(Arc::new(proc), ours, !hidden))
                }
            }
        }
    }

    /// The spawn method: `posix_spawn` of our executable with the socket at a fixed fd.
    fn exec_self(&self, theirs: &OwnedFd) -> Result<(u32, OwnedFd)> {
        // dup2 onto the same number would keep close-on-exec, so pick another one.
        let target = if theirs.as_raw_fd() == protocol::CHILD_FD {
            protocol::CHILD_FD + 1
        } else {
            protocol::CHILD_FD
        };
        let mut cmd = mproc_sys::SpawnSelf::new()
            .env(
                protocol::CHILD_ENV,
                format!("{target}:{}", std::process::id()),
            )
            .pass_fd(theirs.as_fd(), target);
        if let Some(exe) = &self.executable {
            cmd = cmd.executable(exe);
        }
        for (k, v) in &self.env {
            cmd = match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let pid = cmd
            .spawn()
            .map_err(|e| Error::io("starting a child process", e))?;
        let pidfd = mproc_sys::pidfd_open(pid).map_err(|e| Error::io("opening a pidfd", e))?;
        Ok((pid, pidfd))
    }

    /// The fork method: the child gets `arg` in its copy of memory, no serialization.
    fn fork<A, R>(self, me: ProcessInfo, f: fn(A) -> R, arg: A, hidden: bool) -> Result<Child<R>>
    where
        A: Serialize,
        R: Serialize + DeserializeOwned,
    {
        // The argument walked as a message would be (nothing is written): the fds it
        // holds, which the child keeps, and a mark "in flight" held across the fork by each
        // queue in it until the child has registered as its holder. A value that will not
        // serialize fails here, as it does under the other methods.
        let mut keep =
            mproc_wire::handover(&arg, mproc_wire::Handover::BeforeFork).map_err(|e| {
                mproc_wire::release_held();
                Error::new(ErrorKind::Encode, "the argument could not be serialized").with_source(e)
            })?;
        let (ours, theirs) = child_socketpair().inspect_err(|_| mproc_wire::release_held())?;
        let parent = info::current_process();
        // What the parent buffered must not be printed twice (Python flushes here too).
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let _ = std::io::Write::flush(&mut std::io::stderr());
        let guards = ForkGuards::acquire();
        match mproc_sys::fork(self.permit) {
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                mproc_wire::release_held();
                Err(Error::new(ErrorKind::ForkRefused, e.to_string()))
            }
            Err(e) => {
                mproc_wire::release_held();
                Err(Error::io("fork failed", e))
            }
            Ok(ForkOutcome::Child) => {
                let _exit = run::ExitOnUnwind;
                let parent_pid = parent.pid;
                keep.push(theirs.as_raw_fd());
                guards.into_child(me, parent, theirs);
                drop(ours);
                // The queues in the argument take this process as a holder, then their
                // marks "in flight" go. The copies of the parent's pipe ends, queue
                // sockets and child handles that are not in the argument go too: held
                // here, they would keep the parent's streams from ever ending (a reader
                // waiting for `Disconnected` would wait for ever).
                let _ = mproc_wire::handover(&arg, mproc_wire::Handover::Child);
                mproc_wire::release_held();
                mproc_sys::retire_owned_fds_except(&keep);
                if self.daemon {
                    let _ = mproc_sys::set_parent_death_signal(mproc_sys::SIGKILL);
                    if mproc_sys::getppid() != parent_pid {
                        mproc_sys::exit_now(1);
                    }
                }
                crate::child_env::apply_env(&self.env);
                let _ = mproc_sys::stdin_from_null();
                run::run_and_finish(move || f(arg))
            }
            Ok(ForkOutcome::Parent(pid)) => {
                drop(guards);
                drop(theirs);
                mproc_wire::release_held();
                let pidfd = pidfd_or_kill(pid)
                    .map_err(|e| Error::io("opening a pidfd for the child", e))?;
                let proc = Arc::new(Proc::new(
                    ProcessInfo { pid, ..me },
                    StartMethod::Fork,
                    pidfd,
                    Reaper::Direct,
                ));
                Ok(Child::new(proc, ours, !hidden))
            }
        }
    }
}

/// Fails unless `init()` ran in this process.
fn check_initialized() -> Result<()> {
    if init::initialized() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::NotInitialized,
        "mproc::init() was not called; make it the first line of main \
         (or add mproc::init_before_main!() to a test binary)",
    ))
}

/// Serializes a child's argument.
fn encode_arg<A: Serialize>(arg: &A) -> Result<Message> {
    mproc_wire::encode(arg).map_err(|e| {
        Error::new(ErrorKind::Encode, "the argument could not be serialized").with_source(e)
    })
}

/// Kills and reaps the children of a batch that could not be started whole; returns `e`.
fn kill_all<R: DeserializeOwned>(children: Vec<Child<R>>, e: Error) -> Error {
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait_timeout(std::time::Duration::from_secs(5));
    }
    e
}

/// Opens the pidfd of our new, unreaped child; if that fails, kills and reaps the child
/// (its pid cannot have been reused yet) so that nothing runs, or lingers, untracked.
pub(crate) fn pidfd_or_kill(pid: u32) -> std::io::Result<OwnedFd> {
    mproc_sys::pidfd_open(pid).inspect_err(|_| {
        let _ = mproc_sys::kill_pid(pid, mproc_sys::SIGKILL);
        let _ = mproc_sys::wait_pid(pid, true);
    })
}

/// mproc's own locks, held across `fork` (as `pthread_atfork` would), so that no other
/// thread can leave one locked, or half-updated, in the child's copy of memory. In the lock
/// order used everywhere: server, registry, current process, reply socket.
struct ForkGuards {
    server: forkserver::ServerGuard<'static>,
    registry: std::sync::MutexGuard<'static, crate::child::Registry>,
    current: info::CurrentGuard,
    reply: run::ReplyGuard,
}

impl ForkGuards {
    fn acquire() -> Self {
        let server = forkserver::lock_server();
        let registry = crate::child::lock_registry();
        let current = info::lock_current();
        let reply = run::lock_reply();
        Self {
            server,
            registry,
            current,
            reply,
        }
    }

    /// In the forked child: forget the parent's children, fork server and reply socket
    /// (they are not ours), record who we are and where we reply, then release the locks.
    fn into_child(mut self, me: ProcessInfo, parent: ProcessInfo, reply: OwnedFd) {
        let server = self.server.take();
        let children = std::mem::take(&mut *self.registry);
        let inherited_reply = self.reply.replace(reply);
        let old = self.current.replace(info::child_current(me, Some(parent)));
        drop(self);
        // The inherited reply socket must close (its reader would wait for us otherwise).
        drop(inherited_reply);
        // The rest is forgotten, not dropped: this child ends soon, and dropping would run
        // the parent's bookkeeping (locks, waits, frees) on freshly copied pages, the main
        // cost of a fork. Their fds (pidfds, result sockets) are pointed at /dev/null
        // once the argument has been walked (see `fork`).
        std::mem::forget((server, children, old));
    }
}

/// Builds the request a child runs: the function's token, who it is, and its argument.
fn request_message(
    token: FnToken<Message, Outcome>,
    me: ProcessInfo,
    args: Message,
) -> Result<Message> {
    let (fingerprint, thunk, func) = token.to_parts();
    let parent = info::current_process();
    Ok(protocol::envelope(
        |args| Request {
            fingerprint,
            thunk,
            func,
            me,
            parent,
            args,
        },
        args,
    )?)
}

/// The socket between parent and child; the child's end gets room for its reply.
fn child_socketpair() -> Result<(OwnedFd, OwnedFd)> {
    let (ours, theirs) =
        mproc_sys::socketpair().map_err(|e| Error::io("creating the child's socket", e))?;
    // Best effort: the kernel caps it at net.core.wmem_max, whose default is still ample.
    let _ = mproc_sys::set_send_buffer(theirs.as_fd(), protocol::CHILD_SNDBUF);
    Ok((ours, theirs))
}

/// Starts `f(arg)` in a child process with the default options: Python's
/// `Process(target=f, args=(arg,)).start()`, returning the result on `join`.
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// mproc_process::init();
/// assert_eq!(mproc_process::spawn(square, 7)?.join()?, 49);
/// # Ok::<(), mproc_process::Error>(())
/// ```
///
/// # Errors
///
/// As [`Builder::spawn`].
pub fn spawn<A, R>(f: fn(A) -> R, arg: A) -> Result<Child<R>>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    Builder::new().spawn(f, arg)
}
