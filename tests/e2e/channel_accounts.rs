//! A channel account's life: the moves the lifecycle allows, enforced by the
//! database whoever writes, and each move recorded with who made it and why.

use crate::support::services;
use busflow_activities::lifecycle::{self, StatusActor};
use busflow_activities::model::{ChannelAccountId, ChannelAccountStatus, TenantId};
use busflow_activities::store::channel_accounts::{self, Move};
use busflow_comms::database;
use sqlx::PgPool;
use uuid::Uuid;

async fn pool() -> PgPool {
    let url = services::fresh_database().await.expect("database");
    database::connect(&url, 2).await.expect("connect")
}

async fn account(pool: &PgPool, tenant: TenantId, status: &str) -> ChannelAccountId {
    sqlx::query_scalar(
        "insert into channel_accounts (tenant_id, channel, provider, status)
         values ($1, 'EMAIL', 'AWS_SES', $2) returning id",
    )
    .bind(tenant)
    .bind(status)
    .fetch_one(pool)
    .await
    .expect("account")
}

#[tokio::test]
async fn the_database_allows_exactly_the_moves_the_lifecycle_allows() {
    let pool = pool().await;
    for &from in ChannelAccountStatus::ALL {
        for &to in ChannelAccountStatus::ALL {
            let allowed: bool = sqlx::query_scalar("select channel_account_may_move($1, $2)")
                .bind(from)
                .bind(to)
                .fetch_one(&pool)
                .await
                .expect("may move");
            assert_eq!(allowed, lifecycle::may_move(from, to), "{from} → {to}");
        }
    }
}

#[tokio::test]
async fn a_write_the_lifecycle_refuses_is_refused_even_as_plain_sql() {
    let pool = pool().await;
    let tenant = TenantId(Uuid::new_v4());
    let id = account(&pool, tenant, "ATTENTION").await;

    let written = sqlx::query("update channel_accounts set status = 'ACTIVE' where id = $1")
        .bind(id)
        .execute(&pool)
        .await;
    let error = written.expect_err("ATTENTION → ACTIVE skips the verification");
    assert!(
        error
            .to_string()
            .contains("may not move from ATTENTION to ACTIVE"),
        "{error}"
    );
    let moved = channel_accounts::move_to(
        &pool,
        tenant,
        id,
        ChannelAccountStatus::Active,
        None,
        &StatusActor::Provisioning,
    )
    .await
    .expect("move");
    assert_eq!(
        moved,
        Move::Refused {
            current: ChannelAccountStatus::Attention
        }
    );
    let history = channel_accounts::history(&pool, tenant, id)
        .await
        .expect("history");
    assert_eq!(history.len(), 1, "only its creation: {history:?}");
}

#[tokio::test]
async fn every_move_is_recorded_with_who_made_it_and_why() {
    let pool = pool().await;
    let tenant = TenantId(Uuid::new_v4());
    let id = account(&pool, tenant, "PENDING").await;
    let moves = [
        (
            ChannelAccountStatus::Verifying,
            None,
            StatusActor::Provisioning,
        ),
        (
            ChannelAccountStatus::Active,
            None,
            StatusActor::Provisioning,
        ),
        (
            ChannelAccountStatus::Attention,
            Some("SES: the sending account is paused"),
            StatusActor::Dispatch,
        ),
        (
            ChannelAccountStatus::Verifying,
            None,
            StatusActor::Operator("ops-1".into()),
        ),
    ];
    for (to, reason, actor) in &moves {
        let moved = channel_accounts::move_to(&pool, tenant, id, *to, *reason, actor)
            .await
            .expect("move");
        assert!(matches!(moved, Move::Moved { .. }), "{to}: {moved:?}");
    }
    let again = channel_accounts::move_to(
        &pool,
        tenant,
        id,
        ChannelAccountStatus::Verifying,
        None,
        &StatusActor::Provisioning,
    )
    .await
    .expect("move");
    assert_eq!(again, Move::AlreadyThere);

    let history = channel_accounts::history(&pool, tenant, id)
        .await
        .expect("history");
    let seen: Vec<_> = history
        .iter()
        .map(|c| {
            (
                c.from_status,
                c.to_status,
                c.reason.as_deref(),
                c.changed_by.as_str(),
            )
        })
        .collect();
    use ChannelAccountStatus::*;
    assert_eq!(
        seen,
        vec![
            (None, Pending, None, "database:postgres"),
            (Some(Pending), Verifying, None, "provisioning"),
            (Some(Verifying), Active, None, "provisioning"),
            (
                Some(Active),
                Attention,
                Some("SES: the sending account is paused"),
                "dispatch"
            ),
            (Some(Attention), Verifying, None, "operator:ops-1"),
        ]
    );
    assert!(
        history
            .windows(2)
            .all(|w| w[0].changed_at <= w[1].changed_at),
        "in time order"
    );
}
