//! An error as one line of text: its message followed by each of its causes.

/// An error and each of its causes, joined by `": "`: for the few places where an error
/// has to become text (a message to another process, a line on stderr), since each
/// error's own `Display` leaves its cause to `source()`.
///
/// ```
/// let inner = std::io::Error::other("disk full");
/// let outer = std::io::Error::new(std::io::ErrorKind::Other, inner);
/// assert_eq!(mproc_sys::with_causes(&outer), "disk full");
/// ```
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        // An error that already prints its cause (std's io wrappers do) is not repeated.
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
