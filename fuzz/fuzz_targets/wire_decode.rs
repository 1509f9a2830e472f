//! The wire's `decode`: any bytes, with any fds in the side table, decoded as values of
//! every serde shape (fds inside, nested containers, strings, maps, options, floats) and
//! as mproc's own handles (segments, blocks, locks, connections, queues, values).
//!
//! Script: a byte choosing the type, a byte saying how many fds travel beside the bytes
//! (and of what kind), then the message's bytes. A decode must give a value or a typed
//! `Decode` error; a value decoded must encode again, and decode and encode back to the
//! same bytes (encoding is canonical). The same bytes (without fds) also go through
//! `decode_from_source`, the queue's decoder for a message read out of shared memory: it
//! must accept what postcard's accepts, refuse what it refuses, and give the same value.

#![no_main]

use std::collections::{BTreeMap, HashMap};

use libfuzzer_sys::fuzz_target;
use mproc_fuzz::{FdKind, Script, check_fds, make_fds};
use mproc_wire::{ErrorKind, Fd, Message};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// A value of most serde shapes, fds included, nested.
#[derive(Serialize, Deserialize, Debug)]
enum Shape {
    Unit,
    Number(u64),
    Signed(i8, i128),
    Text(String),
    Char(char),
    Float(f64, f32),
    Bytes(ByteBuf),
    Array([u16; 3]),
    Handle(Fd),
    Record {
        fd: Option<Fd>,
        flag: bool,
        items: Vec<Shape>,
        names: BTreeMap<String, Option<Vec<u8>>>,
    },
    Pair(Box<Shape>, Box<Shape>),
    Table(BTreeMap<u32, (bool, char)>),
}

fuzz_target!(|data: &[u8]| {
    run(data);
    check_fds();
});

fn run(data: &[u8]) {
    let mut script = Script::new(data);
    let which = script.byte();
    let fds = script.byte();
    let bytes = script.rest();
    let fds = make_fds(FdKind::from_bits(fds >> 3), usize::from(fds & 7));
    let msg = Message::from_parts(bytes.to_vec(), fds);
    match which % 18 {
        0 => both::<Shape>(bytes, msg, true),
        1 => both::<Vec<Shape>>(bytes, msg, true),
        // A hash map's order differs from one map to the next: not canonical.
        2 => both::<(Vec<Fd>, HashMap<String, Option<Vec<u8>>>)>(bytes, msg, false),
        3 => both::<Vec<String>>(bytes, msg, true),
        4 => both::<Vec<Vec<u64>>>(bytes, msg, true),
        5 => both::<Option<Box<(Fd, Fd, Shape)>>>(bytes, msg, true),
        6 => both::<Fd>(bytes, msg, true),
        7 => both::<(u128, i64, f64, String, ByteBuf)>(bytes, msg, true),
        // mproc's own handles, as another process sends them (an fd and what it says
        // the fd is): each must check what it is given before mapping or using it.
        8 => round_trip::<mproc_shm::SharedMemory>(msg, false),
        9 => round_trip::<mproc_shm::ShareableList>(msg, false),
        10 => round_trip::<mproc_shm::Block>(msg, false),
        11 => round_trip::<mproc_shm::LockBlock>(msg, false),
        12 => round_trip::<mproc_shm::RawArray<u32>>(msg, false),
        13 => round_trip::<mproc_pipe::Connection<u8>>(msg, false),
        14 => round_trip::<mproc_queue::Queue<u8>>(msg, false),
        15 => round_trip::<mproc_queue::JoinableQueue<u8>>(msg, false),
        16 => round_trip::<mproc_queue::SimpleQueue<u8>>(msg, false),
        _ => round_trip::<mproc_sync::Value<u64>>(msg, false),
    }
}

/// A plain serde shape: the bytes alone through both decoders, then the message (bytes and
/// fds) round trip.
fn both<T: Serialize + DeserializeOwned>(bytes: &[u8], msg: Message, canonical: bool) {
    same_as_postcard::<T>(bytes, canonical);
    round_trip::<T>(msg, canonical);
}

/// Decodes `msg` as a `T`; a value must encode and decode again, to the same bytes when
/// `canonical`.
fn round_trip<T: Serialize + DeserializeOwned>(msg: Message, canonical: bool) {
    let value = match mproc_wire::decode::<T>(msg) {
        Ok(value) => value,
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
            return;
        }
    };
    let first = mproc_wire::encode(&value).expect("a decoded value encodes");
    let bytes = first.bytes().to_vec();
    let again: T = mproc_wire::decode(first).expect("an encoded value decodes");
    let second = mproc_wire::encode(&again).expect("a decoded value encodes");
    if canonical {
        assert_eq!(bytes, second.bytes(), "encoding is canonical");
    }
}

/// Bytes read by copies, as a queue's segment is.
struct Copied<'a>(&'a [u8]);

impl mproc_wire::Source for Copied<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn read_at(&self, offset: usize, buf: &mut [u8]) -> std::io::Result<()> {
        buf.copy_from_slice(&self.0[offset..offset + buf.len()]);
        Ok(())
    }
}

/// Decodes `bytes` (no fds) by postcard's decoder and by `decode_from_source`: both give
/// a value or both refuse; the values encode alike (when `canonical`: an order that
/// depends on the map does not).
fn same_as_postcard<T: Serialize + DeserializeOwned>(bytes: &[u8], canonical: bool) {
    let theirs = mproc_wire::decode_from::<T>(bytes, Vec::new());
    let ours = mproc_wire::decode_from_source::<T, _>(&Copied(bytes), Vec::new());
    match (theirs, ours) {
        (Ok(a), Ok(b)) => {
            if canonical {
                let a = mproc_wire::encode(&a).expect("a decoded value encodes");
                let b = mproc_wire::encode(&b).expect("a decoded value encodes");
                assert_eq!(a.bytes(), b.bytes(), "the two decoders disagree on a value");
            }
        }
        (Err(_), Err(e)) => assert_eq!(e.kind(), ErrorKind::Decode, "{e}"),
        (Ok(_), Err(e)) => panic!("decode_from_source refused what postcard took: {e}"),
        (Err(e), Ok(_)) => panic!("decode_from_source took what postcard refused: {e}"),
    }
}
