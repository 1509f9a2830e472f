//! Installing MPICH and what rsmpi's bindings need (Debian's packages), once per machine.

use std::path::PathBuf;
use std::process::Command;

use crate::{Result, run as run_step, show};

/// What the MPI build and runs need, each with the Debian package that brings it.
const NEEDS: [(&str, &str); 4] = [
    ("mpiexec (MPICH's launcher)", "mpich"),
    ("MPICH's headers and mpich.pc", "libmpich-dev"),
    ("libclang (bindgen, for rsmpi's bindings)", "libclang-dev"),
    ("pkg-config", "pkg-config"),
];

/// Where to look for programs and for libclang: the machine's, or a test's.
struct Probe {
    path: Vec<PathBuf>,
    /// Directories that may hold `libclang.so` (an LLVM's `lib`, or `LIBCLANG_PATH`).
    libclang_dirs: Vec<PathBuf>,
}

impl Probe {
    fn of_this_machine() -> Probe {
        let path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let mut libclang_dirs: Vec<PathBuf> = std::env::var_os("LIBCLANG_PATH")
            .map(PathBuf::from)
            .into_iter()
            .collect();
        // Debian installs each LLVM under /usr/lib/llvm-<version>.
        for entry in std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with("llvm") {
                libclang_dirs.push(entry.path().join("lib"));
            }
        }
        Probe {
            path,
            libclang_dirs,
        }
    }

    fn program(&self, name: &str) -> Option<PathBuf> {
        self.path.iter().map(|d| d.join(name)).find(|p| p.is_file())
    }

    /// Whether `pkg-config` knows MPICH (`mpich.pc`, from `libmpich-dev`).
    fn has_mpich_headers(&self) -> bool {
        self.program("pkg-config").is_some_and(|pc| {
            Command::new(pc)
                .args(["--exists", "mpich"])
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// Whether an unversioned `libclang.so` (the development link bindgen looks for, from
    /// `libclang-dev`) is in one of the directories.
    fn has_libclang(&self) -> bool {
        self.libclang_dirs
            .iter()
            .any(|d| d.join("libclang.so").is_file())
    }

    /// Returns the Debian packages that bring what is missing, sorted.
    fn missing_packages(&self) -> Vec<&'static str> {
        let present = [
            self.program("mpiexec").is_some(),
            self.has_mpich_headers(),
            self.has_libclang(),
            self.program("pkg-config").is_some(),
        ];
        let mut missing: Vec<&str> = NEEDS
            .iter()
            .zip(present)
            .filter(|(_, here)| !here)
            .map(|((_, package), _)| *package)
            .collect();
        missing.sort();
        missing
    }
}

/// The command that installs `packages`.
fn install_command(packages: &[&str]) -> Command {
    let mut c = Command::new("apt-get");
    c.args(["install", "-y", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    c
}

/// Whether this process runs as root (the effective uid in `/proc/self/status`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let uids = s.lines().find_map(|l| l.strip_prefix("Uid:"))?.to_owned();
            uids.split_whitespace().nth(1).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Installs what MPI needs when some of it is missing: as root with `apt-get` (after an
/// `apt-get update` if the first attempt fails, as it does without package lists); as
/// another user it stops with the exact command to run.
pub fn ensure_installed() -> Result {
    let missing = Probe::of_this_machine().missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    let line = show(&install_command(&missing));
    if !is_root() {
        return Err(format!(
            "MPI is not installed (missing: {}); run `sudo {line}`, then this again",
            missing.join(" ")
        ));
    }
    eprintln!(
        "\nMPI is missing ({}): installing it (once per machine)",
        missing.join(" ")
    );
    if run_step(install_command(&missing)).is_err() {
        let mut update = Command::new("apt-get");
        update.arg("update");
        run_step(update)?;
        run_step(install_command(&missing))?;
    }
    match Probe::of_this_machine().missing_packages() {
        still if still.is_empty() => Ok(()),
        still => Err(format!(
            "{line} succeeded but these are still missing: {}",
            still.join(" ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_what_mpi_needs() {
        // `cargo xtask test` installs MPI before it builds anything, so this runs with it.
        let missing = Probe::of_this_machine().missing_packages();
        assert!(
            missing.is_empty(),
            "missing {missing:?}: run cargo xtask test"
        );
    }

    #[test]
    fn a_bare_machine_would_get_every_package_in_one_command() {
        let empty = std::env::temp_dir().join(format!("mproc-no-mpi-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let bare = Probe {
            path: vec![empty.clone()],
            libclang_dirs: vec![empty.clone()],
        };
        let missing = bare.missing_packages();
        let _ = std::fs::remove_dir_all(&empty);
        assert_eq!(
            missing,
            ["libclang-dev", "libmpich-dev", "mpich", "pkg-config"]
        );
        assert_eq!(
            show(&install_command(&missing)),
            "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
             libclang-dev libmpich-dev mpich pkg-config"
        );
    }
}
