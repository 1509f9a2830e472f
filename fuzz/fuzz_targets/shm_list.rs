//! `ShareableList`'s layout: a list opened (as another process receives it) over a segment
//! whose bytes are the fuzz input: its magic, count, slot table, tags, lengths and
//! capacities all as another process may have scribbled them.
//!
//! Opening must check the layout against the segment or fail with `Corrupt`; every read
//! must give an item or a typed error (never a string that is not UTF-8, never a read
//! outside the segment); a write must fit its slot or be refused, and read back as
//! written.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mproc_fuzz::check_fds;
use mproc_shm::{ErrorKind, Item, ShareableList, SharedMemory};

fuzz_target!(|data: &[u8]| {
    run(data);
    check_fds();
});

/// The value, or `None` for a `Corrupt` error (any other error fails the input).
fn corrupt_or<T>(r: mproc_shm::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
            None
        }
    }
}

fn run(data: &[u8]) {
    let shm = SharedMemory::create(data.len().max(1)).expect("making a segment");
    shm.write_at(0, data).expect("filling the segment");
    let msg = mproc_wire::encode(&shm).expect("encoding a segment");
    drop(shm);
    let list: ShareableList = match mproc_wire::decode(msg) {
        Ok(list) => list,
        Err(e) => {
            assert_eq!(e.kind(), mproc_wire::ErrorKind::Decode, "{e}");
            return;
        }
    };
    let items: Vec<Option<Item>> = (0..list.len()).map(|i| corrupt_or(list.get(i))).collect();
    let _ = corrupt_or(list.to_vec());
    let _ = corrupt_or(list.format());
    if let Some(first) = items.iter().flatten().next() {
        let _ = corrupt_or(list.count(first));
        let _ = corrupt_or(list.index(first));
    }
    assert_eq!(
        list.get(list.len()).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    // Writes: each fits its slot or is refused, and reads back as written.
    let tail = &data[data.len().min(16)..];
    let text = String::from_utf8_lossy(&tail[..tail.len().min(24)]).into_owned();
    let writes = [
        Item::Str(text),
        Item::Bytes(tail.iter().take(40).copied().collect()),
        Item::Int(-7),
        Item::Float(f64::NAN),
        Item::Bool(true),
        Item::None,
    ];
    for (i, item) in (0..list.len()).zip(writes.iter().cycle()) {
        match list.set(i, item.clone()) {
            Ok(()) => {
                let back = list.get(i).expect("an item just written reads back");
                match (item, &back) {
                    (Item::Float(a), Item::Float(b)) => assert!(a.is_nan() && b.is_nan()),
                    _ => assert_eq!(item, &back),
                }
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::ExceedsStorage, "{e}"),
        }
    }
}
