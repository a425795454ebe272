//! Keeps the Hasura metadata (`hasura/metadata`) and the service's routes from
//! drifting apart: every event trigger Hasura fires is one the service routes
//! (and the reverse), every action Hasura exposes is one the service serves
//! (and the reverse), every webhook carries the shared secret, the inbox's
//! computed field and badge function are functions the migrations create, no
//! role can read a channel account's sealed secrets, and every inbox
//! subscription the UI ships (`hasura/subscriptions/`) asks only for what the
//! metadata lets the dispatcher read.
//!
//! Reads the files the way `hasura metadata apply` does: the table files are
//! the ones `tables.yaml` includes, the function files the ones
//! `functions.yaml` includes. No Hasura is needed.

use busflow_activities::model::ContactKind;
use busflow_activities::triggers::{self, RecipientRule, Route, Trigger};
use busflow_api::auth::SECRET_HEADER;
use busflow_api::hasura::actions::ACTIONS;
#[path = "shared/hasura_metadata.rs"]
mod metadata;
#[path = "hasura_metadata/role_schema.rs"]
mod role_schema;

use async_graphql_parser::parse_schema;
use async_graphql_parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use metadata::{
    function_files, functions_dir, include_target, metadata_dir, project_root, read, seq_at,
    str_at, table, table_files, tables_dir, update_columns, yaml,
};
use role_schema::{RoleSchema, SqlFunction, root_field_claims};
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::PathBuf;

/// Env var (on the Hasura server) holding the URL of `POST /hasura/events`.
const EVENTS_URL_ENV: &str = "BUSFLOW_EVENTS_URL";
/// Handler of every action: the URL of `POST /hasura/actions`, from the env.
const ACTIONS_HANDLER: &str = "{{BUSFLOW_ACTIONS_URL}}";
/// Env var (on the Hasura server) holding the shared secret's value.
const SECRET_ENV: &str = "BUSFLOW_WEBHOOK_SECRET";

const UNREAD_COUNT_FUNCTION: &str = "conversation_unread_count";
const BADGE_FUNCTION: &str = "inbox_badge";
/// The role of the inbox's agents; every inbox read is theirs.
const DISPATCHER: &str = "dispatcher";
/// The subscriptions the inbox UI runs, in `hasura/subscriptions/`.
const INBOX_SUBSCRIPTIONS: [&str; 4] = [
    "conversation_list.graphql",
    "thread.graphql",
    "badge.graphql",
    "quarantine.graphql",
];
const SEALED_COLUMN: &str = "provider_secrets";

/// Event triggers on this service's own tables that tell other contexts
/// what happened here (trigger, table, env var of the receiver's URL, env var
/// of its secret): they do not call this service.
const OUTBOUND_TRIGGERS: &[(&str, &str, &str, &str)] = &[(
    "channel_account_status_changed",
    "channel_account_status_history",
    "OPERATOR_INTEGRATIONS_WEBHOOK_URL",
    "OPERATOR_INTEGRATIONS_WEBHOOK_SECRET",
)];

fn is_outbound(trigger: &Value) -> bool {
    str_at(trigger, "name").is_some_and(|name| OUTBOUND_TRIGGERS.iter().any(|t| t.0 == name))
}

/// The event triggers that call this service's `POST /hasura/events`.
fn inbound_triggers(table: &metadata::TableFile) -> impl Iterator<Item = &Value> {
    table.event_triggers().iter().filter(|t| !is_outbound(t))
}

/// Fails with every problem at once, one per line.
fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

/// Asserts two name sets are equal, naming what is missing on each side.
fn assert_same_names<T: Ord + Debug>(
    what: &str,
    metadata_side: &str,
    metadata: &BTreeSet<T>,
    service_side: &str,
    service: &BTreeSet<T>,
) {
    let only_in_metadata: Vec<_> = metadata.difference(service).collect();
    let only_in_service: Vec<_> = service.difference(metadata).collect();
    assert!(
        only_in_metadata.is_empty() && only_in_service.is_empty(),
        "{what} drifted apart:\n  in {metadata_side} but not in {service_side}: {only_in_metadata:?}\n  \
         in {service_side} but not in {metadata_side}: {only_in_service:?}"
    );
}

#[test]
fn every_table_file_is_included_and_the_source_includes_tables_yaml() {
    let databases = yaml(&metadata_dir().join("databases/databases.yaml"));
    let sources = databases
        .as_sequence()
        .unwrap_or_else(|| panic!("databases.yaml must be a list of sources"));
    let default = sources
        .iter()
        .find(|s| str_at(s, "name") == Some("default"))
        .unwrap_or_else(|| panic!("databases.yaml has no source `default`"));
    assert_eq!(
        default.get("tables").and_then(include_target).as_deref(),
        Some("default/tables/tables.yaml"),
        "source `default` must include default/tables/tables.yaml"
    );
    assert_eq!(
        default
            .get("configuration")
            .and_then(|c| c.get("connection_info"))
            .and_then(|c| c.get("database_url"))
            .and_then(|u| str_at(u, "from_env")),
        Some("PG_DATABASE_URL"),
        "source `default` takes its URL from PG_DATABASE_URL"
    );

    let included: BTreeSet<String> = table_files().into_iter().map(|t| t.file).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(tables_dir())
        .unwrap_or_else(|e| panic!("list {}: {e}", tables_dir().display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("list tables dir: {e}"))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|f| f.ends_with(".yaml") && f != "tables.yaml")
        .collect();
    // A file tables.yaml does not include is silently ignored by Hasura.
    assert_same_names(
        "table files",
        "tables.yaml",
        &included,
        "the tables directory",
        &on_disk,
    );
}

#[test]
fn event_triggers_are_exactly_the_triggers_the_service_routes() {
    let mut declared = BTreeMap::<String, Vec<String>>::new();
    for table in table_files() {
        for trigger in inbound_triggers(&table) {
            let name = str_at(trigger, "name")
                .unwrap_or_else(|| panic!("{}: an event trigger without a name", table.file));
            declared
                .entry(name.to_owned())
                .or_default()
                .push(table.name.clone());
        }
    }
    let duplicates: Vec<String> = declared
        .iter()
        .filter(|(_, tables)| tables.len() > 1)
        .map(|(name, tables)| format!("{name} is declared on {tables:?}"))
        .collect();
    assert_no_problems("event trigger names must be unique", &duplicates);

    let in_metadata: BTreeSet<&str> = declared.keys().map(String::as_str).collect();
    let routed: BTreeSet<&str> = triggers::hasura_triggers().map(Trigger::as_str).collect();
    assert_same_names(
        "Event triggers",
        "hasura/metadata",
        &in_metadata,
        "the trigger registry (busflow_activities::triggers)",
        &routed,
    );
}

#[test]
fn every_event_trigger_posts_to_the_events_endpoint_with_the_shared_secret() {
    let mut problems = Vec::new();
    for table in table_files() {
        for trigger in inbound_triggers(&table) {
            let name = str_at(trigger, "name").unwrap_or("<unnamed>");
            let at = format!("{}.{name}", table.name);
            if str_at(trigger, "webhook_from_env") != Some(EVENTS_URL_ENV) {
                problems.push(format!("{at}: webhook_from_env must be {EVENTS_URL_ENV}"));
            }
            if trigger.get("webhook").is_some() {
                problems.push(format!(
                    "{at}: a literal `webhook` bypasses {EVENTS_URL_ENV}"
                ));
            }
            problems.extend(secret_header_problems(&at, seq_at(trigger, "headers")));
            problems.extend(outage_problems(&at, trigger.get("retry_conf")));
            let definition = trigger.get("definition");
            let ops = ["insert", "update", "delete"];
            if !ops
                .iter()
                .any(|op| definition.and_then(|d| d.get(*op)).is_some())
            {
                problems.push(format!("{at}: fires on no operation"));
            }
            if definition.and_then(|d| d.get("delete")).is_some() {
                problems.push(format!(
                    "{at}: DELETE events carry no event.data.new, which every route reads"
                ));
            }
        }
    }
    assert_no_problems("event triggers not wired to the service", &problems);
}

#[test]
fn status_changes_reach_operator_integrations_once_per_move_and_survive_their_outages() {
    let tables = table_files();
    let mut problems = Vec::new();
    for &(name, on, url_env, secret_env) in OUTBOUND_TRIGGERS {
        let trigger = table(&tables, on)
            .event_triggers()
            .iter()
            .find(|t| str_at(t, "name") == Some(name));
        let Some(trigger) = trigger else {
            problems.push(format!("{on} has no event trigger {name}"));
            continue;
        };
        let at = format!("{on}.{name}");
        if str_at(trigger, "webhook_from_env") != Some(url_env) {
            problems.push(format!("{at}: webhook_from_env must be {url_env}"));
        }
        let secret = seq_at(trigger, "headers")
            .iter()
            .find(|h| str_at(h, "name").is_some_and(|n| n.eq_ignore_ascii_case(SECRET_HEADER)));
        if secret.and_then(|h| str_at(h, "value_from_env")) != Some(secret_env) {
            problems.push(format!(
                "{at}: {SECRET_HEADER} must take value_from_env: {secret_env}"
            ));
        }
        let definition = trigger.get("definition");
        let fires = |op: &str| definition.and_then(|d| d.get(op)).is_some();
        if !fires("insert") || fires("update") || fires("delete") {
            problems.push(format!(
                "{at}: one event per move means insert only (history rows never change)"
            ));
        }
        problems.extend(outage_problems(&at, trigger.get("retry_conf")));
    }
    let documented = read(&project_root().join("hasura/README.md"));
    for &(name, _, url_env, secret_env) in OUTBOUND_TRIGGERS {
        for word in [name, url_env, secret_env] {
            if !documented.contains(word) {
                problems.push(format!("hasura/README.md does not document {word}"));
            }
        }
    }
    assert_no_problems("the status contract", &problems);
}

/// The header list must send `x-busflow-secret` from `BUSFLOW_WEBHOOK_SECRET`
/// (never as a literal in the metadata).
fn secret_header_problems(at: &str, headers: &[Value]) -> Vec<String> {
    let secret = headers
        .iter()
        .find(|h| str_at(h, "name").is_some_and(|n| n.eq_ignore_ascii_case(SECRET_HEADER)));
    match secret {
        None => vec![format!("{at}: no {SECRET_HEADER} header")],
        Some(header) if header.get("value").is_some() => vec![format!(
            "{at}: {SECRET_HEADER} is a literal value; use value_from_env: {SECRET_ENV}"
        )],
        Some(header) if str_at(header, "value_from_env") != Some(SECRET_ENV) => {
            vec![format!(
                "{at}: {SECRET_HEADER} must take value_from_env: {SECRET_ENV}"
            )]
        }
        Some(_) => Vec::new(),
    }
}

#[test]
fn event_triggers_sit_on_the_registry_table_and_fire_on_the_columns_their_condition_reads() {
    let tables = table_files();
    let table_of: BTreeMap<&str, (&str, &Value)> = tables
        .iter()
        .flat_map(|t| {
            inbound_triggers(t).filter_map(move |trigger| {
                Some((str_at(trigger, "name")?, (t.name.as_str(), trigger)))
            })
        })
        .collect();
    let mut problems = Vec::new();
    for trigger in triggers::hasura_triggers() {
        // Missing triggers are reported by the name test.
        let Some((table, definition)) = table_of.get(trigger.as_str()) else {
            continue;
        };
        let expected = trigger.table().map(|t| t.as_str()).unwrap_or_default();
        if *table != expected {
            problems.push(format!(
                "{trigger}: the registry reads rows of {expected}, but the trigger is on {table}"
            ));
        }
        let on_insert = definition
            .get("definition")
            .and_then(|d| d.get("insert"))
            .is_some();
        let update = update_columns(definition);
        let (needs_insert, needs_update, columns) = match trigger.notification() {
            Some(n) => (
                n.condition.on_insert(),
                n.condition.on_update(),
                n.condition.columns(),
            ),
            None => (true, true, Vec::new()),
        };
        if needs_insert != on_insert {
            problems.push(format!(
                "{trigger}: {} on insert, but the metadata {}",
                if needs_insert {
                    "can notify"
                } else {
                    "never notifies"
                },
                if on_insert {
                    "fires it on insert"
                } else {
                    "does not fire it on insert"
                }
            ));
        }
        match (&update, needs_update) {
            (None, true) => problems.push(format!(
                "{trigger}: can notify on update, but does not fire on update"
            )),
            (Some(_), false) => problems.push(format!(
                "{trigger}: never notifies on update, but fires on update"
            )),
            (Some(listened), true) if !listened.iter().any(|c| c == "*") => {
                for column in &columns {
                    if !listened.iter().any(|c| c == column) {
                        problems.push(format!(
                            "{trigger}: its condition reads `{column}`, so the update trigger must listen to it \
                             (Hasura fires only when a listened column changes)"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    assert_no_problems("event triggers on the wrong table or columns", &problems);
}

#[test]
fn the_readme_trigger_table_is_the_registry() {
    let readme = read(&project_root().join("hasura/README.md"));
    let expected = trigger_table();
    let (begin, end) = (
        "<!-- trigger table: begin -->",
        "<!-- trigger table: end -->",
    );
    let shown = readme
        .split_once(begin)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(table, _)| table.trim())
        .unwrap_or_else(|| {
            panic!(
                "hasura/README.md has no `{begin}` … `{end}` section; it should hold:\n\n{expected}"
            )
        });
    assert!(
        shown == expected.trim(),
        "hasura/README.md's trigger table is not the registry's; replace it with:\n\n{expected}"
    );
}

/// Each Hasura trigger: its table, the columns Hasura fires on, when it
/// notifies, whom, and the default chain.
fn trigger_table() -> String {
    let tables = table_files();
    let fires_on = |name: &str| -> String {
        let Some(definition) = tables
            .iter()
            .flat_map(|t| t.event_triggers())
            .find(|t| str_at(t, "name") == Some(name))
        else {
            return "—".to_owned();
        };
        let mut ops = Vec::new();
        if definition
            .get("definition")
            .and_then(|d| d.get("insert"))
            .is_some()
        {
            ops.push("insert".to_owned());
        }
        if let Some(columns) = update_columns(definition) {
            let columns = columns
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ");
            ops.push(format!("update of {columns}"));
        }
        ops.join("; ")
    };
    let mut out = String::from(
        "| trigger | table | Hasura fires on | notifies when | who | default chain |\n|---|---|---|---|---|---|\n",
    );
    for trigger in triggers::hasura_triggers() {
        let table = trigger.table().map(|t| t.as_str()).unwrap_or_default();
        let (when, who, chain) = match trigger.route() {
            Some(Route::Notify(n)) => (
                n.condition.describe(),
                match n.recipient {
                    RecipientRule::Person(kind) => format!(
                        "the {} named by `{}`{}",
                        kind.as_str().to_lowercase(),
                        RecipientRule::person_column(kind),
                        if kind == ContactKind::Customer {
                            " (else `contact_email`)"
                        } else {
                            ""
                        }
                    ),
                    RecipientRule::TripPassengers { driver: true } => {
                        "every passenger of the trip, and its driver (driver's template)".to_owned()
                    }
                    RecipientRule::TripPassengers { driver: false } => {
                        "every passenger of the trip".to_owned()
                    }
                    RecipientRule::TripDriver => "the trip's driver".to_owned(),
                    RecipientRule::Conversation => "the conversation's contact".to_owned(),
                },
                n.default_chain
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(" → "),
            ),
            Some(Route::Contact(kind)) => (
                format!(
                    "never: keeps the {} contact in step",
                    kind.as_str().to_lowercase()
                ),
                "—".to_owned(),
                "—".to_owned(),
            ),
            _ => (
                "never: records the trip for its reminder and fan-outs".to_owned(),
                "—".to_owned(),
                "—".to_owned(),
            ),
        };
        out.push_str(&format!(
            "| `{trigger}` | `{table}` | {} | {when} | {who} | {chain} |\n",
            fires_on(trigger.as_str())
        ));
    }
    out
}

#[test]
fn actions_are_exactly_the_actions_the_service_serves() {
    let served: BTreeSet<&str> = ACTIONS.iter().copied().collect();

    let actions_yaml = yaml(&metadata_dir().join("actions.yaml"));
    let declared: BTreeSet<&str> = seq_at(&actions_yaml, "actions")
        .iter()
        .map(|a| {
            str_at(a, "name").unwrap_or_else(|| panic!("actions.yaml: an action without a name"))
        })
        .collect();
    assert_same_names(
        "Actions",
        "actions.yaml",
        &declared,
        "busflow_api::hasura::actions::ACTIONS",
        &served,
    );

    let sdl = Sdl::parse(&read(&metadata_dir().join("actions.graphql")));
    let fields: BTreeSet<&str> = sdl.root_fields.keys().map(String::as_str).collect();
    assert_same_names(
        "Action fields",
        "actions.graphql (type Mutation / type Query)",
        &fields,
        "busflow_api::hasura::actions::ACTIONS",
        &served,
    );
}

#[test]
fn every_action_calls_the_actions_endpoint_with_the_shared_secret() {
    let actions_yaml = yaml(&metadata_dir().join("actions.yaml"));
    let sdl = Sdl::parse(&read(&metadata_dir().join("actions.graphql")));
    let custom_objects: BTreeSet<&str> = actions_yaml
        .get("custom_types")
        .map(|t| seq_at(t, "objects"))
        .unwrap_or_default()
        .iter()
        .filter_map(|o| str_at(o, "name"))
        .collect();
    let mut problems = Vec::new();
    for action in seq_at(&actions_yaml, "actions") {
        let name = str_at(action, "name").unwrap_or("<unnamed>");
        let Some(definition) = action.get("definition") else {
            problems.push(format!("{name}: no definition"));
            continue;
        };
        if str_at(definition, "handler") != Some(ACTIONS_HANDLER) {
            problems.push(format!("{name}: handler must be {ACTIONS_HANDLER}"));
        }
        if definition
            .get("forward_client_headers")
            .and_then(Value::as_bool)
            != Some(false)
        {
            problems.push(format!(
                "{name}: forward_client_headers must be false (the session comes from session_variables)"
            ));
        }
        problems.extend(secret_header_problems(name, seq_at(definition, "headers")));
        if seq_at(action, "permissions").is_empty() {
            problems.push(format!("{name}: no role may call it"));
        }
        match sdl.root_fields.get(name) {
            Some(field) => {
                if !sdl.object_types.contains(&field.output) {
                    problems.push(format!(
                        "{name}: output type {} is not declared in actions.graphql",
                        field.output
                    ));
                }
                if !custom_objects.contains(field.output.as_str()) {
                    problems.push(format!(
                        "{name}: output type {} is not in actions.yaml custom_types.objects",
                        field.output
                    ));
                }
                let kind = str_at(definition, "kind");
                if field.root == "Mutation" && kind != Some("synchronous") {
                    problems.push(format!(
                        "{name}: a mutation the service answers at once must be kind: synchronous"
                    ));
                }
            }
            None => problems.push(format!("{name}: no field in actions.graphql")),
        }
    }
    assert_no_problems("actions not wired to the service", &problems);
}

#[test]
fn conversations_unread_count_is_the_session_aware_sql_function_of_the_migrations() {
    let tables = table_files();
    let conversations = table(&tables, "conversations");
    let field = seq_at(&conversations.doc, "computed_fields")
        .iter()
        .find(|f| str_at(f, "name") == Some("unread_count"))
        .unwrap_or_else(|| panic!("conversations has no computed field unread_count"));
    let definition = field
        .get("definition")
        .unwrap_or_else(|| panic!("unread_count has no definition"));
    let function = definition.get("function");
    assert_eq!(
        function.and_then(|f| str_at(f, "name")),
        Some(UNREAD_COUNT_FUNCTION),
        "unread_count must use {UNREAD_COUNT_FUNCTION}"
    );
    assert_eq!(function.and_then(|f| str_at(f, "schema")), Some("public"));
    let session_argument = str_at(definition, "session_argument");
    assert_eq!(
        session_argument,
        Some("hasura_session"),
        "unread_count counts per agent, so Hasura must pass the session as hasura_session"
    );

    let function = migration_function(UNREAD_COUNT_FUNCTION).unwrap_or_else(|| {
        panic!("no migration in migrations/*.sql creates function {UNREAD_COUNT_FUNCTION}")
    });
    assert!(
        function.has_argument("hasura_session", "json"),
        "{UNREAD_COUNT_FUNCTION}{:?} takes no `hasura_session json` argument",
        function.arguments
    );
    if let Some(table_argument) = str_at(definition, "table_argument") {
        assert!(
            function.has_argument(table_argument, "conversations"),
            "{UNREAD_COUNT_FUNCTION}{:?} has no argument `{table_argument} conversations`",
            function.arguments
        );
    }

    let dispatcher_sees_it = seq_at(&conversations.doc, "select_permissions")
        .iter()
        .filter(|p| str_at(p, "role") == Some("dispatcher"))
        .filter_map(|p| p.get("permission"))
        .any(|p| {
            seq_at(p, "computed_fields")
                .iter()
                .any(|f| f.as_str() == Some("unread_count"))
        });
    assert!(
        dispatcher_sees_it,
        "the dispatcher's select permission on conversations must list the computed field unread_count"
    );
}

/// A function as the migrations leave it: the last `create [or replace]
/// function <name>(…)` of the last migration that has one.
fn migration_function(name: &str) -> Option<SqlFunction> {
    let dir = project_root().join("migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("list migrations: {e}"))
                .path()
        })
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files.iter().rev().find_map(|file| {
        let sql = read(file)
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let heads = ["create function", "create or replace function"];
        let names = [name.to_owned(), format!("public.{name}")];
        let start = heads
            .iter()
            .flat_map(|head| names.iter().map(move |n| format!("{head} {n}(")))
            .filter_map(|head| sql.rfind(&head).map(|at| at + head.len()))
            .max()?;
        parse_sql_function(&sql[start..])
    })
}

/// `rest` follows the `(` of `create function name(`: the arguments, then
/// `returns [setof] <table>`.
fn parse_sql_function(rest: &str) -> Option<SqlFunction> {
    let mut depth = 0usize;
    let close = rest.char_indices().find_map(|(i, c)| match c {
        '(' => {
            depth += 1;
            None
        }
        ')' if depth == 0 => Some(i),
        ')' => {
            depth -= 1;
            None
        }
        _ => None,
    })?;
    let mut arguments = Vec::new();
    let mut defaulted = BTreeSet::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in rest[..close].chars().chain([',']) {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                let words: Vec<&str> = current
                    .split_whitespace()
                    .skip_while(|w| matches!(*w, "in" | "inout" | "variadic"))
                    .collect();
                let declared = words
                    .iter()
                    .position(|w| *w == "default" || *w == "=")
                    .unwrap_or(words.len());
                if let [name, kind @ ..] = &words[..declared] {
                    let kind = kind.join(" ");
                    let kind = kind.strip_prefix("public.").unwrap_or(&kind).to_owned();
                    if declared < words.len() {
                        defaulted.insert((*name).to_owned());
                    }
                    arguments.push(((*name).to_owned(), kind));
                }
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    let returns = rest[close + 1..].trim_start().strip_prefix("returns ")?;
    let returns = returns.strip_prefix("setof ").unwrap_or(returns);
    let returns = returns.split([' ', ';']).next()?;
    let returns = returns
        .strip_prefix("public.")
        .unwrap_or(returns)
        .to_owned();
    Some(SqlFunction {
        arguments,
        defaulted,
        returns,
    })
}

#[test]
fn no_permission_exposes_channel_account_secrets() {
    let mut problems = Vec::new();
    for table in table_files() {
        let Some(doc) = table.doc.as_mapping() else {
            continue;
        };
        for (key, permissions) in doc {
            let Some(kind) = key.as_str().filter(|k| k.ends_with("_permissions")) else {
                continue;
            };
            for entry in permissions
                .as_sequence()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let role = str_at(entry, "role").unwrap_or("<no role>");
                let at = format!("{}.{kind}[{role}]", table.name);
                let permission = entry.get("permission");
                let columns = permission.and_then(|p| p.get("columns"));
                let text = serde_norway::to_string(entry)
                    .unwrap_or_else(|e| panic!("{at}: cannot re-serialize: {e}"));
                if text.contains(SEALED_COLUMN) {
                    problems.push(format!("{at} mentions {SEALED_COLUMN}"));
                }
                if table.name == "channel_accounts" {
                    if columns.and_then(Value::as_str) == Some("*") {
                        problems.push(format!(
                            "{at} grants every column, {SEALED_COLUMN} included; list the columns"
                        ));
                    }
                    let lists = |column: &str| {
                        columns
                            .and_then(Value::as_sequence)
                            .is_some_and(|cols| cols.iter().any(|c| c.as_str() == Some(column)))
                    };
                    if lists("provider_config") {
                        problems.push(format!("{at} lists provider_config"));
                    }
                }
            }
        }
    }
    assert_no_problems("channel account secrets exposed", &problems);
}

/// The parts of `actions.graphql` the checks need: the root fields of
/// `type Mutation` / `type Query` with their output type, and every object
/// type declared.
struct Sdl {
    root_fields: BTreeMap<String, RootField>,
    object_types: BTreeSet<String>,
}

struct RootField {
    root: String,
    /// The named type under any list / non-null wrapping.
    output: String,
}

impl Sdl {
    fn parse(sdl: &str) -> Self {
        let document = parse_schema(sdl)
            .unwrap_or_else(|e| panic!("actions.graphql is not valid GraphQL SDL: {e}"));
        let mut sdl = Sdl {
            root_fields: BTreeMap::new(),
            object_types: BTreeSet::new(),
        };
        for definition in document.definitions {
            let TypeSystemDefinition::Type(definition) = definition else {
                continue;
            };
            let TypeKind::Object(object) = definition.node.kind else {
                continue;
            };
            let type_name = definition.node.name.node.to_string();
            sdl.object_types.insert(type_name.clone());
            if type_name != "Mutation" && type_name != "Query" {
                continue;
            }
            for field in object.fields {
                let root = type_name.clone();
                let output = named_type(&field.node.ty.node);
                sdl.root_fields
                    .insert(field.node.name.node.to_string(), RootField { root, output });
            }
        }
        sdl
    }
}

/// The named type of a type reference (`T`, `T!`, `[T!]!`…).
fn named_type(ty: &Type) -> String {
    match &ty.base {
        BaseType::Named(name) => name.to_string(),
        BaseType::List(inner) => named_type(inner),
    }
}

#[test]
fn the_sdl_reader_finds_fields_across_lines_and_descriptions() {
    let sdl = Sdl::parse(
        r#"
        # a comment with type Query { fake: X }
        type Mutation {
          """
          Does (things): really
          """
          doThing(
            id: uuid!, note: String = "a ) b"
          ): [Out!]! @deprecated(reason: "x")
          other: Out
        }
        type Out { ok: Boolean! }
        "#,
    );
    let fields: BTreeMap<&str, &str> = sdl
        .root_fields
        .iter()
        .map(|(name, f)| (name.as_str(), f.output.as_str()))
        .collect();
    assert_eq!(
        fields,
        BTreeMap::from([("doThing", "Out"), ("other", "Out")])
    );
    assert!(sdl.object_types.contains("Out"));
}

#[test]
fn cron_triggers_are_exactly_the_ones_the_service_serves_with_the_shared_secret() {
    let crons = yaml(&metadata_dir().join("cron_triggers.yaml"));
    let entries = crons.as_sequence().map(Vec::as_slice).unwrap_or_default();
    let names: BTreeSet<String> = entries
        .iter()
        .filter_map(|c| str_at(c, "name").map(str::to_owned))
        .collect();
    let served: BTreeSet<String> = busflow_api::hasura::cron::CRON_TRIGGERS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_same_names(
        "cron triggers",
        "cron_triggers.yaml",
        &names,
        "busflow_api::hasura::cron::CRON_TRIGGERS",
        &served,
    );
    let mut problems = Vec::new();
    for cron in entries {
        let name = str_at(cron, "name").unwrap_or_default();
        let webhook = str_at(cron, "webhook").unwrap_or_default();
        if webhook != format!("{{{{BUSFLOW_CRON_URL}}}}/{name}") {
            problems.push(format!(
                "{name}: webhook {webhook:?} is not {{{{BUSFLOW_CRON_URL}}}}/{name}"
            ));
        }
        problems.extend(secret_header_problems(name, seq_at(cron, "headers")));
    }
    assert_no_problems("cron triggers", &problems);
}

/// The longest outage (Temporal or Postgres) an event must outlive: while a
/// dependency is down the service answers 503 with `Retry-After`, and Hasura
/// (which keeps the event in its own event log) retries it.
const OUTAGE_TO_OUTLIVE: u64 = 30 * 60;

/// Hasura waits `Retry-After` between retries when the service sends one,
/// else `interval_sec`: the two must agree, and the retries must outlast the
/// outage with room to spare (twice over).
fn outage_problems(at: &str, retry_conf: Option<&Value>) -> Vec<String> {
    let number = |key: &str| {
        retry_conf
            .and_then(|r| r.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let (retries, interval) = (number("num_retries"), number("interval_sec"));
    let retry_after = busflow_api::error::RETRY_AFTER_SECS;
    let mut problems = Vec::new();
    if interval != retry_after {
        problems.push(format!(
            "{at}: retry_conf.interval_sec is {interval}, the service's Retry-After is {retry_after}: they must agree"
        ));
    }
    if retries * retry_after < 2 * OUTAGE_TO_OUTLIVE {
        problems.push(format!(
            "{at}: {retries} retries {retry_after} s apart outlive an outage of {} s, not twice {OUTAGE_TO_OUTLIVE} s",
            retries * retry_after
        ));
    }
    problems
}

#[test]
fn every_function_file_is_included_and_the_source_includes_functions_yaml() {
    let databases = yaml(&metadata_dir().join("databases/databases.yaml"));
    let default = databases
        .as_sequence()
        .and_then(|sources| {
            sources
                .iter()
                .find(|s| str_at(s, "name") == Some("default"))
        })
        .unwrap_or_else(|| panic!("databases.yaml has no source `default`"));
    assert_eq!(
        default.get("functions").and_then(include_target).as_deref(),
        Some("default/functions/functions.yaml"),
        "source `default` must include default/functions/functions.yaml"
    );
    let included: BTreeSet<String> = function_files().into_iter().map(|f| f.file).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(functions_dir())
        .unwrap_or_else(|e| panic!("list {}: {e}", functions_dir().display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("list functions dir: {e}"))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|f| f.ends_with(".yaml") && f != "functions.yaml")
        .collect();
    // A file functions.yaml does not include is silently ignored by Hasura.
    assert_same_names(
        "function files",
        "functions.yaml",
        &included,
        "the functions directory",
        &on_disk,
    );
}

#[test]
fn every_tracked_function_is_one_the_migrations_create_over_a_table_its_roles_may_select() {
    let tables = table_files();
    let mut problems = Vec::new();
    for function in function_files() {
        let name = &function.name;
        let Some(sql) = migration_function(name) else {
            problems.push(format!("{name}: no migration creates it"));
            continue;
        };
        let session_argument = function
            .doc
            .get("configuration")
            .and_then(|c| str_at(c, "session_argument"));
        if let Some(argument) = session_argument
            && !sql.has_argument(argument, "json")
        {
            problems.push(format!(
                "{name}: session_argument {argument} is not a `json` argument of {name}{:?}",
                sql.arguments
            ));
        }
        let Some(returns) = tables.iter().find(|t| t.name == sql.returns) else {
            problems.push(format!(
                "{name}: returns {}, which is not tracked (Hasura serves a function only over a tracked table)",
                sql.returns
            ));
            continue;
        };
        let permissions = seq_at(&function.doc, "permissions");
        if permissions.is_empty() {
            problems.push(format!("{name}: no role may call it"));
        }
        for role in permissions.iter().filter_map(|p| str_at(p, "role")) {
            let may_select = seq_at(&returns.doc, "select_permissions")
                .iter()
                .any(|p| str_at(p, "role") == Some(role));
            if !may_select {
                problems.push(format!(
                    "{name}: {role} may call it but has no select permission on {}, which Hasura requires",
                    sql.returns
                ));
            }
        }
    }
    assert_no_problems("tracked functions Hasura cannot serve", &problems);
}

#[test]
fn the_inbox_badge_is_the_session_aware_sql_function_the_dispatcher_may_call() {
    let functions = function_files();
    let badge = functions
        .iter()
        .find(|f| f.name == BADGE_FUNCTION)
        .unwrap_or_else(|| panic!("{BADGE_FUNCTION} is not tracked in functions.yaml"));
    assert_eq!(
        badge
            .doc
            .get("configuration")
            .and_then(|c| str_at(c, "session_argument")),
        Some("hasura_session"),
        "the badge counts the session's tenant and agent, so Hasura must pass the session as hasura_session"
    );
    let dispatcher_may_call = seq_at(&badge.doc, "permissions")
        .iter()
        .any(|p| str_at(p, "role") == Some(DISPATCHER));
    assert!(
        dispatcher_may_call,
        "{BADGE_FUNCTION}: the dispatcher needs a function permission"
    );
    let sql = migration_function(BADGE_FUNCTION)
        .unwrap_or_else(|| panic!("no migration creates function {BADGE_FUNCTION}"));
    assert_eq!(
        sql.arguments,
        [("hasura_session".to_owned(), "json".to_owned())],
        "{BADGE_FUNCTION} takes the session and nothing else"
    );
}

#[test]
fn no_two_tracked_objects_claim_the_same_root_field() {
    let problems: Vec<String> = root_field_claims(&table_files(), &function_files())
        .into_iter()
        .filter(|(_, claims)| claims.len() > 1)
        .map(|(field, claims)| {
            let claims: Vec<String> = claims
                .iter()
                .map(|c| format!("{} ({})", c.object, c.kind))
                .collect();
            format!("{field} is claimed by {}", claims.join(" and "))
        })
        .collect();
    assert_no_problems(
        "root fields Hasura would refuse as duplicated (rename one with custom_root_fields)",
        &problems,
    );
}

fn dispatcher_schema() -> RoleSchema {
    RoleSchema::new(
        DISPATCHER,
        &table_files(),
        &function_files(),
        migration_function,
    )
}

/// `(file name, text)` of every document in `hasura/subscriptions/`.
fn subscription_documents() -> Vec<(String, String)> {
    documents_in("hasura/subscriptions")
}

/// `(file name, text)` of every `.graphql` document in `folder`.
fn documents_in(folder: &str) -> Vec<(String, String)> {
    let dir = project_root().join(folder);
    let mut documents: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|e| panic!("list subscriptions: {e}")))
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "graphql"))
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, read(&entry.path()))
        })
        .collect();
    documents.sort();
    documents
}

#[test]
fn every_inbox_subscription_uses_only_what_the_dispatcher_may_read() {
    let documents = subscription_documents();
    let shipped: BTreeSet<&str> = documents.iter().map(|(name, _)| name.as_str()).collect();
    let mut problems: Vec<String> = INBOX_SUBSCRIPTIONS
        .iter()
        .filter(|name| !shipped.contains(*name))
        .map(|name| format!("hasura/subscriptions/{name} is missing"))
        .collect();
    let schema = dispatcher_schema();
    for (name, text) in &documents {
        problems.extend(schema.check_subscription(name, text));
    }
    assert_no_problems(
        "inbox subscriptions ask for what the metadata does not let the dispatcher read",
        &problems,
    );
}

/// The role of a tenant's administrators (channel accounts, their history).
const TENANT_ADMIN: &str = "tenant_admin";
/// What the backoffice's channel pages subscribe to, in
/// `hasura/subscriptions/tenant_admin/`.
const TENANT_ADMIN_SUBSCRIPTIONS: [&str; 2] = ["channel_accounts.graphql", "dns_records.graphql"];

#[test]
fn the_channel_pages_subscriptions_use_only_what_the_tenant_admin_may_read() {
    let documents = documents_in("hasura/subscriptions/tenant_admin");
    let shipped: BTreeSet<&str> = documents.iter().map(|(name, _)| name.as_str()).collect();
    let mut problems: Vec<String> = TENANT_ADMIN_SUBSCRIPTIONS
        .iter()
        .filter(|name| !shipped.contains(*name))
        .map(|name| format!("hasura/subscriptions/tenant_admin/{name} is missing"))
        .collect();
    let schema = RoleSchema::new(
        TENANT_ADMIN,
        &table_files(),
        &function_files(),
        migration_function,
    );
    for (name, text) in &documents {
        problems.extend(schema.check_subscription(name, text));
    }
    // The history is what the backoffice may not miss.
    let uses_history = documents
        .iter()
        .any(|(_, text)| text.contains("status_history"));
    if !uses_history {
        problems.push("no channel page subscribes to the accounts' status_history".into());
    }
    assert_no_problems(
        "channel pages ask for what the metadata does not let the tenant_admin read",
        &problems,
    );
}

#[test]
fn the_subscription_check_refuses_what_the_dispatcher_may_not_read() {
    // (what the document does wrong, the document, a word its problem names)
    let cases = [
        (
            "a column the select permission does not list",
            "subscription S { channel_accounts { id provider_config } }",
            "provider_config",
        ),
        (
            "a relationship the metadata does not have",
            "subscription S { conversations { id assignee { id } } }",
            "`assignee`",
        ),
        (
            "a relationship to a table the dispatcher may not select",
            "subscription S { conversations { id booking { id } } }",
            "bookings, which dispatcher may not select",
        ),
        (
            "a root field nothing claims",
            "subscription S { agents { id } }",
            "no tracked table or function",
        ),
        (
            "a root field the check does not model",
            "subscription S { conversations_aggregate { aggregate { count } } }",
            "not a root field this check knows",
        ),
        (
            "a root field the permission hides",
            "subscription S { inbox_badge_rows { unread_conversations } }",
            "hides this root field",
        ),
        (
            "a function argument the function does not take",
            r#"subscription S { inbox_badge(args: { tenant: "t" }) { unread_conversations } }"#,
            "takes no arguments",
        ),
        (
            "a filter on a column the dispatcher may not read",
            "subscription S { channel_accounts(where: { provider_config: { _is_null: false } }) { id } }",
            "provider_config",
        ),
        (
            "a filter across a relationship to a column it may not read",
            "subscription S { messages(where: { channel_account: { provider_secrets: { _is_null: false } } }) { id } }",
            "provider_secrets",
        ),
        (
            "an order by a column it may not read",
            "subscription S { messages(order_by: { content: asc }) { id } }",
            "`content`",
        ),
        (
            "an argument lists do not take",
            "subscription S { messages(first: 10) { id } }",
            "`first` is not an argument",
        ),
        (
            "a whole filter passed as a variable",
            "subscription S($w: messages_bool_exp) { messages(where: $w) { id } }",
            "a variable hides what it filters on",
        ),
        (
            "a variable it does not declare",
            "subscription S { messages(where: { conversation_id: { _eq: $id } }) { id } }",
            "`$id` is used but not declared",
        ),
        (
            "an operator Hasura does not have",
            r#"subscription S { messages(where: { body: { _matches: "x" } }) { id } }"#,
            "`_matches`",
        ),
        (
            "a query instead of a subscription",
            "query S { messages { id } }",
            "not a subscription",
        ),
        (
            "two root fields",
            "subscription S { messages { id } contacts { id } }",
            "selects 2 root fields",
        ),
    ];
    let schema = dispatcher_schema();
    let mut missed = Vec::new();
    for (what, document, expected) in cases {
        let problems = schema.check_subscription("case.graphql", document);
        if !problems.iter().any(|p| p.contains(expected)) {
            missed.push(format!(
                "{what}: expected a problem naming {expected:?}, got {problems:?}"
            ));
        }
    }
    assert_no_problems("the subscription check let these through", &missed);
}

#[test]
fn the_migration_reader_finds_arguments_defaults_and_the_return_table() {
    let function = parse_sql_function(
        "conversation conversations, hasura_session json, since numeric(10, 2) default 0) \
         returns setof public.inbox_badge language sql stable as $$ select 1 $$;",
    )
    .unwrap_or_else(|| panic!("the reader found no function"));
    assert_eq!(
        function.arguments,
        [
            ("conversation".to_owned(), "conversations".to_owned()),
            ("hasura_session".to_owned(), "json".to_owned()),
            ("since".to_owned(), "numeric(10, 2)".to_owned()),
        ]
    );
    assert_eq!(function.defaulted, BTreeSet::from(["since".to_owned()]));
    assert_eq!(function.returns, "inbox_badge");
}
