//! Reads what ships under `ops/`: the Prometheus alert rules
//! (`ops/prometheus/alerts.yml`), the Grafana dashboard
//! (`ops/grafana/busflow-comms.json`) and the runbooks (`ops/README.md`), and
//! knows just enough PromQL to tell which metrics an expression reads. Used by
//! `tests/ops_files.rs`; no Prometheus or Grafana is needed.

#![allow(dead_code)]

use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub fn project_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn ops_dir() -> PathBuf {
    project_root().join("ops")
}

pub fn alerts_path() -> PathBuf {
    ops_dir().join("prometheus/alerts.yml")
}

pub fn alert_tests_path() -> PathBuf {
    ops_dir().join("prometheus/alerts_test.yml")
}

pub fn dashboard_path() -> PathBuf {
    ops_dir().join("grafana/busflow-comms.json")
}

pub fn readme_path() -> PathBuf {
    ops_dir().join("README.md")
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub fn yaml(path: &Path) -> Yaml {
    serde_norway::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

// ------------------------------------------------------------------ alerts

/// One alerting rule of `alerts.yml`. A field the file lacks is empty, so a
/// test can name every rule that misses something at once.
#[derive(Debug, Clone, Default)]
pub struct AlertRule {
    pub group: String,
    pub name: String,
    pub expr: String,
    pub for_: String,
    pub severity: String,
    pub summary: String,
    pub description: String,
    pub runbook: String,
}

/// The rule file as parsed.
pub fn alert_file() -> Yaml {
    yaml(&alerts_path())
}

/// Every rule of every group, in file order.
pub fn alert_rules() -> Vec<AlertRule> {
    rules_of(&alert_file())
}

/// Every rule of every group of a parsed rule file.
pub fn rules_of(file: &Yaml) -> Vec<AlertRule> {
    let groups = file
        .get("groups")
        .and_then(Yaml::as_sequence)
        .expect("a rule file has a `groups:` list");
    let mut rules = Vec::new();
    for group in groups {
        let group_name = text(group, &["name"]);
        let Some(list) = group.get("rules").and_then(Yaml::as_sequence) else {
            continue;
        };
        for rule in list {
            rules.push(AlertRule {
                group: group_name.clone(),
                name: text(rule, &["alert"]),
                expr: text(rule, &["expr"]),
                for_: text(rule, &["for"]),
                severity: text(rule, &["labels", "severity"]),
                summary: text(rule, &["annotations", "summary"]),
                description: text(rule, &["annotations", "description"]),
                runbook: text(rule, &["annotations", "runbook"]),
            });
        }
    }
    rules
}

/// The string at `path` under `value`, empty when absent or not a string.
fn text(value: &Yaml, path: &[&str]) -> String {
    let mut at = value;
    for key in path {
        match at.get(*key) {
            Some(next) => at = next,
            None => return String::new(),
        }
    }
    at.as_str().unwrap_or_default().trim().to_owned()
}

/// The alerts that `alerts_test.yml` expects to fire in at least one case.
pub fn alerts_tested_firing() -> BTreeSet<String> {
    let file = yaml(&alert_tests_path());
    let mut tested = BTreeSet::new();
    for test in file
        .get("tests")
        .and_then(Yaml::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        for case in test
            .get("alert_rule_test")
            .and_then(Yaml::as_sequence)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let fires = case
                .get("exp_alerts")
                .and_then(Yaml::as_sequence)
                .is_some_and(|alerts| !alerts.is_empty());
            if fires && let Some(name) = case.get("alertname").and_then(Yaml::as_str) {
                tested.insert(name.to_owned());
            }
        }
    }
    tested
}

/// A Prometheus duration such as `5m` or `1h30m`.
pub fn is_duration(s: &str) -> bool {
    const UNITS: [&str; 7] = ["ms", "s", "m", "h", "d", "w", "y"];
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = UNITS.iter().find(|u| rest.starts_with(**u)) else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

// --------------------------------------------------------------- dashboard

pub fn dashboard() -> Json {
    let path = dashboard_path();
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel, rows included, and the panels a collapsed row holds.
pub fn panels(dashboard: &Json) -> Vec<&Json> {
    fn walk<'a>(list: &'a Json, out: &mut Vec<&'a Json>) {
        for panel in list.as_array().map(Vec::as_slice).unwrap_or_default() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(list) = dashboard.get("panels") {
        walk(list, &mut out);
    }
    out
}

/// (panel title, expr) of every query of every panel of `dashboard`.
pub fn exprs_of(dashboard: &Json) -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for panel in panels(dashboard) {
        let title = panel
            .get("title")
            .and_then(Json::as_str)
            .unwrap_or_default();
        for target in panel
            .get("targets")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let expr = target
                .get("expr")
                .and_then(Json::as_str)
                .unwrap_or_default();
            exprs.push((title.to_owned(), expr.to_owned()));
        }
    }
    exprs
}

/// (panel title, expr) of every query of the shipped dashboard.
pub fn dashboard_exprs() -> Vec<(String, String)> {
    exprs_of(&dashboard())
}

/// (variable name, query) of the dashboard's query variables.
pub fn variable_queries(dashboard: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for variable in dashboard
        .pointer("/templating/list")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if variable.get("type").and_then(Json::as_str) != Some("query") {
            continue;
        }
        let name = variable
            .get("name")
            .and_then(Json::as_str)
            .unwrap_or_default();
        let query = variable
            .get("query")
            .and_then(|q| q.get("query").or(Some(q)))
            .and_then(Json::as_str)
            .unwrap_or_default();
        out.push((name.to_owned(), query.to_owned()));
    }
    out
}

// ------------------------------------------------------------------ README

/// The anchor GitHub gives a heading: lower case, spaces as `-`, every other
/// character but letters, digits, `-` and `_` dropped.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The anchors of every heading of a Markdown document (outside code
/// fences); a repeated one gets `-1`, `-2`... as on GitHub.
pub fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = anchor(&line[hashes..]);
        let mut candidate = base.clone();
        let mut n = 0;
        while anchors.contains(&candidate) {
            n += 1;
            candidate = format!("{base}-{n}");
        }
        anchors.insert(candidate);
    }
    anchors
}

// ------------------------------------------------------------------ PromQL

/// PromQL's aggregation operators: never metric names, with or without a
/// `by`/`without` clause between the name and its arguments.
const AGGREGATORS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a list of label names.
const LABEL_LIST_KEYWORDS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Other words that are never metric names.
const KEYWORDS: [&str; 8] = [
    "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan",
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// The text between `{` and `}`.
    Selector(String),
    /// The text between `[` and `]` (a range or a subquery).
    Range(String),
    Str,
    Number,
    /// A Grafana variable outside a string (`$x`, `${x}`).
    Var,
    Punct(char),
}

/// The end (exclusive) of the quoted string starting at `start`, None when
/// it is never closed.
fn string_end(chars: &[char], start: usize) -> Option<usize> {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The end (exclusive) of the group opened by `chars[start]`, strings
/// skipped.
fn group_end(chars: &[char], start: usize, close: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = string_end(chars, i).unwrap_or(chars.len()),
            c if c == close => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn tokens(expr: &str) -> Vec<Tok> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if matches!(c, '"' | '\'' | '`') {
            i = string_end(&chars, i).unwrap_or(chars.len());
            out.push(Tok::Str);
        } else if c == '{' || c == '[' {
            let close = if c == '{' { '}' } else { ']' };
            let end = group_end(&chars, i, close);
            let inner_end = if chars.get(end - 1) == Some(&close) && end - 1 > i {
                end - 1
            } else {
                end
            };
            let inner: String = chars[i + 1..inner_end].iter().collect();
            out.push(if c == '{' {
                Tok::Selector(inner)
            } else {
                Tok::Range(inner)
            });
            i = end;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let hex = c == '0' && matches!(chars.get(i + 1), Some('x' | 'X'));
            i += 1;
            while i < chars.len() {
                let d = chars[i];
                let exponent_sign = !hex
                    && matches!(d, '+' | '-')
                    && matches!(chars[i - 1], 'e' | 'E')
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit);
                if d.is_ascii_alphanumeric() || d == '.' || d == '_' || exponent_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            out.push(Tok::Number);
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = group_end(&chars, i, '}');
            } else {
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
            }
            out.push(Tok::Var);
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

/// The index just past the `)` matching the `(` at `open`.
fn matching_close(toks: &[Tok], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, tok) in toks.iter().enumerate().skip(open) {
        match tok {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// A token that names a metric, and where.
fn metric_tokens(toks: &[Tok]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                let next_is_paren = toks.get(i + 1) == Some(&Tok::Punct('('));
                if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                    if next_is_paren {
                        i = matching_close(toks, i + 1);
                        continue;
                    }
                } else if !KEYWORDS.contains(&lower.as_str())
                    && !AGGREGATORS.contains(&lower.as_str())
                    && !next_is_paren
                {
                    out.push((i, name.clone()));
                }
            }
            Tok::Selector(inner) => {
                // `{__name__="x"}` alone names x too.
                let named_before = i > 0 && matches!(toks[i - 1], Tok::Ident(_));
                if !named_before && let Some(name) = name_matcher(inner) {
                    out.push((i, name));
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The value of an `__name__="..."` equality matcher.
fn name_matcher(selector: &str) -> Option<String> {
    let rest = selector.split("__name__").nth(1)?.trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| matches!(c, '"' | '\''))?;
    let value: String = rest[1..].chars().take_while(|c| *c != quote).collect();
    Some(value)
}

/// The family of a series name: a histogram's `_bucket`, `_sum` and `_count`
/// series belong to the histogram.
pub fn family(name: &str) -> String {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
        .to_owned()
}

/// The series names an expression selects, as written.
pub fn raw_metric_names(expr: &str) -> BTreeSet<String> {
    metric_tokens(&tokens(expr))
        .into_iter()
        .map(|(_, name)| name)
        .collect()
}

/// The metric families an expression reads: identifiers that are neither
/// functions, aggregations, keywords, label names (in `{...}`, `by (...)`,
/// `on (...)`...), strings, numbers nor durations; a histogram's series
/// named by its family.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    metric_tokens(&tokens(expr))
        .into_iter()
        .map(|(_, name)| family(&name))
        .collect()
}

/// For each metric an expression selects (as written), the function or
/// aggregation whose arguments hold it directly (`max` for `max by (x)
/// (m offset 1h)`, `rate` for `rate(m[5m])`), or None at the top level or
/// in a bare parenthesis.
pub fn enclosing_calls(expr: &str) -> Vec<(String, Option<String>)> {
    let toks = tokens(expr);
    metric_tokens(&toks)
        .into_iter()
        .map(|(at, name)| (name, enclosing_call(&toks, at)))
        .collect()
}

fn enclosing_call(toks: &[Tok], at: usize) -> Option<String> {
    // The `(` that opens the innermost group holding `at`.
    let mut depth = 0usize;
    let mut open = None;
    for (i, tok) in toks[..at].iter().enumerate().rev() {
        match tok {
            Tok::Punct(')') => depth += 1,
            Tok::Punct('(') if depth == 0 => {
                open = Some(i);
                break;
            }
            Tok::Punct('(') => depth -= 1,
            _ => {}
        }
    }
    let open = open?;
    let mut before = open.checked_sub(1)?;
    // `agg by (labels) (...)`: step over the label list and its keyword.
    if toks[before] == Tok::Punct(')') {
        let mut depth = 0usize;
        let mut i = before;
        loop {
            match toks[i] {
                Tok::Punct(')') => depth += 1,
                Tok::Punct('(') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            i = i.checked_sub(1)?;
        }
        before = i.checked_sub(2)?;
        if !matches!(&toks[before + 1], Tok::Ident(k) if k == "by" || k == "without") {
            return None;
        }
    }
    match &toks[before] {
        Tok::Ident(name) => Some(name.clone()),
        _ => None,
    }
}

/// The label lists of every `by (...)` and `without (...)` clause.
pub fn grouping_labels(expr: &str) -> Vec<BTreeSet<String>> {
    let toks = tokens(expr);
    let mut out = Vec::new();
    for (i, tok) in toks.iter().enumerate() {
        let Tok::Ident(word) = tok else { continue };
        if (word == "by" || word == "without") && toks.get(i + 1) == Some(&Tok::Punct('(')) {
            let end = matching_close(&toks, i + 1);
            out.push(
                toks[i + 2..end.saturating_sub(1)]
                    .iter()
                    .filter_map(|t| match t {
                        Tok::Ident(label) => Some(label.clone()),
                        _ => None,
                    })
                    .collect(),
            );
        }
    }
    out
}

/// The argument text of every call of `function` in `expr`.
pub fn call_arguments(expr: &str, function: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = expr[from..].find(function) {
        let start = from + found;
        from = start + function.len();
        let boundary_before = expr[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !is_ident_char(c));
        let after = expr[from..].trim_start();
        if !boundary_before || !after.starts_with('(') {
            continue;
        }
        let open = expr.len() - after.len();
        let chars: Vec<char> = expr[open..].chars().collect();
        let end = group_end_nested(&chars);
        out.push(chars[1..end.saturating_sub(1)].iter().collect());
    }
    out
}

/// The end (exclusive) of the parenthesis opened by `chars[0]`, nested
/// parentheses and strings skipped.
fn group_end_nested(chars: &[char]) -> usize {
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = string_end(chars, i).unwrap_or(chars.len());
                continue;
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// Whether `()`, `{}` and `[]` pair up outside strings.
pub fn balanced(expr: &str) -> Result<(), String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut open: Vec<(char, usize)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                let Some(end) = string_end(&chars, i) else {
                    return Err(format!("the string opened at {i} is never closed"));
                };
                i = end;
                continue;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '(' | '{' | '[' => open.push((c, i)),
            ')' | '}' | ']' => {
                let want = match c {
                    ')' => '(',
                    '}' => '{',
                    _ => '[',
                };
                match open.pop() {
                    Some((got, _)) if got == want => {}
                    Some((got, at)) => {
                        return Err(format!("`{got}` at {at} is closed by `{c}` at {i}"));
                    }
                    None => return Err(format!("`{c}` at {i} closes nothing")),
                }
            }
            _ => {}
        }
        i += 1;
    }
    match open.pop() {
        Some((c, at)) => Err(format!("`{c}` at {at} is never closed")),
        None => Ok(()),
    }
}
