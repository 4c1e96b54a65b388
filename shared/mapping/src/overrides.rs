//! Site-specific changes to the built-in templates: the file named by `P2C_MAPPING` (TOML or JSON).
//!
//! One section per flow; in each: `defaults`, `value_maps`, extra `fields`, `disabled` fields, `keep_when_blank`
//! fields, and optionally
//! the same per task (`[quotes-to-fno.QuoteLine]`) for flows with several templates. The format is documented on
//! [`MappingOverrides`]. Everything is checked when the file is loaded, against the built-in templates and F&O's
//! `$metadata`, so a typo stops the run at start-up with the file, section and field named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::country::normalize_country;
use crate::sales::{lookup_targets, sales_lookup_names};
use crate::schema::{self, Misfit, fno_has_entity, fno_max_len, fno_property, fno_property_ignore_case};
use crate::template::{FieldMap, Source, Template, Transform, Unmapped};
use crate::templates::{KNOWN_FLOWS, templates_for};

/// File format of a P2C_MAPPING file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    /// `.json` is JSON, anything else TOML.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Toml,
        }
    }
}

/// A bad P2C_MAPPING file. Every message names the file, then the line (parse errors) or the section and field.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("cannot read mapping file {} (P2C_MAPPING): {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}{}: {message}", at(*.line, *.column))]
    Parse {
        origin: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("{origin}: unknown flow [{flow}]; the flows are {}", KNOWN_FLOWS.join(", "))]
    UnknownFlow { origin: String, flow: String },
    #[error("{origin}: [{section}] {field}: {problem}")]
    UnknownField {
        origin: String,
        section: String,
        field: String,
        problem: String,
    },
    #[error("{origin}: [{section}] {field}: {problem}")]
    Invalid {
        origin: String,
        section: String,
        field: String,
        problem: String,
    },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(", line {l}, column {c}"),
        (Some(l), None) => format!(", line {l}"),
        _ => String::new(),
    }
}

/// Changes to the built-in templates, per flow: the P2C_MAPPING file.
///
/// TOML, or JSON of the same shape (an object per flow). A flow's table holds `defaults`, `value_maps`,
/// `fields`, `disabled` and `keep_when_blank`; so may a table per task inside it, named like the task (`[quotes-to-fno.QuoteLine]`,
/// `[[orders-to-sales.OrderHeader.fields]]`; task names start with a capital, section names do not).
///
/// - Flow-level `defaults`, `value_maps`, `disabled` and `keep_when_blank` apply to every template of the flow that
///   maps the target
///   (e.g. a currency map on both an order header and its lines); a target no template of the flow maps is an
///   error. Flow-level `fields` are only for flows with one template; elsewhere name the task.
/// - Task-level entries apply to that template only, after the flow-level ones.
///
/// `p2c_mapping.example.toml` beside this crate's `Cargo.toml` (tested to load):
///
/// ```toml
#[doc = include_str!("../p2c_mapping.example.toml")]
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MappingOverrides {
    /// Flow name -> its changes.
    pub flows: BTreeMap<String, FlowOverrides>,
    /// Where the overrides came from, for messages ("mapping file /etc/p2c/mapping.toml").
    pub origin: String,
}

/// The changes to one flow's templates (or, inside `tasks`, to one task's template).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowOverrides {
    /// Target field -> value written when the source is blank (rows without a source: always).
    pub defaults: BTreeMap<String, Value>,
    /// Target field -> value-map changes.
    pub value_maps: BTreeMap<String, ValueMapOverride>,
    /// Extra rows (or replacements of template rows).
    pub fields: Vec<ExtraField>,
    /// Target fields to stop writing.
    pub disabled: Vec<String>,
    /// Target fields that keep their value when the source is blank, instead of being cleared.
    pub keep_when_blank: Vec<String>,
    /// Task name (e.g. "QuoteLine") -> changes to that template only. Always empty inside a task.
    pub tasks: BTreeMap<String, FlowOverrides>,
}

const SECTIONS: &str = "defaults, value_maps, fields, disabled, keep_when_blank";

/// Reads a flow's table: the four sections, and task tables (keys starting with a capital letter) when
/// `tasks` is allowed. Unknown keys are refused with the list of what is allowed, like `deny_unknown_fields`.
struct FlowVisitor {
    tasks: bool,
}

impl<'de> Visitor<'de> for FlowVisitor {
    type Value = FlowOverrides;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a table of defaults, value_maps, fields, disabled, keep_when_blank")?;
        if self.tasks {
            f.write_str(" and task tables")?;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FlowOverrides, A::Error> {
        let mut out = FlowOverrides::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "defaults" => out.defaults = map.next_value()?,
                "value_maps" => out.value_maps = map.next_value()?,
                "fields" => out.fields = map.next_value()?,
                "disabled" => out.disabled = map.next_value()?,
                "keep_when_blank" => out.keep_when_blank = map.next_value()?,
                k if self.tasks && k.starts_with(|c: char| c.is_uppercase()) => {
                    let task = map.next_value_seed(TaskSeed)?;
                    out.tasks.insert(key, task);
                }
                k => {
                    let tail = if self.tasks {
                        ", or a task name such as QuoteLine"
                    } else {
                        " (tasks do not nest)"
                    };
                    return Err(de::Error::custom(format!(
                        "unknown key `{k}`, expected one of {SECTIONS}{tail}"
                    )));
                }
            }
        }
        Ok(out)
    }
}

struct TaskSeed;

impl<'de> de::DeserializeSeed<'de> for TaskSeed {
    type Value = FlowOverrides;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FlowOverrides, D::Error> {
        d.deserialize_map(FlowVisitor { tasks: false })
    }
}

impl<'de> Deserialize<'de> for FlowOverrides {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FlowOverrides, D::Error> {
        d.deserialize_map(FlowVisitor { tasks: true })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapMode {
    #[default]
    Extend,
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmappedMode {
    Error,
    Keep,
}

/// Changes to one field's value map.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMapOverride {
    #[serde(default)]
    pub mode: MapMode,
    /// Source value -> target value. The key "" is the value for a blank source.
    pub entries: BTreeMap<String, Value>,
    /// Match source values ignoring case (new maps: true; country fields always ignore case).
    pub case_insensitive: Option<bool>,
    /// A value not in the map: `error` refuses the record, `keep` writes it unchanged.
    pub unmapped: Option<UnmappedMode>,
    /// A value not in the map is written as this instead.
    pub otherwise: Option<Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransformKind {
    #[default]
    Copy,
    Default,
    ValueMap,
    Country,
    Truncate,
    Bool,
}

/// An extra row. Which keys apply depends on `transform`; others are refused.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraField {
    /// Source column or lookup path; none for a constant.
    pub source: Option<String>,
    /// Target field (wire name).
    pub target: String,
    #[serde(default)]
    pub transform: TransformKind,
    /// Blank-source value (copy, default, value_map, country), or the constant when there is no source.
    pub default: Option<Value>,
    /// value_map: the entries; country: extra entries over the built-in table.
    pub map: Option<BTreeMap<String, Value>>,
    pub case_insensitive: Option<bool>,
    pub unmapped: Option<UnmappedMode>,
    pub otherwise: Option<Value>,
    /// truncate: the length; default F&O's length for the target.
    pub length: Option<usize>,
    /// bool: the values for true and false; default "Yes" and "No" (NoYes).
    pub yes: Option<Value>,
    pub no: Option<Value>,
    /// Replace the template's row for `target` instead of adding one.
    #[serde(default)]
    pub replace: bool,
    /// A blank source writes nothing (the target keeps its value) instead of clearing the target.
    #[serde(default)]
    pub keep_when_blank: bool,
}

/// A problem with one override entry: (field, problem).
type Problem = (String, String);

fn problem(field: &str, text: impl Into<String>) -> Problem {
    (field.to_string(), text.into())
}

impl MappingOverrides {
    /// Read and check the P2C_MAPPING file: TOML, or JSON when the name ends in `.json`. The only I/O in the crate.
    pub fn load(path: &Path) -> Result<Self, OverrideError> {
        let text = std::fs::read_to_string(path).map_err(|source| OverrideError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_with_origin(
            &text,
            Format::from_path(path),
            format!("mapping file {}", path.display()),
        )
    }

    /// Parse and check overrides from text.
    pub fn parse(text: &str, format: Format) -> Result<Self, OverrideError> {
        Self::parse_with_origin(text, format, "mapping overrides".to_string())
    }

    fn parse_with_origin(text: &str, format: Format, origin: String) -> Result<Self, OverrideError> {
        let flows: BTreeMap<String, FlowOverrides> = match format {
            Format::Toml => toml::from_str(text).map_err(|e| {
                let (line, column) = match e.span() {
                    Some(span) => {
                        let (l, c) = line_col(text, span.start);
                        (Some(l), Some(c))
                    }
                    None => (None, None),
                };
                OverrideError::Parse {
                    origin: origin.clone(),
                    line,
                    column,
                    message: e.message().trim().to_string(),
                }
            })?,
            Format::Json => serde_json::from_str(text).map_err(|e| {
                let full = e.to_string();
                let message = match full.rfind(" at line ") {
                    Some(i) => full[..i].to_string(),
                    None => full,
                };
                let line = (e.line() > 0).then_some(e.line());
                let column = (e.column() > 0).then_some(e.column());
                OverrideError::Parse {
                    origin: origin.clone(),
                    line,
                    column,
                    message,
                }
            })?,
        };
        let o = MappingOverrides { flows, origin };
        o.validate()?;
        Ok(o)
    }

    /// Check every section against the built-in templates (by applying it to copies of them).
    pub fn validate(&self) -> Result<(), OverrideError> {
        self.check_flows()?;
        for flow in self.flows.keys() {
            for mut t in templates_for(flow) {
                self.apply(&mut t)?;
            }
        }
        Ok(())
    }

    fn check_flows(&self) -> Result<(), OverrideError> {
        match self.flows.keys().find(|f| !KNOWN_FLOWS.contains(&f.as_str())) {
            Some(flow) => Err(OverrideError::UnknownFlow {
                origin: self.origin.clone(),
                flow: flow.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Task tables must name templates of the flow; flow-level extra fields need a flow with one template.
    fn check_tasks(&self, flow: &str, fo: &FlowOverrides, siblings: &[Template]) -> Result<(), OverrideError> {
        let task_names = || siblings.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ");
        for task in fo.tasks.keys() {
            if siblings.iter().any(|t| &t.name == task) {
                continue;
            }
            let hint = match siblings.iter().find(|t| t.name.eq_ignore_ascii_case(task)) {
                Some(right) => format!(" (names are case-sensitive: did you mean {}?)", right.name),
                None => String::new(),
            };
            return Err(self.unknown(
                flow,
                task,
                format!("{flow} has no task {task}{hint}; its tasks are {}", task_names()),
            ));
        }
        if siblings.len() > 1
            && let Some(xf) = fo.fields.first()
        {
            let example = siblings.first().map_or("", |t| t.name.as_str());
            return Err(OverrideError::Invalid {
                origin: self.origin.clone(),
                section: format!("{flow}.fields"),
                field: xf.target.clone(),
                problem: format!(
                    "{flow} has several templates ({}): put extra fields under the task, e.g. [[{flow}.{example}.fields]]",
                    task_names()
                ),
            });
        }
        Ok(())
    }

    /// Apply this flow's sections (if any) to `t`: the flow-level section, then `t`'s task section; each in
    /// this order: extra fields, defaults, value maps, disabled, keep_when_blank.
    pub fn apply(&self, t: &mut Template) -> Result<(), OverrideError> {
        self.check_flows()?;
        let Some(fo) = self.flows.get(&t.flow) else {
            return Ok(());
        };
        let flow = t.flow.clone();
        let siblings = templates_for(&flow);
        self.check_tasks(&flow, fo, &siblings)?;
        let others: Vec<&Template> = siblings.iter().filter(|s| s.name != t.name).collect();
        self.apply_section(t, fo, &flow, &others)?;
        if let Some(task) = fo.tasks.get(&t.name) {
            let section = format!("{flow}.{}", t.name);
            self.apply_section(t, task, &section, &[])?;
        }
        Ok(())
    }

    /// Apply one section. `others`: the flow's other templates, for a flow-level section (a target one of them
    /// maps is theirs, not an error); empty for a task section.
    fn apply_section(
        &self,
        t: &mut Template,
        fo: &FlowOverrides,
        prefix: &str,
        others: &[&Template],
    ) -> Result<(), OverrideError> {
        let err = |section: &str, (field, problem): Problem| OverrideError::Invalid {
            origin: self.origin.clone(),
            section: format!("{prefix}{section}"),
            field,
            problem,
        };
        for (i, xf) in fo.fields.iter().enumerate() {
            let section = format!(".fields #{}", i + 1);
            if let Some(p) = extra_target_problem(t, &xf.target) {
                return Err(self.unknown(&format!("{prefix}{section}"), &xf.target, p));
            }
            apply_extra(t, xf).map_err(|p| err(&section, p))?;
        }
        let row = |t: &Template, section: &str, target: &str| -> Result<Option<usize>, OverrideError> {
            if let Some(i) = t.fields.iter().position(|f| f.target == target) {
                return Ok(Some(i));
            }
            if others.iter().any(|o| o.fields.iter().any(|f| f.target == target)) {
                return Ok(None); // another template of the flow maps it
            }
            let problem = missing_row_problem(t, others, prefix, target);
            Err(self.unknown(&format!("{prefix}{section}"), target, problem))
        };
        for (target, v) in &fo.defaults {
            if let Some(idx) = row(t, ".defaults", target)? {
                apply_default(t, idx, v).map_err(|p| err(".defaults", p))?;
            }
        }
        for (target, vm) in &fo.value_maps {
            if let Some(idx) = row(t, ".value_maps", target)? {
                apply_value_map(t, idx, vm).map_err(|p| err(".value_maps", p))?;
            }
        }
        for target in &fo.disabled {
            let key_elsewhere = others.iter().any(|o| o.target_key.contains(target));
            if t.target_key.contains(target) || key_elsewhere {
                let side = if t.writes_fno() { "F&O" } else { "Sales" };
                let p = problem(target, format!("is part of the {side} key and cannot be disabled"));
                return Err(err(".disabled", p));
            }
            if let Some(idx) = row(t, ".disabled", target)? {
                t.fields[idx].enabled = false;
            }
        }
        for target in &fo.keep_when_blank {
            let key_elsewhere = others.iter().any(|o| o.target_key.contains(target));
            if t.target_key.contains(target) || key_elsewhere {
                let side = if t.writes_fno() { "F&O" } else { "Sales" };
                let p = problem(target, format!("is part of the {side} key, which is never blank"));
                return Err(err(".keep_when_blank", p));
            }
            if let Some(idx) = row(t, ".keep_when_blank", target)? {
                apply_keep(t, idx).map_err(|p| err(".keep_when_blank", p))?;
            }
        }
        Ok(())
    }

    fn unknown(&self, section: &str, field: &str, problem: String) -> OverrideError {
        OverrideError::UnknownField {
            origin: self.origin.clone(),
            section: section.to_string(),
            field: field.to_string(),
            problem,
        }
    }
}

/// Why an extra row may not write `target`: not a property of the (known) F&O target entity, or not a Sales
/// column or lookup p2c can write.
fn extra_target_problem(t: &Template, target: &str) -> Option<String> {
    let entity = &t.target_entity;
    if t.fields.iter().any(|f| f.target == target) {
        return None;
    }
    if !t.writes_fno() {
        return sales_target_problem(entity, target);
    }
    if !fno_has_entity(entity) || fno_property(entity, target).is_some() {
        return None;
    }
    let hint = match fno_property_ignore_case(entity, target) {
        Some(right) => format!(" (names are case-sensitive: did you mean {right}?)"),
        None => String::new(),
    };
    Some(format!("{entity} has no field {target}{hint}"))
}

/// Why `target` is not something p2c can write to Sales table `entity`.
fn sales_target_problem(entity: &str, target: &str) -> Option<String> {
    if target.ends_with("@odata.bind") {
        let nav = target.trim_end_matches("@odata.bind");
        return Some(format!(
            "write a lookup as its path, e.g. {nav}.name, and p2c binds it (@odata.bind) to the record it finds"
        ));
    }
    match lookup_targets(target) {
        Some((nav, targets)) if targets.is_empty() => Some(format!(
            "p2c cannot bind the lookup {nav} of {entity}: use one of {} with a column of the related table, \
             e.g. {nav}.name",
            sales_lookup_names().collect::<Vec<_>>().join(", ")
        )),
        Some(_) => None,
        None if target
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') =>
        {
            None
        }
        None => Some(format!(
            "{target} is not a Sales column name: {entity} columns are lower-case logical names, e.g. {}",
            target.to_ascii_lowercase()
        )),
    }
}

/// Why an extra row may not read `source`: on an F&O source, not a property of the entity; on a Sales source,
/// a lookup path p2c cannot resolve.
fn source_problem(t: &Template, source: &str) -> Option<String> {
    let entity = &t.source_entity;
    if fno_has_entity(entity) {
        if fno_property(entity, source).is_some() {
            return None;
        }
        let hint = match fno_property_ignore_case(entity, source) {
            Some(right) => format!(" (names are case-sensitive: did you mean {right}?)"),
            None => String::new(),
        };
        return Some(format!("{entity} has no field {source}{hint}"));
    }
    match lookup_targets(source) {
        Some((nav, targets)) if targets.is_empty() => Some(format!(
            "p2c cannot resolve the lookup {nav}: use one of {} with a column of the related table",
            sales_lookup_names().collect::<Vec<_>>().join(", ")
        )),
        _ => None,
    }
}

/// Why `target` names no row of the template, with a hint. `others` are the flow's other templates for a
/// flow-level section (none of which maps it either).
fn missing_row_problem(t: &Template, others: &[&Template], prefix: &str, target: &str) -> String {
    let all = || std::iter::once(t).chain(others.iter().copied());
    for tt in all() {
        if let Some(right) = tt.fields.iter().find(|f| f.target.eq_ignore_ascii_case(target)) {
            return format!(
                "the {} template does not map {target} (names are case-sensitive: did you mean {}?)",
                describe(tt, others),
                right.target
            );
        }
    }
    if others.is_empty() {
        if let Some(p) = extra_target_problem(t, target) {
            return p;
        }
        return format!(
            "the {} template does not map {target}; to add it, use a [[{prefix}.fields]] entry",
            describe(t, others)
        );
    }
    let names: Vec<&str> = all().map(|tt| tt.name.as_str()).collect();
    format!(
        "no template of {} ({}) maps {target}; to add it, use a [[{}.<task>.fields]] entry",
        t.flow,
        names.join(", "),
        t.flow
    )
}

/// How messages name a template: by its flow when it is the flow's only one, else by task and flow.
fn describe(t: &Template, others: &[&Template]) -> String {
    if others.is_empty() && templates_for(&t.flow).len() <= 1 {
        t.flow.clone()
    } else {
        format!("{} ({})", t.name, t.flow)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Check a value an override would write into `target`.
fn check_value(t: &Template, target: &str, v: &Value, what: &str) -> Result<(), Problem> {
    match schema::conform(&t.target_entity, target, v) {
        Ok(_) => Ok(()),
        Err(Misfit::TooLong { len, max }) => Err(problem(
            target,
            format!("{what} is {len} characters but F&O allows {max}"),
        )),
        Err(Misfit::BadType { expected, got }) => {
            let tip = if matches!(v, Value::Number(_) | Value::Bool(_)) && expected == "text" {
                " (write it in quotes)"
            } else {
                ""
            };
            Err(problem(target, format!("{what} must be {expected}, not {got}{tip}")))
        }
    }
}

fn check_entries<'a>(
    t: &Template,
    target: &str,
    entries: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> Result<(), Problem> {
    for (k, v) in entries {
        check_value(t, target, v, &format!("the value for '{k}'"))?;
    }
    Ok(())
}

fn unmapped_of(
    target: &str,
    unmapped: Option<UnmappedMode>,
    otherwise: &Option<Value>,
) -> Result<Option<Unmapped>, Problem> {
    match (unmapped, otherwise) {
        (Some(_), Some(_)) => Err(problem(target, "give either unmapped or otherwise, not both")),
        (Some(UnmappedMode::Error), None) => Ok(Some(Unmapped::Error)),
        (Some(UnmappedMode::Keep), None) => Ok(Some(Unmapped::Keep)),
        (None, Some(v)) => Ok(Some(Unmapped::Value(v.clone()))),
        (None, None) => Ok(None),
    }
}

fn apply_extra(t: &mut Template, xf: &ExtraField) -> Result<(), Problem> {
    let target = xf.target.as_str();
    if target.trim().is_empty() {
        return Err(problem("(target)", "target is empty"));
    }
    if target == "dataAreaId" {
        return Err(problem(
            target,
            "is set by the pipeline from the run's company, not mapped",
        ));
    }
    let source = match xf.source.as_deref().map(str::trim) {
        Some("") => return Err(problem(target, "source is empty; leave it out for a constant")),
        Some(s) if s.contains(char::is_whitespace) => {
            return Err(problem(
                target,
                format!("source '{s}' contains spaces; use the column's logical name"),
            ));
        }
        Some(s) => {
            if let Some(p) = source_problem(t, s) {
                return Err(problem(target, p));
            }
            Source::Field(s.to_string())
        }
        None => Source::None,
    };
    let kind = xf.transform;
    let not_for = |key: &str, given: bool, allowed: &[TransformKind]| -> Result<(), Problem> {
        if given && !allowed.contains(&kind) {
            return Err(problem(
                target,
                format!("'{key}' does not apply to transform {}", kind_name(kind)),
            ));
        }
        Ok(())
    };
    use TransformKind as K;
    not_for(
        "default",
        xf.default.is_some(),
        &[K::Copy, K::Default, K::ValueMap, K::Country],
    )?;
    not_for("map", xf.map.is_some(), &[K::ValueMap, K::Country])?;
    not_for("case_insensitive", xf.case_insensitive.is_some(), &[K::ValueMap])?;
    not_for("unmapped", xf.unmapped.is_some(), &[K::ValueMap])?;
    not_for("otherwise", xf.otherwise.is_some(), &[K::ValueMap])?;
    not_for("length", xf.length.is_some(), &[K::Truncate])?;
    not_for("yes", xf.yes.is_some(), &[K::Bool])?;
    not_for("no", xf.no.is_some(), &[K::Bool])?;
    if source == Source::None && !matches!(kind, K::Copy | K::Default) {
        return Err(problem(target, format!("transform {} needs a source", kind_name(kind))));
    }
    if let Some(d) = &xf.default {
        check_value(t, target, d, "the default")?;
    }
    let transform = match kind {
        K::Copy | K::Default => match (&xf.default, &source) {
            (Some(d), _) => Transform::Default(d.clone()),
            (None, Source::Field(_)) if kind == K::Copy => Transform::Copy,
            (None, _) => return Err(problem(target, "needs a default (the value to write)")),
        },
        K::ValueMap => {
            let Some(map) = &xf.map else {
                return Err(problem(target, "transform value_map needs map = { ... }"));
            };
            check_entries(t, target, map.iter().filter(|(k, _)| !k.trim().is_empty()))?;
            if let Some(o) = &xf.otherwise {
                check_value(t, target, o, "otherwise")?;
            }
            let blank = map.iter().find(|(k, _)| k.trim().is_empty()).map(|(_, v)| v.clone());
            Transform::ValueMap {
                map: map
                    .iter()
                    .filter(|(k, _)| !k.trim().is_empty())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                default: xf.default.clone().or(blank),
                case_insensitive: xf.case_insensitive.unwrap_or(true),
                unmapped: unmapped_of(target, xf.unmapped, &xf.otherwise)?.unwrap_or(Unmapped::Error),
            }
        }
        K::Country => {
            let map = xf.map.clone().unwrap_or_default();
            check_entries(t, target, map.iter())?;
            let blank = map.iter().find(|(k, _)| k.trim().is_empty()).map(|(_, v)| v.clone());
            Transform::Country {
                default: xf.default.clone().or(blank),
                extra: map
                    .into_iter()
                    .filter(|(k, _)| !k.trim().is_empty())
                    .map(|(k, v)| (normalize_country(&k), v))
                    .collect(),
                builtin: true,
            }
        }
        K::Truncate => {
            let Some(n) = xf.length.or_else(|| fno_max_len(&t.target_entity, target)) else {
                return Err(problem(
                    target,
                    "F&O's length for this field is not known; give length = N",
                ));
            };
            if n == 0 {
                return Err(problem(target, "length must be at least 1"));
            }
            Transform::Truncate(n)
        }
        K::Bool => {
            let yes = xf.yes.clone().unwrap_or_else(|| "Yes".into());
            let no = xf.no.clone().unwrap_or_else(|| "No".into());
            check_value(t, target, &yes, "yes")?;
            check_value(t, target, &no, "no")?;
            Transform::Bool { yes, no }
        }
    };
    let row = FieldMap {
        source,
        target: target.to_string(),
        transform,
        enabled: true,
        keep_when_blank: false,
    };
    if xf.keep_when_blank {
        keep_check(&row)?;
    }
    let row = FieldMap {
        keep_when_blank: xf.keep_when_blank,
        ..row
    };
    match t.fields.iter().position(|f| f.target == target) {
        Some(_) if t.target_key.iter().any(|k| k == target) => {
            let side = if t.writes_fno() { "F&O" } else { "Sales" };
            Err(problem(
                target,
                format!("is part of the {side} key; its row cannot be replaced"),
            ))
        }
        Some(i) if xf.replace => {
            t.fields[i] = row;
            Ok(())
        }
        Some(i) => {
            let src = t.fields[i].source.path().unwrap_or("a constant").to_string();
            Err(problem(
                target,
                format!(
                    "is already mapped by the template (row {}, from {src}); set replace = true to change it",
                    i + 1
                ),
            ))
        }
        None if xf.replace => Err(problem(target, "replace = true, but the template has no row for it")),
        None => {
            t.fields.push(row);
            Ok(())
        }
    }
}

fn kind_name(k: TransformKind) -> &'static str {
    match k {
        TransformKind::Copy => "copy",
        TransformKind::Default => "default",
        TransformKind::ValueMap => "value_map",
        TransformKind::Country => "country",
        TransformKind::Truncate => "truncate",
        TransformKind::Bool => "bool",
    }
}

/// Marks row `idx` to keep the target's value when its source is blank.
fn apply_keep(t: &mut Template, idx: usize) -> Result<(), Problem> {
    keep_check(&t.fields[idx])?;
    t.fields[idx].keep_when_blank = true;
    Ok(())
}

/// Why `keep_when_blank` means nothing for a row: it has no source, or a blank source writes its default.
fn keep_check(fm: &FieldMap) -> Result<(), Problem> {
    let target = fm.target.as_str();
    if fm.source == Source::None {
        return Err(problem(
            target,
            "has no source (it writes a constant), so it is never blank; keep_when_blank does not apply",
        ));
    }
    let blank_value = match &fm.transform {
        Transform::Default(d) => Some(d),
        Transform::ValueMap { default, map, .. } => default.as_ref().or_else(|| map.get("")),
        Transform::Country { default, .. } => default.as_ref(),
        _ => None,
    };
    match blank_value {
        Some(v) => Err(problem(
            target,
            format!(
                "writes {} when its source is blank (its default), so keep_when_blank would never apply; remove \
                 the default to keep the target's value instead",
                schema::describe(v)
            ),
        )),
        None => Ok(()),
    }
}

fn apply_default(t: &mut Template, idx: usize, v: &Value) -> Result<(), Problem> {
    let target = t.fields[idx].target.clone();
    check_value(t, &target, v, "the default")?;
    let fm = &mut t.fields[idx];
    match &mut fm.transform {
        Transform::Copy | Transform::Default(_) => fm.transform = Transform::Default(v.clone()),
        Transform::ValueMap { default, .. } | Transform::Country { default, .. } => *default = Some(v.clone()),
        other => {
            let kind = other.kind();
            return Err(problem(
                &target,
                format!("uses transform {kind}, which takes no default"),
            ));
        }
    }
    Ok(())
}

fn apply_value_map(t: &mut Template, idx: usize, vm: &ValueMapOverride) -> Result<(), Problem> {
    let target = t.fields[idx].target.clone();
    let (blank, entries): (Vec<_>, Vec<_>) = vm.entries.iter().partition(|(k, _)| k.trim().is_empty());
    let blank = blank.first().map(|(_, v)| (*v).clone());
    check_entries(t, &target, entries.iter().copied())?;
    if let Some(b) = &blank {
        check_value(t, &target, b, "the blank value")?;
    }
    if let Some(o) = &vm.otherwise {
        check_value(t, &target, o, "otherwise")?;
    }
    let unmapped = unmapped_of(&target, vm.unmapped, &vm.otherwise)?;
    let replace = vm.mode == MapMode::Replace;
    let fm = &mut t.fields[idx];
    if fm.source == Source::None {
        return Err(problem(&target, "has no source to map; set its value under defaults"));
    }
    match &mut fm.transform {
        Transform::ValueMap {
            map,
            default,
            case_insensitive,
            unmapped: um,
        } => {
            if replace {
                map.clear();
            }
            map.extend(entries.into_iter().map(|(k, v)| (k.clone(), v.clone())));
            if blank.is_some() {
                *default = blank;
            }
            if let Some(ci) = vm.case_insensitive {
                *case_insensitive = ci;
            }
            if let Some(u) = unmapped {
                *um = u;
            }
        }
        Transform::Country {
            default,
            extra,
            builtin,
        } => {
            if unmapped.is_some() || vm.case_insensitive == Some(false) {
                return Err(problem(
                    &target,
                    "a country field takes only entries and mode (it always ignores case and refuses unknown values)",
                ));
            }
            if replace {
                extra.clear();
                *builtin = false;
            }
            extra.extend(entries.into_iter().map(|(k, v)| (normalize_country(k), v.clone())));
            if blank.is_some() {
                *default = blank;
            }
        }
        Transform::Copy | Transform::Default(_) => {
            // A plain copy gains a map: "extend" renames the listed values and passes the rest through.
            let default = match &fm.transform {
                Transform::Default(d) => Some(d.clone()),
                _ => None,
            };
            let fallback = if replace { Unmapped::Error } else { Unmapped::Keep };
            fm.transform = Transform::ValueMap {
                map: entries.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                default: blank.or(default),
                case_insensitive: vm.case_insensitive.unwrap_or(true),
                unmapped: unmapped.unwrap_or(fallback),
            };
        }
        other => {
            let kind = other.kind();
            return Err(problem(
                &target,
                format!("uses transform {kind}, which takes no value map"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc\nd", 0), (1, 1));
        assert_eq!(line_col("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_col("a\nbc\nd", 99), (3, 2));
    }
}
