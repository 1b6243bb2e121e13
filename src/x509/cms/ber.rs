//! BER → DER normalisation of input from outside (X.690 §8 → §10), with hard limits.
//!
//! Indefinite lengths become definite, constructed universal strings (an OCTET STRING sent in
//! chunks, as OpenSSL's `-stream` writes it) become one primitive string, and every length is
//! written in its shortest form. Everything else is copied as it is, so DER input comes out
//! byte for byte unchanged — signatures over `signedAttrs` are checked on these bytes.
//!
//! No schema is known here: an implicitly tagged string (`[0] IMPLICIT OCTET STRING` sent
//! constructed) keeps its context tag and its chunks; the type that reads it joins them.
//!
//! The work is bounded: every declared length is checked against the bytes that are really
//! there before anything is read, nothing is allocated by a declared length, nesting,
//! element count and output size are capped, and the recursion depth is the nesting cap.

use super::CmsError;

/// How much a normalisation may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BerLimits {
    /// largest input, bytes
    pub max_input: usize,
    /// deepest nesting of constructed encodings
    pub max_depth: usize,
    /// most TLV elements (end-of-contents markers not counted)
    pub max_elements: usize,
    /// largest output, bytes
    pub max_output: usize,
}

impl Default for BerLimits {
    fn default() -> Self {
        BerLimits {
            max_input: 1 << 20,
            max_depth: 32,
            max_elements: 65_536,
            max_output: 2 << 20,
        }
    }
}

fn limit(m: impl Into<String>) -> CmsError {
    CmsError::Limit(m.into())
}

fn malformed(m: impl Into<String>) -> CmsError {
    CmsError::Malformed(format!("BER: {}", m.into()))
}

/// Normalises one complete BER element (nothing may follow it) to DER.
pub fn normalize(input: &[u8], limits: &BerLimits) -> Result<Vec<u8>, CmsError> {
    if input.len() > limits.max_input {
        return Err(limit(format!(
            "input of {} bytes is over the limit of {}",
            input.len(),
            limits.max_input
        )));
    }
    let mut n = Normalizer {
        input,
        pos: 0,
        elements: 0,
        limits,
    };
    let mut out = Vec::with_capacity(input.len().min(limits.max_output));
    n.element(input.len(), 0, &mut out)?;
    if n.pos != input.len() {
        return Err(malformed(format!(
            "{} bytes after the end of the encoding",
            input.len() - n.pos
        )));
    }
    Ok(out)
}

/// The identifier and length octets of one element.
struct Header {
    /// the identifier octets as they were (one, or several for tag numbers ≥ 31)
    tag_start: usize,
    tag_end: usize,
    /// the first identifier octet
    first: u8,
    /// `None`: indefinite
    len: Option<usize>,
}

impl Header {
    fn constructed(&self) -> bool {
        self.first & 0x20 != 0
    }

    /// The universal tag number of a string type that BER lets be sent in segments.
    fn universal_string(&self) -> Option<u8> {
        let number = self.first & 0x1f;
        let universal = self.first & 0xc0 == 0;
        // BIT STRING, OCTET STRING, ObjectDescriptor, UTF8String, the restricted string
        // types, UTCTime and GeneralizedTime (X.690 §8.6, §8.7, §8.23).
        let segmentable = matches!(number, 3 | 4 | 7 | 12 | 18..=28 | 30);
        (universal && segmentable).then_some(number)
    }
}

struct Normalizer<'a> {
    input: &'a [u8],
    pos: usize,
    elements: usize,
    limits: &'a BerLimits,
}

impl Normalizer<'_> {
    fn byte(&mut self, end: usize) -> Result<u8, CmsError> {
        if self.pos >= end {
            return Err(malformed("truncated"));
        }
        let b = self.input[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn at_end_of_contents(&self, end: usize) -> bool {
        self.pos + 2 <= end && self.input[self.pos] == 0 && self.input[self.pos + 1] == 0
    }

    fn header(&mut self, end: usize) -> Result<Header, CmsError> {
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(limit(format!(
                "more than {} ASN.1 elements",
                self.limits.max_elements
            )));
        }
        let tag_start = self.pos;
        let first = self.byte(end)?;
        if first & 0x1f == 0x1f {
            // High tag number form: at most 4 subsequent octets (tag numbers < 2^28).
            let mut count = 0;
            loop {
                let b = self.byte(end)?;
                count += 1;
                if count > 4 {
                    return Err(malformed("tag number too large"));
                }
                if b & 0x80 == 0 {
                    break;
                }
            }
        } else if first == 0 {
            return Err(malformed("unexpected end-of-contents"));
        }
        let tag_end = self.pos;
        let l = self.byte(end)?;
        let len = if l < 0x80 {
            Some(usize::from(l))
        } else if l == 0x80 {
            if first & 0x20 == 0 {
                return Err(malformed("indefinite length on a primitive encoding"));
            }
            None
        } else {
            let count = usize::from(l & 0x7f);
            if count > 8 || l == 0xff {
                return Err(malformed("length of length too large"));
            }
            let mut v: u64 = 0;
            for _ in 0..count {
                v = (v << 8) | u64::from(self.byte(end)?);
            }
            Some(usize::try_from(v).unwrap_or(usize::MAX))
        };
        if let Some(len) = len {
            // Never trust a declared length: it must fit in what is really there.
            if len > end - self.pos {
                return Err(malformed(format!(
                    "declared length {len} runs past the end of its container"
                )));
            }
        }
        Ok(Header {
            tag_start,
            tag_end,
            first,
            len,
        })
    }

    fn check_output(&self, out: &[u8]) -> Result<(), CmsError> {
        if out.len() > self.limits.max_output {
            return Err(limit(format!(
                "normalised output over {} bytes",
                self.limits.max_output
            )));
        }
        Ok(())
    }

    /// Reads one element that must end by `end` and appends its DER to `out`.
    fn element(&mut self, end: usize, depth: usize, out: &mut Vec<u8>) -> Result<(), CmsError> {
        let h = self.header(end)?;
        if !h.constructed() {
            let len = h.len.unwrap_or(0);
            out.extend_from_slice(&self.input[h.tag_start..h.tag_end]);
            push_length(out, len);
            out.extend_from_slice(&self.input[self.pos..self.pos + len]);
            self.pos += len;
            return self.check_output(out);
        }
        if depth >= self.limits.max_depth {
            return Err(limit(format!(
                "nesting deeper than {}",
                self.limits.max_depth
            )));
        }
        let content_end = h.len.map_or(end, |l| self.pos + l);
        let mut inner = Vec::new();
        if let Some(number) = h.universal_string() {
            let mut unused_bits = None;
            self.segments(
                &h,
                number,
                content_end,
                depth + 1,
                &mut inner,
                &mut unused_bits,
            )?;
            if number == 3 {
                inner.insert(0, unused_bits.unwrap_or(0));
            }
            // The one primitive string: the same identifier without the constructed bit.
            out.push(h.first & !0x20);
        } else {
            while !self.contents_done(&h, content_end)? {
                self.element(content_end, depth + 1, &mut inner)?;
                self.check_output(&inner)?;
            }
            out.extend_from_slice(&self.input[h.tag_start..h.tag_end]);
        }
        push_length(out, inner.len());
        out.extend_from_slice(&inner);
        self.check_output(out)
    }

    /// Whether the contents of a constructed element have been read (consuming the
    /// end-of-contents octets of an indefinite one).
    fn contents_done(&mut self, h: &Header, content_end: usize) -> Result<bool, CmsError> {
        match h.len {
            Some(_) => Ok(self.pos >= content_end),
            None => {
                if self.at_end_of_contents(content_end) {
                    self.pos += 2;
                    Ok(true)
                } else if self.pos >= content_end {
                    Err(malformed("missing end-of-contents"))
                } else {
                    Ok(false)
                }
            }
        }
    }

    /// Joins the segments of a constructed string of universal type `number`.
    fn segments(
        &mut self,
        outer: &Header,
        number: u8,
        content_end: usize,
        depth: usize,
        content: &mut Vec<u8>,
        unused_bits: &mut Option<u8>,
    ) -> Result<(), CmsError> {
        while !self.contents_done(outer, content_end)? {
            let h = self.header(content_end)?;
            if h.first & 0xc0 != 0 || h.first & 0x1f != number {
                return Err(malformed("a string segment of another type"));
            }
            if h.constructed() {
                if depth >= self.limits.max_depth {
                    return Err(limit(format!(
                        "nesting deeper than {}",
                        self.limits.max_depth
                    )));
                }
                let end = h.len.map_or(content_end, |l| self.pos + l);
                self.segments(&h, number, end, depth + 1, content, unused_bits)?;
                continue;
            }
            let len = h.len.unwrap_or(0);
            let mut seg = &self.input[self.pos..self.pos + len];
            self.pos += len;
            if number == 3 {
                // Each BIT STRING segment has its own unused-bits octet; only the last one
                // may leave bits unused.
                if matches!(unused_bits, Some(u) if *u != 0) {
                    return Err(malformed(
                        "unused bits in a BIT STRING segment before the last",
                    ));
                }
                let (&u, rest) = seg
                    .split_first()
                    .ok_or_else(|| malformed("empty BIT STRING segment"))?;
                if u > 7 || (rest.is_empty() && u != 0) {
                    return Err(malformed("BIT STRING unused-bits octet"));
                }
                *unused_bits = Some(u);
                seg = rest;
            }
            content.extend_from_slice(seg);
            self.check_output(content)?;
        }
        Ok(())
    }
}

/// Appends a DER length (shortest form).
pub(crate) fn push_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// One DER TLV: `tag` (a single identifier octet) around `content`.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_length(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(b: &[u8]) -> Result<Vec<u8>, CmsError> {
        normalize(b, &BerLimits::default())
    }

    #[test]
    fn indefinite_lengths_become_definite() {
        // SEQUENCE (indefinite) { INTEGER 5, SEQUENCE (indefinite) { NULL } }
        let ber = [
            0x30, 0x80, 0x02, 0x01, 0x05, 0x30, 0x80, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(
            norm(&ber).unwrap(),
            [0x30, 0x07, 0x02, 0x01, 0x05, 0x30, 0x02, 0x05, 0x00]
        );
    }

    #[test]
    fn chunked_strings_are_joined() {
        // OCTET STRING constructed, indefinite, chunks "ab" + (constructed "c" + "d")
        let ber = [
            0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x24, 0x06, 0x04, 0x01, b'c', 0x04, 0x01, b'd',
            0x00, 0x00,
        ];
        assert_eq!(norm(&ber).unwrap(), [0x04, 0x04, b'a', b'b', b'c', b'd']);
        // BIT STRING in two segments: only the last leaves bits unused
        let ber = [
            0x23, 0x09, 0x03, 0x02, 0x00, 0xaa, 0x03, 0x03, 0x04, 0xbb, 0xc0,
        ];
        assert_eq!(norm(&ber).unwrap(), [0x03, 0x04, 0x04, 0xaa, 0xbb, 0xc0]);
        let bad = [0x23, 0x08, 0x03, 0x02, 0x04, 0xa0, 0x03, 0x02, 0x00, 0xbb];
        assert!(norm(&bad).is_err());
        // PrintableString in segments
        let ber = [0x33, 0x80, 0x13, 0x01, b'1', 0x13, 0x01, b'9', 0x00, 0x00];
        assert_eq!(norm(&ber).unwrap(), [0x13, 0x02, b'1', b'9']);
        // A segment of another type is refused
        assert!(norm(&[0x24, 0x03, 0x13, 0x01, b'x']).is_err());
    }

    #[test]
    fn context_tagged_strings_keep_their_segments() {
        // [0] IMPLICIT OCTET STRING sent constructed: the chunks stay (as DER children).
        let ber = [
            0xa0, 0x80, 0x04, 0x01, b'x', 0x24, 0x80, 0x04, 0x01, b'y', 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(
            norm(&ber).unwrap(),
            [0xa0, 0x06, 0x04, 0x01, b'x', 0x04, 0x01, b'y']
        );
    }

    #[test]
    fn der_passes_unchanged_and_long_lengths_are_shortened() {
        let mut der = vec![0x30, 0x82, 0x01, 0x07, 0x04, 0x82, 0x01, 0x00];
        der.extend(std::iter::repeat_n(0x5a, 256));
        der.extend([0x01, 0x01, 0xff]);
        assert_eq!(norm(&der).unwrap(), der);
        // A long form where the short one would do.
        assert_eq!(norm(&[0x04, 0x81, 0x01, 0x07]).unwrap(), [0x04, 0x01, 0x07]);
        assert_eq!(
            norm(&[0x04, 0x84, 0x00, 0x00, 0x00, 0x01, 0x07]).unwrap(),
            [0x04, 0x01, 0x07]
        );
        // High tag numbers are copied.
        assert_eq!(
            norm(&[0x9f, 0x81, 0x00, 0x00]).unwrap(),
            [0x9f, 0x81, 0x00, 0x00]
        );
    }

    #[test]
    fn hostile_input_is_refused_quickly() {
        let limits = BerLimits::default();
        // A declared length of 2^60.
        let bomb = [0x04, 0x88, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x00];
        assert!(norm(&bomb).is_err());
        // Nested indefinite constructed OCTET STRINGs 10,000 deep.
        let mut deep = Vec::new();
        for _ in 0..10_000 {
            deep.extend([0x24, 0x80]);
        }
        deep.extend([0x04, 0x00]);
        for _ in 0..10_000 {
            deep.extend([0x00, 0x00]);
        }
        let t = std::time::Instant::now();
        assert!(matches!(norm(&deep), Err(CmsError::Limit(_))));
        // The same with SEQUENCEs.
        let deep: Vec<u8> = deep
            .iter()
            .map(|b| if *b == 0x24 { 0x30 } else { *b })
            .collect();
        assert!(matches!(norm(&deep), Err(CmsError::Limit(_))));
        assert!(t.elapsed().as_millis() < 500);
        // Too many elements.
        let mut many = vec![0x30, 0x80];
        for _ in 0..(limits.max_elements + 1) {
            many.extend([0x05, 0x00]);
        }
        many.extend([0x00, 0x00]);
        assert!(normalize(
            &many,
            &BerLimits {
                max_input: many.len(),
                ..limits
            }
        )
        .is_err());
        // Truncations, a missing end-of-contents, trailing bytes, an over-long input.
        for bad in [
            &[0x30][..],
            &[0x30, 0x80, 0x05, 0x00],
            &[0x30, 0x03, 0x05, 0x00],
            &[0x05, 0x00, 0x00],
            &[0x04, 0x80, 0x00, 0x00],
            &[0x00, 0x00],
            &[0x30, 0x02, 0x00, 0x00],
            &[0x1f, 0x81, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00],
            &[0x04, 0xff, 0x00],
        ] {
            assert!(norm(bad).is_err(), "{bad:02x?}");
        }
        let small = BerLimits {
            max_input: 4,
            ..limits
        };
        assert!(normalize(&[0x04, 0x03, 1, 2, 3], &small).is_err());
    }
}
