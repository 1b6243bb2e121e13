//! The SCEP client's rules without the wire: a client manager and a server manager (two
//! stores) exchange through their own methods — the client's job goes to the server's
//! `scep_enrol`, its outcome comes back as the client's answer.

use std::sync::Arc;

use super::*;
use crate::error::Refusal;
use crate::keys::soft::SoftProvider;
use crate::keys::KeyRouter;
use crate::manager::scep::ScepServerChanges;
use crate::manager::{EnrolOutcome, ScepEnrolment, SignRequest};
use crate::seal::Sealer;

fn manager(dir: &std::path::Path, offset: i64) -> Manager {
    let store =
        crate::app::open_store(&crate::app::StoreLocation::Sqlite { dir: dir.into() }).unwrap();
    let sealer = Arc::new(Sealer::new(b"scep-client-unit-test-machine-id", store.salt()).unwrap());
    let router = KeyRouter::new(Arc::new(SoftProvider::new(sealer.clone())));
    Manager::with_parts(store, router, sealer).with_clock_offset(offset)
}

/// A CA with a SCEP server at /scep/test issuing 1-day certificates.
fn ca_server(dir: &std::path::Path) -> Manager {
    let m = manager(dir, 0);
    m.add_template("ca-tpl", None, &[("common-name".into(), "ca".into())])
        .unwrap();
    m.sign(&SignRequest {
        template: "ca-tpl".into(),
        name: Some("ca".into()),
        ..Default::default()
    })
    .unwrap();
    m.scep_server_add(&ScepServerChanges {
        ca_cert: Some("ca".into()),
        path: Some("/scep/test".into()),
        ..Default::default()
    })
    .unwrap();
    m
}

fn ca_certificates(server: &Manager) -> ServerCertificates {
    ServerCertificates {
        ca: server.certificate_record("ca").unwrap().cert.der,
        ra: None,
    }
}

/// `add-scep` of template tpl_1 against `server`, with `otp` as the challenge.
fn add(client: &Manager, server: &Manager, otp: Option<&str>) -> ClientJob {
    client
        .add_template("tpl_1", None, &[("common-name".into(), "dev".into())])
        .unwrap();
    client
        .scep_client_add(
            &AddScep {
                template: "tpl_1".into(),
                url: "http://ca.invalid/scep/test/pkiclient.exe".into(),
                challenge_password: otp.map(|p| crate::secret::SecretString::new(p.to_owned())),
                ..Default::default()
            },
            &ca_certificates(server),
            "AES POSTPKIOperation Renewal SHA-256",
        )
        .unwrap()
}

/// The server's answer to a job, as the client reads it.
fn exchange(server: &Manager, job: &ClientJob) -> ClientAnswer {
    let endpoint = server.scep_endpoint("/scep/test").unwrap().unwrap();
    let info = crate::x509::inspect_certificate(&job.signer_certificate).unwrap();
    let outcome = if job.poll {
        server.scep_poll(&endpoint, &job.transaction_id)
    } else {
        server.scep_enrol(
            &endpoint,
            &ScepEnrolment {
                renewal: job.message == ClientMessage::RenewalReq,
                transaction_id: &job.transaction_id,
                csr: &job.csr,
                signer: &job.signer_certificate,
                signer_public_key: &info.public_key,
            },
        )
    };
    match outcome.unwrap() {
        EnrolOutcome::Issued(der) => ClientAnswer::Issued(vec![der]),
        EnrolOutcome::Pending => ClientAnswer::Pending,
        EnrolOutcome::Rejected(fault, why) => ClientAnswer::Rejected(fault, why),
    }
}

fn otp(server: &Manager) -> String {
    server
        .scep_otp_generate(None, 10)
        .unwrap()
        .password
        .secret_str()
        .to_owned()
}

#[test]
fn an_otp_issues_at_once_and_the_entry_takes_the_certificate_with_its_key() {
    let (sd, cd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ca_server(sd.path());
    let client = manager(cd.path(), 0);
    let job = add(&client, &server, Some(&otp(&server)));
    let before = client.certificate_record("tpl_1").unwrap();
    let view = client
        .scep_client_answer(&job, exchange(&server, &job), &ClientTiming::default())
        .unwrap();
    assert_eq!(view.status, ScepClientStatus::Issued, "{view:?}");
    let after = client.certificate_record("tpl_1").unwrap();
    assert_eq!(after.id, before.id);
    assert_eq!(after.cert.key_id, before.cert.key_id);
    assert_ne!(after.cert.der, before.cert.der);
    assert!(view.expires.is_some());
    assert_eq!(view.transaction_id, None);
    // nothing due before ¾ of the day; a look at the server after the check interval
    let step = client
        .scep_client_step("tpl_1", false, &ClientTiming::default())
        .unwrap();
    assert!(matches!(step, ClientStep::Check), "{step:?}");
    // 19 hours on, a renewal; 25 hours on, expired (refresh=no)
    let later = manager(cd.path(), 19 * 3600);
    let step = later
        .scep_client_step("tpl_1", false, &ClientTiming::default())
        .unwrap();
    assert!(
        matches!(step, ClientStep::Renew { refresh: false }),
        "{step:?}"
    );
    let ended = manager(cd.path(), 25 * 3600);
    let step = ended
        .scep_client_step("tpl_1", false, &ClientTiming::default())
        .unwrap();
    assert!(matches!(step, ClientStep::Nothing), "{step:?}");
    assert_eq!(
        client.scep_client("tpl_1").unwrap().status,
        ScepClientStatus::Expired
    );
}

#[test]
fn a_renewal_is_a_renewal_req_signed_by_the_current_certificate() {
    let (sd, cd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ca_server(sd.path());
    let client = manager(cd.path(), 0);
    let job = add(&client, &server, Some(&otp(&server)));
    let timing = ClientTiming::default();
    client
        .scep_client_answer(&job, exchange(&server, &job), &timing)
        .unwrap();
    let current = client.certificate_record("tpl_1").unwrap().cert.der;
    let renewal = client
        .scep_client_request("tpl_1", &ca_certificates(&server), "Renewal", true, false)
        .unwrap();
    assert_eq!(renewal.message, ClientMessage::RenewalReq);
    assert_eq!(renewal.signer_certificate, current);
    assert_ne!(renewal.transaction_id, job.transaction_id);
    let view = client
        .scep_client_answer(&renewal, exchange(&server, &renewal), &timing)
        .unwrap();
    assert_eq!(view.status, ScepClientStatus::Issued, "{view:?}");
    assert!(view.detail.contains("renewed"), "{view:?}");
    // without Renewal offered: a PKCSReq, still signed by the current certificate
    let again = client
        .scep_client_request("tpl_1", &ca_certificates(&server), "", false, false)
        .unwrap();
    assert_eq!(again.message, ClientMessage::PkcsReq);
    // a CA the client does not know is refused, and the client says so
    let od = tempfile::tempdir().unwrap();
    let other = ca_server(od.path());
    let err = client
        .scep_client_request("tpl_1", &ca_certificates(&other), "", false, false)
        .unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::CaFingerprintMismatch), "{err}");
    assert_eq!(
        client.scep_client("tpl_1").unwrap().status,
        ScepClientStatus::CaChanged
    );
}

#[test]
fn a_stale_job_cannot_apply_its_answer_twice() {
    let (sd, cd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ca_server(sd.path());
    let client = manager(cd.path(), 0);
    let job = add(&client, &server, None);
    let timing = ClientTiming::default();
    let view = client
        .scep_client_answer(&job, exchange(&server, &job), &timing)
        .unwrap();
    assert_eq!(view.status, ScepClientStatus::RequestingPendingCertificate);
    let err = client
        .scep_client_answer(&job, ClientAnswer::Pending, &timing)
        .unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::ChangedMeanwhile), "{err}");
    // the next step polls the same transaction
    let ClientStep::Send(poll) = client.scep_client_step("tpl_1", true, &timing).unwrap() else {
        panic!("a pending client polls");
    };
    assert!(poll.poll);
    assert_eq!(poll.transaction_id, job.transaction_id);
}

#[test]
fn a_pin_failure_is_never_retried_unasked_and_an_absent_token_is_with_back_off() {
    let (sd, cd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ca_server(sd.path());
    let client = manager(cd.path(), 0);
    let job = add(&client, &server, None);
    let timing = ClientTiming::default();
    client
        .scep_client_answer(
            &job,
            ClientAnswer::KeyUnavailable {
                why: "token not present".into(),
                pin: false,
            },
            &timing,
        )
        .unwrap();
    assert!(client.scep_clients_due().unwrap().is_empty());
    let soon = manager(cd.path(), 31);
    assert_eq!(soon.scep_clients_due().unwrap(), ["tpl_1"]);
    let ClientStep::Send(job) = soon.scep_client_step("tpl_1", false, &timing).unwrap() else {
        panic!("an absent token is tried again");
    };
    let view = soon
        .scep_client_answer(
            &job,
            ClientAnswer::KeyUnavailable {
                why: "PIN incorrect".into(),
                pin: true,
            },
            &timing,
        )
        .unwrap();
    assert_eq!(view.status, ScepClientStatus::KeyUnavailable);
    let much_later = manager(cd.path(), 365 * 86_400);
    assert!(much_later.scep_clients_due().unwrap().is_empty());
    assert!(matches!(
        much_later
            .scep_client_step("tpl_1", false, &timing)
            .unwrap(),
        ClientStep::Nothing
    ));
    // `scep-renew` asks: then it is tried
    assert!(matches!(
        much_later.scep_client_step("tpl_1", true, &timing).unwrap(),
        ClientStep::Send(_)
    ));
}

#[test]
fn a_certificate_for_another_key_or_from_another_ca_is_not_taken() {
    let (sd, cd, od) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let server = ca_server(sd.path());
    let client = manager(cd.path(), 0);
    let job = add(&client, &server, None);
    let temporary = client.certificate_record("tpl_1").unwrap().cert.der;
    // the CA's own certificate: not for the request's key
    let ca = server.certificate_record("ca").unwrap().cert.der;
    let view = client
        .scep_client_answer(
            &job,
            ClientAnswer::Issued(vec![ca]),
            &ClientTiming::default(),
        )
        .unwrap();
    assert_eq!(view.status, ScepClientStatus::ServerError, "{view:?}");
    assert!(view.detail.contains("no certificate for the request's key"));
    // the right key, but another CA signed it
    let other = ca_server(od.path());
    let ClientStep::Send(job) = client
        .scep_client_step("tpl_1", true, &ClientTiming::default())
        .unwrap()
    else {
        panic!("resent");
    };
    // another CA's server takes the same request and its operator grants it
    let endpoint = other.scep_endpoint("/scep/test").unwrap().unwrap();
    let signer = crate::x509::inspect_certificate(&job.signer_certificate).unwrap();
    let outcome = other
        .scep_enrol(
            &endpoint,
            &ScepEnrolment {
                renewal: false,
                transaction_id: &job.transaction_id,
                csr: &job.csr,
                signer: &job.signer_certificate,
                signer_public_key: &signer.public_key,
            },
        )
        .unwrap();
    assert_eq!(outcome, EnrolOutcome::Pending);
    let granted = other.scep_grant("0").unwrap();
    let der = other.certificate_record(&granted).unwrap().cert.der;
    let view = client
        .scep_client_answer(
            &job,
            ClientAnswer::Issued(vec![der]),
            &ClientTiming::default(),
        )
        .unwrap();
    assert_eq!(view.status, ScepClientStatus::ServerError, "{view:?}");
    assert!(
        view.detail.contains("does not verify with the recorded CA"),
        "{view:?}"
    );
    assert_eq!(
        client.certificate_record("tpl_1").unwrap().cert.der,
        temporary,
        "nothing was stored"
    );
}
