//! Level 6: a manager. Its server process holds a list, used here as a shared stack: four
//! children push onto it while the parent pops, and nothing is lost or popped twice, as each
//! call is one atomic operation in the server. Then four processes bump counters in a
//! manager dict with `update`, an atomic read-modify-write (Python's `d[k] += 1` on a
//! manager dict is a read and a write, and loses updates between processes).
//!
//! `cargo run --release --example level6_manager`

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mproc::Manager;
use mproc::manager::{Dict, ErrorKind, List};

const CHILDREN: u32 = 4;
const PUSHES: u32 = 250;
const UPDATES: u32 = 500;

/// Runs in each child: pushes `PUSHES` numbers tagged with the child's index.
fn push_all((stack, child): (List<u32>, u32)) -> u32 {
    for k in 0..PUSHES {
        stack.push(child * 1000 + k).expect("push");
    }
    PUSHES
}

/// Runs in each child: `UPDATES` atomic increments of a shared key and of its own key.
fn count((counts, child): (Dict<String, u32>, u32)) {
    for _ in 0..UPDATES {
        counts
            .update("total", |n| n.unwrap_or(0) + 1)
            .expect("update");
        counts
            .update(&format!("child {child}"), |n| n.unwrap_or(0) + 1)
            .expect("update");
    }
}

/// Runs level 6 and checks what it shows.
pub fn run() -> mproc::Result<()> {
    mproc_examples::heading(6, "a manager list used as a shared stack");
    let manager = Manager::start()?;
    println!(
        "  manager server {} serves shared objects at {}",
        manager.pid().unwrap_or_default(),
        manager.address()
    );
    let stack = manager.list::<u32>()?;
    let mut children = Vec::new();
    for child in 0..CHILDREN {
        children.push(mproc::spawn(push_all, (stack.clone(), child))?);
    }
    // Pop while the children push; an empty stack just means "not yet".
    let want = (CHILDREN * PUSHES) as usize;
    let mut popped = Vec::with_capacity(want);
    let deadline = Instant::now() + Duration::from_secs(60);
    while popped.len() < want && Instant::now() < deadline {
        match stack.pop()? {
            Some(x) => popped.push(x),
            None => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    for mut c in children {
        c.join()?;
    }
    let distinct: HashSet<u32> = popped.iter().copied().collect();
    println!(
        "  {CHILDREN} children pushed {PUSHES} each while the parent popped: {} popped, {} distinct, {} left",
        popped.len(),
        distinct.len(),
        stack.len()?
    );
    assert_eq!((popped.len(), distinct.len()), (want, want));

    let counts = manager.dict::<String, u32>()?;
    let mut children = Vec::new();
    for child in 0..CHILDREN {
        children.push(mproc::spawn(count, (counts.clone(), child))?);
    }
    for mut c in children {
        c.join()?;
    }
    let total = counts.get("total")?.unwrap_or_default();
    println!("  {CHILDREN} processes x {UPDATES} atomic updates of one key: total = {total}");
    println!("  the dict, in insertion order: {} keys", counts.len()?);
    assert_eq!(total, CHILDREN * UPDATES);

    manager.shutdown()?;
    let after = stack.len().unwrap_err();
    println!("  after shutdown, a call says {:?} at once", after.kind());
    assert_eq!(after.kind(), ErrorKind::Disconnected);
    Ok(())
}

#[allow(dead_code)]
fn main() -> mproc::Result<()> {
    mproc::init();
    run()
}
