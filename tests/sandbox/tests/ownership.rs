//! Dataverse wire behaviour of record ownership and the business unit hierarchy (see `src/owner.rs`): default
//! teams, parents, owners, and `owningbusinessunit` being read-only unless the organization allows record
//! ownership across business units.

mod common;

use common::*;
use p2c_sandbox::{Sandbox, SandboxConfig};
use reqwest::Response;
use serde_json::{Value, json};

fn created_id(r: &Response) -> String {
    let e = r.headers()["odata-entityid"].to_str().unwrap();
    e.rsplit('(').next().unwrap().trim_end_matches(')').to_string()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn post_id(api: &Api, set: &str, body: &Value) -> String {
    let r = api.post(set, body).send().await.unwrap();
    assert_eq!(r.status(), 204, "POST {set} {body}");
    created_id(&r)
}

/// (status, error code, error message) of a Dataverse error response.
async fn dv_error(r: Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v = json(r).await;
    let s = |k: &str| v["error"][k].as_str().unwrap_or_default().to_string();
    (status, s("code"), s("message"))
}

async fn get(api: &Api, path: &str) -> Value {
    let r = api.get(path).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    json(r).await
}

fn invalid_argument() -> (u16, String, String) {
    (400, "0x80040203".into(), "Invalid argument.".into())
}

async fn default_teams_of(api: &Api, unit: &str) -> Vec<Value> {
    let filter = urlencode(&format!("_businessunitid_value eq {unit} and isdefault eq true"));
    let v = get(
        api,
        &format!("teams?$select=name,isdefault,_businessunitid_value&$filter={filter}"),
    )
    .await;
    v["value"].as_array().unwrap().clone()
}

/// A business unit `name` under `parent`, created through the Web API.
async fn new_unit(api: &Api, name: &str, parent: &str) -> String {
    let body = json!({"name": name, "parentbusinessunitid@odata.bind": format!("/businessunits({parent})")});
    post_id(api, "businessunits", &body).await
}

fn root(sb: &Sandbox) -> String {
    sb.business_unit_id("contoso").unwrap()
}

#[tokio::test]
async fn each_business_unit_gets_one_default_team_named_like_it() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;
    let root = root(&sb);
    let teams = default_teams_of(&api, &root).await;
    assert_eq!(teams.len(), 1, "the root unit has its default team from the start");
    assert_eq!(teams[0]["name"], "contoso");

    let east = new_unit(&api, "East", &root).await;
    let teams = default_teams_of(&api, &east).await;
    assert_eq!(teams.len(), 1, "created with the unit: {teams:?}");
    assert_eq!(teams[0]["name"], "East");
    assert_eq!(teams[0]["isdefault"], true);
    assert_eq!(sb.default_team_id(&east).as_deref(), teams[0]["teamid"].as_str());

    // isdefault is the platform's: a body that sets it makes an ordinary team.
    let body = json!({"name": "East sales", "isdefault": true,
                      "businessunitid@odata.bind": format!("/businessunits({east})")});
    let team = post_id(&api, "teams", &body).await;
    assert_eq!(
        get(&api, &format!("teams({team})?$select=isdefault")).await["isdefault"],
        false
    );
    assert_eq!(default_teams_of(&api, &east).await.len(), 1);

    // The default team is renamed with its unit.
    let r = api
        .patch(&format!("businessunits({east})"), &json!({"name": "East Coast"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(default_teams_of(&api, &east).await[0]["name"], "East Coast");
}

#[tokio::test]
async fn a_business_unit_needs_a_parent_and_cannot_sit_below_itself() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;
    let root = root(&sb);

    let r = api
        .post("businessunits", &json!({"name": "Orphan"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        dv_error(r).await,
        (400, "0x80041d23".into(), "The parent business Id is invalid.".into())
    );

    let a = new_unit(&api, "A", &root).await;
    let b = new_unit(&api, "B", &a).await;
    let loop_error = (
        400,
        "0x80041d20".into(),
        "Loop exists in the business hierarchy.".into(),
    );
    for parent in [&b, &a] {
        let body = json!({"parentbusinessunitid@odata.bind": format!("/businessunits({parent})")});
        let r = api.patch(&format!("businessunits({a})"), &body).send().await.unwrap();
        assert_eq!(dv_error(r).await, loop_error, "A under {parent}");
    }
    let v = get(&api, &format!("businessunits({b})?$select=_parentbusinessunitid_value")).await;
    assert_eq!(v["_parentbusinessunitid_value"], json!(a));

    // Moving a unit elsewhere in the tree is fine.
    let body = json!({"parentbusinessunitid@odata.bind": format!("/businessunits({root})")});
    let r = api.patch(&format!("businessunits({b})"), &body).send().await.unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn a_record_is_owned_by_the_caller_or_by_the_user_or_team_bound_to_ownerid() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    let api = Api::sales(&sb).await;
    let (root, usmf) = (root(&sb), sb.business_unit_id("usmf").unwrap());
    let team = sb.default_team_id(&usmf).unwrap();
    let caller = sb.caller_user_id();
    let cols = "$select=_ownerid_value,_owninguser_value,_owningteam_value,_owningbusinessunit_value";
    let annotated = |path: String| {
        api.get(&path)
            .header("Prefer", "odata.include-annotations=\"*\"")
            .send()
    };

    // No owner given: the application user the token belongs to, in its business unit.
    let mine = post_id(&api, "accounts", &json!({"name": "Caller Owned"})).await;
    let v = json(annotated(format!("accounts({mine})?{cols}")).await.unwrap()).await;
    assert_eq!(v["_ownerid_value"], json!(caller));
    assert_eq!(
        v["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
        "systemuser"
    );
    assert_eq!(v["_owninguser_value"], json!(caller));
    assert_eq!(v["_owningteam_value"], Value::Null);
    assert_eq!(v["_owningbusinessunit_value"], json!(root));

    // A team bound to ownerid owns it, and its business unit follows.
    let body = json!({"name": "Team Owned", "ownerid@odata.bind": format!("/teams({team})")});
    let theirs = post_id(&api, "accounts", &body).await;
    let v = json(annotated(format!("accounts({theirs})?{cols}")).await.unwrap()).await;
    assert_eq!(v["_ownerid_value"], json!(team));
    assert_eq!(v["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"], "team");
    assert_eq!(
        v["_ownerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"],
        "ownerid"
    );
    assert_eq!(v["_owningteam_value"], json!(team));
    assert_eq!(v["_owninguser_value"], Value::Null);
    assert_eq!(v["_owningbusinessunit_value"], json!(usmf));

    // One navigation property for both kinds of owner.
    let r = api.get("$metadata").send().await.unwrap();
    let meta = r.text().await.unwrap();
    assert!(meta.contains("<NavigationProperty Name=\"ownerid\" Type=\"mscrm.principal\"/>"));
    let r = api
        .post(
            "accounts",
            &json!({"name": "x", "ownerid_team@odata.bind": format!("/teams({team})")}),
        )
        .send()
        .await
        .unwrap();
    let (status, code, msg) = dv_error(r).await;
    assert_eq!((status, code.as_str()), (400, "0x80048d19"));
    assert!(msg.contains("An undeclared property 'ownerid_team'"), "{msg}");

    // Only users and teams own records; a missing team is not found.
    let r = api
        .post(
            "accounts",
            &json!({"name": "x", "ownerid@odata.bind": format!("/accounts({mine})")}),
        )
        .send()
        .await
        .unwrap();
    let (status, code, msg) = dv_error(r).await;
    assert_eq!((status, code.as_str()), (400, "0x80048d19"));
    assert!(
        msg.contains("The entity set 'accounts' is not valid for the navigation property 'ownerid'"),
        "{msg}"
    );
    let missing = "6f1c1a3e-0000-4000-8000-00000000abcd";
    let r = api
        .post(
            "accounts",
            &json!({"name": "x", "ownerid@odata.bind": format!("/teams({missing})")}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        dv_error(r).await,
        (
            404,
            "0x80040217".into(),
            format!("team With Id = {missing} Does Not Exist")
        )
    );
}

#[tokio::test]
async fn assigning_a_document_moves_its_business_unit_and_its_lines() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    let api = Api::sales(&sb).await;
    let (root, usmf) = (root(&sb), sb.business_unit_id("usmf").unwrap());
    let team = sb.default_team_id(&usmf).unwrap();
    let body = json!({"name": "Assigned", "ownerid@odata.bind": format!("/teams({team})")});
    let order = post_id(&api, "salesorders", &body).await;
    let line = json!({"salesorderid@odata.bind": format!("/salesorders({order})"), "isproductoverridden": true,
                      "productdescription": "Write-in", "quantity": 1, "priceperunit": 5});
    let line = post_id(&api, "salesorderdetails", &line).await;
    let owner_of = |set: &str, id: &str| {
        let r = sb.sales_get(set, id).unwrap();
        (r["_ownerid_value"].clone(), r["_owningbusinessunit_value"].clone())
    };
    assert_eq!(
        owner_of("salesorderdetails", &line),
        (json!(team), json!(usmf)),
        "a line is its header's"
    );

    // Assigned to a team of a child unit: the order and its lines move there.
    let east = new_unit(&api, "East", &usmf).await;
    let east_team = sb.default_team_id(&east).unwrap();
    let assign = |owner: String| json!({"ownerid@odata.bind": owner});
    let r = api
        .patch(
            &format!("salesorders({order})"),
            &assign(format!("/teams({east_team})")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(owner_of("salesorders", &order), (json!(east_team), json!(east)));
    assert_eq!(owner_of("salesorderdetails", &line), (json!(east_team), json!(east)));

    // Assigned to a user: the user's unit.
    let caller = sb.caller_user_id();
    let r = api
        .patch(
            &format!("salesorders({order})"),
            &assign(format!("/systemusers({caller})")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let o = sb.sales_get("salesorders", &order).unwrap();
    assert_eq!(
        (o["_owninguser_value"].clone(), o["_owningteam_value"].clone()),
        (json!(caller), Value::Null)
    );
    assert_eq!(owner_of("salesorderdetails", &line), (json!(caller), json!(root)));

    // A line is never assigned on its own, and no record is left without an owner.
    let r = api
        .patch(
            &format!("salesorderdetails({line})"),
            &assign(format!("/teams({team})")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(dv_error(r).await, invalid_argument());
    let r = api
        .delete(&format!("salesorders({order})/ownerid/$ref"))
        .send()
        .await
        .unwrap();
    assert_eq!(dv_error(r).await, invalid_argument());
    assert_eq!(owner_of("salesorders", &order), (json!(caller), json!(root)));
}

#[tokio::test]
async fn owning_business_unit_is_read_only_without_record_ownership_across_business_units() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    let api = Api::sales(&sb).await;
    let usmf = sb.business_unit_id("usmf").unwrap();
    let team = sb.default_team_id(&usmf).unwrap();
    let caller = sb.caller_user_id();
    let unit = json!(format!("/businessunits({usmf})"));

    let r = api
        .post(
            "salesorders",
            &json!({"name": "Bound unit", "owningbusinessunit@odata.bind": unit}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(dv_error(r).await, invalid_argument());
    assert!(
        sb.sales_rows("salesorders").iter().all(|o| o["name"] != "Bound unit"),
        "nothing created"
    );

    let order = post_id(&api, "salesorders", &json!({"name": "Owned"})).await;
    for (nav, target) in [
        ("owningbusinessunit", unit.clone()),
        ("owningteam", json!(format!("/teams({team})"))),
        ("owninguser", json!(format!("/systemusers({caller})"))),
    ] {
        let body = json!({format!("{nav}@odata.bind"): target});
        let r = api.patch(&format!("salesorders({order})"), &body).send().await.unwrap();
        assert_eq!(dv_error(r).await, invalid_argument(), "{nav}");
    }
    let o = sb.sales_get("salesorders", &order).unwrap();
    assert_eq!(o["_owningbusinessunit_value"], json!(root(&sb)), "unchanged");
}

#[tokio::test]
async fn owning_business_unit_can_be_set_with_record_ownership_across_business_units() {
    let sb = sandbox_with(SandboxConfig {
        record_ownership_across_business_units: true,
        ..SandboxConfig::default()
    })
    .await;
    sb.seed_demo(1);
    let api = Api::sales(&sb).await;
    let usmf = sb.business_unit_id("usmf").unwrap();
    let caller = sb.caller_user_id();

    // The bound unit wins over the owner's.
    let body = json!({"name": "Cross", "owningbusinessunit@odata.bind": format!("/businessunits({usmf})")});
    let order = post_id(&api, "salesorders", &body).await;
    let o = sb.sales_get("salesorders", &order).unwrap();
    assert_eq!(o["_ownerid_value"], json!(caller));
    assert_eq!(o["_owningbusinessunit_value"], json!(usmf));

    // Assigning moves the record to the new owner's unit (AlwaysMoveRecordToOwnerBusinessUnit).
    let east = new_unit(&api, "East", &usmf).await;
    let east_team = sb.default_team_id(&east).unwrap();
    let body = json!({"ownerid@odata.bind": format!("/teams({east_team})")});
    let r = api.patch(&format!("salesorders({order})"), &body).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        sb.sales_get("salesorders", &order).unwrap()["_owningbusinessunit_value"],
        json!(east)
    );

    // Turned off again: read-only.
    sb.set_record_ownership_across_business_units(false);
    let body = json!({"owningbusinessunit@odata.bind": format!("/businessunits({usmf})")});
    let r = api.patch(&format!("salesorders({order})"), &body).send().await.unwrap();
    assert_eq!(dv_error(r).await, invalid_argument());
}
