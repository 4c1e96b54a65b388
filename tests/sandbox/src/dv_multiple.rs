//! Bulk operation messages: the collection-bound actions `CreateMultiple`, `UpdateMultiple` and `UpsertMultiple`
//! (`POST /api/data/v9.2/<set>/Microsoft.Dynamics.CRM.CreateMultiple` with `{"Targets": [...]}`).
//!
//! Source: "Use bulk operation messages" (repo `MicrosoftDocs/powerapps-docs`,
//! `powerapps-docs/developer/data-platform/bulk-operations.md`) and the Web API action reference pages
//! (learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/{createmultiple,updatemultiple,
//! upsertmultiple}):
//! * every item of `Targets` must carry `@odata.type` (`Microsoft.Dynamics.CRM.<table>`);
//! * `CreateMultiple` answers `200` with `{"@odata.context": "...$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse",
//!   "Ids": [...]}`; `UpdateMultiple` and `UpsertMultiple` answer `204 No Content` (the reference page says the
//!   `UpsertMultipleResponse` complex type is not returned);
//! * on a standard table any failing item rolls the whole request back ("On Error behavior with standard tables"),
//!   and the request fails with that item's error.
//!
//! Each item goes through the same validation, defaults and system pricing as a single create or update. An
//! `UpdateMultiple` item names its row by primary key; an `UpsertMultiple` item by primary key or by `@odata.id`
//! (`contacts(msdynce_contactnumber='CON-1')`, an alternate key, as in the reference page's example).
//! Inference where the docs are silent: a missing `@odata.type` or `Targets` is 400 `0x80048d19` (the payload
//! error), an empty `Targets` is 400 as well.

use serde_json::{Map, Value, json};

use crate::State;
use crate::dataverse::{
    KeySpec, ROOT, apply_body, err, find_by_key, insert_row, not_found_id, parse_key, parse_target, payload_err,
    update_row,
};
use crate::dv_schema::{ColType, Table};
use crate::http::{Req, Resp, is_guid};
use crate::sales;
use crate::store::DvStore;

pub(crate) const ACTIONS: &[&str] = &[
    "Microsoft.Dynamics.CRM.CreateMultiple",
    "Microsoft.Dynamics.CRM.UpdateMultiple",
    "Microsoft.Dynamics.CRM.UpsertMultiple",
];

fn targets(t: &Table, req: &Req) -> Result<Vec<Map<String, Value>>, Resp> {
    let body: Value =
        serde_json::from_slice(&req.body).map_err(|e| payload_err(t.set, &format!("Invalid JSON. {e}")))?;
    let Some(items) = body.get("Targets").and_then(Value::as_array) else {
        return Err(payload_err(
            t.set,
            "The parameter 'Targets' is missing: send {\"Targets\": [...]}.",
        ));
    };
    if items.is_empty() {
        return Err(err(
            400,
            "0x80040203",
            "The collection 'Targets' must contain at least one record.",
        ));
    }
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let Some(m) = it.as_object() else {
            return Err(payload_err(t.set, &format!("Item {i} of 'Targets' is not an entity.")));
        };
        match m.get("@odata.type").and_then(Value::as_str) {
            Some(ty) if ty.trim_start_matches('#') == t.type_name() => {}
            Some(ty) => {
                return Err(payload_err(
                    t.set,
                    &format!("The type '{ty}' of item {i} of 'Targets' is not '{}'.", t.type_name()),
                ));
            }
            None => {
                return Err(payload_err(
                    t.set,
                    &format!(
                        "Item {i} of 'Targets' has no '@odata.type' annotation: every item must say its type \
                         ('{}').",
                        t.type_name()
                    ),
                ));
            }
        }
        out.push(m.clone());
    }
    Ok(out)
}

/// Run the action against the locked store; atomic unless a `$batch` change set already holds a transaction.
pub(crate) fn handle(state: &State, store: &mut DvStore, t: &'static Table, req: &Req, action: &str) -> Resp {
    let items = match targets(t, req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let own_tx = !store.in_transaction();
    if own_tx {
        store.begin();
    }
    let res = match action {
        "Microsoft.Dynamics.CRM.CreateMultiple" => create_multiple(store, t, items).map(|ids| {
            Resp::odata_json(
                200,
                &json!({
                    "@odata.context": format!("{}{ROOT}/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse", state.sales_url),
                    "Ids": ids,
                }),
            )
        }),
        "Microsoft.Dynamics.CRM.UpdateMultiple" => update_multiple(store, t, items).map(|()| no_content()),
        _ => upsert_multiple(store, t, items).map(|()| no_content()),
    };
    match res {
        Ok(r) => {
            if own_tx {
                store.commit();
            }
            r
        }
        Err(r) => {
            if own_tx {
                store.rollback();
            }
            r
        }
    }
}

fn no_content() -> Resp {
    Resp::new(204).header("OData-Version", "4.0")
}

fn create_one(store: &mut DvStore, t: &'static Table, item: &Map<String, Value>) -> Result<String, Resp> {
    let vals = apply_body(store, t, item, true)?;
    sales::check_write(store, t, None, &vals)?;
    insert_row(store, t, None, vals)
}

fn create_multiple(
    store: &mut DvStore,
    t: &'static Table,
    items: Vec<Map<String, Value>>,
) -> Result<Vec<String>, Resp> {
    items.iter().map(|it| create_one(store, t, it)).collect()
}

fn primary_key(t: &Table, item: &Map<String, Value>) -> Option<String> {
    item.get(&t.pk)
        .and_then(Value::as_str)
        .filter(|s| is_guid(s))
        .map(str::to_ascii_lowercase)
}

fn update_multiple(store: &mut DvStore, t: &'static Table, items: Vec<Map<String, Value>>) -> Result<(), Resp> {
    for it in &items {
        let Some(id) = primary_key(t, it) else {
            return Err(payload_err(
                t.set,
                &format!(
                    "An item of 'Targets' has no primary key '{}': UpdateMultiple needs it.",
                    t.pk
                ),
            ));
        };
        if store.get(t.set, &id).is_none() {
            return Err(not_found_id(t, &id));
        }
        let vals = apply_body(store, t, it, false)?;
        update_row(store, t, &id, vals)?;
    }
    Ok(())
}

fn upsert_multiple(store: &mut DvStore, t: &'static Table, items: Vec<Map<String, Value>>) -> Result<(), Resp> {
    for it in &items {
        let spec = match (it.get("@odata.id").and_then(Value::as_str), primary_key(t, it)) {
            (Some(r), _) => {
                let path = r
                    .rsplit_once(&format!("{ROOT}/"))
                    .map_or(r, |(_, p)| p)
                    .trim_start_matches('/');
                let target = parse_target(path).map_err(|e| err(400, "0x80060888", e))?;
                let (Some(key), true, true) = (target.key, target.set == t.set, target.sub.is_empty()) else {
                    return Err(payload_err(
                        t.set,
                        &format!("'@odata.id' {r} does not name a record of '{}'.", t.set),
                    ));
                };
                parse_key(t, key)?
            }
            (None, Some(id)) => KeySpec::Id(id),
            (None, None) => {
                return Err(payload_err(
                    t.set,
                    &format!("An item of 'Targets' names no record: give '{}' or '@odata.id'.", t.pk),
                ));
            }
        };
        let mut body = it.clone();
        body.remove("@odata.id");
        match find_by_key(store, t, &spec) {
            Some(id) => {
                let vals = apply_body(store, t, &body, false)?;
                update_row(store, t, &id, vals)?;
            }
            None => {
                let mut vals = apply_body(store, t, &body, true)?;
                sales::check_write(store, t, None, &vals)?;
                let id = match &spec {
                    KeySpec::Id(i) => Some(i.clone()),
                    KeySpec::Alt(pairs) => {
                        // Key data from the reference fills the key columns the body lacks (as a single upsert).
                        for (k, v) in pairs {
                            if !vals.contains_key(k) {
                                let val = match t.col(k) {
                                    Some(ColType::Int | ColType::BigInt | ColType::Choice) => {
                                        v.parse::<i64>().map(Value::from).unwrap_or(Value::String(v.clone()))
                                    }
                                    _ => Value::String(v.clone()),
                                };
                                vals.insert(k.clone(), val);
                            }
                        }
                        None
                    }
                };
                insert_row(store, t, id, vals)?;
            }
        }
    }
    Ok(())
}
