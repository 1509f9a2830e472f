//! Starting a child: the [`Builder`] of its options, the request it is sent, the start
//! method that runs it (spawn in `spawn/exec.rs`, fork in `spawn/fork.rs`, the fork server
//! through `forkserver`).

mod exec;
pub(crate) mod fork;

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use mproc_sys::{FnToken, ForkPermit};
use mproc_wire::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::child::Child;
use crate::child::proc::{Proc, Reaper};
use crate::error::{Error, ErrorKind, Result};
use crate::forkserver::{self, own::ForkServer};
use crate::info::{self, ProcessInfo};
use crate::protocol::{self, Outcome, Request};
use crate::start_method::{StartMethod, get_start_method};
use crate::{init, run};

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

/// Serializes a child's argument (as one: its shared objects count the child as a holder).
fn encode_arg<A: Serialize>(arg: &A) -> Result<Message> {
    mproc_wire::encode_for_child(arg).map_err(|e| {
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
