//! RA mode (`scep-server ra`): what an RA-mode server keeps of the requests it forwards
//! upstream. The queue shows them (authority `ra`) with the status the upstream server gave;
//! a request pending upstream longer than `ra-transaction-lifetime` is given up here.

use super::enrol::{EnrolOutcome, ScepEndpoint, ScepEnrolment};
use super::queue::{request_record, ScepRequestStatus};
use crate::error::{ManagerError, RequestFault, Result};
use crate::manager::Manager;
use crate::store::{now_micros, Lock};
use crate::x509;

fn status_of(outcome: &EnrolOutcome) -> ScepRequestStatus {
    match outcome {
        EnrolOutcome::Issued(_) => ScepRequestStatus::Issued,
        EnrolOutcome::Pending => ScepRequestStatus::Pending,
        EnrolOutcome::Rejected(..) => ScepRequestStatus::Denied,
    }
}

impl Manager {
    /// Before forwarding a poll or a repeated request: a request that waited upstream longer
    /// than the RA's transaction lifetime is given up (expired here; the client is refused).
    pub fn scep_forward_check(
        &self,
        endpoint: &ScepEndpoint,
        transaction_id: &str,
    ) -> Result<Option<EnrolOutcome>> {
        let lifetime = endpoint
            .server
            .server
            .request_lifetime
            .saturating_mul(1_000_000);
        self.write(|txn| {
            let Some(r) = txn.scep_request_by_transaction(endpoint.server_id, transaction_id)?
            else {
                return Ok(None);
            };
            let pending = ScepRequestStatus::Pending.word();
            if r.request.status == pending && now_micros() - r.created_at > lifetime {
                txn.move_scep_request(r.id, pending, ScepRequestStatus::Expired.word(), None)?;
                return Ok(Some(EnrolOutcome::Rejected(
                    RequestFault::BadRequest,
                    "not granted upstream within the RA's transaction lifetime".into(),
                )));
            }
            Ok(None)
        })
    }

    /// Records what the upstream server answered to a request forwarded from `endpoint`
    /// (`enrolment`: the client's PKCSReq or RenewalReq; `None` for a poll).
    pub fn scep_forwarded(
        &self,
        endpoint: &ScepEndpoint,
        transaction_id: &str,
        enrolment: Option<&ScepEnrolment<'_>>,
        outcome: &EnrolOutcome,
    ) -> Result<()> {
        let status = status_of(outcome);
        let info =
            match enrolment {
                Some(e) => Some(x509::csr::parse_request(e.csr).map_err(|err| {
                    ManagerError::BadRequest {
                        fault: err.request_fault(),
                        message: format!("the forwarded request: {err}"),
                    }
                })?),
                None => None,
            };
        self.write(|txn| {
            // under the queue's lock: a transaction forwarded by two nodes at once is one row
            txn.lock(Lock::ScepServer(endpoint.server_id))?;
            match txn.scep_request_by_transaction(endpoint.server_id, transaction_id)? {
                Some(r) if r.request.status != status.word() => {
                    txn.move_scep_request(r.id, &r.request.status, status.word(), None)?;
                }
                Some(_) => {}
                None => {
                    if let (Some(e), Some(info)) = (enrolment, &info) {
                        let record = request_record(endpoint.server_id, e, info, status);
                        txn.insert_scep_request(&record, None)?;
                    }
                }
            }
            Ok(())
        })
    }
}
