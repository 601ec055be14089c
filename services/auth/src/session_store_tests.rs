//! The [`SessionStore`] contract, run against SQLite and PostgreSQL (each on a
//! fresh database; PostgreSQL skipped with a reason unless CI=true).

use std::sync::Arc;
use std::time::Duration;

use orderly_db::query;

use crate::refresh::{Consumed, SessionStore};
use crate::sql_store::SqlUserStore;
use crate::store::UserStore;

type Guard = Box<dyn std::any::Any + Send>;

async fn sqlite() -> Option<(Guard, Arc<dyn UserStore>, Arc<dyn SessionStore>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("auth.db").display());
    let store = Arc::new(SqlUserStore::connect(&url).await.unwrap());
    Some((Box::new(dir), store.clone(), store))
}

async fn postgres() -> Option<(Guard, Arc<dyn UserStore>, Arc<dyn SessionStore>)> {
    let db = orderly_testkit::TestDatabase::create().await?;
    let store = Arc::new(SqlUserStore::connect(&db.url).await.unwrap());
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
    a_family_revoked_between_the_rotation_steps_gets_no_successor,
    rotations_racing_a_revocation_leave_no_live_token,
    revoking_a_users_sessions_revokes_every_family_of_that_user_only,
    revoked_access_tokens_are_listed_until_they_expire,
);

async fn revoked_access_tokens_are_listed_until_they_expire(
    users: Arc<dyn UserStore>,
    sessions: Arc<dyn SessionStore>,
) {
    let id = users.create_user("g@example.com", "h").await.unwrap();
    let other = users.create_user("h@example.com", "h").await.unwrap();
    for (jti, user, family, exp) in [
        ("a1", id, Some("fa"), 1_000),
        ("a2", id, Some("fa"), 500),
        ("b1", id, Some("fb"), 1_000),
        ("c1", other, None, 1_000),
    ] {
        sessions
            .record_access_token(jti, user, family, exp, 100)
            .await
            .unwrap();
    }
    let listed = |now| {
        let sessions = sessions.clone();
        async move {
            let mut jtis: Vec<String> = sessions
                .revoked_access_tokens(now, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|(jti, _)| jti)
                .collect();
            jtis.sort();
            jtis
        }
    };
    assert!(listed(200).await.is_empty());
    // A logout revokes the family's access tokens, not the user's others.
    sessions.revoke_refresh_family("fa", 200).await.unwrap();
    assert_eq!(listed(300).await, ["a1", "a2"]);
    // An expired one no longer needs listing.
    assert_eq!(listed(600).await, ["a1"]);
    // A lowered role revokes every access token of the user, and only theirs.
    sessions.revoke_user_sessions(id, 650).await.unwrap();
    assert_eq!(listed(700).await, ["a1", "b1"]);
    assert_eq!(
        sessions.revoked_access_tokens(700, 1).await.unwrap().len(),
        1
    );
}

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

/// Rotation's second step after a revocation (a logout, or a replay seen by
/// another request) landed between the two steps: no successor joins the family.
async fn a_family_revoked_between_the_rotation_steps_gets_no_successor(
    users: Arc<dyn UserStore>,
    sessions: Arc<dyn SessionStore>,
) {
    let id = users.create_user("e@example.com", "h").await.unwrap();
    assert!(
        sessions
            .insert_refresh_token("first", "fam", id, 100, 900)
            .await
            .unwrap()
    );
    assert!(matches!(
        sessions.consume_refresh_token("first", 150).await.unwrap(),
        Consumed::Fresh { .. }
    ));
    sessions.revoke_refresh_family("fam", 151).await.unwrap();
    assert!(
        !sessions
            .insert_refresh_token("second", "fam", id, 152, 900)
            .await
            .unwrap(),
        "the successor is refused"
    );
    assert_eq!(
        sessions.consume_refresh_token("second", 153).await.unwrap(),
        Consumed::Invalid
    );
    assert_eq!(sessions.refresh_family("second").await.unwrap(), None);
}

/// Rotations (consume, then insert the successor) run while the family is
/// revoked, at a different moment each round: afterwards no token of the
/// family can be used.
async fn rotations_racing_a_revocation_leave_no_live_token(
    users: Arc<dyn UserStore>,
    sessions: Arc<dyn SessionStore>,
) {
    let id = users.create_user("f@example.com", "h").await.unwrap();
    for round in 0..20u64 {
        let family = format!("fam-{round}");
        let first = format!("{family}-0");
        assert!(
            sessions
                .insert_refresh_token(&first, &family, id, 100, 900)
                .await
                .unwrap()
        );
        let rotating = {
            let (sessions, family) = (sessions.clone(), family.clone());
            tokio::spawn(async move {
                let mut issued = vec![first];
                for n in 1..50 {
                    let current = issued.last().cloned().unwrap_or_default();
                    let consumed = sessions.consume_refresh_token(&current, 150).await;
                    if !matches!(consumed.unwrap(), Consumed::Fresh { .. }) {
                        break;
                    }
                    let next = format!("{family}-{n}");
                    if !sessions
                        .insert_refresh_token(&next, &family, id, 150, 900)
                        .await
                        .unwrap()
                    {
                        break;
                    }
                    issued.push(next);
                }
                issued
            })
        };
        tokio::time::sleep(Duration::from_micros(300 * round)).await;
        sessions.revoke_refresh_family(&family, 160).await.unwrap();
        for token in rotating.await.unwrap() {
            let consumed = sessions.consume_refresh_token(&token, 170).await.unwrap();
            assert!(
                !matches!(consumed, Consumed::Fresh { .. }),
                "{token} outlived the revocation of its family"
            );
        }
    }
}

/// On PostgreSQL a revocation that started before the successor's insert
/// committed does not see it and leaves it unrevoked (simulated here by a
/// revocation of the rows it saw). Presented, that successor is refused.
async fn a_successor_the_revocation_did_not_reach_is_refused(store: SqlUserStore) {
    let id = store.create_user("g@example.com", "h").await.unwrap();
    assert!(
        store
            .insert_refresh_token("first", "fam", id, 100, 900)
            .await
            .unwrap()
    );
    assert!(matches!(
        store.consume_refresh_token("first", 150).await.unwrap(),
        Consumed::Fresh { .. }
    ));
    assert!(
        store
            .insert_refresh_token("second", "fam", id, 150, 900)
            .await
            .unwrap()
    );
    query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND token_hash <> $3")
        .bind(151_i64)
        .bind("fam")
        .bind("second")
        .execute(store.db())
        .await
        .unwrap();
    assert_eq!(
        store.consume_refresh_token("second", 152).await.unwrap(),
        Consumed::Invalid
    );
}

#[tokio::test]
async fn on_sqlite_a_successor_the_revocation_did_not_reach_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("auth.db").display());
    a_successor_the_revocation_did_not_reach_is_refused(SqlUserStore::connect(&url).await.unwrap())
        .await;
}

#[tokio::test]
async fn on_postgres_a_successor_the_revocation_did_not_reach_is_refused() {
    let Some(db) = orderly_testkit::TestDatabase::create().await else {
        return;
    };
    let store = SqlUserStore::connect(&db.url).await.unwrap();
    a_successor_the_revocation_did_not_reach_is_refused(store.clone()).await;
    store.db().close().await;
}
