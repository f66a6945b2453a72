//! Network namespaces and the processes started in them.
//!
//! Invariant: every namespace this process creates is named `rp-<pid>-<counter>-<role>` and is
//! deleted by [`Netns`]'s `Drop` after every process in it was killed; namespaces left by a test
//! process that no longer exists are removed the first time a new one is created.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::wait::try_wait_until;

static NEXT: AtomicU32 = AtomicU32::new(0);
static STALE: Once = Once::new();

/// A command that could not run or exited unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` failed ({status}):\nstdout: {stdout}\nstderr: {stderr}")]
    Failed {
        cmd: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
}

/// Runs a command to completion; stdout on success.
pub fn run(program: &str, args: &[&str]) -> Result<String, CommandError> {
    run_env(program, args, &[])
}

/// Runs a command with extra environment variables; stdout on success.
pub fn run_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<String, CommandError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CommandError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(CommandError::Failed {
            cmd,
            status: out.status,
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

#[track_caller]
fn must(result: Result<String, CommandError>) -> String {
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// One network namespace, deleted (with every process in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `rp-<pid>-<n>-<role>` with `lo` up and IPv6 off (so captures hold only what the
    /// test sent, no router solicitations).
    #[track_caller]
    pub fn new(role: &str) -> Netns {
        STALE.call_once(remove_stale_namespaces);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("rp-{}-{n}-{role}", std::process::id());
        must(run("ip", &["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip("link set lo up");
        // Best effort: a kernel without IPv6 has no such keys.
        let _ = ns.try_sysctl("net.ipv6.conf.all.disable_ipv6", "1");
        let _ = ns.try_sysctl("net.ipv6.conf.default.disable_ipv6", "1");
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args>` (args split on whitespace); panics on failure.
    #[track_caller]
    pub fn ip(&self, args: &str) -> String {
        must(self.try_ip(args))
    }

    pub fn try_ip(&self, args: &str) -> Result<String, CommandError> {
        let mut all = vec!["-n", &self.name];
        all.extend(args.split_whitespace());
        run("ip", &all)
    }

    /// Runs a command inside the namespace to completion; panics on failure.
    #[track_caller]
    pub fn exec(&self, args: &[&str]) -> String {
        must(self.try_exec(args))
    }

    pub fn try_exec(&self, args: &[&str]) -> Result<String, CommandError> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Writes `/proc/sys/<key with dots as slashes>` inside the namespace; panics on failure.
    #[track_caller]
    pub fn sysctl(&self, key: &str, value: &str) {
        must(self.try_sysctl(key, value));
    }

    pub fn try_sysctl(&self, key: &str, value: &str) -> Result<String, CommandError> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let script = format!("echo {value} > {path}");
        self.try_exec(&["sh", "-c", &script])
    }

    /// Turns on IPv4 forwarding (gateways).
    #[track_caller]
    pub fn enable_forwarding(&self) {
        self.sysctl("net.ipv4.ip_forward", "1");
    }

    /// Adds an address (`10.1.0.1/24`) to an interface.
    #[track_caller]
    pub fn add_addr(&self, ifname: &str, cidr: &str) {
        self.ip(&format!("addr add {cidr} dev {ifname}"));
    }

    /// Adds a route, e.g. `route("default via 10.1.0.1")`.
    #[track_caller]
    pub fn route(&self, spec: &str) {
        self.ip(&format!("route add {spec}"));
    }

    /// Starts a long-running command inside the namespace, stdout and stderr to
    /// `<log_dir>/<label>.log`. The process is killed and reaped when the [`Process`] drops.
    #[track_caller]
    pub fn spawn(&self, log_dir: &Path, label: &str, args: &[&str]) -> Process {
        self.spawn_env(log_dir, label, args, &[])
    }

    /// [`Netns::spawn`] with extra environment variables.
    #[track_caller]
    pub fn spawn_env(
        &self,
        log_dir: &Path,
        label: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Process {
        let log = log_dir.join(format!("{label}.log"));
        let out = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("dup log fd: {e}"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // `ip netns exec` execs the command, so the child's pid is the program's pid.
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {label} ({args:?}) in {}: {e}", self.name));
        Process {
            label: label.to_string(),
            pid: child.id(),
            child: Some(child),
            log,
            status: None,
        }
    }

    /// Pids of the live processes inside the namespace.
    pub fn pids(&self) -> Vec<u32> {
        namespace_pids(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_namespace_processes(&self.name);
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("warning: {e}");
        }
    }
}

fn namespace_pids(name: &str) -> Vec<u32> {
    run("ip", &["netns", "pids", name])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn kill_namespace_processes(name: &str) {
    for pid in namespace_pids(name) {
        // SAFETY: kill has no memory-safety preconditions; a stale pid only yields ESRCH.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    // Our own children stay zombies until their Process is dropped; zombies have no namespace,
    // so `ip netns pids` stops listing them as soon as they die.
    let gone = try_wait_until(
        Duration::from_secs(5),
        "namespace processes to exit",
        || namespace_pids(name).is_empty(),
    );
    if let Err(e) = gone {
        eprintln!("warning: {name}: {e}");
    }
}

/// Deletes `rp-<pid>-...` namespaces whose creating process is gone (a crashed earlier run).
fn remove_stale_namespaces() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(owner) = stale_owner(name) else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        kill_namespace_processes(name);
        let _ = run("ip", &["netns", "del", name]);
    }
}

/// The creating pid encoded in one of our namespace names.
fn stale_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("rp-")?;
    let (pid, rest) = rest.split_once('-')?;
    let (counter, _role) = rest.split_once('-')?;
    counter.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Creates a veth pair with one end in each namespace, adds the addresses and brings both up.
#[track_caller]
pub fn veth(a: &Netns, a_if: &str, a_addrs: &[&str], b: &Netns, b_if: &str, b_addrs: &[&str]) {
    must(run(
        "ip",
        &[
            "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
            &b.name,
        ],
    ));
    for (ns, ifname, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
        for addr in addrs {
            ns.add_addr(ifname, addr);
        }
        ns.ip(&format!("link set {ifname} up"));
    }
}

/// A process started with [`Netns::spawn`]; killed with SIGKILL and reaped on drop.
#[derive(Debug)]
pub struct Process {
    label: String,
    pid: u32,
    child: Option<Child>,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process wrote so far (stdout and stderr).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Whether the process is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(status))) => {
                self.status = Some(status);
                false
            }
            _ => false,
        }
    }

    /// Exit status, once the process exited and was reaped.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.is_running();
        self.status
    }

    /// Sends a signal (no-op once the process was reaped).
    pub fn signal(&self, sig: libc::c_int) {
        if self.status.is_none() {
            // SAFETY: the pid is our unreaped child, so it cannot have been reused.
            unsafe {
                libc::kill(self.pid as libc::pid_t, sig);
            }
        }
    }

    /// Sends `sig` and waits up to `grace` for the exit; SIGKILL after that. Returns the status.
    pub fn stop(&mut self, sig: libc::c_int, grace: Duration) -> Option<ExitStatus> {
        self.signal(sig);
        let deadline = Instant::now() + grace;
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9()
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                let _ = child.kill();
                self.status = child.wait().ok();
            }
        }
        self.status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[cfg(test)]
mod tests {
    use super::stale_owner;

    #[test]
    fn stale_owner_reads_only_our_names() {
        assert_eq!(stale_owner("rp-4242-3-gw1"), Some(4242));
        assert_eq!(stale_owner("rp-4242-3-gw-a"), Some(4242));
        assert_eq!(stale_owner("rp-x-3-gw1"), None);
        assert_eq!(stale_owner("rp-4242-gw1"), None);
        assert_eq!(stale_owner("other-4242-3-gw1"), None);
        assert_eq!(stale_owner("rp-4242"), None);
    }
}
