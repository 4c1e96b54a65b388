//! content_hash: stable under key order, annotations and number spelling; sensitive to content.

mod common;

use common::{golden, rec};
use p2c_mapping::{Record, accounts_to_customers, content_hash};
use serde_json::json;

#[test]
fn hash_is_stable_under_key_order() {
    let a = rec(json!({"b": 1, "a": "x", "c": {"z": [1, 2], "y": null}}));
    let b = rec(json!({"c": {"y": null, "z": [1, 2]}, "a": "x", "b": 1}));
    assert_eq!(content_hash(&a), content_hash(&b));

    let out = accounts_to_customers()
        .map(&golden("accounts-to-fno/account_full.json"))
        .unwrap();
    let mut reversed = Record::new();
    for (k, v) in out.iter().rev() {
        reversed.insert(k.clone(), v.clone());
    }
    assert_ne!(out.keys().next(), reversed.keys().next());
    assert_eq!(content_hash(&out), content_hash(&reversed));
}

#[test]
fn hash_ignores_annotations_but_not_binds() {
    let plain = rec(json!({"name": "A", "creditlimit": 5}));
    let annotated = rec(json!({
        "@odata.etag": "W/\"12\"",
        "@odata.context": "https://x/$metadata#accounts/$entity",
        "name": "A",
        "creditlimit": 5,
        "creditlimit@OData.Community.Display.V1.FormattedValue": "$5.00",
    }));
    assert_eq!(content_hash(&plain), content_hash(&annotated));
    let bound = rec(json!({"name": "A", "creditlimit": 5, "parentcustomerid_account@odata.bind": "/accounts(1)"}));
    assert_ne!(content_hash(&plain), content_hash(&bound));
}

#[test]
fn hash_changes_with_content_and_is_sha256_hex() {
    let a = rec(json!({"CreditLimit": 50000.0, "OrganizationName": "A"}));
    let same = rec(json!({"OrganizationName": "A", "CreditLimit": 50000}));
    let other = rec(json!({"CreditLimit": 50000.5, "OrganizationName": "A"}));
    let h = content_hash(&a);
    assert_eq!(h.len(), 64);
    assert!(h.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(h, content_hash(&same), "50000.0 and 50000 are the same amount");
    assert_ne!(h, content_hash(&other));
    assert_ne!(
        content_hash(&rec(json!({"a": "1"}))),
        content_hash(&rec(json!({"a": 1})))
    );
    assert_ne!(content_hash(&rec(json!({"a": null}))), content_hash(&rec(json!({}))));
}
