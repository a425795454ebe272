//! `busflow-comms serve` refuses to start with a configuration that would
//! accept what it must not, and says which setting to fix.

use std::process::Command;

#[test]
fn serve_without_sns_topics_refuses_to_start_and_names_the_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_busflow-comms"))
        .arg("serve")
        .env("BUSFLOW_WEBHOOK_SECRET", "a-secret")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:9/nowhere")
        .env_remove("BUSFLOW_SNS_SES_EVENT_TOPIC_ARNS")
        .env_remove("BUSFLOW_SNS_INBOUND_EMAIL_TOPIC_ARNS")
        .env_remove("BUSFLOW_SNS_INBOUND_SMS_TOPIC_ARNS")
        .output()
        .expect("run busflow-comms");

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("BUSFLOW_SNS_SES_EVENT_TOPIC_ARNS is empty"),
        "{stderr}"
    );
}
