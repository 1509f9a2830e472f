//! The tour: every capability of mproc that exists so far, level by level, as in the
//! project's design (eight levels; the ones not built yet say so).
//!
//! `cargo run --release --example tour`

#[path = "level1_process.rs"]
#[allow(dead_code)]
mod level1;
#[path = "level2_parallel.rs"]
#[allow(dead_code)]
mod level2;
#[path = "level4_pipe.rs"]
#[allow(dead_code)]
mod level4;
#[path = "level7_shared_memory.rs"]
#[allow(dead_code)]
mod level7;
#[path = "level8_lock.rs"]
#[allow(dead_code)]
mod level8;

fn main() -> mproc::Result<()> {
    mproc::init();
    println!(
        "mproc tour: Python's multiprocessing, in Rust ({} CPUs here)",
        mproc::cpu_count()
    );
    level1::run()?;
    level2::run()?;
    mproc_examples::heading(3, "a pool with map");
    println!("  not built yet: arrives with mproc-pool");
    level4::run()?;
    for (level, what, crate_) in [
        (5, "a queue with producer and consumer", "mproc-queue"),
        (6, "a manager list used as a shared stack", "mproc-manager"),
    ] {
        mproc_examples::heading(level, what);
        println!("  not built yet: arrives with {crate_}");
    }
    level7::run()?;
    level8::run()?;
    println!("\ntour complete");
    Ok(())
}
