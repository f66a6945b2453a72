//! Packet capture with tcpdump on one interface of a namespace, written to a pcap file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns::{Netns, Process};
use crate::wait::wait_until;

/// Bytes kept per packet: enough for the link, IP, UDP headers and the ESP SPI or IKE header.
const SNAPLEN: &str = "160";

/// A running tcpdump; [`Capture::stop`] flushes it and returns the pcap path.
#[derive(Debug)]
pub struct Capture {
    process: Process,
    path: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -i <iface>` in `ns`, writing `<dir>/<label>.pcap`, and waits until it listens.
    #[track_caller]
    pub fn start(ns: &Netns, iface: &str, dir: &Path, label: &str) -> Capture {
        let path = dir.join(format!("{label}.pcap"));
        let file = path.to_string_lossy().into_owned();
        // -Z root: tcpdump otherwise drops to its own user, which cannot write the test directory.
        // --immediate-mode and -U: hand each packet to tcpdump and write it at once; otherwise the
        // packets of the last (unfinished) ring-buffer block are lost when tcpdump stops.
        let mut process = ns.spawn(
            dir,
            label,
            &[
                "tcpdump",
                "-i",
                iface,
                "-n",
                "--immediate-mode",
                "-U",
                "-Z",
                "root",
                "-s",
                SNAPLEN,
                "-w",
                &file,
            ],
        );
        wait_until(Duration::from_secs(10), "tcpdump to listen", || {
            assert!(process.is_running(), "tcpdump exited: {}", process.log());
            process.log().contains("listening on")
        });
        Capture { process, path }
    }

    /// Stops tcpdump (SIGINT, which flushes the file) and returns the pcap path.
    pub fn stop(mut self) -> PathBuf {
        self.process.stop(libc::SIGINT, Duration::from_secs(5));
        self.path.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
