//! Notification templates: which template applies, and rendering it.
//!
//! Resolution walks the locale chain (`es-MX` → `es` → `en`) and, for each
//! locale, prefers the tenant's own template over the platform default
//! (`platform`: the files under `templates/`), so a recipient gets their
//! language before they get the tenant's branding. The platform has every
//! trigger in `es` and `en`, so resolution always ends in a template.
//! Rendering is strict: a variable the template uses but the event did not
//! carry is an error that names the variable, never an empty string in a
//! customer's inbox.

pub mod platform;

use crate::providers::WhatsAppTemplate;
use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The locale chain for a preferred locale: `es-MX` → `es-MX`, `es`, `en`.
pub fn locale_chain(preferred: &str) -> Vec<String> {
    let mut chain: Vec<String> = Vec::new();
    let mut push = |locale: &str| {
        if !locale.is_empty() && !chain.iter().any(|l| l.eq_ignore_ascii_case(locale)) {
            chain.push(locale.to_owned());
        }
    };
    let preferred = preferred.trim().replace('_', "-");
    push(&preferred);
    if let Some((language, _)) = preferred.split_once('-') {
        push(language);
    }
    push("en");
    chain
}

/// A template as stored, before rendering.
#[derive(Debug, Clone, Deserialize)]
pub struct TemplateSource {
    pub template_key: String,
    pub locale: String,
    pub subject: Option<String>,
    pub body: String,
    pub body_html: Option<String>,
    /// The approved WhatsApp template this row maps to, if any.
    pub whatsapp_template_name: Option<String>,
    pub whatsapp_language: Option<String>,
    /// `{"header": ["expr", …], "body": ["expr", …]}`: template expressions
    /// that fill the approved template's parameters, in order.
    pub whatsapp_parameters: Option<sqlx::types::Json<WhatsAppParameters>>,
}

/// Expressions for an approved WhatsApp template's parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WhatsAppParameters {
    #[serde(default)]
    pub header: Vec<String>,
    #[serde(default)]
    pub body: Vec<String>,
}

/// What the recipient will read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedMessage {
    pub subject: Option<String>,
    pub body: String,
    pub body_html: Option<String>,
    /// The approved template and its rendered parameters (WhatsApp).
    pub whatsapp_template: Option<WhatsAppTemplate>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template '{template}' uses variable '{variable}' that the event does not provide")]
    MissingVariable { template: String, variable: String },
    #[error("template '{template}' cannot be rendered: {reason}")]
    Invalid { template: String, reason: String },
}

/// Renders subject, text body and html body with the same variables.
pub fn render(
    source: &TemplateSource,
    variables: &serde_json::Value,
) -> Result<RenderedMessage, RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let render_one = |env: &mut Environment<'_>, part: &str, text: &str, auto_escape: bool| {
        let name = format!("{}.{part}", source.template_key);
        let invalid = |e: minijinja::Error| RenderError::Invalid {
            template: source.template_key.clone(),
            reason: e.to_string(),
        };
        env.set_auto_escape_callback(move |_| {
            if auto_escape {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        let template = env.template_from_named_str(&name, text).map_err(invalid)?;
        template.render(variables).map_err(|e| {
            if e.kind() == minijinja::ErrorKind::UndefinedError {
                let used: BTreeSet<String> =
                    template.undeclared_variables(true).into_iter().collect();
                if let Some(variable) = used.into_iter().find(|path| !has_path(variables, path)) {
                    return RenderError::MissingVariable {
                        template: source.template_key.clone(),
                        variable,
                    };
                }
            }
            invalid(e)
        })
    };
    let subject = match &source.subject {
        Some(s) => Some(render_one(&mut env, "subject", s, false)?.trim().to_owned()),
        None => None,
    };
    let body = render_one(&mut env, "body", &source.body, false)?;
    let body_html = match &source.body_html {
        Some(html) => Some(render_one(&mut env, "html", html, true)?),
        None => None,
    };
    let whatsapp_template = match &source.whatsapp_template_name {
        Some(name) => {
            let parameters = source
                .whatsapp_parameters
                .as_ref()
                .map(|p| p.0.clone())
                .unwrap_or_default();
            let eval = |exprs: &[String]| -> Result<Vec<String>, RenderError> {
                exprs
                    .iter()
                    .map(|expr| evaluate(&env, source, expr, variables))
                    .collect()
            };
            Some(WhatsAppTemplate {
                name: name.clone(),
                language: source
                    .whatsapp_language
                    .clone()
                    .unwrap_or_else(|| source.locale.replace('-', "_")),
                header: eval(&parameters.header)?,
                body: eval(&parameters.body)?,
            })
        }
        None => None,
    };
    Ok(RenderedMessage {
        subject,
        body,
        body_html,
        whatsapp_template,
    })
}

/// Evaluates one parameter expression (`booking.booking_reference`) to text.
fn evaluate(
    env: &Environment<'_>,
    source: &TemplateSource,
    expr: &str,
    variables: &serde_json::Value,
) -> Result<String, RenderError> {
    let compiled = env
        .compile_expression(expr)
        .map_err(|e| RenderError::Invalid {
            template: source.template_key.clone(),
            reason: format!("WhatsApp parameter '{expr}': {e}"),
        })?;
    let value = compiled.eval(variables).map_err(|e| RenderError::Invalid {
        template: source.template_key.clone(),
        reason: format!("WhatsApp parameter '{expr}': {e}"),
    })?;
    if value.is_undefined() || value.is_none() {
        return Err(RenderError::MissingVariable {
            template: source.template_key.clone(),
            variable: expr.to_owned(),
        });
    }
    // Meta refuses a parameter with a new line, a tab or four spaces in a
    // row: free text (an incident's summary) is read as one line.
    Ok(value
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" "))
}

/// The html part of an email whose template has none: the text, escaped,
/// a paragraph per blank-line-separated block, line breaks kept.
pub fn html_from_text(text: &str) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    text.split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let lines: Vec<String> = p.lines().map(|l| escape(l.trim_end())).collect();
            format!("<p>{}</p>", lines.join("<br>"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn has_path(value: &serde_json::Value, dotted: &str) -> bool {
    let mut current = value;
    for segment in dotted.split('.') {
        match current.get(segment) {
            Some(next) if !next.is_null() => current = next,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(subject: &str, body: &str) -> TemplateSource {
        TemplateSource {
            template_key: "booking_confirmed/EMAIL/es".into(),
            locale: "es".into(),
            subject: Some(subject.into()),
            body: body.into(),
            body_html: Some("<p>{{ contact.display_name }}</p>".into()),
            whatsapp_template_name: None,
            whatsapp_language: None,
            whatsapp_parameters: None,
        }
    }

    #[test]
    fn whatsapp_parameters_are_rendered_in_order_and_missing_ones_named() {
        let mut s = source("s", "b");
        s.whatsapp_template_name = Some("booking_confirmed_v2".into());
        s.whatsapp_parameters = Some(sqlx::types::Json(WhatsAppParameters {
            header: vec!["booking.booking_reference".into()],
            body: vec![
                "contact.first_name".into(),
                "booking.seat | default('—')".into(),
            ],
        }));
        let vars = json!({"contact": {"display_name": "Ana", "first_name": "Ana"}, "booking": {"booking_reference": "BK-1"}});
        let out = render(&s, &vars).expect("renders");
        let wa = out.whatsapp_template.expect("template");
        assert_eq!(wa.name, "booking_confirmed_v2");
        assert_eq!(wa.language, "es", "defaults to the row's locale");
        assert_eq!(wa.header, ["BK-1"]);
        assert_eq!(wa.body, ["Ana", "—"]);

        s.whatsapp_parameters = Some(sqlx::types::Json(WhatsAppParameters {
            header: vec![],
            body: vec!["booking.gate".into()],
        }));
        assert!(
            matches!(render(&s, &vars), Err(RenderError::MissingVariable { variable, .. }) if variable == "booking.gate")
        );
    }

    #[test]
    fn an_email_without_html_gets_its_text_as_escaped_paragraphs() {
        assert_eq!(
            html_from_text("Hola Ana <3,\n\nTu reserva\nBF-1 & más.\n"),
            "<p>Hola Ana &lt;3,</p>\n<p>Tu reserva<br>BF-1 &amp; más.</p>"
        );
    }

    #[test]
    fn locale_chain_falls_back_to_language_then_english() {
        assert_eq!(locale_chain("es-MX"), ["es-MX", "es", "en"]);
        assert_eq!(locale_chain("es_MX"), ["es-MX", "es", "en"]);
        assert_eq!(locale_chain("en"), ["en"]);
        assert_eq!(locale_chain(""), ["en"]);
    }

    #[test]
    fn renders_subject_text_and_escaped_html() {
        let vars = json!({"contact": {"display_name": "Ana <3"}, "booking": {"booking_reference": "BK-1"}});
        let out = render(
            &source(
                "Reserva {{ booking.booking_reference }}",
                "Hola {{ contact.display_name }}",
            ),
            &vars,
        )
        .expect("renders");
        assert_eq!(out.subject.as_deref(), Some("Reserva BK-1"));
        assert_eq!(out.body, "Hola Ana <3");
        assert_eq!(out.body_html.as_deref(), Some("<p>Ana &lt;3</p>"));
    }

    #[test]
    fn a_missing_variable_is_named() {
        let vars = json!({"contact": {"display_name": "Ana"}, "booking": {}});
        let err = render(
            &source("Reserva {{ booking.booking_reference }}", "x"),
            &vars,
        )
        .expect_err("missing");
        match err {
            RenderError::MissingVariable { variable, .. } => {
                assert_eq!(variable, "booking.booking_reference")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn default_filter_covers_an_optional_variable() {
        let vars = json!({"contact": {"display_name": "Ana"}, "booking": {}});
        let out = render(
            &source("Asiento {{ booking.seat | default('por asignar') }}", "x"),
            &vars,
        )
        .expect("renders");
        assert_eq!(out.subject.as_deref(), Some("Asiento por asignar"));
    }
}
