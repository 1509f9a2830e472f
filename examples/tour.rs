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
#[path = "level3_pool.rs"]
#[allow(dead_code)]
mod level3;
#[path = "level4_pipe.rs"]
#[allow(dead_code)]
mod level4;
#[path = "level5_queue.rs"]
#[allow(dead_code)]
mod level5;
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
    level3::run()?;
    level4::run()?;
    level5::run()?;
    mproc_examples::heading(6, "a manager list used as a shared stack");
    println!("  not built yet: arrives with mproc-manager");
    level7::run()?;
    level8::run()?;
    println!("\ntour complete");
    Ok(())
}
