//! rampart-wire
