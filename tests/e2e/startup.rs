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

#[test]
fn help_never_shows_the_database_urls_password() {
    for command in ["serve", "worker", "migrate"] {
        let output = Command::new(env!("CARGO_BIN_EXE_busflow-comms"))
            .args([command, "--help"])
            .env(
                "DATABASE_URL",
                "postgres://app:s3cret-db-password@db.internal/comms",
            )
            .env("BUSFLOW_METRICS_TOKEN", "s3cret-metrics-token")
            .output()
            .expect("run busflow-comms");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("DATABASE_URL"), "{command} --help: {help}");
        assert!(
            !help.contains("s3cret"),
            "{command} --help shows a secret: {help}"
        );
    }
}
