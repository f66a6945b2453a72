//! From TOML text to the raw sections, collecting every syntax, unknown-key and type error.
//!
//! Each section (and each `[[peer]]`) is deserialized on its own, so one bad section does not
//! hide errors in another. Inside a section, unknown keys are found by comparing with the
//! struct's field list, and a value of the wrong type is reported, removed and the section
//! deserialized again, so every bad key is reported once and the rest still gets validated.

use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::error::{ErrorKind, Sink};
use crate::raw::{
    struct_fields, RawCluster, RawClusterMember, RawClusterVip, RawEntryPointGroup, RawGateway,
    RawInspection, RawLocal, RawMep, RawMepRule, RawNat, RawObject, RawPeer, RawProfile, RawRaTcp,
    RawRaVisitor, RawRemoteAccess, RawRim, RawRule, RawService, RawTunnel, SECTIONS,
};

/// One table of the file after deserialization.
#[derive(Debug, Default)]
pub(crate) struct Section<T> {
    pub value: T,
    /// Whether the table appears in the file at all.
    pub present: bool,
    /// Span of the table header (or the whole table), for "missing key" errors.
    pub span: Option<Range<usize>>,
    /// Keys that were present but already reported (wrong type); not "missing".
    pub reported: Vec<String>,
}

impl<T> Section<T> {
    /// Whether `key` was already reported, so it must not also be called missing.
    pub fn reported(&self, key: &str) -> bool {
        self.reported.iter().any(|k| k == key)
    }
}

#[derive(Debug, Default)]
pub(crate) struct RawDocument {
    pub gateway: Section<RawGateway>,
    pub tunnel: Section<RawTunnel>,
    pub local: Section<RawLocal>,
    pub peers: Vec<Section<RawPeer>>,
    /// Span of the `peer` key's value, when present.
    pub peers_span: Option<Range<usize>>,
    /// Whether `peer` was present but unusable (already reported).
    pub peers_reported: bool,
    /// `[inspection]` and the firewall's arrays of tables.
    pub inspection: Section<RawInspection>,
    pub objects: Vec<Section<RawObject>>,
    pub services: Vec<Section<RawService>>,
    pub rules: Vec<Section<RawRule>>,
    pub nats: Vec<Section<RawNat>>,
    pub entry_point_groups: Vec<Section<RawEntryPointGroup>>,
    /// `[[entry_point_group.rule]]` tables, one list per entry of `entry_point_groups`.
    pub entry_point_rules: Vec<Vec<Section<RawMepRule>>>,
    /// `[mep]` and `[rim]`.
    pub mep: Section<RawMep>,
    pub rim: Section<RawRim>,
    /// `[cluster]` with its `[[cluster.member]]` and `[[cluster.vip]]` tables.
    pub cluster: Section<RawCluster>,
    pub cluster_members: Vec<Section<RawClusterMember>>,
    pub cluster_vips: Vec<Section<RawClusterVip>>,
    /// `[remote_access]` with its `[remote_access.tcp]` and `[remote_access.visitor]` tables.
    pub remote_access: Section<RawRemoteAccess>,
    pub remote_access_tcp: Section<RawRaTcp>,
    pub remote_access_visitor: Section<RawRaVisitor>,
}

/// Parses the text. `None` when the text is not TOML (the syntax errors are in `sink`); otherwise
/// the raw document, possibly with errors in `sink`.
pub(crate) fn read(text: &str, sink: &mut Sink<'_>) -> Option<RawDocument> {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for e in syntax_errors {
            sink.push(
                ErrorKind::Syntax,
                e.span(),
                "",
                format!("invalid TOML: {}", e.message().trim_end()),
                None,
            );
        }
        return None;
    }
    let mut doc = RawDocument::default();
    for (key, value) in root.get_ref().iter() {
        match key.get_ref().as_ref() {
            "gateway" => doc.gateway = section("gateway", value, sink),
            "tunnel" => doc.tunnel = section("tunnel", value, sink),
            "local" => doc.local = section("local", value, sink),
            "peer" => {
                doc.peers_span = Some(value.span());
                match value.get_ref() {
                    DeValue::Array(items) if items.iter().all(|v| v.get_ref().is_table()) => {
                        for (i, item) in items.iter().enumerate() {
                            doc.peers.push(section(&format!("peer[{i}]"), item, sink));
                        }
                    }
                    other => {
                        doc.peers_reported = true;
                        sink.push(
                            ErrorKind::WrongType,
                            Some(value.span()),
                            "peer",
                            format!("expected [[peer]] tables, found {}", describe(other)),
                            Some("one [[peer]] table per peer".into()),
                        );
                    }
                }
            }
            "inspection" => doc.inspection = section("inspection", value, sink),
            "object" => doc.objects = tables("object", value, sink),
            "service" => doc.services = tables("service", value, sink),
            "rule" => doc.rules = tables("rule", value, sink),
            "nat" => doc.nats = tables("nat", value, sink),
            "entry_point_group" => {
                doc.entry_point_groups = tables("entry_point_group", value, sink);
                doc.entry_point_rules = match value.get_ref() {
                    DeValue::Array(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| {
                            match item.get_ref().as_table().and_then(|t| t.get("rule")) {
                                Some(rules) => {
                                    tables(&format!("entry_point_group[{i}].rule"), rules, sink)
                                }
                                None => Vec::new(),
                            }
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                doc.entry_point_rules
                    .resize_with(doc.entry_point_groups.len(), Vec::new);
            }
            "mep" => doc.mep = section("mep", value, sink),
            "rim" => doc.rim = section("rim", value, sink),
            "cluster" => {
                doc.cluster = section("cluster", value, sink);
                if let Some(table) = value.get_ref().as_table() {
                    if let Some(members) = table.get("member") {
                        doc.cluster_members = tables("cluster.member", members, sink);
                    }
                    if let Some(vips) = table.get("vip") {
                        doc.cluster_vips = tables("cluster.vip", vips, sink);
                    }
                }
            }
            "remote_access" => {
                doc.remote_access = section("remote_access", value, sink);
                if let Some(table) = value.get_ref().as_table() {
                    if let Some(tcp) = table.get("tcp") {
                        doc.remote_access_tcp = section("remote_access.tcp", tcp, sink);
                    }
                    if let Some(visitor) = table.get("visitor") {
                        doc.remote_access_visitor = section("remote_access.visitor", visitor, sink);
                    }
                }
            }
            other => sink.push(
                ErrorKind::UnknownKey,
                Some(key.span()),
                other,
                "unknown key",
                Some(allowed_list(SECTIONS)),
            ),
        }
    }
    Some(doc)
}

/// Parses a client profile: one flat table whose keys are reported without a prefix. `None`
/// when the text is not TOML (the syntax errors are in `sink`).
pub(crate) fn read_profile(text: &str, sink: &mut Sink<'_>) -> Option<Section<RawProfile>> {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for e in syntax_errors {
            sink.push(
                ErrorKind::Syntax,
                e.span(),
                "",
                format!("invalid TOML: {}", e.message().trim_end()),
                None,
            );
        }
        return None;
    }
    let span = root.span();
    let value = Spanned::new(span.start..span.start, DeValue::Table(root.into_inner()));
    Some(section("", &value, sink))
}

/// `path.key`, or `key` at the top level of a flat file.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// An array of tables (`[[name]]`), each deserialized on its own; anything else is reported.
fn tables<'i, T>(name: &str, value: &Spanned<DeValue<'i>>, sink: &mut Sink<'_>) -> Vec<Section<T>>
where
    T: Deserialize<'i> + Default,
{
    match value.get_ref() {
        DeValue::Array(items) if items.iter().all(|v| v.get_ref().is_table()) => items
            .iter()
            .enumerate()
            .map(|(i, item)| section(&format!("{name}[{i}]"), item, sink))
            .collect(),
        other => {
            sink.push(
                ErrorKind::WrongType,
                Some(value.span()),
                name,
                format!("expected [[{name}]] tables, found {}", describe(other)),
                Some(format!("one [[{name}]] table per entry")),
            );
            Vec::new()
        }
    }
}

fn allowed_list(fields: &[&str]) -> String {
    fields.join(", ")
}

/// A short name of a value's type for messages.
fn describe(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Deserializes one table into `T`, reporting unknown keys and wrong types under `path`.
fn section<'i, T>(path: &str, value: &Spanned<DeValue<'i>>, sink: &mut Sink<'_>) -> Section<T>
where
    T: Deserialize<'i> + Default,
{
    let mut out = Section {
        value: T::default(),
        present: true,
        span: Some(value.span()),
        reported: Vec::new(),
    };
    let Some(table) = value.get_ref().as_table() else {
        sink.push(
            ErrorKind::WrongType,
            Some(value.span()),
            path,
            format!("expected a table, found {}", describe(value.get_ref())),
            Some(format!("a [{path}] table")),
        );
        // Everything inside is unusable and already reported: nothing is "missing".
        out.reported = struct_fields::<T>().iter().map(|f| f.to_string()).collect();
        return out;
    };
    let fields = struct_fields::<T>();
    let mut table: DeTable<'i> = table.clone();
    let unknown: Vec<(String, Range<usize>)> = table
        .iter()
        .filter(|(k, _)| !fields.contains(&k.get_ref().as_ref()))
        .map(|(k, _)| (k.get_ref().to_string(), k.span()))
        .collect();
    for (key, span) in unknown {
        sink.push(
            ErrorKind::UnknownKey,
            Some(span),
            join(path, &key),
            "unknown key",
            Some(allowed_list(fields)),
        );
        table.remove(key.as_str());
    }
    // Each round either succeeds or removes one key, so this ends.
    loop {
        let de = ValueDeserializer::from(Spanned::new(value.span(), DeValue::Table(table.clone())));
        match T::deserialize(de) {
            Ok(v) => {
                out.value = v;
                return out;
            }
            Err(e) => {
                let span = e.span();
                let culprit = span.as_ref().and_then(|s| locate(&table, s));
                let (message, allowed) = type_message(e.message());
                match culprit {
                    Some((key, suffix)) => {
                        sink.push(
                            ErrorKind::WrongType,
                            span,
                            format!("{}{suffix}", join(path, &key)),
                            message,
                            allowed,
                        );
                        table.remove(key.as_str());
                        out.reported.push(key);
                    }
                    None => {
                        sink.push(ErrorKind::WrongType, span, path, message, allowed);
                        return out;
                    }
                }
            }
        }
    }
}

/// The key of `table` whose key or value contains `span`, and the `[i]` path inside the value.
fn locate(table: &DeTable<'_>, span: &Range<usize>) -> Option<(String, String)> {
    for (k, v) in table.iter() {
        let inside = |r: Range<usize>| r.start <= span.start && span.end <= r.end.max(r.start + 1);
        if inside(k.span()) {
            return Some((k.get_ref().to_string(), String::new()));
        }
        if inside(v.span()) {
            let mut suffix = String::new();
            let mut cur = v;
            'descend: while let DeValue::Array(items) = cur.get_ref() {
                for (i, item) in items.iter().enumerate() {
                    if inside(item.span()) {
                        suffix.push_str(&format!("[{i}]"));
                        cur = item;
                        continue 'descend;
                    }
                }
                break;
            }
            return Some((k.get_ref().to_string(), suffix));
        }
    }
    None
}

/// Splits serde's "invalid type: X, expected Y" into our message and allowed parts.
fn type_message(raw: &str) -> (String, Option<String>) {
    let raw = raw.trim_end();
    if let Some(rest) = raw.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.rsplit_once(", expected ") {
            let expected = match expected {
                "a sequence" => "an array",
                "a boolean" => "true or false",
                "i64" => "an integer",
                other => other,
            };
            return (
                format!("wrong type: found {found}"),
                Some(expected.to_string()),
            );
        }
    }
    (raw.to_string(), None)
}
