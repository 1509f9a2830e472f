//! Level 7: shared memory. A child writes into a `SharedMemory` segment that the parent
//! then reads; four processes increment a shared `Value` counter (correctly, under its
//! lock, and then the racy way, to show what the lock is for); a child fills an `Array`;
//! a child updates a `ShareableList` in place.
//!
//! `cargo run --release --example level7_shared_memory`

use mproc::{Array, Item, ShareableList, SharedMemory, Value};

const N: u64 = 50_000;

/// Runs in a child: writes a greeting and a pattern into the segment.
fn write_greeting(shm: SharedMemory) -> usize {
    let greeting = format!("hello from child {}", std::process::id());
    shm.fill(64, shm.len() - 64, 0x5a).expect("fill");
    shm.write::<u32>(0, greeting.len() as u32).expect("length");
    shm.write_at(4, greeting.as_bytes()).expect("greeting");
    greeting.len()
}

/// Runs in a child: `N` increments, each a read-modify-write under the value's lock.
fn add_with_lock(v: Value<u64>) {
    for _ in 0..N {
        *v.lock().expect("lock") += 1;
    }
}

/// Runs in a child: `N` increments the racy way, as Python's `v.value += 1` does them: a
/// locked read, then a separately locked write. Another process can write in between.
fn add_racy(v: Value<u64>) {
    for _ in 0..N {
        let x = v.get().expect("get");
        v.set(x + 1).expect("set");
    }
}

/// Runs in a child: fills the array with squares, under its lock.
fn fill_squares(a: Array<u32>) {
    let mut g = a.lock().expect("lock");
    for i in 0..g.len() {
        g.set(i, (i * i) as u32).expect("in range");
    }
}

/// Runs in a child: updates the list in place; returns whether a string too long for its
/// slot was refused.
fn update_list(list: ShareableList) -> bool {
    list.set(0, "HOWDY").expect("5 bytes fit the 8 of the slot");
    list.set(1, 42i64).expect("an int");
    list.set(2, 2.5).expect("a slot may change type");
    list.set(0, "much too long for the slot").is_err()
}

fn four_children(f: fn(Value<u64>), v: &Value<u64>) -> mproc::Result<()> {
    let mut kids = Vec::new();
    for _ in 0..4 {
        kids.push(mproc::spawn(f, v.clone())?);
    }
    for k in &mut kids {
        k.join()?;
    }
    Ok(())
}

/// Runs level 7 and checks what it shows.
pub fn run() -> mproc::Result<()> {
    mproc_examples::heading(
        7,
        "shared memory: SharedMemory, Value, Array, ShareableList",
    );

    let shm = SharedMemory::create(1 << 20)?;
    let n = mproc::spawn(write_greeting, shm.clone())?.join()?;
    let mut text = vec![0u8; shm.read::<u32>(0)? as usize];
    shm.read_at(4, &mut text)?;
    println!(
        "  parent read {n} bytes the child wrote: {:?} (and {} bytes of 0x5a after them)",
        String::from_utf8_lossy(&text),
        shm.len() - 64
    );
    assert_eq!(shm.read::<u8>(shm.len() - 1)?, 0x5a);

    let counter = Value::new(0u64)?;
    four_children(add_with_lock, &counter)?;
    let locked = counter.get()?;
    println!(
        "  4 processes x {N} increments under the lock: counter = {locked} (4 x N = {})",
        4 * N
    );
    assert_eq!(locked, 4 * N);

    let racy = Value::new(0u64)?;
    four_children(add_racy, &racy)?;
    let got = racy.get()?;
    println!(
        "  the same with get() then set(), like Python's `v.value += 1`: counter = {got}, {} updates lost",
        4 * N - got
    );
    println!("  (each call locks, but the increment as a whole does not: use lock())");

    let squares = Array::<u32>::zeroed(8)?;
    mproc::spawn(fill_squares, squares.clone())?.join()?;
    let v = squares.to_vec()?;
    println!("  an Array filled by a child: {v:?}");
    assert_eq!(v, vec![0, 1, 4, 9, 16, 25, 36, 49]);

    let list = ShareableList::new([Item::from("howdy"), Item::Int(21), Item::None])?;
    let refused = mproc::spawn(update_list, list.clone())?.join()?;
    let items = list.to_vec()?;
    println!(
        "  a ShareableList updated by a child: {items:?}, layout {:?}; a string too long for its slot refused: {refused}",
        list.format()?
    );
    assert_eq!(
        items,
        [Item::from("HOWDY"), Item::Int(42), Item::Float(2.5)]
    );
    assert!(refused);
    Ok(())
}

#[allow(dead_code)]
fn main() -> mproc::Result<()> {
    mproc::init();
    run()
}
