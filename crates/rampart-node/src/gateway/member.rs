//! The gateway as a cluster member: the `Node` calls of a cluster, the records the active
//! member sends, the ones a standby applies, takeover and demotion.
//!
//! After every input the gateway runs [`Gateway::cluster_pump`]: an active member turns the
//! connection changes, the IKE SAs that changed and (every `esp_sync_interval`) the tunnels'
//! counters into records; a standby applies the records it received; both act on the engine's
//! events and send its datagrams.

use std::time::Instant;

use rampart_cluster::{ClusterEvent, DeltaRecord, FullSyncEncoder, FullSyncFrame, RecordKind};
use rampart_config::StartAction;
use rampart_ike::{IkeSaId, IkeSaStateKind, PeerId};
use rampart_inspect::{Change, CLOCK_BASE_MS};

use super::{peer_policies, Gateway};
use crate::cluster::{codec, sync_rule, ClusterMember, Incoming, NO_CLUSTER};
use crate::{
    ClusterCommand, ClusterStatus, FullSyncProgress, LogEvent, LogLevel, LogRecord, Output,
    SyncStats,
};

impl Gateway {
    fn log(&mut self, level: LogLevel, message: String) {
        self.outputs
            .push_back(Output::Log(LogRecord::new(level, LogEvent::Other, message)));
    }

    /// Runs the cluster after an input (see the module documentation). Cheap when nothing
    /// happened.
    pub(crate) fn cluster_pump(&mut self, now: Instant) {
        self.cluster_round(now);
        if self.cluster.as_ref().is_some_and(|c| c.ls.is_some()) {
            self.ls_rounds(now);
        }
    }

    /// One round of [`Self::cluster_pump`]: records out, events, records in, datagrams out.
    pub(super) fn cluster_round(&mut self, now: Instant) {
        let Some(mut c) = self.cluster.take() else {
            return;
        };
        // Load Sharing: every member applies every other member's stream.
        let applies_always = c.ls.is_some();
        for _ in 0..8 {
            if c.active {
                self.push_changes(now, &mut c);
            }
            let mut acted = false;
            while let Some(event) = c.engine.poll_event() {
                acted = true;
                self.cluster_event(now, &mut c, event);
            }
            while let Some(record) = c.engine.poll_record() {
                if !c.active || applies_always {
                    self.apply_record(now, &mut c, record);
                }
            }
            if applies_always {
                self.ls_role(now, &mut c);
            }
            if !acted {
                break;
            }
        }
        while let Some(t) = c.engine.poll_transmit() {
            // From this member's address on the datagram's sync link (the shell binds one
            // socket per address); the engine names only configured links.
            let Some(&local) = c.sync_links.get(usize::from(t.link)) else {
                continue;
            };
            self.outputs.push_back(Output::SendUdp {
                local,
                remote: t.remote,
                data: t.data,
            });
        }
        self.cluster = Some(c);
    }

    /// Active: connection changes, changed SAs and due ESP counters into records.
    fn push_changes(&mut self, now: Instant, c: &mut ClusterMember) {
        let seq_before = c.engine.next_seq();
        let mut body = Vec::new();
        // Load Sharing: `sync_after` connections whose first packet at their age is held
        // now: their record goes before the hold (whatever the timer says).
        let sync_now =
            c.ls.as_mut()
                .map(|ls| std::mem::take(&mut ls.sync_now))
                .unwrap_or_default();
        for id in sync_now {
            let Some(due) = c.ls.as_mut().and_then(|ls| ls.delayed_due.remove(&id)) else {
                continue;
            };
            let Some((side, orig)) = c.delayed.remove(&(due, id)) else {
                continue;
            };
            if !c.unsynced.remove(&id) {
                continue;
            }
            if let Some(conn) = self.dataplane.inspector().lookup(now, id, side, &orig) {
                body.clear();
                codec::encode_conn(&conn, &mut body);
                c.engine.push_record(now, RecordKind::ConnUpsert, id, &body);
            }
        }
        // Connections whose sync_after has passed and that still exist.
        while let Some((&(due, id), _)) = c.delayed.first_key_value() {
            if due > now {
                break;
            }
            let (side, orig) = c.delayed.remove(&(due, id)).expect("first key");
            if let Some(ls) = c.ls.as_mut() {
                ls.delayed_due.remove(&id);
            }
            if !c.unsynced.remove(&id) {
                continue;
            }
            if let Some(conn) = self.dataplane.inspector().lookup(now, id, side, &orig) {
                body.clear();
                codec::encode_conn(&conn, &mut body);
                c.engine.push_record(now, RecordKind::ConnUpsert, id, &body);
                // Idle at its due time: the timer pushed it; its first packet within
                // `hold_timeout` is still held until the others have it.
                if let Some(ls) = c.ls.as_mut().filter(|ls| ls.config.holds()) {
                    ls.synced_watch.insert(id, now);
                    ls.watch_order.push_back((now, id));
                }
            }
        }
        let inspector = self.dataplane.inspector_mut();
        while let Some(change) = inspector.poll_change() {
            match &change {
                Change::Created(conn) => {
                    let (sync, after_ms) = sync_rule(inspector, conn);
                    if !sync {
                        c.unsynced.insert(conn.id);
                        continue;
                    }
                    let age = CLOCK_BASE_MS.saturating_sub(conn.created_ms);
                    if age < after_ms {
                        c.unsynced.insert(conn.id);
                        let due = now + std::time::Duration::from_millis(after_ms - age);
                        c.delayed
                            .insert((due, conn.id), (conn.init_side, conn.orig));
                        if let Some(ls) = c.ls.as_mut().filter(|ls| ls.config.holds()) {
                            ls.delayed_due.insert(conn.id, due);
                        }
                        continue;
                    }
                }
                Change::Updated { id, .. } if c.unsynced.contains(id) => continue,
                Change::Deleted { id, .. } if c.unsynced.remove(id) => {
                    if let Some(ls) = c.ls.as_mut() {
                        ls.delayed_due.remove(id);
                    }
                    continue;
                }
                // Load Sharing: a member syncs the end of the connections it created; its
                // copy of another member's connection expires here alone (the creator, or
                // an update request, has the live one).
                Change::Deleted { id, .. }
                    if c.ls.as_ref().is_some_and(|ls| id >> 48 != u64::from(ls.me)) =>
                {
                    continue
                }
                _ => {}
            }
            c.pending.push(now, change);
            if c.pending.due(now) {
                Self::flush_pending(now, c);
            }
        }
        if c.pending.due(now) {
            Self::flush_pending(now, c);
        }
        // Load Sharing: the connection changes leave now rather than after the batching
        // delay, so the member that sees the connection's next packet (the asymmetric return
        // path) already has its state; one datagram per input that changed a connection.
        if c.ls.is_some() && c.engine.next_seq() != seq_before {
            c.engine.flush(now);
        }
        if inspector.changes_overflowed() {
            self.log(
                LogLevel::Warn,
                "cluster: connection changes overflowed before they were synced; standby members may miss some".into(),
            );
        }
        while let Some((id, state)) = self.ike.poll_changed_sa() {
            match state {
                Some(IkeSaStateKind::Established) => {
                    // Not exportable while our own CREATE_CHILD_SA is in flight: it changes
                    // again when that exchange completes.
                    if let Some(snap) = self.export_sa(now, id) {
                        c.engine.push_record(
                            now,
                            RecordKind::SaUpsert,
                            id.0,
                            &codec::encode_sa(&snap),
                        );
                        c.synced_sas.insert(id);
                    }
                }
                Some(IkeSaStateKind::Connecting) => {}
                None | Some(IkeSaStateKind::Rekeyed | IkeSaStateKind::Deleting) => {
                    if c.synced_sas.remove(&id) {
                        c.engine.push_record(now, RecordKind::SaDelete, id.0, &[]);
                    }
                }
            }
        }
        if now >= c.next_esp_sync {
            c.next_esp_sync = now + c.esp_interval();
            for child in self.dataplane.tunnel_ids() {
                let Some((out, inb)) = self.dataplane.tunnel_esp_state(child) else {
                    continue;
                };
                let mark = (out.next_sequence, inb.highest);
                if c.esp_sent.get(&child) == Some(&mark) {
                    continue;
                }
                c.esp_sent.insert(child, mark);
                c.engine.push_record(
                    now,
                    RecordKind::EspCounters,
                    child.0,
                    &codec::encode_esp(&out, &inb),
                );
            }
            let live: std::collections::HashSet<_> =
                self.dataplane.tunnel_ids().into_iter().collect();
            c.esp_sent.retain(|k, _| live.contains(k));
        }
    }

    /// Active: the connection changes in their hold window into records now.
    pub(super) fn flush_pending(now: Instant, c: &mut ClusterMember) {
        let mut body = Vec::new();
        for change in c.pending.drain(now) {
            body.clear();
            let (kind, key) = codec::encode_change(&change, &mut body);
            c.engine.push_record(now, kind, key, &body);
        }
    }

    /// Active: the changes in the hold window into records now (before a full-sync export
    /// or a switchover names the sequence number it covers). `cluster_pump` has drained the
    /// inspector after every input, so nothing else waits.
    fn settle_changes(&mut self, now: Instant) {
        if let Some(c) = self.cluster.as_mut().filter(|c| c.active) {
            Self::flush_pending(now, c);
        }
    }

    /// Standby: one record of the active member's stream or full sync.
    fn apply_record(&mut self, now: Instant, c: &mut ClusterMember, r: DeltaRecord) {
        let result = match r.kind {
            RecordKind::ConnUpsert | RecordKind::ConnDelete => {
                codec::decode_change(r.kind, r.key, &r.body).map(|change| {
                    // An update or delete of a connection this member never saw (e.g. created
                    // before a resync) is harmless to skip.
                    let _ = self.dataplane.apply_connection(now, change);
                })
            }
            RecordKind::SaUpsert => codec::decode_sa(&r.body).map(|s| match c.ls.is_some() {
                // Load Sharing: the sender owns it (it negotiated or adopted it); its
                // client's address is reserved here.
                true => {
                    self.replica_stored(&s, r.from);
                    c.replicas.upsert_owned(now, s, r.from)
                }
                false => c.replicas.upsert(now, s),
            }),
            RecordKind::SaDelete => {
                c.replicas.remove(IkeSaId(r.key));
                self.release_replica_lease(IkeSaId(r.key));
                Ok(())
            }
            RecordKind::EspCounters => codec::decode_esp(&r.body)
                .map(|(o, i)| c.replicas.esp(rampart_ike::ChildSaId(r.key), o, i)),
            RecordKind::IkeMessageIds | RecordKind::NatAllocation => Ok(()),
        };
        if let Err(e) = result {
            self.log(
                LogLevel::Warn,
                format!("cluster: record {} of key {:#x} ignored: {e}", r.seq, r.key),
            );
        }
    }

    /// Load Sharing full sync: an SA of the snapshot, with its owner. One this member owned
    /// before it restarted is another member's by now (adopted) and is not in the snapshot
    /// under this member; one named as this member's is skipped (nothing here continues it).
    fn apply_owned_sa(&mut self, now: Instant, c: &mut ClusterMember, key: u64, body: &[u8]) {
        let me = c.ls.as_ref().map_or(0, |ls| ls.me);
        match codec::decode_owned_sa(body) {
            Ok((owner, snap)) if owner != me => {
                self.replica_stored(&snap, owner);
                c.replicas.upsert_owned(now, snap, owner)
            }
            Ok(_) => {}
            Err(e) => self.log(
                LogLevel::Warn,
                format!("cluster: full-sync SA {key:#x} ignored: {e}"),
            ),
        }
    }

    fn cluster_event(&mut self, now: Instant, c: &mut ClusterMember, event: ClusterEvent) {
        match event {
            ClusterEvent::BecameActive { .. } if c.ls.is_some() => self.ls_pivot(now, c, true),
            ClusterEvent::BecameStandby { .. } if c.ls.is_some() => self.ls_pivot(now, c, false),
            ClusterEvent::BecameActive { reason } => self.take_over(now, c, &reason),
            ClusterEvent::BecameStandby { reason } => self.demote(now, c, &reason),
            ClusterEvent::FullSyncNeeded { member, address } => {
                c.incoming.remove(&member);
                self.log(
                    LogLevel::Info,
                    format!("cluster: pulling a full sync from member {member} at {address}"),
                );
                self.outputs
                    .push_back(Output::FullSyncConnect { member, address });
            }
            ClusterEvent::ReannounceAddresses { reason } => {
                // Load Sharing: the pivot owns them in unicast; in routed distribution they
                // are not announced on the link at all.
                let owns = match c.ls.as_ref() {
                    Some(ls) => ls.pivot && !ls.routed(),
                    None => c.active,
                };
                if owns {
                    self.log(
                        LogLevel::Warn,
                        format!("cluster: re-announcing the virtual addresses ({reason})"),
                    );
                    for v in c.config().virtual_addresses.clone() {
                        self.outputs.push_back(Output::ClaimAddress {
                            interface: v.interface,
                            addr: v.address,
                        });
                    }
                }
            }
            ClusterEvent::MemberUp { member } => {
                self.log(LogLevel::Info, format!("cluster: member {member} is up"))
            }
            ClusterEvent::MemberDown { member } => {
                self.log(LogLevel::Warn, format!("cluster: member {member} is down"));
                self.ls_adopt(now, c, member);
            }
            ClusterEvent::Log { message } => {
                self.log(LogLevel::Warn, format!("cluster: {message}"))
            }
        }
    }

    /// This member becomes active: continue every replicated SA and connection, claim the
    /// virtual addresses, then bring up the peers that have no SA.
    fn take_over(&mut self, now: Instant, c: &mut ClusterMember, reason: &str) {
        if c.active {
            return;
        }
        c.active = true;
        c.takeovers += 1;
        c.pending.clear();
        self.ike.set_passive(false);
        let inspector = self.dataplane.inspector_mut();
        inspector.set_frozen(false);
        let connections = inspector.refresh_all(now);
        while inspector.poll_change().is_some() {}
        let margin = c.config().takeover_margin;
        let mut imported = 0;
        for snap in c.replicas.take_all(now) {
            let id = snap.ike.id;
            match self.import_sa(now, snap, margin) {
                Ok(_) => imported += 1,
                Err(e) => self.log(
                    LogLevel::Warn,
                    format!("cluster: takeover of IKE SA {:#x} failed: {e}", id.0),
                ),
            }
        }
        for v in c.config().virtual_addresses.clone() {
            self.outputs.push_back(Output::ClaimAddress {
                interface: v.interface,
                addr: v.address,
            });
        }
        let always: Vec<PeerId> = peer_policies(&self.ike)
            .filter(|(_, p)| p.start_action == StartAction::Always)
            .map(|(id, _)| id)
            .collect();
        for id in always {
            self.ike.initiate(now, id);
        }
        let (dataplane, mut control) = self.parts(now);
        dataplane.sync(now, &mut control);
        c.esp_sent.clear();
        c.next_esp_sync = now;
        self.log(
            LogLevel::Warn,
            format!("cluster: this member is now active ({reason}): {imported} IKE SAs and {connections} connections taken over"),
        );
    }

    /// This member becomes standby: release the virtual addresses and keep its SAs as
    /// replicas, removed from IKE and the data plane without telling the peers.
    fn demote(&mut self, now: Instant, c: &mut ClusterMember, reason: &str) {
        for v in c.config().virtual_addresses.clone() {
            self.outputs.push_back(Output::ReleaseAddress {
                interface: v.interface,
                addr: v.address,
            });
        }
        if !c.active {
            return;
        }
        // Changes in the hold window are still sent, the window cut short.
        Self::flush_pending(now, c);
        c.active = false;
        let mut kept = 0;
        for snap in self.export_all(now) {
            c.replicas.upsert(now, snap);
            kept += 1;
        }
        for id in self.ike.sa_ids() {
            self.ike.forget_sa(id);
        }
        self.ike.set_passive(true);
        let (dataplane, mut control) = self.parts(now);
        dataplane.sync(now, &mut control);
        let inspector = self.dataplane.inspector_mut();
        inspector.set_frozen(true);
        while inspector.poll_change().is_some() {}
        while self.ike.poll_changed_sa().is_some() {}
        c.synced_sas.clear();
        c.unsynced.clear();
        c.delayed.clear();
        if let Some(ls) = c.ls.as_mut() {
            ls.delayed_due.clear();
            ls.synced_watch.clear();
        }
        c.esp_sent.clear();
        self.log(
            LogLevel::Warn,
            format!(
                "cluster: this member is now standby ({reason}): {kept} IKE SAs kept as replicas"
            ),
        );
    }

    /// Link state of an interface; only monitored interfaces of a cluster matter.
    pub fn handle_link_state(&mut self, now: Instant, interface: &str, up: bool) {
        if self.cluster.is_some() {
            if !up {
                // Load Sharing: this member may leave the members up now.
                self.ls_final_counters(now);
            }
            let c = self.cluster.as_mut().expect("checked");
            c.engine.set_interface_state(now, interface, up);
            self.cluster_pump(now);
        }
    }

    /// The local interface of sync link `link` (0: the sync address, then
    /// `extra_addresses` in order) lost or regained carrier: the delta stream moves off a link
    /// without carrier at once. Ignored without a cluster.
    pub fn handle_sync_link_state(&mut self, now: Instant, link: u8, up: bool) {
        if let Some(c) = self.cluster.as_mut() {
            c.engine.set_link_carrier(now, link, up);
            self.cluster_pump(now);
        }
    }

    /// `rampart cluster switchover|down|up`.
    pub fn cluster_command(
        &mut self,
        now: Instant,
        command: ClusterCommand,
    ) -> Result<String, String> {
        if self.cluster.is_none() {
            return Err(NO_CLUSTER.to_string());
        }
        if command != ClusterCommand::Up {
            // The handover covers every record up to now: nothing may wait in the window.
            self.settle_changes(now);
        }
        if command == ClusterCommand::Down {
            // Load Sharing: this member leaves the members up now.
            self.ls_final_counters(now);
        }
        let c = self.cluster.as_mut().expect("checked");
        let answer = match command {
            ClusterCommand::Switchover { to } => c
                .engine
                .switchover(now, to)
                .map(|()| match to {
                    Some(m) => format!("switchover to member {m} started"),
                    None => "switchover started".to_string(),
                })
                .map_err(|e| e.to_string()),
            ClusterCommand::Down => {
                c.engine.set_admin_down(now, true);
                Ok("member set administratively down".to_string())
            }
            ClusterCommand::Up => {
                c.engine.set_admin_down(now, false);
                Ok("member back up".to_string())
            }
        };
        self.cluster_pump(now);
        answer
    }

    /// This member's state as full-sync frames (`Begin`, the records, `End`); empty without
    /// a cluster. Connections of `sync = false` services, and those younger than their
    /// `sync_after`, are left out (the latter follow as delta records).
    pub fn full_sync_export(&mut self, now: Instant) -> Vec<u8> {
        self.cluster_pump(now);
        // The snapshot names the next sequence number: changes still in the hold window
        // become records before it, not after.
        self.settle_changes(now);
        let Some(c) = self.cluster.as_mut() else {
            return Vec::new();
        };
        let mut enc = FullSyncEncoder::default();
        let mut out = Vec::new();
        enc.encode(
            &FullSyncFrame::Begin {
                snapshot_seq: c.engine.next_seq(),
            },
            &mut out,
        );
        let mut records = 0u64;
        let inspector = self.dataplane.inspector();
        let mut body = Vec::new();
        for conn in inspector.export(now) {
            let (sync, after_ms) = sync_rule(inspector, &conn);
            if !sync || CLOCK_BASE_MS.saturating_sub(conn.created_ms) < after_ms {
                continue;
            }
            body.clear();
            codec::encode_conn(&conn, &mut body);
            enc.encode(
                &FullSyncFrame::Record {
                    kind: RecordKind::ConnUpsert,
                    key: conn.id,
                    body: body.clone(),
                },
                &mut out,
            );
            records += 1;
        }
        let active = c.active;
        // Load Sharing: the snapshot holds every member's SAs, each with its owner.
        let ls = c.ls.as_ref().map(|ls| (ls.me, c.replicas.snapshots(now)));
        let sas: Vec<_> = if active {
            self.export_all(now)
        } else {
            Vec::new()
        };
        if let Some((me, replicas)) = ls {
            let own = sas.iter().map(|snap| (snap, me));
            for (snap, owner) in own.chain(replicas.iter().map(|(s, o)| (s, *o))) {
                enc.encode(
                    &FullSyncFrame::Record {
                        kind: RecordKind::SaUpsert,
                        key: snap.ike.id.0,
                        body: codec::encode_owned_sa(owner, snap),
                    },
                    &mut out,
                );
                records += 1;
            }
        } else {
            for snap in &sas {
                enc.encode(
                    &FullSyncFrame::Record {
                        kind: RecordKind::SaUpsert,
                        key: snap.ike.id.0,
                        body: codec::encode_sa(snap),
                    },
                    &mut out,
                );
                records += 1;
            }
        }
        enc.encode(&FullSyncFrame::End { records }, &mut out);
        let c = self.cluster.as_mut().expect("checked");
        c.engine.full_sync_served();
        out
    }

    /// Bytes of the full-sync stream from `member`, in any split.
    pub fn full_sync_input(
        &mut self,
        now: Instant,
        member: u8,
        bytes: &[u8],
    ) -> Result<FullSyncProgress, String> {
        let mut c = self.cluster.take().ok_or_else(|| NO_CLUSTER.to_string())?;
        let result = self.full_sync_frames(now, &mut c, member, bytes);
        if let Err(why) = &result {
            c.incoming.remove(&member);
            c.engine.full_sync_failed(now, member, why);
        }
        self.cluster = Some(c);
        self.cluster_pump(now);
        result
    }

    fn full_sync_frames(
        &mut self,
        now: Instant,
        c: &mut ClusterMember,
        member: u8,
        bytes: &[u8],
    ) -> Result<FullSyncProgress, String> {
        if !c.incoming.contains_key(&member) {
            c.engine.full_sync_started(now, member);
            c.incoming.insert(member, Incoming::default());
        }
        let inc = c.incoming.get_mut(&member).expect("inserted");
        inc.decoder.push(bytes);
        loop {
            let inc = c.incoming.get_mut(&member).expect("present");
            let frame = inc.decoder.next_frame().map_err(|e| e.to_string())?;
            let Some(frame) = frame else {
                return Ok(FullSyncProgress::More);
            };
            match frame {
                FullSyncFrame::Hello { .. } => {}
                FullSyncFrame::Begin { snapshot_seq } => {
                    inc.snapshot_seq = Some(snapshot_seq);
                    inc.records = 0;
                    // Load Sharing too: the snapshot holds every member's SAs.
                    c.replicas.clear();
                }
                FullSyncFrame::Record { kind, key, body } => {
                    if inc.snapshot_seq.is_none() {
                        return Err("full sync: record before Begin".into());
                    }
                    inc.records += 1;
                    if kind == RecordKind::SaUpsert && c.ls.is_some() {
                        self.apply_owned_sa(now, c, key, &body);
                        continue;
                    }
                    self.apply_record(
                        now,
                        c,
                        DeltaRecord {
                            seq: 0,
                            from: member,
                            kind,
                            key,
                            body,
                        },
                    );
                }
                FullSyncFrame::End { records } => {
                    let Some(seq) = inc.snapshot_seq else {
                        return Err("full sync: End before Begin".into());
                    };
                    if records != inc.records {
                        return Err(format!(
                            "full sync: {} records received, the sender counted {records}",
                            inc.records
                        ));
                    }
                    c.incoming.remove(&member);
                    if c.ls.is_some() {
                        self.sweep_replica_leases(&c.replicas);
                    }
                    c.engine.full_sync_complete(now, member, seq);
                    self.log(
                        LogLevel::Info,
                        format!(
                            "cluster: full sync from member {member} applied ({records} records)"
                        ),
                    );
                    return Ok(FullSyncProgress::Done);
                }
            }
        }
    }

    /// The full-sync stream from `member` broke.
    pub fn full_sync_failed(&mut self, now: Instant, member: u8, why: &str) {
        if let Some(c) = self.cluster.as_mut() {
            c.incoming.remove(&member);
            c.engine.full_sync_failed(now, member, why);
            self.cluster_pump(now);
        }
    }

    /// `rampart cluster status` / `sync-stats`.
    pub fn cluster_status(&self, now: Instant) -> Option<(ClusterStatus, SyncStats)> {
        let c = self.cluster.as_ref()?;
        Some((c.engine.status(now), c.engine.stats()))
    }

    /// Whether this member is a cluster member in the active role (true without a cluster).
    pub fn is_active(&self) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.active)
    }

    /// Standby: the number of IKE SAs held as replicas.
    pub fn replica_count(&self) -> usize {
        self.cluster.as_ref().map_or(0, |c| c.replicas.len())
    }
}
