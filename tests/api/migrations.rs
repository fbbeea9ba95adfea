use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::{Connection, PgConnection};
use diesel_migrations::MigrationHarness;

use crate::helpers::spawn_app;

#[tokio::test]
async fn migrations_run_up_down_and_up_again() {
    let app = spawn_app().await;
    let url = app.db_url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        let all = MigrationSource::<Pg>::migrations(&calcache::db::MIGRATIONS).unwrap().len();
        assert!(all >= 1);
        assert!(!conn.has_pending_migration(calcache::db::MIGRATIONS).unwrap(), "the app migrated at start");
        let reverted = conn.revert_all_migrations(calcache::db::MIGRATIONS).unwrap();
        assert_eq!(reverted.len(), all);
        assert!(conn.has_pending_migration(calcache::db::MIGRATIONS).unwrap());
        let applied = calcache::db::migrate(&mut conn).unwrap();
        assert_eq!(applied, all);
        // Idempotent: a second run (another replica starting) does nothing.
        assert_eq!(calcache::db::migrate(&mut conn).unwrap(), 0);
    })
    .await
    .unwrap();
}
