//! Keeps the Hasura metadata (`hasura/metadata`) and the service's routes from
//! drifting apart: every event trigger Hasura fires is one the service routes
//! (and the reverse), every action Hasura exposes is one the service serves
//! (and the reverse), every webhook carries the shared secret, the inbox's
//! computed field points at a function the migrations create, and no role can
//! read a channel account's sealed secrets.
//!
//! Reads the files the way `hasura metadata apply` does: the table files are
//! the ones `tables.yaml` includes. No Hasura is needed.

use busflow_activities::model::ContactKind;
use busflow_activities::triggers::{self, RecipientRule, Route, Trigger};
use busflow_api::auth::SECRET_HEADER;
use busflow_api::hasura::actions::ACTIONS;
#[path = "shared/hasura_metadata.rs"]
mod metadata;

use metadata::{
    include_target, metadata_dir, project_root, read, seq_at, str_at, table, table_files,
    tables_dir, update_columns, yaml,
};
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
const SEALED_COLUMN: &str = "provider_secrets";

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
        for trigger in table.event_triggers() {
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
        for trigger in table.event_triggers() {
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
            t.event_triggers().iter().filter_map(move |trigger| {
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

    let signature = migration_function_signature(UNREAD_COUNT_FUNCTION).unwrap_or_else(|| {
        panic!("no migration in migrations/*.sql creates function {UNREAD_COUNT_FUNCTION}")
    });
    assert!(
        signature.contains("hasura_session json"),
        "{UNREAD_COUNT_FUNCTION}({signature}) takes no `hasura_session json` argument"
    );
    if let Some(table_argument) = str_at(definition, "table_argument") {
        assert!(
            signature.contains(&format!("{table_argument} conversations")),
            "{UNREAD_COUNT_FUNCTION}({signature}) has no argument `{table_argument} conversations`"
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

/// The argument list of `create [or replace] function <name>(...)` in the
/// migrations, lower-cased and with whitespace collapsed.
fn migration_function_signature(name: &str) -> Option<String> {
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
    files.iter().find_map(|file| {
        let sql = read(file)
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let start = sql.find(&format!("function {name}("))? + "function ".len() + name.len() + 1;
        let end = start + sql[start..].find(')')?;
        Some(sql[start..end].to_owned())
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

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Punct(char),
}

impl Sdl {
    fn parse(sdl: &str) -> Self {
        let tokens = tokenize(sdl);
        let mut sdl = Sdl {
            root_fields: BTreeMap::new(),
            object_types: BTreeSet::new(),
        };
        let mut i = 0;
        while i < tokens.len() {
            let declares_type = tokens[i] == Token::Name("type".into());
            let type_name = match tokens.get(i + 1) {
                Some(Token::Name(name)) if declares_type => name.clone(),
                _ => {
                    i += 1;
                    continue;
                }
            };
            sdl.object_types.insert(type_name.clone());
            i += 2;
            while i < tokens.len() && tokens[i] != Token::Punct('{') {
                i += 1;
            }
            i += 1;
            let is_root = type_name == "Mutation" || type_name == "Query";
            while i < tokens.len() && tokens[i] != Token::Punct('}') {
                let Token::Name(field) = tokens[i].clone() else {
                    panic!(
                        "actions.graphql: unexpected {:?} in type {type_name}",
                        tokens[i]
                    );
                };
                i += 1;
                if tokens.get(i) == Some(&Token::Punct('(')) {
                    i = skip_balanced(&tokens, i);
                }
                assert_eq!(
                    tokens.get(i),
                    Some(&Token::Punct(':')),
                    "actions.graphql: {type_name}.{field} has no `: Type`"
                );
                i += 1;
                let output = parse_type(&tokens, &mut i);
                while tokens.get(i) == Some(&Token::Punct('@')) {
                    i += 2;
                    if tokens.get(i) == Some(&Token::Punct('(')) {
                        i = skip_balanced(&tokens, i);
                    }
                }
                if is_root {
                    let root = type_name.clone();
                    sdl.root_fields.insert(field, RootField { root, output });
                }
            }
            i += 1;
        }
        sdl
    }
}

/// Names and punctuation of an SDL document; whitespace, commas, comments and
/// descriptions dropped.
fn tokenize(sdl: &str) -> Vec<Token> {
    let chars: Vec<char> = sdl.chars().collect();
    let starts_with = |i: usize, pattern: &str| {
        chars
            .get(i..i + pattern.len())
            .is_some_and(|s| s.iter().copied().eq(pattern.chars()))
    };
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == '#' {
            while chars.get(i).is_some_and(|&c| c != '\n') {
                i += 1;
            }
        } else if starts_with(i, "\"\"\"") {
            i += 3;
            while i < chars.len() && !starts_with(i, "\"\"\"") {
                i += 1;
            }
            i += 3;
        } else if c == '"' {
            i += 1;
            while chars.get(i).is_some_and(|&c| c != '"') {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|&c| c.is_ascii_alphanumeric() || c == '_')
            {
                i += 1;
            }
            tokens.push(Token::Name(chars[start..i].iter().collect()));
        } else if c.is_whitespace() || c == ',' {
            i += 1;
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// Index just past the `)` matching the `(` at `open`.
fn skip_balanced(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    panic!("actions.graphql: unbalanced parentheses");
}

/// A type reference (`T`, `T!`, `[T!]!`…): its named type.
fn parse_type(tokens: &[Token], i: &mut usize) -> String {
    let named = match tokens.get(*i) {
        Some(Token::Punct('[')) => {
            *i += 1;
            let inner = parse_type(tokens, i);
            assert_eq!(
                tokens.get(*i),
                Some(&Token::Punct(']')),
                "actions.graphql: unclosed list type"
            );
            inner
        }
        Some(Token::Name(name)) => name.clone(),
        other => panic!("actions.graphql: expected a type, found {other:?}"),
    };
    *i += 1;
    if tokens.get(*i) == Some(&Token::Punct('!')) {
        *i += 1;
    }
    named
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
