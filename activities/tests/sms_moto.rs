//! `SnsSms` against a real moto server (the project's SNS stand-in): what moto
//! records as sent, and how its refusals are classified. Each test runs its
//! own moto on a free 127.0.0.1 port and stops it when done.
//!
//! moto comes from `scripts/tools.sh` (`.tools/venv/bin/moto_server` at the
//! workspace root); `MOTO_SERVER` overrides the path.

use busflow_activities::model::{Channel, MessageId};
use busflow_activities::providers::aws::{AwsSettings, sdk_config};
use busflow_activities::providers::sms::sns::{SmsAccountConfig, SnsSms};
use busflow_activities::providers::{FailureClass, SendMessageCommand};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A moto server that is stopped when dropped.
struct Moto {
    process: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Self {
        let binary = std::env::var_os("MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/moto_server")
            });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut process = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run scripts/tools.sh or set MOTO_SERVER",
                    binary.display()
                )
            });
        // Werkzeug announces "Running on" once it listens. Keep draining its
        // log afterwards so that it never blocks on a full pipe.
        let stderr = process.stderr.take().expect("piped stderr");
        let (listening, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Running on") {
                    let _ = listening.send(());
                }
            }
        });
        let moto = Self {
            process,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        ready
            .recv_timeout(Duration::from_secs(30))
            .expect("moto listening within 30 s");
        moto
    }

    async fn sms(&self) -> SnsSms {
        let sdk = sdk_config(&AwsSettings {
            region: "us-east-1".into(),
            endpoint_url: Some(self.endpoint.clone()),
            static_credentials: Some(("testing".into(), "testing".into())),
        })
        .await;
        SnsSms::new(&sdk)
    }

    /// The SMS moto recorded as sent.
    async fn sent_sms(&self) -> Vec<Value> {
        let data: Value = busflow_activities::http::client(Duration::from_secs(10))
            .expect("http client")
            .get(format!("{}/moto-api/data.json", self.endpoint))
            .send()
            .await
            .expect("moto data")
            .json()
            .await
            .expect("moto json");
        data["sns"]["SMS"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn sms(recipient: &str, body: &str) -> SendMessageCommand {
    SendMessageCommand {
        message_id: MessageId(uuid::Uuid::new_v4()),
        channel: Channel::Sms,
        recipient: recipient.into(),
        subject: None,
        body: body.into(),
        body_html: None,
        whatsapp_template: None,
    }
}

#[tokio::test]
async fn a_published_sms_is_what_moto_records_as_sent() {
    let moto = Moto::start();
    let account = SmsAccountConfig {
        sender_id: Some("BusFlow".into()),
        origination_number: Some("+18445550123".into()),
    };
    let body = "Su autobús MEX-GDL sale mañana a las 09:00, andén 4.";

    let accepted = moto
        .sms()
        .await
        .send(&account, &sms("+525512345678", body))
        .await
        .expect("published");

    let sent = moto.sent_sms().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["phone_number"], "+525512345678");
    assert_eq!(sent[0]["message"], body);
    assert_eq!(
        sent[0]["message_id"].as_str(),
        Some(accepted.external_message_id.as_str())
    );
}

#[tokio::test]
async fn a_number_that_is_not_e164_is_a_recipient_problem() {
    let moto = Moto::start();

    let failure = moto
        .sms()
        .await
        .send(
            &SmsAccountConfig::default(),
            &sms("+52-55-1234-5678", "hola"),
        )
        .await
        .expect_err("moto refuses dashes");

    assert_eq!(failure.code, "InvalidParameter");
    assert_eq!(failure.class, FailureClass::Recipient);
    assert!(moto.sent_sms().await.is_empty());
}
