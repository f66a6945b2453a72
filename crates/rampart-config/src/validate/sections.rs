//! The single tables: `[gateway]`, `[tunnel]`, `[local]`.

use super::*;

impl Validator<'_, '_> {
    pub(super) fn gateway(&mut self, sec: &Section<RawGateway>) -> GatewaySection {
        self.missing_section(
            sec.present,
            "gateway",
            "[gateway] with at least name = \"...\"",
        );
        let raw = &sec.value;
        let name = match &raw.name {
            Some(n) => self.name("gateway.name", n),
            None => {
                self.missing(sec, "gateway", "name", NAME_RULE);
                None
            }
        }
        .unwrap_or_default();
        let status_socket = match &raw.status_socket {
            Some(p) if p.get_ref().is_empty() => {
                self.error(
                    ErrorKind::InvalidValue,
                    span(p),
                    "gateway.status_socket",
                    "empty path",
                    "a path to a Unix socket".to_string(),
                );
                PathBuf::new()
            }
            Some(p) => self.base_dir.join(p.get_ref()),
            None => PathBuf::from(format!("/run/rampart/{name}.sock")),
        };
        let (ike_port, _) = self.port("gateway.ike_port", &raw.ike_port, DEFAULT_IKE_PORT);
        let (nat_t_port, nat_span) =
            self.port("gateway.nat_t_port", &raw.nat_t_port, DEFAULT_NAT_T_PORT);
        if ike_port == nat_t_port {
            self.error(
                ErrorKind::Conflict,
                nat_span.or_else(|| raw.ike_port.as_ref().map(|p| p.span())),
                "gateway.nat_t_port",
                format!("the NAT-T port equals the IKE port ({ike_port})"),
                "a port other than ike_port, usually 4500 (2746 for compatibility)".to_string(),
            );
        }
        let retransmit_timeout = raw
            .retransmit_timeout
            .as_ref()
            .and_then(|v| {
                self.duration(
                    "gateway.retransmit_timeout",
                    v,
                    RETRANSMIT_TIMEOUT_RANGE,
                    false,
                )
            })
            .unwrap_or(DEFAULT_RETRANSMIT_TIMEOUT);
        let retransmit_tries = raw
            .retransmit_tries
            .as_ref()
            .and_then(|v| self.int("gateway.retransmit_tries", v, RETRANSMIT_TRIES_RANGE))
            .map_or(DEFAULT_RETRANSMIT_TRIES, |n| n as u32);
        let nat_keepalive = raw
            .nat_keepalive
            .as_ref()
            .and_then(|v| self.duration("gateway.nat_keepalive", v, NAT_KEEPALIVE_RANGE, false))
            .unwrap_or(DEFAULT_NAT_KEEPALIVE);
        let fragmentation = raw.fragmentation.as_ref().is_none_or(|b| *b.get_ref());
        let fragment_size = raw
            .fragment_size
            .as_ref()
            .and_then(|v| self.int("gateway.fragment_size", v, FRAGMENT_SIZE_RANGE))
            .map_or(DEFAULT_FRAGMENT_SIZE, |n| n as u16);
        let cookie_threshold = raw
            .cookie_threshold
            .as_ref()
            .and_then(|v| self.int("gateway.cookie_threshold", v, COOKIE_THRESHOLD_RANGE))
            .map_or(DEFAULT_COOKIE_THRESHOLD, |n| n as u32);
        let half_open_per_source = raw
            .half_open_per_source
            .as_ref()
            .and_then(|v| {
                self.int(
                    "gateway.half_open_per_source",
                    v,
                    HALF_OPEN_PER_SOURCE_RANGE,
                )
            })
            .map_or(DEFAULT_HALF_OPEN_PER_SOURCE, |n| n as u32);
        let member_id = raw
            .member_id
            .as_ref()
            .and_then(|v| self.int("gateway.member_id", v, MEMBER_ID_RANGE))
            .map_or(0, |n| n as u16);
        GatewaySection {
            name,
            member_id,
            status_socket,
            ike_port,
            nat_t_port,
            retransmit_timeout,
            retransmit_tries,
            nat_keepalive,
            fragmentation,
            fragment_size,
            cookie_threshold,
            half_open_per_source,
        }
    }

    pub(super) fn tunnel(&mut self, sec: &Section<RawTunnel>) -> TunnelSection {
        let raw = &sec.value;
        let device = self.device_name("tunnel.device", &raw.device, DEFAULT_DEVICE);
        let mtu = raw
            .mtu
            .as_ref()
            .and_then(|v| self.int("tunnel.mtu", v, MTU_RANGE))
            .map_or(DEFAULT_MTU, |n| n as u16);
        let offload = raw.offload.as_ref().is_none_or(|b| *b.get_ref());
        let crypto_threads = raw
            .crypto_threads
            .as_ref()
            .and_then(|v| self.int("tunnel.crypto_threads", v, CRYPTO_THREADS_RANGE))
            .map_or(0, |n| n as u16);
        TunnelSection {
            device,
            mtu,
            offload,
            crypto_threads,
        }
    }

    pub(super) fn local(&mut self, sec: &Section<RawLocal>) -> LocalSection {
        self.missing_section(
            sec.present,
            "local",
            "[local] with domain = [\"10.1.0.0/24\"]",
        );
        let domain = match &sec.value.domain {
            Some(list) => self.prefixes("local.domain", list),
            None => {
                self.missing(
                    sec,
                    "local",
                    "domain",
                    "a list of prefixes, e.g. [\"10.1.0.0/24\"]",
                );
                Vec::new()
            }
        };
        LocalSection {
            domain: domain.into_iter().map(|(n, _)| n).collect(),
        }
    }
}
