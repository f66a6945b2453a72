//! Carrying out and undoing [`Change`]s on the host: addresses and routes over rtnetlink,
//! DNS with `resolvectl` or resolv.conf, the kill switch with `nft`, the PAC file. Every undo
//! treats "already gone" as done, so a restore after a crash can run any number of times.

use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteScope};
use rtnetlink::{Handle, RouteMessageBuilder};
use tokio::io::AsyncWriteExt;

use super::dns::{self, DnsSettings};
use super::plan::OuterRoute;
use super::state::{Change, Host, Journal};

/// A change the host refused, in one line that says what to check.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("cannot open a netlink route socket: {0} (the client needs root or CAP_NET_ADMIN)")]
    Netlink(std::io::Error),
    #[error("cannot {op} {what}: {message}")]
    Refused {
        op: &'static str,
        what: String,
        message: String,
    },
    #[error("{program} is not installed (needed for {what}); install it or set {hint}")]
    Missing {
        program: &'static str,
        what: &'static str,
        hint: &'static str,
    },
    #[error("{program} {args} failed: {message}")]
    Command {
        program: &'static str,
        args: String,
        message: String,
    },
    #[error(transparent)]
    State(#[from] super::state::StateError),
    #[error("no route to the gateway {0}: is the network up?")]
    NoRoute(IpAddr),
}

const ESRCH: i32 = -libc::ESRCH;
const EEXIST: i32 = -libc::EEXIST;
const EADDRNOTAVAIL: i32 = -libc::EADDRNOTAVAIL;
const ENODEV: i32 = -libc::ENODEV;

/// The host, as the client changes it.
pub struct System {
    handle: Handle,
}

/// What some changes need besides their journal entry.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub dns: DnsSettings,
    pub profile_name: String,
    /// The kill switch script (`nft -f -`).
    pub nft_script: String,
    pub pac_text: String,
}

impl System {
    /// Opens a netlink route socket; inside a tokio runtime.
    pub fn open() -> Result<System, SystemError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(SystemError::Netlink)?;
        tokio::spawn(connection);
        Ok(System { handle })
    }

    /// Records `change` in the journal, then makes it.
    pub async fn make(
        &self,
        journal: &mut Journal,
        change: &Change,
        extras: &Extras,
    ) -> Result<(), SystemError> {
        journal.record(change.clone())?;
        self.apply(change, extras).await?;
        tracing::info!("client: {change} set");
        Ok(())
    }

    /// Undoes `change`, then removes it from the journal. `vanished`: nothing to undo.
    pub async fn unmake(
        &self,
        journal: &mut Journal,
        change: &Change,
        vanished: bool,
    ) -> Result<(), SystemError> {
        if !vanished {
            self.undo(change).await?;
            tracing::info!("client: {change} removed");
        }
        journal.forget(change)?;
        Ok(())
    }

    async fn apply(&self, change: &Change, extras: &Extras) -> Result<(), SystemError> {
        match change {
            Change::Address { dev, addr } => {
                let index = index(dev, "add", change)?;
                match self
                    .handle
                    .address()
                    .add(index, addr.addr(), addr.prefix_len())
                    .execute()
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == EEXIST => Ok(()),
                    Err(e) => Err(refused("add", change, e)),
                }
            }
            Change::Route { dest, via, dev } => {
                let message = route_message(*dest, *via, index(dev, "add", change)?)
                    .map_err(|m| refused_text("add", change, m))?;
                self.handle
                    .route()
                    .add(message)
                    .replace()
                    .execute()
                    .await
                    .map_err(|e| refused("add", change, e))
            }
            Change::Resolved { dev } => {
                for args in dns::resolvectl_args(dev, &extras.dns) {
                    run(
                        "resolvectl",
                        &args,
                        None,
                        "split DNS",
                        "dns = \"resolv-conf\"",
                    )
                    .await?;
                }
                Ok(())
            }
            Change::ResolvConf { path, backup, .. } => {
                // The backup is taken once: a second apply (new assignment) keeps the original.
                if !backup.exists() {
                    copy_preserving(path, backup).map_err(|e| refused_text("save", change, e))?;
                }
                let text = dns::resolv_conf(&extras.profile_name, &extras.dns);
                write_resolv_conf(path, text.as_bytes())
                    .map_err(|e| refused_text("write", change, e))
            }
            Change::Nft { .. } => {
                run(
                    "nft",
                    &["-f".to_owned(), "-".to_owned()],
                    Some(&extras.nft_script),
                    "the kill switch",
                    "kill_switch = false",
                )
                .await
            }
            Change::PacFile { path } => replace_file(path, extras.pac_text.as_bytes())
                .map_err(|e| refused_text("write", change, e)),
        }
    }

    async fn undo(&self, change: &Change) -> Result<(), SystemError> {
        match change {
            Change::Address { dev, addr } => {
                let Ok(index) = rampart_io::vip::if_index(dev) else {
                    return Ok(());
                };
                let mut found = self
                    .handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .set_address_filter(addr.addr())
                    .set_prefix_length_filter(addr.prefix_len())
                    .execute();
                while let Some(message) = found
                    .try_next()
                    .await
                    .map_err(|e| refused("look up", change, e))?
                {
                    match self.handle.address().del(message).execute().await {
                        Ok(()) => {}
                        Err(rtnetlink::Error::NetlinkError(e))
                            if [EADDRNOTAVAIL, ENODEV].contains(&e.raw_code()) => {}
                        Err(e) => return Err(refused("remove", change, e)),
                    }
                }
                Ok(())
            }
            Change::Route { dest, via, dev } => {
                let Ok(index) = rampart_io::vip::if_index(dev) else {
                    return Ok(()); // gone with its device
                };
                let message = route_message(*dest, *via, index)
                    .map_err(|m| refused_text("remove", change, m))?;
                match self.handle.route().del(message).execute().await {
                    Ok(()) => Ok(()),
                    Err(rtnetlink::Error::NetlinkError(e))
                        if [ESRCH, ENODEV].contains(&e.raw_code()) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(refused("remove", change, e)),
                }
            }
            Change::Resolved { dev } => {
                if !device_exists(dev) {
                    return Ok(());
                }
                run(
                    "resolvectl",
                    &["revert".to_owned(), dev.clone()],
                    None,
                    "split DNS",
                    "dns = \"resolv-conf\"",
                )
                .await
            }
            Change::ResolvConf {
                path,
                backup,
                symlink,
            } => {
                // Replaced by a regular file: the symlink comes back. Still a symlink: it
                // points at a mount point that was written in place (below), and so is the
                // original content.
                let still_symlink =
                    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
                if let (Some(target), false) = (symlink, still_symlink) {
                    let _ = std::fs::remove_file(path);
                    std::os::unix::fs::symlink(target, path)
                        .map_err(|e| refused_text("restore", change, e))?;
                    let _ = std::fs::remove_file(backup);
                    return Ok(());
                }
                match std::fs::read(backup) {
                    Ok(original) => {
                        write_resolv_conf(path, &original)
                            .map_err(|e| refused_text("restore", change, e))?;
                        let _ = std::fs::remove_file(backup);
                        Ok(())
                    }
                    // Never saved (crash before the write): resolv.conf is untouched.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(refused_text("read the backup of", change, e)),
                }
            }
            Change::Nft { table } => {
                let args = [
                    "delete".to_owned(),
                    "table".into(),
                    "inet".into(),
                    table.clone(),
                ];
                match run("nft", &args, None, "the kill switch", "kill_switch = false").await {
                    Err(SystemError::Command { message, .. })
                        if message.contains("No such file or directory") =>
                    {
                        Ok(())
                    }
                    other => other,
                }
            }
            Change::PacFile { path } => match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(refused_text("remove", change, e)),
            },
        }
    }

    /// The route `endpoint` takes now (`ip route get`): next hop, device and the source
    /// address the kernel would use.
    pub async fn route_to(
        &self,
        endpoint: IpAddr,
    ) -> Result<(OuterRoute, Option<IpAddr>), SystemError> {
        let message = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(endpoint, if endpoint.is_ipv4() { 32 } else { 128 })
            .map_err(|_| SystemError::NoRoute(endpoint))?
            .build();
        let mut answers = self.handle.route().get(message).execute();
        let route = match answers.try_next().await {
            Ok(Some(route)) => route,
            Ok(None) | Err(_) => return Err(SystemError::NoRoute(endpoint)),
        };
        let mut via = None;
        let mut oif = None;
        let mut source = None;
        for attr in &route.attributes {
            match attr {
                RouteAttribute::PrefSource(RouteAddress::Inet(a)) => source = Some(IpAddr::V4(*a)),
                RouteAttribute::PrefSource(RouteAddress::Inet6(a)) => source = Some(IpAddr::V6(*a)),
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => via = Some(IpAddr::V4(*a)),
                RouteAttribute::Gateway(RouteAddress::Inet6(a)) => via = Some(IpAddr::V6(*a)),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        let dev = oif
            .and_then(device_name)
            .ok_or(SystemError::NoRoute(endpoint))?;
        Ok((OuterRoute { endpoint, via, dev }, source))
    }
}

/// `dest [via V] dev INDEX`; link scope without a next hop, like `ip route add`.
fn route_message(
    dest: IpNet,
    via: Option<IpAddr>,
    index: u32,
) -> Result<netlink_packet_route::route::RouteMessage, String> {
    let dest = dest.trunc();
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dest.addr(), dest.prefix_len())
        .map_err(|e| e.to_string())?
        .output_interface(index);
    match via {
        Some(v) => b = b.gateway(v).map_err(|e| e.to_string())?,
        None if dest.addr().is_ipv4() => b = b.scope(RouteScope::Link),
        None => {}
    }
    Ok(b.build())
}

fn index(dev: &str, op: &'static str, change: &Change) -> Result<u32, SystemError> {
    rampart_io::vip::if_index(dev).map_err(|e| refused_text(op, change, e))
}

fn refused(op: &'static str, change: &Change, e: rtnetlink::Error) -> SystemError {
    let message = match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    };
    refused_text(op, change, message)
}

fn refused_text(op: &'static str, change: &Change, message: impl ToString) -> SystemError {
    SystemError::Refused {
        op,
        what: change.to_string(),
        message: message.to_string(),
    }
}

/// Runs `program args` (with `stdin` when given); a missing program or a failure is an error
/// with the program's own message.
async fn run(
    program: &'static str,
    args: &[String],
    stdin: Option<&str>,
    what: &'static str,
    hint: &'static str,
) -> Result<(), SystemError> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SystemError::Missing {
            program,
            what,
            hint,
        },
        _ => SystemError::Command {
            program,
            args: args.join(" "),
            message: e.to_string(),
        },
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes()).await;
        drop(pipe);
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| SystemError::Command {
            program,
            args: args.join(" "),
            message: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(SystemError::Command {
            program,
            args: args.join(" "),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename (never half a file). A
/// symlink at `path` is replaced by a regular file (its target is untouched).
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("rampart-tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Writes resolv.conf. Normally like [`replace_file`] (readers never see half a file). When
/// the file is a mount point, which a rename cannot replace (`EBUSY`), its content is
/// overwritten in place instead: a container's or an `ip netns exec` namespace's resolv.conf is
/// a bind mount, and a rename beside it would change the *host's* directory. A symlink to a
/// mount point is written through, and stays a symlink.
fn write_resolv_conf(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mounted = std::fs::canonicalize(path).is_ok_and(|real| is_mount_point(&real));
    if mounted {
        return write_in_place(path, bytes);
    }
    match replace_file(path, bytes) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let _ = std::fs::remove_file(path.with_extension("rampart-tmp"));
            write_in_place(path, bytes)
        }
        other => other,
    }
}

/// Truncates and rewrites `path` (following a symlink), then syncs it.
fn write_in_place(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Whether `path` (absolute, canonical) is a mount point of this process's mount namespace.
fn is_mount_point(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    for point in mount_points(&table) {
        if Path::new(&point) == path {
            return true;
        }
    }
    false
}

/// The mount points (field 5) of a `/proc/self/mountinfo` text, octal escapes (`\040` for a
/// space) decoded.
fn mount_points(table: &str) -> impl Iterator<Item = String> + '_ {
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_field)
}

fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Copies `from` to `to` (following a symlink: the content is what matters).
fn copy_preserving(from: &Path, to: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(from)?;
    replace_file(to, &bytes)
}

/// Whether the network device `dev` exists.
pub fn device_exists(dev: &str) -> bool {
    Path::new("/sys/class/net").join(dev).exists()
}

fn device_name(index: u32) -> Option<String> {
    let entries = std::fs::read_dir("/sys/class/net").ok()?;
    entries.filter_map(Result::ok).find_map(|e| {
        let text = std::fs::read_to_string(e.path().join("ifindex")).ok()?;
        (text.trim().parse::<u32>().ok()? == index).then(|| e.file_name().to_string_lossy().into())
    })
}

/// The real host for restore planning.
pub struct LiveHost;

impl Host for LiveHost {
    fn device_exists(&self, dev: &str) -> bool {
        device_exists(dev)
    }

    fn client_alive(&self, pid: u32) -> bool {
        if pid == std::process::id() {
            return false;
        }
        match std::fs::read(format!("/proc/{pid}/cmdline")) {
            Ok(cmdline) => {
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                let is_rampart = args
                    .first()
                    .is_some_and(|a| a.ends_with(b"rampart") || a.ends_with(b"rampart (deleted)"));
                is_rampart && args.iter().any(|a| *a == b"client")
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_mount_points_are_decoded() {
        let table = "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                     480 22 0:21 /etc/netns/rp-1-0-client/resolv.conf /etc/resolv.conf rw - ext4 /dev/vda rw\n\
                     481 22 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw\n";
        let points: Vec<String> = mount_points(table).collect();
        assert_eq!(points, ["/", "/etc/resolv.conf", "/mnt/with space"]);
        assert_eq!(unescape_mount_field("a\\134b"), "a\\b");
        assert_eq!(unescape_mount_field("tail\\04"), "tail\\04");
    }

    #[test]
    fn resolv_conf_outside_a_mount_is_replaced_through_a_rename() {
        let dir = std::env::temp_dir().join(format!("rampart-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resolv.conf");
        std::fs::write(&path, b"nameserver 192.0.2.53\n").unwrap();
        assert!(!is_mount_point(&std::fs::canonicalize(&path).unwrap()));
        write_resolv_conf(&path, b"nameserver 10.1.0.53\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"nameserver 10.1.0.53\n");
        assert!(!dir.join("resolv.rampart-tmp").exists());
        // The root directory is a mount point in every mount namespace.
        assert!(is_mount_point(Path::new("/")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
