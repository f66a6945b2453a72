//! rampart-esp
