//! Reference data every environment has (the organization, its root business unit, legal entities, customer
//! groups) and the demo data set of `Sandbox::seed_demo`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::store::Row;
use crate::{State, dataverse, dv_schema, fno, fno_rules, lock};

/// Created at start: the organization (system pricing on), its root business unit (with its default team), the
/// application user p2c's token belongs to (in the root unit: the owner of what it creates without naming an
/// owner), the legal entities, their customer groups.
pub(crate) fn base(state: &State) {
    registration_metadata(state);
    {
        let mut dv = lock(&state.dv);
        dv.ownership_across_business_units = state.cfg.record_ownership_across_business_units;
        let (Some(t), Some(users)) = (dv_schema::table("businessunits"), dv_schema::table("systemusers")) else {
            return;
        };
        let mut row = Row::new();
        row.insert("name".into(), json!("contoso"));
        if let Ok(id) = dataverse::direct_insert(&mut dv, t, row) {
            dv.root_bu = id;
        }
        // The organization, with "Use system pricing calculation" = Yes, as the P2C solution requires.
        if let Some(t) = dv_schema::table("organizations") {
            let mut row = Row::new();
            row.insert("name".into(), json!("contoso"));
            row.insert("oobpricecalculationenabled".into(), json!(true));
            row.insert(
                crate::catalog::CREATE_ACTIVE.into(),
                json!(state.cfg.create_products_in_active_state),
            );
            let _ = dataverse::direct_insert(&mut dv, t, row);
        }
        // One application user per registered app; the first is the one rows created without an owner go to.
        let apps = std::iter::once(&state.cfg.client_id).chain(state.cfg.more_clients.iter().map(|(id, _)| id));
        for (i, app) in apps.enumerate() {
            let mut user = Row::new();
            user.insert("fullname".into(), json!(format!("# {app}")));
            user.insert("domainname".into(), json!(format!("{app}@contoso.example")));
            user.insert("_businessunitid_value".into(), json!(dv.root_bu.clone()));
            if let (Ok(id), 0) = (dataverse::direct_insert(&mut dv, users, user), i) {
                dv.caller = id;
            }
        }
    }
    let mut f = lock(&state.fno);
    let mut companies = vec![
        "dat".to_string(),
        "usmf".to_string(),
        state.cfg.default_company.to_lowercase(),
    ];
    companies.dedup();
    let Ok(groups) = fno::entity("CustomerGroups") else {
        return;
    };
    fno_rules::seed_global(&mut f);
    for c in companies {
        f.companies.insert(c.clone());
        fno_rules::seed_company(&mut f, &c);
        for (id, desc) in fno_rules::customer_groups() {
            let _ = fno::direct_insert(
                &mut f,
                groups,
                &json!({"dataAreaId": c, "CustomerGroupId": id, "Description": desc, "PaymentTermId": "Net30"}),
            );
        }
    }
}

/// The SDK messages and, for every business table, the Create/Update/Delete message filters a step is registered
/// on: system metadata every organization has.
fn registration_metadata(state: &State) {
    let mut dv = lock(&state.dv);
    let (Some(messages), Some(filters)) = (dv_schema::table("sdkmessages"), dv_schema::table("sdkmessagefilters"))
    else {
        return;
    };
    let mut ids = Vec::new();
    for name in [
        "Create",
        "Update",
        "Delete",
        "Retrieve",
        "RetrieveMultiple",
        "Assign",
        "SetState",
        "Associate",
        "Disassociate",
    ] {
        let mut row = Row::new();
        row.insert("name".into(), json!(name));
        row.insert("categoryname".into(), json!("CRUD"));
        row.insert("isprivate".into(), json!(false));
        if let Ok(id) = dataverse::direct_insert(&mut dv, messages, row) {
            ids.push((name, id));
        }
    }
    let registration = [
        "serviceendpoints",
        "plugintypes",
        "sdkmessages",
        "sdkmessagefilters",
        "sdkmessageprocessingsteps",
    ];
    for set in dv_schema::all_sets().into_iter().filter(|s| !registration.contains(s)) {
        let Some(t) = dv_schema::table(set) else { continue };
        for (_, id) in ids.iter().filter(|(n, _)| ["Create", "Update", "Delete"].contains(n)) {
            let mut row = Row::new();
            row.insert("primaryobjecttypecode".into(), json!(t.logical));
            row.insert("secondaryobjecttypecode".into(), json!("none"));
            row.insert("iscustomprocessingstepallowed".into(), json!(true));
            row.insert("sdkmessageid@odata.bind".into(), json!(format!("/sdkmessages({id})")));
            if let Ok(vals) = dataverse::direct_values(&dv, filters, &row) {
                let _ = dataverse::direct_insert(&mut dv, filters, vals);
            }
        }
    }
}

fn find_by(state: &State, set: &str, col: &str, value: &str) -> Option<String> {
    let dv = lock(&state.dv);
    dv.table(set)?.rows().iter().find_map(|(id, r)| {
        r.get(col)
            .and_then(Value::as_str)
            .filter(|v| v.eq_ignore_ascii_case(value))
            .map(|_| id.clone())
    })
}

fn ensure(state: &State, set: &str, col: &str, value: &str, row: Value) -> String {
    if let Some(id) = find_by(state, set, col, value) {
        return id;
    }
    insert(state, set, row)
}

fn insert(state: &State, set: &str, row: Value) -> String {
    let Some(t) = dv_schema::table(set) else {
        return String::new();
    };
    let mut dv = lock(&state.dv);
    let vals = row
        .as_object()
        .and_then(|m| dataverse::direct_values(&dv, t, m).ok())
        .unwrap_or_default();
    dataverse::direct_insert(&mut dv, t, vals).unwrap_or_default()
}

const PREFIX: &[&str] = &[
    "Adventure",
    "Alpine",
    "Blue Yonder",
    "Coho",
    "Contoso",
    "Fabrikam",
    "Fourth Coffee",
    "Litware",
    "Northwind",
    "Proseware",
    "Tailspin",
    "Wide World",
    "Woodgrove",
    "Trey",
    "Lucerne",
    "Margie's",
    "City Power",
    "Graphic",
    "Wingtip",
    "Humongous",
    "Relecloud",
    "Bellows",
    "A. Datum",
    "Southridge",
];
const SUFFIX: &[&str] = &[
    "Traders",
    "Works",
    "Airlines",
    "Winery",
    "Electronics",
    "Bikes",
    "Supplies",
    "Importers",
    "Systems",
    "Toys",
    "Publishing",
    "Logistics",
    "Outfitters",
    "Foods",
    "Motors",
];
const STREETS: &[&str] = &[
    "Main",
    "Oak",
    "Pine",
    "Maple",
    "Cedar",
    "Lake",
    "Hill",
    "Park",
    "Washington",
    "Elm",
];

struct Country {
    names: &'static [&'static str],
    cities: &'static [(&'static str, &'static str, &'static str)],
    currency: &'static str,
    legal: &'static str,
}

const COUNTRIES: &[Country] = &[
    Country {
        names: &["USA", "United States", "US", "United States of America", ""],
        cities: &[
            ("Redmond", "WA", "98052"),
            ("Seattle", "WA", "98101"),
            ("Chicago", "IL", "60601"),
            ("Austin", "TX", "78701"),
        ],
        currency: "USD",
        legal: "Inc.",
    },
    Country {
        names: &["Germany", "DE", "Deutschland"],
        cities: &[
            ("Munich", "BY", "80331"),
            ("Berlin", "BE", "10115"),
            ("Hamburg", "HH", "20095"),
        ],
        currency: "EUR",
        legal: "GmbH",
    },
    Country {
        names: &["United Kingdom", "UK"],
        cities: &[("London", "", "EC1A 1BB"), ("Manchester", "", "M1 1AE")],
        currency: "GBP",
        legal: "Ltd.",
    },
    Country {
        names: &["Canada"],
        cities: &[("Toronto", "ON", "M5H 2N2")],
        currency: "USD",
        legal: "Inc.",
    },
];

pub(crate) fn demo(state: &State, accounts: usize) {
    let usd = ensure(
        state,
        "transactioncurrencies",
        "isocurrencycode",
        "USD",
        json!({"currencyname": "US Dollar", "isocurrencycode": "USD", "currencysymbol": "$", "exchangerate": 1.0, "currencyprecision": 2}),
    );
    let eur = ensure(
        state,
        "transactioncurrencies",
        "isocurrencycode",
        "EUR",
        json!({"currencyname": "Euro", "isocurrencycode": "EUR", "currencysymbol": "€", "exchangerate": 0.92, "currencyprecision": 2}),
    );
    let gbp = ensure(
        state,
        "transactioncurrencies",
        "isocurrencycode",
        "GBP",
        json!({"currencyname": "Pound Sterling", "isocurrencycode": "GBP", "currencysymbol": "£", "exchangerate": 0.79, "currencyprecision": 2}),
    );
    let root = lock(&state.dv).root_bu.clone();
    let bu = ensure(
        state,
        "businessunits",
        "name",
        "usmf",
        json!({"name": "usmf", "divisionname": "USMF", "_parentbusinessunitid_value": root}),
    );
    let sched = ensure(
        state,
        "uomschedules",
        "name",
        "Default unit",
        json!({"name": "Default unit", "baseuomname": "Primary Unit"}),
    );
    let base_uom = ensure(
        state,
        "uoms",
        "name",
        "Primary Unit",
        json!({"name": "Primary Unit", "quantity": 1.0, "isschedulebaseuom": true, "_uomscheduleid_value": sched}),
    );
    for unit in ["ea", "pcs", "hr", "Each"] {
        ensure(
            state,
            "uoms",
            "name",
            unit,
            json!({"name": unit, "quantity": 1.0, "isschedulebaseuom": false, "_uomscheduleid_value": sched, "_baseuom_value": base_uom}),
        );
    }
    // One price list per currency, plus a second USD list that sorts after the first: the P2C plug-in puts
    // products on the first list of their currency by name, which stays "CRM Service USA (sample)".
    for (name, currency) in [
        ("CRM Service USA (sample)", &usd),
        ("Europe Sales (EUR)", &eur),
        ("UK Sales (GBP)", &gbp),
        ("Wholesale USA", &usd),
    ] {
        ensure(
            state,
            "pricelevels",
            "name",
            name,
            json!({"name": name, "_transactioncurrencyid_value": currency, "begindate": "2020-01-01T00:00:00Z"}),
        );
    }

    // F&O: sellable products of usmf.
    if let Ok(prod) = fno::entity("SellableReleasedProducts") {
        let mut f = lock(&state.fno);
        for (n, name, price, cost) in [
            ("D0001", "MidRangeSpeaker2", 250.0, 120.0),
            ("D0002", "Cabinet", 180.0, 90.0),
            ("D0003", "StandardSpeaker", 220.0, 100.0),
            ("D0004", "HighEndSpeaker", 1500.0, 700.0),
            ("D0005", "Projector Television", 3200.0, 1900.0),
        ] {
            let _ = fno::direct_insert(
                &mut f,
                prod,
                &json!({"dataAreaId": "usmf", "ProductNumber": n, "ProductName": name,
                        "ProductDescription": format!("{name} (demo)"), "ProductType": "Item",
                        "SalesUnitSymbol": "ea", "InventoryUnitSymbol": "ea", "SalesPrice": price, "UnitCost": cost,
                        "CurrencyCode": "USD", "IsSalesStopped": "No", "IsStockedProduct": "Yes"}),
            );
        }
    }

    // Sales accounts, deterministic per batch number so repeated runs stay reproducible.
    let start = lock(&state.dv).table("accounts").map_or(0, |t| t.rows().len());
    let mut rng = StdRng::seed_from_u64(0x5eed_0000 + start as u64);
    for i in 0..accounts {
        let seq = 1000 + start + i;
        let suffix: String = (0..6).map(|_| char::from(b'A' + rng.random_range(0..26u8))).collect();
        let number = format!("ACC-{seq:05}-{suffix}");
        // Mostly US, some EU/UK, to exercise country and currency maps.
        let country = &COUNTRIES[match rng.random_range(0..10) {
            0..=5 => 0,
            6 | 7 => 1,
            8 => 2,
            _ => 3,
        }];
        let cname = country.names[rng.random_range(0..country.names.len())];
        let (city, st, zip) = country.cities[rng.random_range(0..country.cities.len())];
        let company = format!(
            "{} {} {}",
            PREFIX[rng.random_range(0..PREFIX.len())],
            SUFFIX[rng.random_range(0..SUFFIX.len())],
            country.legal
        );
        let slug: String = company
            .to_lowercase()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect();
        let street = format!(
            "{} {} St",
            rng.random_range(1..9999),
            STREETS[rng.random_range(0..STREETS.len())]
        );
        let (d_city, d_st, d_zip) = country.cities[rng.random_range(0..country.cities.len())];
        let currency = match country.currency {
            "EUR" => &eur,
            "GBP" => &gbp,
            _ => &usd,
        };
        let phone = format!("+1 425-555-{:04}", rng.random_range(0..10000));
        let row = json!({
            "accountnumber": number,
            "name": company,
            "telephone1": phone,
            "fax": format!("+1 425-555-{:04}", rng.random_range(0..10000)),
            "emailaddress1": format!("info@{slug}.example.com"),
            "websiteurl": format!("https://www.{slug}.example.com"),
            "creditlimit": (rng.random_range(5..250) * 1000) as f64,
            "numberofemployees": rng.random_range(5..5000),
            "description": format!("Demo customer {seq} ({city})."),
            "address1_name": "Primary",
            "address1_line1": street,
            "address1_city": city,
            "address1_stateorprovince": st,
            "address1_postalcode": zip,
            "address1_country": cname,
            "address1_telephone1": phone,
            "address2_name": "Delivery",
            "address2_line1": format!("{} {} Ave", rng.random_range(1..9999), STREETS[rng.random_range(0..STREETS.len())]),
            "address2_city": d_city,
            "address2_stateorprovince": d_st,
            "address2_postalcode": d_zip,
            "address2_country": cname,
            "_transactioncurrencyid_value": currency,
            "_owningbusinessunit_value": bu,
        });
        insert(state, "accounts", row);
    }
    contacts(state, &usd, &bu);
}

/// A demo contact: number, names, `msdynce_isactivecustomer`, index of the parent demo account, gender code.
struct DemoContact {
    number: &'static str,
    first: &'static str,
    last: &'static str,
    active: bool,
    parent: Option<usize>,
    gender: i64,
}

const fn contact(
    number: &'static str,
    first: &'static str,
    last: &'static str,
    active: bool,
    parent: Option<usize>,
    gender: i64,
) -> DemoContact {
    DemoContact {
        number,
        first,
        last,
        active,
        parent,
        gender,
    }
}

const CONTACTS: &[DemoContact] = &[
    contact("CON-01000-BVRCPS", "Nancy", "Davolio", true, None, 2),
    contact("CON-01001-KQWZTX", "Andrew", "Fuller", true, Some(0), 1),
    contact("CON-01002-MJDHRA", "Janet", "Leverling", false, Some(0), 2),
    contact("CON-01003-PLNBEU", "Margaret", "Peacock", false, Some(1), 2),
    contact("CON-01004-TGYCSO", "Steven", "Buchanan", false, Some(2), 1),
    contact("CON-01005-WXRKFE", "Laura", "Callahan", false, None, 2),
];

/// Demo accounts (`ACC-` numbers) by account number: (id, number).
fn demo_accounts(state: &State) -> Vec<(String, String)> {
    let dv = lock(&state.dv);
    let mut v: Vec<(String, String)> = dv
        .table("accounts")
        .map(|t| {
            t.rows()
                .iter()
                .filter_map(|(id, r)| {
                    let n = r.get("accountnumber").and_then(Value::as_str)?;
                    n.starts_with("ACC-").then(|| (id.clone(), n.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

fn contacts(state: &State, usd: &str, bu: &str) {
    let accounts = demo_accounts(state);
    for (i, c) in CONTACTS.iter().enumerate() {
        let (number, first, last, active, gender) = (c.number, c.first, c.last, &c.active, c.gender);
        let parent = c.parent;
        let parent_id = parent.and_then(|p| accounts.get(p)).map(|(id, _)| id.clone());
        if let Some(id) = find_by(state, "contacts", "msdynce_contactnumber", number) {
            // Created before the accounts existed: give it its parent now.
            let has_parent = lock(&state.dv)
                .get("contacts", &id)
                .is_some_and(|r| r.get("_parentcustomerid_value").is_some_and(|v| !v.is_null()));
            if let (Some(p), false, Some(t)) = (&parent_id, has_parent, dv_schema::table("contacts")) {
                let mut dv = lock(&state.dv);
                let patch = json!({"_parentcustomerid_value": p, "msdynce_iscompanyanaccount": true});
                if let Some(vals) = patch.as_object().and_then(|m| dataverse::direct_values(&dv, t, m).ok()) {
                    let _ = dataverse::direct_update(&mut dv, t, &id, vals);
                }
            }
            continue;
        }
        let (city, st, zip) = COUNTRIES[0].cities[i % COUNTRIES[0].cities.len()];
        let mut row = json!({
            "msdynce_contactnumber": number,
            "firstname": first,
            "lastname": last,
            "emailaddress1": format!("{}.{}@example.com", first.to_lowercase(), last.to_lowercase()),
            "telephone1": format!("+1 425-555-{:04}", 100 + i),
            "jobtitle": if *active { "Owner" } else { "Purchasing manager" },
            "gendercode": gender,
            "donotemail": false,
            "description": "Demo contact.",
            "address1_line1": format!("{} {} St", 10 + i, STREETS[i % STREETS.len()]),
            "address1_city": city,
            "address1_stateorprovince": st,
            "address1_postalcode": zip,
            "address1_country": "USA",
            "msdynce_isactivecustomer": active,
            "msdynce_iscompanyanaccount": parent_id.is_some(),
            "_transactioncurrencyid_value": usd,
            "_owningbusinessunit_value": bu,
        });
        if *active {
            row["creditlimit"] = json!(25000.0);
        }
        if let Some(p) = parent_id {
            row["_parentcustomerid_value"] = json!(p);
        }
        insert(state, "contacts", row);
    }
}

fn try_insert(state: &State, set: &str, row: Value) -> Result<String, String> {
    let t = dv_schema::table(set).ok_or_else(|| format!("p2c-sandbox: no table {set}"))?;
    let mut dv = lock(&state.dv);
    let m = row.as_object().cloned().unwrap_or_default();
    let vals = dataverse::direct_values(&dv, t, &m)?;
    dataverse::direct_insert(&mut dv, t, vals)
}

fn try_update(state: &State, set: &str, id: &str, patch: Value) -> Result<(), String> {
    let t = dv_schema::table(set).ok_or_else(|| format!("p2c-sandbox: no table {set}"))?;
    let mut dv = lock(&state.dv);
    let m = patch.as_object().cloned().unwrap_or_default();
    let vals = dataverse::direct_values(&dv, t, &m)?;
    dataverse::direct_update(&mut dv, t, id, vals)
}

fn column(state: &State, set: &str, id: &str, col: &str) -> Value {
    lock(&state.dv)
        .get(set, id)
        .and_then(|r| r.get(col).cloned())
        .unwrap_or(Value::Null)
}

/// Quote lines and order lines of the story: (product number, quantity, manual discount).
const QUOTE_LINES: &[(&str, f64, f64)] = &[("D0001", 2.0, 0.0), ("D0002", 1.0, 0.0), ("D0003", 3.0, 10.0)];
const ORDER_LINES: &[(&str, f64, f64)] = &[("D0004", 2.0, 0.0), ("D0005", 1.0, 0.0)];
/// P2C processing status Active: activated in Sales, not yet confirmed in F&O.
const P2C_ACTIVE: i64 = 647_390_000;

/// `Sandbox::seed_story`.
pub(crate) fn story(state: &State) -> Result<crate::Story, String> {
    let Some((account_id, account_number)) = demo_accounts(state).into_iter().next() else {
        return Err("p2c-sandbox: seed_story needs a demo account: call seed_demo(n) with n >= 1 first".into());
    };
    let mut products = Vec::new();
    for (number, _, _) in QUOTE_LINES.iter().chain(ORDER_LINES) {
        let Some(id) = find_by(state, "products", "productnumber", number) else {
            return Err(format!(
                "p2c-sandbox: seed_story needs the F&O products in Sales, but there is no Sales product with                  productnumber '{number}': run the products-to-sales flow first"
            ));
        };
        let uom = column(state, "products", &id, "_defaultuomid_value");
        if uom.is_null() {
            return Err(format!(
                "p2c-sandbox: seed_story: the Sales product '{number}' has no default unit (defaultuomid)"
            ));
        }
        products.push((id, uom));
    }
    let price_list = find_by(state, "pricelevels", "name", "CRM Service USA (sample)")
        .ok_or("p2c-sandbox: seed_story needs the price list 'CRM Service USA (sample)': call seed_demo first")?;
    let usd = find_by(state, "transactioncurrencies", "isocurrencycode", "USD")
        .ok_or("p2c-sandbox: seed_story needs the currency USD: call seed_demo first")?;
    let acct = |c: &str| column(state, "accounts", &account_id, c);
    let name = acct("name").as_str().unwrap_or("").to_string();
    let today = &crate::http::now_iso()[..10];
    let mut header = json!({
        "_customerid_value": account_id,
        "_pricelevelid_value": price_list,
        "_transactioncurrencyid_value": usd,
        "_owningbusinessunit_value": acct("_owningbusinessunit_value"),
        "msdynce_hasexternallymaintainedproductsonly": true,
        "requestdeliveryby": today,
        "shipto_name": acct("address2_name"),
        "shipto_line1": acct("address2_line1"),
        "shipto_city": acct("address2_city"),
        "shipto_stateorprovince": acct("address2_stateorprovince"),
        "shipto_postalcode": acct("address2_postalcode"),
        "shipto_country": acct("address2_country"),
        "billto_name": acct("address1_name"),
        "billto_line1": acct("address1_line1"),
        "billto_city": acct("address1_city"),
        "billto_stateorprovince": acct("address1_stateorprovince"),
        "billto_postalcode": acct("address1_postalcode"),
        "billto_country": acct("address1_country"),
    });

    // The quote: created Draft, lines added, then activated.
    header["name"] = json!(format!("Speakers for {name}"));
    header["description"] = json!("Demo quote of the prospect-to-cash story.");
    let quote_id = try_insert(state, "quotes", header.clone())?;
    for ((number, qty, discount), (product, uom)) in QUOTE_LINES.iter().zip(&products) {
        let price = column(state, "products", product, "price");
        try_insert(
            state,
            "quotedetails",
            json!({
                "_quoteid_value": quote_id, "_productid_value": product, "_uomid_value": uom,
                "quantity": qty, "manualdiscountamount": discount, "priceperunit": price,
                "quotedetailname": number, "msdynce_quotehasexternalmaintainedproductsonly": true,
                "msdynce_ismaintainedexternally": column(state, "products", product, "msdynce_ismaintainedexternally"),
            }),
        )?;
    }
    try_update(state, "quotes", &quote_id, json!({"statecode": 1, "statuscode": 2}))?;

    // The order: Active, processing status Active (activated in Sales), lines submitted.
    header["name"] = json!(format!("Home cinema for {name}"));
    header["description"] = json!("Demo order of the prospect-to-cash story.");
    header["msdynce_processingstatus"] = json!(P2C_ACTIVE);
    header["submitdate"] = json!(today);
    let order_id = try_insert(state, "salesorders", header)?;
    for ((number, qty, discount), (product, uom)) in ORDER_LINES.iter().zip(&products[QUOTE_LINES.len()..]) {
        let price = column(state, "products", product, "price");
        try_insert(
            state,
            "salesorderdetails",
            json!({
                "_salesorderid_value": order_id, "_productid_value": product, "_uomid_value": uom,
                "quantity": qty, "manualdiscountamount": discount, "priceperunit": price,
                "salesorderdetailname": number, "msdynce_orderhasexternalmaintainedproductsonly": true,
                "msdynce_orderissubmitted": true,
                "msdynce_ismaintainedexternally": column(state, "products", product, "msdynce_ismaintainedexternally"),
            }),
        )?;
    }
    let text = |v: Value| v.as_str().unwrap_or("").to_string();
    Ok(crate::Story {
        account_id,
        account_number,
        quote_number: text(column(state, "quotes", &quote_id, "quotenumber")),
        quote_id,
        order_number: text(column(state, "salesorders", &order_id, "ordernumber")),
        order_id,
    })
}

/// `Sandbox::seed_quotes`: `count` active quotes of `lines` lines each, for the demo accounts in turn, on the
/// products D0001–D0005 (which must be in Sales). Returns the number of lines created.
pub(crate) fn quotes(state: &State, count: usize, lines: usize) -> Result<usize, String> {
    let accounts = demo_accounts(state);
    if accounts.is_empty() {
        return Err("p2c-sandbox: seed_quotes needs demo accounts: call seed_demo(n) first".into());
    }
    let mut products = Vec::new();
    for number in ["D0001", "D0002", "D0003", "D0004", "D0005"] {
        let id = find_by(state, "products", "productnumber", number).ok_or_else(|| {
            format!("p2c-sandbox: seed_quotes needs product {number} in Sales: run products-to-sales first")
        })?;
        let uom = column(state, "products", &id, "_defaultuomid_value");
        let price = column(state, "products", &id, "price");
        products.push((number, id, uom, price));
    }
    let price_list = find_by(state, "pricelevels", "name", "CRM Service USA (sample)").ok_or("call seed_demo first")?;
    let usd = find_by(state, "transactioncurrencies", "isocurrencycode", "USD").ok_or("call seed_demo first")?;
    let mut made = 0;
    for i in 0..count {
        let (account_id, _) = &accounts[i % accounts.len()];
        let quote_id = try_insert(
            state,
            "quotes",
            json!({
                "_customerid_value": account_id,
                "_pricelevelid_value": price_list,
                "_transactioncurrencyid_value": usd,
                "_owningbusinessunit_value": column(state, "accounts", account_id, "_owningbusinessunit_value"),
                "msdynce_hasexternallymaintainedproductsonly": true,
                "name": format!("Bench quote {i}"),
                "shipto_city": "Seattle",
                "shipto_country": "United States",
            }),
        )?;
        for l in 0..lines {
            let (number, product, uom, price) = &products[l % products.len()];
            try_insert(
                state,
                "quotedetails",
                json!({
                    "_quoteid_value": quote_id, "_productid_value": product, "_uomid_value": uom,
                    "quantity": 1 + (l % 3), "priceperunit": price, "quotedetailname": number,
                    "msdynce_quotehasexternalmaintainedproductsonly": true,
                    "msdynce_ismaintainedexternally": column(state, "products", product, "msdynce_ismaintainedexternally"),
                }),
            )?;
            made += 1;
        }
        try_update(state, "quotes", &quote_id, json!({"statecode": 1, "statuscode": 2}))?;
    }
    Ok(made)
}
