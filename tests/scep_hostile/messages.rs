//! pkiMessages by hand: `Msg` (a PKCSReq field by field, signed for real), envelopes and
//! the `Kit` of devices, CA, OTPs and base messages every variant is built from.

use certman::keys::{HashAlgorithm, SignatureScheme};
use certman::protocols::scep::message::{self, ContentCipher, MessageCertificate, MessageDigest};
use certman::x509::cms::enveloped::{self, Recipient};

use crate::common::scep::Device;
use crate::der::{
    alg, int, octets, oid, printable, seq, set, tlv, CONTENT_TYPE, DATA, MESSAGE_DIGEST,
    MESSAGE_TYPE, NULL, RSA, SENDER_NONCE, SHA256, SIGNED_DATA, TRANSACTION_ID,
};

/// A password of the OTP shape that the store does not have.
pub(crate) const WRONG_OTP: &str = "0123456789ABCDEF0123";

// ------------------------------------------------------------------ pkiMessages by hand

/// A signed attribute value: the messageDigest of the content, computed at encoding, or DER.
#[derive(Clone)]
pub(crate) enum Val {
    Digest,
    Raw(Vec<u8>),
}

#[derive(Clone)]
pub(crate) struct Attr {
    pub(crate) oid: Vec<u8>,
    pub(crate) values: Vec<Val>,
}

fn attr(o: &str, values: Vec<Val>) -> Attr {
    Attr {
        oid: oid(o),
        values,
    }
}

/// A pkiMessage, field by field (each an encoded TLV, so that any of them can be wrong),
/// signed for real at `encode` unless `signature` is set.
#[derive(Clone)]
pub(crate) struct Msg<'a> {
    /// who signs
    pub(crate) key: &'a Device,
    content_type: Vec<u8>,
    pub(crate) version: Vec<u8>,
    pub(crate) digest_algs: Vec<u8>,
    e_content_type: Vec<u8>,
    pub(crate) e_content: Option<Vec<u8>>,
    pub(crate) certificates: Option<Vec<Vec<u8>>>,
    pub(crate) si_version: Vec<u8>,
    pub(crate) sid: Vec<u8>,
    pub(crate) digest_alg: Vec<u8>,
    pub(crate) attrs: Option<Vec<Attr>>,
    /// sort the signed attributes (DER SET OF)
    pub(crate) sort_attrs: bool,
    /// the tag the signature is computed over the attributes with (0x31 is right)
    pub(crate) set_tag: u8,
    /// what the signature is over instead of the attributes
    pub(crate) sign_over: Option<Vec<u8>>,
    pub(crate) sig_alg: Vec<u8>,
    pub(crate) hash: HashAlgorithm,
    /// the messageDigest attribute's algorithm
    pub(crate) attr_digest: MessageDigest,
    pub(crate) signature: Option<Vec<u8>>,
    pub(crate) unsigned: Option<Vec<u8>>,
}

impl<'a> Msg<'a> {
    /// A PKCSReq-shaped message of `message_type`, signed by `key` whose certificate is
    /// `cert`, carrying `envelope`.
    pub(crate) fn new(
        key: &'a Device,
        cert: &MessageCertificate,
        envelope: Vec<u8>,
        kind: &str,
    ) -> Self {
        let txid = message::transaction_id(&cert.public_key);
        Msg {
            key,
            content_type: oid(SIGNED_DATA),
            version: int(&[1]),
            digest_algs: set(&[alg(SHA256, None)]),
            e_content_type: oid(DATA),
            e_content: Some(envelope),
            certificates: Some(vec![cert.der.clone()]),
            si_version: int(&[1]),
            sid: seq(&[cert.issuer.clone(), int(&cert.serial)]),
            digest_alg: alg(SHA256, None),
            attrs: Some(vec![
                attr(CONTENT_TYPE, vec![Val::Raw(oid(DATA))]),
                attr(MESSAGE_DIGEST, vec![Val::Digest]),
                attr(MESSAGE_TYPE, vec![Val::Raw(printable(kind))]),
                attr(TRANSACTION_ID, vec![Val::Raw(printable(&txid))]),
                attr(SENDER_NONCE, vec![Val::Raw(octets(&[7; 16]))]),
            ]),
            sort_attrs: true,
            set_tag: 0x31,
            sign_over: None,
            sig_alg: alg(RSA, Some(&NULL)),
            hash: HashAlgorithm::Sha256,
            attr_digest: MessageDigest::Sha256,
            signature: None,
            unsigned: None,
        }
    }

    /// Replaces the values of attribute `o` (adds it when absent).
    pub(crate) fn set_attr(&mut self, o: &str, values: Vec<Val>) -> &mut Self {
        let id = oid(o);
        let attrs = self.attrs.get_or_insert_with(Vec::new);
        match attrs.iter_mut().find(|a| a.oid == id) {
            Some(a) => a.values = values,
            None => attrs.push(Attr { oid: id, values }),
        }
        self
    }

    pub(crate) fn drop_attr(&mut self, o: &str) -> &mut Self {
        let id = oid(o);
        if let Some(attrs) = &mut self.attrs {
            attrs.retain(|a| a.oid != id);
        }
        self
    }

    /// Adds an attribute even when one of that type is there.
    pub(crate) fn add_attr(&mut self, o: &str, values: Vec<Val>) -> &mut Self {
        self.attrs
            .get_or_insert_with(Vec::new)
            .push(attr(o, values));
        self
    }

    /// The signed attributes' contents (the Attribute encodings, concatenated).
    fn attr_bytes(&self) -> Option<Vec<u8>> {
        let content = self.e_content.clone().unwrap_or_default();
        let mut enc: Vec<Vec<u8>> = self
            .attrs
            .as_ref()?
            .iter()
            .map(|a| {
                let values: Vec<Vec<u8>> = a
                    .values
                    .iter()
                    .map(|v| match v {
                        Val::Digest => octets(&self.attr_digest.digest(&content)),
                        Val::Raw(r) => r.clone(),
                    })
                    .collect();
                seq(&[a.oid.clone(), set(&values)])
            })
            .collect();
        if self.sort_attrs {
            enc.sort();
        }
        Some(enc.concat())
    }

    /// The real signature over what this message's signature covers.
    pub(crate) fn sign(&self) -> Vec<u8> {
        let covered = match (&self.sign_over, self.attr_bytes()) {
            (Some(b), _) => b.clone(),
            (None, Some(a)) => tlv(self.set_tag, &a),
            (None, None) => self.e_content.clone().unwrap_or_default(),
        };
        self.key
            .signer
            .sign(SignatureScheme::RsaPkcs1(self.hash), &covered)
            .expect("sign")
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let signature = self.signature.clone().unwrap_or_else(|| self.sign());
        let mut si = vec![
            self.si_version.clone(),
            self.sid.clone(),
            self.digest_alg.clone(),
        ];
        if let Some(a) = self.attr_bytes() {
            si.push(tlv(0xa0, &a));
        }
        si.push(self.sig_alg.clone());
        si.push(octets(&signature));
        if let Some(u) = &self.unsigned {
            si.push(u.clone());
        }
        let mut encap = vec![self.e_content_type.clone()];
        if let Some(c) = &self.e_content {
            encap.push(tlv(0xa0, &octets(c)));
        }
        let mut sd = vec![self.version.clone(), self.digest_algs.clone(), seq(&encap)];
        if let Some(certs) = &self.certificates {
            sd.push(tlv(0xa0, &certs.concat()));
        }
        sd.push(set(&[seq(&si)]));
        seq(&[self.content_type.clone(), tlv(0xa0, &seq(&sd))])
    }
}

/// `content` sealed (AES-256-CBC) for the recipient named as `rid`, its key encrypted to
/// `key`'s public key.
pub(crate) fn seal_for(
    content: &[u8],
    rid: &MessageCertificate,
    key: &MessageCertificate,
) -> Vec<u8> {
    enveloped::seal(
        content,
        &Recipient {
            issuer: &rid.issuer,
            serial: &rid.serial,
            public_key: &key.public_key,
        },
        ContentCipher::Aes256Cbc,
    )
    .expect("seal")
}

/// The building blocks: the device and an intruder, the CA, the valid OTP and the messages.
pub(crate) struct Kit {
    pub(crate) a: Device,
    pub(crate) b: Device,
    pub(crate) a_cert: MessageCertificate,
    pub(crate) b_cert: MessageCertificate,
    pub(crate) ca: MessageCertificate,
    pub(crate) otp: String,
    pub(crate) csr_v: Vec<u8>,
    pub(crate) env_v: Vec<u8>,
    pub(crate) env_w: Vec<u8>,
    /// the valid PKCSReq (sent last)
    pub(crate) base_v: Vec<u8>,
    /// the same with a wrong OTP (the warm-up, and the base of the equivalent encodings)
    pub(crate) base_w: Vec<u8>,
}

impl Kit {
    pub(crate) fn new(ca_der: &[u8], otp: &str) -> Kit {
        let a = Device::new("hostile");
        let b = Device::new("intruder");
        let a_cert = MessageCertificate::parse(&a.certificate).unwrap();
        let b_cert = MessageCertificate::parse(&b.certificate).unwrap();
        let ca = MessageCertificate::parse(ca_der).unwrap();
        let csr_v = a.csr("hostile", Some(otp));
        let csr_w = a.csr("hostile", Some(WRONG_OTP));
        let env_v = seal_for(&csr_v, &ca, &ca);
        let env_w = seal_for(&csr_w, &ca, &ca);
        let mut kit = Kit {
            a,
            b,
            a_cert,
            b_cert,
            ca,
            otp: otp.to_owned(),
            csr_v,
            env_v,
            env_w,
            base_v: Vec::new(),
            base_w: Vec::new(),
        };
        kit.base_v = kit.v().encode();
        kit.base_w = kit.w().encode();
        kit
    }

    /// A PKCSReq by the device carrying `envelope`.
    pub(crate) fn msg(&self, envelope: Vec<u8>) -> Msg<'_> {
        Msg::new(&self.a, &self.a_cert, envelope, "19")
    }
    /// The valid PKCSReq.
    pub(crate) fn v(&self) -> Msg<'_> {
        self.msg(self.env_v.clone())
    }
    /// The PKCSReq with a wrong OTP.
    pub(crate) fn w(&self) -> Msg<'_> {
        self.msg(self.env_w.clone())
    }
    /// `content` sealed to the CA.
    pub(crate) fn seal(&self, content: &[u8]) -> Vec<u8> {
        seal_for(content, &self.ca, &self.ca)
    }
}
