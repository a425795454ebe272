//! A TCP proxy in front of Postgres whose connections can be cut: every
//! open connection is dropped at once, and new ones are closed on arrival
//! until it is restored. What a Postgres restart or a network partition
//! looks like to the worker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct CuttableProxy {
    pub address: String,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    server: JoinHandle<()>,
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.server.abort();
        self.drop_connections();
    }
}

impl CuttableProxy {
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("addr").to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let server = tokio::spawn({
            let (cut, connections) = (cut.clone(), connections.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: closed on arrival
                    }
                    let target = target.clone();
                    let connection = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    let mut open = connections.lock().expect("lock");
                    open.retain(|c| !c.is_finished());
                    open.push(connection);
                }
            }
        });
        Self {
            address,
            cut,
            connections,
            server,
        }
    }

    /// Drops every connection and refuses new ones until [`Self::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.drop_connections();
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    fn drop_connections(&self) {
        for connection in self.connections.lock().expect("lock").drain(..) {
            connection.abort();
        }
    }
}
