use super::*;
use crate::templates::render;
use crate::triggers::templated_triggers;
use serde_json::Value;

/// The template variables a trigger's templates see at run time, from
/// `templates/samples.yaml`: `contact`, `tenant`, the trigger's row and, for
/// rows about a trip, `trip` (its `full` or `sparse` sample).
fn sample_variables(trigger: &crate::triggers::NotificationTrigger, which: &str) -> Value {
    let file = FILES
        .get_file("samples.yaml")
        .and_then(|f| f.contents_utf8())
        .expect("templates/samples.yaml");
    let samples: BTreeMap<String, BTreeMap<String, Value>> =
        serde_norway::from_str(file).expect("samples.yaml parses");
    let mut variables = serde_json::Map::new();
    for (key, by_kind) in samples {
        let seen = key == "contact"
            || key == "tenant"
            || key == trigger.row_key
            || (key == "trip" && trigger.carries_trip());
        if !seen {
            continue;
        }
        let sample = by_kind
            .get(which)
            .unwrap_or_else(|| panic!("samples.yaml: {key} has no {which} sample"))
            .clone();
        variables.insert(key, sample);
    }
    Value::Object(variables)
}

#[test]
fn the_catalog_reads() {
    catalog().expect("templates/ reads as a catalog");
}

#[test]
fn every_trigger_has_words_for_every_channel_locale_and_audience() {
    let catalog = catalog().expect("catalog");
    let mut problems = Vec::new();
    for trigger in templated_triggers() {
        for &audience in trigger.trigger.audiences() {
            for &channel in Channel::ALL {
                for locale in LOCALES {
                    let Some(source) = catalog.get(trigger.trigger, audience, channel, locale)
                    else {
                        problems.push(format!(
                            "{}/{audience}/{channel}/{locale}: missing",
                            trigger.trigger
                        ));
                        continue;
                    };
                    for which in ["full", "sparse"] {
                        match render(source, &sample_variables(trigger, which)) {
                            Ok(message) => {
                                let key = &source.template_key;
                                if message.body.trim().is_empty() {
                                    problems.push(format!("{key} ({which}): empty body"));
                                }
                                if message.body.contains("{{") {
                                    problems.push(format!("{key} ({which}): unrendered braces"));
                                }
                                if channel == Channel::Email {
                                    let subject = message.subject.unwrap_or_default();
                                    if subject.is_empty() || subject.contains('\n') {
                                        problems.push(format!(
                                            "{key} ({which}): subject must be one line"
                                        ));
                                    }
                                }
                                if channel == Channel::Sms
                                    && which == "full"
                                    && message.body.chars().count() > 300
                                {
                                    problems.push(format!("{key}: SMS longer than 300 characters"));
                                }
                                if channel == Channel::WhatsApp {
                                    let approved = message
                                        .whatsapp_template
                                        .unwrap_or_else(|| panic!("{key}: no approved template"));
                                    if approved
                                        .body
                                        .iter()
                                        .chain(&approved.header)
                                        .any(|p| p.trim().is_empty())
                                    {
                                        problems.push(format!(
                                            "{key} ({which}): an empty WhatsApp parameter"
                                        ));
                                    }
                                }
                            }
                            Err(e) => {
                                problems.push(format!("{} ({which}): {e}", source.template_key))
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "platform templates:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn nothing_in_templates_belongs_to_no_trigger() {
    let catalog = catalog().expect("catalog");
    let expected: BTreeSet<(Trigger, ContactKind)> = templated_triggers()
        .flat_map(|t| t.trigger.audiences().iter().map(move |a| (t.trigger, *a)))
        .collect();
    assert_eq!(catalog.sets(), expected);
}

#[test]
fn a_misnamed_file_or_a_missing_part_is_refused_by_name() {
    static BAD: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/src/templates/platform/bad");
    let error = read(&BAD).expect_err("a typo is refused");
    assert!(
        error.contains("emial.es.subject.j2") || error.contains("email.es.subject.j2"),
        "{error}"
    );
}
