//! Reads the shipped Hasura metadata (`hasura/metadata`) the way `hasura
//! metadata apply` does: the table files are the ones `tables.yaml`
//! includes, the function files the ones `functions.yaml` includes. Shared
//! by the metadata drift test and the e2e harness that plays Hasura
//! (`tests/e2e/support/hasura.rs`). No Hasura is needed.

#![allow(dead_code)]

use serde_norway::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn project_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn metadata_dir() -> PathBuf {
    project_root().join("hasura/metadata")
}

pub fn tables_dir() -> PathBuf {
    metadata_dir().join("databases/default/tables")
}

pub fn functions_dir() -> PathBuf {
    metadata_dir().join("databases/default/functions")
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub fn yaml(path: &Path) -> Value {
    serde_norway::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

pub fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

pub fn seq_at<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The file an `!include` entry names. Hasura's CLI writes the tag inside a
/// quoted string (`- "!include public_x.yaml"`); a real YAML tag is accepted too.
pub fn include_target(entry: &Value) -> Option<String> {
    match entry {
        Value::String(s) => s.strip_prefix("!include ").map(|f| f.trim().to_owned()),
        Value::Tagged(tagged) if tagged.tag == "!include" => {
            tagged.value.as_str().map(|f| f.trim().to_owned())
        }
        _ => None,
    }
}

/// One `public_<table>.yaml` file as Hasura applies it.
pub struct TableFile {
    pub file: String,
    pub name: String,
    pub doc: Value,
}

impl TableFile {
    pub fn event_triggers(&self) -> &[Value] {
        seq_at(&self.doc, "event_triggers")
    }
}

/// The table files `tables.yaml` includes, in its order.
pub fn table_files() -> Vec<TableFile> {
    let dir = tables_dir();
    let list = yaml(&dir.join("tables.yaml"));
    let entries = list
        .as_sequence()
        .unwrap_or_else(|| panic!("tables.yaml must be a list of `!include` entries"));
    entries
        .iter()
        .map(|entry| {
            let file = include_target(entry)
                .unwrap_or_else(|| panic!("tables.yaml: {entry:?} is not an `!include <file>`"));
            let doc = yaml(&dir.join(&file));
            let table = doc
                .get("table")
                .unwrap_or_else(|| panic!("{file}: no `table:`"));
            let name = str_at(table, "name")
                .unwrap_or_else(|| panic!("{file}: no `table.name`"))
                .to_owned();
            assert_eq!(
                str_at(table, "schema"),
                Some("public"),
                "{file}: every table lives in schema public"
            );
            TableFile { file, name, doc }
        })
        .collect()
}

/// One tracked SQL function's file (`public_<function>.yaml`) as Hasura applies it.
pub struct FunctionFile {
    pub file: String,
    pub name: String,
    pub doc: Value,
}

/// The function files `functions.yaml` includes, in its order; none when the
/// source tracks no function.
pub fn function_files() -> Vec<FunctionFile> {
    let dir = functions_dir();
    let list_file = dir.join("functions.yaml");
    if !list_file.exists() {
        return Vec::new();
    }
    let list = yaml(&list_file);
    let entries = list
        .as_sequence()
        .unwrap_or_else(|| panic!("functions.yaml must be a list of `!include` entries"));
    entries
        .iter()
        .map(|entry| {
            let file = include_target(entry)
                .unwrap_or_else(|| panic!("functions.yaml: {entry:?} is not an `!include <file>`"));
            let doc = yaml(&dir.join(&file));
            let function = doc
                .get("function")
                .unwrap_or_else(|| panic!("{file}: no `function:`"));
            let name = str_at(function, "name")
                .unwrap_or_else(|| panic!("{file}: no `function.name`"))
                .to_owned();
            assert_eq!(
                str_at(function, "schema"),
                Some("public"),
                "{file}: every function lives in schema public"
            );
            FunctionFile { file, name, doc }
        })
        .collect()
}

pub fn table<'a>(tables: &'a [TableFile], name: &str) -> &'a TableFile {
    tables
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no metadata for table {name} in tables.yaml"))
}

/// Columns an update trigger listens to; `None` when it does not fire on
/// update, `Some(["*"])` for every column.
pub fn update_columns(trigger: &Value) -> Option<Vec<String>> {
    let columns = trigger.get("definition")?.get("update")?.get("columns")?;
    Some(match columns {
        Value::String(all) => vec![all.clone()],
        Value::Sequence(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    })
}

/// One event trigger as Hasura runs it.
#[derive(Debug, Clone)]
pub struct EventTriggerDef {
    pub name: String,
    pub table: String,
    /// Fires on INSERT.
    pub insert: bool,
    /// Fires on UPDATE when one of these columns changes (`*`: any).
    pub update: Option<Vec<String>>,
    /// Env var naming the webhook URL.
    pub webhook_from_env: Option<String>,
    /// Header name → (literal value | env var name).
    pub headers: Vec<(String, HeaderValue)>,
    pub num_retries: u32,
    pub retry_interval: Duration,
}

#[derive(Debug, Clone)]
pub enum HeaderValue {
    Literal(String),
    FromEnv(String),
}

/// Every event trigger of every included table.
pub fn event_trigger_defs() -> Vec<EventTriggerDef> {
    table_files()
        .iter()
        .flat_map(|table| {
            table.event_triggers().iter().map(|trigger| {
                let definition = trigger.get("definition");
                let retry = trigger.get("retry_conf");
                let number = |key: &str| retry.and_then(|r| r.get(key)).and_then(Value::as_u64);
                EventTriggerDef {
                    name: str_at(trigger, "name").unwrap_or_default().to_owned(),
                    table: table.name.clone(),
                    insert: definition.and_then(|d| d.get("insert")).is_some(),
                    update: update_columns(trigger),
                    webhook_from_env: str_at(trigger, "webhook_from_env").map(str::to_owned),
                    headers: seq_at(trigger, "headers")
                        .iter()
                        .filter_map(|h| {
                            let name = str_at(h, "name")?.to_owned();
                            let value = match (str_at(h, "value"), str_at(h, "value_from_env")) {
                                (Some(v), _) => HeaderValue::Literal(v.to_owned()),
                                (None, Some(env)) => HeaderValue::FromEnv(env.to_owned()),
                                (None, None) => return None,
                            };
                            Some((name, value))
                        })
                        .collect(),
                    num_retries: u32::try_from(number("num_retries").unwrap_or(0)).unwrap_or(0),
                    retry_interval: Duration::from_secs(number("interval_sec").unwrap_or(10)),
                }
            })
        })
        .collect()
}
