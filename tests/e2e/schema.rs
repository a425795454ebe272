//! The schema as Hasura and the service use it: migrations, tenant-scoped
//! keys, and the computed fields called exactly as Hasura calls them.

use crate::support::services;
use busflow_comms::database;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_rerun_as_a_no_op() {
    let url = format!(
        "{}/bft_{}",
        services::POSTGRES_SERVER,
        Uuid::new_v4().simple()
    );
    database::ensure_database(&url).await.expect("create");
    let pool = database::connect(&url, 1).await.expect("connect");
    database::migrate(&pool).await.expect("first run");
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("count");
    database::migrate(&pool).await.expect("second run");
    let again: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(applied, again);
    assert!(applied >= 2);
    // The platform's templates are files (`templates/`), not rows: the
    // table holds only tenants' own.
    let platform_rows: i64 =
        sqlx::query_scalar("select count(*) from notification_templates where tenant_id is null")
            .fetch_one(&pool)
            .await
            .expect("platform templates");
    assert_eq!(platform_rows, 0);
}

#[tokio::test]
async fn unread_counts_follow_inbound_messages_and_each_agents_read_cursor() {
    let url = services::fresh_database().await.expect("db");
    let pool = database::connect(&url, 2).await.expect("connect");
    let tenant = Uuid::new_v4();
    let contact: Uuid = sqlx::query_scalar(
        "insert into contacts (tenant_id, display_name) values ($1, 'Ana') returning id",
    )
    .bind(tenant)
    .fetch_one(&pool)
    .await
    .expect("contact");
    let account: Uuid = sqlx::query_scalar(
        "insert into channel_accounts (tenant_id, channel, provider, status, external_account_id)
         values ($1, 'WHATSAPP', 'META_CLOUD', 'ACTIVE', '1555') returning id",
    )
    .bind(tenant)
    .fetch_one(&pool)
    .await
    .expect("account");
    let conversation: Uuid = sqlx::query_scalar(
        "insert into conversations (tenant_id, contact_id, channel_account_id) values ($1, $2, $3) returning id",
    )
    .bind(tenant)
    .bind(contact)
    .bind(account)
    .fetch_one(&pool)
    .await
    .expect("conversation");
    let message = |direction: &'static str, at: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "insert into messages (tenant_id, conversation_id, direction, channel, status, body, created_at)
                 values ($1, $2, $3, 'WHATSAPP', 'DELIVERED', 'hola', $4::timestamptz)",
            )
            .bind(tenant)
            .bind(conversation)
            .bind(direction)
            .bind(at)
            .execute(&pool)
            .await
            .expect("message");
        }
    };
    message("INBOUND", "2026-11-27T10:00:00Z").await;
    message("INBOUND", "2026-11-27T10:05:00Z").await;
    message("OUTBOUND", "2026-11-27T10:06:00Z").await;
    sqlx::query(
        "insert into conversation_read_cursors (tenant_id, conversation_id, agent_id, last_read_at)
         values ($1, $2, 'agent-1', '2026-11-27T10:01:00Z')",
    )
    .bind(tenant)
    .bind(conversation)
    .execute(&pool)
    .await
    .expect("cursor");

    let unread_for = |agent: &'static str| {
        let pool = pool.clone();
        async move {
            let session = json!({"x-hasura-role": "dispatcher", "x-hasura-user-id": agent});
            sqlx::query_scalar::<_, i32>(
                "select conversation_unread_count(c, $2::json) from conversations c where c.id = $1",
            )
            .bind(conversation)
            .bind(session)
            .fetch_one(&pool)
            .await
            .expect("computed field")
        }
    };
    assert_eq!(
        unread_for("agent-1").await,
        1,
        "one inbound after agent-1's cursor; outbound never counts"
    );
    assert_eq!(
        unread_for("agent-2").await,
        2,
        "no cursor: every inbound message is unread"
    );
}

#[tokio::test]
async fn a_row_can_never_point_at_another_tenants_row() {
    let url = services::fresh_database().await.expect("db");
    let pool = database::connect(&url, 1).await.expect("connect");
    let (tenant_a, tenant_b) = (Uuid::new_v4(), Uuid::new_v4());
    let contact_a: Uuid =
        sqlx::query_scalar("insert into contacts (tenant_id) values ($1) returning id")
            .bind(tenant_a)
            .fetch_one(&pool)
            .await
            .expect("contact");
    let crossing = sqlx::query(
        "insert into messages (tenant_id, contact_id, direction, channel) values ($1, $2, 'OUTBOUND', 'EMAIL')",
    )
    .bind(tenant_b)
    .bind(contact_a)
    .execute(&pool)
    .await;
    let error = crossing.expect_err("cross-tenant reference refused");
    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23503")
    );
}

#[tokio::test]
async fn the_channels_table_holds_exactly_the_channels_with_an_adapter_and_refuses_others() {
    let app = crate::support::TestApp::spawn_with(crate::support::TestOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let mut rows: Vec<String> = sqlx::query_scalar("select name from channels")
        .fetch_all(&app.pool)
        .await
        .expect("channels");
    rows.sort();
    let mut adapters: Vec<String> = busflow_activities::providers::ADAPTERS
        .iter()
        .map(|a| a.channel().as_str().to_owned())
        .collect();
    adapters.sort();
    assert_eq!(rows, adapters);

    let unknown = sqlx::query(
        "insert into channel_accounts (tenant_id, channel, provider, status, external_account_id)
         values ($1, 'TELEGRAM', 'TELEGRAM', 'ACTIVE', 'bot')",
    )
    .bind(app.tenant_id)
    .execute(&app.pool)
    .await;
    assert!(unknown.is_err(), "a channel without a row is refused");
}
