//! rampart-crypto
