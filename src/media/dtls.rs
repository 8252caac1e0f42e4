//! The DTLS identity of this process: one ECDSA P-256 certificate given to
//! every `webrtcbin` we create (participants, viewers, bots).
//!
//! GStreamer 1.22's DTLS elements generate an RSA-2048 certificate unless
//! they are given one; WebRTC stacks that offer only ECDHE-ECDSA cipher
//! suites (aiortc, some embedded stacks) then fail the handshake with "no
//! shared cipher". Browsers accept both. An ECDSA certificate works with
//! everyone, and its handshake is cheaper than RSA's.
//!
//! The certificate is generated once per process, or loaded from a PEM file
//! (`tessera serve --dtls-cert FILE`) so that a restarted server or every
//! node of a cluster keeps the same fingerprint.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use gst::prelude::*;

use crate::certs::Identity;
pub use crate::certs::sha256_fingerprint;

/// A certificate and its private key, in the PEM form GStreamer's DTLS
/// elements take (`dtlssrtpdec`'s `pem`: certificate and key in one string).
#[derive(Clone)]
pub struct DtlsCertificate {
    pem: Arc<str>,
    fingerprint: Arc<str>,
    key_type: &'static str,
}

impl std::fmt::Debug for DtlsCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("DtlsCertificate").field("key_type", &self.key_type).field("fingerprint", &self.fingerprint).finish()
    }
}

static PROCESS: OnceLock<std::result::Result<DtlsCertificate, String>> = OnceLock::new();

impl DtlsCertificate {
    /// A new self-signed ECDSA P-256 certificate (SHA-256 signature).
    pub fn generate() -> Result<DtlsCertificate> {
        Ok(DtlsCertificate::of(Identity::generate(&["tessera".to_string()])?))
    }

    fn of(id: Identity) -> DtlsCertificate {
        DtlsCertificate { pem: format!("{}{}", id.cert_pem, id.key_pem).into(), fingerprint: id.fingerprint().into(), key_type: id.key_type }
    }

    /// The certificate of this process: generated at the first call, the
    /// same one afterwards.
    pub fn process() -> Result<DtlsCertificate> {
        PROCESS
            .get_or_init(|| DtlsCertificate::generate().map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// Load a PEM file holding one certificate and its private key (in
    /// either order). The key must belong to the certificate.
    pub fn from_pem_file(path: &Path) -> Result<DtlsCertificate> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the DTLS certificate {}", path.display()))?;
        DtlsCertificate::from_pem(&text).with_context(|| format!("{} is not a usable DTLS certificate", path.display()))
    }

    /// Parse a PEM string holding one certificate and its private key.
    pub fn from_pem(text: &str) -> Result<DtlsCertificate> {
        let id = Identity::from_pem(text, false)?;
        if id.key_type == "other" {
            // Browsers accept it; stacks that offer only ECDHE-ECDSA suites do not.
            tracing::warn!("the DTLS certificate's key is not ECDSA: clients offering only ECDHE-ECDSA cipher suites (aiortc) will not connect");
        }
        Ok(DtlsCertificate::of(id))
    }

    /// `AB:CD:...`: the SHA-256 fingerprint as it appears in SDP
    /// (`a=fingerprint:sha-256 AB:CD:...`).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn key_type(&self) -> &'static str {
        self.key_type
    }

    /// Certificate and private key as DER (what str0m takes).
    pub fn der(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let blocks = pem::parse_many(self.pem.as_bytes()).context("the DTLS certificate's PEM does not parse")?;
        let find = |tag: &str| blocks.iter().find(|b| b.tag().ends_with(tag)).map(|b| b.contents().to_vec());
        let cert = find("CERTIFICATE").context("no certificate in the DTLS PEM")?;
        let key = find("PRIVATE KEY").context("no private key in the DTLS PEM")?;
        Ok((cert, key))
    }

    /// Certificate and private key, PEM: what `--dtls-cert` loads.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// `desc` (an offer or answer webrtcbin made) with this certificate's
    /// fingerprint: set and send this one. See [`with_fingerprint`].
    pub(crate) fn local_description(&self, desc: &gst_webrtc::WebRTCSessionDescription) -> Result<gst_webrtc::WebRTCSessionDescription> {
        with_fingerprint(desc, &self.fingerprint)
    }

    /// Give this certificate to every DTLS transport `pipeline`'s webrtcbin
    /// creates. Call before the pipeline plays, and negotiate (make or
    /// apply the offer) only once it is PLAYING with no state change in
    /// flight: webrtcbin creates its transports while it negotiates.
    ///
    /// A transport's decoder half (`dtlssrtpdec`) creates the DTLS
    /// connection that both halves share; giving it our certificate
    /// replaces that connection, which is safe while the decoder is still
    /// in NULL: it connects its peer-certificate handler, and the encoder
    /// half takes the connection, only on their way to READY. A decoder
    /// that reached READY first (a state change racing the transport's
    /// creation) keeps no handler on the new connection and refuses every
    /// peer certificate ("certificate verify failed").
    pub fn apply(&self, pipeline: &gst::Pipeline) {
        let pem = self.pem.clone();
        pipeline.connect_deep_element_added(move |_, _, e| {
            if e.factory().is_some_and(|f| f.name() == "dtlssrtpdec") {
                if e.current_state() != gst::State::Null {
                    tracing::warn!("{} is already {:?} when it gets the DTLS certificate: its handshake will fail", e.name(), e.current_state());
                }
                e.set_property("pem", &*pem);
            }
        });
    }
}

/// The SDP of `desc` with every `a=fingerprint` line replaced by this
/// certificate's SHA-256 fingerprint.
///
/// GStreamer 1.22's webrtcbin computes the fingerprint it puts in its own
/// offers and answers by base64-decoding *every* line of the PEM it reads
/// back from the DTLS transport except the `-----` markers: with a given
/// certificate that PEM also holds the private key, so the fingerprint
/// covers the key's bytes too and no peer's check could pass. webrtcbin
/// never reads its own fingerprint back, so the local description is
/// corrected before it is set and sent.
pub(crate) fn with_fingerprint(desc: &gst_webrtc::WebRTCSessionDescription, fingerprint: &str) -> Result<gst_webrtc::WebRTCSessionDescription> {
    let text = desc.sdp().as_text().context("local SDP does not print")?;
    let fixed = replace_fingerprints(&text, fingerprint);
    let msg = gst_sdp::SDPMessage::parse_buffer(fixed.as_bytes()).context("local SDP does not parse after the fingerprint fix")?;
    Ok(gst_webrtc::WebRTCSessionDescription::new(desc.type_(), msg))
}

fn replace_fingerprints(sdp: &str, fingerprint: &str) -> String {
    sdp.split_inclusive('\n')
        .map(|line| {
            if line.starts_with("a=fingerprint:") {
                let eol = if line.ends_with("\r\n") { "\r\n" } else if line.ends_with('\n') { "\n" } else { "" };
                format!("a=fingerprint:sha-256 {fingerprint}{eol}")
            } else {
                line.to_string()
            }
        })
        .collect()
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_ecdsa_and_reloads_with_the_same_fingerprint() {
        let c = DtlsCertificate::generate().unwrap();
        assert_eq!(c.key_type(), "ECDSA P-256");
        assert_eq!(c.fingerprint().len(), 32 * 3 - 1);
        let again = DtlsCertificate::from_pem(&c.pem).unwrap();
        assert_eq!(again.fingerprint(), c.fingerprint());
        assert_eq!(again.key_type(), "ECDSA P-256");
    }

    #[test]
    fn the_process_certificate_is_generated_once() {
        let a = DtlsCertificate::process().unwrap();
        let b = DtlsCertificate::process().unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn a_key_from_another_certificate_is_refused() {
        let a = DtlsCertificate::generate().unwrap();
        let b = DtlsCertificate::generate().unwrap();
        let cert_a = pem::parse_many(&*a.pem).unwrap().into_iter().find(|p| p.tag() == "CERTIFICATE").unwrap();
        let key_b = pem::parse_many(&*b.pem).unwrap().into_iter().find(|p| p.tag() == "PRIVATE KEY").unwrap();
        let mixed = format!("{}{}", pem::encode(&cert_a), pem::encode(&key_b));
        let e = DtlsCertificate::from_pem(&mixed).unwrap_err();
        assert!(format!("{e:#}").contains("does not belong"), "{e:#}");
    }

    #[test]
    fn files_without_a_key_or_certificate_are_refused() {
        let a = DtlsCertificate::generate().unwrap();
        let cert_only: String = a.pem.split_inclusive('\n').take_while(|l| !l.contains("PRIVATE KEY")).collect();
        assert!(format!("{:#}", DtlsCertificate::from_pem(&cert_only).unwrap_err()).contains("no PRIVATE KEY"));
        assert!(DtlsCertificate::from_pem("hello").is_err());
        assert!(DtlsCertificate::from_pem("").is_err());
        let e = DtlsCertificate::from_pem_file(Path::new("/nonexistent/dtls.pem")).unwrap_err();
        assert!(format!("{e:#}").contains("cannot read"), "{e:#}");
    }
}

#[cfg(test)]
mod gst_tests {
    use gst::prelude::*;

    /// Regression: with our certificate given, webrtcbin 1.22 put a
    /// fingerprint over certificate AND key in its offer, and every peer
    /// failed the DTLS handshake with "fingerprint mismatch".
    #[test]
    fn the_offer_carries_the_fingerprint_of_the_given_certificate() {
        crate::media::init().unwrap();
        let p = gst::parse::launch(
            "webrtcbin name=w bundle-policy=max-bundle audiotestsrc is-live=true ! opusenc ! rtpopuspay \
             ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! w.sink_0",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let w = p.by_name("w").unwrap();
        let cert = super::DtlsCertificate::generate().unwrap();
        cert.apply(&p);
        p.set_state(gst::State::Playing).unwrap();
        let promise = gst::Promise::new();
        w.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
        promise.wait();
        let offer = promise.get_reply().unwrap().value("offer").unwrap().get::<gst_webrtc::WebRTCSessionDescription>().unwrap();
        // The transport holds our certificate...
        let dec = p.iterate_recurse().into_iter().flatten().find(|e| e.factory().is_some_and(|f| f.name() == "dtlssrtpdec")).unwrap();
        let pem: String = dec.property("pem");
        assert_eq!(super::DtlsCertificate::from_pem(&pem).unwrap().fingerprint(), cert.fingerprint());
        // ... and the corrected offer names it.
        let fixed = cert.local_description(&offer).unwrap().sdp().as_text().unwrap();
        let lines: Vec<&str> = fixed.lines().filter(|l| l.starts_with("a=fingerprint:")).collect();
        assert!(!lines.is_empty(), "{fixed}");
        for l in lines {
            assert_eq!(l, format!("a=fingerprint:sha-256 {}", cert.fingerprint()));
        }
        p.set_state(gst::State::Null).unwrap();
    }

    #[test]
    fn fingerprint_lines_are_replaced_and_nothing_else() {
        let sdp = "v=0\r\na=fingerprint:sha-256 AA:BB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 CC\r\na=mid:0\r\n";
        let out = super::replace_fingerprints(sdp, "01:02");
        assert_eq!(out, "v=0\r\na=fingerprint:sha-256 01:02\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 01:02\r\na=mid:0\r\n");
    }
}
