//! Naming the running build so that copies of one binary agree on every host: the ELF
//! build-id of the object that holds mproc's code, or a hash of that object's file.
//!
//! The build-id (the `NT_GNU_BUILD_ID` note) is a hash of the linked output that the linker
//! writes into the binary: two copies of one build carry the same id wherever they lie, and
//! a build of other code gets another one. Debian's gcc and clang pass `--build-id` to the
//! linker by default, but not every toolchain does, so when the note is missing the object's
//! file (read through `/proc/self/exe` for an executable, which names the file this process
//! runs even after it was replaced on disk) is hashed whole instead, once per process.

use std::hash::{DefaultHasher, Hasher};
use std::io::Read;
use std::path::PathBuf;

/// `NT_GNU_BUILD_ID` from `<elf.h>` (not in the `libc` crate).
const NT_GNU_BUILD_ID: u32 = 3;

/// What identifies a build: the linker's build-id, or a hash of the object's file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BuildIdentity {
    /// The `NT_GNU_BUILD_ID` note's bytes.
    BuildId(Vec<u8>),
    /// A hash of the whole file of the object (no build-id note in it).
    ContentHash(u64),
    /// Neither could be read (no note, and the file could not be read).
    Unknown,
}

/// Returns the identity of the object (executable or shared library) whose code holds
/// `code_addr`.
pub(crate) fn build_identity(code_addr: usize) -> BuildIdentity {
    let found = object_notes(code_addr);
    if let Some(id) = found.build_id {
        return BuildIdentity::BuildId(id);
    }
    let path = found
        .path
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
    match content_hash(&path) {
        Ok(h) => BuildIdentity::ContentHash(h),
        Err(_) => BuildIdentity::Unknown,
    }
}

/// Hashes the whole file at `path`.
pub(crate) fn content_hash(path: &std::path::Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut h = DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(h.finish()),
            Ok(n) => h.write(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// What the walk over the loaded objects found for the object holding the code address.
#[derive(Default)]
struct Found {
    code_addr: usize,
    /// The object's build-id, when it has one.
    build_id: Option<Vec<u8>>,
    /// The object's file when it is a shared library (`None` for the main executable).
    path: Option<PathBuf>,
}

fn object_notes(code_addr: usize) -> Found {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `dl_iterate_phdr` passes a valid `dl_phdr_info` for the duration of the
        // call, and `data` is the `&mut Found` passed below, not otherwise borrowed.
        let (info, found) = unsafe { (&*info, &mut *(data as *mut Found)) };
        let base = info.dlpi_addr as usize;
        if info.dlpi_phdr.is_null() || info.dlpi_phnum == 0 {
            return 0;
        }
        // SAFETY: `dlpi_phdr` (not null, checked above) points to `dlpi_phnum` program
        // headers that stay mapped while the object is loaded, which it is for the call.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let holds_code = headers.iter().any(|ph| {
            let lo = base.wrapping_add(ph.p_vaddr as usize);
            ph.p_type == libc::PT_LOAD
                && ph.p_flags & libc::PF_X != 0
                && (lo..lo.wrapping_add(ph.p_memsz as usize)).contains(&found.code_addr)
        });
        if !holds_code {
            return 0;
        }
        // A note is read only where a loaded segment maps file contents, so every byte read
        // below is mapped and initialised.
        let mapped = |vaddr: u64, len: u64| {
            headers.iter().any(|ph| {
                ph.p_type == libc::PT_LOAD
                    && ph.p_flags & libc::PF_R != 0
                    && vaddr >= ph.p_vaddr
                    && match (vaddr.checked_add(len), ph.p_vaddr.checked_add(ph.p_filesz)) {
                        (Some(end), Some(segment_end)) => end <= segment_end,
                        _ => false,
                    }
            })
        };
        for ph in headers.iter().filter(|ph| ph.p_type == libc::PT_NOTE) {
            if !mapped(ph.p_vaddr, ph.p_filesz) {
                continue;
            }
            let start = base.wrapping_add(ph.p_vaddr as usize) as *const u8;
            // SAFETY: `mapped` checked that these `p_filesz` bytes lie inside the file-backed
            // part of a loaded, readable segment, which stays mapped for the call.
            let notes = unsafe { std::slice::from_raw_parts(start, ph.p_filesz as usize) };
            let align = if ph.p_align == 8 { 8 } else { 4 };
            if let Some(id) = find_build_id(notes, align) {
                found.build_id = Some(id.to_vec());
                break;
            }
        }
        if !info.dlpi_name.is_null() {
            // SAFETY: a non-null `dlpi_name` is a NUL-terminated string owned by the loader.
            let name = unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) };
            if !name.is_empty() {
                use std::os::unix::ffi::OsStrExt;
                found.path = Some(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())));
            }
        }
        1
    }

    let mut found = Found {
        code_addr,
        ..Found::default()
    };
    // SAFETY: `visit` only reads the headers and notes it is given (bounds checked above)
    // and writes through `data`, which outlives the call; `dl_iterate_phdr` is thread-safe.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut found as *mut Found as *mut libc::c_void) };
    found
}

/// Finds the descriptor of the GNU build-id note in a note segment's bytes, each note's name
/// and descriptor padded to `align` (4, or 8 in a segment aligned to 8).
fn find_build_id(mut notes: &[u8], align: usize) -> Option<&[u8]> {
    let word = |b: &[u8], at: usize| -> Option<usize> {
        let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_ne_bytes(bytes) as usize)
    };
    let padded = |n: usize| n.checked_add(align - 1).map(|n| n & !(align - 1));
    while notes.len() >= 12 {
        let (name_size, desc_size, kind) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let desc_at = padded(12usize.checked_add(name_size)?)?;
        let end = padded(desc_at.checked_add(desc_size)?)?;
        let name = notes.get(12..12usize.checked_add(name_size)?)?;
        let desc = notes.get(desc_at..desc_at.checked_add(desc_size)?)?;
        if kind == NT_GNU_BUILD_ID as usize && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc);
        }
        notes = notes.get(end..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8], align: usize) -> Vec<u8> {
        let pad = |v: &mut Vec<u8>| v.resize(v.len().next_multiple_of(align), 0);
        let mut v = Vec::new();
        v.extend((name.len() as u32).to_ne_bytes());
        v.extend((desc.len() as u32).to_ne_bytes());
        v.extend(kind.to_ne_bytes());
        v.extend(name);
        pad(&mut v);
        v.extend(desc);
        pad(&mut v);
        v
    }

    #[test]
    fn the_build_id_note_is_found_among_others() {
        for align in [4, 8] {
            let mut notes = note(b"GNU\0", 5, &[1; 16], align); // a property note
            notes.extend(note(b"Go\0", NT_GNU_BUILD_ID, b"not gnu", align));
            notes.extend(note(b"GNU\0", NT_GNU_BUILD_ID, &[7, 8, 9], align));
            assert_eq!(find_build_id(&notes, align), Some(&[7u8, 8, 9][..]));
        }
    }

    #[test]
    fn truncated_or_oversized_notes_are_not_read_past_their_end() {
        let whole = note(b"GNU\0", NT_GNU_BUILD_ID, &[1; 20], 4);
        for cut in 0..whole.len() {
            let id = find_build_id(&whole[..cut], 4);
            assert!(id.is_none(), "a note cut at {cut} gave {id:?}");
        }
        let mut huge = whole.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(find_build_id(&huge, 4), None);
        huge[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(find_build_id(&huge, 8), None);
    }

    /// The build-id `readelf -n` reads from the file of this test binary.
    fn readelf_build_id() -> Option<Vec<u8>> {
        let out = std::process::Command::new("readelf")
            .arg("-n")
            // Our own file: `/proc/self` would be readelf's.
            .arg(format!("/proc/{}/exe", std::process::id()))
            .output()
            .expect("readelf (binutils, which the C linker that rustc uses comes with)");
        let text = String::from_utf8_lossy(&out.stdout);
        let hex = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Build ID: "))?;
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex");
        Some((0..hex.len()).step_by(2).map(byte).collect())
    }

    #[test]
    fn the_build_id_is_the_one_the_linker_wrote() {
        let here = the_build_id_is_the_one_the_linker_wrote as fn() as usize;
        let ours = object_notes(here).build_id;
        assert_eq!(ours, readelf_build_id());
        match build_identity(here) {
            BuildIdentity::BuildId(id) => assert_eq!(Some(id), ours),
            BuildIdentity::ContentHash(_) => assert_eq!(ours, None),
            BuildIdentity::Unknown => panic!("this executable can be read"),
        }
    }

    #[test]
    fn a_copy_hashes_alike_and_other_contents_do_not() {
        let dir = std::env::temp_dir().join(format!("mproc-build-id-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &bytes).unwrap();
        std::fs::write(&b, &bytes).unwrap();
        let mut other = bytes;
        other[2_500_000] ^= 1;
        std::fs::write(&c, &other).unwrap();
        let hash = |p: &std::path::Path| content_hash(p).unwrap();
        let (ha, hb, hc) = (hash(&a), hash(&b), hash(&c));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(ha, hb);
        assert_ne!(ha, hc);
        assert!(content_hash(&dir.join("gone")).is_err());
    }
}
