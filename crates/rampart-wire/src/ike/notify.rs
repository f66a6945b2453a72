//! Notify message types (RFC 7296 section 3.10.1 and the IANA "IKEv2 Notify Message Types"
//! registry). Types below 16384 are errors, the rest are status notifications.

// Error types.
pub const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;
pub const INVALID_IKE_SPI: u16 = 4;
pub const INVALID_MAJOR_VERSION: u16 = 5;
pub const INVALID_SYNTAX: u16 = 7;
pub const INVALID_MESSAGE_ID: u16 = 9;
pub const INVALID_SPI: u16 = 11;
pub const NO_PROPOSAL_CHOSEN: u16 = 14;
pub const INVALID_KE_PAYLOAD: u16 = 17;
pub const AUTHENTICATION_FAILED: u16 = 24;
pub const SINGLE_PAIR_REQUIRED: u16 = 34;
pub const NO_ADDITIONAL_SAS: u16 = 35;
pub const INTERNAL_ADDRESS_FAILURE: u16 = 36;
pub const FAILED_CP_REQUIRED: u16 = 37;
pub const TS_UNACCEPTABLE: u16 = 38;
pub const INVALID_SELECTORS: u16 = 39;
pub const TEMPORARY_FAILURE: u16 = 43;
pub const CHILD_SA_NOT_FOUND: u16 = 44;
/// RFC 4555: the responder cannot use the addresses of an UPDATE_SA_ADDRESSES.
pub const UNACCEPTABLE_ADDRESSES: u16 = 40;
/// RFC 4555: NAT detected although NO_NATS_ALLOWED was sent.
pub const UNEXPECTED_NAT_DETECTED: u16 = 41;

// Status types.
pub const INITIAL_CONTACT: u16 = 16384;
pub const SET_WINDOW_SIZE: u16 = 16385;
pub const ADDITIONAL_TS_POSSIBLE: u16 = 16386;
pub const IPCOMP_SUPPORTED: u16 = 16387;
pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
pub const COOKIE: u16 = 16390;
pub const USE_TRANSPORT_MODE: u16 = 16391;
pub const HTTP_CERT_LOOKUP_SUPPORTED: u16 = 16392;
pub const REKEY_SA: u16 = 16393;
pub const ESP_TFC_PADDING_NOT_SUPPORTED: u16 = 16394;
pub const NON_FIRST_FRAGMENTS_ALSO: u16 = 16395;
/// RFC 4555.
pub const MOBIKE_SUPPORTED: u16 = 16396;
/// RFC 4555: another address of the sender (IPv4, 4 bytes of data).
pub const ADDITIONAL_IP4_ADDRESS: u16 = 16397;
/// RFC 4555: another address of the sender (IPv6, 16 bytes of data).
pub const ADDITIONAL_IP6_ADDRESS: u16 = 16398;
/// RFC 4555: the sender has no addresses but the one it uses.
pub const NO_ADDITIONAL_ADDRESSES: u16 = 16399;
/// RFC 4555: move the IKE SA and its CHILD SAs to the addresses this request came from.
pub const UPDATE_SA_ADDRESSES: u16 = 16400;
/// RFC 4555: return routability cookie, echoed in the response.
pub const COOKIE2: u16 = 16401;
/// RFC 4555: the sender does not allow NAT between the peers.
pub const NO_NATS_ALLOWED: u16 = 16402;
/// RFC 7383.
pub const IKEV2_FRAGMENTATION_SUPPORTED: u16 = 16430;
/// RFC 7427.
pub const SIGNATURE_HASH_ALGORITHMS: u16 = 16431;

/// Whether `kind` is an error notification (RFC 7296: types 0..16383).
pub fn is_error(kind: u16) -> bool {
    kind < INITIAL_CONTACT
}
