//! Validation of the credentials Krypton returns: PEM certificates (and chains) and private keys.
//!
//! Parsing uses well-kept crates: `pem` for the armour (RFC 7468), `x509-cert` for X.509
//! (RFC 5280), `pkcs1` (RFC 8017), `pkcs8` (RFC 5208) and `sec1` (RFC 5915) for keys, and
//! `p256`/`p384` to derive an EC public key from its private scalar. The only hand-written step
//! is [`normalize_pem`], which makes line endings and trailing blanks uniform before `pem`
//! parses the text: field data arrives with CRLF, CR or trailing spaces, and a stored bundle
//! should have one canonical form.
//!
//! A key "matches" a certificate when the public key derived from the private key equals the
//! certificate's `subjectPublicKeyInfo` key: modulus and exponent for RSA, the curve point for
//! EC (P-256, P-384). Error messages name what is wrong and never include key material.

use super::model::{CertificateSummary, Error, Secret};
use der::Decode;
use sha2::{Digest, Sha256};
use spki::ObjectIdentifier;
use x509_cert::Certificate;

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Canonical PEM text: LF line endings, no trailing blanks on any line, no blank lines between
/// blocks, exactly one final newline. Each `-----END …-----` is followed by a newline, so two
/// concatenated blocks never fuse onto one line.
pub fn normalize_pem(text: &str) -> String {
    let unified = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(unified.len() + 1);
    for line in unified.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // A block glued to the previous END marker on one line ("-----END X----------BEGIN Y-----")
        // is split at the marker boundary.
        let mut rest = line;
        while let Some(idx) = rest.find("----------BEGIN ") {
            out.push_str(&rest[..idx + 5]);
            out.push('\n');
            rest = &rest[idx + 5..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// One parsed certificate with its DER bytes.
pub struct ParsedCertificate {
    /// The DER encoding, as in the PEM block.
    pub der: Vec<u8>,
    /// The parsed certificate.
    pub cert: Certificate,
}

/// Parse every `CERTIFICATE` block of a PEM field (a leaf, or a chain leaf-first).
///
/// Errors: [`Error::InvalidResponse`] naming `field` when the text is not PEM, holds no
/// certificate, holds a block of another type, or a block is not a DER X.509 certificate.
pub fn parse_certificates(field: &str, pem_text: &str) -> Result<Vec<ParsedCertificate>, Error> {
    let normalized = normalize_pem(pem_text);
    let blocks = pem::parse_many(normalized.as_bytes())
        .map_err(|e| Error::invalid(field, format!("not valid PEM: {e}")))?;
    if blocks.is_empty() {
        return Err(Error::invalid(field, "no PEM CERTIFICATE block found"));
    }
    let mut out = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        if block.tag() != "CERTIFICATE" {
            return Err(Error::invalid(
                field,
                format!(
                    "PEM block {} is `{}`, expected `CERTIFICATE`",
                    i + 1,
                    block.tag()
                ),
            ));
        }
        let cert = Certificate::from_der(block.contents()).map_err(|e| {
            Error::invalid(
                field,
                format!("PEM block {} is not an X.509 certificate: {e}", i + 1),
            )
        })?;
        out.push(ParsedCertificate {
            der: block.contents().to_vec(),
            cert,
        });
    }
    Ok(out)
}

/// Summarise a certificate without any secret: SHA-256 fingerprint, subject, issuer, validity.
pub fn summarize(parsed: &ParsedCertificate) -> CertificateSummary {
    let tbs = parsed.cert.tbs_certificate();
    let digest = Sha256::digest(&parsed.der);
    CertificateSummary {
        sha256_fingerprint: digest.iter().map(|b| format!("{b:02x}")).collect(),
        subject: escape_controls(&rfc4514(tbs.subject())),
        issuer: escape_controls(&rfc4514(tbs.issuer())),
        not_before: tbs.validity().not_before.to_unix_duration().as_secs() as i64,
        not_after: tbs.validity().not_after.to_unix_duration().as_secs() as i64,
    }
}

/// For each OID of const-oid's database, the shortest of its names (`OID NAME` lines, generated
/// by `guest/tools/oid-names.py`, `#` lines are comments).
const OID_NAMES: &str = include_str!("../../data/oid_names.txt");

/// The name [`rfc4514`] writes for an attribute type: the shortest of its names in const-oid's
/// database, as x509-cert's `Display` looks it up.
fn oid_name(oid: &ObjectIdentifier) -> Option<&'static str> {
    let dotted = oid.to_string();
    OID_NAMES
        .lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(o, _)| *o == dotted)
        .map(|(_, name)| name)
}

/// A distinguished name as an RFC 4514 string, exactly as x509-cert 0.3's `Display` for `Name`
/// writes it: the RDNs last-first, joined by `,`; the attributes of one RDN joined by `+`; each
/// attribute `NAME=value` (the name upper-cased, RFC 4514 §2.4 escapes, control characters
/// as `\xx`) when its type has a name and its value is a string, else `OID=#` and the hex of
/// its DER (§2.4).
///
/// Written here rather than through that `Display` because it looks names up in const-oid's
/// whole OID database, 1,139 entries of 40-byte OIDs and 12-byte pointers plus their names:
/// about 75 KB of the component, where [`OID_NAMES`] holds the same answers in 36 KB of text.
/// A unit test compares both on every OID of the table and on the test certificates.
fn rfc4514(name: &x509_cert::name::Name) -> String {
    use der::Encode;
    use der::asn1::{Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef};
    use der::{Tag, Tagged};
    let rdns: Vec<_> = name.iter_rdn().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let value = &atv.value;
            let text = match value.tag() {
                Tag::PrintableString => {
                    PrintableStringRef::try_from(value).ok().map(|s| s.as_str())
                }
                Tag::Utf8String => Utf8StringRef::try_from(value).ok().map(|s| s.as_str()),
                Tag::Ia5String => Ia5StringRef::try_from(value).ok().map(|s| s.as_str()),
                Tag::TeletexString => TeletexStringRef::try_from(value).ok().map(|s| s.as_str()),
                _ => None,
            };
            match (oid_name(&atv.oid), text) {
                (Some(key), Some(text)) => {
                    out.push_str(&key.to_ascii_uppercase());
                    out.push('=');
                    let mut chars = text.char_indices().peekable();
                    while let Some((k, c)) = chars.next() {
                        match c {
                            '#' if k == 0 => out.push_str("\\#"),
                            ' ' if k == 0 || chars.peek().is_none() => out.push_str("\\ "),
                            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                                out.push('\\');
                                out.push(c);
                            }
                            '\x00'..='\x1f' | '\x7f' => out.push_str(&format!("\\{:02x}", c as u8)),
                            _ => out.push(c),
                        }
                    }
                }
                _ => {
                    out.push_str(&format!("{}=#", atv.oid));
                    // Re-encoding a value decoded from DER does not fail.
                    for b in value.to_der().unwrap_or_default() {
                        out.push_str(&format!("{b:02x}"));
                    }
                }
            }
        }
    }
    out
}

/// An RFC 4514 string with every control character (line breaks, NUL, escape sequences)
/// written as `\XX` hex pairs, one per UTF-8 byte, which RFC 4514 §2.4 allows for any
/// character: a subject or issuer reaches reports and terminals, and a certificate from Krypton
/// may carry anything in its attribute values.
pub fn escape_controls(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    for c in dn.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The public half of a private key, in the form a certificate's SPKI carries it.
#[derive(PartialEq, Eq)]
enum PublicKey {
    /// Big-endian modulus and exponent, leading zeros stripped.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Curve OID and the SEC1 uncompressed point.
    Ec {
        curve: ObjectIdentifier,
        point: Vec<u8>,
    },
}

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes[first..].to_vec()
}

fn rsa_public_from_pkcs1(field: &str, der: &[u8]) -> Result<PublicKey, Error> {
    let key = pkcs1::RsaPrivateKeyRef::from_der(der)
        .map_err(|e| Error::invalid(field, format!("not a PKCS#1 RSA private key: {e}")))?;
    Ok(PublicKey::Rsa {
        n: strip_zeros(key.modulus.as_bytes()),
        e: strip_zeros(key.public_exponent.as_bytes()),
    })
}

fn ec_public_from_scalar(
    field: &str,
    curve: ObjectIdentifier,
    scalar: &[u8],
) -> Result<PublicKey, Error> {
    use p256::elliptic_curve::sec1::ToSec1Point;
    let bad = |e: p256::elliptic_curve::Error| {
        Error::invalid(field, format!("invalid EC private scalar: {e}"))
    };
    let point = if curve == OID_P256 {
        let sk = p256::SecretKey::from_slice(scalar).map_err(bad)?;
        sk.public_key().to_sec1_point(false).as_bytes().to_vec()
    } else if curve == OID_P384 {
        let sk = p384::SecretKey::from_slice(scalar).map_err(bad)?;
        sk.public_key().to_sec1_point(false).as_bytes().to_vec()
    } else {
        return Err(Error::invalid(
            field,
            format!("unsupported EC curve {curve} (P-256 and P-384 are supported)"),
        ));
    };
    Ok(PublicKey::Ec { curve, point })
}

/// `outer_curve` is the curve named outside the SEC1 structure (PKCS#8 parameters) or, failing
/// that, the certificate's curve: RFC 5915 makes the inner `parameters` optional, and a key
/// without them can only be meant for the certificate it comes with.
fn ec_public_from_sec1(
    field: &str,
    der: &[u8],
    outer_curve: Option<ObjectIdentifier>,
) -> Result<PublicKey, Error> {
    let key = sec1::EcPrivateKey::from_der(der)
        .map_err(|e| Error::invalid(field, format!("not a SEC1 EC private key: {e}")))?;
    let curve = key
        .parameters
        .and_then(|p| p.named_curve())
        .or(outer_curve)
        .ok_or_else(|| Error::invalid(field, "EC private key names no curve"))?;
    ec_public_from_scalar(field, curve, key.private_key)
}

fn public_from_pkcs8(
    field: &str,
    der: &[u8],
    cert_curve: Option<ObjectIdentifier>,
) -> Result<PublicKey, Error> {
    let info = pkcs8::PrivateKeyInfoRef::from_der(der)
        .map_err(|e| Error::invalid(field, format!("not a PKCS#8 private key: {e}")))?;
    if info.algorithm.oid == OID_RSA {
        rsa_public_from_pkcs1(field, info.private_key.as_bytes())
    } else if info.algorithm.oid == OID_EC {
        let curve = info.algorithm.parameters_oid().ok().or(cert_curve);
        ec_public_from_sec1(field, info.private_key.as_bytes(), curve)
    } else {
        Err(Error::invalid(
            field,
            format!(
                "unsupported key algorithm {} (RSA and EC are supported)",
                info.algorithm.oid
            ),
        ))
    }
}

fn public_from_spki(cert: &Certificate) -> Result<PublicKey, Error> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    let bits = spki.subject_public_key.raw_bytes();
    if spki.algorithm.oid == OID_RSA {
        let key = pkcs1::RsaPublicKeyRef::from_der(bits)
            .map_err(|e| Error::invalid("certificate", format!("bad RSA public key: {e}")))?;
        Ok(PublicKey::Rsa {
            n: strip_zeros(key.modulus.as_bytes()),
            e: strip_zeros(key.public_exponent.as_bytes()),
        })
    } else if spki.algorithm.oid == OID_EC {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            .ok_or_else(|| Error::invalid("certificate", "EC public key names no curve"))?;
        // Certificates may carry a compressed point; compare in uncompressed form.
        let point = if curve == OID_P256 {
            use p256::elliptic_curve::sec1::ToSec1Point;
            p256::PublicKey::from_sec1_bytes(bits)
                .map_err(|e| Error::invalid("certificate", format!("bad EC point: {e}")))?
                .to_sec1_point(false)
                .as_bytes()
                .to_vec()
        } else if curve == OID_P384 {
            use p384::elliptic_curve::sec1::ToSec1Point;
            p384::PublicKey::from_sec1_bytes(bits)
                .map_err(|e| Error::invalid("certificate", format!("bad EC point: {e}")))?
                .to_sec1_point(false)
                .as_bytes()
                .to_vec()
        } else {
            return Err(Error::invalid(
                "certificate",
                format!("unsupported EC curve {curve}"),
            ));
        };
        Ok(PublicKey::Ec { curve, point })
    } else {
        Err(Error::invalid(
            "certificate",
            format!(
                "unsupported public key algorithm {} (RSA and EC are supported)",
                spki.algorithm.oid
            ),
        ))
    }
}

/// Check a private key PEM (`privateKey` field) against the leaf certificate and return the
/// normalised key text to store.
///
/// Accepts PKCS#1 (`RSA PRIVATE KEY`), PKCS#8 (`PRIVATE KEY`) and SEC1 (`EC PRIVATE KEY`),
/// RSA or EC P-256/P-384. Errors (all [`Error::InvalidResponse`] on `field`): not PEM, no key
/// block, more than one key, an encrypted key, an unsupported algorithm, or a key whose public
/// half differs from the certificate's.
pub fn check_private_key(field: &str, key_pem: &str, leaf: &Certificate) -> Result<String, Error> {
    let normalized = normalize_pem(key_pem);
    let blocks = pem::parse_many(normalized.as_bytes())
        .map_err(|e| Error::invalid(field, format!("not valid PEM: {e}")))?;
    let keys: Vec<_> = blocks
        .iter()
        .filter(|b| b.tag().ends_with("PRIVATE KEY"))
        .collect();
    let block = match keys.as_slice() {
        [] => return Err(Error::invalid(field, "no PEM PRIVATE KEY block found")),
        [one] => *one,
        _ => return Err(Error::invalid(field, "more than one private key")),
    };
    let encrypted = block.tag() == "ENCRYPTED PRIVATE KEY"
        || block
            .headers()
            .get("Proc-Type")
            .is_some_and(|v| v.contains("ENCRYPTED"));
    if encrypted {
        return Err(Error::invalid(
            field,
            "the private key is encrypted; Krypton keys must arrive unencrypted",
        ));
    }
    let expected = public_from_spki(leaf)?;
    let cert_curve = match &expected {
        PublicKey::Ec { curve, .. } => Some(*curve),
        PublicKey::Rsa { .. } => None,
    };
    let derived = match block.tag() {
        "RSA PRIVATE KEY" => rsa_public_from_pkcs1(field, block.contents())?,
        "EC PRIVATE KEY" => ec_public_from_sec1(field, block.contents(), cert_curve)?,
        "PRIVATE KEY" => public_from_pkcs8(field, block.contents(), cert_curve)?,
        other => {
            return Err(Error::invalid(
                field,
                format!("unsupported PEM block `{other}`"),
            ));
        }
    };
    if derived != expected {
        return Err(Error::invalid(
            field,
            "the private key does not match the certificate's public key",
        ));
    }
    // Re-encode exactly the one key block, canonical armour and line length.
    Ok(pem_text(block.tag(), block.contents().to_vec()))
}

/// A private key as it is exported: PEM text OpenSSL loads, and what was converted to get it.
#[derive(Debug, PartialEq, Eq)]
pub struct ExportKey {
    /// One PEM key block (LF, 64-column lines, final newline).
    pub pem: String,
    /// How [`ExportKey::pem`] differs from the key as stored, in plain words (e.g. `EC PRIVATE
    /// KEY without its curve -> PKCS#8 PRIVATE KEY (P-256)`); `None` when it is the same key
    /// block.
    pub converted: Option<String>,
}

fn curve_name(curve: ObjectIdentifier) -> &'static str {
    if curve == OID_P256 { "P-256" } else { "P-384" }
}

fn pem_text(tag: &str, der: Vec<u8>) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// An EC key as PKCS#8 (RFC 5208 `PrivateKeyInfo`, RFC 5480 §2.1.1: algorithm
/// `id-ecPublicKey` with the `namedCurve` as its parameters) around the unchanged SEC1
/// `ECPrivateKey` DER, which is how `openssl pkcs8 -topk8` writes an EC key.
fn ec_pkcs8(field: &str, curve: ObjectIdentifier, sec1_der: &[u8]) -> Result<String, Error> {
    use der::Encode;
    let bad = |e: der::Error| Error::invalid(field, format!("cannot be written as PKCS#8: {e}"));
    let info = pkcs8::PrivateKeyInfoRef::new(
        pkcs8::AlgorithmIdentifierRef {
            oid: OID_EC,
            parameters: Some((&curve).into()),
        },
        der::asn1::OctetStringRef::new(sec1_der).map_err(bad)?,
    );
    let der = info.to_der().map_err(bad)?;
    Ok(pem_text("PRIVATE KEY", der))
}

/// The key of a certificate bundle in a form that OpenSSL, and the SDKs built on it, load.
///
/// `key_pem` is a key that [`check_private_key`] accepted for `leaf`. RFC 5915 makes the curve
/// of a SEC1 `EC PRIVATE KEY` optional, but OpenSSL cannot load an EC key whose curve is
/// named nowhere (`openssl pkey`: "unsupported"; Python `ssl`, `cryptography` and the AWS IoT
/// Device SDKs fail the same way). Such a key, and a PKCS#8 EC key whose algorithm carries no
/// curve, is written as PKCS#8 with the curve of the certificate it belongs to (the match was
/// checked with that curve). Every other key is written as stored: PKCS#1 `RSA PRIVATE KEY`,
/// PKCS#8 `PRIVATE KEY` (RSA or EC with its curve) and SEC1 with a named curve all load as
/// they are, and an RSA key always stays RSA.
///
/// Errors: [`Error::InvalidResponse`] on `field` when the key is not one [`check_private_key`]
/// accepts for `leaf`.
pub fn exportable_key(field: &str, key_pem: &str, leaf: &Certificate) -> Result<ExportKey, Error> {
    let stored = check_private_key(field, key_pem, leaf)?;
    let block =
        pem::parse(&stored).map_err(|e| Error::invalid(field, format!("not valid PEM: {e}")))?;
    let cert_curve = match public_from_spki(leaf)? {
        PublicKey::Ec { curve, .. } => Some(curve),
        PublicKey::Rsa { .. } => None,
    };
    let conversion = match block.tag() {
        "EC PRIVATE KEY" => {
            let key = sec1::EcPrivateKey::from_der(block.contents())
                .map_err(|e| Error::invalid(field, format!("not a SEC1 EC private key: {e}")))?;
            match (key.parameters.and_then(|p| p.named_curve()), cert_curve) {
                (Some(_), _) => None,
                (None, Some(curve)) => Some((
                    ec_pkcs8(field, curve, block.contents())?,
                    format!(
                        "EC PRIVATE KEY without its curve -> PKCS#8 PRIVATE KEY ({})",
                        curve_name(curve)
                    ),
                )),
                (None, None) => return Err(Error::invalid(field, "EC private key names no curve")),
            }
        }
        "PRIVATE KEY" => {
            let info = pkcs8::PrivateKeyInfoRef::from_der(block.contents())
                .map_err(|e| Error::invalid(field, format!("not a PKCS#8 private key: {e}")))?;
            if info.algorithm.oid == OID_EC && info.algorithm.parameters_oid().is_err() {
                let inner =
                    sec1::EcPrivateKey::from_der(info.private_key.as_bytes()).map_err(|e| {
                        Error::invalid(field, format!("not a SEC1 EC private key: {e}"))
                    })?;
                let curve = inner
                    .parameters
                    .and_then(|p| p.named_curve())
                    .or(cert_curve)
                    .ok_or_else(|| Error::invalid(field, "EC private key names no curve"))?;
                Some((
                    ec_pkcs8(field, curve, info.private_key.as_bytes())?,
                    format!(
                        "PKCS#8 PRIVATE KEY without its curve -> PKCS#8 PRIVATE KEY ({})",
                        curve_name(curve)
                    ),
                ))
            } else {
                None
            }
        }
        _ => None,
    };
    Ok(match conversion {
        Some((pem, converted)) => {
            // The converted key is still this certificate's key.
            check_private_key(field, &pem, leaf)?;
            ExportKey {
                pem,
                converted: Some(converted),
            }
        }
        None => ExportKey {
            pem: stored,
            converted: None,
        },
    })
}

/// Certificates re-armoured as canonical PEM (LF, 64-column lines, final newline).
pub fn certificates_to_pem(certs: &[ParsedCertificate]) -> String {
    certs
        .iter()
        .map(|c| pem_text("CERTIFICATE", c.der.clone()))
        .collect()
}

/// Validated certificate, key and optional root CA, as canonical PEM.
pub struct Credentials {
    /// The certificate and its chain, leaf first.
    pub certificate: String,
    /// The private key, PEM, as Krypton sent it (checked to match the leaf).
    pub private_key: Secret,
    /// The root CA, canonical PEM, when Krypton sent one.
    pub root_ca_certificate: Option<String>,
}

/// Parse and check a certificate (chain), its private key and an optional root CA, and
/// re-encode each as canonical PEM from the parsed DER.
/// Errors: [`Error::InvalidResponse`] naming `certificate`, `privateKey` or
/// `rootCaCertificate`.
pub fn credentials(
    cert_pem: &str,
    key_pem: &str,
    root_pem: Option<&str>,
) -> Result<Credentials, Error> {
    let certs = parse_certificates("certificate", cert_pem)?;
    let private_key = check_private_key("privateKey", key_pem, &certs[0].cert)?;
    let root_ca_certificate = match root_pem {
        Some(text) => Some(certificates_to_pem(&parse_certificates(
            "rootCaCertificate",
            text,
        )?)),
        None => None,
    };
    Ok(Credentials {
        certificate: certificates_to_pem(&certs),
        private_key: Secret::new(private_key),
        root_ca_certificate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_are_escaped_as_hex_pairs() {
        assert_eq!(
            escape_controls("CN=gw\n[Interface],O=a\rb\u{0}\u{85}"),
            "CN=gw\\0A[Interface],O=a\\0Db\\00\\C2\\85"
        );
        assert_eq!(escape_controls("CN=caf\u{e9},O=x"), "CN=caf\u{e9},O=x");
    }

    const RSA_CRT: &str = include_str!("../../testdata/rsa.crt");
    const RSA_PKCS1: &str = include_str!("../../testdata/rsa-pkcs1.key");
    const RSA_PKCS8: &str = include_str!("../../testdata/rsa-pkcs8.key");
    const EC_CRT: &str = include_str!("../../testdata/ec.crt");
    const EC_SEC1: &str = include_str!("../../testdata/ec-sec1.key");
    const EC_PKCS8: &str = include_str!("../../testdata/ec-pkcs8.key");
    const EC384_CRT: &str = include_str!("../../testdata/ec384.crt");
    const EC384_SEC1: &str = include_str!("../../testdata/ec384-sec1.key");
    const EC384_PKCS8: &str = include_str!("../../testdata/ec384-pkcs8.key");
    const OTHER_EC: &str = include_str!("../../testdata/other-ec-sec1.key");
    const EC_ENCRYPTED: &str = include_str!("../../testdata/ec-encrypted.key");
    const ROOT_CRT: &str = include_str!("../../testdata/root.crt");

    fn leaf(pem: &str) -> Certificate {
        parse_certificates("certificate", pem)
            .unwrap()
            .remove(0)
            .cert
    }

    fn field_of(e: Error) -> (String, String) {
        match e {
            Error::InvalidResponse { field, reason, .. } => (field, reason),
            other => panic!("expected InvalidResponse, got {other:?}"),
        }
    }

    #[test]
    fn every_supported_key_format_matches_its_certificate() {
        for (cert, key, tag) in [
            (RSA_CRT, RSA_PKCS1, "RSA PRIVATE KEY"),
            (RSA_CRT, RSA_PKCS8, "PRIVATE KEY"),
            (EC_CRT, EC_SEC1, "EC PRIVATE KEY"),
            (EC_CRT, EC_PKCS8, "PRIVATE KEY"),
            (EC384_CRT, EC384_SEC1, "EC PRIVATE KEY"),
        ] {
            let stored = check_private_key("privateKey", key, &leaf(cert)).unwrap();
            assert!(
                stored.starts_with(&format!("-----BEGIN {tag}-----\n")),
                "{tag}"
            );
            assert!(stored.ends_with(&format!("-----END {tag}-----\n")));
            // Same key material as the input, only re-armoured.
            assert_eq!(
                pem::parse(&stored).unwrap().contents(),
                pem::parse(key).unwrap().contents()
            );
        }
    }

    /// `sec1_pem` with the curve removed from its `parameters` ([0]), as some issuers send it.
    fn sec1_without_curve(sec1_pem: &str) -> String {
        use der::Encode;
        let block = pem::parse(sec1_pem).unwrap();
        let mut key = sec1::EcPrivateKey::from_der(block.contents()).unwrap();
        assert!(key.parameters.is_some());
        key.parameters = None;
        pem_text("EC PRIVATE KEY", key.to_der().unwrap())
    }

    /// `pkcs8_pem` with the curve removed from its algorithm parameters.
    fn pkcs8_without_curve(pkcs8_pem: &str) -> String {
        use der::Encode;
        let block = pem::parse(pkcs8_pem).unwrap();
        let mut info = pkcs8::PrivateKeyInfoRef::from_der(block.contents()).unwrap();
        assert!(info.algorithm.parameters.is_some());
        info.algorithm.parameters = None;
        pem_text("PRIVATE KEY", info.to_der().unwrap())
    }

    #[test]
    fn an_ec_key_without_its_curve_is_exported_as_pkcs8_with_the_certificates_curve() {
        for (cert, sec1, openssl_pkcs8, oid, name) in [
            (EC_CRT, EC_SEC1, EC_PKCS8, OID_P256, "P-256"),
            (EC384_CRT, EC384_SEC1, EC384_PKCS8, OID_P384, "P-384"),
        ] {
            let no_curve = sec1_without_curve(sec1);
            // What validation stores is what was sent: still SEC1 without a curve.
            let stored = check_private_key("privateKey", &no_curve, &leaf(cert)).unwrap();
            assert_eq!(stored, no_curve);
            let out = exportable_key("privateKey", &stored, &leaf(cert)).unwrap();
            assert_eq!(
                out.converted.as_deref(),
                Some(
                    format!("EC PRIVATE KEY without its curve -> PKCS#8 PRIVATE KEY ({name})")
                        .as_str()
                )
            );
            // Byte for byte what `openssl pkcs8 -topk8 -nocrypt` writes for the same key.
            assert_eq!(out.pem, openssl_pkcs8, "{name}");
            let block = pem::parse(&out.pem).unwrap();
            let info = pkcs8::PrivateKeyInfoRef::from_der(block.contents()).unwrap();
            assert_eq!(info.algorithm.oid, OID_EC);
            assert_eq!(info.algorithm.parameters_oid().unwrap(), oid);
            assert_eq!(
                info.private_key.as_bytes(),
                pem::parse(&no_curve).unwrap().contents()
            );
        }
        // A PKCS#8 EC key whose algorithm names no curve gets the curve as well.
        let no_curve = pkcs8_without_curve(EC_PKCS8);
        let out = exportable_key("privateKey", &no_curve, &leaf(EC_CRT)).unwrap();
        assert_eq!(
            out,
            ExportKey {
                pem: EC_PKCS8.to_string(),
                converted: Some(
                    "PKCS#8 PRIVATE KEY without its curve -> PKCS#8 PRIVATE KEY (P-256)".into()
                ),
            }
        );
    }

    #[test]
    fn keys_that_openssl_loads_are_exported_unchanged() {
        for (cert, key) in [
            (RSA_CRT, RSA_PKCS1),
            (RSA_CRT, RSA_PKCS8),
            (EC_CRT, EC_SEC1),
            (EC_CRT, EC_PKCS8),
            (EC384_CRT, EC384_SEC1),
            (EC384_CRT, EC384_PKCS8),
        ] {
            let out = exportable_key("privateKey", key, &leaf(cert)).unwrap();
            assert_eq!(
                out,
                ExportKey {
                    pem: key.to_string(),
                    converted: None
                }
            );
        }
        // An RSA key stays PKCS#1 RSA.
        let out = exportable_key("privateKey", RSA_PKCS1, &leaf(RSA_CRT)).unwrap();
        assert!(out.pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        // Export checks the pair again: a key of another pair is never written.
        let (field, reason) = field_of(
            exportable_key("privateKey", &sec1_without_curve(OTHER_EC), &leaf(EC_CRT)).unwrap_err(),
        );
        assert_eq!(field, "privateKey");
        assert_eq!(
            reason,
            "the private key does not match the certificate's public key"
        );
    }

    #[test]
    fn a_key_of_another_pair_is_rejected() {
        let (field, reason) =
            field_of(check_private_key("privateKey", OTHER_EC, &leaf(EC_CRT)).unwrap_err());
        assert_eq!(field, "privateKey");
        assert_eq!(
            reason,
            "the private key does not match the certificate's public key"
        );
        // An RSA key against an EC certificate as well.
        let (_, reason) =
            field_of(check_private_key("privateKey", RSA_PKCS1, &leaf(EC_CRT)).unwrap_err());
        assert!(reason.contains("does not match"), "{reason}");
    }

    #[test]
    fn encrypted_and_missing_keys_are_clear_errors() {
        let (_, reason) =
            field_of(check_private_key("privateKey", EC_ENCRYPTED, &leaf(EC_CRT)).unwrap_err());
        assert!(reason.contains("encrypted"), "{reason}");
        let (_, reason) =
            field_of(check_private_key("privateKey", EC_CRT, &leaf(EC_CRT)).unwrap_err());
        assert_eq!(reason, "no PEM PRIVATE KEY block found");
        let (_, reason) =
            field_of(check_private_key("privateKey", "hello", &leaf(EC_CRT)).unwrap_err());
        assert_eq!(reason, "no PEM PRIVATE KEY block found");
    }

    #[test]
    fn key_errors_never_echo_key_material() {
        // A corrupted key body: the error must not contain any line of the key.
        let corrupted = EC_SEC1.replacen("MHc", "MHd", 1);
        let err = check_private_key("privateKey", &corrupted, &leaf(EC_CRT)).unwrap_err();
        let text = format!("{err} {err:?}");
        for line in EC_SEC1.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(line), "error echoes key material: {text}");
        }
    }

    #[test]
    fn messy_pem_is_normalised_and_chains_do_not_fuse() {
        let crlf = EC_CRT.replace('\n', "\r\n");
        let cr = EC_CRT.replace('\n', "\r");
        let spaces = EC_CRT.replace('\n', "  \n");
        let no_final_newline = EC_CRT.trim_end().to_string();
        for messy in [crlf, cr, spaces, no_final_newline] {
            let certs = parse_certificates("certificate", &messy).unwrap();
            assert_eq!(certs_to_one(&certs), EC_CRT);
        }
        // Two blocks glued without a newline between END and BEGIN.
        let glued = format!("{}{}", EC_CRT.trim_end(), ROOT_CRT);
        let chain = parse_certificates("certificate", &glued).unwrap();
        assert_eq!(chain.len(), 2);
        let stored = certificates_to_pem(&chain);
        assert_eq!(stored, format!("{EC_CRT}{ROOT_CRT}"));
        assert_eq!(stored.matches("-----BEGIN CERTIFICATE-----\n").count(), 2);
    }

    fn certs_to_one(certs: &[ParsedCertificate]) -> String {
        assert_eq!(certs.len(), 1);
        certificates_to_pem(certs)
    }

    #[test]
    fn not_a_certificate_names_the_field() {
        let (field, reason) = field_of(
            parse_certificates("rootCaCertificate", "junk")
                .err()
                .unwrap(),
        );
        assert_eq!(field, "rootCaCertificate");
        assert_eq!(reason, "no PEM CERTIFICATE block found");
        let (_, reason) = field_of(parse_certificates("certificate", EC_SEC1).err().unwrap());
        assert_eq!(
            reason,
            "PEM block 1 is `EC PRIVATE KEY`, expected `CERTIFICATE`"
        );
        let bogus = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let (_, reason) = field_of(parse_certificates("certificate", bogus).err().unwrap());
        assert!(
            reason.starts_with("PEM block 1 is not an X.509 certificate"),
            "{reason}"
        );
    }

    /// A DER `Name` of one RDN per `(oid, tag, value)` group, the attributes of a group in one
    /// multi-valued RDN.
    fn name_der(rdns: &[&[(ObjectIdentifier, der::Tag, &[u8])]]) -> x509_cert::name::Name {
        use der::Encode;
        let tlv = |tag: u8, body: Vec<u8>| {
            let mut out = vec![tag];
            out.extend(der::Length::try_from(body.len()).unwrap().to_der().unwrap());
            out.extend(body);
            out
        };
        let mut seq = Vec::new();
        for rdn in rdns {
            let mut set = Vec::new();
            for (oid, tag, value) in rdn.iter() {
                let atv = x509_cert::attr::AttributeTypeAndValue {
                    oid: *oid,
                    value: der::Any::new(*tag, *value).unwrap(),
                };
                set.extend(atv.to_der().unwrap());
            }
            seq.extend(tlv(0x31, set));
        }
        x509_cert::name::Name::from_der(&tlv(0x30, seq)).unwrap()
    }

    #[test]
    fn names_are_written_as_x509_cert_writes_them() {
        use der::Tag;
        // Every OID of the table, with a value that needs each kind of escape: the name
        // found and the escapes are x509-cert's (whose `Display` looks names up in
        // const-oid's database itself).
        let mut checked = 0;
        for line in OID_NAMES.lines().filter(|l| !l.starts_with('#')) {
            let (dotted, _) = line.split_once(' ').unwrap();
            let oid = ObjectIdentifier::new(dotted).unwrap();
            let name = name_der(&[&[(
                oid,
                Tag::Utf8String,
                "#a, b+c;\"d<e>\\\u{1}\u{7f} ".as_bytes(),
            )]]);
            assert_eq!(rfc4514(&name), name.to_string(), "{dotted}");
            checked += 1;
        }
        assert_eq!(checked, 1017);
        let cn = ObjectIdentifier::new_unwrap("2.5.4.3");
        let o = ObjectIdentifier::new_unwrap("2.5.4.10");
        let unknown = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1");
        for name in [
            // Several RDNs (written last-first), a multi-valued one, every string type.
            name_der(&[
                &[(o, Tag::PrintableString, b"Krypton Test")],
                &[(cn, Tag::Utf8String, b"gw"), (o, Tag::Ia5String, b"x y")],
                &[(cn, Tag::TeletexString, b"t")],
            ]),
            // No name for the type, or a value that is not a string: `OID=#hex`.
            name_der(&[
                &[(unknown, Tag::Utf8String, b"v")],
                &[(cn, Tag::Integer, &[5])],
            ]),
            name_der(&[&[(cn, Tag::Utf8String, b" ")]]),
            name_der(&[]),
        ] {
            assert_eq!(rfc4514(&name), name.to_string());
        }
        for pem in [RSA_CRT, EC_CRT, EC384_CRT, ROOT_CRT] {
            let cert = leaf(pem);
            let tbs = cert.tbs_certificate();
            assert_eq!(rfc4514(tbs.subject()), tbs.subject().to_string());
            assert_eq!(rfc4514(tbs.issuer()), tbs.issuer().to_string());
        }
    }

    #[test]
    fn the_oid_names_table_comes_from_the_const_oid_in_the_lockfile() {
        // Regenerate the table (`guest/tools/oid-names.py`) when const-oid changes: its
        // database may name more OIDs.
        let header = OID_NAMES.lines().next().unwrap();
        let lock = include_str!("../../../Cargo.lock");
        let versions: Vec<_> = lock
            .split("[[package]]")
            .filter(|p| p.contains("\nname = \"const-oid\"\n"))
            .filter_map(|p| p.split("\nversion = \"").nth(1)?.split('"').next())
            .collect();
        assert!(
            versions
                .iter()
                .any(|v| header.starts_with(&format!("# const-oid {v}:"))),
            "{header} / {versions:?}"
        );
    }

    #[test]
    fn summary_matches_openssl() {
        let cert = &parse_certificates("certificate", EC_CRT).unwrap()[0];
        let s = summarize(cert);
        // Reference values: `openssl x509 -in testdata/ec.crt -noout -fingerprint -sha256 -subject`.
        assert_eq!(
            s.sha256_fingerprint,
            include_str!("../../testdata/ec.crt.sha256").trim()
        );
        // RFC 4514 writes the RDNs last-first.
        assert_eq!(s.subject, "O=Krypton Test,CN=ec-device");
        assert_eq!(s.subject, s.issuer);
        assert_eq!(s.not_after - s.not_before, 36500 * 86400);
    }
}
