//! Managers under the start method named by `MPROC_START_METHOD`: every proxy operation,
//! proxies shared by many processes and threads and sent every way there is, custom types,
//! remote clients over TCP, garbage and dying clients, a dying server and a dying owner, and
//! the server's limits. Every test runs inside a deadline that kills its children.
//!
//! The children of the tests and the managers' servers use the method under test; under
//! fork with a permit, as a test binary always has other threads (the harness's, the
//! deadline's watchdog).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mproc::manager::{
    Barrier, Builder, Condition, Dict, ErrorKind, Event, List, Lock, Manager, Namespace, Queue,
    RLock, Set, Shared, SharedObject, Value,
};
use mproc::{Child, ForkPermit, StartMethod};
use mproc_tests::{builder, deadline, finish_helper, method, read_tagged_line, wait_gone};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

mproc::init_before_main!();

const LIMIT: Duration = Duration::from_secs(120);
const HELPER: &str = env!("CARGO_BIN_EXE_mproc-helper");
/// How long something that must happen may take before the test calls it a hang (a
/// liveness bound, not a speed requirement).
const LIVE: Duration = Duration::from_secs(10);
/// The key of the managers served on TCP (UTF-8: the helper takes it as an argument).
const KEY: &str = "the key of the manager tests";

// ---- support --------------------------------------------------------------------------

/// A manager builder for the method under test (with a fork permit for fork, as
/// `mproc_tests::builder` has).
fn manager_builder() -> Builder {
    let b = Manager::builder().start_method(method());
    if method() == StartMethod::Fork {
        // SAFETY: the other threads are the harness's and the watchdogs', which hold none of
        // mproc's locks; the forked server runs only the manager's code.
        b.fork_permit(unsafe { ForkPermit::other_threads_are_idle() })
    } else {
        b
    }
}

fn start() -> Manager {
    manager_builder().start().expect("starting a manager")
}

/// The kind of the error `r` must be.
fn kind_of<T: std::fmt::Debug>(r: mproc::manager::Result<T>) -> ErrorKind {
    r.expect_err("an error").kind()
}

/// A child's report of an error kind (`ErrorKind` does not travel).
fn kind_name(e: &mproc::manager::Error) -> String {
    format!("{:?}", e.kind())
}

/// Waits until `ready` holds; fails the test when it still does not after [`LIVE`].
fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        assert!(t0.elapsed() < LIVE, "{what}: still not so after {LIVE:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pid_fd(pid: u32) -> std::os::fd::OwnedFd {
    mproc_sys::pidfd_open(pid).expect("a pidfd")
}

fn signal(pidfd: &std::os::fd::OwnedFd, sig: i32) {
    mproc_sys::pidfd_send_signal(pidfd.as_fd(), sig).expect("signalling");
}

/// SIGKILLs a child and waits for it to end.
fn kill_and_reap<R: serde::de::DeserializeOwned>(child: &mut Child<R>) {
    child.kill().unwrap();
    assert_eq!(
        child.wait_timeout(LIVE).unwrap(),
        mproc::ExitStatus::Signal(mproc_sys::SIGKILL)
    );
}

/// CLOCK_MONOTONIC in ns: one clock for every process of the machine.
fn now_ns() -> u64 {
    mproc_sys::monotonic_ns()
}

/// Runs the helper binary with `args` to its end (killing it after 60 s).
fn run_helper(args: &[&str]) -> (bool, String) {
    let child = Command::new(HELPER)
        .args(args)
        .env("MPROC_START_METHOD", method().as_str())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let why = format!("the helper {args:?} overstayed");
    let out = finish_helper(child, Duration::from_secs(60), &why);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Reads from `s` until the peer closes it: true when it did within `limit`.
fn closed_by_peer(s: &mut TcpStream, limit: Duration) -> bool {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < limit {
        s.set_read_timeout(Some(
            limit
                .saturating_sub(t0.elapsed())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return true, // reset
        }
    }
    false
}

/// An mproc frame header (magic, version, flags, fd count, body length) announcing `len`.
fn frame_header(len: u64) -> Vec<u8> {
    let mut h = b"MP".to_vec();
    h.extend([1, 0]);
    h.extend(0u32.to_le_bytes());
    h.extend(len.to_le_bytes());
    h
}

// ---- a custom shared type -------------------------------------------------------------

/// A registered type: an account with a balance and the history of its deposits.
struct Account {
    balance: i64,
    history: Vec<i64>,
}

#[derive(Serialize, Deserialize, Debug)]
enum AccountCall {
    Deposit(i64),
    Balance,
    History,
    /// Records a 0 in the history, then panics.
    Explode,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum AccountReply {
    Balance(i64),
    History(Vec<i64>),
}

impl SharedObject for Account {
    const NAME: &'static str = "account";
    type Init = i64;
    type Request = AccountCall;
    type Response = AccountReply;

    fn new(opening: i64) -> Self {
        Account {
            balance: opening,
            history: Vec::new(),
        }
    }

    fn handle(&mut self, call: AccountCall) -> AccountReply {
        match call {
            AccountCall::Deposit(n) => {
                self.balance += n;
                self.history.push(n);
                AccountReply::Balance(self.balance)
            }
            AccountCall::Balance => AccountReply::Balance(self.balance),
            AccountCall::History => AccountReply::History(self.history.clone()),
            AccountCall::Explode => {
                self.history.push(0);
                panic!("the account explodes");
            }
        }
    }
}

/// A second registered type.
struct Tally(u64);

impl SharedObject for Tally {
    const NAME: &'static str = "tally";
    type Init = u64;
    type Request = u64;
    type Response = u64;

    fn new(first: u64) -> Self {
        Tally(first)
    }

    fn handle(&mut self, add: u64) -> u64 {
        self.0 += add;
        self.0
    }
}

/// A type no server of these tests is started with.
struct Stranger;

impl SharedObject for Stranger {
    const NAME: &'static str = "stranger";
    type Init = ();
    type Request = ();
    type Response = ();

    fn new((): ()) -> Self {
        Stranger
    }

    fn handle(&mut self, (): ()) {}
}

// ---- children -------------------------------------------------------------------------

fn push_many((list, id, n): (List<u64>, u64, u64)) {
    for i in 0..n {
        list.push(id << 32 | i).unwrap();
    }
}

fn pop_all(list: List<u64>) -> Vec<u64> {
    let mut got = Vec::new();
    while let Some(x) = list.pop().unwrap() {
        got.push(x);
    }
    got
}

fn bump_key((d, n): (Dict<String, u64>, u64)) {
    for _ in 0..n {
        d.update(&"k".to_string(), |v| v.unwrap_or(0) + 1).unwrap();
    }
}

fn bump_value((v, n): (Value<u64>, u64)) {
    for _ in 0..n {
        v.update(|x| x + 1).unwrap();
    }
}

/// Inserts `0..n` into the set; returns how many inserts said the item was new.
fn insert_all((set, n): (Set<u64>, u64)) -> u64 {
    (0..n).map(|i| u64::from(set.insert(i).unwrap())).sum()
}

fn try_acquire_in_child(lock: Lock) -> bool {
    lock.try_acquire().unwrap()
}

fn try_acquire_rlock_in_child(lock: RLock) -> bool {
    lock.try_acquire().unwrap()
}

fn notify_from_child((cond, flag): (Condition, Value<bool>)) {
    let _held = cond.lock().unwrap();
    flag.set(true).unwrap();
    cond.notify_all().unwrap();
}

fn set_after((event, ms): (Event, u64)) {
    std::thread::sleep(Duration::from_millis(ms));
    event.set().unwrap();
}

/// Waits at the barrier `rounds` times; returns its arrival index each time.
fn barrier_rounds((barrier, rounds): (Barrier, u32)) -> Vec<u64> {
    (0..rounds).map(|_| barrier.wait().unwrap()).collect()
}

fn deposit_ten_times(account: Shared<Account>) -> i64 {
    for _ in 0..10 {
        account.call(AccountCall::Deposit(100)).unwrap();
    }
    match account.call_timeout(&AccountCall::Balance, LIVE).unwrap() {
        AccountReply::Balance(b) => b,
        other => panic!("{other:?}"),
    }
}

fn use_sent_list((list, x): (List<u32>, u32)) -> usize {
    list.push(x).unwrap();
    list.len().unwrap()
}

/// Receives a list through the pipe and pushes 2 into it; sends back `mine`.
fn via_pipe((mut conn, mine): (mproc::Connection<List<u32>>, List<u32>)) {
    let got = conn.recv().unwrap();
    got.push(2).unwrap();
    conn.send(&mine).unwrap();
}

fn via_queue(q: mproc::Queue<List<u32>>) {
    let list = q.get().unwrap();
    list.push(3).unwrap();
}

/// Puts `10 * i` into the i-th queue of a manager list of manager queues.
fn via_manager_list(outer: List<Queue<u32>>) {
    for (i, q) in outer.to_vec().unwrap().into_iter().enumerate() {
        q.put(i as u32 * 10).unwrap();
    }
}

fn via_namespace(ns: Namespace) {
    let ready: Event = ns.get("ready").unwrap();
    ready.set().unwrap();
}

fn timeout_of(list: List<u32>) -> Option<Duration> {
    list.timeout()
}

fn get_forever((q, started): (Queue<u32>, List<u32>)) -> u32 {
    started.push(std::process::id()).unwrap();
    q.get().unwrap()
}

fn hold_lock_forever((lock, started): (Lock, List<u32>)) {
    lock.acquire().unwrap();
    started.push(std::process::id()).unwrap();
    std::thread::sleep(Duration::from_secs(3600));
}

fn hold_rlock_forever((lock, started): (RLock, List<u32>)) {
    lock.acquire().unwrap();
    lock.acquire().unwrap();
    started.push(std::process::id()).unwrap();
    std::thread::sleep(Duration::from_secs(3600));
}

fn wait_at_barrier_forever((barrier, started): (Barrier, List<u32>)) -> u64 {
    started.push(std::process::id()).unwrap();
    barrier.wait().unwrap()
}

/// Blocks in a queue's `get`; returns the error kind it ends with and when (monotonic ns).
fn get_until_the_server_dies((q, started): (Queue<u32>, List<u32>)) -> (String, u64) {
    started.push(std::process::id()).unwrap();
    let e = q.get().unwrap_err();
    (kind_name(&e), now_ns())
}

/// Blocks in a lock's `acquire`; returns the error kind it ends with and when.
fn acquire_until_the_server_dies((lock, started): (Lock, List<u32>)) -> (String, u64) {
    started.push(std::process::id()).unwrap();
    let e = lock.acquire().unwrap_err();
    (kind_name(&e), now_ns())
}

/// Two threads that each hold a connection of their own (both wait at a barrier at once),
/// then wait for `go`.
fn hold_two_connections((barrier, go, arrived): (Barrier, Event, List<u32>)) {
    std::thread::scope(|s| {
        for i in 0..2 {
            let (barrier, go, arrived) = (&barrier, &go, &arrived);
            s.spawn(move || {
                barrier.wait().unwrap();
                arrived.push(i).unwrap();
                go.wait().unwrap();
            });
        }
    });
}

/// Waits on the condition (forever), after saying so.
fn wait_on_condition((cond, arrived): (Condition, List<u32>)) {
    let _held = cond.lock().unwrap();
    arrived.push(std::process::id()).unwrap();
    cond.wait().unwrap();
}

/// One call from a fresh process (with its own connection).
fn probe(e: Event) -> Result<bool, String> {
    e.is_set().map_err(|e| kind_name(&e))
}

/// Returns the first error kind of a call on a manager that was shut down, if any.
fn call_after_shutdown(list: List<u32>) -> String {
    kind_name(&list.len().unwrap_err())
}

// ---- every operation of every proxy ---------------------------------------------------

#[test]
fn list_operations_behave_as_pythons() {
    deadline(LIMIT, || {
        let m = start();
        let l = m.list::<i64>().unwrap();
        assert!(l.is_empty().unwrap());
        assert_eq!(l.pop().unwrap(), None);
        l.push(1).unwrap();
        l.append(2).unwrap();
        l.extend([3, 4, 5]).unwrap();
        assert_eq!(l.len().unwrap(), 5);
        assert!(!l.is_empty().unwrap());
        assert_eq!(l.to_vec().unwrap(), [1, 2, 3, 4, 5]);

        assert_eq!(l.pop().unwrap(), Some(5));
        assert_eq!(l.pop_at(0).unwrap(), 1);
        assert_eq!(l.pop_at(-1).unwrap(), 4);
        assert_eq!(kind_of(l.pop_at(2)), ErrorKind::IndexOutOfRange);
        assert_eq!(kind_of(l.pop_at(-3)), ErrorKind::IndexOutOfRange);
        assert_eq!(l.to_vec().unwrap(), [2, 3]);

        // An index past either end inserts at that end, as in Python.
        l.insert(0, 10).unwrap();
        l.insert(100, 20).unwrap();
        l.insert(-100, 30).unwrap();
        l.insert(-1, 40).unwrap();
        l.insert(2, 50).unwrap();
        assert_eq!(l.to_vec().unwrap(), [30, 10, 50, 2, 3, 40, 20]);

        assert_eq!(l.get(0).unwrap(), 30);
        assert_eq!(l.get(-1).unwrap(), 20);
        assert_eq!(l.get(-7).unwrap(), 30);
        assert_eq!(kind_of(l.get(7)), ErrorKind::IndexOutOfRange);
        assert_eq!(kind_of(l.get(-8)), ErrorKind::IndexOutOfRange);
        l.set(-2, 41).unwrap();
        l.set(1, 11).unwrap();
        assert_eq!(kind_of(l.set(7, 0)), ErrorKind::IndexOutOfRange);
        assert_eq!(kind_of(l.set(-8, 0)), ErrorKind::IndexOutOfRange);
        assert_eq!(l.to_vec().unwrap(), [30, 11, 50, 2, 3, 41, 20]);

        l.push(2).unwrap();
        assert_eq!(l.index(&2).unwrap(), 3);
        assert_eq!(l.count(&2).unwrap(), 2);
        assert!(l.contains(&50).unwrap());
        assert!(!l.contains(&99).unwrap());
        l.remove(&2).unwrap(); // the first one
        assert_eq!(l.to_vec().unwrap(), [30, 11, 50, 3, 41, 20, 2]);
        assert_eq!(l.count(&2).unwrap(), 1);
        assert_eq!(l.index(&2).unwrap(), 6);
        assert_eq!(l.count(&99).unwrap(), 0);
        assert_eq!(kind_of(l.remove(&99)), ErrorKind::ValueNotFound);
        assert_eq!(kind_of(l.index(&99)), ErrorKind::ValueNotFound);

        // Slices are clamped to the list.
        assert_eq!(l.slice(1..3).unwrap(), [11, 50]);
        assert_eq!(l.slice(5..100).unwrap(), [20, 2]);
        #[allow(clippy::reversed_empty_ranges)] // Python's l[4:2]
        let backwards = 4..2;
        assert_eq!(l.slice(backwards).unwrap(), Vec::<i64>::new());
        assert_eq!(l.slice(100..200).unwrap(), Vec::<i64>::new());

        l.reverse().unwrap();
        assert_eq!(l.to_vec().unwrap(), [2, 20, 41, 3, 50, 11, 30]);
        l.sort().unwrap();
        assert_eq!(l.to_vec().unwrap(), [2, 3, 11, 20, 30, 41, 50]);
        l.sort_by_key(|x| -*x).unwrap();
        assert_eq!(l.to_vec().unwrap(), [50, 41, 30, 20, 11, 3, 2]);

        let removed = l
            .modify(|items| {
                let before = items.len();
                items.retain(|x| x % 2 == 0);
                before - items.len()
            })
            .unwrap();
        assert_eq!(removed, 3);
        assert_eq!(l.to_vec().unwrap(), [50, 30, 20, 2]);
        assert_eq!(l.update(0, |x| x + 1).unwrap(), 51);
        assert_eq!(l.update(-1, |x| x * 10).unwrap(), 20);
        assert_eq!(kind_of(l.update(4, |x| *x)), ErrorKind::IndexOutOfRange);
        assert_eq!(kind_of(l.update(-5, |x| *x)), ErrorKind::IndexOutOfRange);
        assert_eq!(l.to_vec().unwrap(), [51, 30, 20, 20]);

        l.clear().unwrap();
        assert_eq!(l.len().unwrap(), 0);
        assert!(l.is_empty().unwrap());
        assert_eq!(l.pop().unwrap(), None);

        let words = ["a".to_string(), "b".to_string()];
        let from = m.list_from::<String>(&words).unwrap();
        assert_eq!(from.to_vec().unwrap(), words);
        // Every object lives as long as the manager.
        assert_eq!(m.object_count().unwrap(), 2);
    });
}

#[test]
fn dict_operations_keep_insertion_order() {
    deadline(LIMIT, || {
        let m = start();
        let d = m.dict::<String, u64>().unwrap();
        let k = |s: &str| s.to_string();
        assert!(d.is_empty().unwrap());
        assert_eq!(d.pop_item().unwrap(), None);
        assert_eq!(d.insert(k("a"), 1).unwrap(), None);
        assert_eq!(d.insert(k("b"), 2).unwrap(), None);
        assert_eq!(d.insert(k("c"), 3).unwrap(), None);
        // Replacing a value keeps the key's place, as in Python.
        assert_eq!(d.insert(k("a"), 10).unwrap(), Some(1));
        assert_eq!(d.keys().unwrap(), ["a", "b", "c"]);
        assert_eq!(d.values().unwrap(), [10, 2, 3]);
        assert_eq!(d.items().unwrap(), [(k("a"), 10), (k("b"), 2), (k("c"), 3)]);
        assert_eq!(d.get(&k("a")).unwrap(), Some(10));
        assert_eq!(d.get(&k("z")).unwrap(), None);
        assert!(d.contains_key(&k("b")).unwrap());
        assert!(!d.contains_key(&k("z")).unwrap());
        assert_eq!(d.len().unwrap(), 3);
        assert!(!d.is_empty().unwrap());

        assert_eq!(d.remove(&k("b")).unwrap(), Some(2));
        assert_eq!(d.remove(&k("b")).unwrap(), None);
        assert_eq!(d.pop(&k("c")).unwrap(), 3);
        assert_eq!(kind_of(d.pop(&k("c"))), ErrorKind::KeyNotFound);
        // A key inserted again goes to the end.
        d.insert(k("b"), 20).unwrap();
        assert_eq!(d.keys().unwrap(), ["a", "b"]);

        assert_eq!(d.setdefault(k("a"), 99).unwrap(), 10);
        assert_eq!(d.setdefault(k("d"), 4).unwrap(), 4);
        assert_eq!(d.get(&k("d")).unwrap(), Some(4));
        assert_eq!(d.keys().unwrap(), ["a", "b", "d"]);

        let more: [(String, u64); 2] = [(k("e"), 5), (k("a"), 11)];
        d.extend(&more).unwrap();
        assert_eq!(
            d.items().unwrap(),
            [(k("a"), 11), (k("b"), 20), (k("d"), 4), (k("e"), 5)]
        );
        // pop_item takes the last inserted pair (LIFO, as Python's popitem).
        assert_eq!(d.pop_item().unwrap(), Some((k("e"), 5)));
        assert_eq!(d.pop_item().unwrap(), Some((k("d"), 4)));
        assert_eq!(d.keys().unwrap(), ["a", "b"]);

        assert_eq!(d.update(&k("a"), |v| v.unwrap_or(0) + 1).unwrap(), 12);
        assert_eq!(d.update(&k("f"), |v| v.unwrap_or(0) + 1).unwrap(), 1);
        assert_eq!(
            d.items().unwrap(),
            [(k("a"), 12), (k("b"), 20), (k("f"), 1)]
        );

        d.clear().unwrap();
        assert_eq!(d.len().unwrap(), 0);
        assert_eq!(d.keys().unwrap(), Vec::<String>::new());
        assert_eq!(d.pop_item().unwrap(), None);

        let from = m
            .dict_from(&[(2u32, "two".to_string()), (1, "one".to_string())])
            .unwrap();
        assert_eq!(
            from.items().unwrap(),
            [(2, "two".to_string()), (1, "one".to_string())]
        );
    });
}

#[test]
fn set_operations() {
    deadline(LIMIT, || {
        let m = start();
        let s = m.set::<String>().unwrap();
        assert!(s.is_empty().unwrap());
        assert_eq!(s.pop().unwrap(), None);
        assert!(s.insert("b".to_string()).unwrap());
        assert!(s.insert("a".to_string()).unwrap());
        assert!(!s.insert("b".to_string()).unwrap(), "already there");
        s.extend(["c", "a", "d"].map(String::from)).unwrap();
        assert_eq!(s.len().unwrap(), 4);
        assert_eq!(s.to_vec().unwrap(), ["b", "a", "c", "d"]);
        assert!(s.contains("c").unwrap());
        assert!(!s.contains("z").unwrap());
        assert!(s.remove("c").unwrap());
        assert!(!s.remove("c").unwrap());
        assert_eq!(s.pop().unwrap(), Some("d".to_string()));
        assert_eq!(s.to_vec().unwrap(), ["b", "a"]);
        s.clear().unwrap();
        assert!(s.is_empty().unwrap());
        assert_eq!(s.pop().unwrap(), None);
    });
}

#[test]
fn set_insert_tells_exactly_one_of_four_processes() {
    deadline(LIMIT, || {
        let m = start();
        let s = m.set::<u64>().unwrap();
        let mut children: Vec<_> = (0..4)
            .map(|_| builder().spawn(insert_all, (s.clone(), 500)).unwrap())
            .collect();
        let firsts: u64 = children.iter_mut().map(|c| c.join().unwrap()).sum();
        assert_eq!(firsts, 500);
        assert_eq!(s.len().unwrap(), 500);
    });
}

#[test]
fn value_array_and_namespace_operations() {
    deadline(LIMIT, || {
        let m = start();
        let v = m.value(5u64).unwrap();
        assert_eq!(v.get().unwrap(), 5);
        v.set(7).unwrap();
        assert_eq!(v.get().unwrap(), 7);
        assert_eq!(v.update(|x| x * 2).unwrap(), 14);
        assert_eq!(v.get().unwrap(), 14);
        let s = m.value("text".to_string()).unwrap();
        assert_eq!(s.update(|t| format!("{t}!")).unwrap(), "text!");

        let a = m.array(vec![1.5f64, 2.5, 3.5]).unwrap();
        assert_eq!(a.len().unwrap(), 3);
        assert!(!a.is_empty().unwrap());
        assert_eq!(a.get(0).unwrap(), 1.5);
        assert_eq!(a.get(-1).unwrap(), 3.5);
        assert_eq!(kind_of(a.get(3)), ErrorKind::IndexOutOfRange);
        assert_eq!(kind_of(a.get(-4)), ErrorKind::IndexOutOfRange);
        a.set(-1, 0.0).unwrap();
        assert_eq!(kind_of(a.set(3, 0.0)), ErrorKind::IndexOutOfRange);
        assert_eq!(a.to_vec().unwrap(), [1.5, 2.5, 0.0]);
        assert_eq!(a.slice(1..3).unwrap(), [2.5, 0.0]);
        assert_eq!(a.slice(2..99).unwrap(), [0.0]);
        a.set_all(&[7.0, 8.0, 9.0]).unwrap();
        assert_eq!(a.to_vec().unwrap(), [7.0, 8.0, 9.0]);
        assert_eq!(kind_of(a.set_all(&[1.0])), ErrorKind::InvalidInput);
        assert_eq!(kind_of(a.set_all(&[1.0; 4])), ErrorKind::InvalidInput);
        assert_eq!(a.to_vec().unwrap(), [7.0, 8.0, 9.0]);
        let empty = m.array(Vec::<u8>::new()).unwrap();
        assert!(empty.is_empty().unwrap());
        assert_eq!(kind_of(empty.get(0)), ErrorKind::IndexOutOfRange);

        let ns = m.namespace().unwrap();
        assert_eq!(ns.fields().unwrap(), Vec::<String>::new());
        ns.set("x", 1u32).unwrap();
        ns.set("name", "run-7").unwrap();
        ns.set("flag", 7u8).unwrap();
        assert_eq!(ns.get::<u32>("x").unwrap(), 1);
        assert_eq!(ns.get::<String>("name").unwrap(), "run-7");
        assert_eq!(ns.fields().unwrap(), ["flag", "name", "x"]);
        assert!(ns.contains("x").unwrap());
        assert!(!ns.contains("y").unwrap());
        // A field may change type.
        ns.set("x", vec![1u8, 2]).unwrap();
        assert_eq!(ns.get::<Vec<u8>>("x").unwrap(), [1, 2]);
        // Read as a type it does not decode as: Decode; a field not there: KeyNotFound.
        assert_eq!(kind_of(ns.get::<bool>("flag")), ErrorKind::Decode);
        assert_eq!(kind_of(ns.get::<u32>("missing")), ErrorKind::KeyNotFound);
        ns.remove("x").unwrap();
        assert_eq!(kind_of(ns.remove("x")), ErrorKind::KeyNotFound);
        assert_eq!(kind_of(ns.get::<Vec<u8>>("x")), ErrorKind::KeyNotFound);
        assert_eq!(ns.fields().unwrap(), ["flag", "name"]);
    });
}

#[test]
fn queue_operations_block_time_out_and_bound() {
    deadline(LIMIT, || {
        let m = start();
        let q = m.queue::<u32>().unwrap();
        assert!(q.is_empty().unwrap());
        q.put(1).unwrap();
        q.put(2).unwrap();
        q.try_put(3).unwrap();
        assert_eq!(q.len().unwrap(), 3);
        assert!(!q.is_empty().unwrap());
        assert!(!q.is_full().unwrap()); // unbounded
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(q.try_get().unwrap(), Some(2));
        assert_eq!(q.get_timeout(LIVE).unwrap(), 3);
        assert_eq!(q.try_get().unwrap(), None);
        let t0 = Instant::now();
        assert_eq!(
            kind_of(q.get_timeout(Duration::from_millis(50))),
            ErrorKind::Empty
        );
        assert!(t0.elapsed() >= Duration::from_millis(50));

        // A get waiting in another thread is woken by a put.
        std::thread::scope(|s| {
            let getter = s.spawn(|| q.get());
            std::thread::sleep(Duration::from_millis(50));
            q.put(4).unwrap();
            assert_eq!(getter.join().unwrap().unwrap(), 4);
        });

        let b = m.bounded_queue::<u32>(2).unwrap();
        b.try_put(1).unwrap();
        assert!(!b.is_full().unwrap());
        b.put(2).unwrap();
        assert!(b.is_full().unwrap());
        assert_eq!(kind_of(b.try_put(3)), ErrorKind::Full);
        let t0 = Instant::now();
        assert_eq!(
            kind_of(b.put_timeout(3, Duration::from_millis(50))),
            ErrorKind::Full
        );
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert_eq!(b.len().unwrap(), 2);
        // A put waiting for room is woken by a get.
        std::thread::scope(|s| {
            let putter = s.spawn(|| b.put(3));
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(b.get().unwrap(), 1);
            putter.join().unwrap().unwrap();
        });
        assert_eq!(b.get().unwrap(), 2);
        b.put_timeout(4, LIVE).unwrap();
        assert_eq!(b.try_get().unwrap(), Some(3));
        assert_eq!(b.try_get().unwrap(), Some(4));
        assert!(b.is_empty().unwrap());
        assert_eq!(kind_of(m.bounded_queue::<u32>(0)), ErrorKind::InvalidInput);
        assert_eq!(
            kind_of(m.bounded_joinable_queue::<u32>(0)),
            ErrorKind::InvalidInput
        );
    });
}

#[test]
fn joinable_queue_counts_unfinished_items() {
    deadline(LIMIT, || {
        let m = start();
        let j = m.joinable_queue::<u32>().unwrap();
        j.join().unwrap(); // nothing was put
        j.put(1).unwrap();
        j.put(2).unwrap();
        let t0 = Instant::now();
        assert_eq!(
            kind_of(j.join_timeout(Duration::from_millis(50))),
            ErrorKind::Timeout
        );
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert_eq!(j.get().unwrap(), 1);
        j.task_done().unwrap();
        assert_eq!(
            kind_of(j.join_timeout(Duration::from_millis(10))),
            ErrorKind::Timeout
        );
        // join waits in this thread while another one finishes the last item.
        std::thread::scope(|s| {
            let worker = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                let x = j.get().unwrap();
                j.task_done().unwrap();
                x
            });
            j.join().unwrap();
            assert_eq!(worker.join().unwrap(), 2);
        });
        j.join_timeout(Duration::ZERO).unwrap();
        assert_eq!(kind_of(j.task_done()), ErrorKind::NotOwner);

        let bounded = m.bounded_joinable_queue::<u32>(1).unwrap();
        bounded.try_put(1).unwrap();
        assert!(bounded.is_full().unwrap());
        assert_eq!(kind_of(bounded.try_put(2)), ErrorKind::Full);
        assert_eq!(bounded.try_get().unwrap(), Some(1));
        bounded.task_done().unwrap();
        bounded.join().unwrap();
    });
}

#[test]
fn lock_and_rlock_operations() {
    deadline(LIMIT, || {
        let m = start();
        let lock = m.lock().unwrap();
        assert!(!lock.is_locked().unwrap());
        {
            let _held = lock.lock().unwrap();
            assert!(lock.is_locked().unwrap());
            // Not reentrant: its own holder waits too.
            assert!(lock.try_lock().unwrap().is_none());
            assert!(!lock.try_acquire().unwrap());
            let t0 = Instant::now();
            assert!(
                lock.lock_timeout(Duration::from_millis(50))
                    .unwrap()
                    .is_none()
            );
            assert!(t0.elapsed() >= Duration::from_millis(50));
            let mut child = builder().spawn(try_acquire_in_child, lock.clone()).unwrap();
            assert!(!child.join().unwrap(), "another process took a held lock");
        }
        assert!(!lock.is_locked().unwrap());
        // A try_lock or lock_timeout that fails leaves another holder's lock held (it once
        // released it: the guard it did not return was made, and dropped).
        let holder = builder()
            .spawn(hold_lock_forever, (lock.clone(), m.list().unwrap()))
            .unwrap();
        until("the child holds the lock", || lock.is_locked().unwrap());
        for _ in 0..3 {
            assert!(lock.try_lock().unwrap().is_none());
            assert!(
                lock.lock_timeout(Duration::from_millis(10))
                    .unwrap()
                    .is_none()
            );
        }
        assert!(
            lock.is_locked().unwrap(),
            "a failed try_lock released the lock"
        );
        assert!(!lock.try_acquire().unwrap());
        holder.kill().unwrap();
        assert!(lock.acquire_timeout(LIVE).unwrap());
        lock.release().unwrap();
        // Any thread may release a Lock, as in Python.
        lock.acquire().unwrap();
        std::thread::scope(|s| s.spawn(|| lock.release()).join().unwrap()).unwrap();
        assert!(!lock.is_locked().unwrap());
        assert_eq!(kind_of(lock.release()), ErrorKind::NotOwner);
        assert!(lock.acquire_timeout(LIVE).unwrap());
        lock.release().unwrap();
        let guard = lock.try_lock().unwrap().expect("free");
        drop(guard);
        let guard = lock.lock_timeout(LIVE).unwrap().expect("free");
        drop(guard);
        assert!(!lock.is_locked().unwrap());
        // A waiter in another thread gets it when it is released.
        lock.acquire().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                lock.acquire().unwrap();
                lock.release().unwrap();
            });
            std::thread::sleep(Duration::from_millis(50));
            lock.release().unwrap();
            waiter.join().unwrap();
        });

        let r = m.rlock().unwrap();
        let outer = r.lock().unwrap();
        let inner = r.lock().unwrap(); // reentrant
        assert!(r.try_acquire().unwrap()); // a third level
        r.release().unwrap();
        assert!(r.is_locked().unwrap());
        std::thread::scope(|s| {
            s.spawn(|| {
                // Another thread neither takes nor releases it.
                assert!(!r.try_acquire().unwrap());
                assert_eq!(kind_of(r.release()), ErrorKind::NotOwner);
            })
            .join()
            .unwrap();
        });
        let mut child = builder()
            .spawn(try_acquire_rlock_in_child, r.clone())
            .unwrap();
        assert!(!child.join().unwrap(), "another process took a held RLock");
        drop(inner);
        assert!(r.is_locked().unwrap(), "held once more");
        std::thread::scope(|s| assert!(!s.spawn(|| r.try_acquire().unwrap()).join().unwrap()));
        drop(outer);
        assert!(!r.is_locked().unwrap());
        assert_eq!(kind_of(r.release()), ErrorKind::NotOwner);
        std::thread::scope(|s| {
            s.spawn(|| {
                let _held = r.lock_timeout(LIVE).unwrap().expect("free");
                assert!(r.is_locked().unwrap());
            })
            .join()
            .unwrap();
        });
        assert!(!r.is_locked().unwrap());
    });
}

#[test]
fn semaphore_operations() {
    deadline(LIMIT, || {
        let m = start();
        let s = m.semaphore(2).unwrap();
        assert_eq!(s.value().unwrap(), 2);
        s.acquire().unwrap();
        assert!(s.try_acquire().unwrap());
        assert!(!s.try_acquire().unwrap());
        let t0 = Instant::now();
        assert!(!s.acquire_timeout(Duration::from_millis(50)).unwrap());
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert_eq!(s.value().unwrap(), 0);
        // A release in another thread wakes a waiting acquire.
        std::thread::scope(|sc| {
            let waiter = sc.spawn(|| s.acquire());
            std::thread::sleep(Duration::from_millis(50));
            s.release().unwrap();
            waiter.join().unwrap().unwrap();
        });
        assert_eq!(s.value().unwrap(), 0);
        // Unbounded: released above its first value.
        for _ in 0..3 {
            s.release().unwrap();
        }
        assert_eq!(s.value().unwrap(), 3);
        assert!(s.acquire_timeout(LIVE).unwrap());

        let b = m.bounded_semaphore(1).unwrap();
        b.acquire().unwrap();
        assert_eq!(b.value().unwrap(), 0);
        b.release().unwrap();
        assert_eq!(kind_of(b.release()), ErrorKind::NotOwner);
        assert_eq!(b.value().unwrap(), 1);

        let zero = m.semaphore(0).unwrap();
        assert!(!zero.try_acquire().unwrap());
    });
}

#[test]
fn condition_operations_and_notifications() {
    deadline(LIMIT, || {
        let m = start();
        let c = m.condition().unwrap();
        // Waiting or notifying without holding the lock.
        assert_eq!(kind_of(c.wait()), ErrorKind::NotOwner);
        assert_eq!(
            kind_of(c.wait_timeout(Duration::from_millis(10))),
            ErrorKind::NotOwner
        );
        assert_eq!(kind_of(c.notify(1)), ErrorKind::NotOwner);
        assert_eq!(kind_of(c.notify_all()), ErrorKind::NotOwner);
        {
            let _held = c.lock().unwrap();
            let t0 = Instant::now();
            assert!(!c.wait_timeout(Duration::from_millis(50)).unwrap());
            assert!(t0.elapsed() >= Duration::from_millis(50));
            // Held again after the timeout: another thread cannot take it.
            std::thread::scope(|s| assert!(!s.spawn(|| c.try_acquire().unwrap()).join().unwrap()));
            assert!(
                !c.wait_for(|| false, Some(Duration::from_millis(50)))
                    .unwrap()
            );
            assert!(c.wait_for(|| true, None).unwrap());
            c.notify_all().unwrap(); // nobody waits: nothing happens
            // Not holding it in another thread: NotOwner there.
            std::thread::scope(|s| {
                assert_eq!(
                    s.spawn(|| kind_of(c.notify(1))).join().unwrap(),
                    ErrorKind::NotOwner
                );
            });
        }
        assert!(!c.is_locked().unwrap());

        // A notification from another thread wakes a waiter.
        let flag = m.value(false).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let _held = c.lock().unwrap();
                c.wait_for(|| flag.get().unwrap(), Some(LIVE)).unwrap()
            });
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                let _held = c.lock().unwrap();
                flag.set(true).unwrap();
                c.notify_all().unwrap();
            });
            assert!(waiter.join().unwrap());
        });

        // A notification from another process wakes a waiter here.
        flag.set(false).unwrap();
        {
            let _held = c.lock().unwrap();
            // The child waits for the lock until this wait releases it.
            let mut child = builder()
                .spawn(notify_from_child, (c.clone(), flag.clone()))
                .unwrap();
            assert!(c.wait_for(|| flag.get().unwrap(), Some(LIVE)).unwrap());
            child.join().unwrap();
        }

        // notify(1) wakes one of two waiters.
        let waiting = m.value(0u32).unwrap();
        let woke = m.value(0u32).unwrap();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let _held = c.lock().unwrap();
                    waiting.update(|n| n + 1).unwrap();
                    c.wait().unwrap();
                    woke.update(|n| n + 1).unwrap();
                });
            }
            // When this thread holds the lock and both counted themselves, both wait.
            until("both waiters wait", || {
                let _held = c.lock().unwrap();
                if waiting.get().unwrap() == 2 {
                    c.notify(1).unwrap();
                    true
                } else {
                    false
                }
            });
            until("one waiter woke", || woke.get().unwrap() == 1);
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(woke.get().unwrap(), 1, "notify(1) woke both");
            let held = c.lock().unwrap();
            c.notify(1).unwrap();
            drop(held);
            until("the other waiter woke", || woke.get().unwrap() == 2);
        });
    });
}

#[test]
fn event_operations_and_a_set_from_a_child() {
    deadline(LIMIT, || {
        let m = start();
        let e = m.event().unwrap();
        assert!(!e.is_set().unwrap());
        let t0 = Instant::now();
        assert!(!e.wait_timeout(Duration::from_millis(50)).unwrap());
        assert!(t0.elapsed() >= Duration::from_millis(50));
        e.set().unwrap();
        assert!(e.is_set().unwrap());
        e.wait().unwrap();
        assert!(e.wait_timeout(Duration::from_millis(10)).unwrap());
        e.clear().unwrap();
        assert!(!e.is_set().unwrap());
        assert!(!e.wait_timeout(Duration::from_millis(10)).unwrap());

        // A child's set wakes a waiter in the parent (two: a thread and this one).
        std::thread::scope(|s| {
            let waiter = s.spawn(|| e.wait());
            let mut child = builder().spawn(set_after, (e.clone(), 100)).unwrap();
            assert!(e.wait_timeout(LIVE).unwrap());
            waiter.join().unwrap().unwrap();
            child.join().unwrap();
        });
        assert!(e.is_set().unwrap());
    });
}

#[test]
fn barrier_operations_across_processes() {
    deadline(LIMIT, || {
        let m = start();
        assert_eq!(kind_of(m.barrier(0)), ErrorKind::InvalidInput);
        let one = m.barrier(1).unwrap();
        assert_eq!(one.wait().unwrap(), 0);

        // Four processes pass three times; each time, each takes one arrival index.
        let b = m.barrier(4).unwrap();
        assert_eq!(b.parties().unwrap(), 4);
        assert_eq!(b.n_waiting().unwrap(), 0);
        assert!(!b.is_broken().unwrap());
        let mut children: Vec<_> = (0..4)
            .map(|_| builder().spawn(barrier_rounds, (b.clone(), 3)).unwrap())
            .collect();
        let rounds: Vec<Vec<u64>> = children.iter_mut().map(|c| c.join().unwrap()).collect();
        for r in 0..3 {
            let indices: HashSet<u64> = rounds.iter().map(|v| v[r]).collect();
            assert_eq!(
                indices,
                HashSet::from([0, 1, 2, 3]),
                "round {r}: {rounds:?}"
            );
        }

        // A wait that times out breaks the barrier, for later waiters too.
        let b = m.barrier(2).unwrap();
        let t0 = Instant::now();
        assert_eq!(
            kind_of(b.wait_timeout(Duration::from_millis(50))),
            ErrorKind::BrokenBarrier
        );
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert!(b.is_broken().unwrap());
        assert_eq!(b.n_waiting().unwrap(), 0);
        assert_eq!(kind_of(b.wait()), ErrorKind::BrokenBarrier);
        b.reset().unwrap();
        assert!(!b.is_broken().unwrap());
        std::thread::scope(|s| {
            let other = s.spawn(|| b.wait().unwrap());
            let mine = b.wait().unwrap();
            let indices = HashSet::from([mine, other.join().unwrap()]);
            assert_eq!(indices, HashSet::from([0, 1]));
        });

        // abort wakes a waiter with BrokenBarrier.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| b.wait());
            until("a party waits", || b.n_waiting().unwrap() == 1);
            b.abort().unwrap();
            assert_eq!(kind_of(waiter.join().unwrap()), ErrorKind::BrokenBarrier);
        });
        assert!(b.is_broken().unwrap());
        assert_eq!(kind_of(b.wait_timeout(LIVE)), ErrorKind::BrokenBarrier);

        // reset wakes a waiter with BrokenBarrier and leaves the barrier usable.
        b.reset().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| b.wait());
            until("a party waits", || b.n_waiting().unwrap() == 1);
            b.reset().unwrap();
            assert_eq!(kind_of(waiter.join().unwrap()), ErrorKind::BrokenBarrier);
        });
        assert!(!b.is_broken().unwrap());
        std::thread::scope(|s| {
            let other = s.spawn(|| b.wait_timeout(LIVE).unwrap());
            b.wait_timeout(LIVE).unwrap();
            other.join().unwrap();
        });
    });
}

// ---- many processes at once -----------------------------------------------------------

#[test]
fn four_processes_push_and_pop_10k_each_without_loss_or_duplicates() {
    deadline(LIMIT, || {
        let m = start();
        let list = m.list::<u64>().unwrap();
        const N: u64 = 10_000;
        let mut pushers: Vec<_> = (0..4)
            .map(|id| builder().spawn(push_many, (list.clone(), id, N)).unwrap())
            .collect();
        for p in &mut pushers {
            p.join().unwrap();
        }
        let all = list.to_vec().unwrap();
        assert_eq!(all.len(), 4 * N as usize);
        // Each producer's items are in the order it pushed them.
        for id in 0..4u64 {
            let mine: Vec<u64> = all.iter().copied().filter(|x| x >> 32 == id).collect();
            assert_eq!(mine, (0..N).map(|i| id << 32 | i).collect::<Vec<_>>());
        }

        let mut poppers: Vec<_> = (0..4)
            .map(|_| builder().spawn(pop_all, list.clone()).unwrap())
            .collect();
        let popped: Vec<Vec<u64>> = poppers.iter_mut().map(|c| c.join().unwrap()).collect();
        let total: usize = popped.iter().map(Vec::len).sum();
        let union: HashSet<u64> = popped.iter().flatten().copied().collect();
        assert_eq!(total, 4 * N as usize, "items lost or popped twice");
        assert_eq!(union.len(), total, "an item was popped twice");
        let pushed: HashSet<u64> = (0..4u64)
            .flat_map(|id| (0..N).map(move |i| id << 32 | i))
            .collect();
        assert_eq!(union, pushed);
        // A stack: each popper took its items newest first.
        for got in &popped {
            for id in 0..4u64 {
                let mine: Vec<u64> = got.iter().copied().filter(|x| x >> 32 == id).collect();
                assert!(mine.windows(2).all(|w| w[0] > w[1]), "not LIFO");
            }
        }
        assert!(list.is_empty().unwrap());
    });
}

#[test]
fn updates_from_four_processes_sum_exactly() {
    deadline(LIMIT, || {
        let m = start();
        let d = m.dict::<String, u64>().unwrap();
        let v = m.value(0u64).unwrap();
        const N: u64 = 250;
        let mut children: Vec<_> = (0..4)
            .map(|_| builder().spawn(bump_key, (d.clone(), N)).unwrap())
            .collect();
        children.extend((0..4).map(|_| builder().spawn(bump_value, (v.clone(), N)).unwrap()));
        for c in &mut children {
            c.join().unwrap();
        }
        assert_eq!(d.get(&"k".to_string()).unwrap(), Some(4 * N));
        assert_eq!(d.len().unwrap(), 1);
        assert_eq!(v.get().unwrap(), 4 * N);
    });
}

// ---- custom types ---------------------------------------------------------------------

#[test]
fn a_registered_type_is_served_to_the_parent_and_a_child() {
    deadline(LIMIT, || {
        let m = manager_builder()
            .register::<(Account, Tally)>()
            .start()
            .unwrap();
        let account = m.shared::<Account>(100).unwrap();
        assert_eq!(
            account.call(AccountCall::Deposit(5)).unwrap(),
            AccountReply::Balance(105)
        );
        let tally = m.shared::<Tally>(7).unwrap();
        assert_eq!(tally.call(3).unwrap(), 10);

        let mut children: Vec<_> = (0..2)
            .map(|_| builder().spawn(deposit_ten_times, account.clone()).unwrap())
            .collect();
        for c in &mut children {
            let seen = c.join().unwrap();
            assert!((1105..=2105).contains(&seen), "{seen}");
        }
        assert_eq!(
            account.call(&AccountCall::Balance).unwrap(),
            AccountReply::Balance(2105)
        );
        match account.call(&AccountCall::History).unwrap() {
            AccountReply::History(h) => {
                assert_eq!(h.len(), 21);
                assert_eq!(h.iter().sum::<i64>(), 2005);
            }
            other => panic!("{other:?}"),
        }

        // A type the server was not started with.
        assert_eq!(kind_of(m.shared::<Stranger>(())), ErrorKind::NotRegistered);
        let plain = start();
        assert_eq!(
            kind_of(plain.shared::<Account>(0)),
            ErrorKind::NotRegistered
        );

        // A handler that panics: Handler, and the server goes on, the object as the handler
        // left it (it recorded a 0 before panicking).
        assert_eq!(
            kind_of(account.call(&AccountCall::Explode)),
            ErrorKind::Handler
        );
        match account.call(&AccountCall::History).unwrap() {
            AccountReply::History(h) => assert_eq!(h.last(), Some(&0)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            account.call_timeout(&AccountCall::Balance, LIVE).unwrap(),
            AccountReply::Balance(2105)
        );
        assert_eq!(tally.call(1).unwrap(), 11);
        let mut child = builder().spawn(deposit_ten_times, account.clone()).unwrap();
        assert_eq!(child.join().unwrap(), 3105);
        assert_eq!(m.object_count().unwrap(), 2);
        // A custom proxy can be published and looked up like the others.
        m.publish("account", &account).unwrap();
        let found = m.lookup::<Shared<Account>>("account").unwrap();
        assert_eq!(
            found.call(&AccountCall::Balance).unwrap(),
            AccountReply::Balance(3105)
        );
        assert_eq!(
            kind_of(m.lookup::<Shared<Tally>>("account")),
            ErrorKind::WrongType
        );
    });
}

// ---- proxies travel -------------------------------------------------------------------

#[test]
fn proxies_travel_as_arguments_through_pipes_queues_and_manager_objects() {
    deadline(LIMIT, || {
        let m = start();
        let l = m.list::<u32>().unwrap();

        // As a spawn argument.
        let mut c = builder().spawn(use_sent_list, (l.clone(), 1)).unwrap();
        assert_eq!(c.join().unwrap(), 1);

        // Through a pipe, both ways.
        let other = m.list::<u32>().unwrap();
        let (mut ours, theirs) = mproc::pipe::<List<u32>>().unwrap();
        let mut c = builder().spawn(via_pipe, (theirs, other.clone())).unwrap();
        ours.send(&l).unwrap();
        let back = ours.recv_timeout(LIVE).unwrap();
        back.push(20).unwrap();
        c.join().unwrap();
        assert_eq!(l.to_vec().unwrap(), [1, 2]);
        assert_eq!(other.to_vec().unwrap(), [20]);

        // Through an mproc queue.
        let q = mproc::Queue::<List<u32>>::new().unwrap();
        q.put(l.clone()).unwrap();
        let mut c = builder().spawn(via_queue, q.clone()).unwrap();
        c.join().unwrap();
        assert_eq!(l.to_vec().unwrap(), [1, 2, 3]);

        // Stored inside another manager object.
        let queues: Vec<Queue<u32>> = (0..3).map(|_| m.queue().unwrap()).collect();
        let outer = m.list_from(&queues).unwrap();
        let mut c = builder().spawn(via_manager_list, outer.clone()).unwrap();
        c.join().unwrap();
        for (i, q) in queues.iter().enumerate() {
            assert_eq!(q.get_timeout(LIVE).unwrap(), i as u32 * 10);
        }
        // Read back here, it works here too.
        outer.get(-1).unwrap().put(7).unwrap();
        assert_eq!(queues[2].try_get().unwrap(), Some(7));
        let ns = m.namespace().unwrap();
        let ready = m.event().unwrap();
        ns.set("ready", &ready).unwrap();
        let mut c = builder().spawn(via_namespace, ns.clone()).unwrap();
        c.join().unwrap();
        assert!(ready.is_set().unwrap());

        // A proxy's timeout travels with it.
        let timed = l.clone().with_timeout(Duration::from_secs(7));
        assert_eq!(l.timeout(), None);
        let mut c = builder().spawn(timeout_of, timed).unwrap();
        assert_eq!(c.join().unwrap(), Some(Duration::from_secs(7)));
    });
}

#[test]
fn proxies_are_used_from_many_threads_at_once() {
    deadline(LIMIT, || {
        let m = start();
        let l = m.list::<u64>().unwrap();
        let q = m.queue::<u64>().unwrap();
        let v = m.value(0u64).unwrap();
        std::thread::scope(|s| {
            // A thread blocked in a get holds up nobody.
            let blocked = s.spawn(|| q.get());
            let workers: Vec<_> = (0..8u64)
                .map(|t| {
                    let l = l.clone();
                    let v = &v;
                    s.spawn(move || {
                        for i in 0..300 {
                            l.push(t * 1000 + i).unwrap();
                        }
                        for _ in 0..50 {
                            v.update(|x| x + 1).unwrap();
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            assert!(!blocked.is_finished());
            q.put(99).unwrap();
            assert_eq!(blocked.join().unwrap().unwrap(), 99);
        });
        let got: HashSet<u64> = l.to_vec().unwrap().into_iter().collect();
        let want: HashSet<u64> = (0..8u64)
            .flat_map(|t| (0..300).map(move |i| t * 1000 + i))
            .collect();
        assert_eq!(l.len().unwrap(), 2400);
        assert_eq!(got, want);
        assert_eq!(v.get().unwrap(), 400);
    });
}

// ---- remote clients -------------------------------------------------------------------

#[test]
fn a_remote_program_reaches_a_manager_served_on_tcp() {
    deadline(LIMIT, || {
        let server = manager_builder()
            .serve("127.0.0.1:0", KEY.as_bytes())
            .unwrap();
        let mproc::Address::Tcp(sa) = server.address().clone() else {
            panic!("not TCP: {}", server.address());
        };
        assert_ne!(sa.port(), 0);
        let address = server.address().to_string();
        let numbers = server.list::<u32>().unwrap();
        let hits = server.dict::<String, u64>().unwrap();
        hits.insert("remote".to_string(), 10).unwrap();
        let jobs = server.queue::<u64>().unwrap();
        for n in 1..=20 {
            jobs.put(n).unwrap();
        }
        let squares = server.dict::<u64, u64>().unwrap();
        let lock = server.lock().unwrap();
        server.publish("numbers", &numbers).unwrap();
        server.publish("hits", &hits).unwrap();
        server.publish("jobs", &jobs).unwrap();
        server.publish("squares", &squares).unwrap();
        server.publish("lock", &lock).unwrap();

        // From this process.
        let wrong = Manager::connect(&address, b"not the key");
        assert_eq!(kind_of(wrong), ErrorKind::Authentication);
        let client = Manager::connect(&address, KEY.as_bytes()).unwrap();
        assert_eq!(client.pid(), None);
        assert_eq!(
            kind_of(client.lookup::<List<u64>>("numbers")),
            ErrorKind::WrongType
        );
        assert_eq!(
            kind_of(client.lookup::<Dict<u32, u32>>("numbers")),
            ErrorKind::WrongType
        );
        assert_eq!(
            kind_of(client.lookup::<List<u32>>("nobody")),
            ErrorKind::NoSuchObject
        );
        assert_eq!(kind_of(client.shutdown()), ErrorKind::InvalidState);
        let mine = client.lookup::<List<u32>>("numbers").unwrap();
        // Names: republished, unpublished.
        server.publish("temp", &jobs).unwrap();
        server.publish("temp", &numbers).unwrap();
        assert!(client.lookup::<List<u32>>("temp").is_ok());
        assert!(server.unpublish("temp").unwrap());
        assert!(!server.unpublish("temp").unwrap());
        assert_eq!(
            kind_of(client.lookup::<List<u32>>("temp")),
            ErrorKind::NoSuchObject
        );
        // A proxy of another manager is not published here.
        let elsewhere = start();
        let foreign = elsewhere.list::<u32>().unwrap();
        assert_eq!(
            kind_of(server.publish("foreign", &foreign)),
            ErrorKind::InvalidInput
        );
        // Nobody listening; an address that does not parse.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(
            kind_of(Manager::connect(
                &format!("127.0.0.1:{port}"),
                KEY.as_bytes()
            )),
            ErrorKind::Disconnected
        );
        assert_eq!(
            kind_of(Manager::connect("", KEY.as_bytes())),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind_of(Manager::connect("tcp://no address", KEY.as_bytes())),
            ErrorKind::InvalidInput
        );

        // From another program.
        let (ok, out) = run_helper(&["manager-remote", &address, KEY]);
        assert!(ok, "{out}");
        for line in [
            "wrong-key Err(Authentication)",
            "hits 11",
            "jobs 20",
            "wrong-type Err(WrongType)",
            "unknown Err(NoSuchObject)",
            "shutdown Err(InvalidState)",
            "holding the lock",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in:\n{out}");
        }
        assert_eq!(mine.to_vec().unwrap(), (0..100).collect::<Vec<_>>());
        assert_eq!(hits.get(&"remote".to_string()).unwrap(), Some(11));
        assert!(jobs.is_empty().unwrap());
        let mut got = squares.items().unwrap();
        got.sort();
        assert_eq!(got, (1..=20).map(|n| (n, n * n)).collect::<Vec<_>>());
        // The program exited holding the lock: the server released it.
        assert!(lock.acquire_timeout(LIVE).unwrap(), "the lock stayed held");
        lock.release().unwrap();

        // The owner stops the server: the connected manager is told.
        server.shutdown().unwrap();
        assert_eq!(kind_of(mine.len()), ErrorKind::Disconnected);
        assert_eq!(kind_of(client.object_count()), ErrorKind::Disconnected);
        assert_eq!(
            kind_of(Manager::connect(&address, KEY.as_bytes())),
            ErrorKind::Disconnected
        );
    });
}

#[test]
fn a_manager_served_on_a_socket_path() {
    deadline(LIMIT, || {
        let path = std::env::temp_dir().join(format!(
            "mproc-manager-test-{}-{}.sock",
            std::process::id(),
            now_ns()
        ));
        let path = path.to_str().unwrap().to_string();
        let server = manager_builder().serve(&path, KEY.as_bytes()).unwrap();
        assert_eq!(server.address().to_string(), path);
        let ev = server.event().unwrap();
        server.publish("ev", &ev).unwrap();
        let client = Manager::connect(&path, KEY.as_bytes()).unwrap();
        client.lookup::<Event>("ev").unwrap().set().unwrap();
        assert!(ev.is_set().unwrap());
        assert_eq!(
            kind_of(Manager::connect(&path, b"wrong")),
            ErrorKind::Authentication
        );
        server.shutdown().unwrap();
        let _ = std::fs::remove_file(&path);
    });
}

// ---- bad and dying clients ------------------------------------------------------------

#[test]
fn garbage_and_stalling_peers_are_dropped_while_the_others_go_on() {
    deadline(LIMIT, || {
        let server = manager_builder()
            .serve("127.0.0.1:0", KEY.as_bytes())
            .unwrap();
        let mproc::Address::Tcp(sa) = server.address().clone() else {
            panic!("not TCP");
        };
        let address = server.address().to_string();
        let list = server.list::<u32>().unwrap();
        list.push(0).unwrap();

        // Connects and says nothing.
        let mut staller = TcpStream::connect(sa).unwrap();
        // Random bytes.
        let mut noise = TcpStream::connect(sa).unwrap();
        let mut bytes = vec![0u8; 64 << 10];
        mproc_sys::random_bytes(&mut bytes).unwrap();
        let _ = noise.write_all(&bytes); // the server may hang up before it is all sent
        // A frame header announcing 2^64 - 1 bytes, then a little of them.
        let mut huge = TcpStream::connect(sa).unwrap();
        let _ = huge.write_all(&frame_header(u64::MAX));
        let _ = huge.write_all(&[7; 1000]);
        // Authenticated, then garbage instead of a request.
        let mut babbler =
            mproc::Client::connect::<ByteBuf, ByteBuf>(server.address(), KEY.as_bytes()).unwrap();
        babbler.send_bytes(b"this is not a request").unwrap();
        // Authenticated, then nothing at all.
        let mut mute =
            mproc::Client::connect::<ByteBuf, ByteBuf>(server.address(), KEY.as_bytes()).unwrap();

        // The others go on, on their connections and on new ones, while those peers stall.
        for i in 1..=100 {
            list.push(i).unwrap();
        }
        let client = Manager::connect(&address, KEY.as_bytes()).unwrap();
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| s.spawn(|| client.object_count().unwrap()))
                .collect();
            for t in threads {
                assert_eq!(t.join().unwrap(), 1);
            }
        });

        // Each of them is dropped by the server: garbage at once, stallers at their
        // handshake deadline.
        assert!(closed_by_peer(&mut noise, LIVE), "random bytes kept");
        assert!(closed_by_peer(&mut huge, LIVE), "a huge frame kept");
        let err = babbler.recv_timeout(LIVE).unwrap_err();
        assert_eq!(err.kind(), mproc::pipe::ErrorKind::Disconnected, "{err}");
        assert!(
            closed_by_peer(&mut staller, Duration::from_secs(30)),
            "a stalled handshake kept"
        );
        let err = mute.recv_timeout(Duration::from_secs(30)).unwrap_err();
        assert_eq!(err.kind(), mproc::pipe::ErrorKind::Disconnected, "{err}");
        assert_eq!(list.len().unwrap(), 101);
        assert_eq!(
            Manager::connect(&address, KEY.as_bytes())
                .unwrap()
                .object_count()
                .unwrap(),
            1
        );
    });
}

#[test]
fn clients_sigkilled_mid_call_take_nothing_and_hold_nothing() {
    deadline(LIMIT, || {
        let m = start();
        let q = m.queue::<u32>().unwrap();
        let lock = m.lock().unwrap();
        let rlock = m.rlock().unwrap();
        let barrier = m.barrier(3).unwrap();
        let started = m.list::<u32>().unwrap();
        let busy = m.list::<u64>().unwrap();

        let getter = builder()
            .spawn(get_forever, (q.clone(), started.clone()))
            .unwrap();
        let holder = builder()
            .spawn(hold_lock_forever, (lock.clone(), started.clone()))
            .unwrap();
        let rholder = builder()
            .spawn(hold_rlock_forever, (rlock.clone(), started.clone()))
            .unwrap();
        let party = builder()
            .spawn(wait_at_barrier_forever, (barrier.clone(), started.clone()))
            .unwrap();
        let mut pusher = builder().spawn(push_many, (busy.clone(), 9, 2000)).unwrap();
        until("the children are in place", || started.len().unwrap() == 4);
        // Let the getter and the party reach the server (if not, all the same).
        std::thread::sleep(Duration::from_millis(300));
        assert!(lock.is_locked().unwrap());
        assert!(rlock.is_locked().unwrap());
        assert!(!lock.try_acquire().unwrap());
        assert!(!rlock.try_acquire().unwrap());

        let (mut getter, mut holder, mut rholder, mut party) = (getter, holder, rholder, party);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                lock.acquire().unwrap();
                lock.release().unwrap();
            });
            let rwaiter = s.spawn(|| {
                let _held = rlock.lock().unwrap();
            });
            let bwaiter = s.spawn(|| barrier.wait());
            std::thread::sleep(Duration::from_millis(100));
            kill_and_reap(&mut getter);
            kill_and_reap(&mut holder);
            kill_and_reap(&mut rholder);
            kill_and_reap(&mut party);
            // The waiters get the locks of the dead, and the barrier breaks.
            waiter.join().unwrap();
            rwaiter.join().unwrap();
            assert_eq!(kind_of(bwaiter.join().unwrap()), ErrorKind::BrokenBarrier);
        });
        assert!(!lock.is_locked().unwrap());
        assert!(!rlock.is_locked().unwrap());
        assert!(barrier.is_broken().unwrap());
        // The getter died waiting: the item put now is not lost to it.
        q.put(42).unwrap();
        assert_eq!(q.get_timeout(LIVE).unwrap(), 42);
        assert_eq!(q.len().unwrap(), 0);
        // The other client went on.
        pusher.join().unwrap();
        assert_eq!(busy.len().unwrap(), 2000);
    });
}

// ---- a dying server, a dying owner ----------------------------------------------------

#[test]
fn a_sigkilled_server_disconnects_every_waiting_client() {
    deadline(LIMIT, || {
        let m = start();
        let q = m.queue::<u32>().unwrap();
        let lock = m.lock().unwrap();
        let started = m.list::<u32>().unwrap();
        lock.acquire().unwrap(); // held by this thread: the others wait
        let mut getter = builder()
            .spawn(get_until_the_server_dies, (q.clone(), started.clone()))
            .unwrap();
        let mut acquirer = builder()
            .spawn(
                acquire_until_the_server_dies,
                (lock.clone(), started.clone()),
            )
            .unwrap();
        let server = pid_fd(m.pid().unwrap());
        std::thread::scope(|s| {
            let t_get = s.spawn(|| (q.get().map_err(|e| e.kind()), now_ns()));
            let t_acquire = s.spawn(|| (lock.acquire().map_err(|e| e.kind()), now_ns()));
            until("the children wait", || started.len().unwrap() == 2);
            std::thread::sleep(Duration::from_millis(300));
            assert!(!t_get.is_finished() && !t_acquire.is_finished());
            let killed = now_ns();
            signal(&server, mproc_sys::SIGKILL);
            assert!(
                wait_gone(server.as_fd(), LIVE),
                "the server survived SIGKILL"
            );
            let (got, at) = t_get.join().unwrap();
            assert_eq!(got, Err(ErrorKind::Disconnected));
            assert!(at - killed < LIVE.as_nanos() as u64);
            let (got, at) = t_acquire.join().unwrap();
            assert_eq!(got, Err(ErrorKind::Disconnected));
            assert!(at - killed < LIVE.as_nanos() as u64);
            for child in [&mut getter, &mut acquirer] {
                let (kind, at) = child.join().unwrap();
                assert_eq!(kind, "Disconnected");
                assert!(at - killed < LIVE.as_nanos() as u64);
            }
        });
        // Every new call, on old proxies or new objects, is told the same, at once.
        assert_eq!(kind_of(q.len()), ErrorKind::Disconnected);
        assert_eq!(kind_of(q.try_get()), ErrorKind::Disconnected);
        assert_eq!(kind_of(lock.try_acquire()), ErrorKind::Disconnected);
        assert_eq!(kind_of(m.list::<u8>()), ErrorKind::Disconnected);
        assert_eq!(kind_of(m.object_count()), ErrorKind::Disconnected);
        std::thread::scope(|s| {
            assert_eq!(
                s.spawn(|| kind_of(started.len())).join().unwrap(),
                ErrorKind::Disconnected
            );
        });
        m.shutdown().unwrap(); // nothing to stop: no error, no hang
    });
}

#[test]
fn shutdown_stops_the_server_and_every_proxy_is_told() {
    deadline(LIMIT, || {
        let m = start();
        let l = m.list::<u32>().unwrap();
        l.push(1).unwrap();
        let server = pid_fd(m.pid().unwrap());
        m.shutdown().unwrap();
        assert!(
            wait_gone(server.as_fd(), LIVE),
            "the server outlived shutdown"
        );
        assert_eq!(kind_of(l.push(2)), ErrorKind::Disconnected);
        let mut child = builder().spawn(call_after_shutdown, l.clone()).unwrap();
        assert_eq!(child.join().unwrap(), "Disconnected");
        m.shutdown().unwrap(); // again: nothing to do

        // Dropping the owner stops the server too.
        let m = start();
        let l = m.list::<u32>().unwrap();
        let server = pid_fd(m.pid().unwrap());
        drop(m);
        assert!(
            wait_gone(server.as_fd(), LIVE),
            "the server outlived its owner"
        );
        assert_eq!(kind_of(l.len()), ErrorKind::Disconnected);
    });
}

#[test]
fn the_server_dies_with_its_sigkilled_owner() {
    deadline(LIMIT, || {
        let mut owner = Command::new(HELPER)
            .arg("manager-owner")
            .env("MPROC_START_METHOD", method().as_str())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid: u32 = read_tagged_line(&mut owner, "server ").parse().unwrap();
        let server = pid_fd(pid);
        assert!(
            !wait_gone(server.as_fd(), Duration::ZERO),
            "the server is alive before the kill"
        );
        owner.kill().unwrap(); // SIGKILL: no destructor runs
        owner.wait().unwrap();
        assert!(
            wait_gone(server.as_fd(), Duration::from_secs(20)),
            "the server {pid} outlived its SIGKILLed owner"
        );
    });
}

// ---- known bugs (ignored until fixed) ---------------------------------------------------

/// SIGSTOP and SIGCONT on Linux (x86, ARM, RISC-V).
const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

#[test]
fn a_call_that_times_out_keeps_the_locks_of_its_process() {
    deadline(LIMIT, || {
        let m = start();
        let l = m.list::<u32>().unwrap();
        let lock = m.lock().unwrap();
        lock.acquire().unwrap();
        let pid = m.pid().unwrap();
        let server = pid_fd(pid);
        signal(&server, SIGSTOP);
        until("the server stops", || {
            mproc_tests::proc_state(pid).is_some_and(|(state, _)| state == 'T')
        });
        let timed = l.clone().with_timeout(Duration::from_millis(200));
        let r = timed.len();
        signal(&server, SIGCONT);
        assert_eq!(kind_of(r), ErrorKind::Timeout);
        assert_eq!(l.len().unwrap(), 0);
        std::thread::sleep(Duration::from_millis(300));
        std::thread::scope(|s| {
            let stolen = s.spawn(|| lock.try_acquire().unwrap()).join().unwrap();
            assert!(!stolen, "another thread took the lock this one holds");
        });
        assert!(lock.is_locked().unwrap());
    });
}

#[test]
fn a_dead_parent_is_dead_to_the_server_even_with_a_forked_child_alive() {
    deadline(LIMIT, || {
        // A local socket: the server learns a local peer's pid (TCP peers have none) and
        // watches it.
        let path = std::env::temp_dir().join(format!("mproc-fork-{}.sock", std::process::id()));
        let server = manager_builder()
            .serve(path.to_str().unwrap(), KEY.as_bytes())
            .unwrap();
        let lock = server.lock().unwrap();
        let q = server.queue::<u32>().unwrap();
        server.publish("lock", &lock).unwrap();
        server.publish("queue", &q).unwrap();
        let mut parent = Command::new(HELPER)
            .args(["manager-fork-then-die", &server.address().to_string(), KEY])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid: u32 = read_tagged_line(&mut parent, "child ").parse().unwrap();
        let child = pid_fd(pid);
        assert!(lock.is_locked().unwrap());
        parent.kill().unwrap();
        parent.wait().unwrap();
        let released = lock.acquire_timeout(LIVE).unwrap();
        q.put(7).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let item = q.try_get().unwrap();
        signal(&child, mproc_sys::SIGKILL);
        assert!(wait_gone(child.as_fd(), LIVE));
        drop(server);
        let _ = std::fs::remove_file(&path);
        assert!(released, "the dead parent's lock stayed held");
        assert_eq!(item, Some(7), "the dead parent's get took the item");
    });
}

#[test]
fn a_notification_is_not_lost_to_a_dead_waiter() {
    deadline(LIMIT, || {
        let m = start();
        let c = m.condition().unwrap();
        let arrived = m.list::<u32>().unwrap();
        let mut child = builder()
            .spawn(wait_on_condition, (c.clone(), arrived.clone()))
            .unwrap();
        until("the child waits", || arrived.len().unwrap() == 1);
        std::thread::scope(|s| {
            let live = s.spawn(|| {
                let _held = c.lock().unwrap();
                arrived.push(0).unwrap();
                c.wait_timeout(LIVE).unwrap()
            });
            // Both wait once this thread holds the lock and both have said so.
            until("both wait", || {
                let _held = c.lock().unwrap();
                arrived.len().unwrap() == 2
            });
            let held = c.lock().unwrap();
            kill_and_reap(&mut child); // the first waiter dies
            c.notify(1).unwrap();
            drop(held);
            assert!(
                live.join().unwrap(),
                "the notification went to the dead waiter"
            );
        });
    });
}

// ---- limits ---------------------------------------------------------------------------

#[test]
fn max_message_refuses_large_requests_and_replies_and_the_connection_goes_on() {
    deadline(LIMIT, || {
        let m = manager_builder()
            .authkey(KEY.as_bytes())
            .max_message(1 << 20)
            .start()
            .unwrap();
        let l = m.list::<ByteBuf>().unwrap();
        let big = ByteBuf::from(vec![0u8; 2 << 20]);
        assert_eq!(kind_of(l.push(&big)), ErrorKind::TooLarge);
        assert_eq!(kind_of(m.list_from::<ByteBuf>([&big])), ErrorKind::TooLarge);
        let part = ByteBuf::from(vec![1u8; 600 << 10]);
        l.push(&part).unwrap();
        l.push(&part).unwrap();
        assert_eq!(l.len().unwrap(), 2);
        // A reply over the limit is refused too (two parts make 1.2 MB), and the connection
        // goes on.
        assert_eq!(kind_of(l.to_vec()), ErrorKind::TooLarge);
        assert_eq!(l.get(0).unwrap().len(), 600 << 10);
        assert_eq!(l.slice(0..1).unwrap().len(), 1);
        assert_eq!(l.len().unwrap(), 2);

        // A peer that sends a frame over the limit anyway is dropped; the others go on.
        let mut rude =
            mproc::Client::connect::<ByteBuf, ByteBuf>(m.address(), KEY.as_bytes()).unwrap();
        let _ = rude.send_bytes_timeout(&vec![0u8; 2 << 20], LIVE);
        let err = rude.recv_timeout(LIVE).unwrap_err();
        assert_eq!(err.kind(), mproc::pipe::ErrorKind::Disconnected, "{err}");
        assert_eq!(l.len().unwrap(), 2);
    });
}

#[test]
fn max_connections_refuses_the_one_too_many_with_busy() {
    deadline(LIMIT, || {
        let m = manager_builder().max_connections(3).start().unwrap();
        // The owner's calls so far went one at a time: it has one connection.
        let go = m.event().unwrap();
        let arrived = m.list::<u32>().unwrap();
        let two = m.barrier(2).unwrap();
        let probe_barrier = m.barrier(2).unwrap();
        // A child whose two threads hold a connection each: 3 of 3.
        let mut holder = builder()
            .spawn(
                hold_two_connections,
                (two.clone(), go.clone(), arrived.clone()),
            )
            .unwrap();
        until("both threads of the child arrived", || {
            arrived.len().unwrap() == 2
        });

        // Another process is refused.
        let mut child = builder().spawn(probe, go.clone()).unwrap();
        assert_eq!(child.join().unwrap(), Err("Busy".to_string()));
        // So is a thread of this process that calls while another one waits in a call: the
        // waiting one has the connection this process has, the other needs one more.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            for _ in 0..2 {
                let (tx, b) = (tx.clone(), &probe_barrier);
                s.spawn(move || tx.send(kind_of(b.wait())).unwrap());
            }
            assert_eq!(rx.recv_timeout(LIVE).unwrap(), ErrorKind::Busy);
            // Once the child is gone, its slots are free: a new connection ends the wait.
            kill_and_reap(&mut holder);
            until("a new connection is served", || {
                probe_barrier.abort().is_ok()
            });
            assert_eq!(rx.recv_timeout(LIVE).unwrap(), ErrorKind::BrokenBarrier);
        });
        // This process has two connections now, and a third process gets the last slot.
        let mut child = builder().spawn(probe, go.clone()).unwrap();
        assert_eq!(child.join().unwrap(), Ok(false));
        probe_barrier.reset().unwrap();
        std::thread::scope(|s| {
            let other = s.spawn(|| probe_barrier.wait_timeout(LIVE).unwrap());
            probe_barrier.wait_timeout(LIVE).unwrap();
            other.join().unwrap();
        });
    });
}

#[test]
fn a_forked_server_needs_a_permit_in_a_threaded_process() {
    deadline(LIMIT, || {
        // This test binary has other threads (the watchdog of `deadline`, at least).
        let err = Manager::builder()
            .start_method(StartMethod::Fork)
            .start()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Start, "{err}");
        // SAFETY: as in `manager_builder`.
        let permit = unsafe { ForkPermit::other_threads_are_idle() };
        let m = Manager::builder()
            .start_method(StartMethod::Fork)
            .fork_permit(permit)
            .start()
            .unwrap();
        let l = m.list::<u8>().unwrap();
        l.push(1).unwrap();
        assert_eq!(l.to_vec().unwrap(), [1]);
    });
}

/// A registered type whose `new` panics on 0.
struct Fragile(u32);

impl SharedObject for Fragile {
    const NAME: &'static str = "fragile";
    type Init = u32;
    type Request = ();
    type Response = u32;

    fn new(n: u32) -> Self {
        assert!(n != 0, "a fragile object cannot start at 0");
        Fragile(n)
    }

    fn handle(&mut self, (): ()) -> u32 {
        self.0
    }
}

#[test]
fn a_proxy_deadline_ends_a_blocking_call_in_the_server_too() {
    deadline(LIMIT, || {
        let m = start();
        let q = m.queue::<u32>().unwrap();
        let impatient = q.clone().with_timeout(Duration::from_millis(200));
        // Three gets that give up: the server gives up with them and takes nothing later.
        for _ in 0..3 {
            assert_eq!(kind_of(impatient.get()), ErrorKind::Empty);
        }
        for n in 1..=3 {
            q.put(n).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(q.len().unwrap(), 3, "a get that gave up took an item");
        assert_eq!(
            (q.get().unwrap(), q.get().unwrap(), q.get().unwrap()),
            (1, 2, 3)
        );

        // An acquire that gives up does not take the lock later behind its caller's back.
        let lock = m.lock().unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                lock.acquire().unwrap();
                held_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                lock.release().unwrap();
            })
        };
        held_rx.recv().unwrap();
        let impatient = lock.clone().with_timeout(Duration::from_millis(200));
        assert_eq!(kind_of(impatient.acquire()), ErrorKind::Timeout);
        assert_eq!(kind_of(impatient.lock().map(drop)), ErrorKind::Timeout);
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !lock.is_locked().unwrap(),
            "an acquire that gave up took the lock"
        );

        // The same for an event's wait: a Timeout, not a spurious success.
        let e = m.event().unwrap().with_timeout(Duration::from_millis(100));
        assert_eq!(kind_of(e.wait()), ErrorKind::Timeout);
    });
}

#[test]
fn an_event_set_then_cleared_at_once_wakes_its_waiters() {
    deadline(LIMIT, || {
        let m = start();
        let e = m.event().unwrap();
        let arrived = m.list::<u32>().unwrap();
        let waiter = {
            let (e, arrived) = (e.clone(), arrived.clone());
            std::thread::spawn(move || {
                arrived.push(1).unwrap();
                e.wait_timeout(LIVE).unwrap()
            })
        };
        until("the waiter to arrive", || arrived.len().unwrap() == 1);
        std::thread::sleep(Duration::from_millis(200)); // it waits in the server by now
        e.set().unwrap();
        e.clear().unwrap();
        assert!(
            waiter.join().unwrap(),
            "a waiter present at set() slept through it"
        );
        assert!(!e.is_set().unwrap());
    });
}

#[test]
fn a_panicking_new_is_reported_and_the_server_goes_on() {
    deadline(LIMIT, || {
        let m = manager_builder().register::<(Fragile,)>().start().unwrap();
        let lock = m.lock().unwrap();
        lock.acquire().unwrap();
        let err = m.shared::<Fragile>(0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Handler);
        assert!(err.to_string().contains("cannot start at 0"), "{err}");
        let fine = m.shared::<Fragile>(7).unwrap();
        assert_eq!(fine.call(()).unwrap(), 7);
        // This process's session is intact: it still holds its lock.
        assert!(lock.is_locked().unwrap());
        lock.release().unwrap();
    });
}
