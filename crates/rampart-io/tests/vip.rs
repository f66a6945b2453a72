//! Virtual addresses in a pair of network namespaces joined by a veth pair (root only): the
//! member claims an address in `a`, the neighbour in `b` captures the announcement and moves
//! its neighbour entry to the member's MAC; release takes the address away again.

mod netns;

use std::mem::size_of;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use netns::Netns;
use rampart_io::vip::{Vips, ANNOUNCE_COUNT};

const MAC_A: &str = "02:00:00:00:00:0a";
const OLD_MAC: &str = "02:00:00:00:00:99";

struct Pair {
    a: Netns,
    b: Netns,
}

fn pair(tag: &str) -> Pair {
    let a = Netns::new(&format!("{tag}a"));
    let b = Netns::new(&format!("{tag}b"));
    a.ip(&format!(
        "link add va type veth peer name vb netns {}",
        b.name
    ));
    a.ip(&format!("link set va address {MAC_A} up"));
    b.ip("link set vb up");
    b.ip("addr add 192.0.2.2/24 dev vb");
    b.ip("addr add 2001:db8::2/64 dev vb nodad");
    Pair { a, b }
}

/// An AF_PACKET socket on `vb` in namespace `b` that sees every frame, 1 s receive timeout.
fn capture(b: &Netns) -> OwnedFd {
    b.run(|| {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); owned at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let index = rampart_io::vip::if_index("vb").unwrap();
        // SAFETY: plain old data.
        let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_protocol = proto;
        ll.sll_ifindex = index as i32;
        // SAFETY: valid address of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: valid timeval of the given size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        fd
    })
}

/// Frames received within `wait` that `keep` accepts.
fn frames(fd: &OwnedFd, wait: Duration, keep: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
    let end = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 && keep(&buf[..n as usize]) {
            out.push(buf[..n as usize].to_vec());
        }
    }
    out
}

fn mac_bytes(text: &str) -> Vec<u8> {
    text.split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn claim_announces_ipv4_with_gratuitous_arp_and_release_removes() {
    if !netns::can_run("vip v4") {
        return;
    }
    let p = pair("vip4");
    // The neighbour still believes the address is at the old active member.
    p.b.ip(&format!(
        "neigh add 192.0.2.10 lladdr {OLD_MAC} dev vb nud stale"
    ));
    let cap = capture(&p.b);
    let vip = net("192.0.2.10/24");
    // One runtime for both steps: the netlink connection task lives on it.
    let rt = netns::runtime();
    let mut vips = p.a.run(|| {
        rt.block_on(async {
            let mut vips = Vips::open().unwrap();
            vips.claim("va", vip).await.unwrap();
            // Idempotent: claiming again is fine.
            vips.claim("va", vip).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            vips
        })
    });
    let addrs = p.a.ip("-4 addr show dev va");
    assert!(addrs.contains("inet 192.0.2.10/24"), "{addrs}");

    let garps = frames(&cap, Duration::from_millis(300), |f| {
        f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[28..32] == [192, 0, 2, 10]
    });
    // Two claims, each announced ANNOUNCE_COUNT times.
    assert_eq!(garps.len(), 2 * ANNOUNCE_COUNT, "{garps:?}");
    let mac = mac_bytes(MAC_A);
    for f in &garps {
        assert_eq!(&f[0..6], &[0xff; 6], "broadcast");
        assert_eq!(&f[6..12], mac.as_slice(), "from the interface MAC");
        assert_eq!(&f[14..22], &[0, 1, 8, 0, 6, 4, 0, 1], "ARP request");
        assert_eq!(&f[22..28], mac.as_slice(), "sender MAC");
        assert_eq!(&f[38..42], &[192, 0, 2, 10], "target = sender");
    }
    let neigh = p.b.ip("neigh show 192.0.2.10 dev vb");
    assert!(neigh.contains(&format!("lladdr {MAC_A}")), "{neigh}");

    p.a.run(|| {
        rt.block_on(async {
            vips.release("va", vip).await.unwrap();
            // Gone already: still fine.
            vips.release("va", vip).await.unwrap();
            assert_eq!(vips.claimed().count(), 0);
        })
    });
    let addrs = p.a.ip("-4 addr show dev va");
    assert!(!addrs.contains("192.0.2.10"), "{addrs}");
}

#[test]
fn claim_announces_ipv6_with_unsolicited_neighbour_advertisement() {
    if !netns::can_run("vip v6") {
        return;
    }
    let p = pair("vip6");
    p.b.ip(&format!(
        "neigh add 2001:db8::10 lladdr {OLD_MAC} dev vb nud stale"
    ));
    let cap = capture(&p.b);
    let vip = net("2001:db8::10/64");
    let target: std::net::Ipv6Addr = "2001:db8::10".parse().unwrap();
    // One runtime for both steps: the netlink connection task lives on it.
    let rt = netns::runtime();
    let mut vips = p.a.run(|| {
        rt.block_on(async {
            let mut vips = Vips::open().unwrap();
            vips.claim("va", vip).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            vips
        })
    });
    let addrs = p.a.ip("-6 addr show dev va");
    assert!(addrs.contains("inet6 2001:db8::10/64"), "{addrs}");
    let line = addrs.lines().find(|l| l.contains("2001:db8::10")).unwrap();
    assert!(line.contains("nodad"), "usable at once: {addrs}");
    assert!(!line.contains("tentative"), "usable at once: {addrs}");

    // Ethernet (14) + IPv6 (40) + NA (32).
    let nas = frames(&cap, Duration::from_millis(300), |f| {
        f.len() >= 86 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == 136
    });
    assert_eq!(nas.len(), ANNOUNCE_COUNT, "{nas:?}");
    let mac = mac_bytes(MAC_A);
    for f in &nas {
        assert_eq!(
            &f[0..6],
            &[0x33, 0x33, 0, 0, 0, 1],
            "all-nodes multicast MAC"
        );
        assert_eq!(f[21], 255, "hop limit");
        assert_eq!(
            IpAddr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap()),
            "ff02::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(f[58] & 0xe0, 0x20, "override, not solicited, not router");
        assert_eq!(&f[62..78], &target.octets());
        assert_eq!(&f[78..80], &[2, 1], "target link-layer address option");
        assert_eq!(&f[80..86], mac.as_slice());
    }
    let neigh = p.b.ip("-6 neigh show 2001:db8::10 dev vb");
    assert!(neigh.contains(&format!("lladdr {MAC_A}")), "{neigh}");

    p.a.run(|| {
        rt.block_on(async {
            vips.release_all().await;
            assert_eq!(vips.claimed().count(), 0);
        })
    });
    let addrs = p.a.ip("-6 addr show dev va");
    assert!(!addrs.contains("2001:db8::10"), "{addrs}");
}

#[test]
fn claim_on_a_missing_interface_names_it() {
    if !netns::can_run("vip error") {
        return;
    }
    let ns = Netns::new("viperr");
    ns.run(|| {
        netns::runtime().block_on(async {
            let mut vips = Vips::open().unwrap();
            let err = vips
                .claim("ghost0", net("192.0.2.10/24"))
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("cannot claim virtual address 192.0.2.10/24 on ghost0: "),
                "{err}"
            );
            assert_eq!(vips.claimed().count(), 0);
        })
    });
}

#[test]
fn silent_claim_adds_the_address_without_announcing_it() {
    if !netns::can_run("vip silent") {
        return;
    }
    let p = pair("vipq");
    p.b.ip(&format!(
        "neigh add 192.0.2.10 lladdr {OLD_MAC} dev vb nud stale"
    ));
    let cap = capture(&p.b);
    // Routed Load Sharing: a host address, every member holds it, nobody announces it.
    let vip = net("192.0.2.10/32");
    let v6 = net("2001:db8::10/128");
    let rt = netns::runtime();
    let mut vips = p.a.run(|| {
        rt.block_on(async {
            let mut vips = Vips::open().unwrap().silent();
            assert!(!vips.announces());
            vips.claim("va", vip).await.unwrap();
            vips.claim("va", v6).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            vips
        })
    });
    let addrs = p.a.ip("addr show dev va");
    assert!(addrs.contains("inet 192.0.2.10/32"), "{addrs}");
    assert!(addrs.contains("inet6 2001:db8::10/128"), "{addrs}");
    let announcements = frames(&cap, Duration::from_millis(300), |f| {
        let garp = f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[28..32] == [192, 0, 2, 10];
        let na = f.len() >= 86 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == 136;
        garp || na
    });
    assert!(announcements.is_empty(), "{announcements:?}");
    // The neighbour still points at the old MAC: nothing moved it.
    let neigh = p.b.ip("neigh show 192.0.2.10 dev vb");
    assert!(neigh.contains(&format!("lladdr {OLD_MAC}")), "{neigh}");
    p.a.run(|| {
        rt.block_on(async {
            vips.release_all().await;
            assert_eq!(vips.claimed().count(), 0);
        })
    });
    let addrs = p.a.ip("addr show dev va");
    assert!(!addrs.contains("192.0.2.10"), "{addrs}");
}
