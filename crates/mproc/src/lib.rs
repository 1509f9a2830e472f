// The front page is the README (whose quick start runs as a doctest) when the default
// features are on; with fewer, a short introduction (the README's example needs them all).
#![cfg_attr(
    all(
    feature = "process",
    feature = "pipe",
    feature = "shm",
    feature = "sync",
    feature = "queue",
    feature = "pool",
    feature = "manager"
    ),
    doc = include_str!("../README.md")
)]
#![cfg_attr(
    not(all(
        feature = "process",
        feature = "pipe",
        feature = "shm",
        feature = "sync",
        feature = "queue",
        feature = "pool",
        feature = "manager"
    )),
    doc = "Python's `multiprocessing` for Rust: child processes that run a function, typed \
           with serde, fast, and free of the hangs Python users suffer when a process dies. \
           This is the facade: each part of mproc is its own crate, re-exported here as a \
           module behind a cargo feature."
)]
//!
//! # From Python to Rust
//!
//! | Python `multiprocessing` | mproc |
//! | --- | --- |
//! | `if __name__ == "__main__":` guard | `mproc::init()` as the first line of `main` |
//! | (tests: no `main` to put `init()` in) | `mproc::init_before_main!();` at the top of a test file |
//! | `Process(target=f, args=(x,)).start()` | `mproc::spawn(f, x)?` (one argument: use a tuple for several) |
//! | `Process(name=..., daemon=True)` | `mproc::Builder::new().name(..).daemon(true).spawn(f, x)?` |
//! | `p.join()` then read a result from a queue | `child.join()?` returns `f`'s result; `child.join_async().await?` on tokio (feature `tokio`; `wait_async` for the status) |
//! | `p.join(timeout)` | `child.join_timeout(d)` (`ErrorKind::Timeout`; joinable again) or `child.wait_timeout(d)` |
//! | `p.exitcode` | `child.exit_status()`: `Some(ExitStatus::Code(n))` / `Some(ExitStatus::Signal(n))` / `None` |
//! | `p.exitcode` as a number (`-9` for SIGKILL) | `status.python_exitcode()` |
//! | `p.join(0)` to poll | `child.try_join()?`: `Some(result)` once it ended, `None` while it runs |
//! | `p.is_alive()`, `p.pid`, `p.name`, `p.daemon` | `child.is_alive()`, `child.pid()`, `child.name()`, `child.is_daemon()` |
//! | `p.terminate()`, `p.kill()` | `child.terminate()?`, `child.kill()?` (through a pidfd: never the wrong process) |
//! | `p.sentinel` + `connection.wait([...])` | `mproc::wait(&[&child.sentinel()], timeout)?` (sentinels, connections and listeners alike) |
//! | an exception in the child (exitcode 1) | `Err(e)` with `e.kind() == ErrorKind::Panicked` and `e.panic_message()` |
//! | `set_start_method("spawn")`, `get_context("fork")` | `mproc::set_start_method(StartMethod::Spawn)`, `Builder::start_method(..)` |
//! | a forkserver child sees the server's environment and directory | every child sees the parent's as they are at the spawn, whatever the start method |
//! | the fork server killed: the next spawn may fail | it is replaced, and the spawn goes to the new one |
//! | at exit, non-daemonic children are joined, daemonic ones terminated | the same when `main` returns or `std::process::exit` runs; `Builder::join_at_exit(false)` lets a child outlive its parent |
//! | `parent_process().join(timeout)`, `.sentinel` | `parent_process()?.join_timeout(t)`, `.join()`, `.sentinel()` |
//! | `set_executable(path)` | `Builder::executable(path)` (same build only) |
//! | `current_process()`, `parent_process()`, `active_children()`, `cpu_count()` | the same names |
//! | `log_to_stderr(logging.DEBUG)`, `get_logger()` | the `log` feature and any logger: `env_logger::init()` with `RUST_LOG=mproc=debug` (see Logging below) |
//! | `os.process_cpu_count()` | `mproc::process_cpu_count()` |
//! | `a, b = Pipe()` | `let (a, b) = mproc::pipe::<T>()?` (typed; `duplex::<A, B>()` for a type each way) |
//! | `r, w = Pipe(duplex=False)` | `let (w, r) = mproc::channel::<T>()?` (sender first, as in std) |
//! | under fork, close the ends a child does not use, or its reader never sees the end | a forked child closes the mproc handles (pipe ends, queue sockets, child handles) not in its argument: the parent drops its end and the child's `recv` says `Disconnected`, under every start method |
//! | `conn.send(obj)`, `conn.recv()` | `conn.send(&value)?`, `conn.recv()?` (`Disconnected` at once when the peer is gone) |
//! | (no size limit in Python; a huge length prefix allocates) | `conn.set_max_message(bytes)`: larger messages are refused on sending and skipped on receiving |
//! | `multiprocessing.reduction.send_handle`, passing sockets | an `mproc::wire::Fd` (or any mproc handle: pipe end, segment, queue) inside a message travels as the fd itself |
//! | `conn.poll(t)`, `conn.recv()` with a deadline | `conn.poll(Some(t))?`, `conn.recv_timeout(t)?`, `conn.try_recv()?` |
//! | (no send deadline in Python) | `conn.send_timeout(&v, t)?`: `Timeout` means not sent; `Ok` means committed |
//! | `send_bytes`, `recv_bytes`, `recv_bytes_into(buf)` | the same names; `BufferTooShort` carries the message |
//! | `while True: msg = conn.recv()` until `EOFError` | `for msg in conn.iter() { let msg = msg?; … }` (ends at `Disconnected`; `&mut conn` iterates too) |
//! | asyncio: `await loop.sock_recv(...)` on a pipe's fd, by hand | feature `tokio`: `let mut c = conn.into_async()?;` then `c.send_async(&v).await?`, `c.recv_async().await?` (cancel-safe), `_bytes` variants, `c` is a `Stream` of messages; `listener.accept_async().await?` |
//! | `connection.wait([conns, sentinels], timeout)` | `mproc::wait(&[&conn, &child.sentinel()], Some(t))?` |
//! | `Listener(address, authkey=k)`, `l.accept()` | `Listener::bind(address, k)?`, `l.accept::<S, R>()?` / `accept_timeout` |
//! | `Client(address, authkey=k)` | `Client::connect::<S, R>(&address, k)?` (mutual HMAC-SHA256) |
//! | `shared_memory.SharedMemory(create=True, size=n)` | `SharedMemory::create(n)?` (anonymous: a memfd, nothing in `/dev/shm`) or `create_named(name, n)?` |
//! | `SharedMemory(name)`, `shm.buf[a:b] = data`, `shm.unlink()` | `SharedMemory::open(name)?`, `shm.write_at(a, data)?` / `read_at`, `shm.unlink()?` |
//! | resource tracker, `track=False` | named segments are unlinked when their creating tree ends (even by SIGKILL); `shm.untrack()` |
//! | `ShareableList([1, "a", None])` | `ShareableList::new([Item::Int(1), "a".into(), Item::None])?` |
//! | `Value('q', 0)`, `with v.get_lock(): v.value += 1` | `Value::new(0i64)?`, `*v.lock()? += 1` (the lock is the only way to read-modify-write) |
//! | `v.value`, `v.value = x` | `v.get()?`, `v.set(x)?` |
//! | `Array('d', 10)`, `a[i]`, `a[i] = x` | `Array::<f64>::zeroed(10)?`, `a.get(i)?`, `a.set(i, x)?`, or `a.lock()?` for several |
//! | `RawValue`, `RawArray` | `RawValue`, `RawArray` (no lock); `SharedAtomic<AtomicU64>` for lock-free counters |
//! | a `ctypes.Structure` in shared memory | a `#[repr(C)]` struct deriving `bytemuck::AnyBitPattern` and `bytemuck::NoUninit`, in `RawValue`/`Value`/`RawArray`/`Array`: no `unsafe` |
//! | `Lock()`, `with lock:`, `lock.acquire(timeout=t)` | `Lock::new()?`, `let _g = lock.lock()?;`, `lock.lock_timeout(t)` |
//! | a lock whose holder died: held forever | `Err(OwnerDied)` carrying the guard: repair, then `guard.mark_consistent()` |
//! | `RLock()`, `Semaphore(n)`, `BoundedSemaphore(n)` | `RLock::new()?`, `Semaphore::new(n)?`, `BoundedSemaphore::new(n)?` |
//! | `Condition()`, `cond.wait(t)`, `cond.notify(n)` | `Condition::new(state)?`, `guard.wait_timeout(t)?`, `guard.notify(n)` |
//! | `cond.wait_for(pred, t)`, `cond.notify_all()` | `guard.wait_for(pred, t)`, `guard.notify_all()` |
//! | `Event()`, `Barrier(n, action, timeout)` | `Event::new()?`, `Barrier::with_timeout(n, t)?` and `barrier.wait_with(action)` |
//! | `barrier.abort()`, `reset()`, `n_waiting`, `broken` | `barrier.abort()`, `reset()`, `n_waiting()`, `is_broken()` |
//! | `Value('i', 0, lock=False)`, `Array(..., lock=False)` | `RawValue`, `RawArray` (no lock), or `SharedAtomic` for lock-free counters; `Value`/`Array` always carry their lock |
//! | `multiprocessing.sharedctypes.synchronized(obj)` | not offered: put the data in a `Value`/`Array`, or beside a `Lock` in a `RawValue` of your own struct |
//! | `Queue()`, `Queue(maxsize=n)` | `Queue::<T>::new()?`, `Queue::<T>::bounded(n)?` (bytes bounded too: `queue::Builder`) |
//! | `q.put(x)`, `q.put(x, timeout=t)`, `q.put_nowait(x)` | `q.put(x)?`, `q.put_timeout(x, t)`, `q.try_put(x)` (`PutError::Full` hands `x` back); `q.put_ref(&x)?` keeps `x` (no clone, as Python keeps `obj`) |
//! | `q.get()`, `q.get(timeout=t)`, `q.get_nowait()` | `q.get()?`, `q.get_timeout(t)`, `q.try_get()` (`GetError::Empty`) |
//! | `q.get()` once every other process holding the queue is gone: waits for ever | `GetError::Disconnected` once no other live process holds the queue (nor a message carries it), within ~100 ms of the last one's death; the same for a `put` waiting for room (`PutError::Disconnected`) and `join` (any other holder, even an idle consumer, keeps a wait going) |
//! | `q.qsize()`, `q.empty()`, `q.full()` | `q.len()` (or `qsize()`), `q.is_empty()`, `q.is_full()` (approximate, as in Python) |
//! | `q.close()` (this process puts no more), `join_thread()` | `q.close()` closes for everyone: consumers drain, then get `Closed`; no feeder thread to join |
//! | `JoinableQueue()`, `task_done()`, `join()` | `JoinableQueue::new()?`, `q.task_done()?`, `q.join()?` / `q.join_timeout(t)?` |
//! | `SimpleQueue()` | `SimpleQueue::new()?` |
//! | `iter(q.get, None)` with a sentinel | `for msg in q.iter()`: items `Result<T, GetError>`, ending when the queue is closed and drained, or disconnected |
//! | `await loop.run_in_executor(None, q.get)`, `... q.put, x` (a thread per waiting call) | `q.get_async().await?`, `q.put_async(x).await?` (feature `tokio`: no thread, woken through the queue's eventfd; cancel-safe), `q.stream()` (a `futures_core::Stream`), `jq.join_async().await?` |
//! | `Pool(processes=n)`, `with Pool(n) as p:` | `let p = Pool::new(n)?;` (dropping it terminates, as leaving the `with` block does) |
//! | `Pool(n, initializer, initargs, maxtasksperchild)` | `pool::Builder::new().processes(n).initializer(f, arg).max_tasks_per_child(k).build()?` |
//! | (no task timeout in Python) | `pool::Builder::task_timeout(d)`: the worker is killed and replaced, the task fails with `Timeout` |
//! | `p.map(f, it)`, `p.map(f, it, chunksize)` | `p.map(f, it)?`, `p.map_chunked(f, it, n)?` (the first failed item's error, with its index) |
//! | `p.starmap(f, [(a, b), ...])` | `p.starmap(f, pairs)?` (`starmap3`, `starmap4` for more arguments) |
//! | `p.imap(f, it)`, `p.imap_unordered(f, it)` | `p.imap(f, it)`, `p.imap_unordered(f, it)`: iterators of `Result`, lazy over endless inputs |
//! | `it.next(timeout)` | `it.next_timeout(t)` |
//! | `p.apply(f, args)`, `p.apply_async(f, args)` | `p.apply(f, arg)?`, `p.apply_async(f, arg)?` (an `AsyncResult`) |
//! | `p.map_async(f, it, callback=c, error_callback=e)` | `p.map_async_with(f, it, None, Callbacks::new().on_success(c).on_error(e))?` |
//! | `res.get(timeout)`, `res.wait()`, `res.ready()`, `res.successful()` | `res.get_timeout(t)`, `res.wait()`, `res.ready()`, `res.successful()` (`None` while running) |
//! | `p.close()`, `p.join()`, `p.terminate()` | the same names; `p.join_timeout(t)` too |
//! | a worker killed mid-task: `map` hangs for ever | that task fails with `pool::ErrorKind::WorkerDied`, a new worker replaces it, the rest completes |
//! | `concurrent.futures.ProcessPoolExecutor(max_workers)` | `Executor::new(n)?` (workers start on demand); `pool::executor::Builder` for `initializer`, `max_tasks_per_child`, `mp_context`, a task timeout |
//! | `fut = ex.submit(f, x)`, `fut.result(timeout)` | `let task = ex.submit(f, x)?`, `task.result()?` / `task.result_timeout(t)` (a `TaskHandle`; the value is taken once) |
//! | `fut.done()`, `running()`, `cancel()`, `cancelled()`, `add_done_callback(fn)` | the same names; the callback gets `&Result<R>` and runs in the parent |
//! | `as_completed(fs, timeout)`, `wait(fs, timeout, FIRST_COMPLETED)` | `as_completed(&tasks, Some(t))`, `pool::wait(&tasks, Some(t), ReturnWhen::FirstCompleted)` (`.done`, `.not_done`) |
//! | `ex.map(f, it, timeout=t, chunksize=n)` | `ex.map(f, it, Some(t), n)`: an iterator of `Result`, in order, lazy over endless inputs |
//! | `ex.shutdown(wait, cancel_futures=True)`, `terminate_workers()`, `kill_workers()` | the same names; dropping the executor is `shutdown(true, false)` |
//! | one dead worker: `BrokenProcessPool` for every task and every later `submit` | that task fails with `WorkerDied` (exit status or signal); the executor serves on |
//! | `await loop.run_in_executor(ProcessPoolExecutor(), f, x)` | `pool.apply_async(f, x)?.await` (an `AsyncResult` is a `Future`; `map_async(..)?.await`, `executor.submit(f, x)?.await` too), under tokio, smol or any executor: no thread is blocked, no runtime needed |
//! | `await asyncio.wrap_future(fut)` | `task.await` (a `TaskHandle` is a `Future`); `(&mut task).await` or `&mut task` in `select!` leaves it readable if dropped midway; `async for r in ...` over `imap`: `Imap` is a `futures_core::Stream` (feature `tokio`) |
//! | `mpi4py.futures.MPIPoolExecutor()` (several machines) | `mproc::mpi::MpiPool` (feature `mpi`): `mproc::mpi::init()` after `mproc::init()` at the top of `main`, then `MpiPool::new(...)` on rank 0; the same calls as `Pool` |
//! | `mpiexec -n N python -m mpi4py.futures prog.py` | `mpiexec -n N ./prog` (or `srun`): rank 0 runs `main`, the other ranks serve tasks and exit when the pool closes |
//! | `MPIPoolExecutor.map(f, it)`, `.submit(f, x)`, `.shutdown(wait, cancel_futures=)` | `MpiPool`'s `map(f, it)`, `submit(f, x)`, `shutdown(wait, cancel_futures)`: as `Pool` and `Executor`, a task in a local child on its rank, so a crash fails that task alone (under mpi4py it ends the job) |
//! | `Manager()`, `with Manager() as m:` | `let m = Manager::start()?;` (dropping it stops the server, as leaving the `with` block does) |
//! | `current_process().authkey`, a per-process key | not offered: a manager or listener has the key it was given; pass it to the processes that need it |
//! | `set_forkserver_preload([...])` | not offered: the default fork server is a fresh start of this program (by spawn), so nothing is preloaded; a pool's `initializer` runs once per worker, and `process::ForkServer::start()` forks a server from this process as it is then, for children that should share its warm state |
//! | `m.list()`, `m.dict()`, `m.set()`, `m.Namespace()` | `m.list::<T>()?`, `m.dict::<K, V>()?`, `m.set::<T>()?`, `m.namespace()?` (`ns.x = 1` is `ns.set("x", &1)?`) |
//! | `m.Value('i', 0)`, `m.Array('d', xs)` | `m.value(0i32)?`, `m.array(xs)?` |
//! | `m.Queue()`, `m.JoinableQueue()` | `m.queue::<T>()?` (`bounded_queue(n)`), `m.joinable_queue::<T>()?` |
//! | `m.Lock()`, `m.RLock()`, `m.Semaphore(n)`, `m.Condition()`, `m.Event()`, `m.Barrier(n)` | the same names in snake case: `m.lock()?`, `m.rlock()?`, `m.semaphore(n)?`, ... |
//! | `l.append(x)`, `l.pop()`, `l[i]`, `len(l)` | `l.push(x)?` (or `append`; by value or by reference), `l.pop()?` (`Option`), `l.get(i)?`, `l.len()?` |
//! | `d[k] = d.get(k, 0) + 1` (racy between processes) | `d.update(&k, \|v\| v.unwrap_or(0) + 1)?` (atomic; lookups take `&str` for `String` keys, as `HashMap::get` does) |
//! | `d.update(other)` | `d.extend(other)?` |
//! | `BaseManager.register('T', T)` | `manager::Builder::new().register::<(T,)>()` with `T: manager::SharedObject`; requests are data, never code |
//! | `BaseManager(address, authkey).start()` / `.connect()` | `Manager::serve(address, key)?` / `Manager::connect(address, key)?` |
//! | `register('get_queue', callable=lambda: q)` | `m.publish("queue", &q)?`, then `m.lookup::<manager::Queue<T>>("queue")?` |
//! | a process dies holding a manager lock: it stays locked | the server releases it when the process's connections close |
//! | the server dies: proxies hang or raise `EOFError` mid-call | every call returns `manager::ErrorKind::Disconnected` at once |
//!
//! # Logging
//!
//! With the `log` feature, mproc reports through the [`log`](https://docs.rs/log) crate,
//! under the target `mproc`: each child started and ended (debug), a fork server replaced
//! (debug), a lock taken from a holder that died (warn), and the warnings it otherwise
//! prints on stderr (a child that cannot enter its parent's directory, say). Without the
//! feature none of it costs anything. Python's `log_to_stderr(logging.DEBUG)` is, with
//! `env_logger`:
//!
//! ```ignore
//! fn main() {
//!     mproc::init();
//!     env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("mproc=debug"))
//!         .init();
//!     // [DEBUG mproc] started Process-1 (pid 4242) by forkserver
//!     // [DEBUG mproc] Process-1 (pid 4242) ended: exit code 0
//! }
//! ```
//!
//! A child started by spawn or by the fork server runs `init()` before any `main` sets up
//! a logger, so its own warnings still go to stderr; children started by the fork method
//! share their parent's logger.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

#[cfg(feature = "manager")]
#[doc(inline)]
pub use mproc_manager as manager;
#[cfg(feature = "pipe")]
#[doc(inline)]
pub use mproc_pipe as pipe;
#[cfg(feature = "pool")]
#[doc(inline)]
pub use mproc_pool as pool;
#[cfg(feature = "process")]
#[doc(inline)]
pub use mproc_process as process;
#[cfg(feature = "queue")]
#[doc(inline)]
pub use mproc_queue as queue;
#[cfg(feature = "shm")]
#[doc(inline)]
pub use mproc_shm as shm;
#[cfg(feature = "sync")]
#[doc(inline)]
pub use mproc_sync as sync;
/// The OS layer (fork, futexes, raw regions, fd passing): opt-in with the `unstable-sys`
/// feature, outside mproc's semver promise. Depend on `mproc-sys` directly instead where
/// you can.
#[cfg(feature = "unstable-sys")]
pub use mproc_sys as sys;
#[cfg(feature = "wire")]
#[doc(inline)]
pub use mproc_wire as wire;

#[cfg(feature = "process")]
pub use mproc_process::{
    Builder, Child, ExitStatus, ForkPermit, ProcessInfo, StartMethod, active_children, cpu_count,
    current_process, get_start_method, init, init_before_main, parent_process, process_cpu_count,
    set_start_method, spawn,
};

// `mproc::pipe` is both the module above and this function (they live in different
// namespaces): `mproc::pipe::<T>()` makes a pipe, `mproc::pipe::Listener` names a type.
#[cfg(feature = "pipe")]
pub use mproc_pipe::{
    Address, Client, Connection, Listener, Receiver, Sender, channel, duplex, pipe, wait,
};

#[cfg(feature = "manager")]
pub use mproc_manager::Manager;
// `wait` stays `mproc::pool::wait`: `mproc::wait` is the pipe's (Python's
// `connection.wait`).
#[cfg(feature = "pool")]
pub use mproc_pool::{
    AsyncResult, Callbacks, Executor, Imap, Pool, ReturnWhen, TaskHandle, TaskPool, as_completed,
};
#[cfg(feature = "queue")]
pub use mproc_queue::{GetError, JoinableQueue, PutError, Queue, SimpleQueue};
#[cfg(feature = "shm")]
pub use mproc_shm::{Item, RawArray, RawValue, ShareableList, SharedAtomic, SharedMemory, ShmSafe};
#[cfg(feature = "sync")]
pub use mproc_sync::{
    Array, Barrier, BoundedSemaphore, Condition, Event, Lock, OwnerDied, RLock, Semaphore, Value,
};

#[cfg(feature = "mpi")]
#[doc(inline)]
pub use mproc_mpi as mpi;
#[cfg(feature = "mpi")]
pub use mproc_mpi::MpiPool;

mod error;
pub use error::{Error, ErrorKind, Result};
