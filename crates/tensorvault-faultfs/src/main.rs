//! `tensorvault-faultfs BACKING MOUNTPOINT`: mount the fault file system (see the library) for a test
//! in another process. Prints `ready` once mounted, then reads commands from stdin, one per line:
//!
//! - `bad NAME START LEN`: make bytes `[START, START + LEN)` of `NAME` unreadable (`EIO`); answers `ok`;
//! - `ranges NAME`: the unreadable ranges left, as `START-END` pairs (`-` for none);
//! - `eio`: how many reads were answered with `EIO` so far.
//!
//! Errors answer `error: …`. End of input detaches the mount (`umount2(MNT_DETACH)`: files the test
//! still holds open, a mapping a view keeps alive, would make a plain unmount fail with `EBUSY`) and
//! exits 0; a mount that fails exits 2 with the reason on stderr.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("tensorvault-faultfs: Linux only");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
fn main() {
    use std::io::{BufRead, Write};
    use std::path::PathBuf;

    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backing, mountpoint] = args.as_slice() else {
        eprintln!("usage: tensorvault-faultfs BACKING MOUNTPOINT");
        std::process::exit(64);
    };
    let mounted =
        match tensorvault_faultfs::mount(&PathBuf::from(backing), &PathBuf::from(mountpoint)) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("tensorvault-faultfs: cannot mount {mountpoint}: {e}");
                std::process::exit(2);
            }
        };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["bad", name, start, len] => match (start.parse::<u64>(), len.parse::<u64>()) {
                (Ok(s), Ok(l)) => mounted
                    .faults
                    .set_bad(name, s, l)
                    .map_or_else(|e| format!("error: {e}"), |()| "ok".to_string()),
                _ => "error: START and LEN must be integers".to_string(),
            },
            ["ranges", name] => match mounted.faults.bad_ranges(name) {
                Ok(r) if r.is_empty() => "-".to_string(),
                Ok(r) => r
                    .iter()
                    .map(|(s, e)| format!("{s}-{e}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                Err(e) => format!("error: {e}"),
            },
            ["eio"] => mounted.faults.eio_count().to_string(),
            _ => format!("error: unknown command {line:?}"),
        };
        let _ = writeln!(out, "{answer}");
        let _ = out.flush();
    }
    // Detach, then exit without waiting for the session: its users (if any) see the connection end.
    if let Ok(c) = std::ffi::CString::new(mountpoint.as_bytes()) {
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        unsafe {
            libc::umount2(c.as_ptr(), libc::MNT_DETACH);
        }
    }
    std::mem::forget(mounted);
    std::process::exit(0);
}
