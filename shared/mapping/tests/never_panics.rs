//! Mapping must never panic, whatever a source system sends: arbitrary JSON objects through every template.

use std::path::PathBuf;

use p2c_mapping::{Format, MappingOverrides, Record, Source, Template, builtin_templates, content_hash};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        Just(Value::from(12.0)),
        Just(Value::from(i64::from(i32::MAX) + 1)),
        ".{0,30}".prop_map(Value::String),
        "[ \t]{0,3}".prop_map(Value::String),
        "\\PC{0,300}".prop_map(Value::String),
        prop_oneof![
            Just("USA"),
            Just("Narnia"),
            Just("de"),
            Just("Côte d’Ivoire"),
            Just("ACC-1"),
            Just("😀😀😀")
        ]
        .prop_map(Value::from),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every source name any template reads, its key and id, plus random names.
fn arb_key(templates: &[Template]) -> BoxedStrategy<String> {
    let mut names: Vec<String> = Vec::new();
    for t in templates {
        names.extend([t.source_key.clone(), t.source_id.clone()]);
        names.extend(t.fields.iter().filter_map(|f| match &f.source {
            Source::Field(p) => Some(p.clone()),
            Source::None => None,
        }));
        names.extend(t.source_select());
    }
    prop_oneof![3 => prop::sample::select(names), 1 => ".{0,12}"].boxed()
}

fn arb_record() -> impl Strategy<Value = Record> {
    let templates = builtin_templates();
    prop::collection::vec((arb_key(&templates), arb_json()), 0..40).prop_map(|kvs| {
        let mut m = Map::new();
        for (k, v) in kvs {
            m.insert(k, v);
        }
        m
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn every_template_handles_any_record(src in arb_record()) {
        for t in builtin_templates() {
            let _ = t.passes_filter(&src);
            let key = t.key_of(&src);
            match t.map_parts(&src) {
                Ok(m) => {
                    prop_assert!(key.is_ok(), "mapped without a key");
                    let out = &m.body;
                    let _ = content_hash(out);
                    for (field, v) in out {
                        // Null only clears a Sales field; F&O has no null (its clears are "", 0, ...).
                        prop_assert!(!v.is_null() || (!t.writes_fno() && m.cleared.contains(field)), "{} written as null", field);
                        prop_assert!(!t.target_key.contains(field) || !m.cleared.contains(field), "key {} cleared", field);
                        if let (Value::String(s), Some(max)) = (v, t.max_len(field)) {
                            prop_assert!(s.encode_utf16().count() <= max, "{} longer than {}", field, max);
                        }
                    }
                }
                Err(e) => {
                    prop_assert!(e.is_permanent());
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
        let _ = content_hash(&src);
    }

    #[test]
    fn a_keyed_record_maps_or_names_the_field(src in arb_record(), key in "[A-Z0-9-]{1,20}", line in 1u32..9999) {
        for t in builtin_templates() {
            let mut src = src.clone();
            let want = match &t.parent_key {
                Some(parent) => {
                    src.insert(parent.clone(), Value::from(key.clone()));
                    src.insert(t.source_key.clone(), Value::from(line));
                    format!("{key}/{line}")
                }
                None => {
                    src.insert(t.source_key.clone(), Value::from(key.clone()));
                    key.clone()
                }
            };
            prop_assert_eq!(t.key_of(&src).unwrap(), want.clone());
            if let Err(e) = t.map(&src) {
                // A target field, or (MissingKey) the source of a target key row.
                let named = t.fields.iter().any(|f| f.target == e.field() || f.source.path() == Some(e.field()));
                prop_assert!(named, "{}", e);
                prop_assert_eq!(e.record(), want.as_str());
            }
        }
    }

    /// Each template's golden record with a few fields swapped for anything: reaches every row, not just the
    /// first; binding the result never panics either.
    #[test]
    fn a_mostly_valid_record_maps_or_fails_cleanly(
        changes in prop::collection::vec((arb_key(&builtin_templates()), arb_json()), 0..5),
    ) {
        for t in builtin_templates() {
            let mut src = golden_input(&t);
            for (k, v) in &changes {
                src.insert(k.clone(), v.clone());
            }
            let _ = t.passes_filter(&src);
            match t.map(&src) {
                Ok(out) => {
                    prop_assert!(out.len() <= t.fields.len());
                    let key = t.key_of(&src).unwrap();
                    match t.bind(&key, &out, |lt, v| (v.len() % 2 == 0).then(|| lt.entity_set.clone())) {
                        Ok(wire) => prop_assert!(wire.len() <= out.len()),
                        Err(e) => prop_assert!(e.to_string().contains(&key)),
                    }
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn override_parsing_never_panics(text in "\\PC{0,200}", toml_like in "(\\[[a-z.-]{0,20}\\]\n)?([A-Za-z_\"]{1,12} = [\"\\[{0-9a-z,}\\] ]{0,16}\n){0,4}") {
        for f in [Format::Toml, Format::Json] {
            let _ = MappingOverrides::parse(&text, f);
            let _ = MappingOverrides::parse(&toml_like, f);
        }
    }
}

fn arb_toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9 -]{0,14}".prop_map(|s| format!("{s:?}")),
        any::<i32>().prop_map(|i| i.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("1.5".to_string()),
        Just("[1, \"a\"]".to_string()),
        Just("{ a = 1 }".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Overrides with arbitrary values on real targets: refused with a message, or applied and mapping still safe.
    #[test]
    fn arbitrary_overrides_apply_safely(
        target in prop::sample::select(builtin_templates()[0].fields.iter().map(|f| f.target.clone()).collect::<Vec<_>>()),
        section in prop::sample::select(vec!["defaults", "value_maps", "disabled", "fields"]),
        key in "[A-Za-z ]{0,8}",
        value in arb_toml_value(),
        mode in prop::sample::select(vec!["extend", "replace"]),
        transform in prop::sample::select(vec!["copy", "default", "value_map", "country", "truncate", "bool"]),
    ) {
        let text = match section {
            "defaults" => format!("[accounts-to-fno.defaults]\n{target} = {value}\n"),
            "value_maps" => format!("[accounts-to-fno.value_maps.{target}]\nmode = \"{mode}\"\nentries = {{ {key:?} = {value} }}\n"),
            "disabled" => format!("[accounts-to-fno]\ndisabled = [\"{target}\"]\n"),
            _ => format!("[[accounts-to-fno.fields]]\nsource = \"name\"\ntarget = \"{target}\"\ntransform = \"{transform}\"\nreplace = true\ndefault = {value}\n"),
        };
        match MappingOverrides::parse(&text, Format::Toml) {
            Ok(o) => {
                for mut t in builtin_templates() {
                    prop_assert!(o.apply(&mut t).is_ok());
                    let _ = t.map(&golden_account());
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("mapping overrides"), "{}", e),
        }
    }
}

fn golden_file(rel: &str) -> Record {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(rel);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn golden_account() -> Record {
    golden_file("accounts-to-fno/account_full.json")
}

/// The golden source record of a template.
fn golden_input(t: &Template) -> Record {
    if t.flow == "accounts-to-fno" {
        return golden_account();
    }
    golden_file(&format!("{}/{}.input.json", t.flow, t.name))
}

/// (flow, task, target) of every row of every template.
fn all_rows() -> Vec<(String, String, String)> {
    builtin_templates()
        .into_iter()
        .flat_map(|t| {
            t.fields
                .iter()
                .map(|f| (t.flow.clone(), t.name.clone(), f.target.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The same on every template, through flow-level and task-level sections.
    #[test]
    fn arbitrary_task_overrides_apply_safely(
        row in prop::sample::select(all_rows()),
        task_level in any::<bool>(),
        section in prop::sample::select(vec!["defaults", "value_maps", "disabled", "fields"]),
        key in "[A-Za-z ]{0,8}",
        value in arb_toml_value(),
        mode in prop::sample::select(vec!["extend", "replace"]),
        transform in prop::sample::select(vec!["copy", "default", "value_map", "country", "truncate", "bool"]),
    ) {
        let (flow, task, target) = row;
        let table = if task_level { format!("{flow}.\"{task}\"") } else { flow.clone() };
        let target_key = format!("{target:?}");
        let text = match section {
            "defaults" => format!("[{table}.defaults]\n{target_key} = {value}\n"),
            "value_maps" => format!("[{table}.value_maps.{target_key}]\nmode = \"{mode}\"\nentries = {{ {key:?} = {value} }}\n"),
            "disabled" => format!("[{table}]\ndisabled = [{target_key}]\n"),
            _ => format!("[[{table}.fields]]\nsource = \"name\"\ntarget = {target_key}\ntransform = \"{transform}\"\nreplace = true\ndefault = {value}\n"),
        };
        match MappingOverrides::parse(&text, Format::Toml) {
            Ok(o) => {
                for mut t in builtin_templates() {
                    prop_assert!(o.apply(&mut t).is_ok());
                    let src = golden_input(&t);
                    if let Ok(out) = t.map(&src) {
                        let _ = t.bind("k", &out, |_, _| None);
                    }
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("mapping overrides"), "{}", e),
        }
    }
}
