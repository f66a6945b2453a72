//! Preconditions of the netns tests: root, the system tools, and one heavy test at a time.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

/// True when the test must skip because it does not run as root (it prints why). CI runs as root.
pub fn skip_unless_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        eprintln!(
            "skipping {test}: network-namespace tests need root (run scripts/test.sh as root)"
        );
        return true;
    }
    false
}

/// Panics naming the missing programs. Called by tests that already know they run as root, where a
/// missing tool is a setup error (scripts/test.sh installs them), not a reason to skip.
#[track_caller]
pub fn require_tools(tools: &[&str]) {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !tool_exists(t)).collect();
    assert!(
        missing.is_empty(),
        "missing programs {missing:?}: run scripts/test.sh (it installs the Debian packages)"
    );
}

fn tool_exists(tool: &str) -> bool {
    if tool.contains('/') {
        return Path::new(tool).exists();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(tool).is_file())
}

/// Whether the opt-in heavy variants run (`RAMPART_HEAVY=1`): e.g. 10,000 connections through
/// the cluster instead of 1,000. scripts/test.sh has no heavy mode; set the variable by hand.
pub fn heavy() -> bool {
    std::env::var("RAMPART_HEAVY").is_ok_and(|v| v == "1")
}

/// Exclusive lock shared by every netns test process of this machine; released on drop.
#[derive(Debug)]
pub struct SerialGuard {
    _file: File,
}

/// Takes the machine-wide netns test lock (`/tmp/rampart-netns.lock`), waiting for other holders.
#[track_caller]
pub fn serial() -> SerialGuard {
    let path = std::env::temp_dir().join("rampart-netns.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    loop {
        // SAFETY: the descriptor is valid for the lifetime of `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            panic!("flock {}: {err}", path.display());
        }
    }
    SerialGuard { _file: file }
}
