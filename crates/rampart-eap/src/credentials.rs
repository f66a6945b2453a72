//! The gateway's users file and the lookup the [`Authenticator`](crate::Authenticator) uses.
//!
//! ```toml
//! [[user]]
//! name = "alice"
//! nt_hash = "44ebba8d5312b8d611474411f56989ae"   # MD4(UTF-16LE(password))
//! ```
//!
//! # Why the NT hash, and what that does and does not protect
//!
//! MS-CHAPv2 is computed from `MD4(UTF-16LE(password))`; the authenticator needs that value
//! and nothing else. Storing the NT hash instead of the cleartext keeps the password itself
//! out of the file (it is not reusable as a *password* on other systems without cracking the
//! unsalted MD4, which is cheap for weak passwords), but for this protocol **the hash is as
//! good as the password**: whoever reads the file can authenticate as every listed user. The
//! file must be protected like a private key (owner-only permissions), and a leaked file
//! means every password in it must be changed. A salted, slow hash is not possible with
//! MS-CHAPv2; deployments that need that should use certificate authentication instead.

use std::collections::HashMap;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::CredentialsError;
use crate::mschapv2::algo::{nt_password_hash, PasswordTooLong};
use crate::secret::NtHash;

/// Longest user name accepted (it travels in the MS-CHAPv2 Name field).
pub const MAX_USER_NAME_LEN: usize = 255;

/// Where the authenticator finds a user's NT hash.
pub trait CredentialLookup {
    /// The NT hash of `user` (exactly as the peer sent it), or `None` for an unknown user.
    fn nt_hash(&self, user: &str) -> Option<NtHash>;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    nt_hash: Zeroizing<String>,
}

/// The users file in memory. Invariant: names are unique and 1..=255 octets.
/// Equal when the same users have the same hashes (each compared in constant time), so a
/// reload that reads an unchanged users file changes nothing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Credentials {
    users: HashMap<String, NtHash>,
}

impl Credentials {
    /// Parses the TOML users file.
    pub fn from_toml(text: &str) -> Result<Self, CredentialsError> {
        let file: UsersFile = toml::from_str(text)?;
        let mut out = Self::default();
        for entry in file.user {
            out.insert(entry.name, NtHash::from_hex(&entry.nt_hash)?)?;
        }
        Ok(out)
    }

    /// Adds one user; refuses a duplicate or an empty/oversized name.
    pub fn insert(&mut self, name: String, hash: NtHash) -> Result<(), CredentialsError> {
        if name.is_empty() || name.len() > MAX_USER_NAME_LEN {
            return Err(CredentialsError::BadName(name.len()));
        }
        if self.users.contains_key(&name) {
            return Err(CredentialsError::Duplicate(name));
        }
        self.users.insert(name, hash);
        Ok(())
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when no user is configured.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

impl CredentialLookup for Credentials {
    /// Exact name first; then, for `DOMAIN\user`, the part after the backslash.
    fn nt_hash(&self, user: &str) -> Option<NtHash> {
        self.users.get(user).cloned().or_else(|| {
            let (_, bare) = user.split_once('\\')?;
            self.users.get(bare).cloned()
        })
    }
}

/// Computes the value for `nt_hash` from a password (for `rampart` tooling that writes the
/// users file).
pub fn nt_hash_for_password(password: &str) -> Result<NtHash, PasswordTooLong> {
    nt_password_hash(password)
}

/// One `[[user]]` table for the users file. The name is written as a TOML basic string.
pub fn users_file_entry(name: &str, hash: &NtHash) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    for c in name.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    format!(
        "[[user]]\nname = \"{quoted}\"\nnt_hash = \"{}\"\n",
        hash.to_hex()
    )
}
