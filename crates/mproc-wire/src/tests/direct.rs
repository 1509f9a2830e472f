//! The direct encode of large pieces: `encode_into_unless_bulk`, `encoded_len`,
//! `encode_to_sink` (the queue writes large messages straight into shared memory with them).

use crate::{ErrorKind, Sink, decode_from, encode_into_unless_bulk, encode_to_sink, encoded_len};

/// A sink into a buffer, refusing writes past `fail_at` bytes.
struct Buf {
    bytes: Vec<u8>,
    fail_at: usize,
}

impl Sink for Buf {
    fn write_at(&mut self, offset: usize, data: &[u8]) -> std::io::Result<()> {
        if offset + data.len() > self.fail_at {
            return Err(std::io::Error::other("full"));
        }
        assert_eq!(
            offset,
            self.bytes.len(),
            "writes come in order, without gaps"
        );
        self.bytes.extend_from_slice(data);
        Ok(())
    }
}

fn value() -> (Vec<u32>, String, u8, Vec<String>) {
    (
        (0..500).collect(),
        "y".repeat(5000),
        9,
        (0..300).map(|i| "z".repeat(i % 7)).collect(),
    )
}

#[test]
fn a_value_written_to_a_sink_is_what_encode_makes() {
    let v = value();
    let len = encoded_len(&v).unwrap();
    let mut sink = Buf {
        bytes: Vec::new(),
        fail_at: usize::MAX,
    };
    let (written, fds) = encode_to_sink(&v, &mut sink, len).unwrap();
    assert_eq!(written, len);
    assert_eq!(sink.bytes, crate::encode(&v).unwrap().bytes());
    assert_eq!(
        decode_from::<(Vec<u32>, String, u8, Vec<String>)>(&sink.bytes, fds).unwrap(),
        v
    );
}

#[test]
fn a_sink_past_its_limit_or_refusing_is_an_error() {
    let v = value();
    let len = encoded_len(&v).unwrap();
    let mut sink = Buf {
        bytes: Vec::new(),
        fail_at: usize::MAX,
    };
    let e = encode_to_sink(&v, &mut sink, len - 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Encode);
    let mut sink = Buf {
        bytes: Vec::new(),
        fail_at: len / 2,
    };
    let e = encode_to_sink(&v, &mut sink, len).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
}

#[test]
fn bulk_is_found_only_at_or_past_its_size() {
    let mut buf = vec![1];
    assert!(
        encode_into_unless_bulk(&value(), &mut buf, 5000)
            .unwrap()
            .is_none()
    );
    assert_eq!(buf, [1]);
    assert!(
        encode_into_unless_bulk(&value(), &mut buf, 5001)
            .unwrap()
            .is_some()
    );
    assert_eq!(&buf[1..], crate::encode(&value()).unwrap().bytes());
}
