
//! PLACEHOLDER (never to land)
use super::PgTxn;
use crate::store::*;

impl ScepClientStore for PgTxn {
    fn scep_clients(&self) -> Result<Vec<ScepClientRecord>> {
        unimplemented!("placeholder")
    }

    fn scep_client(&self, name: &str) -> Result<Option<ScepClientRecord>> {
        unimplemented!("placeholder")
    }

    fn insert_scep_client(
        &mut self,
        client: &NewScepClient,
        state: &ScepClientState,
    ) -> Result<i64> {
        unimplemented!("placeholder")
    }

    fn update_scep_client(
        &mut self,
        id: i64,
        updated_at: i64,
        state: &ScepClientState,
    ) -> Result<Option<i64>> {
        unimplemented!("placeholder")
    }

    fn delete_scep_client(&mut self, id: i64) -> Result<bool> {
        unimplemented!("placeholder")
    }
}
