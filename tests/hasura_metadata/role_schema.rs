//! What Hasura lets one role read, as the shipped metadata defines it, and
//! the check of a GraphQL document against it.
//!
//! Hasura builds each role its own schema: a table's root field exists for a
//! role only with a select permission (and, where `subscription_root_fields`
//! is listed, only the fields listed); a column, computed field or
//! relationship exists only where that permission lists it, or where the
//! related table is selectable by the role; a function only where the role
//! has its permission and may select its return table. [`RoleSchema`] holds
//! that, read from the table and function files; [`RoleSchema::check_subscription`]
//! names every part of a document outside it.
//!
//! Only what the inbox documents need is modelled: list selects of tables,
//! tracked functions, and the list arguments `where`, `order_by`, `limit`,
//! `offset`, `distinct_on` (and a function's `args`). Anything else a
//! document uses (`_by_pk`, `_aggregate`, `_stream`, fragments, a whole
//! filter passed as a variable) is reported as unknown: the check fails
//! closed rather than passing what it cannot see.

use super::metadata::{FunctionFile, TableFile, seq_at, str_at};
use async_graphql_parser::types::{Field, OperationType, Selection, SelectionSet};
use async_graphql_parser::{Positioned, parse_query};
use async_graphql_value::Value;
use serde_norway::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};

/// The arguments of every list Hasura generates (a table's select, an array
/// relationship, a function).
const LIST_ARGUMENTS: [&str; 5] = ["where", "order_by", "limit", "offset", "distinct_on"];

/// Comparison operators of Hasura's `<type>_comparison_exp` for Postgres
/// columns (scalars, text, json/jsonb).
const COMPARISON_OPERATORS: [&str; 27] = [
    "_eq",
    "_neq",
    "_gt",
    "_lt",
    "_gte",
    "_lte",
    "_in",
    "_nin",
    "_is_null",
    "_like",
    "_nlike",
    "_ilike",
    "_nilike",
    "_similar",
    "_nsimilar",
    "_regex",
    "_nregex",
    "_iregex",
    "_niregex",
    "_contains",
    "_contained_in",
    "_has_key",
    "_has_keys_any",
    "_has_keys_all",
    "_cast",
    "_ceq",
    "_cneq",
];

/// The values of Hasura's `order_by` enum.
const ORDER_DIRECTIONS: [&str; 6] = [
    "asc",
    "asc_nulls_first",
    "asc_nulls_last",
    "desc",
    "desc_nulls_first",
    "desc_nulls_last",
];

/// A SQL function as the migrations leave it.
#[derive(Debug, Clone)]
pub struct SqlFunction {
    /// `(name, type)` of each argument, in order, lower-cased.
    pub arguments: Vec<(String, String)>,
    /// The arguments with a `default`.
    pub defaulted: BTreeSet<String>,
    /// The table it returns rows of (`returns setof <table>` or `returns <table>`).
    pub returns: String,
}

impl SqlFunction {
    pub fn has_argument(&self, name: &str, kind: &str) -> bool {
        self.arguments.iter().any(|(n, k)| n == name && k == kind)
    }
}

/// The root fields a tracked table claims in `query_root` /
/// `subscription_root`, by kind (`select`, `select_by_pk`,
/// `select_aggregate`, `select_stream`), after `custom_name` and
/// `custom_root_fields`.
fn table_root_fields(table: &TableFile) -> BTreeMap<&'static str, String> {
    let configuration = table.doc.get("configuration");
    let base = configuration
        .and_then(|c| str_at(c, "custom_name"))
        .unwrap_or(&table.name);
    let custom = configuration.and_then(|c| c.get("custom_root_fields"));
    [
        ("select", base.to_owned()),
        ("select_by_pk", format!("{base}_by_pk")),
        ("select_aggregate", format!("{base}_aggregate")),
        ("select_stream", format!("{base}_stream")),
    ]
    .into_iter()
    .map(|(kind, default)| (kind, custom_root_field(custom, kind).unwrap_or(default)))
    .collect()
}

/// The root fields a tracked function claims, by kind (`function`,
/// `function_aggregate`).
fn function_root_fields(function: &FunctionFile) -> BTreeMap<&'static str, String> {
    let configuration = function.doc.get("configuration");
    let base = configuration
        .and_then(|c| str_at(c, "custom_name"))
        .unwrap_or(&function.name);
    let custom = configuration.and_then(|c| c.get("custom_root_fields"));
    [
        ("function", base.to_owned()),
        ("function_aggregate", format!("{base}_aggregate")),
    ]
    .into_iter()
    .map(|(kind, default)| (kind, custom_root_field(custom, kind).unwrap_or(default)))
    .collect()
}

/// A `custom_root_fields` entry: a name, or `{name: …, comment: …}`.
fn custom_root_field(custom: Option<&Yaml>, kind: &str) -> Option<String> {
    let entry = custom?.get(kind)?;
    entry
        .as_str()
        .or_else(|| str_at(entry, "name"))
        .map(str::to_owned)
}

/// A tracked object's claim on a root field.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The table or function.
    pub object: String,
    /// `select`, `select_by_pk`, `select_aggregate`, `select_stream` for a
    /// table; `function`, `function_aggregate` for a function.
    pub kind: &'static str,
}

/// Every root field of `query_root` / `subscription_root` the metadata
/// generates, whatever the role, with the objects that claim it.
pub fn root_field_claims(
    tables: &[TableFile],
    functions: &[FunctionFile],
) -> BTreeMap<String, Vec<Claim>> {
    let tables = tables
        .iter()
        .flat_map(|t| table_root_fields(t).into_iter().map(|f| (&t.name, f)));
    let functions = functions
        .iter()
        .flat_map(|f| function_root_fields(f).into_iter().map(|r| (&f.name, r)));
    let mut claims = BTreeMap::<String, Vec<Claim>>::new();
    for (object, (kind, field)) in tables.chain(functions) {
        claims.entry(field).or_default().push(Claim {
            object: object.clone(),
            kind,
        });
    }
    claims
}

/// The columns a select permission lists.
enum Columns {
    /// `columns: "*"`.
    All,
    Listed(BTreeSet<String>),
}

/// One role's select permission on one table.
struct SelectPermission {
    columns: Columns,
    computed_fields: BTreeSet<String>,
    /// `None`: every root field; `Some`: only those listed.
    subscription_root_fields: Option<BTreeSet<String>>,
}

impl SelectPermission {
    fn has_column(&self, column: &str) -> bool {
        match &self.columns {
            Columns::All => true,
            Columns::Listed(columns) => columns.contains(column),
        }
    }
}

struct Table {
    object_relationships: BTreeMap<String, String>,
    array_relationships: BTreeMap<String, String>,
    computed_fields: BTreeSet<String>,
    /// The role's select permission, if any.
    select: Option<SelectPermission>,
}

struct Function {
    returns: String,
    /// The arguments a caller passes in `args` (the session argument is
    /// Hasura's to fill).
    arguments: BTreeSet<String>,
    /// Those of them without a default.
    required: BTreeSet<String>,
    /// The role has a function permission.
    permitted: bool,
}

/// What a field of a table's selection is, for the role.
enum TableField<'a> {
    /// A column or a scalar computed field.
    Scalar,
    ObjectRelationship(&'a str),
    ArrayRelationship(&'a str),
}

/// What a root field is, for the role.
enum RootField<'a> {
    TableSelect(&'a str),
    Function(&'a str, &'a Function),
}

/// The schema Hasura serves one role, as far as reads go.
pub struct RoleSchema {
    role: String,
    tables: BTreeMap<String, Table>,
    functions: BTreeMap<String, Function>,
    /// Root field → the tables and functions that claim it.
    root_fields: BTreeMap<String, Vec<Claim>>,
}

impl RoleSchema {
    /// `sql_function` finds a tracked function in the migrations (Hasura
    /// reads its arguments and return table from Postgres).
    pub fn new(
        role: &str,
        tables: &[TableFile],
        functions: &[FunctionFile],
        sql_function: impl Fn(&str) -> Option<SqlFunction>,
    ) -> Self {
        let tables_by_name = tables
            .iter()
            .map(|table| (table.name.clone(), Table::new(role, table)))
            .collect();
        let functions_by_name = functions
            .iter()
            .map(|function| {
                let sql = sql_function(&function.name).unwrap_or_else(|| {
                    panic!(
                        "{}: no migration creates function {}",
                        function.file, function.name
                    )
                });
                let session_argument = function
                    .doc
                    .get("configuration")
                    .and_then(|c| str_at(c, "session_argument"));
                let arguments: BTreeSet<String> = sql
                    .arguments
                    .iter()
                    .map(|(name, _)| name.clone())
                    .filter(|name| Some(name.as_str()) != session_argument)
                    .collect();
                let required = arguments.difference(&sql.defaulted).cloned().collect();
                let permitted = seq_at(&function.doc, "permissions")
                    .iter()
                    .any(|p| str_at(p, "role") == Some(role));
                let function_view = Function {
                    returns: sql.returns,
                    arguments,
                    required,
                    permitted,
                };
                (function.name.clone(), function_view)
            })
            .collect();
        RoleSchema {
            role: role.to_owned(),
            tables: tables_by_name,
            functions: functions_by_name,
            root_fields: root_field_claims(tables, functions),
        }
    }

    /// The role may select rows of `table` (through a root field, a
    /// relationship or a function).
    fn can_select(&self, table: &str) -> bool {
        self.tables.get(table).is_some_and(|t| t.select.is_some())
    }

    fn root_field(&self, name: &str) -> Result<RootField<'_>, String> {
        let claims = self
            .root_fields
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let [Claim { object, kind }] = claims else {
            return Err(if claims.is_empty() {
                format!("no tracked table or function has the root field `{name}`")
            } else {
                format!("the root field `{name}` is claimed by several objects: {claims:?}")
            });
        };
        let role = &self.role;
        match *kind {
            "select" => {
                let select = self.tables.get(object).and_then(|t| t.select.as_ref());
                let Some(select) = select else {
                    return Err(format!(
                        "`{name}`: {role} has no select permission on table {object}"
                    ));
                };
                if select
                    .subscription_root_fields
                    .as_ref()
                    .is_some_and(|fields| !fields.contains("select"))
                {
                    return Err(format!(
                        "`{name}`: the select permission of {role} on {object} hides this root field (subscription_root_fields)"
                    ));
                }
                Ok(RootField::TableSelect(object))
            }
            "function" => {
                let function = &self.functions[object];
                if !function.permitted {
                    return Err(format!(
                        "`{name}`: {role} has no permission on function {object}"
                    ));
                }
                if !self.can_select(&function.returns) {
                    return Err(format!(
                        "`{name}`: {role} may not select {}, the table function {object} returns",
                        function.returns
                    ));
                }
                Ok(RootField::Function(object, function))
            }
            other => Err(format!(
                "`{name}` ({other} of {object}) is not a root field this check knows; \
                 teach tests/hasura_metadata/role_schema.rs before using it"
            )),
        }
    }

    fn table_field(&self, table: &str, field: &str) -> Result<TableField<'_>, String> {
        let role = &self.role;
        let Some(meta) = self.tables.get(table) else {
            return Err(format!("table {table} is not tracked"));
        };
        let Some(select) = &meta.select else {
            return Err(format!("{role} may not select {table}"));
        };
        let related = |target: &str| {
            if self.can_select(target) {
                Ok(())
            } else {
                Err(format!(
                    "relationship `{field}` leads to {target}, which {role} may not select \
                     (Hasura leaves it out of the {role} schema)"
                ))
            }
        };
        if let Some(target) = meta.object_relationships.get(field) {
            related(target)?;
            return Ok(TableField::ObjectRelationship(target));
        }
        if let Some(target) = meta.array_relationships.get(field) {
            related(target)?;
            return Ok(TableField::ArrayRelationship(target));
        }
        if meta.computed_fields.contains(field) {
            return if select.computed_fields.contains(field) {
                Ok(TableField::Scalar)
            } else {
                Err(format!(
                    "computed field `{field}` is not in the select permission of {role} on {table}"
                ))
            };
        }
        if select.has_column(field) {
            return Ok(TableField::Scalar);
        }
        Err(format!(
            "`{field}` is neither a column the select permission of {role} on {table} lists, \
             nor a computed field or relationship of {table}"
        ))
    }

    /// Every problem of one subscription document against this schema; none
    /// when Hasura would serve all of it to the role.
    pub fn check_subscription(&self, file: &str, source: &str) -> Vec<String> {
        let mut check = DocumentCheck {
            schema: self,
            file,
            problems: Vec::new(),
        };
        check.document(source);
        check.problems
    }
}

impl Table {
    fn new(role: &str, file: &TableFile) -> Self {
        let relationships = |key: &str| {
            seq_at(&file.doc, key)
                .iter()
                .filter_map(|r| {
                    let name = str_at(r, "name")?.to_owned();
                    let using = r.get("using")?;
                    let target = using
                        .get("manual_configuration")
                        .and_then(|m| m.get("remote_table"))
                        .or_else(|| using.get("foreign_key_constraint_on")?.get("table"))?;
                    let target = str_at(target, "name").or_else(|| target.as_str())?;
                    Some((name, target.to_owned()))
                })
                .collect::<BTreeMap<_, _>>()
        };
        let names = |values: &[Yaml]| -> BTreeSet<String> {
            values
                .iter()
                .filter_map(Yaml::as_str)
                .map(str::to_owned)
                .collect()
        };
        let select = seq_at(&file.doc, "select_permissions")
            .iter()
            .filter(|p| str_at(p, "role") == Some(role))
            .find_map(|p| p.get("permission"))
            .map(|permission| SelectPermission {
                columns: match permission.get("columns") {
                    Some(Yaml::String(all)) if all == "*" => Columns::All,
                    _ => Columns::Listed(names(seq_at(permission, "columns"))),
                },
                computed_fields: names(seq_at(permission, "computed_fields")),
                subscription_root_fields: permission
                    .get("subscription_root_fields")
                    .and_then(Yaml::as_sequence)
                    .map(|fields| names(fields)),
            });
        Table {
            object_relationships: relationships("object_relationships"),
            array_relationships: relationships("array_relationships"),
            computed_fields: seq_at(&file.doc, "computed_fields")
                .iter()
                .filter_map(|f| str_at(f, "name"))
                .map(str::to_owned)
                .collect(),
            select,
        }
    }
}

/// One document being checked; every problem is collected, not just the first.
struct DocumentCheck<'a> {
    schema: &'a RoleSchema,
    file: &'a str,
    problems: Vec<String>,
}

impl DocumentCheck<'_> {
    fn problem(&mut self, at: &str, what: impl Into<String>) {
        let what = what.into();
        self.problems.push(format!("{}: {at}: {what}", self.file));
    }

    fn document(&mut self, source: &str) {
        let document = match parse_query(source) {
            Ok(document) => document,
            Err(e) => return self.problem("document", format!("not valid GraphQL: {e}")),
        };
        if !document.fragments.is_empty() {
            self.problem(
                "document",
                "fragments are not supported by this check; write the fields out",
            );
        }
        let operations: Vec<_> = document.operations.iter().collect();
        let [(name, operation)] = operations.as_slice() else {
            return self.problem(
                "document",
                format!(
                    "holds {} operations; ship one subscription per file",
                    operations.len()
                ),
            );
        };
        let operation = &operation.node;
        if operation.ty != OperationType::Subscription {
            self.problem(
                "document",
                format!("is a {}, not a subscription", operation.ty),
            );
        }
        if name.is_none() {
            self.problem("document", "the subscription has no name");
        }

        let declared: BTreeSet<&str> = operation
            .variable_definitions
            .iter()
            .map(|v| v.node.name.node.as_str())
            .collect();
        let mut used = BTreeSet::new();
        variables_of_selection(&operation.selection_set.node, &mut used);
        for variable in used.difference(&declared) {
            self.problem(
                "variables",
                format!("`${variable}` is used but not declared"),
            );
        }
        for variable in declared.difference(&used) {
            self.problem(
                "variables",
                format!("`${variable}` is declared but never used"),
            );
        }

        let roots = &operation.selection_set.node.items;
        if roots.len() != 1 {
            // GraphQL spec, "Single root field": a subscription selects exactly one.
            self.problem(
                "subscription",
                format!(
                    "selects {} root fields; a subscription selects one",
                    roots.len()
                ),
            );
        }
        for root in roots {
            let Selection::Field(field) = &root.node else {
                self.problem("subscription", "fragments are not supported by this check");
                continue;
            };
            self.root(&field.node);
        }
    }

    fn root(&mut self, field: &Field) {
        let name = field.name.node.as_str();
        match self.schema.root_field(name) {
            Err(e) => self.problem(name, e),
            Ok(RootField::TableSelect(table)) => {
                self.list_arguments(table, field, name, None);
                self.selection(table, &field.selection_set, name);
            }
            Ok(RootField::Function(function_name, function)) => {
                let given: BTreeSet<&str> = match field.get_argument("args").map(|a| &a.node) {
                    Some(Value::Object(args)) => args.keys().map(|k| k.as_str()).collect(),
                    _ => BTreeSet::new(),
                };
                let missing: Vec<&String> = function
                    .required
                    .iter()
                    .filter(|arg| !given.contains(arg.as_str()))
                    .collect();
                if !missing.is_empty() {
                    self.problem(
                        name,
                        format!("{function_name} needs `args` {missing:?} (they have no default)"),
                    );
                }
                let table = function.returns.as_str();
                self.list_arguments(table, field, name, Some((function_name, function)));
                self.selection(table, &field.selection_set, name);
            }
        }
    }

    /// The arguments of a list of `table`'s rows: a select, an array
    /// relationship, or (with `function`) a function returning them.
    fn list_arguments(
        &mut self,
        table: &str,
        field: &Field,
        at: &str,
        function: Option<(&str, &Function)>,
    ) {
        for (argument, value) in &field.arguments {
            let argument = argument.node.as_str();
            let at = format!("{at}({argument})");
            let value = &value.node;
            match (argument, function) {
                ("where", _) => self.bool_exp(table, value, &at),
                ("order_by", _) => self.order_by(table, value, &at),
                ("limit" | "offset", _) => {
                    if !matches!(value, Value::Number(_) | Value::Variable(_)) {
                        self.problem(&at, "must be an Int or a variable");
                    }
                }
                ("distinct_on", _) => self.distinct_on(table, value, &at),
                ("args", Some((name, function))) if !function.arguments.is_empty() => {
                    let Value::Object(args) = value else {
                        self.problem(&at, "must be an object of the function's arguments");
                        continue;
                    };
                    for arg in args.keys() {
                        if !function.arguments.contains(arg.as_str()) {
                            self.problem(
                                &at,
                                format!(
                                    "`{arg}` is not an argument of {name} (it takes {:?})",
                                    function.arguments
                                ),
                            );
                        }
                    }
                }
                ("args", Some((name, _))) => self.problem(
                    &at,
                    format!("{name} takes no arguments but the session, which Hasura passes"),
                ),
                (other, _) => self.problem(
                    &at,
                    format!("`{other}` is not an argument of a list ({LIST_ARGUMENTS:?})"),
                ),
            }
        }
    }

    fn selection(&mut self, table: &str, selection: &Positioned<SelectionSet>, at: &str) {
        if selection.node.items.is_empty() {
            self.problem(at, format!("selects none of the fields of {table}"));
        }
        for item in &selection.node.items {
            let Selection::Field(field) = &item.node else {
                self.problem(at, "fragments are not supported by this check");
                continue;
            };
            let field = &field.node;
            let name = field.name.node.as_str();
            let at = format!("{at}.{name}");
            if name == "__typename" {
                continue;
            }
            match self.schema.table_field(table, name) {
                Err(e) => self.problem(&at, e),
                Ok(TableField::Scalar) => {
                    if !field.arguments.is_empty() {
                        self.problem(&at, "a scalar field takes no arguments here");
                    }
                    if !field.selection_set.node.items.is_empty() {
                        self.problem(&at, "a scalar field has no fields to select");
                    }
                }
                Ok(TableField::ObjectRelationship(target)) => {
                    if !field.arguments.is_empty() {
                        self.problem(&at, "an object relationship takes no arguments");
                    }
                    self.selection(target, &field.selection_set, &at);
                }
                Ok(TableField::ArrayRelationship(target)) => {
                    self.list_arguments(target, field, &at, None);
                    self.selection(target, &field.selection_set, &at);
                }
            }
        }
    }

    /// A `<table>_bool_exp`: `_and`, `_or`, `_not`, comparisons of the
    /// columns and computed fields the role may select, and conditions
    /// across relationships to tables it may select.
    fn bool_exp(&mut self, table: &str, value: &Value, at: &str) {
        let Value::Object(conditions) = value else {
            return self.problem(
                at,
                "must be a literal filter object: a variable hides what it filters on",
            );
        };
        for (key, condition) in conditions {
            let key = key.as_str();
            let at = format!("{at}.{key}");
            match key {
                "_and" | "_or" => match condition {
                    Value::List(items) => {
                        for item in items {
                            self.bool_exp(table, item, &at);
                        }
                    }
                    single => self.bool_exp(table, single, &at),
                },
                "_not" => self.bool_exp(table, condition, &at),
                _ => match self.schema.table_field(table, key) {
                    Err(e) => self.problem(&at, e),
                    Ok(TableField::Scalar) => self.comparison(condition, &at),
                    Ok(
                        TableField::ObjectRelationship(target)
                        | TableField::ArrayRelationship(target),
                    ) => self.bool_exp(target, condition, &at),
                },
            }
        }
    }

    fn comparison(&mut self, value: &Value, at: &str) {
        let Value::Object(operators) = value else {
            return self.problem(at, "must be a comparison object such as `{ _eq: … }`");
        };
        for operator in operators.keys() {
            if !COMPARISON_OPERATORS.contains(&operator.as_str()) {
                self.problem(at, format!("`{operator}` is not a comparison operator"));
            }
        }
    }

    /// A `<table>_order_by` or a list of them: columns and computed fields
    /// with a direction, object relationships with a nested order.
    fn order_by(&mut self, table: &str, value: &Value, at: &str) {
        let orders = match value {
            Value::List(items) => items.as_slice(),
            single => std::slice::from_ref(single),
        };
        for order in orders {
            let Value::Object(keys) = order else {
                self.problem(
                    at,
                    "must be literal order objects: a variable hides what it orders by",
                );
                continue;
            };
            for (key, direction) in keys {
                let key = key.as_str();
                let at = format!("{at}.{key}");
                match self.schema.table_field(table, key) {
                    Err(e) => self.problem(&at, e),
                    Ok(TableField::Scalar) => match direction {
                        Value::Enum(d) if ORDER_DIRECTIONS.contains(&d.as_str()) => {}
                        Value::Variable(_) => {}
                        other => self.problem(
                            &at,
                            format!("{other} is not an order direction {ORDER_DIRECTIONS:?}"),
                        ),
                    },
                    Ok(TableField::ObjectRelationship(target)) => {
                        self.order_by(target, direction, &at);
                    }
                    Ok(TableField::ArrayRelationship(_)) => self.problem(
                        &at,
                        "an array relationship orders only through its aggregate, which this check does not know",
                    ),
                }
            }
        }
    }

    fn distinct_on(&mut self, table: &str, value: &Value, at: &str) {
        let columns = match value {
            Value::List(items) => items.as_slice(),
            single => std::slice::from_ref(single),
        };
        for column in columns {
            let Value::Enum(column) = column else {
                self.problem(at, "must name columns literally");
                continue;
            };
            let selectable = self
                .schema
                .tables
                .get(table)
                .and_then(|t| t.select.as_ref())
                .is_some_and(|s| s.has_column(column.as_str()));
            if !selectable {
                self.problem(
                    at,
                    format!(
                        "`{column}` is not a column the select permission of {} on {table} lists",
                        self.schema.role
                    ),
                );
            }
        }
    }
}

fn variables_of_selection<'a>(selection: &'a SelectionSet, used: &mut BTreeSet<&'a str>) {
    for item in &selection.items {
        let (arguments, directives, inner) = match &item.node {
            Selection::Field(field) => (
                field.node.arguments.as_slice(),
                &field.node.directives,
                &field.node.selection_set.node,
            ),
            Selection::InlineFragment(fragment) => (
                &[][..],
                &fragment.node.directives,
                &fragment.node.selection_set.node,
            ),
            Selection::FragmentSpread(spread) => {
                for directive in &spread.node.directives {
                    for (_, value) in &directive.node.arguments {
                        variables_of_value(&value.node, used);
                    }
                }
                continue;
            }
        };
        for (_, value) in arguments {
            variables_of_value(&value.node, used);
        }
        for directive in directives {
            for (_, value) in &directive.node.arguments {
                variables_of_value(&value.node, used);
            }
        }
        variables_of_selection(inner, used);
    }
}

fn variables_of_value<'a>(value: &'a Value, used: &mut BTreeSet<&'a str>) {
    match value {
        Value::Variable(name) => {
            used.insert(name.as_str());
        }
        Value::List(items) => items.iter().for_each(|v| variables_of_value(v, used)),
        Value::Object(fields) => fields.values().for_each(|v| variables_of_value(v, used)),
        _ => {}
    }
}
