//! Selection methods, priority levels and tie-breaks (pure functions over probe state), owned
//! by H2.
