//! The platform's default templates: the files under `templates/` (see its
//! README), compiled into the binary and read once into a catalog keyed by
//! trigger, audience, channel and locale. A tenant's own rows in
//! `notification_templates` take precedence (`store::templates::resolve`).
//!
//! Reading is strict: a file whose name the layout does not know, a folder
//! that is no templated trigger, or a trigger missing a part is an error,
//! so a typo cannot quietly leave a channel without words.

use super::{TemplateSource, WhatsAppParameters};
use crate::model::{Channel, ContactKind};
use crate::triggers::Trigger;
use include_dir::{Dir, File, include_dir};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

static FILES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../templates");

/// Files at the top of `templates/` that are not a trigger's.
const NOT_TEMPLATES: &[&str] = &["README.md", "samples.yaml"];

/// The locales every platform template is written in.
pub const LOCALES: &[&str] = &["es", "en"];

type Key = (Trigger, ContactKind, Channel, String);

/// Every platform template, by trigger, audience, channel and locale.
#[derive(Debug, Default)]
pub struct Catalog {
    templates: BTreeMap<Key, TemplateSource>,
}

impl Catalog {
    pub fn get(
        &self,
        trigger: Trigger,
        audience: ContactKind,
        channel: Channel,
        locale: &str,
    ) -> Option<&TemplateSource> {
        self.templates
            .get(&(trigger, audience, channel, locale.to_owned()))
    }

    /// The approved WhatsApp template names the platform's templates use:
    /// what a WABA must have approved for every trigger to go out on WhatsApp.
    pub fn whatsapp_template_names(&self) -> BTreeSet<&str> {
        self.templates
            .values()
            .filter_map(|t| t.whatsapp_template_name.as_deref())
            .collect()
    }

    /// The (trigger, audience) sets the catalog holds.
    pub fn sets(&self) -> BTreeSet<(Trigger, ContactKind)> {
        self.templates.keys().map(|(t, a, _, _)| (*t, *a)).collect()
    }
}

/// The catalog, read on first use. Its tests make sure it reads.
pub fn catalog() -> Result<&'static Catalog, &'static str> {
    static CATALOG: LazyLock<Result<Catalog, String>> = LazyLock::new(|| read(&FILES));
    CATALOG.as_ref().map_err(String::as_str)
}

/// `whatsapp.yaml`: the approved template a trigger sends on WhatsApp.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovedTemplate {
    name: String,
    #[serde(default)]
    languages: BTreeMap<String, String>,
    #[serde(default)]
    header: Vec<String>,
    #[serde(default)]
    body: Vec<String>,
}

fn read(root: &Dir<'_>) -> Result<Catalog, String> {
    let mut catalog = Catalog::default();
    for file in root.files() {
        let name = file_name(file);
        if !NOT_TEMPLATES.contains(&name) {
            return Err(format!("templates/{name}: not part of the layout"));
        }
    }
    for folder in root.dirs() {
        let trigger_name = dir_name(folder);
        let trigger: Trigger = trigger_name
            .parse()
            .map_err(|_| format!("templates/{trigger_name}: not a trigger"))?;
        let audiences = trigger.audiences();
        let Some(&main) = audiences.first() else {
            return Err(format!(
                "templates/{trigger_name}: {trigger} renders no template"
            ));
        };
        read_set(&mut catalog, folder, trigger, main)?;
        for sub in folder.dirs() {
            let sub_name = dir_name(sub);
            let audience = audiences
                .iter()
                .copied()
                .find(|a| a.as_str().eq_ignore_ascii_case(sub_name) && *a != main)
                .ok_or_else(|| {
                    format!("templates/{trigger_name}/{sub_name}: {trigger} does not reach that audience")
                })?;
            read_set(&mut catalog, sub, trigger, audience)?;
        }
    }
    Ok(catalog)
}

/// One folder: every channel in every locale, for one audience.
fn read_set(
    catalog: &mut Catalog,
    folder: &Dir<'_>,
    trigger: Trigger,
    audience: ContactKind,
) -> Result<(), String> {
    let path = folder.path().display().to_string();
    let mut texts: BTreeMap<&str, &str> = BTreeMap::new();
    for file in folder.files() {
        let text = file
            .contents_utf8()
            .ok_or_else(|| format!("templates/{path}/{}: not UTF-8", file_name(file)))?;
        texts.insert(file_name(file), text);
    }
    let approved: ApprovedTemplate = serde_norway::from_str(
        texts
            .remove("whatsapp.yaml")
            .ok_or_else(|| format!("templates/{path}: no whatsapp.yaml"))?,
    )
    .map_err(|e| format!("templates/{path}/whatsapp.yaml: {e}"))?;
    for locale in LOCALES {
        let mut take =
            |channel: &str, part: &str, required: bool| -> Result<Option<String>, String> {
                let file = format!("{channel}.{locale}.{part}.j2");
                match texts.remove(file.as_str()) {
                    Some(text) => Ok(Some(text.trim_end().to_owned())),
                    None if required => Err(format!("templates/{path}: no {file}")),
                    None => Ok(None),
                }
            };
        let subject = take("email", "subject", true)?;
        let email_text = take("email", "txt", true)?;
        let email_html = take("email", "html", false)?;
        let sms = take("sms", "txt", true)?;
        let chat = take("whatsapp", "txt", true)?;
        let source = |channel: Channel,
                      subject: Option<String>,
                      body: Option<String>,
                      body_html: Option<String>| TemplateSource {
            template_key: format!("platform/{trigger}/{audience}/{channel}/{locale}"),
            locale: (*locale).to_owned(),
            subject,
            body: body.unwrap_or_default(),
            body_html,
            whatsapp_template_name: None,
            whatsapp_language: None,
            whatsapp_parameters: None,
        };
        let mut whatsapp = source(Channel::WhatsApp, None, chat.clone(), None);
        whatsapp.whatsapp_template_name = Some(approved.name.clone());
        whatsapp.whatsapp_language = approved.languages.get(*locale).cloned();
        whatsapp.whatsapp_parameters = Some(sqlx::types::Json(WhatsAppParameters {
            header: approved.header.clone(),
            body: approved.body.clone(),
        }));
        let key = |channel| (trigger, audience, channel, (*locale).to_owned());
        catalog.templates.insert(
            key(Channel::Email),
            source(Channel::Email, subject, email_text, email_html),
        );
        catalog
            .templates
            .insert(key(Channel::Sms), source(Channel::Sms, None, sms, None));
        catalog.templates.insert(key(Channel::WhatsApp), whatsapp);
        // The widget shows what a chat app would: the WhatsApp text.
        catalog.templates.insert(
            key(Channel::Webchat),
            source(Channel::Webchat, None, chat, None),
        );
    }
    if let Some(extra) = texts.keys().next() {
        return Err(format!("templates/{path}/{extra}: not part of the layout"));
    }
    Ok(())
}

fn file_name<'a>(file: &'a File<'_>) -> &'a str {
    file.path()
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

fn dir_name<'a>(dir: &'a Dir<'_>) -> &'a str {
    dir.path()
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
