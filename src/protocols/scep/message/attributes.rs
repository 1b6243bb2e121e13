//! The SCEP signed attributes (RFC 8894 §3.2.1): written as the RFC says (PrintableString,
//! OCTET STRING), read leniently (a UTF8String or IA5String where a PrintableString belongs).

use der::asn1::{AnyRef, OctetStringRef, PrintableStringRef};
use der::{Decode, Encode, Tag, Tagged};

use super::{
    FailInfo, MessageError, MessageLimits, MessageType, PkiStatus, ID_FAIL_INFO, ID_MESSAGE_TYPE,
    ID_PKI_STATUS, ID_RECIPIENT_NONCE, ID_SENDER_NONCE, ID_TRANSACTION_ID,
};
use crate::x509::cms::SignerInfo;

/// The DER of a PrintableString attribute value.
pub(super) fn printable(name: &'static str, s: &str) -> Result<Vec<u8>, MessageError> {
    let bad = |e: der::Error| MessageError::BadAttribute {
        name,
        reason: format!("'{s}' is not a PrintableString ({e})"),
    };
    PrintableStringRef::new(s)
        .map_err(bad)?
        .to_der()
        .map_err(bad)
}

/// The DER of an OCTET STRING attribute value.
pub(super) fn octets(b: &[u8]) -> Result<Vec<u8>, MessageError> {
    Ok(OctetStringRef::new(b)?.to_der()?)
}

/// The SCEP attributes of a pkiMessage, read from its SignerInfo.
pub(super) struct ScepAttributes {
    pub message_type: MessageType,
    pub transaction_id: String,
    pub sender_nonce: Option<Vec<u8>>,
    pub recipient_nonce: Option<Vec<u8>>,
    pub status: Option<PkiStatus>,
}

impl ScepAttributes {
    pub(super) fn read(signer: &SignerInfo, limits: &MessageLimits) -> Result<Self, MessageError> {
        let message_type = string(signer, ID_MESSAGE_TYPE, "messageType", 3)?
            .ok_or(MessageError::MissingAttribute("messageType"))?;
        let message_type = number(&message_type, "messageType")
            .and_then(MessageType::from_number)
            .map_err(|_| MessageError::UnknownMessageType(message_type.clone()))?;
        let transaction_id = string(
            signer,
            ID_TRANSACTION_ID,
            "transactionID",
            limits.max_string_len,
        )?
        .ok_or(MessageError::MissingAttribute("transactionID"))?;
        let nonce = |oid, name| octet_string(signer, oid, name, limits.max_nonce_len);
        let status = match string(signer, ID_PKI_STATUS, "pkiStatus", 2)? {
            None => None,
            Some(s) => Some(match number(&s, "pkiStatus")? {
                0 => PkiStatus::Success,
                2 => {
                    let f = string(signer, ID_FAIL_INFO, "failInfo", 2)?
                        .ok_or(MessageError::MissingAttribute("failInfo"))?;
                    PkiStatus::Failure(FailInfo::from_number(number(&f, "failInfo")?)?)
                }
                3 => PkiStatus::Pending,
                n => {
                    return Err(MessageError::BadAttribute {
                        name: "pkiStatus",
                        reason: format!("unknown value {n}"),
                    })
                }
            }),
        };
        Ok(ScepAttributes {
            message_type,
            transaction_id,
            sender_nonce: nonce(ID_SENDER_NONCE, "senderNonce")?,
            recipient_nonce: nonce(ID_RECIPIENT_NONCE, "recipientNonce")?,
            status,
        })
    }
}

fn number(s: &str, name: &'static str) -> Result<u32, MessageError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MessageError::BadAttribute {
            name,
            reason: format!("'{s}' is not a number"),
        });
    }
    s.parse().map_err(|_| MessageError::BadAttribute {
        name,
        reason: format!("'{s}' is too large"),
    })
}

fn single<'a>(
    signer: &'a SignerInfo,
    oid: der::asn1::ObjectIdentifier,
    name: &'static str,
) -> Result<Option<&'a [u8]>, MessageError> {
    signer
        .single_attribute(oid)
        .map_err(|_| MessageError::BadAttribute {
            name,
            reason: "more than one value".into(),
        })
}

/// A string attribute: PrintableString as the RFC says, UTF8String or IA5String as some
/// clients send; PrintableString characters, 1..=`max` bytes.
fn string(
    signer: &SignerInfo,
    oid: der::asn1::ObjectIdentifier,
    name: &'static str,
    max: usize,
) -> Result<Option<String>, MessageError> {
    let Some(value) = single(signer, oid, name)? else {
        return Ok(None);
    };
    let bad = |reason: String| MessageError::BadAttribute { name, reason };
    let any = AnyRef::from_der(value).map_err(|e| bad(e.to_string()))?;
    if !matches!(
        any.tag(),
        Tag::PrintableString | Tag::Utf8String | Tag::Ia5String
    ) {
        return Err(bad(format!("a {} where a string belongs", any.tag())));
    }
    let s = any.value();
    if s.is_empty() || s.len() > max {
        return Err(bad(format!("{} bytes (1 to {max} allowed)", s.len())));
    }
    // Whatever the tag, the PrintableString alphabet (X.680 §41.4): these values are echoed
    // in the reply as PrintableStrings, and a value that could not be would fail the reply
    // after the request was acted on.
    let printable = |b: &u8| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(b);
    if !s.iter().all(printable) {
        return Err(bad(
            "characters outside the PrintableString alphabet (A-Z a-z 0-9 space '()+,-./:=?)"
                .into(),
        ));
    }
    Ok(Some(String::from_utf8_lossy(s).into_owned()))
}

/// An OCTET STRING attribute of 1..=`max` bytes.
fn octet_string(
    signer: &SignerInfo,
    oid: der::asn1::ObjectIdentifier,
    name: &'static str,
    max: usize,
) -> Result<Option<Vec<u8>>, MessageError> {
    let Some(value) = single(signer, oid, name)? else {
        return Ok(None);
    };
    let bad = |reason: String| MessageError::BadAttribute { name, reason };
    let o = <&OctetStringRef>::from_der(value).map_err(|e| bad(e.to_string()))?;
    let b = o.as_bytes();
    if b.is_empty() || b.len() > max {
        return Err(bad(format!("{} bytes (1 to {max} allowed)", b.len())));
    }
    Ok(Some(b.to_vec()))
}
