//! Leaks: every handle type made, sent through a pipe to one long-lived child (the keeper),
//! used there and dropped on both sides, thousands of times; and a process tree SIGKILLed.
//! Afterwards this process and the keeper hold what they held before: open fds, mappings
//! (their count and the size mapped shared), `/dev/shm` names, child processes and zombies
//! ([`Census`]).
//!
//! Cycles per handle type: `LEAK_CYCLES` by default (`CHILD_CYCLES` for children), 10,000
//! (the figure) with `MPROC_LOAD_SCALE=1` (`cargo xtask soak`).

use std::time::{Duration, Instant};

use mproc::manager::Manager;
use mproc::wire::Fd;
use mproc::{
    Array, Barrier, Child, Condition, Connection, Event, Item, JoinableQueue, Listener, Lock,
    Queue, RLock, Semaphore, ShareableList, SharedMemory, SimpleQueue, Value,
};
use mproc_tests::{Census, builder, deadline, load_size, manager_builder, method};
use serde::{Deserialize, Serialize};

mproc::init_before_main!();

/// Cycles per handle type in `cargo xtask test` (the 10,000 under `soak`).
const LEAK_CYCLES: usize = 1_000;
/// Cycles of a type whose every cycle starts a process (two: one here, one in the keeper).
const CHILD_CYCLES: usize = 300;
/// Cycles run before the first census, so that what a process keeps for good once it has
/// used a type (the arena's current chunk, a fork server, a tracker, a manager connection)
/// is there before counting.
const WARM_UP: u64 = 20;
/// A liveness bound for one step (a reply, an accept), not a speed requirement.
const STEP: Duration = Duration::from_secs(60);
/// How long what a dead process gives back (its zombie, its tracker's unlinks) may take.
const SETTLE: Duration = Duration::from_secs(20);
const KEY: &[u8] = b"mproc leak tests";

/// What this process sends the keeper: a handle to use and drop, or a question.
#[derive(Serialize, Deserialize)]
enum Parcel {
    /// A connection end: receive `i`, send `i + 1`.
    Pipe(Connection<u64, u64>),
    /// A listener's address: connect with `Client`, receive `i`, send `i + 1`.
    Dial(String),
    Queue(Queue<u64>),
    SimpleQueue(SimpleQueue<u64>),
    JoinableQueue(JoinableQueue<u64>),
    /// Anonymous or named: read `i` at 0, write `i + 1`.
    Shm(SharedMemory),
    Value(Value<u64>),
    Array(Array<u64>),
    List(ShareableList),
    Lock(Lock),
    RLock(RLock),
    Semaphore(Semaphore),
    Condition(Condition<u64>),
    Event(Event),
    Barrier(Barrier),
    Proxy(mproc::manager::Value<u64>),
    /// A child's sentinel: wait for its end, then start, join and drop a child of our own.
    Sentinel(Fd),
    /// Start a pool of one worker, use it, and drop it.
    Pool(u64),
    /// Answer with the keeper's census.
    Census(String),
    Stop,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Done(u64),
    Census(Census),
}

fn plus_one(i: u64) -> u64 {
    i + 1
}

// ---- the keeper: one long-lived child -------------------------------------------------

/// Uses each handle it is sent, drops it, and answers, until told to stop.
fn keeper(mut conn: Connection<Reply, Parcel>) {
    loop {
        let parcel = match conn.recv_timeout(STEP) {
            Ok(parcel) => parcel,
            // The test failed and dropped its end: nothing more to do.
            Err(e) if e.kind() == mproc::pipe::ErrorKind::Disconnected => return,
            Err(e) => panic!("the next parcel: {e}"),
        };
        let reply = match parcel {
            Parcel::Stop => return,
            Parcel::Census(prefix) => Reply::Census(Census::take(&prefix)),
            other => Reply::Done(take(other)),
        };
        conn.send(&reply).expect("replying");
    }
}

/// Uses one handle as its parcel says and returns the number it computed.
fn take(parcel: Parcel) -> u64 {
    match parcel {
        Parcel::Pipe(mut end) => {
            let i = end.recv_timeout(STEP).unwrap();
            end.send(&(i + 1)).unwrap();
            i + 1
        }
        Parcel::Dial(address) => {
            let address = address.parse().unwrap();
            let mut conn = mproc::Client::connect_timeout::<u64, u64>(&address, KEY, STEP)
                .expect("connecting to the listener");
            let i = conn.recv_timeout(STEP).unwrap();
            conn.send(&(i + 1)).unwrap();
            i + 1
        }
        Parcel::Queue(q) => {
            let i = q.get_timeout(STEP).unwrap();
            q.put(i + 1).unwrap();
            i + 1
        }
        Parcel::SimpleQueue(q) => {
            let i = q.get_timeout(STEP).unwrap();
            q.put(i + 1).unwrap();
            i + 1
        }
        Parcel::JoinableQueue(q) => {
            let i = q.get_timeout(STEP).unwrap();
            q.put(i + 1).unwrap();
            q.task_done().unwrap();
            i + 1
        }
        Parcel::Shm(shm) => {
            let i = shm.read::<u64>(0).unwrap();
            shm.write(0, i + 1).unwrap();
            i + 1
        }
        Parcel::Value(v) => {
            let mut g = v.lock().unwrap();
            *g += 1;
            *g
        }
        Parcel::Array(a) => {
            let i = a.get(0).unwrap().unwrap();
            a.set(1, i + 1).unwrap();
            i + 1
        }
        Parcel::List(list) => {
            let Item::Int(i) = list.get(0).unwrap() else {
                panic!("not an int")
            };
            list.set(1, i + 1).unwrap();
            i as u64 + 1
        }
        Parcel::Lock(lock) => {
            drop(lock.lock().unwrap());
            1
        }
        Parcel::RLock(lock) => {
            let outer = lock.lock().unwrap();
            let inner = lock.lock().unwrap();
            let depth = lock.count();
            drop((inner, outer));
            u64::from(depth)
        }
        Parcel::Semaphore(s) => {
            s.release().unwrap();
            1
        }
        Parcel::Condition(c) => {
            let mut g = c.lock().unwrap();
            *g += 1;
            g.notify(1);
            *g
        }
        Parcel::Event(e) => {
            e.set();
            1
        }
        Parcel::Barrier(b) => u64::from(b.wait_timeout(STEP).unwrap()),
        Parcel::Proxy(v) => {
            let i = v.get().unwrap();
            v.set(i + 1).unwrap();
            i + 1
        }
        Parcel::Sentinel(fd) => {
            use std::os::fd::AsFd;
            assert!(
                mproc_tests::wait_gone(fd.as_fd(), STEP),
                "the child never ended"
            );
            let mut own = builder().spawn(plus_one, 41).unwrap();
            own.join().unwrap()
        }
        Parcel::Pool(i) => {
            let pool = mproc_tests::pool_builder(1).build().unwrap();
            let out = pool.map(plus_one, [i]).unwrap();
            out[0]
        }
        Parcel::Census(_) | Parcel::Stop => unreachable!("answered by the keeper's loop"),
    }
}

// ---- this side ------------------------------------------------------------------------

/// The keeper and the pipe to it.
struct Keeper {
    child: Child<()>,
    conn: Connection<Parcel, Reply>,
}

impl Keeper {
    fn start() -> Keeper {
        let (conn, theirs) = mproc::duplex::<Parcel, Reply>().unwrap();
        let child = builder().spawn(keeper, theirs).unwrap();
        Keeper { child, conn }
    }

    /// Sends a parcel without waiting for the answer.
    fn send(&mut self, parcel: Parcel) {
        self.conn.send(&parcel).expect("sending to the keeper");
    }

    /// Waits for the answer to a parcel.
    fn done(&mut self) -> u64 {
        match self.conn.recv_timeout(STEP).expect("the keeper's answer") {
            Reply::Done(n) => n,
            other => panic!("expected Done, got {other:?}"),
        }
    }

    fn census(&mut self, prefix: &str) -> Census {
        self.send(Parcel::Census(prefix.to_string()));
        match self.conn.recv_timeout(STEP).expect("the keeper's census") {
            Reply::Census(c) => c,
            other => panic!("expected a census, got {other:?}"),
        }
    }

    /// Asks for the keeper's census until it equals `start` or `SETTLE` passes.
    fn settle(&mut self, start: &Census, prefix: &str) -> Census {
        let t0 = Instant::now();
        loop {
            let now = self.census(prefix);
            if now == *start || t0.elapsed() > SETTLE {
                return now;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(mut self) {
        self.send(Parcel::Stop);
        self.child.join().expect("the keeper ends cleanly");
    }
}

/// What a cycle needs besides the keeper.
struct Setup {
    /// The prefix of every `/dev/shm` name and socket path the test makes.
    prefix: String,
    /// Where path listeners put their socket files.
    dir: std::path::PathBuf,
    manager: Option<Manager>,
}

/// The handle types.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Pipe,
    Listener,
    Queue,
    SimpleQueue,
    JoinableQueue,
    AnonymousShm,
    NamedShm,
    Value,
    Array,
    List,
    Lock,
    RLock,
    Semaphore,
    Condition,
    Event,
    Barrier,
    Proxy,
    Child,
    Pool,
}

const KINDS: [Kind; 19] = [
    Kind::Pipe,
    Kind::Listener,
    Kind::Queue,
    Kind::SimpleQueue,
    Kind::JoinableQueue,
    Kind::AnonymousShm,
    Kind::NamedShm,
    Kind::Value,
    Kind::Array,
    Kind::List,
    Kind::Lock,
    Kind::RLock,
    Kind::Semaphore,
    Kind::Condition,
    Kind::Event,
    Kind::Barrier,
    Kind::Proxy,
    Kind::Child,
    Kind::Pool,
];

/// Makes a handle of `kind`, sends it to the keeper, checks what the keeper did with it,
/// and drops it.
fn cycle(kind: Kind, i: u64, keeper: &mut Keeper, setup: &Setup) {
    match kind {
        Kind::Pipe => {
            let (mut ours, theirs) = mproc::pipe::<u64>().unwrap();
            keeper.send(Parcel::Pipe(theirs));
            ours.send(&i).unwrap();
            assert_eq!(ours.recv_timeout(STEP).unwrap(), i + 1);
            assert_eq!(keeper.done(), i + 1);
        }
        Kind::Listener => {
            // Abstract names and socket files by turns: a file must go with its listener.
            let address = if i.is_multiple_of(2) {
                format!("{}-{i}", setup.prefix)
            } else {
                setup.dir.join(format!("l{i}")).display().to_string()
            };
            let mut listener = Listener::bind(address.parse().unwrap(), KEY).unwrap();
            keeper.send(Parcel::Dial(address));
            let mut conn = listener.accept_timeout::<u64, u64>(STEP).unwrap();
            conn.send(&i).unwrap();
            assert_eq!(conn.recv_timeout(STEP).unwrap(), i + 1);
            assert_eq!(keeper.done(), i + 1);
        }
        Kind::Queue => {
            let q = Queue::new().unwrap();
            q.put(i).unwrap();
            keeper.send(Parcel::Queue(q.clone()));
            assert_eq!(keeper.done(), i + 1);
            assert_eq!(q.get_timeout(STEP).unwrap(), i + 1);
        }
        Kind::SimpleQueue => {
            let q = SimpleQueue::new().unwrap();
            q.put(i).unwrap();
            keeper.send(Parcel::SimpleQueue(q.clone()));
            assert_eq!(keeper.done(), i + 1);
            assert_eq!(q.get_timeout(STEP).unwrap(), i + 1);
        }
        Kind::JoinableQueue => {
            let q = JoinableQueue::new().unwrap();
            q.put(i).unwrap();
            keeper.send(Parcel::JoinableQueue(q.clone()));
            assert_eq!(keeper.done(), i + 1);
            // The keeper marked ours done; its own is ours to mark.
            assert_eq!(q.get_timeout(STEP).unwrap(), i + 1);
            q.task_done().unwrap();
            q.join_timeout(STEP).unwrap();
        }
        Kind::AnonymousShm => {
            let shm = SharedMemory::create(4096).unwrap();
            shm.write(0, i).unwrap();
            keeper.send(Parcel::Shm(shm.clone()));
            assert_eq!(keeper.done(), i + 1);
            assert_eq!(shm.read::<u64>(0).unwrap(), i + 1);
        }
        Kind::NamedShm => {
            let shm = SharedMemory::create_named(&format!("{}-{i}", setup.prefix), 4096).unwrap();
            shm.write(0, i).unwrap();
            keeper.send(Parcel::Shm(shm.clone()));
            assert_eq!(keeper.done(), i + 1);
            assert_eq!(shm.read::<u64>(0).unwrap(), i + 1);
            shm.unlink().unwrap();
        }
        Kind::Value => {
            let v = Value::new(i).unwrap();
            keeper.send(Parcel::Value(v.clone()));
            assert_eq!(keeper.done(), i + 1);
            assert_eq!(v.get().unwrap(), i + 1);
        }
        Kind::Array => {
            let a = Array::from_slice(&[i, 0]).unwrap();
            keeper.send(Parcel::Array(a.clone()));
            assert_eq!(keeper.done(), i + 1);
            assert_eq!(a.get(1).unwrap(), Some(i + 1));
        }
        Kind::List => {
            // Anonymous and named by turns.
            let items = [Item::Int(i as i64), Item::Int(0)];
            let list = if i.is_multiple_of(2) {
                ShareableList::new(items).unwrap()
            } else {
                ShareableList::create_named(&format!("{}-{i}", setup.prefix), items).unwrap()
            };
            keeper.send(Parcel::List(list.clone()));
            assert_eq!(keeper.done(), i + 1);
            assert_eq!(list.get(1).unwrap(), Item::Int(i as i64 + 1));
            if list.shm().name().is_some() {
                list.shm().unlink().unwrap();
            }
        }
        Kind::Lock => {
            let lock = Lock::new().unwrap();
            keeper.send(Parcel::Lock(lock.clone()));
            assert_eq!(keeper.done(), 1);
            assert!(!lock.is_locked());
        }
        Kind::RLock => {
            let lock = RLock::new().unwrap();
            keeper.send(Parcel::RLock(lock.clone()));
            assert_eq!(keeper.done(), 2);
            drop(lock.try_lock().expect("free again"));
        }
        Kind::Semaphore => {
            let s = Semaphore::new(0).unwrap();
            keeper.send(Parcel::Semaphore(s.clone()));
            assert!(s.acquire_timeout(STEP));
            assert_eq!(keeper.done(), 1);
        }
        Kind::Condition => {
            let c = Condition::new(i).unwrap();
            // Held while the keeper is told, so its notify comes after our wait began.
            let mut g = c.lock().unwrap();
            keeper.send(Parcel::Condition(c.clone()));
            while *g == i {
                let (next, _) = g.wait_timeout(STEP).unwrap();
                g = next;
            }
            assert_eq!(*g, i + 1);
            drop(g);
            assert_eq!(keeper.done(), i + 1);
        }
        Kind::Event => {
            let e = Event::new().unwrap();
            keeper.send(Parcel::Event(e.clone()));
            assert!(e.wait_timeout(STEP));
            assert_eq!(keeper.done(), 1);
        }
        Kind::Barrier => {
            let b = Barrier::new(2).unwrap();
            keeper.send(Parcel::Barrier(b.clone()));
            let ours = b.wait_timeout(STEP).unwrap();
            let theirs = keeper.done();
            assert_eq!(
                ours as u64 + theirs,
                1,
                "the two parties get indices 0 and 1"
            );
        }
        Kind::Proxy => {
            let m = setup.manager.as_ref().expect("a manager");
            let v = m.value(i).unwrap();
            keeper.send(Parcel::Proxy(v.clone()));
            assert_eq!(keeper.done(), i + 1);
            assert_eq!(v.get().unwrap(), i + 1);
        }
        Kind::Pool => {
            let pool = mproc_tests::pool_builder(2).build().unwrap();
            assert_eq!(pool.map(plus_one, [i, i + 1]).unwrap(), [i + 1, i + 2]);
            drop(pool);
            keeper.send(Parcel::Pool(i));
            assert_eq!(keeper.done(), i + 1);
        }
        Kind::Child => {
            let mut child = builder().spawn(plus_one, i).unwrap();
            let sentinel = child.sentinel().try_clone_to_owned().unwrap();
            keeper.send(Parcel::Sentinel(Fd::from(sentinel)));
            assert_eq!(child.join().unwrap(), i + 1);
            assert_eq!(keeper.done(), 42);
        }
    }
}

/// Runs `cycles` cycles of `kind` through one keeper and checks that this process and the
/// keeper hold afterwards what they held before; returns what went wrong, if anything.
fn no_leak(kind: Kind, cycles: usize) -> Option<String> {
    let prefix = format!("mproc-leaks-{}-{kind:?}", std::process::id());
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).unwrap();
    let manager = matches!(kind, Kind::Proxy).then(|| manager_builder().start().unwrap());
    let setup = Setup {
        prefix: prefix.clone(),
        dir: dir.clone(),
        manager,
    };
    let mut keeper = Keeper::start();
    for i in 0..WARM_UP {
        cycle(kind, i, &mut keeper, &setup);
    }
    let (ours, theirs) = (Census::take(&prefix), keeper.census(&prefix));
    let t0 = Instant::now();
    for i in WARM_UP..WARM_UP + cycles as u64 {
        cycle(kind, i, &mut keeper, &setup);
    }
    let took = t0.elapsed();
    let (ours_after, theirs_after) = (
        Census::settle(&ours, &prefix, SETTLE),
        keeper.settle(&theirs, &prefix),
    );
    keeper.stop();
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{kind:?}: {cycles} cycles in {:.1} s; here {ours:?}, in the keeper {theirs:?}",
        took.as_secs_f64()
    );
    let mut wrong = Vec::new();
    if ours_after != ours {
        wrong.push(format!("here: {ours:?} became {ours_after:?}"));
    }
    if theirs_after != theirs {
        wrong.push(format!("in the keeper: {theirs:?} became {theirs_after:?}"));
    }
    if !files.is_empty() {
        wrong.push(format!("files left behind: {files:?}"));
    }
    (!wrong.is_empty()).then(|| format!("{kind:?} after {cycles} cycles: {}", wrong.join("; ")))
}

// ---- a tree killed ---------------------------------------------------------------------

/// How deep the killed tree is (the root is level 1).
const TREE_DEPTH: u32 = 3;

/// What a level of the tree reports: its level, its pid, and its fork server's pid.
type Level = (u32, u32, Option<u32>);

/// One level of the tree: holds a named segment, an anonymous one, a queue and a held lock,
/// starts the next level (daemonic), reports, and waits to be killed.
fn tree_level((report, prefix, level): (Queue<Level>, String, u32)) {
    let named = SharedMemory::create_named(&format!("{prefix}-{level}"), 4096).unwrap();
    let anonymous = SharedMemory::create(4096).unwrap();
    let queue = Queue::<u64>::new().unwrap();
    queue.put(u64::from(level)).unwrap();
    let lock = Lock::new().unwrap();
    let held = lock.lock().unwrap();
    let next = (level < TREE_DEPTH).then(|| {
        builder()
            .daemon(true)
            .spawn(tree_level, (report.clone(), prefix.clone(), level + 1))
            .unwrap()
    });
    let server = mproc::process::fork_server_pid();
    report.put((level, std::process::id(), server)).unwrap();
    // Killed long before this ends (a bound, so that nothing outlives a broken test).
    std::thread::sleep(Duration::from_secs(300));
    drop((named, anonymous, queue, held, next));
}

/// Starts a three-level tree whose every level holds shared memory (named and anonymous),
/// a queue and a held lock, SIGKILLs its root, and checks that every process of it ends
/// and this process gets back to what it held before (the tree's named segments gone too).
fn killed_tree_leaves_nothing() -> Option<String> {
    let prefix = format!("mproc-leaks-{}-tree", std::process::id());
    // Once before counting: the queue's and a child's first use keep things for good.
    drop(Queue::<Level>::new().unwrap());
    builder().spawn(plus_one, 1).unwrap().join().unwrap();
    let before = Census::take(&prefix);
    let report = Queue::<Level>::new().unwrap();
    // Under fork the root would share this process's segment tracker (a fork child does),
    // so its segments would go only when this process ends: it starts by spawn instead,
    // the root of a tree of its own, and its descendants by the method under test.
    let root_method = match method() {
        mproc::StartMethod::Fork => mproc::StartMethod::Spawn,
        m => m,
    };
    let mut root = builder()
        .start_method(root_method)
        .spawn(tree_level, (report.clone(), prefix.clone(), 1))
        .unwrap();
    let mut pids = Vec::new();
    for _ in 0..TREE_DEPTH {
        let (level, pid, server) = report.get_timeout(STEP).expect("every level reports");
        pids.push((format!("level {level}"), pid));
        if let Some(server) = server {
            pids.push((format!("the fork server of level {level}"), server));
        }
    }
    let named = mproc_tests::shm_names(&prefix).len();
    root.kill().unwrap();
    let ended = root.join().expect_err("killed");
    drop((root, report));
    let t0 = Instant::now();
    let mut alive: Vec<_> = pids.clone();
    while !alive.is_empty() && t0.elapsed() < SETTLE {
        alive.retain(|(_, pid)| mproc_tests::proc_state(*pid).is_some_and(|(s, _)| s != 'Z'));
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = Census::settle(&before, &prefix, SETTLE);
    eprintln!(
        "a killed tree of {TREE_DEPTH} levels ({ended}): {} processes, {named} named segments; \
         here {before:?}",
        pids.len()
    );
    let mut wrong = Vec::new();
    if named != TREE_DEPTH as usize {
        wrong.push(format!("{named} named segments while the tree ran"));
    }
    if !alive.is_empty() {
        wrong.push(format!("still running: {alive:?}"));
    }
    if after != before {
        wrong.push(format!("here: {before:?} became {after:?}"));
    }
    (!wrong.is_empty()).then(|| format!("the killed tree: {}", wrong.join("; ")))
}

fn nothing(_: ()) {}

/// A child that has ended, dropped without being joined, takes its fds with it at once:
/// under the fork server even while the server's report of its status cannot come (the
/// server is stopped with SIGSTOP meanwhile), which is how a pool drops its workers.
fn ended_child_dropped_unjoined_leaves_nothing() -> Option<String> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let prefix = "mproc-leaks-unjoined";
    builder().spawn(plus_one, 1).unwrap().join().unwrap();
    let before = Census::take(prefix);
    let child = builder().spawn(nothing, ()).unwrap();
    let server = mproc::process::fork_server_pid().map(|p| Pid::from_raw(p as i32));
    if let Some(server) = server {
        kill(server, Signal::SIGSTOP).unwrap();
    }
    let ended = mproc_tests::wait_gone(child.sentinel(), STEP);
    drop(child);
    let fds = mproc_sys::open_fd_count().unwrap();
    if let Some(server) = server {
        kill(server, Signal::SIGCONT).unwrap();
    }
    let after = Census::settle(&before, prefix, SETTLE);
    eprintln!("a child dropped after it ended: {fds} fds at once, {before:?} before");
    let mut wrong = Vec::new();
    if !ended {
        wrong.push("the child did not end".to_string());
    }
    if fds != before.fds {
        wrong.push(format!(
            "{} fds just after the drop, {} before",
            fds, before.fds
        ));
    }
    if after != before {
        wrong.push(format!("here: {before:?} became {after:?}"));
    }
    (!wrong.is_empty()).then(|| format!("a child dropped unjoined: {}", wrong.join("; ")))
}

/// Every handle type, then a killed tree, in one test: the counts are the whole process's,
/// which other tests' threads would disturb (a thread's stack and signal stack are
/// mappings). Every part runs, and the failures are reported together.
#[test]
fn no_handle_type_and_no_killed_tree_leaks() {
    deadline(Duration::from_secs(1800), || {
        let cycles = load_size(LEAK_CYCLES, 10_000, 1);
        let child_cycles = load_size(CHILD_CYCLES, 10_000, 1);
        let t0 = Instant::now();
        let mut failures: Vec<String> = KINDS
            .iter()
            .filter_map(|&kind| {
                let n = if matches!(kind, Kind::Child | Kind::Pool) {
                    child_cycles
                } else {
                    cycles
                };
                no_leak(kind, n)
            })
            .collect();
        failures.extend(killed_tree_leaves_nothing());
        failures.extend(ended_child_dropped_unjoined_leaves_nothing());
        eprintln!(
            "leak checks ({:?}): {:.1} s in all",
            method(),
            t0.elapsed().as_secs_f64()
        );
        assert!(failures.is_empty(), "leaks:\n{}", failures.join("\n"));
    });
}
