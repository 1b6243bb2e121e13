
//! PLACEHOLDER (never to land)
use super::PgTxn;
use crate::store::*;

impl ScepTransaction for PgTxn {
    fn scep_servers(&self) -> Result<Vec<ScepServerRecord>> {
        unimplemented!("placeholder")
    }

    fn insert_scep_server(&mut self, server: &NewScepServer) -> Result<i64> {
        unimplemented!("placeholder")
    }

    fn update_scep_server(&mut self, id: i64, server: &NewScepServer) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn delete_scep_server(&mut self, id: i64) -> Result<bool> {
        unimplemented!("placeholder")
    }

    fn insert_otp(&mut self, server_id: Option<i64>, hash: &[u8], expires_at: i64) -> Result<i64> {
        unimplemented!("placeholder")
    }

    fn otps(&self) -> Result<Vec<OtpRecord>> {
        unimplemented!("placeholder")
    }

    fn otp_by_hash(&self, hash: &[u8]) -> Result<Option<OtpRecord>> {
        unimplemented!("placeholder")
    }

    fn consume_otp(&mut self, hash: &[u8], server_id: i64, now: i64) -> Result<bool> {
        unimplemented!("placeholder")
    }

    fn insert_scep_request(
        &mut self,
        request: &NewScepRequest,
        certificate_id: Option<i64>,
    ) -> Result<i64> {
        unimplemented!("placeholder")
    }

    fn scep_requests(&self) -> Result<Vec<ScepRequestRecord>> {
        unimplemented!("placeholder")
    }

    fn count_scep_requests(&self, server_id: i64, status: &str, created_after: i64) -> Result<i64> {
        unimplemented!("placeholder")
    }

    fn scep_request_by_any_transaction(
        &self,
        transaction_id: &str,
    ) -> Result<Option<ScepRequestRecord>> {
        unimplemented!("placeholder")
    }

    fn scep_request(&self, id: i64) -> Result<Option<ScepRequestRecord>> {
        unimplemented!("placeholder")
    }

    fn scep_request_by_transaction(
        &self,
        server_id: i64,
        transaction_id: &str,
    ) -> Result<Option<ScepRequestRecord>> {
        unimplemented!("placeholder")
    }

    fn move_scep_request(
        &mut self,
        id: i64,
        from: &str,
        to: &str,
        certificate_id: Option<i64>,
    ) -> Result<bool> {
        unimplemented!("placeholder")
    }
}
