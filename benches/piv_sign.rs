//! PIV card timings through certman's PIV provider: key generation (RSA-2048, P-256) and
//! signatures per second, on the card named by `CERTMAN_PIV_READER` (start the virtual card
//! with `scripts/virtual-piv.sh start`). Uses slot 9a (PIN once); `CERTMAN_BENCH_PIV_SIGNS`
//! sets the number of signatures per key (default 200).

use std::time::Instant;

use certman::keys::piv::PivProvider;
use certman::keys::{
    verify::verify_signature, EcCurve, GenerateRequest, KeyAlgorithm, KeyHandle, KeyProvider,
    KeyUri, Scheme,
};

fn main() {
    let Ok(reader) = std::env::var("CERTMAN_PIV_READER") else {
        eprintln!("set CERTMAN_PIV_READER (scripts/virtual-piv.sh start prints it)");
        std::process::exit(2);
    };
    let signs: usize = std::env::var("CERTMAN_BENCH_PIV_SIGNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("temp dir");
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "123456\n").expect("pin file");
    let mgm = dir.path().join("mgm");
    std::fs::write(&mgm, "010203040506070801020304050607080102030405060708\n").expect("mgm");
    let location = KeyUri::new(Scheme::Piv)
        .with_path("slot-id", "9a")
        .with_path("reader", &reader)
        .with_query("pin-source", format!("file:{}", pin.display()))
        .with_query("management-key-source", format!("file:{}", mgm.display()));
    let provider = PivProvider::new(Default::default());
    // certman does not generate over a slot in use: free 9a first
    let _ = std::process::Command::new("yubico-piv-tool")
        .args(["-r", &reader, "-a", "delete-certificate", "-s", "9a"])
        .output();
    println!("PIV card in \"{reader}\", slot 9a, {signs} signatures per key");
    println!(
        "{:<12} {:>14} {:>12} {:>12}",
        "key", "generate (ms)", "signs/s", "ms/sign"
    );
    for alg in [
        KeyAlgorithm::Ec(EcCurve::P256),
        KeyAlgorithm::Rsa { bits: 2048 },
    ] {
        let t = Instant::now();
        let g = provider
            .generate(&GenerateRequest {
                algorithm: alg,
                label: "bench".into(),
                location: Some(location.clone()),
            })
            .expect("generate");
        let gen_ms = t.elapsed().as_secs_f64() * 1000.0;
        let key = KeyHandle {
            uri: g.uri.clone(),
            sealed: None,
        };
        let signer = provider
            .signer_with_public_key(&key, &g.public_key)
            .expect("signer");
        let scheme = alg.signature_scheme(None).expect("scheme");
        let msg = [0x5au8; 1024];
        // first signature verifies the PIN; checked so the loop cannot time errors
        let sig = signer.sign(scheme, &msg).expect("sign");
        verify_signature(&g.public_key, scheme, &msg, &sig).expect("signature verifies");
        let t = Instant::now();
        for _ in 0..signs {
            signer.sign(scheme, &msg).expect("sign");
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{:<12} {:>14.1} {:>12.1} {:>12.2}",
            alg.to_string(),
            gen_ms,
            signs as f64 / secs,
            secs * 1000.0 / signs as f64
        );
    }
}
