//! rampart-io
