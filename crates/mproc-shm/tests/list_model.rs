//! Property test of `ShareableList` against a `Vec` model: random lists, then random
//! sequences of writes and reads, through the list itself and through a second handle to
//! the same segment (as another process receives it). Each slot keeps the capacity it was
//! made with, as in Python.

use mproc_shm::{ErrorKind, Item, ShareableList};
use proptest::prelude::*;

/// An item, with floats as their bits so that the model compares them exactly.
fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        Just(Item::None),
        any::<i64>().prop_map(Item::Int),
        any::<u64>().prop_map(|bits| Item::Float(f64::from_bits(bits))),
        any::<bool>().prop_map(Item::Bool),
        ".{0,20}".prop_map(Item::Str),
        proptest::collection::vec(any::<u8>(), 0..30).prop_map(Item::Bytes),
    ]
}

/// What an item occupies in its slot.
fn payload_len(item: &Item) -> usize {
    match item {
        Item::None => 0,
        Item::Bool(_) => 1,
        Item::Int(_) | Item::Float(_) => 8,
        Item::Str(s) => s.len(),
        Item::Bytes(b) => b.len(),
    }
}

/// The capacity a slot made for `item` gets (Python's rule).
fn capacity(item: &Item) -> usize {
    match item {
        Item::Str(s) => 8 * (s.len() / 8 + 1),
        Item::Bytes(b) => 8 * (b.len() / 8 + 1),
        _ => 8,
    }
}

/// Items equal as the list stores them (a float by its bits).
fn same(a: &Item, b: &Item) -> bool {
    match (a, b) {
        (Item::Float(x), Item::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Set(usize, Item),
    Get(usize),
    Count(Item),
    Index(Item),
    ToVec,
    Format,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..12, item()).prop_map(|(i, it)| Op::Set(i, it)),
        2 => (0usize..12).prop_map(Op::Get),
        1 => item().prop_map(Op::Count),
        1 => item().prop_map(Op::Index),
        1 => Just(Op::ToVec),
        1 => Just(Op::Format),
    ]
}

/// Python's `format` for the model's items and capacities.
fn format(items: &[Item], caps: &[usize]) -> String {
    items
        .iter()
        .zip(caps)
        .map(|(item, cap)| match item {
            Item::Str(_) | Item::Bytes(_) => format!("{cap}s"),
            Item::Int(_) => "q".into(),
            Item::Float(_) => "d".into(),
            Item::Bool(_) => "xxxxxxx?".into(),
            Item::None => "xxxxxxxx".into(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_list_behaves_as_a_vec_of_fixed_slots(
        initial in proptest::collection::vec(item(), 0..10),
        ops in proptest::collection::vec(op(), 0..40),
    ) {
        let list = ShareableList::new(initial.clone()).unwrap();
        // Another process's handle to the same list.
        let other: ShareableList =
            mproc_wire::decode(mproc_wire::encode(&list).unwrap()).unwrap();
        let caps: Vec<usize> = initial.iter().map(capacity).collect();
        let mut model = initial;
        prop_assert_eq!(list.len(), model.len());
        for (step, op) in ops.into_iter().enumerate() {
            // Alternate handles: both see every write.
            let handle = if step % 2 == 0 { &list } else { &other };
            match op {
                Op::Set(i, item) => match handle.set(i, item.clone()) {
                    Ok(()) => {
                        prop_assert!(i < model.len() && payload_len(&item) <= caps[i]);
                        model[i] = item;
                    }
                    Err(e) if i >= model.len() => {
                        prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
                    }
                    Err(e) => {
                        prop_assert_eq!(e.kind(), ErrorKind::ExceedsStorage);
                        prop_assert!(payload_len(&item) > caps[i]);
                    }
                },
                Op::Get(i) => match handle.get(i) {
                    Ok(got) => prop_assert!(same(&got, &model[i]), "{got:?} vs {:?}", model[i]),
                    Err(e) => {
                        prop_assert!(i >= model.len());
                        prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
                    }
                },
                Op::Count(item) => {
                    // `count` and `index` compare as Rust does (NaN is not equal to NaN).
                    let want = model.iter().filter(|x| **x == item).count();
                    prop_assert_eq!(handle.count(&item).unwrap(), want);
                }
                Op::Index(item) => {
                    let want = model.iter().position(|x| *x == item);
                    prop_assert_eq!(handle.index(&item).unwrap(), want);
                }
                Op::ToVec => {
                    let got = handle.to_vec().unwrap();
                    prop_assert_eq!(got.len(), model.len());
                    for (g, m) in got.iter().zip(&model) {
                        prop_assert!(same(g, m), "{g:?} vs {m:?}");
                    }
                }
                Op::Format => prop_assert_eq!(handle.format().unwrap(), format(&model, &caps)),
            }
        }
    }
}
