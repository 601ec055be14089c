//! The store contract, one body per rule, run against SQLite and PostgreSQL
//! (each on a fresh database, dropped afterwards).

use std::sync::Arc;

use crate::sql_store::SqlUserStore;
use crate::store::{StoreError, UserStore};

/// Keeps the database alive for the test's duration (a temp dir or a PG database).
type Guard = Box<dyn std::any::Any + Send>;

async fn sqlite() -> Option<(Guard, Arc<dyn UserStore>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("sub/auth.db").display()
    );
    let store = SqlUserStore::connect(&url).await.unwrap();
    Some((Box::new(dir), Arc::new(store)))
}

async fn postgres() -> Option<(Guard, Arc<dyn UserStore>)> {
    let db = orderly_testkit::TestDatabase::create().await?;
    let store = SqlUserStore::connect(&db.url).await.unwrap();
    Some((Box::new(db), Arc::new(store)))
}

macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_guard, store) = super::sqlite().await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some((_guard, store)) = super::postgres().await else { return };
                    super::$name(store).await;
                }
            )*
        }
    };
}

for_each_backend!(
    ids_start_at_one_and_emails_are_unique_ignoring_case,
    a_refused_duplicate_leaves_no_gap_in_the_ids,
    concurrent_registrations_of_one_email_make_one_user,
    google_login_never_links_an_existing_email,
    a_linked_google_identity_is_found_by_sub,
    linking_refuses_a_second_identity_or_another_users_identity,
    google_login_creates_a_passwordless_user_once,
    an_email_linked_to_another_google_account_is_a_conflict,
    the_readiness_query_succeeds_on_an_open_store,
    a_lookup_with_a_nul_or_sql_finds_nobody_and_does_not_fail,
);

async fn ids_start_at_one_and_emails_are_unique_ignoring_case(store: Arc<dyn UserStore>) {
    assert_eq!(store.create_user("a@example.com", "h").await.unwrap(), 1);
    assert_eq!(store.create_user("b@example.com", "h").await.unwrap(), 2);
    let err = store.create_user("A@Example.COM", "h").await.unwrap_err();
    assert!(matches!(err, StoreError::DuplicateEmail), "{err}");
    let found = store.find_by_email("A@EXAMPLE.com").await.unwrap().unwrap();
    assert_eq!(found.id, 1);
    assert_eq!(found.role, "user");
    assert_eq!(found.hashed_password.as_deref(), Some("h"));
    assert!(
        store
            .find_by_email("c@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_refused_duplicate_leaves_no_gap_in_the_ids(store: Arc<dyn UserStore>) {
    assert_eq!(store.create_user("a@example.com", "h").await.unwrap(), 1);
    for _ in 0..3 {
        assert!(store.create_user("a@example.com", "h").await.is_err());
    }
    assert_eq!(store.create_user("b@example.com", "h").await.unwrap(), 2);
}

async fn concurrent_registrations_of_one_email_make_one_user(store: Arc<dyn UserStore>) {
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let email = if i % 2 == 0 {
                "same@example.com"
            } else {
                "SAME@example.com"
            };
            tokio::spawn(async move { store.create_user(&email.to_lowercase(), "h").await })
        })
        .collect();
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::DuplicateEmail) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(created, 1);
}

async fn google_login_never_links_an_existing_email(store: Arc<dyn UserStore>) {
    store.create_user("a@example.com", "h").await.unwrap();
    let err = store
        .find_or_create_google("sub-1", "A@example.com")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::GoogleAccountConflict), "{err}");
    let user = store.find_by_email("a@example.com").await.unwrap().unwrap();
    assert_eq!(user.google_sub, None, "not linked");
}

async fn a_linked_google_identity_is_found_by_sub(store: Arc<dyn UserStore>) {
    let id = store.create_user("a@example.com", "h").await.unwrap();
    let linked = store.link_google(id, "sub-1").await.unwrap().unwrap();
    assert_eq!(linked.id, id);
    assert_eq!(linked.hashed_password.as_deref(), Some("h"));
    assert_eq!(linked.google_sub.as_deref(), Some("sub-1"));
    // Linking again is a no-op.
    assert_eq!(store.link_google(id, "sub-1").await.unwrap(), Some(linked));
    // Found by sub even if the Google e-mail changed since.
    let again = store
        .find_or_create_google("sub-1", "new@example.com")
        .await
        .unwrap();
    assert_eq!(again.id, id);
    assert_eq!(store.link_google(id + 100, "sub-2").await.unwrap(), None);
}

async fn linking_refuses_a_second_identity_or_another_users_identity(store: Arc<dyn UserStore>) {
    let a = store.create_user("a@example.com", "h").await.unwrap();
    let b = store.create_user("b@example.com", "h").await.unwrap();
    store.link_google(a, "sub-a").await.unwrap().unwrap();
    for (user, sub) in [(a, "sub-other"), (b, "sub-a")] {
        let err = store.link_google(user, sub).await.unwrap_err();
        assert!(matches!(err, StoreError::GoogleAccountConflict), "{err}");
    }
    let b_user = store.find_by_email("b@example.com").await.unwrap().unwrap();
    assert_eq!(b_user.google_sub, None);
}

async fn google_login_creates_a_passwordless_user_once(store: Arc<dyn UserStore>) {
    let created = store
        .find_or_create_google("sub-9", "g@example.com")
        .await
        .unwrap();
    assert_eq!(created.hashed_password, None);
    let again = store
        .find_or_create_google("sub-9", "g@example.com")
        .await
        .unwrap();
    assert_eq!(again.id, created.id);
}

async fn an_email_linked_to_another_google_account_is_a_conflict(store: Arc<dyn UserStore>) {
    store
        .find_or_create_google("sub-1", "g@example.com")
        .await
        .unwrap();
    let err = store
        .find_or_create_google("sub-2", "g@example.com")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::GoogleAccountConflict), "{err}");
}

async fn the_readiness_query_succeeds_on_an_open_store(store: Arc<dyn UserStore>) {
    store.check().await.unwrap();
}

async fn a_lookup_with_a_nul_or_sql_finds_nobody_and_does_not_fail(store: Arc<dyn UserStore>) {
    store.create_user("a@example.com", "hash").await.unwrap();
    for email in [
        "a@example.com\0",
        "\0",
        "a@example.com' OR '1'='1",
        "%@example.com",
    ] {
        let found = store.find_by_email(email).await.unwrap();
        assert!(found.is_none(), "{email:?} found a user");
    }
}
