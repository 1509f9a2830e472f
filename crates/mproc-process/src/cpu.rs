//! How many CPUs there are: `cpu_count()`, `process_cpu_count()`.

use std::sync::OnceLock;

/// Returns the number of CPUs in the system: Python's `multiprocessing.cpu_count()`.
///
/// This counts the online CPUs, not the ones this process may run on; see
/// [`process_cpu_count`] for those.
///
/// ```
/// assert!(mproc_process::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|s| parse_cpu_list(s.trim()))
            .unwrap_or_else(process_cpu_count)
    })
}

/// Returns the number of CPUs this process may run on (its affinity and quota): Python's
/// `os.process_cpu_count()`, which Python's `Pool` uses by default.
///
/// ```
/// assert!(mproc_process::process_cpu_count() <= mproc_process::cpu_count());
/// ```
pub fn process_cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Counts the CPUs in a list such as `0-3,6,8-9`.
fn parse_cpu_list(s: &str) -> Option<usize> {
    let mut n = 0;
    for part in s.split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => {
                b.parse::<usize>()
                    .ok()?
                    .checked_sub(a.parse::<usize>().ok()?)?
                    + 1
            }
            None => {
                part.parse::<usize>().ok()?;
                1
            }
        };
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists_parse() {
        assert_eq!(super::parse_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(super::parse_cpu_list("0"), Some(1));
        assert_eq!(super::parse_cpu_list("x"), None);
        assert_eq!(super::parse_cpu_list("3-1"), None);
    }
}
