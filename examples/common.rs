//! What the examples share: a heading printer, so the tour reads as one story.

/// Prints a level's heading.
pub fn heading(level: u32, title: &str) {
    println!("\n== level {level}: {title} ==");
}
