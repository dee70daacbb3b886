//! The PIN prompt on a real (pseudo-)terminal: echo is off while the PIN is typed and
//! restored afterwards, as `pin_prompt.c: pin_prompt()` does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::thread;
use std::time::{Duration, Instant};

use pkcscca::pin::{read_pin, RawInput};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcgetattr, LocalModes};

fn echo_on(tty: &File) -> bool {
    tcgetattr(tty.as_fd())
        .unwrap()
        .local_modes
        .contains(LocalModes::ECHO)
}

#[test]
fn echo_is_off_while_reading_and_restored_after() {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let path = std::ffi::OsStr::from_bytes(name.as_bytes());
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    assert!(echo_on(&slave), "a fresh pty echoes");

    let reader_tty = slave.try_clone().unwrap();
    let reader = thread::spawn(move || {
        let mut input = RawInput::new(reader_tty.as_fd());
        read_pin(&mut input, Some(reader_tty.as_fd()))
            .map(|p| p.as_bytes().to_vec())
            .map_err(|e| e.to_string())
    });

    // Wait until the prompt has switched echo off, then type the PIN.
    let deadline = Instant::now() + Duration::from_secs(10);
    while echo_on(&slave) {
        assert!(Instant::now() < deadline, "echo was never turned off");
        thread::sleep(Duration::from_millis(5));
    }
    let mut master = File::from(master);
    master.write_all(b"s3cret\n").unwrap();

    let pin = reader.join().unwrap();
    assert_eq!(pin.unwrap(), b"s3cret");
    assert!(echo_on(&slave), "echo restored after the read");

    // With echo back on, a marker line is echoed to the master side. Everything the
    // master reads before the marker would be an echo of the PIN: there must be none.
    master.write_all(b"MARK\n").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !seen.windows(4).any(|w| w == b"MARK") {
        let n = master.read(&mut buf).unwrap();
        assert!(n > 0, "pty closed");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        !seen.windows(6).any(|w| w == b"s3cret"),
        "PIN was echoed: {seen:?}"
    );
}
