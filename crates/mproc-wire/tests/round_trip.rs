//! Property tests of the wire: any value of nested structs, enums, vectors, strings,
//! options and maps, with fds beside it, encodes and decodes to itself; any body goes
//! through a socket in frames (inline or by memfd) and comes out whole.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use mproc_wire::{Fd, FrameReader, Limits, decode, encode};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// A leaf of every scalar kind serde knows (floats as bits: NaN is not equal to itself).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Leaf {
    Unit,
    Bool(bool),
    Small(i8, u16),
    Wide(i64, u64),
    Huge(i128, u128),
    Float { bits: u64, single: u32 },
    Char(char),
    Text(String),
    Bytes(#[serde(with = "serde_bytes_compat")] Vec<u8>),
}

/// Bytes as a serde byte string (postcard's compact form), without another dependency.
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// A tree of values: every container serde has, nested.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Tree {
    Leaf(Leaf),
    List(Vec<Tree>),
    Maybe(Option<Box<Tree>>),
    Map(BTreeMap<String, Tree>),
    Pair(Box<Tree>, Box<Tree>),
    Record(Record),
    Array([u8; 3]),
}

/// A struct with named fields, one of them a tuple struct.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Record {
    name: String,
    tags: Vec<Option<u32>>,
    point: Point,
    unit: Marker,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Point(i32, i32);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Marker;

fn leaf() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        Just(Leaf::Unit),
        any::<bool>().prop_map(Leaf::Bool),
        (any::<i8>(), any::<u16>()).prop_map(|(a, b)| Leaf::Small(a, b)),
        (any::<i64>(), any::<u64>()).prop_map(|(a, b)| Leaf::Wide(a, b)),
        (any::<i128>(), any::<u128>()).prop_map(|(a, b)| Leaf::Huge(a, b)),
        (any::<f64>(), any::<f32>()).prop_map(|(d, f)| Leaf::Float {
            bits: d.to_bits(),
            single: f.to_bits()
        }),
        any::<char>().prop_map(Leaf::Char),
        ".{0,40}".prop_map(Leaf::Text),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Leaf::Bytes),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (
        "[a-z]{0,12}",
        proptest::collection::vec(any::<Option<u32>>(), 0..6),
        (any::<i32>(), any::<i32>()),
    )
        .prop_map(|(name, tags, (x, y))| Record {
            name,
            tags,
            point: Point(x, y),
            unit: Marker,
        })
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaves = prop_oneof![
        leaf().prop_map(Tree::Leaf),
        record().prop_map(Tree::Record),
        any::<[u8; 3]>().prop_map(Tree::Array),
    ];
    leaves.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Tree::List),
            proptest::option::of(inner.clone().prop_map(Box::new)).prop_map(Tree::Maybe),
            proptest::collection::btree_map(".{0,8}", inner.clone(), 0..5).prop_map(Tree::Map),
            (inner.clone(), inner).prop_map(|(a, b)| Tree::Pair(Box::new(a), Box::new(b))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_value_round_trips(value in tree()) {
        let msg = encode(&value).unwrap();
        prop_assert_eq!(msg.fd_count(), 0);
        let back: Tree = decode(msg).unwrap();
        prop_assert_eq!(back, value);
    }

    #[test]
    fn any_value_with_fds_beside_it_round_trips(value in tree(), fds in 0usize..5) {
        let sockets: Vec<_> = (0..fds).map(|_| mproc_sys::socketpair().unwrap().0).collect();
        let with_fds = (value.clone(), sockets.into_iter().map(Fd::from).collect::<Vec<_>>());
        let msg = encode(&with_fds).unwrap();
        prop_assert_eq!(msg.fd_count(), fds);
        let (back, back_fds): (Tree, Vec<Fd>) = decode(msg).unwrap();
        prop_assert_eq!(back, value);
        prop_assert_eq!(back_fds.len(), fds);
    }

    #[test]
    fn any_body_goes_through_a_socket_whole(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..6),
        inline_max in 0usize..2048,
    ) {
        let limits = Limits { inline_max, ..Limits::default() };
        let (a, b) = mproc_sys::socketpair().unwrap();
        for body in &bodies {
            mproc_wire::write_frame(a.as_fd(), body, &[], &limits).unwrap();
        }
        let mut reader = FrameReader::new();
        for body in &bodies {
            // Everything was sent already: the deadline only keeps a bug from hanging.
            let deadline = Instant::now() + Duration::from_secs(30);
            let got = reader.read(b.as_fd(), &limits, Some(deadline)).unwrap();
            prop_assert_eq!(got.bytes(), &body[..]);
        }
        prop_assert!(!reader.in_frame());
    }
}
