//! Certificates and keys, without GStreamer or warp: the DTLS identity of
//! every webrtcbin ([`crate::media::dtls`]) and the TLS identity of the
//! HTTPS/WSS listener ([`crate::signaling`]) are both made or loaded here.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// A certificate (or a chain, leaf first) and its private key, PEM.
#[derive(Clone)]
pub struct Identity {
    /// Every CERTIFICATE block, leaf first.
    pub cert_pem: String,
    pub key_pem: String,
    /// The leaf certificate, DER.
    pub leaf_der: Vec<u8>,
    pub key_type: &'static str,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("Identity").field("key_type", &self.key_type).field("fingerprint", &self.fingerprint()).finish()
    }
}

impl Identity {
    /// A new self-signed ECDSA P-256 certificate (SHA-256 signature) for
    /// `names`: DNS names, or IP addresses (written as such).
    pub fn generate(names: &[String]) -> Result<Identity> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating an ECDSA P-256 key")?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).context("certificate parameters")?;
        for n in names {
            let san = match n.parse::<IpAddr>() {
                Ok(ip) => rcgen::SanType::IpAddress(ip),
                Err(_) => rcgen::SanType::DnsName(n.clone().try_into().with_context(|| format!("`{n}` is not an ASCII host name or an IP address"))?),
            };
            params.subject_alt_names.push(san);
        }
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, names.first().cloned().unwrap_or_else(|| "tessera".into()));
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).context("self-signing the certificate")?;
        Ok(Identity { cert_pem: cert.pem(), key_pem: key.serialize_pem(), leaf_der: cert.der().to_vec(), key_type: "ECDSA P-256" })
    }

    /// Parse PEM text holding the certificate(s) and the private key, in any
    /// order. `chain`: more than one certificate is allowed (leaf first).
    /// The key must belong to the (leaf) certificate.
    pub fn from_pem(text: &str, chain: bool) -> Result<Identity> {
        let blocks = pem::parse_many(text).context("not PEM")?;
        let certs: Vec<&pem::Pem> = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").collect();
        match (certs.len(), chain) {
            (0, _) => bail!("no CERTIFICATE block"),
            (1, _) | (_, true) => {}
            (n, false) => bail!("expected exactly one CERTIFICATE block, found {n}"),
        }
        let leaf = certs[0];
        let Some(key_block) = blocks.iter().find(|b| b.tag().ends_with("PRIVATE KEY")) else {
            bail!("no PRIVATE KEY block");
        };
        let key = rcgen::KeyPair::from_pem(&pem::encode(key_block)).context("the private key is not a PKCS#8 ECDSA, Ed25519 or RSA key")?;
        // The certificate's SubjectPublicKeyInfo holds the key's public
        // point (ECDSA) or modulus (RSA) verbatim.
        let public = key.public_key_raw();
        if public.is_empty() || !leaf.contents().windows(public.len()).any(|w| w == public) {
            bail!("the private key does not belong to the certificate");
        }
        let key_type = if key.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            "ECDSA P-256"
        } else if key.is_compatible(&rcgen::PKCS_ECDSA_P384_SHA384) {
            "ECDSA P-384"
        } else {
            "other"
        };
        Ok(Identity {
            cert_pem: certs.iter().map(|c| pem::encode(c)).collect(),
            key_pem: pem::encode(key_block),
            leaf_der: leaf.contents().to_vec(),
            key_type,
        })
    }

    /// Load the certificate(s) and the key from two files (or one file given twice).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Identity> {
        let read = |p: &Path, what: &str| std::fs::read_to_string(p).with_context(|| format!("cannot read the {what} {}", p.display()));
        let mut text = read(cert, "certificate")?;
        if key != cert {
            text.push('\n');
            text.push_str(&read(key, "private key")?);
        }
        Identity::from_pem(&text, true).with_context(|| format!("{} and {} are not a usable certificate and key", cert.display(), key.display()))
    }

    /// `AB:CD:...`: the SHA-256 fingerprint of the leaf certificate.
    pub fn fingerprint(&self) -> String {
        sha256_fingerprint(&self.leaf_der)
    }
}

/// `AB:CD:...`, as in SDP's `a=fingerprint:sha-256`.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_names_its_hosts_and_reloads() {
        let id = Identity::generate(&["localhost".into(), "10.1.2.3".into()]).unwrap();
        let again = Identity::from_pem(&format!("{}{}", id.cert_pem, id.key_pem), false).unwrap();
        assert_eq!(again.fingerprint(), id.fingerprint());
        assert_eq!(again.key_type, "ECDSA P-256");
        // The IP address is a SAN of type IP (4 octets), not a DNS name.
        assert!(id.leaf_der.windows(4).any(|w| w == [10, 1, 2, 3]));
        assert!(Identity::generate(&["naïve.lan".into()]).is_err(), "not ASCII");
    }

    #[test]
    fn a_key_of_another_certificate_or_a_missing_part_is_refused() {
        let a = Identity::generate(&["a".into()]).unwrap();
        let b = Identity::generate(&["b".into()]).unwrap();
        let e = Identity::from_pem(&format!("{}{}", a.cert_pem, b.key_pem), true).unwrap_err();
        assert!(format!("{e:#}").contains("does not belong"), "{e:#}");
        assert!(format!("{:#}", Identity::from_pem(&a.cert_pem, true).unwrap_err()).contains("no PRIVATE KEY"));
        assert!(format!("{:#}", Identity::from_pem(&a.key_pem, true).unwrap_err()).contains("no CERTIFICATE"));
        let two = format!("{}{}{}", a.cert_pem, b.cert_pem, a.key_pem);
        assert!(Identity::from_pem(&two, false).is_err(), "DTLS takes one certificate");
        assert_eq!(Identity::from_pem(&two, true).unwrap().fingerprint(), a.fingerprint(), "a chain, leaf first");
    }
}
