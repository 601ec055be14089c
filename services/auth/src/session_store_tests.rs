//! The [`SessionStore`] contract, run against SQLite and PostgreSQL (each on a
//! fresh database; PostgreSQL skipped with a reason unless CI=true).

use std::sync::Arc;

use crate::postgres::PgUserStore;
use crate::refresh::{Consumed, SessionStore};
use crate::sqlite::SqliteUserStore;
use crate::store::UserStore;

type Guard = Box<dyn std::any::Any + Send>;

async fn sqlite() -> Option<(Guard, Arc<dyn UserStore>, Arc<dyn SessionStore>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("auth.db").display());
    let store = Arc::new(SqliteUserStore::connect(&url).await.unwrap());
    Some((Box::new(dir), store.clone(), store))
}

async fn postgres() -> Option<(Guard, Arc<dyn UserStore>, Arc<dyn SessionStore>)> {
    let db = orderly_testkit::TestDatabase::create().await?;
    let store = Arc::new(PgUserStore::connect(&db.url).await.unwrap());
    Some((Box::new(db), store.clone(), store))
}

macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_guard, users, sessions) = super::sqlite().await.unwrap();
                    super::$name(users, sessions).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some((_guard, users, sessions)) = super::postgres().await else { return };
                    super::$name(users, sessions).await;
                }
            )*
        }
    };
}

for_each_backend!(
    a_refresh_token_is_consumed_once_then_reported_as_replayed,
    expired_revoked_and_unknown_tokens_are_invalid,
    concurrent_uses_of_one_token_let_exactly_one_through,
    roles_are_set_by_email_ignoring_case_and_users_found_by_id,
    revoking_a_users_sessions_revokes_every_family_of_that_user_only,
);

async fn a_refresh_token_is_consumed_once_then_reported_as_replayed(
    users: Arc<dyn UserStore>,
    sessions: Arc<dyn SessionStore>,
) {
    let id = users.create_user("a@example.com", "h").await.unwrap();
    sessions
        .insert_refresh_token("h1", "fam", id, 100, 200)
        .await
        .unwrap();
    assert_eq!(
        sessions.consume_refresh_token("h1", 150).await.unwrap(),
        Consumed::Fresh {
            user_id: id,
            family_id: "fam".into()
        }
    );
    assert_eq!(
        sessions.consume_refresh_token("h1", 151).await.unwrap(),
        Consumed::Replayed {
            family_id: "fam".into()
        }
    );
    assert_eq!(
        sessions.refresh_family("h1").await.unwrap().as_deref(),
        Some("fam")
    );
}

async fn expired_revoked_and_unknown_tokens_are_invalid(
    users: Arc<dyn UserStore>,
    sessions: Arc<dyn SessionStore>,
) {
    let id = users.create_user("b@example.com", "h").await.unwrap();
    sessions
        .insert_refresh_token("old", "f1", id, 100, 200)
        .await
        .unwrap();
    assert_eq!(
        sessions.consume_refresh_token("old", 200).await.unwrap(),
        Consumed::Invalid
    );
    sessions
        .insert_refresh_token("a", "f2", id, 100, 900)
        .await
        .unwrap();
    sessions
        .insert_refresh_token("b", "f2", id, 100, 900)
        .await
        .unwrap();
    sessions.revoke_refresh_family("f2", 150).await.unwrap();
    for hash in ["a", "b", "never-issued"] {
        assert_eq!(
            sessions.consume_refresh_token(hash, 160).await.unwrap(),
            Consumed::Invalid,
            "{hash}"
        );
    }
    assert_eq!(sessions.refresh_family("never-issued").await.unwrap(), None);
}

async fn concurrent_uses_of_one_token_let_exactly_one_through(
    users: Arc<dyn UserStore>,
    sessions: Arc<dyn SessionStore>,
) {
    let id = users.create_user("c@example.com", "h").await.unwrap();
    sessions
        .insert_refresh_token("race", "f", id, 100, 900)
        .await
        .unwrap();
    let attempts = (0..8).map(|_| {
        let sessions = sessions.clone();
        tokio::spawn(async move { sessions.consume_refresh_token("race", 150).await.unwrap() })
    });
    let mut fresh = 0;
    for attempt in attempts {
        if matches!(attempt.await.unwrap(), Consumed::Fresh { .. }) {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1);
}

async fn revoking_a_users_sessions_revokes_every_family_of_that_user_only(
    users: Arc<dyn UserStore>,
    sessions: Arc<dyn SessionStore>,
) {
    let id = users.create_user("e@example.com", "h").await.unwrap();
    let other = users.create_user("f@example.com", "h").await.unwrap();
    for (hash, family, user) in [("t1", "f1", id), ("t2", "f2", id), ("t3", "f3", other)] {
        sessions
            .insert_refresh_token(hash, family, user, 100, 900)
            .await
            .unwrap();
    }
    assert_eq!(sessions.revoke_user_sessions(id, 150).await.unwrap(), 2);
    assert_eq!(sessions.revoke_user_sessions(id, 160).await.unwrap(), 0);
    for hash in ["t1", "t2"] {
        assert_eq!(
            sessions.consume_refresh_token(hash, 170).await.unwrap(),
            Consumed::Invalid
        );
    }
    assert!(matches!(
        sessions.consume_refresh_token("t3", 170).await.unwrap(),
        Consumed::Fresh { .. }
    ));
}

async fn roles_are_set_by_email_ignoring_case_and_users_found_by_id(
    users: Arc<dyn UserStore>,
    sessions: Arc<dyn SessionStore>,
) {
    let id = users.create_user("d@example.com", "h").await.unwrap();
    assert_eq!(sessions.find_by_id(id).await.unwrap().unwrap().role, "user");
    let promoted = sessions
        .set_role("D@Example.com", "admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((promoted.id, promoted.role.as_str()), (id, "admin"));
    assert_eq!(
        sessions.find_by_id(id).await.unwrap().unwrap().role,
        "admin"
    );
    assert!(
        sessions
            .set_role("x@example.com", "admin")
            .await
            .unwrap()
            .is_none()
    );
    assert!(sessions.find_by_id(id + 100).await.unwrap().is_none());
}
