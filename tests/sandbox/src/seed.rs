//! Reference data every environment has (root business unit, legal entities, customer groups) and the demo
//! data set of `Sandbox::seed_demo`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::store::Row;
use crate::{State, dataverse, dv_schema, fno, lock};

/// Created at start: the org's root business unit, the legal entities, their customer groups.
pub(crate) fn base(state: &State) {
    {
        let mut dv = lock(&state.dv);
        let Some(t) = dv_schema::table("businessunits") else {
            return;
        };
        let mut row = Row::new();
        row.insert("name".into(), json!("contoso"));
        if let Ok(id) = dataverse::direct_insert(&mut dv, t, row) {
            dv.root_bu = id;
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
    for c in companies {
        f.companies.insert(c.clone());
        for (id, desc) in [
            ("10", "Wholesale customers"),
            ("20", "Major customers"),
            ("30", "Retail customers"),
        ] {
            let _ = fno::direct_insert(
                &mut f,
                groups,
                &json!({"dataAreaId": c, "CustomerGroupId": id, "Description": desc, "PaymentTermId": "Net30"}),
            );
        }
    }
}

fn find_by(state: &State, set: &str, col: &str, value: &str) -> Option<String> {
    let dv = lock(&state.dv);
    dv.table(set)?.rows.iter().find_map(|(id, r)| {
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
    for unit in ["ea", "pcs", "hr"] {
        ensure(
            state,
            "uoms",
            "name",
            unit,
            json!({"name": unit, "quantity": 1.0, "isschedulebaseuom": false, "_uomscheduleid_value": sched, "_baseuom_value": base_uom}),
        );
    }
    ensure(
        state,
        "pricelevels",
        "name",
        "CRM Service USA (sample)",
        json!({"name": "CRM Service USA (sample)", "_transactioncurrencyid_value": usd, "begindate": "2020-01-01T00:00:00Z"}),
    );

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
    let start = lock(&state.dv).table("accounts").map_or(0, |t| t.rows.len());
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
}
