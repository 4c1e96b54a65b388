//! Dataverse table definitions (`EntityDefinitions`) on the wire, in the shapes of Microsoft's "Query table
//! definitions using the Web API" (powerapps-docs `developer/data-platform/webapi/query-metadata-web-api.md`).

mod common;

use common::*;
use serde_json::Value;

fn names(v: &Value, key: &str) -> Vec<String> {
    v["value"]
        .as_array()
        .expect("value array")
        .iter()
        .map(|x| x[key].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn entity_definitions_list_select_and_filter() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;

    // How Microsoft's Python client resolves a table's entity set.
    let r = api
        .get("EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute&$filter=LogicalName eq 'account'")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json; odata.metadata=minimal");
    let v = json(r).await;
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/api/data/v9.2/$metadata#EntityDefinitions(LogicalName,EntitySetName,PrimaryIdAttribute)")
    );
    let rows = v["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let a = &rows[0];
    assert_eq!(a["LogicalName"], "account");
    assert_eq!(a["EntitySetName"], "accounts");
    assert_eq!(a["PrimaryIdAttribute"], "accountid");
    assert!(a["MetadataId"].is_string(), "MetadataId is always returned");
    assert!(a.get("PrimaryNameAttribute").is_none(), "$select limits the properties");

    // Every table the sandbox serves, tracked; a filter on a boolean and an enum.
    let all = json(
        api.get("EntityDefinitions?$select=LogicalName,ChangeTrackingEnabled")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let logical = names(&all, "LogicalName");
    for t in [
        "account",
        "contact",
        "product",
        "quote",
        "quotedetail",
        "salesorder",
        "invoice",
    ] {
        assert!(logical.contains(&t.to_string()), "{t} listed");
    }
    assert!(
        all["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["ChangeTrackingEnabled"] == true)
    );
    assert!(all.get("@odata.nextLink").is_none(), "definitions are not paged");
    let tracked = json(
        api.get("EntityDefinitions?$select=LogicalName&$filter=ChangeTrackingEnabled eq true")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(names(&tracked, "LogicalName").len(), logical.len());
    let org = json(
        api.get(
            "EntityDefinitions?$select=LogicalName&$filter=OwnershipType eq Microsoft.Dynamics.CRM.OwnershipTypes'UserOwned'",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    let user_owned = names(&org, "LogicalName");
    assert!(user_owned.contains(&"account".to_string()) && !user_owned.contains(&"product".to_string()));

    // Unknown properties and paging options are refused.
    let r = api.get("EntityDefinitions?$select=Nope").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let e = json(r).await;
    assert_eq!(
        e["error"]["message"],
        "Could not find a property named 'Nope' on type 'Microsoft.Dynamics.CRM.EntityMetadata'."
    );
    assert_eq!(api.get("EntityDefinitions?$top=1").send().await.unwrap().status(), 400);
}

#[tokio::test]
async fn entity_definition_by_logical_name_with_attributes() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;

    let r = api.get("EntityDefinitions(LogicalName='quote')").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let q = json(r).await;
    assert!(
        q["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#EntityDefinitions/$entity")
    );
    assert_eq!(q["LogicalName"], "quote");
    assert_eq!(q["SchemaName"], "Quote");
    assert_eq!(q["EntitySetName"], "quotes");
    assert_eq!(q["PrimaryIdAttribute"], "quoteid");
    assert_eq!(q["PrimaryNameAttribute"], "name");
    assert_eq!(q["ObjectTypeCode"], 1084);
    assert_eq!(q["ChangeTrackingEnabled"], true);
    assert_eq!(q["DisplayName"]["UserLocalizedLabel"]["Label"], "Quote");
    assert_eq!(q["DisplayName"]["LocalizedLabels"][0]["LanguageCode"], 1033);
    assert!(
        q.get("Attributes").is_none(),
        "navigation properties only when expanded"
    );

    // The same table by its MetadataId.
    let id = q["MetadataId"].as_str().unwrap();
    let by_id = json(
        api.get(&format!("EntityDefinitions({id})?$select=LogicalName"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(by_id["LogicalName"], "quote");

    // $expand=Attributes with nested options (the doc's example), common properties only.
    let v = json(
        api.get(
            "EntityDefinitions(LogicalName='account')?$select=LogicalName&$expand=Attributes($select=LogicalName,AttributeType;$filter=AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist')",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    let attrs = v["Attributes"].as_array().unwrap();
    let picklists: Vec<&str> = attrs.iter().map(|a| a["LogicalName"].as_str().unwrap()).collect();
    assert!(picklists.contains(&"customertypecode") && picklists.contains(&"industrycode"));
    assert!(
        !picklists.contains(&"statecode"),
        "statecode is a State attribute, not a Picklist"
    );
    assert!(attrs.iter().all(|a| a["AttributeType"] == "Picklist"));
    assert_eq!(
        attrs[0]["@odata.type"],
        "#Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
    );

    // Every attribute, its type and lookups (named without `_x_value`) with their targets only when cast.
    let all = json(
        api.get("EntityDefinitions(LogicalName='contact')/Attributes")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let by_name = |n: &str| {
        all["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["LogicalName"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("attribute {n}"))
    };
    let pk = by_name("contactid");
    assert_eq!(pk["AttributeType"], "Uniqueidentifier");
    assert_eq!(pk["IsPrimaryId"], true);
    assert_eq!(pk["IsValidForUpdate"], false);
    assert_eq!(by_name("fullname")["IsPrimaryName"], true);
    assert_eq!(by_name("parentcustomerid")["AttributeType"], "Customer");
    assert_eq!(
        by_name("parentcustomerid")["@odata.type"],
        "#Microsoft.Dynamics.CRM.LookupAttributeMetadata"
    );
    assert!(
        by_name("parentcustomerid").get("Targets").is_none(),
        "Targets needs the cast"
    );
    assert_eq!(by_name("statecode")["AttributeType"], "State");
    assert_eq!(by_name("statecode")["IsValidForCreate"], false);
    assert_eq!(by_name("birthdate")["AttributeType"], "DateTime");
    assert_eq!(by_name("versionnumber")["AttributeType"], "BigInt");
    assert_eq!(by_name("msdynce_isactivecustomer")["AttributeType"], "Boolean");
    assert!(
        all["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| !a["LogicalName"].as_str().unwrap().starts_with('_'))
    );

    let lookups = json(
        api.get("EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.LookupAttributeMetadata?$select=LogicalName,Targets")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let pc = lookups["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["LogicalName"] == "parentcustomerid")
        .unwrap();
    assert_eq!(pc["Targets"], serde_json::json!(["account", "contact"]));

    let s = json(
        api.get("EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength&$filter=LogicalName eq 'accountnumber'")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s["value"][0]["MaxLength"], 20, "the length the data endpoints enforce");

    // A single attribute by logical name; a derived property needs the cast.
    let one = json(
        api.get("EntityDefinitions(LogicalName='account')/Attributes(LogicalName='name')")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(one["AttributeType"], "String");
    assert_eq!(
        api.get("EntityDefinitions(LogicalName='account')/Attributes?$select=MaxLength")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    // Alternate keys, as the data endpoints enforce them.
    let keys = json(
        api.get("EntityDefinitions(LogicalName='contact')/Keys")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        keys["value"][0]["KeyAttributes"],
        serde_json::json!(["msdynce_contactnumber"])
    );

    let r = api.get("EntityDefinitions(LogicalName='nope')").send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn option_sets_of_picklist_state_and_status_attributes() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;

    // The query of the doc, and of Microsoft's Python client (`$expand=OptionSet($select=Options)`).
    let r = api
        .get("EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .contains("/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata(LogicalName,OptionSet)")
    );
    let ctc = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["LogicalName"] == "customertypecode")
        .unwrap();
    assert_eq!(ctc["@odata.type"], "#Microsoft.Dynamics.CRM.PicklistAttributeMetadata");
    let os = &ctc["OptionSet"];
    assert!(os["MetadataId"].is_string());
    assert!(os.get("Name").is_none(), "$select=Options inside the expansion");
    let customer = os["Options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["Value"] == 3)
        .unwrap();
    assert_eq!(customer["Label"]["UserLocalizedLabel"]["Label"], "Customer");
    assert_eq!(customer["Label"]["LocalizedLabels"][0]["Label"], "Customer");

    // The P2C choice (spec/templates.md section 4).
    let ps = json(
        api.get("EntityDefinitions(LogicalName='salesorder')/Attributes(LogicalName='msdynce_processingstatus')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet,GlobalOptionSet")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(ps["@odata.context"].as_str().unwrap().ends_with("/$entity"));
    assert_eq!(ps["OptionSet"]["OptionSetType"], "Picklist");
    assert_eq!(ps["OptionSet"]["Name"], "salesorder_msdynce_processingstatus");
    assert_eq!(ps["OptionSet"]["Options"][0]["Value"], 647_390_000);
    assert_eq!(
        ps["OptionSet"]["Options"][0]["Label"]["UserLocalizedLabel"]["Label"],
        "Active"
    );
    assert!(ps["GlobalOptionSet"].is_null());

    // State and status follow the state model the data endpoints enforce (spec/protocols.md A.10).
    let state = json(
        api.get("EntityDefinitions(LogicalName='quote')/Attributes(LogicalName='statecode')/Microsoft.Dynamics.CRM.StateAttributeMetadata?$expand=OptionSet")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let opts = state["OptionSet"]["Options"].as_array().unwrap();
    let labels: Vec<&str> = opts
        .iter()
        .map(|o| o["Label"]["UserLocalizedLabel"]["Label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["Draft", "Active", "Won", "Closed"]);
    assert_eq!(opts[1]["@odata.type"], "#Microsoft.Dynamics.CRM.StateOptionMetadata");
    assert_eq!(opts[1]["DefaultStatus"], 2);
    assert_eq!(opts[1]["InvariantName"], "Active");

    let status = json(
        api.get("EntityDefinitions(LogicalName='quote')/Attributes/Microsoft.Dynamics.CRM.StatusAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let opts = status["value"][0]["OptionSet"]["Options"].as_array().unwrap();
    let state_of = |v: i64| opts.iter().find(|o| o["Value"] == v).map(|o| o["State"].clone());
    assert_eq!(state_of(1), Some(0.into()), "In Progress (1) is Draft");
    assert_eq!(state_of(2), Some(1.into()), "In Progress (2) is Active");
    assert_eq!(state_of(4), Some(2.into()), "Won");
    assert_eq!(state_of(647_390_000), Some(3.into()), "P2C Submitted is Closed");
    assert_eq!(opts[0]["@odata.type"], "#Microsoft.Dynamics.CRM.StatusOptionMetadata");

    // Yes/no columns have a Boolean option set.
    let b = json(
        api.get("EntityDefinitions(LogicalName='account')/Attributes(LogicalName='creditonhold')/Microsoft.Dynamics.CRM.BooleanAttributeMetadata?$expand=OptionSet")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(b["OptionSet"]["TrueOption"]["Value"], 1);
    assert_eq!(b["OptionSet"]["FalseOption"]["Value"], 0);

    // OptionSet needs a cast; EnumAttributeMetadata is not a cast the service allows.
    let r = api
        .get("EntityDefinitions(LogicalName='account')?$expand=Attributes($expand=OptionSet)")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = api
        .get("EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.EnumAttributeMetadata")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Metadata is read-only here.
    let r = api
        .post("EntityDefinitions", &serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}
