//! Connection -> entry point bindings: bounded, idle-expiring, owned by H2.
