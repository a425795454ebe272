//! Wakes the long polls of this API replica when their visitor has news.
//!
//! Postgres announces each newly visible webchat message on
//! `busflow_webchat` as `{tenant}:{visitor}` when its transaction commits
//! (the trigger that numbers it); one listening connection per replica hands
//! each announcement to the polls waiting for that visitor. Announcements
//! sent while the listener was disconnected are lost, so on every reconnect
//! every waiting poll is woken to read again: a poll may wake for nothing,
//! never sleep through its message.

use busflow_activities::model::TenantId;
use busflow_activities::store::webchat::NOTIFY_CHANNEL;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// The waiting polls of this replica, by visitor.
#[derive(Default)]
pub struct Hub {
    waiters: Mutex<HashMap<String, Weak<Notify>>>,
    listening: OnceLock<()>,
}

impl Hub {
    /// What a poll for this visitor waits on. Register interest
    /// (`Notified::enable`) before reading, so news that commits between the
    /// read and the wait is not missed.
    pub fn watch(
        self: &Arc<Self>,
        pool: &PgPool,
        tenant_id: TenantId,
        visitor: &str,
    ) -> Arc<Notify> {
        self.listening.get_or_init(|| {
            tokio::spawn(listen(Arc::downgrade(self), pool.clone()));
        });
        let key = key(tenant_id, visitor);
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(notify) = waiters.get(&key).and_then(Weak::upgrade) {
            return notify;
        }
        if waiters.len() >= 1024 && waiters.len().is_power_of_two() {
            waiters.retain(|_, w| w.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        waiters.insert(key, Arc::downgrade(&notify));
        notify
    }

    fn wake(&self, key: &str) {
        let waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(notify) = waiters.get(key).and_then(Weak::upgrade) {
            notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        waiters.retain(|_, w| match w.upgrade() {
            Some(notify) => {
                notify.notify_waiters();
                true
            }
            None => false,
        });
    }
}

fn key(tenant_id: TenantId, visitor: &str) -> String {
    format!("{tenant_id}:{visitor}")
}

/// Listens until the hub is gone, reconnecting after any failure.
async fn listen(hub: Weak<Hub>, pool: PgPool) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match listener {
            Ok(mut listener) => {
                backoff = Duration::from_millis(250);
                // Whatever was announced before this connection listened.
                match hub.upgrade() {
                    Some(hub) => hub.wake_all(),
                    None => return,
                }
                loop {
                    let next = listener.try_recv().await;
                    let Some(hub) = hub.upgrade() else { return };
                    match next {
                        Ok(Some(notification)) => hub.wake(notification.payload()),
                        // The connection was lost; the next call reconnects.
                        Ok(None) => hub.wake_all(),
                        Err(e) => {
                            tracing::warn!("webchat listener lost: {e}");
                            hub.wake_all();
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("webchat listener cannot listen yet: {e}"),
        }
        if hub.strong_count() == 0 || pool.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
