//! One smoke test per cargo feature of the facade: every re-export is reachable and works.

mproc::init_before_main!();

fn fail(_: ()) -> u8 {
    panic!("smoke")
}

fn add((a, b): (u32, u32)) -> u32 {
    a + b
}

#[test]
fn feature_process_reexports_work() {
    // Top-level conveniences.
    let mut child = mproc::spawn(add, (2, 3)).unwrap();
    assert_eq!(child.join().unwrap(), 5);
    let mut named = mproc::Builder::new()
        .name("smoke")
        .start_method(mproc::StartMethod::Spawn)
        .spawn(add, (1, 1))
        .unwrap();
    assert_eq!(
        mproc::wait_any(
            &[named.sentinel()],
            Some(std::time::Duration::from_secs(30))
        )
        .unwrap(),
        [0]
    );
    assert_eq!(named.join().unwrap(), 2);
    assert_eq!(named.exit_status(), Some(mproc::ExitStatus::Code(0)));
    assert_eq!(mproc::current_process().name(), "MainProcess");
    assert!(mproc::parent_process().is_none());
    assert!(mproc::active_children().is_empty());
    assert!(mproc::cpu_count() >= mproc::process_cpu_count());
    assert!(mproc::StartMethod::all().contains(&mproc::get_start_method()));
    // The module, and the facade's error conversion.
    let err: mproc::Error = mproc::process::Builder::new()
        .spawn(fail, ())
        .unwrap()
        .join()
        .unwrap_err()
        .into();
    assert!(
        matches!(&err, mproc::Error::Process(e) if e.kind() == mproc::process::ErrorKind::Panicked)
    );
    let _: std::io::Error = err.into();
}

#[test]
fn feature_wire_reexports_work() {
    let msg = mproc::wire::encode(&("smoke", 1u8)).unwrap();
    let back: (String, u8) = mproc::wire::decode(msg).unwrap();
    assert_eq!(back, ("smoke".to_string(), 1));
    let err: mproc::Error = mproc::wire::decode::<u8>(mproc::wire::Message::from_bytes(vec![]))
        .unwrap_err()
        .into();
    assert!(matches!(err, mproc::Error::Wire(_)));
}

#[test]
fn sys_reexport_works() {
    let (a, _b) = mproc::sys::socketpair().unwrap();
    assert_eq!(
        mproc::sys::peer_pid(std::os::fd::AsFd::as_fd(&a)).unwrap(),
        std::process::id()
    );
}
