//! Record ownership and the business unit hierarchy, as Dataverse enforces them (spec/templates.md 3 and 4).
//!
//! * A user- or team-owned row has an owner, `ownerid`: a user (`/systemusers(<id>)`) or a team
//!   (`/teams(<id>)`), bound through the one navigation property `ownerid` (typed `mscrm.principal`; there is no
//!   `ownerid_team`). A create without one is owned by the caller, the application user the token belongs to.
//! * `owningbusinessunit` follows the owner: the owner's business unit on create, and again whenever the owner
//!   changes (AlwaysMoveRecordToOwnerBusinessUnit = true, Dataverse's default). `_owninguser_value` /
//!   `_owningteam_value` say which kind of principal owns the row; the platform sets them.
//! * `owningbusinessunit` can be set only where the organization has "Record ownership across business units"
//!   ([`crate::SandboxConfig::record_ownership_across_business_units`], off by default as in a new organization);
//!   there a bound unit wins over the owner's. Elsewhere binding it is refused. Microsoft's admin docs say the
//!   column "can be changed only when Record ownership across business units is on" (Power Platform admin
//!   guide, "Security concepts in Microsoft Dataverse", section "Owning business unit") without showing the
//!   response; the sandbox answers 400 with the platform's code for an argument it does not accept,
//!   InvalidArgument `0x80040203` "Invalid argument." (Dataverse "Web service error codes" list).
//! * `owninguser` and `owningteam` are never settable: binding them, or clearing the owner, is refused the same
//!   way.
//! * Document lines (`quotedetail`, `salesorderdetail`, `invoicedetail`) are owned like their header: they take
//!   its owner and unit on create, follow it when the header is assigned (cascade assign, the default), and
//!   cannot be assigned on their own (binding `ownerid` on a line is refused the same way).
//! * Every business unit has exactly one default team, created with it ("Dataverse automatically creates a
//!   default team for every business unit", same admin page): named like the unit, `isdefault` true (read-only:
//!   ignored in a body, like the other system columns), renamed with the unit. A unit created through the Web API
//!   needs a parent (400 `0x80041d23` ParentBusinessDoesNotExist "The parent business Id is invalid.") and cannot
//!   be moved under itself or a unit below it (400 `0x80041d20` "Loop exists in the business hierarchy."); both
//!   codes and texts are from the same error list.
//!
//! Not emulated: security roles and privileges (any principal may own any row), access teams owning nothing
//! (every team can own rows here), deleting default teams and business units.

use serde_json::{Value, json};

use crate::dataverse::err;
use crate::dv_schema::{Ownership, Table};
use crate::http::{Resp, now_iso};
use crate::sales;
use crate::store::{DvStore, Row};

const OWNER: &str = "_ownerid_value";
/// The owner's entity set, kept as the hidden key (`store::HIDDEN`) of the polymorphic lookup `ownerid`.
const OWNER_KIND: &str = "@sb.ownerid";
const UNIT: &str = "_owningbusinessunit_value";
const OWNING_USER: &str = "_owninguser_value";
const OWNING_TEAM: &str = "_owningteam_value";
const PARENT_UNIT: &str = "_parentbusinessunitid_value";

/// The columns that say who owns a row (copied together from a header to its lines).
const OWNER_COLS: [&str; 5] = [OWNER, OWNER_KIND, UNIT, OWNING_USER, OWNING_TEAM];

fn invalid_argument() -> Resp {
    err(400, "0x80040203", "Invalid argument.")
}

fn text<'a>(row: &'a Row, col: &str) -> Option<&'a str> {
    row.get(col).and_then(Value::as_str)
}

/// The Web API rules for the values of a create (`existing` = None) or an update of a row of `t`.
pub(crate) fn check_write(store: &DvStore, t: &Table, existing: Option<&Row>, vals: &Row) -> Result<(), Resp> {
    if t.ownership != Ownership::None {
        let sets = |c: &str| vals.contains_key(c);
        let unit_settable = store.ownership_across_business_units && t.ownership == Ownership::User;
        if sets(OWNING_USER)
            || sets(OWNING_TEAM)
            || (sets(UNIT) && !unit_settable)
            || (sets(OWNER) && t.ownership == Ownership::Header)
            || vals.get(OWNER).is_some_and(Value::is_null)
            || vals.get(UNIT).is_some_and(Value::is_null)
        {
            return Err(invalid_argument());
        }
    }
    if t.set == "businessunits" {
        check_parent(store, existing, vals)?;
    }
    Ok(())
}

/// A business unit has a parent, and its parent is not itself or a unit below it.
fn check_parent(store: &DvStore, existing: Option<&Row>, vals: &Row) -> Result<(), Resp> {
    let bad_parent = || err(400, "0x80041d23", "The parent business Id is invalid.");
    let Some(ex) = existing else {
        return match text(vals, PARENT_UNIT) {
            Some(_) => Ok(()),
            None => Err(bad_parent()),
        };
    };
    let Some(parent) = vals.get(PARENT_UNIT) else {
        return Ok(());
    };
    let Some(mut up) = parent.as_str().map(str::to_string) else {
        return Err(bad_parent());
    };
    let me = text(ex, "businessunitid").unwrap_or_default().to_string();
    // Walk up from the new parent: reaching this unit means it would sit below itself.
    for _ in 0..10_000 {
        if up.eq_ignore_ascii_case(&me) {
            return Err(err(400, "0x80041d20", "Loop exists in the business hierarchy."));
        }
        match store.get("businessunits", &up).and_then(|r| text(r, PARENT_UNIT)) {
            Some(p) => up = p.to_string(),
            None => break,
        }
    }
    Ok(())
}

/// The entity set of a principal id (`systemusers` or `teams`), from the row's hidden kind or the store.
fn principal_set(store: &DvStore, row: &Row, id: &str) -> Option<&'static str> {
    match text(row, OWNER_KIND) {
        Some("teams") => Some("teams"),
        Some("systemusers") => Some("systemusers"),
        _ => ["teams", "systemusers"]
            .into_iter()
            .find(|s| store.get(s, id).is_some()),
    }
}

/// The business unit of a user or team.
fn unit_of(store: &DvStore, set: &str, id: &str) -> Option<String> {
    store
        .get(set, id)
        .and_then(|r| text(r, "_businessunitid_value"))
        .map(str::to_string)
}

/// `_owninguser_value` / `_owningteam_value` from the owner; returns the owner's business unit.
fn set_owning_principal(store: &DvStore, row: &mut Row) -> Option<String> {
    let id = text(row, OWNER)?.to_string();
    let set = principal_set(store, row, &id)?;
    row.insert(OWNER_KIND.into(), json!(set));
    let (user, team) = if set == "teams" {
        (Value::Null, json!(id))
    } else {
        (json!(id), Value::Null)
    };
    row.insert(OWNING_USER.into(), user);
    row.insert(OWNING_TEAM.into(), team);
    unit_of(store, set, &id)
}

/// The owner columns of a new row: its header's (lines), or its owner (the caller when none is given) and the
/// owner's business unit unless a unit was set.
pub(crate) fn on_create(store: &DvStore, t: &Table, row: &mut Row) {
    if t.set == "teams" {
        // An ordinary owner team in the caller's unit unless told otherwise; only the platform makes defaults.
        row.entry("isdefault").or_insert(json!(false));
        row.entry("teamtype").or_insert(json!(0));
        if text(row, "_businessunitid_value").is_none() {
            row.insert("_businessunitid_value".into(), json!(store.root_bu));
        }
        return;
    }
    if t.ownership == Ownership::Header
        && let Some(doc) = sales::doc_of_line(t.set)
        && let Some(header) = text(row, &format!("_{}_value", doc.lookup)).and_then(|h| store.get(doc.header, h))
    {
        for c in OWNER_COLS {
            row.insert(c.to_string(), header.get(c).cloned().unwrap_or(Value::Null));
        }
        return;
    }
    if t.ownership == Ownership::None {
        return;
    }
    if text(row, OWNER).is_none() && !store.caller.is_empty() {
        row.insert(OWNER.into(), json!(store.caller));
        row.insert(OWNER_KIND.into(), json!("systemusers"));
    }
    let owners_unit = set_owning_principal(store, row);
    if text(row, UNIT).is_none() {
        let unit = owners_unit.unwrap_or_else(|| store.root_bu.clone());
        row.insert(UNIT.into(), json!(unit));
    }
}

/// An update that assigns the row (`patch` has an owner): the owning principal, and the unit follows the new
/// owner unless the same update sets it.
pub(crate) fn on_update(store: &DvStore, t: &Table, row: &mut Row, patch: &Row) {
    if t.ownership != Ownership::User || !patch.contains_key(OWNER) {
        return;
    }
    if !patch.contains_key(OWNER_KIND) {
        row.remove(OWNER_KIND);
    }
    let owners_unit = set_owning_principal(store, row);
    if !patch.contains_key(UNIT)
        && let Some(unit) = owners_unit
    {
        row.insert(UNIT.into(), json!(unit));
    }
}

/// The trusted Rust API may give only a business unit: the row is then owned by that unit's default team, so
/// owner and unit agree as they always do in Dataverse.
pub(crate) fn trusted_owner(store: &DvStore, t: &Table, vals: &mut Row) {
    if t.ownership != Ownership::User || vals.contains_key(OWNER) {
        return;
    }
    if let Some(team) = text(vals, UNIT).and_then(|u| default_team(store, u)) {
        vals.insert(OWNER.into(), json!(team));
        vals.insert(OWNER_KIND.into(), json!("teams"));
    }
}

/// The id of the default team of business unit `unit`.
pub(crate) fn default_team(store: &DvStore, unit: &str) -> Option<String> {
    store.table("teams")?.rows().iter().find_map(|(id, r)| {
        let hit = r.get("isdefault").and_then(Value::as_bool) == Some(true)
            && text(r, "_businessunitid_value").is_some_and(|u| u.eq_ignore_ascii_case(unit));
        hit.then(|| id.clone())
    })
}

/// Store `row` as a new version of `set`/`id`.
fn put_new_version(store: &mut DvStore, set: &str, id: &str, mut row: Row) {
    row.insert("modifiedon".into(), Value::String(now_iso()));
    let v = store.next_version();
    row.insert("versionnumber".into(), json!(v));
    store.put(set, id, row);
}

/// After a row was created: a new business unit gets its default team.
pub(crate) fn after_insert(store: &mut DvStore, t: &Table, row: &Row) {
    if t.set != "businessunits" {
        return;
    }
    let Some(unit) = text(row, "businessunitid").map(str::to_string) else {
        return;
    };
    if default_team(store, &unit).is_some() {
        return;
    }
    let id = uuid::Uuid::new_v4().to_string();
    let mut team = Row::new();
    team.insert("teamid".into(), json!(id));
    team.insert("name".into(), row.get("name").cloned().unwrap_or(Value::Null));
    team.insert("isdefault".into(), json!(true));
    team.insert("teamtype".into(), json!(0));
    team.insert("_businessunitid_value".into(), json!(unit));
    team.insert("createdon".into(), Value::String(now_iso()));
    put_new_version(store, "teams", &id, team);
}

/// After a row was updated: a header's lines follow its owner (cascade assign); a renamed business unit renames
/// its default team.
pub(crate) fn after_update(store: &mut DvStore, t: &Table, before: &Row, after: &Row) {
    let moved = OWNER_COLS.iter().any(|c| before.get(*c) != after.get(*c));
    if moved && let Some(doc) = sales::doc_of_header(t.set) {
        let hid = text(after, &t.pk).unwrap_or_default().to_string();
        let col = format!("_{}_value", doc.lookup);
        let lines: Vec<(String, Row)> = store
            .table(doc.line)
            .map(|tb| {
                tb.rows()
                    .iter()
                    .filter(|(_, r)| text(r, &col).is_some_and(|h| h.eq_ignore_ascii_case(&hid)))
                    .map(|(id, r)| (id.clone(), r.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (id, mut line) in lines {
            for c in OWNER_COLS {
                line.insert(c.to_string(), after.get(c).cloned().unwrap_or(Value::Null));
            }
            put_new_version(store, doc.line, &id, line);
        }
    }
    if t.set == "businessunits" && before.get("name") != after.get("name") {
        let unit = text(after, "businessunitid").unwrap_or_default().to_string();
        if let Some(team_id) = default_team(store, &unit)
            && let Some(mut team) = store.get("teams", &team_id).cloned()
        {
            team.insert("name".into(), after.get("name").cloned().unwrap_or(Value::Null));
            put_new_version(store, "teams", &team_id, team);
        }
    }
}
