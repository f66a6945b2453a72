//! Per-test directory for configs, logs and captures: removed when the test passes, kept and
//! printed (with the tail of every log) when it fails.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Lines of each log printed when a test fails.
const TAIL_LINES: usize = 60;

#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
    keep: bool,
}

impl TestDir {
    /// Creates `$TMPDIR/rampart-netns/<test>-<pid>-<n>`. The path stays short because unix socket
    /// paths (vici, status sockets) inside it are limited to 107 bytes.
    #[track_caller]
    pub fn new(test: &str) -> TestDir {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join("rampart-netns")
            .join(format!("{test}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TestDir {
            path,
            keep: std::env::var_os("RAMPART_KEEP_LOGS").is_some(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory (not created).
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A sub-directory, created.
    #[track_caller]
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        p
    }

    /// Keep the directory even when the test passes.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    fn print_logs(&self) {
        eprintln!("---- test files kept in {}", self.path.display());
        let mut logs = Vec::new();
        collect_logs(&self.path, &mut logs);
        logs.sort();
        for log in logs {
            let text = std::fs::read(&log).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(TAIL_LINES);
            eprintln!("---- {} (last {} lines)", log.display(), lines.len() - from);
            for line in &lines[from..] {
                eprintln!("{line}");
            }
        }
    }
}

fn collect_logs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            collect_logs(&p, out);
        } else if p.extension().is_some_and(|e| e == "log") {
            out.push(p);
        }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        } else if self.keep {
            eprintln!("---- test files kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
