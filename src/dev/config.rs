//! `temporal-dev.yml`: the declared local stack.

use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevStack {
    pub temporal: TemporalDev,
    pub aws_emulator: AwsEmulator,
    pub meta_graph: MetaGraphDev,
    pub service: ServiceDev,
    pub demo_tenant: DemoTenant,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemporalDev {
    pub cli: PathBuf,
    pub ip: String,
    pub port: u16,
    pub ui_port: u16,
    pub namespace: String,
    pub db_filename: PathBuf,
    #[serde(default)]
    pub sqlite_pragmas: BTreeMap<String, String>,
    pub log_level: String,
    pub search_attributes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsEmulator {
    pub command: PathBuf,
    pub ip: String,
    pub port: u16,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The Graph API stand-in (`src/dev/graph.rs`) and the platform Meta app
/// it plays Meta for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaGraphDev {
    pub ip: String,
    pub port: u16,
    pub app_id: String,
    pub app_secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDev {
    pub database_url: String,
    pub listen: std::net::SocketAddr,
    pub webhook_secret: String,
    pub task_queue: String,
    /// Development-only key ring for channel account secrets.
    pub secret_keys: String,
    /// The platform's SMS senders (`BUSFLOW_SMS_POOL`'s form).
    #[serde(default)]
    pub sms_pool: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoTenant {
    pub id: Uuid,
    pub display_name: String,
    pub default_region: String,
    pub default_locale: String,
    pub time_zone: String,
    pub email: DemoEmail,
    pub whatsapp: DemoWhatsApp,
    pub sms: DemoSms,
    pub webchat: DemoWebchat,
    pub passengers: Vec<DemoPassenger>,
}

/// The widget on the demo page (`/webchat/{tenant}/demo`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoWebchat {
    /// Signs the visitors' tokens.
    pub widget_secret: String,
}

/// An SMS account publishing through SNS (the AWS emulator on the dev stack).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSms {
    pub origination_number: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoWhatsApp {
    pub phone_number_id: String,
    pub sandbox_outcome: String,
    #[serde(default)]
    pub sandbox_failing_recipients: Vec<String>,
    pub template_name: String,
    pub template_language: String,
    pub app_secret: String,
    pub verify_token: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoEmail {
    pub from_address: String,
    pub from_name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoPassenger {
    pub passenger_profile_id: Uuid,
    pub full_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub locale: Option<String>,
}

impl DevStack {
    /// Reads the file and resolves its relative paths against its folder.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut stack: DevStack =
            serde_norway::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut stack.temporal.cli,
            &mut stack.temporal.db_filename,
            &mut stack.aws_emulator.command,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        stack.check_search_attributes()?;
        Ok(stack)
    }

    /// The file must declare exactly the attributes the workflows set.
    fn check_search_attributes(&self) -> anyhow::Result<()> {
        let declared = &self.temporal.search_attributes;
        for (name, kind) in busflow_workflows::names::search_attributes::registrations() {
            match declared.get(name) {
                Some(k) if k == kind => {}
                Some(k) => anyhow::bail!(
                    "temporal-dev.yml declares search attribute {name} as {k}; the service uses {kind}"
                ),
                None => anyhow::bail!(
                    "temporal-dev.yml does not declare search attribute {name} ({kind})"
                ),
            }
        }
        Ok(())
    }

    pub fn temporal_address(&self) -> String {
        format!("{}:{}", self.temporal.ip, self.temporal.port)
    }

    pub fn aws_endpoint(&self) -> String {
        format!("http://{}:{}", self.aws_emulator.ip, self.aws_emulator.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_stack_file_parses_and_matches_the_workflows() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("temporal-dev.yml");
        let stack = DevStack::load(&path).expect("temporal-dev.yml is valid");
        assert_eq!(stack.temporal.port, 7233);
        assert_eq!(stack.temporal.ui_port, 8233);
        assert!(stack.temporal.cli.ends_with(".tools/venv/bin/temporal"));
    }
}
