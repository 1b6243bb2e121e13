//! The RFC 5652 ASN.1 types this layer reads and writes, borrowed from a normalised (DER)
//! buffer. Parts whose exact bytes matter (names, signed attributes, certificates) or that
//! peers encode loosely are kept raw ([`RawTlv`], [`RawSet`], [`RawInteger`]).

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use der::{
    Choice, Decode, DecodeValue, Encode, EncodeValue, FixedTag, Header, Length, Reader, Sequence,
    SliceReader, Tag, Writer,
};
use spki::AlgorithmIdentifierRef;

use super::CmsError;

/// A whole TLV of any type, kept as its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawTlv<'a>(pub &'a [u8]);

impl<'a> Decode<'a> for RawTlv<'a> {
    type Error = der::Error;
    fn decode<R: Reader<'a>>(reader: &mut R) -> der::Result<Self> {
        Ok(RawTlv(reader.tlv_bytes()?))
    }
}

impl Encode for RawTlv<'_> {
    fn encoded_len(&self) -> der::Result<Length> {
        Length::try_from(self.0.len())
    }
    fn encode(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write(self.0)
    }
}

/// Value-only types of a fixed tag: the bytes between the length and the next element.
macro_rules! raw_value {
    ($(#[$doc:meta])* $name:ident, $tag:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) struct $name<'a>(pub &'a [u8]);

        impl<'a> DecodeValue<'a> for $name<'a> {
            type Error = der::Error;
            fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
                Ok($name(reader.read_slice(header.length())?))
            }
        }

        impl EncodeValue for $name<'_> {
            fn value_len(&self) -> der::Result<Length> {
                Length::try_from(self.0.len())
            }
            fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
                writer.write(self.0)
            }
        }

        impl FixedTag for $name<'_> {
            const TAG: Tag = $tag;
        }
    };
}

raw_value!(
    /// The contents of a SET (OF), elements in the order sent.
    RawSet,
    Tag::Set
);
raw_value!(
    /// The contents of a SEQUENCE.
    RawSequence,
    Tag::Sequence
);
raw_value!(
    /// The contents of an INTEGER, unchecked (serial numbers are not always minimal).
    RawInteger,
    Tag::Integer
);

/// The TLVs of a SET or SEQUENCE's contents, at most `max`.
pub(crate) fn elements<'a>(
    contents: &'a [u8],
    max: usize,
    what: &str,
) -> Result<Vec<&'a [u8]>, CmsError> {
    let mut r = SliceReader::new(contents)?;
    let mut out = Vec::new();
    while !r.is_finished() {
        if out.len() == max {
            return Err(CmsError::Limit(format!("more than {max} {what}")));
        }
        out.push(r.tlv_bytes()?);
    }
    Ok(out)
}

/// ```text
/// ContentInfo ::= SEQUENCE {
///   contentType ContentType,
///   content [0] EXPLICIT ANY DEFINED BY contentType }
/// ```
/// [RFC 5652 §3](https://www.rfc-editor.org/rfc/rfc5652#section-3)
#[derive(Sequence)]
pub(crate) struct ContentInfo<'a> {
    pub content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub content: AnyRef<'a>,
}

/// ```text
/// SignedData ::= SEQUENCE {
///   version CMSVersion,
///   digestAlgorithms DigestAlgorithmIdentifiers,
///   encapContentInfo EncapsulatedContentInfo,
///   certificates [0] IMPLICIT CertificateSet OPTIONAL,
///   crls [1] IMPLICIT RevocationInfoChoices OPTIONAL,
///   signerInfos SignerInfos }
/// ```
/// [RFC 5652 §5.1](https://www.rfc-editor.org/rfc/rfc5652#section-5.1)
#[derive(Sequence)]
pub(crate) struct SignedData<'a> {
    pub version: u8,
    pub digest_algorithms: RawSet<'a>,
    pub encap_content_info: EncapsulatedContentInfo<'a>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub certificates: Option<RawSet<'a>>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub crls: Option<RawSet<'a>>,
    pub signer_infos: RawSet<'a>,
}

/// ```text
/// EncapsulatedContentInfo ::= SEQUENCE {
///   eContentType ContentType,
///   eContent [0] EXPLICIT OCTET STRING OPTIONAL }
/// ```
/// [RFC 5652 §5.2](https://www.rfc-editor.org/rfc/rfc5652#section-5.2)
#[derive(Sequence)]
pub(crate) struct EncapsulatedContentInfo<'a> {
    pub e_content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub e_content: Option<&'a OctetStringRef>,
}

/// ```text
/// SignerInfo ::= SEQUENCE {
///   version CMSVersion,
///   sid SignerIdentifier,
///   digestAlgorithm DigestAlgorithmIdentifier,
///   signedAttrs [0] IMPLICIT SignedAttributes OPTIONAL,
///   signatureAlgorithm SignatureAlgorithmIdentifier,
///   signature SignatureValue,
///   unsignedAttrs [1] IMPLICIT UnsignedAttributes OPTIONAL }
/// ```
/// [RFC 5652 §5.3](https://www.rfc-editor.org/rfc/rfc5652#section-5.3)
#[derive(Sequence)]
pub(crate) struct SignerInfo<'a> {
    pub version: u8,
    pub sid: Identifier<'a>,
    pub digest_algorithm: AlgorithmIdentifierRef<'a>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub signed_attrs: Option<RawSet<'a>>,
    pub signature_algorithm: AlgorithmIdentifierRef<'a>,
    pub signature: &'a OctetStringRef,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub unsigned_attrs: Option<RawSet<'a>>,
}

/// ```text
/// SignerIdentifier ::= CHOICE {          RecipientIdentifier ::= CHOICE {
///   issuerAndSerialNumber IssuerAndSerialNumber,
///   subjectKeyIdentifier [0] SubjectKeyIdentifier }
/// ```
/// [RFC 5652 §5.3](https://www.rfc-editor.org/rfc/rfc5652#section-5.3) and
/// [§6.2.1](https://www.rfc-editor.org/rfc/rfc5652#section-6.2.1): the same two choices.
#[derive(Choice)]
pub(crate) enum Identifier<'a> {
    IssuerAndSerialNumber(IssuerAndSerialNumber<'a>),
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    SubjectKeyIdentifier(&'a OctetStringRef),
}

/// ```text
/// IssuerAndSerialNumber ::= SEQUENCE {
///   issuer Name,
///   serialNumber CertificateSerialNumber }
/// ```
/// [RFC 5652 §10.2.4](https://www.rfc-editor.org/rfc/rfc5652#section-10.2.4)
#[derive(Sequence)]
pub(crate) struct IssuerAndSerialNumber<'a> {
    pub issuer: RawTlv<'a>,
    pub serial_number: RawInteger<'a>,
}

/// ```text
/// Attribute ::= SEQUENCE {
///   attrType OBJECT IDENTIFIER,
///   attrValues SET OF AttributeValue }
/// ```
/// [RFC 5652 §5.3](https://www.rfc-editor.org/rfc/rfc5652#section-5.3)
#[derive(Sequence)]
pub(crate) struct Attribute<'a> {
    pub attr_type: ObjectIdentifier,
    pub attr_values: RawSet<'a>,
}

/// ```text
/// EnvelopedData ::= SEQUENCE {
///   version CMSVersion,
///   originatorInfo [0] IMPLICIT OriginatorInfo OPTIONAL,
///   recipientInfos RecipientInfos,
///   encryptedContentInfo EncryptedContentInfo,
///   unprotectedAttrs [1] IMPLICIT UnprotectedAttributes OPTIONAL }
/// ```
/// [RFC 5652 §6.1](https://www.rfc-editor.org/rfc/rfc5652#section-6.1)
#[derive(Sequence)]
pub(crate) struct EnvelopedData<'a> {
    pub version: u8,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub originator_info: Option<RawSequence<'a>>,
    pub recipient_infos: RawSet<'a>,
    pub encrypted_content_info: EncryptedContentInfo<'a>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub unprotected_attrs: Option<RawSet<'a>>,
}

/// ```text
/// EncryptedContentInfo ::= SEQUENCE {
///   contentType ContentType,
///   contentEncryptionAlgorithm ContentEncryptionAlgorithmIdentifier,
///   encryptedContent [0] IMPLICIT EncryptedContent OPTIONAL }
/// ```
/// [RFC 5652 §6.1](https://www.rfc-editor.org/rfc/rfc5652#section-6.1). `encryptedContent`
/// is read raw: BER senders (OpenSSL `-stream`) send it constructed, in chunks.
#[derive(Sequence)]
pub(crate) struct EncryptedContentInfo<'a> {
    pub content_type: ObjectIdentifier,
    pub content_encryption_algorithm: AlgorithmIdentifierRef<'a>,
    pub encrypted_content: Option<AnyRef<'a>>,
}

/// ```text
/// KeyTransRecipientInfo ::= SEQUENCE {
///   version CMSVersion,  -- always set to 0 or 2
///   rid RecipientIdentifier,
///   keyEncryptionAlgorithm KeyEncryptionAlgorithmIdentifier,
///   encryptedKey EncryptedKey }
/// ```
/// [RFC 5652 §6.2.1](https://www.rfc-editor.org/rfc/rfc5652#section-6.2.1)
#[derive(Sequence)]
pub(crate) struct KeyTransRecipientInfo<'a> {
    pub version: u8,
    pub rid: Identifier<'a>,
    pub key_encryption_algorithm: AlgorithmIdentifierRef<'a>,
    pub encrypted_key: &'a OctetStringRef,
}
