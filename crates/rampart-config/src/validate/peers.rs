//! `[[peer]]` (addresses, identities, PSK, proposals, templates, remote domains) and
//! `[[entry_point_group]]`.

use super::*;

impl Validator<'_, '_> {
    /// The peers, and every remote-domain prefix with its span and owning peer index.
    pub(super) fn peers(
        &mut self,
        doc: &RawDocument,
        local: &LocalSection,
    ) -> (Vec<PeerPolicy>, Vec<DomainEntry>) {
        if doc.peers.is_empty() && !doc.peers_reported && !doc.remote_access.present {
            self.error(
                ErrorKind::Missing,
                doc.peers_span.clone(),
                "peer",
                "no [[peer]] table",
                "at least one [[peer]], or a [remote_access] table".to_string(),
            );
        }
        let mut peers = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut remote_ids: Vec<(Identity, usize)> = Vec::new();
        let mut domains: Vec<DomainEntry> = Vec::new();
        for (i, sec) in doc.peers.iter().enumerate() {
            let path = format!("peer[{i}]");
            let peer = self.peer(&path, sec, local, &mut domains, i, false);
            if let Some(n) = &sec.value.name {
                if let Some(first) = names.get(n.get_ref()) {
                    self.error(
                        ErrorKind::Duplicate,
                        span(n),
                        format!("{path}.name"),
                        format!(
                            "duplicate peer name \"{}\" (also peer[{first}])",
                            n.get_ref()
                        ),
                        "a name used by no other peer".to_string(),
                    );
                } else {
                    names.insert(n.get_ref().clone(), i);
                }
            }
            if let Some((_, first)) = remote_ids.iter().find(|(id, _)| *id == peer.remote_id) {
                let (key, sp) = match &sec.value.remote_id {
                    Some(r) => ("remote_id", span(r)),
                    None => (
                        "remote_address",
                        sec.value.remote_address.as_ref().and_then(span),
                    ),
                };
                self.error(
                    ErrorKind::Duplicate,
                    sp,
                    format!("{path}.{key}"),
                    format!(
                        "remote identity {} is also the remote identity of peer[{first}]",
                        show_identity(&peer.remote_id)
                    ),
                    "a remote identity (remote_id, default remote_address) used by no other peer"
                        .to_string(),
                );
            } else if sec.value.remote_address.is_some() {
                remote_ids.push((peer.remote_id.clone(), i));
            }
            peers.push(peer);
        }
        (peers, domains)
    }

    /// `[[entry_point_group]]`: a name and the names of existing peers, each peer in at most
    /// one group.
    pub(super) fn entry_point_groups(
        &mut self,
        doc: &RawDocument,
        peers: &[PeerPolicy],
    ) -> Vec<EntryPointGroup> {
        let mut groups: Vec<EntryPointGroup> = Vec::new();
        // Peer name -> index of the group that took it.
        let mut member_of: HashMap<String, usize> = HashMap::new();
        for (i, sec) in doc.entry_point_groups.iter().enumerate() {
            let path = format!("entry_point_group[{i}]");
            let raw = &sec.value;
            let name = match &raw.name {
                Some(n) => {
                    let name = self.name(&format!("{path}.name"), n);
                    if let Some(first) = name
                        .as_ref()
                        .and_then(|name| groups.iter().position(|g| g.name == *name))
                    {
                        self.error(
                            ErrorKind::Duplicate,
                            span(n),
                            format!("{path}.name"),
                            format!(
                                "duplicate group name \"{}\" (also entry_point_group[{first}])",
                                n.get_ref()
                            ),
                            "a name used by no other entry_point_group".to_string(),
                        );
                    }
                    name.unwrap_or_default()
                }
                None => {
                    self.missing(sec, &path, "name", NAME_RULE);
                    String::new()
                }
            };
            let mut members = Vec::new();
            match &raw.peers {
                None => self.missing(sec, &path, "peers", "a list of peer names, e.g. [\"gw-b\"]"),
                Some(list) => {
                    if list.get_ref().len() < 2 {
                        self.error(
                            ErrorKind::OutOfRange,
                            span(list),
                            format!("{path}.peers"),
                            format!("{} peer(s) in a group", list.get_ref().len()),
                            "at least two peer names".to_string(),
                        );
                    }
                    for (j, p) in list.get_ref().iter().enumerate() {
                        let key = format!("{path}.peers[{j}]");
                        let peer = p.get_ref();
                        let template = peers.iter().any(|pc| pc.name == *peer && pc.is_template());
                        if template {
                            self.error(
                                ErrorKind::Conflict,
                                span(p),
                                key,
                                format!(
                                    "peer \"{peer}\" is a template (remote_address = \"any\"), \
                                     which cannot be an entry point"
                                ),
                                "peers with a remote address".to_string(),
                            );
                        } else if !peers.iter().any(|pc| pc.name == *peer) {
                            let known: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
                            self.error(
                                ErrorKind::InvalidValue,
                                span(p),
                                key,
                                format!("unknown peer \"{peer}\""),
                                format!("names of [[peer]] tables: {}", known.join(", ")),
                            );
                        } else if let Some(g) = member_of.get(peer) {
                            let other = if *g == i {
                                "this group already".to_string()
                            } else {
                                format!("entry_point_group[{g}] already")
                            };
                            self.error(
                                ErrorKind::Duplicate,
                                span(p),
                                key,
                                format!("peer \"{peer}\" is in {other}"),
                                "each peer in at most one entry_point_group".to_string(),
                            );
                        } else {
                            member_of.insert(peer.clone(), i);
                            members.push(peer.clone());
                        }
                    }
                }
            }
            groups.push(EntryPointGroup {
                name,
                peers: members,
                method: Method::FirstToRespond,
                tie_break: TieBreak::FirstToRespond,
                domain: Vec::new(),
                tracking: false,
                preconnect: false,
                rules: Vec::new(),
            });
        }
        groups
    }

    pub(super) fn address(
        &mut self,
        sec: &Section<RawPeer>,
        path: &str,
        key: &str,
        v: &Option<Spanned<String>>,
    ) -> Option<IpAddr> {
        let any = if key == "remote_address" {
            ", or \"any\" (a template)"
        } else {
            ""
        };
        let Some(v) = v else {
            self.missing(sec, path, key, &format!("an IPv4 or IPv6 address{any}"));
            return None;
        };
        let s = v.get_ref().trim();
        match s.parse::<IpAddr>() {
            Ok(a) if a.is_unspecified() || a.is_multicast() => {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    format!("{path}.{key}"),
                    format!("{a} is not a unicast address"),
                    "a unicast IPv4 or IPv6 address".to_string(),
                );
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    format!("{path}.{key}"),
                    format!("invalid IP address \"{s}\""),
                    format!("an IPv4 or IPv6 address{any}"),
                );
                None
            }
        }
    }

    pub(super) fn identity(&mut self, key: &str, v: &Spanned<String>) -> Option<Identity> {
        let s = v.get_ref().trim();
        if let Some(dn) = s.strip_prefix("dn:") {
            return match rampart_pki::parse_dn(dn) {
                Ok(der) => Some(Identity::Dn(der)),
                Err(e) => {
                    self.error(
                        ErrorKind::InvalidValue,
                        span(v),
                        key,
                        format!("invalid identity \"{s}\": {e}"),
                        "dn:KEY=value, ... with keys C, ST, L, O, OU, CN, SN, E, DC".to_string(),
                    );
                    None
                }
            };
        }
        if let Some(mail) = s.strip_prefix("email:") {
            if mail.contains('@') && !mail.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Some(Identity::Email(mail.to_string()));
            }
            self.error(
                ErrorKind::InvalidValue,
                span(v),
                key,
                format!("invalid identity \"{s}\""),
                "email:user@domain".to_string(),
            );
            return None;
        }
        let s = s
            .strip_prefix("fqdn:")
            .map(|f| f.strip_prefix('@').unwrap_or(f))
            .map(|f| format!("@{f}"))
            .unwrap_or_else(|| s.strip_prefix("ip:").unwrap_or(s).to_string());
        let s = s.as_str();
        let id = if let Some(fqdn) = s.strip_prefix('@') {
            Identity::Fqdn(fqdn.to_string())
        } else if let Ok(a) = s.parse::<IpAddr>() {
            Identity::Ip(a)
        } else {
            Identity::Fqdn(s.to_string())
        };
        match &id {
            Identity::Fqdn(f)
                if f.is_empty() || f.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                self.error(
                    ErrorKind::InvalidValue,
                    span(v),
                    key,
                    format!("invalid identity \"{s}\""),
                    "an IP address, a host name such as vpn.example.com (optionally @-prefixed), email:user@domain or dn:CN=..."
                        .to_string(),
                );
                None
            }
            _ => Some(id),
        }
    }

    pub(super) fn psk(&mut self, sec: &Section<RawPeer>, path: &str) -> Vec<u8> {
        let raw = &sec.value;
        let too_short = |this: &mut Self, key: &str, sp, len: usize| {
            this.error(
                ErrorKind::OutOfRange,
                sp,
                join(path, key),
                format!("the pre-shared key is {len} bytes long"),
                format!("at least {MIN_PSK_LEN} bytes"),
            );
        };
        match (&raw.psk, &raw.psk_file) {
            (Some(_), Some(file)) => {
                self.error(
                    ErrorKind::Conflict,
                    span(file),
                    join(path, "psk_file"),
                    "both psk and psk_file are set",
                    "exactly one of psk and psk_file".to_string(),
                );
                Vec::new()
            }
            (None, None) => {
                if sec.present && !sec.reported("psk") && !sec.reported("psk_file") {
                    self.error(
                        ErrorKind::Missing,
                        sec.span.clone(),
                        join(path, "psk"),
                        "missing pre-shared key",
                        "exactly one of psk = \"...\" and psk_file = \"path\"".to_string(),
                    );
                }
                Vec::new()
            }
            (Some(psk), None) => {
                let bytes = psk.get_ref().as_bytes().to_vec();
                if bytes.len() < MIN_PSK_LEN {
                    too_short(self, "psk", span(psk), bytes.len());
                }
                bytes
            }
            (None, Some(file)) => {
                let path_buf = self.base_dir.join(file.get_ref());
                match std::fs::read(&path_buf) {
                    Ok(bytes) => {
                        let bytes = bytes.trim_ascii().to_vec();
                        if bytes.len() < MIN_PSK_LEN {
                            too_short(self, "psk_file", span(file), bytes.len());
                        }
                        bytes
                    }
                    Err(e) => {
                        self.error(
                            ErrorKind::Io,
                            span(file),
                            join(path, "psk_file"),
                            format!("cannot read {}: {e}", path_buf.display()),
                            "a readable file (relative paths start at the config file's directory)"
                                .to_string(),
                        );
                        Vec::new()
                    }
                }
            }
        }
    }

    pub(super) fn proposal_list<T>(
        &mut self,
        key: &str,
        list: &StrList,
        defaults: &[&str],
        form: &str,
        parse: impl Fn(&str) -> Result<T, crate::proposal::ProposalError>,
    ) -> Vec<(T, Option<Range<usize>>)> {
        let Some(list) = list else {
            return defaults
                .iter()
                .map(|s| (parse(s).expect("default proposals parse"), None))
                .collect();
        };
        if list.get_ref().is_empty() {
            self.error(
                ErrorKind::OutOfRange,
                span(list),
                key,
                "empty list",
                format!("at least one proposal: {form}"),
            );
        }
        let mut out = Vec::new();
        for (i, item) in list.get_ref().iter().enumerate() {
            match parse(item.get_ref().trim()) {
                Ok(p) => out.push((p, span(item))),
                Err(e) => self.error(
                    ErrorKind::InvalidValue,
                    span(item),
                    format!("{key}[{i}]"),
                    e.message,
                    e.allowed,
                ),
            }
        }
        out
    }

    pub(super) fn peer(
        &mut self,
        path: &str,
        sec: &Section<RawPeer>,
        local: &LocalSection,
        domains: &mut Vec<DomainEntry>,
        index: usize,
        remote_access: bool,
    ) -> PeerPolicy {
        let raw = &sec.value;
        let k = |key: &str| format!("{path}.{key}");
        let name = match &raw.name {
            Some(n) => self.name(&k("name"), n).unwrap_or_default(),
            None if remote_access => DEFAULT_RA_NAME.to_string(),
            None => {
                self.missing(sec, path, "name", NAME_RULE);
                String::new()
            }
        };
        let local_address = self.address(sec, path, "local_address", &raw.local_address);
        let template = remote_access
            || raw
                .remote_address
                .as_ref()
                .is_some_and(|v| v.get_ref().trim() == "any");
        let remote_address = if template {
            None
        } else {
            self.address(sec, path, "remote_address", &raw.remote_address)
        };
        if let (Some(l), Some(r)) = (local_address, remote_address) {
            if l.is_ipv4() != r.is_ipv4() {
                self.error(
                    ErrorKind::Conflict,
                    raw.remote_address.as_ref().and_then(span),
                    k("remote_address"),
                    format!("{r} and local_address {l} are of different address families"),
                    "addresses of the same family (both IPv4 or both IPv6)".to_string(),
                );
            }
        }
        let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let local_address = local_address.unwrap_or(unspecified);
        let remote_ip = remote_address.unwrap_or(unspecified);
        let remote_address = if template {
            RemoteAddress::Any
        } else {
            RemoteAddress::Ip(remote_ip)
        };
        let local_id = match &raw.local_id {
            Some(v) => self.identity(&k("local_id"), v),
            None => None,
        }
        .unwrap_or(Identity::Ip(local_address));
        if template && !remote_access && raw.remote_id.is_none() {
            self.missing(
                sec,
                path,
                "remote_id",
                "with remote_address = \"any\" (a template), the identity that selects this \
                 peer: an address, a host name, email:... or dn:...",
            );
        }
        let remote_id = match &raw.remote_id {
            Some(v) if remote_access && v.get_ref().trim() == ANY_ID => Some(any_identity()),
            Some(v) => self.identity(&k("remote_id"), v),
            None if remote_access => Some(any_identity()),
            None => None,
        }
        .unwrap_or(Identity::Ip(remote_ip));
        let auth = self.auth(sec, path);
        let wants_cert = raw.auth.as_ref().is_some_and(|v| v.get_ref() == "cert");
        let psk = if matches!(auth, PeerAuth::Psk) && !wants_cert {
            self.psk(sec, path)
        } else {
            Vec::new()
        };

        let remote_domain = match &raw.remote_domain {
            Some(list) => self.prefixes(&k("remote_domain"), list),
            // Set from the pool by the caller.
            None if remote_access => Vec::new(),
            None => {
                self.missing(
                    sec,
                    path,
                    "remote_domain",
                    "a list of prefixes, e.g. [\"10.2.0.0/24\"]",
                );
                Vec::new()
            }
        };
        for (j, (net, sp)) in remote_domain.iter().enumerate() {
            let key = format!("{path}.remote_domain[{j}]");
            if let Some(l) = local.domain.iter().find(|l| overlaps(l, net)) {
                self.error(
                    ErrorKind::Conflict,
                    Some(sp.clone()),
                    key,
                    format!("{net} overlaps the local domain prefix {l}"),
                    "prefixes outside local.domain".to_string(),
                );
            } else {
                domains.push((*net, sp.clone(), index, j));
            }
        }

        let ike_proposals = self
            .proposal_list(
                &k("ike_proposals"),
                &raw.ike_proposals,
                DEFAULT_IKE_PROPOSALS,
                IKE_FORM,
                parse_ike,
            )
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let esp = self.proposal_list(
            &k("esp_proposals"),
            &raw.esp_proposals,
            DEFAULT_ESP_PROPOSALS,
            ESP_FORM,
            parse_esp,
        );
        let esn = self.esn(path, raw, &esp);
        let esp_proposals = esp.into_iter().map(|((p, _), _)| p).collect();

        let start_action = raw
            .start_action
            .as_ref()
            .and_then(|v| {
                self.keyword(
                    &k("start_action"),
                    v,
                    &[
                        ("none", StartAction::None),
                        ("on-traffic", StartAction::OnTraffic),
                        ("always", StartAction::Always),
                    ],
                )
            })
            .unwrap_or(if template {
                StartAction::None
            } else {
                StartAction::Always
            });
        if template && start_action != StartAction::None {
            self.error(
                ErrorKind::Conflict,
                raw.start_action.as_ref().and_then(span),
                k("start_action"),
                "a template (remote_address = \"any\") cannot initiate",
                "none (the default for templates)".to_string(),
            );
        }
        let encapsulation = raw
            .encapsulation
            .as_ref()
            .and_then(|v| {
                self.keyword(
                    &k("encapsulation"),
                    v,
                    &[
                        ("auto", Encapsulation::Auto),
                        ("force", Encapsulation::Force),
                    ],
                )
            })
            .unwrap_or(Encapsulation::Auto);
        let ike_lifetime = raw
            .ike_lifetime
            .as_ref()
            .and_then(|v| self.duration(&k("ike_lifetime"), v, IKE_LIFETIME_RANGE, false))
            .unwrap_or(DEFAULT_IKE_LIFETIME);
        let child_lifetime = raw
            .child_lifetime
            .as_ref()
            .and_then(|v| self.duration(&k("child_lifetime"), v, CHILD_LIFETIME_RANGE, false))
            .unwrap_or(DEFAULT_CHILD_LIFETIME);
        let child_lifetime_bytes = raw
            .child_lifetime_bytes
            .as_ref()
            .and_then(|v| self.size(&k("child_lifetime_bytes"), v, MIN_CHILD_LIFETIME_BYTES));
        let liveness_interval = raw
            .liveness_interval
            .as_ref()
            .and_then(|v| self.duration(&k("liveness_interval"), v, LIVENESS_RANGE, true))
            .unwrap_or(DEFAULT_LIVENESS);
        // MOBIKE: on by default for the remote-access template (clients roam), off for site to
        // site peers (their addresses are fixed).
        let mobike = raw.mobike.as_ref().map_or(remote_access, |b| *b.get_ref());
        let replay_window = raw
            .replay_window
            .as_ref()
            .and_then(|v| self.int(&k("replay_window"), v, REPLAY_WINDOW_RANGE))
            .map_or(DEFAULT_REPLAY_WINDOW, |n| n as u32);

        PeerPolicy {
            name,
            local_address,
            remote_address,
            local_id,
            remote_id,
            psk: psk.into(),
            remote_domain: remote_domain.into_iter().map(|(n, _)| n).collect(),
            ike_proposals,
            esp_proposals,
            esn,
            start_action,
            ike_lifetime,
            child_lifetime,
            child_lifetime_bytes,
            liveness_interval,
            encapsulation,
            replay_window,
            auth,
            remote_access: rampart_ike::RemoteAccess::None,
            mobike,
        }
    }

    /// ESN is per peer: `esn = true`, or `-esn` on every ESP proposal. A `-esn` on only some
    /// proposals, or together with an explicit `esn = false`, is a conflict.
    pub(super) fn esn(&mut self, path: &str, raw: &RawPeer, esp: &[ParsedEsp]) -> bool {
        let with = esp.iter().filter(|((_, e), _)| *e).count();
        let all = !esp.is_empty() && with == esp.len();
        if with > 0 && !all {
            let (idx, (_, sp)) = esp
                .iter()
                .enumerate()
                .find(|(_, ((_, e), _))| !*e)
                .expect("some proposal lacks -esn");
            self.error(
                ErrorKind::Conflict,
                sp.clone(),
                join(path, &format!("esp_proposals[{idx}]")),
                "-esn is on some ESP proposals but not on this one (ESN is negotiated per peer)",
                "-esn on every ESP proposal or on none; or esn = true".to_string(),
            );
        }
        match &raw.esn {
            Some(flag) if !*flag.get_ref() && with > 0 => {
                self.error(
                    ErrorKind::Conflict,
                    span(flag),
                    join(path, "esn"),
                    "esn = false, but ESP proposals end in -esn",
                    "esn = true, or no -esn suffix".to_string(),
                );
                false
            }
            Some(flag) => *flag.get_ref() || all,
            None => all,
        }
    }
}
