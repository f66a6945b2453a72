//! A small CA: in memory ([`Ca`]) and as a directory of PEM files (the `rampart pki`
//! commands; layout in `docs/pki.md`):
//!
//! ```text
//! DIR/ca.crt                  root CA certificate
//! DIR/private/ca.key          root CA key (PKCS#8, mode 0600)
//! DIR/certs/NAME.crt          end-entity certificate, followed by its intermediate if any
//! DIR/private/NAME.key        its key
//! DIR/intermediates/NAME-ca.crt, DIR/private/NAME-ca.key   intermediate CA made by --intermediate
//! DIR/revoked.txt             one line per revocation: serial issuer-stem unix-time name
//! DIR/crl.pem                 CRLs of the root and of every intermediate with revocations
//! ```

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::PkiError;

/// Key algorithm of a generated certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "ecdsa-p256" => Algorithm::EcdsaP256,
            "ecdsa-p384" => Algorithm::EcdsaP384,
            "rsa-2048" => Algorithm::Rsa2048,
            "rsa-3072" => Algorithm::Rsa3072,
            "rsa-4096" => Algorithm::Rsa4096,
            _ => {
                return Err(format!(
                    "unknown algorithm \"{s}\"; allowed: ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096"
                ))
            }
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::EcdsaP256 => "ecdsa-p256",
            Algorithm::EcdsaP384 => "ecdsa-p384",
            Algorithm::Rsa2048 => "rsa-2048",
            Algorithm::Rsa3072 => "rsa-3072",
            Algorithm::Rsa4096 => "rsa-4096",
        })
    }
}

impl Algorithm {
    fn generate(self) -> Result<KeyPair, PkiError> {
        use rcgen::RsaKeySize::*;
        let r = match self {
            Algorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            Algorithm::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            Algorithm::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, _2048),
            Algorithm::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, _3072),
            Algorithm::Rsa4096 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, _4096),
        };
        r.map_err(gen_err)
    }
}

fn gen_err(e: rcgen::Error) -> PkiError {
    PkiError::Unsupported(format!("certificate generation: {e}"))
}

/// A subject alternative name: `ip:1.2.3.4`, `dns:gw.example`, `email:a@b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Ip(IpAddr),
    Dns(String),
    Email(String),
}

impl FromStr for San {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, v) = s
            .split_once(':')
            .ok_or_else(|| format!("\"{s}\": expected ip:ADDR, dns:NAME or email:ADDR"))?;
        match kind {
            "ip" => v
                .parse()
                .map(San::Ip)
                .map_err(|_| format!("\"{v}\" is not an IP address")),
            "dns" if !v.is_empty() => Ok(San::Dns(v.to_string())),
            "email" if v.contains('@') => Ok(San::Email(v.to_string())),
            _ => Err(format!(
                "\"{s}\": expected ip:ADDR, dns:NAME or email:USER@DOMAIN"
            )),
        }
    }
}

impl San {
    fn to_rcgen(&self) -> Result<SanType, PkiError> {
        let ia5 = |s: &str| {
            s.try_into()
                .map_err(|_| PkiError::Malformed(format!("\"{s}\" is not ASCII")))
        };
        Ok(match self {
            San::Ip(a) => SanType::IpAddress(*a),
            San::Dns(d) => SanType::DnsName(ia5(d)?),
            San::Email(e) => SanType::Rfc822Name(ia5(e)?),
        })
    }
}

/// Validity period in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// From one hour before `now` (clock skew) for `days` days.
    pub fn days_from(now: i64, days: u32) -> Validity {
        Validity {
            not_before: now - 3600,
            not_after: now + i64::from(days) * 86_400,
        }
    }
}

fn datetime(t: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(t)
        .map_err(|e| PkiError::Malformed(format!("time {t}: {e}")))
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut b);
    b[0] &= 0x7f;
    b[0] |= 0x01;
    SerialNumber::from_slice(&b)
}

/// A generated certificate with its key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    /// PKCS#8 PEM.
    pub key_pem: String,
    pub key_der: Vec<u8>,
    pub serial: Vec<u8>,
}

/// A certificate authority: its certificate and key.
pub struct Ca {
    pub cert: Issued,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ca({} bytes)", self.cert.cert_der.len())
    }
}

fn ca_params(name: &str, validity: Validity) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = datetime(validity.not_before)?;
    p.not_after = datetime(validity.not_after)?;
    p.serial_number = Some(random_serial());
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn issued(cert: &rcgen::Certificate, key: &KeyPair, serial: Option<&SerialNumber>) -> Issued {
    Issued {
        cert_der: cert.der().to_vec(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
        serial: serial.map(|s| s.to_bytes()).unwrap_or_default(),
    }
}

impl Ca {
    /// A self-signed root CA `CN=name`.
    pub fn new_root(name: &str, alg: Algorithm, validity: Validity) -> Result<Ca, PkiError> {
        let key = alg.generate()?;
        let params = ca_params(name, validity)?;
        let cert = params.self_signed(&key).map_err(gen_err)?;
        let out = issued(&cert, &key, params.serial_number.as_ref());
        Ok(Ca {
            issuer: Issuer::new(params, key),
            cert: out,
        })
    }

    /// A CA from its PEM certificate and PEM key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(gen_err)?;
        let der = crate::pem_blocks(cert_pem.as_bytes(), &["CERTIFICATE"])?
            .into_iter()
            .next()
            .ok_or_else(|| PkiError::Malformed("no CA certificate".into()))?;
        let cert = Issued {
            cert_pem: pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())),
            cert_der: der.clone(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            serial: x509_parser::parse_x509_certificate(&der)
                .map(|(_, c)| c.raw_serial().to_vec())
                .unwrap_or_default(),
        };
        let issuer = Issuer::from_ca_cert_der(&der.clone().into(), key).map_err(gen_err)?;
        Ok(Ca { cert, issuer })
    }

    /// An intermediate CA `CN=name` signed by this CA.
    pub fn intermediate(
        &self,
        name: &str,
        alg: Algorithm,
        validity: Validity,
    ) -> Result<Ca, PkiError> {
        let key = alg.generate()?;
        let params = ca_params(name, validity)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        let out = issued(&cert, &key, params.serial_number.as_ref());
        Ok(Ca {
            issuer: Issuer::new(params, key),
            cert: out,
        })
    }

    /// An end-entity certificate `CN=name` with `sans`, usable for IKE by gateways and clients
    /// (digitalSignature; EKUs serverAuth, clientAuth and ipsecIKE-intermediate).
    pub fn issue(
        &self,
        name: &str,
        sans: &[San],
        alg: Algorithm,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let key = alg.generate()?;
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, name);
        p.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 8, 2, 2]),
        ];
        p.not_before = datetime(validity.not_before)?;
        p.not_after = datetime(validity.not_after)?;
        p.serial_number = Some(random_serial());
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.issuer).map_err(gen_err)?;
        Ok(issued(&cert, &key, p.serial_number.as_ref()))
    }

    /// A PEM CRL revoking `serials` (with revocation times), valid from `now` for `days`.
    pub fn crl(&self, serials: &[(Vec<u8>, i64)], now: i64, days: u32) -> Result<String, PkiError> {
        let params = CertificateRevocationListParams {
            this_update: datetime(now - 60)?,
            next_update: datetime(now + i64::from(days) * 86_400)?,
            crl_number: SerialNumber::from_slice(&now.max(1).to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|(s, t)| {
                    Ok(RevokedCertParams {
                        serial_number: SerialNumber::from_slice(s),
                        revocation_time: datetime(*t)?,
                        reason_code: None,
                        invalidity_date: None,
                    })
                })
                .collect::<Result<_, PkiError>>()?,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .and_then(|c| c.pem())
            .map_err(gen_err)
    }
}

// ---- the directory CA (`rampart pki`) ----

fn io(path: &Path) -> impl Fn(std::io::Error) -> PkiError + '_ {
    move |e| PkiError::file(path, e)
}

fn write_file(path: &Path, data: &str, secret: bool) -> Result<(), PkiError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    #[cfg(unix)]
    if secret {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io(path))?;
        return f.write_all(data.as_bytes()).map_err(io(path));
    }
    let _ = secret;
    std::fs::write(path, data).map_err(io(path))
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(io(path))
}

/// Paths of the directory layout.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn key(&self, stem: &str) -> PathBuf {
        self.dir.join("private").join(format!("{stem}.key"))
    }
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join("certs").join(format!("{name}.crt"))
    }
    pub fn intermediate(&self, stem: &str) -> PathBuf {
        self.dir.join("intermediates").join(format!("{stem}.crt"))
    }
    pub fn revoked(&self) -> PathBuf {
        self.dir.join("revoked.txt")
    }
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    fn root(&self) -> Result<Ca, PkiError> {
        Ca::from_pem(&read(&self.ca_cert())?, &read(&self.key("ca"))?)
    }

    fn issuer_ca(&self, stem: &str) -> Result<Ca, PkiError> {
        if stem == "ca" {
            self.root()
        } else {
            Ca::from_pem(&read(&self.intermediate(stem))?, &read(&self.key(stem))?)
        }
    }
}

/// Unix time now (the CLI's clock).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `rampart pki init-ca`: creates DIR/ca.crt and DIR/private/ca.key. Refuses to overwrite.
pub fn init_ca(dir: &Path, name: &str, alg: Algorithm, days: u32) -> Result<PathBuf, PkiError> {
    let l = Layout::new(dir);
    if l.ca_cert().exists() {
        return Err(PkiError::file(
            &l.ca_cert(),
            "exists already; not overwriting a CA",
        ));
    }
    let ca = Ca::new_root(name, alg, Validity::days_from(unix_now(), days))?;
    write_file(&l.key("ca"), &ca.cert.key_pem, true)?;
    write_file(&l.ca_cert(), &ca.cert.cert_pem, false)?;
    Ok(l.ca_cert())
}

/// `rampart pki issue`: DIR/certs/NAME.crt (with the intermediate appended when
/// `intermediate`) and DIR/private/NAME.key. Refuses to overwrite.
pub fn issue(
    dir: &Path,
    name: &str,
    sans: &[San],
    alg: Algorithm,
    intermediate: bool,
    days: u32,
) -> Result<PathBuf, PkiError> {
    let l = Layout::new(dir);
    if name.is_empty() || name.contains(['/', '\\']) || name == "ca" || name.ends_with("-ca") {
        return Err(PkiError::Malformed(format!(
            "certificate name \"{name}\": no slashes, not \"ca\", not ending in \"-ca\""
        )));
    }
    if l.cert(name).exists() {
        return Err(PkiError::file(
            &l.cert(name),
            "exists already; not overwriting",
        ));
    }
    let root = l.root()?;
    let validity = Validity::days_from(unix_now(), days);
    let mut pem = String::new();
    let leaf = if intermediate {
        let stem = format!("{name}-ca");
        let ica = root.intermediate(&format!("{name} intermediate CA"), alg, validity)?;
        write_file(&l.key(&stem), &ica.cert.key_pem, true)?;
        write_file(&l.intermediate(&stem), &ica.cert.cert_pem, false)?;
        let leaf = ica.issue(name, sans, alg, validity)?;
        pem.push_str(&leaf.cert_pem);
        pem.push_str(&ica.cert.cert_pem);
        leaf
    } else {
        let leaf = root.issue(name, sans, alg, validity)?;
        pem.push_str(&leaf.cert_pem);
        leaf
    };
    write_file(&l.key(name), &leaf.key_pem, true)?;
    write_file(&l.cert(name), &pem, false)?;
    Ok(l.cert(name))
}

/// One issued certificate, for `rampart pki list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_after: String,
    pub sans: Vec<String>,
    pub revoked: bool,
}

fn revocations(l: &Layout) -> Result<Vec<(String, String, i64, String)>, PkiError> {
    let path = l.revoked();
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = read(&path)?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [serial, stem, t, name] => out.push((
                serial.to_string(),
                stem.to_string(),
                t.parse()
                    .map_err(|_| PkiError::file(&path, format!("bad line \"{line}\"")))?,
                name.to_string(),
            )),
            _ => return Err(PkiError::file(&path, format!("bad line \"{line}\""))),
        }
    }
    Ok(out)
}

/// `rampart pki list`: every certificate under DIR/certs, sorted by name.
pub fn list(dir: &Path) -> Result<Vec<Listed>, PkiError> {
    let l = Layout::new(dir);
    let revoked = revocations(&l)?;
    let certs_dir = dir.join("certs");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&certs_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(PkiError::file(&certs_dir, e)),
    };
    for e in entries {
        let path = e.map_err(io(&certs_dir))?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".crt"))
            .map(str::to_string)
        else {
            continue;
        };
        let text = std::fs::read(&path).map_err(io(&path))?;
        let ders = crate::pem_blocks(&text, &["CERTIFICATE"])?;
        let Some(der) = ders.first() else { continue };
        let (_, c) =
            x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::file(&path, e))?;
        let serial = c.raw_serial_as_string().replace(':', "");
        let sans = c
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|s| crate::identity::san_strings(&s.value.general_names))
            .unwrap_or_default();
        out.push(Listed {
            revoked: revoked.iter().any(|r| r.0 == serial),
            name,
            subject: c.subject().to_string(),
            issuer: c.issuer().to_string(),
            serial,
            not_after: c.validity().not_after.to_string(),
            sans,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `rampart pki revoke`: records NAME's certificate as revoked and rewrites the CRL file.
pub fn revoke(dir: &Path, name: &str, crl_days: u32) -> Result<PathBuf, PkiError> {
    let l = Layout::new(dir);
    let path = l.cert(name);
    let text = std::fs::read(&path).map_err(io(&path))?;
    let ders = crate::pem_blocks(&text, &["CERTIFICATE"])?;
    let der = ders
        .first()
        .ok_or_else(|| PkiError::file(&path, "no certificate"))?;
    let (_, c) = x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::file(&path, e))?;
    let serial = hex_lower(c.raw_serial());
    let stem = if ders.len() > 1 {
        format!("{name}-ca")
    } else {
        "ca".to_string()
    };
    let mut all = revocations(&l)?;
    if !all.iter().any(|r| r.0 == serial) {
        all.push((serial, stem, unix_now(), name.to_string()));
    }
    let text: String = all
        .iter()
        .map(|(s, st, t, n)| format!("{s} {st} {t} {n}\n"))
        .collect();
    write_file(&l.revoked(), &text, false)?;
    write_crl(dir, crl_days)
}

/// `rampart pki crl`: (re)writes DIR/crl.pem: a CRL from the root CA (always) and one from
/// every intermediate that issued a revoked certificate, `days` until their next update.
pub fn write_crl(dir: &Path, days: u32) -> Result<PathBuf, PkiError> {
    let l = Layout::new(dir);
    let all = revocations(&l)?;
    let now = unix_now();
    let mut stems: Vec<&str> = vec!["ca"];
    for r in &all {
        if !stems.contains(&r.1.as_str()) {
            stems.push(&r.1);
        }
    }
    let mut pem = String::new();
    for stem in stems {
        let ca = l.issuer_ca(stem)?;
        let serials: Vec<(Vec<u8>, i64)> = all
            .iter()
            .filter(|r| r.1 == stem)
            .map(|r| (unhex(&r.0), r.2))
            .collect();
        pem.push_str(&ca.crl(&serials, now, days)?);
    }
    write_file(&l.crl(), &pem, false)?;
    Ok(l.crl())
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}
