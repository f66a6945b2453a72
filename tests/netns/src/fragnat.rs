//! A hostile path for large IKE messages: the hide-NAT topology of [`crate::nat_topology`] whose
//! outside link (NAT `out0` ── gw2 `wan0`) has an MTU of [`OUTSIDE_MTU`] on both ends, and whose
//! NAT drops every non-first IPv4 fragment arriving on `out0` (an nftables `netdev` ingress rule,
//! so it acts before the NAT's own reassembly).
//!
//! ```text
//!  h1 ── gw1 ── in0  nat  out0 ══ (MTU 1280, non-first fragments dropped inbound) ══ wan0  gw2 ── h2
//! ```
//! A datagram gw2 sends towards gw1 that does not fit 1280 bytes is fragmented by gw2 and never
//! arrives; one that fits does. (Towards gw2 the NAT reassembles and re-fragments, so big
//! datagrams from gw1 still arrive unless [`FragNat::drop_fragments_on`] `in0` is called too.)
//! The namespaces are IPv6-free, so only IPv4 fragments are matched.

use std::ops::Deref;

use crate::nat_topology::{NatSiteToSite, NAT_OUT_IF};
use crate::topology::WAN_IF;

/// MTU of the link between the NAT and gw2.
pub const OUTSIDE_MTU: u32 = 1280;
/// nftables table (family `netdev`) of the NAT namespace holding the drop rules.
const TABLE: &str = "rampart_fragnat";

/// [`NatSiteToSite`] with the small, fragment-dropping outside link. Derefs to the topology.
#[derive(Debug)]
pub struct FragNat {
    pub topo: NatSiteToSite,
}

impl Deref for FragNat {
    type Target = NatSiteToSite;
    fn deref(&self) -> &NatSiteToSite {
        &self.topo
    }
}

impl FragNat {
    /// Builds the NAT topology (source ports in `ports`, e.g. `"20000-20999"`), sets the outside
    /// MTU and installs the drop rule on `out0`.
    #[track_caller]
    pub fn new(test: &str, ports: &str) -> FragNat {
        let topo = NatSiteToSite::new(test, ports);
        let mtu = OUTSIDE_MTU.to_string();
        topo.nat
            .exec(&["ip", "link", "set", NAT_OUT_IF, "mtu", &mtu]);
        topo.gw2.exec(&["ip", "link", "set", WAN_IF, "mtu", &mtu]);
        topo.nat.exec(&["nft", "add", "table", "netdev", TABLE]);
        let f = FragNat { topo };
        f.drop_fragments_on(NAT_OUT_IF);
        f
    }

    /// Also drops non-first fragments arriving on the NAT interface `ifname` (`in0` or `out0`).
    #[track_caller]
    pub fn drop_fragments_on(&self, ifname: &str) {
        let chain = chain_name(ifname);
        let rules = format!(
            "table netdev {TABLE} {{\n  chain {chain} {{\n    type filter hook ingress device \"{ifname}\" priority -500; policy accept;\n    ip frag-off & 0x1fff != 0 counter drop\n  }}\n}}\n"
        );
        let file = self.dir.file(&format!("fragnat-{ifname}.nft"));
        std::fs::write(&file, rules).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        self.nat.exec(&["nft", "-f", &file.to_string_lossy()]);
    }

    /// Non-first fragments dropped so far on `ifname` (0 when no rule is installed there).
    #[track_caller]
    pub fn dropped_fragments(&self, ifname: &str) -> u64 {
        let out =
            match self
                .nat
                .try_exec(&["nft", "list", "chain", "netdev", TABLE, &chain_name(ifname)])
            {
                Ok(o) => o,
                Err(_) => return 0,
            };
        parse_counter(&out).unwrap_or_else(|| panic!("no counter in:\n{out}"))
    }
}

fn chain_name(ifname: &str) -> String {
    format!(
        "drop_frags_{}",
        ifname.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// The packet count of the first `counter packets N bytes M` in an `nft list` output.
fn parse_counter(out: &str) -> Option<u64> {
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "packets" {
            return words.next()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_parsing() {
        let out = "table netdev t {\n chain c {\n  ip frag-off & 0x1fff != 0 counter packets 12 bytes 3400 drop\n }\n}";
        assert_eq!(parse_counter(out), Some(12));
        assert_eq!(parse_counter("nothing"), None);
        assert_eq!(chain_name("out0"), "drop_frags_out0");
    }
}
