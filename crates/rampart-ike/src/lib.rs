//! rampart-ike
