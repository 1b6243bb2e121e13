//! The PostgreSQL store's schema moves forward in place: a store of an older version is
//! migrated by the first command that opens it, keeping what it holds; a store written by a
//! newer certman is refused, unchanged. Needs `$CERTMAN_TEST_POSTGRES_URL` (skips without it,
//! fails in CI).

mod common;

use common::{psql_rows, Env};

/// The schema version `meta` holds.
fn version(env: &Env) -> String {
    psql_rows(
        env.store.to_str().unwrap(),
        "SELECT convert_from(value, 'UTF8') FROM meta WHERE key = 'schema_version'",
    )
    .trim()
    .to_owned()
}

#[test]
fn a_version_1_store_is_migrated_in_place_and_a_newer_one_refused() {
    let Some(env) = Env::on_postgres_server() else {
        return;
    };
    env.make_ca("ca", &[]);
    env.ok(&["add", "name=tpl", "common-name=t"]);
    let current = version(&env);
    assert_eq!(current, "2");
    // back to version 1: what version 2 added is gone
    psql_rows(
        env.store.to_str().unwrap(),
        "ALTER TABLE certificates DROP COLUMN compromised_at; DROP TABLE crl_series; \
         UPDATE meta SET value = convert_to('1', 'UTF8') WHERE key = 'schema_version'",
    );
    assert_eq!(env.names(), ["ca", "tpl"], "a version 1 store reads");
    assert_eq!(
        version(&env),
        current,
        "migrated by the command that opened it"
    );
    let tables = psql_rows(
        env.store.to_str().unwrap(),
        "SELECT to_regclass('crl_series') IS NOT NULL",
    );
    assert_eq!(tables.trim(), "t");
    env.ok(&["sign", "tpl", "ca=ca"]);

    // a store of a newer certman: refused, nothing written
    psql_rows(
        env.store.to_str().unwrap(),
        "UPDATE meta SET value = convert_to('99', 'UTF8') WHERE key = 'schema_version'",
    );
    let err = env.fail(&["print"], 1);
    assert!(
        err.contains("schema version 99 is newer than this certman understands"),
        "{err}"
    );
    assert_eq!(version(&env), "99");
}
