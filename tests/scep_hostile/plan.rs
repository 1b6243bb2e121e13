//! The plan: the seeded PRNG, what each variant expects, and every family in order.

use crate::crypto::{contents, envelopes, signatures};
use crate::damage::{bombs, flips, lengths, truncations};
use crate::equivalents::equivalents;
use crate::fields::{attributes, certreps, oids};
use crate::http::{http, url_b64, Req};
use crate::messages::Kit;

/// Seed of the PRNG: every run sends the same messages.
const SEED: u64 = 0x5CE9_0BAD_C0FF_EE01;

// ------------------------------------------------------------------ a deterministic PRNG

/// SplitMix64: small, seeded, the same sequence on every run and machine.
pub(crate) struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// An XOR mask that changes the byte: one bit, or any non-zero byte.
    pub(crate) fn mask(&mut self) -> u8 {
        if self.below(2) == 0 {
            1 << self.below(8)
        } else {
            self.below(255) as u8 + 1
        }
    }
}

// ------------------------------------------------------------------ the plan

#[derive(Clone, Debug)]
pub(crate) enum Expect {
    /// HTTP 4xx or CertRep FAILURE
    Refused,
    /// CertRep FAILURE for the wrong OTP, logged for this transactionID: read as far as the
    /// valid message is (an equivalent encoding of the wrong-OTP message)
    Processed(String),
    /// exactly this HTTP status
    Status(u16),
}

pub(crate) struct Variant {
    pub(crate) family: &'static str,
    pub(crate) label: String,
    pub(crate) req: Req,
    pub(crate) expect: Expect,
}

#[derive(Default)]
pub(crate) struct Plan(pub(crate) Vec<Variant>);

impl Plan {
    pub(crate) fn push(
        &mut self,
        family: &'static str,
        label: impl Into<String>,
        req: Req,
        expect: Expect,
    ) {
        let label = format!("{family}: {}", label.into());
        self.0.push(Variant {
            family,
            label,
            req,
            expect,
        });
    }

    /// A message by POST, and by GET (base64, URL-encoded) when the URL stays under 48 KB
    /// (longer URLs are a case of their own in the HTTP family).
    pub(crate) fn message(
        &mut self,
        family: &'static str,
        label: impl Into<String>,
        der: Vec<u8>,
        expect: Expect,
    ) {
        let label = label.into();
        if der.len() <= 32 * 1024 {
            self.push(
                family,
                format!("{label} [GET]"),
                Req::Get(url_b64(&der)),
                expect.clone(),
            );
        }
        self.push(family, format!("{label} [POST]"), Req::Post(der), expect);
    }

    /// A hostile message, by POST and GET.
    pub(crate) fn hostile(&mut self, family: &'static str, label: impl Into<String>, der: Vec<u8>) {
        self.message(family, label, der, Expect::Refused);
    }
}

pub(crate) fn plan(kit: &Kit, certrep: &[u8]) -> Plan {
    let mut rng = Rng(SEED);
    let mut plan = Plan::default();
    truncations(kit, &mut plan, &mut rng);
    lengths(kit, &mut plan);
    flips(kit, &mut plan, &mut rng);
    oids(kit, &mut plan);
    attributes(kit, &mut plan);
    signatures(kit, &mut plan, &mut rng);
    envelopes(kit, &mut plan, &mut rng);
    contents(kit, &mut plan, &mut rng);
    bombs(kit, &mut plan);
    certreps(kit, &mut plan, certrep);
    equivalents(kit, &mut plan);
    http(kit, &mut plan, &mut rng);
    plan
}
