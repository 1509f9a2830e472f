#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod codec;
mod direct;
mod error;
mod frame;
mod source;
mod stack_guard;

pub use codec::{
    Fd, FdRef, Handover, Message, decode, decode_from, encode, encode_for_child, encode_into,
    encode_to_slice, encoding_for_child, handing_over, handover, hold_across_fork, release_held,
};
pub use direct::{Sink, encode_into_unless_bulk, encode_to_sink, encoded_len};
pub use error::{Error, ErrorKind};
pub use frame::read::FrameReader;
pub use frame::write::{FrameWriter, write_frame, write_message};
pub use frame::{HEADER_LEN, Limits};
pub use source::{Source, decode_from_source};

#[cfg(test)]
mod tests;
