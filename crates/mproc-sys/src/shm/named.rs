//! Named segments: `/dev/shm/<name>` files created (with their pages reserved up front),
//! opened, renamed and unlinked by name.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The longest segment name (`shm_open` wants it shorter than `NAME_MAX`, with room to
/// spare).
const MAX_LEN: usize = 250;

/// Checks a segment name: 1 to 250 bytes, no `/` or NUL, not `.` or `..`.
pub(crate) fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty()
        || name.len() > MAX_LEN
        || name.contains('/')
        || name.contains('\0')
        || name == "."
        || name == ".."
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a shared memory name is 1 to 250 bytes, without '/' or NUL, and not . or ..",
        ));
    }
    Ok(())
}

fn shm_name(name: &str) -> io::Result<CString> {
    check_name(name)?;
    CString::new(format!("/{name}")).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// The path of segment `name` (where `shm_open` puts it, and the tracker unlinks it).
fn shm_path(name: &str) -> io::Result<CString> {
    check_name(name)?;
    CString::new(format!("/dev/shm/{name}")).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// Returns a fresh name for a segment on its way to becoming `name`: `name` (cut to fit),
/// then `.mproc-tmp-<pid>-<16 random hex digits>`, at most 250 bytes whatever the length
/// of `name`. It starts as `name` does, so whoever looks for `name`'s prefix in `/dev/shm`
/// (a clean-up script, a leak check) sees it too.
///
/// ```
/// let temp = mproc_sys::shm_temporary_name("results")?;
/// assert!(temp.starts_with("results.mproc-tmp-"), "{temp}");
/// assert_ne!(temp, mproc_sys::shm_temporary_name("results")?);
/// assert!(mproc_sys::shm_temporary_name(&"x".repeat(250))?.len() <= 250);
/// assert!(mproc_sys::shm_temporary_name("a/b").is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// `InvalidInput` for a bad `name` (see [`shm_create`]); the OS error from `getrandom`.
pub fn shm_temporary_name(name: &str) -> io::Result<String> {
    check_name(name)?;
    let mut random = [0u8; 8];
    crate::random_bytes(&mut random)?;
    let suffix = format!(
        ".mproc-tmp-{}-{:016x}",
        std::process::id(),
        u64::from_ne_bytes(random)
    );
    let mut keep = name.len().min(MAX_LEN - suffix.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    Ok(format!("{}{suffix}", &name[..keep]))
}

/// Renames segment `from` to `to`, failing if `to` exists (`renameat2` with
/// `RENAME_NOREPLACE`): `to` appears at once, for the whole file, and never replaces
/// another segment.
///
/// ```
/// let (a, b) = (format!("mproc-doc-ren-a-{}", std::process::id()), format!("mproc-doc-ren-b-{}", std::process::id()));
/// drop(mproc_sys::shm_create(&a, 64)?);
/// mproc_sys::shm_rename_noreplace(&a, &b)?;
/// assert!(mproc_sys::shm_open_existing(&a).is_err());
/// mproc_sys::shm_unlink(&b)?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// `AlreadyExists` when `to` exists (nothing is renamed); `NotFound` when `from` does not;
/// `InvalidInput` (a bad name); another OS error.
pub fn shm_rename_noreplace(from: &str, to: &str) -> io::Result<()> {
    let (from, to) = (shm_path(from)?, shm_path(to)?);
    // SAFETY: both paths are valid C strings that outlive the call, which only reads them;
    // the raw system call (not libc's wrapper) is there on every C library.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates the named segment `/dev/shm/<name>` (mode 0600, failing if it exists) of `len`
/// bytes, with its pages reserved up front so that a full `/dev/shm` fails here (ENOSPC)
/// rather than with SIGBUS on first touch. On failure nothing is left behind.
///
/// ```
/// let name = format!("mproc-doc-{}", std::process::id());
/// let fd = mproc_sys::shm_create(&name, 4096)?;
/// assert_eq!(mproc_sys::file_size(std::os::fd::AsFd::as_fd(&fd))?, 4096);
/// mproc_sys::shm_unlink(&name)?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// `AlreadyExists`, `InvalidInput` (a bad name), `StorageFull` (no room), or another OS
/// error.
pub fn shm_create(name: &str, len: usize) -> io::Result<OwnedFd> {
    let cname = shm_name(name)?;
    // SAFETY: `cname` is a valid C string; flags and mode are valid.
    let fd = unsafe {
        libc::shm_open(
            cname.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600 as libc::mode_t,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: shm_open returned a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let reserve = || -> io::Result<()> {
        if len > 0 {
            // SAFETY: `fd` is a valid open file; posix_fallocate allocates blocks only.
            let r = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len as libc::off_t) };
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
        }
        Ok(())
    };
    if let Err(e) = reserve() {
        let _ = shm_unlink(name);
        return Err(e);
    }
    Ok(fd)
}

/// Opens the existing named segment `/dev/shm/<name>` read-write.
///
/// # Errors
///
/// `NotFound`, `InvalidInput` (a bad name), or another OS error.
pub fn shm_open_existing(name: &str) -> io::Result<OwnedFd> {
    let cname = shm_name(name)?;
    // SAFETY: `cname` is a valid C string; flags are valid.
    let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: shm_open returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes the name `/dev/shm/<name>`; mappings and fds already open keep the memory.
///
/// # Errors
///
/// `NotFound`, `InvalidInput` (a bad name), or another OS error.
pub fn shm_unlink(name: &str) -> io::Result<()> {
    let cname = shm_name(name)?;
    // SAFETY: `cname` is a valid C string.
    if unsafe { libc::shm_unlink(cname.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn unique(tag: &str) -> String {
        format!("mproc-sys-test-{tag}-{}", std::process::id())
    }

    #[test]
    fn renaming_never_replaces_a_segment() {
        let (a, b, c) = (unique("ren-a"), unique("ren-b"), unique("ren-c"));
        let fd_a = shm_create(&a, 64).unwrap();
        let fd_b = shm_create(&b, 128).unwrap();
        let err = shm_rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        // Both stay as they were.
        let still = |name: &str, fd: &OwnedFd| {
            crate::file_identity(shm_open_existing(name).unwrap().as_fd()).unwrap()
                == crate::file_identity(fd.as_fd()).unwrap()
        };
        assert!(still(&a, &fd_a) && still(&b, &fd_b));
        shm_rename_noreplace(&a, &c).unwrap();
        assert!(still(&c, &fd_a));
        assert_eq!(
            shm_open_existing(&a).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            shm_rename_noreplace(&a, &unique("ren-d"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            shm_rename_noreplace(&c, "x/y").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        shm_unlink(&b).unwrap();
        shm_unlink(&c).unwrap();
    }

    #[test]
    fn temporary_names_fit_and_keep_the_prefix() {
        for name in ["a", &"y".repeat(250), &"é".repeat(125)] {
            let temp = shm_temporary_name(name).unwrap();
            check_name(&temp).unwrap();
            assert!(temp.contains(".mproc-tmp-"), "{temp}");
            let kept = &temp[..temp.find(".mproc-tmp-").unwrap()];
            assert!(name.starts_with(kept) && !kept.is_empty(), "{temp}");
        }
    }
}
