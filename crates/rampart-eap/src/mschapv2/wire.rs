//! EAP-MSCHAPv2 Type-Data (draft-kamath-pppext-eap-mschapv2-02 section 2, value formats from
//! RFC 2759 section 4 to 6).
//!
//! ```text
//! Challenge/Response/Success/Failure Request:
//!   OpCode(1) MS-CHAPv2-ID(1) MS-Length(2) Data...
//!   MS-Length = EAP Length - 5 (the octets from OpCode to the end)
//! Challenge data: Value-Size(1)=16 Challenge(16) Name...
//! Response data:  Value-Size(1)=49 Peer-Challenge(16) Reserved(8)=0 NT-Response(24) Flags(1)=0 Name...
//! Success data:   "S=<40 hex digits> M=<message>"
//! Failure data:   "E=eeeeeeeeee R=r C=<32 hex digits> V=vvvvvvvvvv M=<message>"
//! Success/Failure Response (the peer's acknowledgement): OpCode(1) only
//! ```

use super::algo::{AUTH_RESPONSE_LEN, CHALLENGE_LEN, NT_RESPONSE_LEN};
use crate::error::DecodeError;

/// MS-CHAPv2 OpCodes.
pub mod opcode {
    pub const CHALLENGE: u8 = 1;
    pub const RESPONSE: u8 = 2;
    pub const SUCCESS: u8 = 3;
    pub const FAILURE: u8 = 4;
    /// Change-Password (RFC 2759 section 7); recognised but not supported.
    pub const CHANGE_PASSWORD: u8 = 7;
}

/// Value-Size of a Response: Peer-Challenge, Reserved, NT-Response, Flags.
pub const RESPONSE_VALUE_LEN: u8 = 49;
/// OpCode, MS-CHAPv2-ID, MS-Length.
const MS_HEADER_LEN: usize = 4;

/// One EAP-MSCHAPv2 message. Which variants may appear depends on the EAP Code: the
/// decoder refuses a Challenge in a Response and a Response in a Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsChapV2 {
    /// Request: the authenticator's challenge and its name.
    Challenge {
        ms_id: u8,
        challenge: [u8; CHALLENGE_LEN],
        name: Vec<u8>,
    },
    /// Response: the peer's answer. `flags` must be zero (RFC 2759) and is kept as sent.
    Response {
        ms_id: u8,
        peer_challenge: [u8; CHALLENGE_LEN],
        nt_response: [u8; NT_RESPONSE_LEN],
        flags: u8,
        name: Vec<u8>,
    },
    /// Request: the authenticator response and an optional message (see [`SuccessMessage`]).
    Success { ms_id: u8, message: Vec<u8> },
    /// Request: the failure packet (see [`FailureMessage`]).
    Failure { ms_id: u8, message: Vec<u8> },
    /// Response: the peer accepted the Success request.
    SuccessAck,
    /// Response: the peer acknowledges a Failure request.
    FailureAck,
}

fn read_header(data: &[u8]) -> Result<(u8, &[u8]), DecodeError> {
    if data.len() < MS_HEADER_LEN {
        return Err(DecodeError::Truncated {
            need: MS_HEADER_LEN,
            have: data.len(),
        });
    }
    let declared = usize::from(u16::from_be_bytes([data[2], data[3]]));
    if declared != data.len() {
        return Err(DecodeError::MsLengthMismatch {
            declared,
            actual: data.len(),
        });
    }
    Ok((data[1], &data[MS_HEADER_LEN..]))
}

fn need(data: &[u8], n: usize) -> Result<(), DecodeError> {
    if data.len() < n {
        Err(DecodeError::Truncated {
            need: n,
            have: data.len(),
        })
    } else {
        Ok(())
    }
}

impl MsChapV2 {
    /// The OpCode value.
    pub fn opcode(&self) -> u8 {
        match self {
            MsChapV2::Challenge { .. } => opcode::CHALLENGE,
            MsChapV2::Response { .. } => opcode::RESPONSE,
            MsChapV2::Success { .. } | MsChapV2::SuccessAck => opcode::SUCCESS,
            MsChapV2::Failure { .. } | MsChapV2::FailureAck => opcode::FAILURE,
        }
    }

    /// Decodes Type-Data (after the EAP Type octet); `request` is true in an EAP Request.
    pub fn decode(data: &[u8], request: bool) -> Result<Self, DecodeError> {
        let op = *data
            .first()
            .ok_or(DecodeError::Truncated { need: 1, have: 0 })?;
        let code = if request { "Request" } else { "Response" };
        match (op, request) {
            (opcode::CHALLENGE, true) => {
                let (ms_id, rest) = read_header(data)?;
                need(rest, 1 + CHALLENGE_LEN)?;
                if rest[0] != CHALLENGE_LEN as u8 {
                    return Err(DecodeError::BadValueSize {
                        expected: CHALLENGE_LEN as u8,
                        got: rest[0],
                    });
                }
                let mut challenge = [0u8; CHALLENGE_LEN];
                challenge.copy_from_slice(&rest[1..1 + CHALLENGE_LEN]);
                Ok(MsChapV2::Challenge {
                    ms_id,
                    challenge,
                    name: rest[1 + CHALLENGE_LEN..].to_vec(),
                })
            }
            (opcode::RESPONSE, false) => {
                let (ms_id, rest) = read_header(data)?;
                let value_len = usize::from(RESPONSE_VALUE_LEN);
                need(rest, 1 + value_len)?;
                if rest[0] != RESPONSE_VALUE_LEN {
                    return Err(DecodeError::BadValueSize {
                        expected: RESPONSE_VALUE_LEN,
                        got: rest[0],
                    });
                }
                let value = &rest[1..1 + value_len];
                let mut peer_challenge = [0u8; CHALLENGE_LEN];
                peer_challenge.copy_from_slice(&value[..CHALLENGE_LEN]);
                let mut nt_response = [0u8; NT_RESPONSE_LEN];
                nt_response.copy_from_slice(&value[CHALLENGE_LEN + 8..CHALLENGE_LEN + 8 + 24]);
                Ok(MsChapV2::Response {
                    ms_id,
                    peer_challenge,
                    nt_response,
                    flags: value[value_len - 1],
                    name: rest[1 + value_len..].to_vec(),
                })
            }
            (opcode::SUCCESS, true) => {
                let (ms_id, rest) = read_header(data)?;
                Ok(MsChapV2::Success {
                    ms_id,
                    message: rest.to_vec(),
                })
            }
            (opcode::FAILURE, true) => {
                let (ms_id, rest) = read_header(data)?;
                Ok(MsChapV2::Failure {
                    ms_id,
                    message: rest.to_vec(),
                })
            }
            // The acknowledgements are the OpCode alone; anything after it is ignored, as
            // some peers add the MS-CHAPv2 header anyway.
            (opcode::SUCCESS, false) => Ok(MsChapV2::SuccessAck),
            (opcode::FAILURE, false) => Ok(MsChapV2::FailureAck),
            (opcode::CHALLENGE | opcode::RESPONSE, _) => {
                Err(DecodeError::WrongDirection { opcode: op, code })
            }
            (other, _) => Err(DecodeError::UnknownOpCode(other)),
        }
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let header = |out: &mut Vec<u8>, ms_id: u8| {
            out.extend_from_slice(&[self.opcode(), ms_id, 0, 0]);
        };
        match self {
            MsChapV2::Challenge {
                ms_id,
                challenge,
                name,
            } => {
                header(out, *ms_id);
                out.push(CHALLENGE_LEN as u8);
                out.extend_from_slice(challenge);
                out.extend_from_slice(name);
            }
            MsChapV2::Response {
                ms_id,
                peer_challenge,
                nt_response,
                flags,
                name,
            } => {
                header(out, *ms_id);
                out.push(RESPONSE_VALUE_LEN);
                out.extend_from_slice(peer_challenge);
                out.extend_from_slice(&[0u8; 8]);
                out.extend_from_slice(nt_response);
                out.push(*flags);
                out.extend_from_slice(name);
            }
            MsChapV2::Success { ms_id, message } | MsChapV2::Failure { ms_id, message } => {
                header(out, *ms_id);
                out.extend_from_slice(message);
            }
            MsChapV2::SuccessAck | MsChapV2::FailureAck => {
                out.push(self.opcode());
                return;
            }
        }
        // An oversized packet is refused by `Packet::encode`; saturate rather than wrap.
        let ms_len = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
        out[start + 2..start + 4].copy_from_slice(&ms_len.to_be_bytes());
    }
}

/// Strips trailing NULs (some servers send a C string) and requires ASCII text.
fn text<'a>(message: &'a [u8], what: &'static str) -> Result<&'a str, DecodeError> {
    let end = message.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let s = std::str::from_utf8(&message[..end]).map_err(|_| DecodeError::BadMessage(what))?;
    Ok(s)
}

/// The text of a Success request: `S=<auth response>` and optionally ` M=<message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccessMessage {
    pub authenticator_response: [u8; AUTH_RESPONSE_LEN],
    pub message: Option<String>,
}

impl SuccessMessage {
    /// Parses the message field of a Success request.
    pub fn parse(message: &[u8]) -> Result<Self, DecodeError> {
        let s = text(message, "Success")?;
        let hex_part = s
            .strip_prefix("S=")
            .and_then(|r| r.get(..2 * AUTH_RESPONSE_LEN))
            .ok_or(DecodeError::BadMessage("Success"))?;
        let mut authenticator_response = [0u8; AUTH_RESPONSE_LEN];
        hex::decode_to_slice(hex_part, &mut authenticator_response)
            .map_err(|_| DecodeError::BadMessage("Success"))?;
        let tail = &s[2 + 2 * AUTH_RESPONSE_LEN..];
        let message = if tail.is_empty() {
            None
        } else {
            Some(
                tail.strip_prefix(" M=")
                    .ok_or(DecodeError::BadMessage("Success"))?
                    .to_owned(),
            )
        };
        Ok(Self {
            authenticator_response,
            message,
        })
    }

    /// Formats `S=<40 upper-case hex> M=<message>`.
    pub fn format(&self) -> Vec<u8> {
        let mut s = super::algo::authenticator_response_string(&self.authenticator_response);
        if let Some(m) = &self.message {
            s.push_str(" M=");
            s.push_str(m);
        }
        s.into_bytes()
    }
}

/// The Windows error for a wrong user name or password.
pub const ERROR_AUTHENTICATION_FAILURE: u32 = 691;

/// The text of a Failure request (RFC 2759 section 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureMessage {
    /// `E=`: the Windows error code (691 for a wrong user name or password).
    pub error: u32,
    /// `R=`: whether the peer may retry (this crate always sends 0).
    pub retry: bool,
    /// `C=`: a challenge for the retry, if present.
    pub challenge: Option<[u8; CHALLENGE_LEN]>,
    /// `V=`: the password-change protocol version (3 for MS-CHAPv2).
    pub version: Option<u32>,
    /// `M=`: displayable text; it runs to the end of the packet and may contain spaces.
    pub message: Option<String>,
}

impl FailureMessage {
    /// The failure this crate sends: `E=691 R=0 C=<zeros> V=3 M=<message>`. With R=0 the
    /// challenge is never used; it is sent because some peers require the field.
    pub fn authentication_failure(message: &str) -> Self {
        Self {
            error: ERROR_AUTHENTICATION_FAILURE,
            retry: false,
            challenge: Some([0u8; CHALLENGE_LEN]),
            version: Some(3),
            message: Some(message.to_owned()),
        }
    }

    /// Parses the message field of a Failure request. `E=` is required; unknown fields are
    /// ignored.
    pub fn parse(message: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "Failure";
        let s = text(message, WHAT)?;
        let (fields, msg) = match s.find("M=") {
            Some(i) => (&s[..i], Some(s[i + 2..].to_owned())),
            None => (s, None),
        };
        let mut out = Self {
            error: 0,
            retry: false,
            challenge: None,
            version: None,
            message: msg,
        };
        let mut have_error = false;
        for token in fields.split(' ').filter(|t| !t.is_empty()) {
            let (key, value) =
                token.split_at(token.find('=').ok_or(DecodeError::BadMessage(WHAT))?);
            let value = &value[1..];
            let number = || {
                value
                    .parse::<u32>()
                    .map_err(|_| DecodeError::BadMessage(WHAT))
            };
            match key {
                "E" => {
                    out.error = number()?;
                    have_error = true;
                }
                "R" => out.retry = number()? != 0,
                "V" => out.version = Some(number()?),
                "C" => {
                    let mut c = [0u8; CHALLENGE_LEN];
                    hex::decode_to_slice(value, &mut c)
                        .map_err(|_| DecodeError::BadMessage(WHAT))?;
                    out.challenge = Some(c);
                }
                _ => {}
            }
        }
        if !have_error {
            return Err(DecodeError::BadMessage(WHAT));
        }
        Ok(out)
    }

    /// Formats the fields in RFC 2759 order.
    pub fn format(&self) -> Vec<u8> {
        let mut s = format!("E={} R={}", self.error, u8::from(self.retry));
        if let Some(c) = &self.challenge {
            s.push_str(" C=");
            s.push_str(&hex::encode_upper(c));
        }
        if let Some(v) = self.version {
            s.push_str(&format!(" V={v}"));
        }
        if let Some(m) = &self.message {
            s.push_str(" M=");
            s.push_str(m);
        }
        s.into_bytes()
    }
}
