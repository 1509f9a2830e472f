//! Random bytes from the kernel (`getrandom`).

use std::io;

/// Fills `buf` with random bytes from the kernel (`getrandom`), for nonces and keys.
///
/// ```
/// let mut a = [0u8; 32];
/// let mut b = [0u8; 32];
/// mproc_sys::random_bytes(&mut a)?;
/// mproc_sys::random_bytes(&mut b)?;
/// assert_ne!(a, b);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}
