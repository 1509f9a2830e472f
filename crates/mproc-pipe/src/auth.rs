//! Mutual authentication of a new connection: an HMAC-SHA256 challenge-response with a
//! random nonce from each side, in the spirit of Python's `deliver_challenge` /
//! `answer_challenge`, but mutual in one exchange:
//!
//! 1. server → client: `CHALLENGE` + 32-byte server nonce
//! 2. client → server: HMAC(key, "client" + server nonce) + 32-byte client nonce
//! 3. server → client: `WELCOME` + HMAC(key, "server" + client nonce), or `FAILURE`
//!
//! Each side proves it holds the key without revealing it, over a nonce it did not choose.
//! Until step 3 is done no application message is read, and handshake frames are limited
//! to a few bytes, so a peer that sends garbage or a huge length prefix costs nothing.

use std::os::fd::BorrowedFd;
use std::time::Instant;

use hmac::{Hmac, KeyInit, Mac};
use mproc_wire::{FrameReader, Limits};
use sha2::Sha256;

use crate::error::{Error, Result};

pub(crate) const NONCE_LEN: usize = 32;
const MAC_LEN: usize = 32;
const CHALLENGE: &[u8] = b"#MPROC-CHALLENGE-1#";
const WELCOME: &[u8] = b"#MPROC-WELCOME-1#";
const FAILURE: &[u8] = b"#MPROC-FAILURE#";

/// Frame limits during the handshake: every handshake message is tiny.
pub(crate) fn limits() -> Limits {
    Limits {
        max_message: 96,
        inline_max: 96,
        max_fds: 0,
    }
}

pub(crate) fn nonce() -> Result<[u8; NONCE_LEN]> {
    let mut n = [0u8; NONCE_LEN];
    mproc_sys::random_bytes(&mut n).map_err(|e| Error::io("generating a nonce", e))?;
    Ok(n)
}

fn hmac(key: &[u8], role: &[u8], nonce: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(role);
    mac.update(nonce);
    mac
}

fn tag(key: &[u8], role: &[u8], nonce: &[u8]) -> Vec<u8> {
    hmac(key, role, nonce).finalize().into_bytes().to_vec()
}

/// Checks `tag` in constant time.
fn verify(key: &[u8], role: &[u8], nonce: &[u8], tag: &[u8]) -> bool {
    hmac(key, role, nonce).verify_slice(tag).is_ok()
}

/// The server's first message.
pub(crate) fn challenge(server_nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    [CHALLENGE, server_nonce].concat()
}

/// The server's check of the client's answer; returns the verdict to send back and whether
/// the client is authenticated.
pub(crate) fn judge(key: &[u8], server_nonce: &[u8; NONCE_LEN], answer: &[u8]) -> (Vec<u8>, bool) {
    if answer.len() != MAC_LEN + NONCE_LEN
        || !verify(key, b"client", server_nonce, &answer[..MAC_LEN])
    {
        return (FAILURE.to_vec(), false);
    }
    let client_nonce = &answer[MAC_LEN..];
    ([WELCOME, &tag(key, b"server", client_nonce)].concat(), true)
}

/// The client's side, start to finish, with a deadline for the whole exchange. Returns the
/// reader, which may already hold the start of the server's first message.
pub(crate) fn client_handshake(
    sock: BorrowedFd<'_>,
    key: &[u8],
    deadline: Instant,
) -> Result<FrameReader> {
    let mut reader = FrameReader::new();
    let read = |reader: &mut FrameReader, what: &str| {
        reader.read(sock, &limits(), Some(deadline)).map_err(|e| {
            if e.kind() == mproc_wire::ErrorKind::Timeout {
                Error::new(crate::ErrorKind::Timeout, format!("the server did not complete the handshake in time ({what}); is it accepting?"))
            } else if e.is_disconnect() {
                // A listener that refuses a key says so (`FAILURE`); one that hangs up
                // before answering is gone (killed, say), as Python's EOFError has it.
                Error::new(
                    crate::ErrorKind::Disconnected,
                    format!("the server closed the connection during the handshake ({what})"),
                )
                .with_source(e)
            } else {
                Error::auth(format!(
                    "the server broke off the handshake ({what}): {}",
                    mproc_sys::with_causes(&e)
                ))
            }
        })
    };
    let challenge = read(&mut reader, "challenge")?;
    let server_nonce = challenge
        .bytes()
        .strip_prefix(CHALLENGE)
        .filter(|n| n.len() == NONCE_LEN)
        .ok_or_else(|| Error::auth("the server is not an mproc listener (bad challenge)"))?;
    let client_nonce = nonce()?;
    let answer = [tag(key, b"client", server_nonce), client_nonce.to_vec()].concat();
    mproc_wire::write_frame(sock, &answer, &[], &limits())?;
    let verdict = read(&mut reader, "verdict")?;
    if verdict.bytes() == FAILURE {
        return Err(Error::auth("the server refused our authentication key"));
    }
    let proof = verdict
        .bytes()
        .strip_prefix(WELCOME)
        .ok_or_else(|| Error::auth("the server is not an mproc listener (bad verdict)"))?;
    if !verify(key, b"server", &client_nonce, proof) {
        return Err(Error::auth(
            "the server does not know the authentication key",
        ));
    }
    Ok(reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_accepts_the_right_key_only() {
        let sn = nonce().unwrap();
        let cn = nonce().unwrap();
        let good = [tag(b"key", b"client", &sn), cn.to_vec()].concat();
        let (verdict, ok) = judge(b"key", &sn, &good);
        assert!(ok);
        assert!(verify(
            b"key",
            b"server",
            &cn,
            verdict.strip_prefix(WELCOME).unwrap()
        ));
        let bad = [tag(b"other", b"client", &sn), cn.to_vec()].concat();
        assert_eq!(judge(b"key", &sn, &bad), (FAILURE.to_vec(), false));
        // A reflected server tag is not a client tag: roles are bound into the MAC.
        let reflected = [tag(b"key", b"server", &sn), cn.to_vec()].concat();
        assert!(!judge(b"key", &sn, &reflected).1);
        assert!(!judge(b"key", &sn, b"short").1);
    }
}
