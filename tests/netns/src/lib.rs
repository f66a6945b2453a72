//! Helpers for the network-namespace tests.
