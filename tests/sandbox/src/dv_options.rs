//! Option labels of the choice columns in `dv_schema.rs`: one source for the table definitions in `dv_metadata.rs`
//! (`OptionSet`s of EntityDefinitions) and for the values a write may carry ([`check_choice`]).
//!
//! Sources: the Dataverse table reference pages (repo `MicrosoftDocs/dynamics-365-customer-engagement`,
//! `ce/sales/developer/entities/{account,contact,product,productpricelevel,quote,salesorder,invoice,invoicedetail}.md`,
//! "Choices/Options" sections) and, for the P2C columns, spec/templates.md section 4. State and status codes of the
//! sales documents are spec/protocols.md A.10; which status belongs to which state comes from
//! `dv_schema::status_allowed`, and state names from `dv_schema::state_label` (one source of truth for both).

use crate::dataverse::err;
use crate::dv_schema::{self, Table};
use crate::http::Resp;

/// A written choice value must be one of the column's options: 400 PicklistValueOutOfRange `0x8004431A` (PAD
/// `reference/web-service-error-codes`), with the validation text the platform gives for it ("A validation error
/// occurred.  The value ... of '<column>' on record of type '<table>' is outside the valid range. Accepted Values:
/// ..."). `statecode`/`statuscode` are checked as a pair by the state model (`dataverse::check_state`); a column
/// the sandbox has no option list for accepts any value.
pub(crate) fn check_choice(t: &Table, col: &str, v: i64) -> Result<(), Resp> {
    if matches!(col, "statecode" | "statuscode") {
        return Ok(());
    }
    let Some(opts) = picklist(t, col) else {
        return Ok(());
    };
    if opts.iter().any(|(o, _)| *o == v) {
        return Ok(());
    }
    let accepted: Vec<String> = opts.iter().map(|(o, _)| o.to_string()).collect();
    Err(err(
        400,
        "0x8004431a",
        format!(
            "A validation error occurred.  The value {v} of '{col}' on record of type '{}' is outside the valid \
             range. Accepted Values: {}",
            t.logical,
            accepted.join(",")
        ),
    ))
}

/// `(value, label)` of a picklist column, or `None` when the sandbox has no labels for it.
pub(crate) fn picklist(t: &Table, col: &str) -> Option<&'static [(i64, &'static str)]> {
    const SHIPPING: &[(i64, &str)] = &[
        (1, "Airborne"),
        (2, "DHL"),
        (3, "FedEx"),
        (4, "UPS"),
        (5, "Postal Mail"),
        (6, "Full Load"),
        (7, "Will Call"),
    ];
    const FREIGHT: &[(i64, &str)] = &[(1, "FOB"), (2, "No Charge")];
    const PRODUCT_TYPE: &[(i64, &str)] = &[
        (1, "Sales Inventory"),
        (2, "Miscellaneous Charges"),
        (3, "Services"),
        (4, "Flat Fees"),
    ];
    let col = col
        .strip_prefix("address1_")
        .or_else(|| col.strip_prefix("address2_"))
        .unwrap_or(col);
    Some(match (t.logical, col) {
        ("account", "customertypecode") => &[
            (1, "Competitor"),
            (2, "Consultant"),
            (3, "Customer"),
            (4, "Investor"),
            (5, "Partner"),
            (6, "Influencer"),
            (7, "Press"),
            (8, "Prospect"),
            (9, "Reseller"),
            (10, "Supplier"),
            (11, "Vendor"),
            (12, "Other"),
        ],
        ("account", "accountcategorycode") => &[(1, "Preferred Customer"), (2, "Standard")],
        ("account", "industrycode") => &[
            (1, "Accounting"),
            (2, "Agriculture and Non-petrol Natural Resource Extraction"),
            (3, "Broadcasting Printing and Publishing"),
            (4, "Brokers"),
            (5, "Building Supply Retail"),
            (6, "Business Services"),
            (7, "Consulting"),
            (8, "Consumer Services"),
            (9, "Design, Direction and Creative Management"),
            (10, "Distributors, Dispatchers and Processors"),
            (11, "Doctor's Offices and Clinics"),
            (12, "Durable Manufacturing"),
            (13, "Eating and Drinking Places"),
            (14, "Entertainment Retail"),
            (15, "Equipment Rental and Leasing"),
            (16, "Financial"),
            (17, "Food and Tobacco Processing"),
            (18, "Inbound Capital Intensive Processing"),
            (19, "Inbound Repair and Services"),
            (20, "Insurance"),
            (21, "Legal Services"),
            (22, "Non-Durable Merchandise Retail"),
            (23, "Outbound Consumer Service"),
            (24, "Petrochemical Extraction and Distribution"),
            (25, "Service Retail"),
            (26, "SIG Affiliations"),
            (27, "Social Services"),
            (28, "Special Outbound Trade Contractors"),
            (29, "Specialty Realty"),
            (30, "Transportation"),
            (31, "Utility Creation and Distribution"),
            (32, "Vehicle Retail"),
            (33, "Wholesale"),
        ],
        (_, "paymenttermscode") => &[(1, "Net 30"), (2, "2% 10, Net 30"), (3, "Net 45"), (4, "Net 60")],
        (_, "shippingmethodcode") => SHIPPING,
        (_, "freighttermscode") => FREIGHT,
        ("contact", "gendercode") => &[(1, "Male"), (2, "Female")],
        ("contact", "familystatuscode") => &[(1, "Single"), (2, "Married"), (3, "Divorced"), (4, "Widowed")],
        ("product" | "invoicedetail", "producttypecode") => PRODUCT_TYPE,
        ("product", "productstructure") => &[(1, "Product"), (2, "Product Family"), (3, "Product Bundle")],
        ("productpricelevel", "pricingmethodcode") => &[
            (1, "Currency Amount"),
            (2, "Percent of List"),
            (3, "Cost Plus Percent - Current Cost"),
            (4, "Percent Margin - Current Cost"),
            (5, "Cost Plus Percent - Standard Cost"),
            (6, "Percent Margin - Standard Cost"),
        ],
        ("productpricelevel", "quantitysellingcode") => &[(1, "No Control"), (2, "Whole"), (3, "Whole and Fractional")],
        ("productpricelevel", "roundingoptioncode") => &[(1, "Ends in"), (2, "Multiple of")],
        ("invoicedetail", "propertyconfigurationstatus") => &[(0, "Edit"), (1, "Rectify"), (2, "NotConfigured")],
        ("salesorder", "msdynce_processingstatus") => &[
            (647_390_000, "Active"),
            (647_390_001, "Confirmed"),
            (647_390_002, "Packing Slip"),
            (647_390_003, "Invoiced"),
            (647_390_004, "Picked"),
            (647_390_005, "Partially Picked"),
            (647_390_006, "Partially Packed"),
            (647_390_007, "Shipped"),
            (647_390_008, "Partially Shipped"),
            (647_390_009, "Partially Invoiced"),
            (647_390_010, "Cancelled"),
            (647_390_011, "Draft"),
        ],
        _ => return None,
    })
}

/// Labels of the `statuscode` values the table reference pages list; which state each belongs to is asked of
/// `dv_schema::status_allowed`.
fn status_labels(t: &Table) -> &'static [(i64, &'static str)] {
    match t.logical {
        "quote" => &[
            (1, "In Progress"),
            (2, "In Progress"),
            (3, "Open"),
            (4, "Won"),
            (5, "Lost"),
            (6, "Canceled"),
            (7, "Revised"),
            (647_390_000, "Submitted"),
        ],
        "salesorder" => &[
            (1, "New"),
            (2, "Pending"),
            (3, "In Progress"),
            (4, "No Money"),
            (100_001, "Complete"),
            (100_002, "Partial"),
            (100_003, "Invoiced"),
            (700_970_000, "In Progress"),
        ],
        "invoice" => &[
            (1, "New"),
            (2, "Partially Shipped"),
            (3, "Canceled (deprecated)"),
            (4, "Billed"),
            (5, "Booked (applies to services)"),
            (6, "Installed (applies to services)"),
            (7, "Paid in Full (deprecated)"),
            (100_001, "Complete"),
            (100_002, "Partial"),
            (100_003, "Canceled"),
        ],
        "product" => &[(0, "Draft"), (1, "Active"), (2, "Retired"), (3, "Under Revision")],
        _ => &[(1, "Active"), (2, "Inactive")],
    }
}

/// The state model: `(state value, state name, default status)`.
pub(crate) fn states(t: &Table) -> Vec<(i64, String, i64)> {
    let mut out = Vec::new();
    for s in 0..16 {
        let label = dv_schema::state_label(t, s);
        let name = label.rsplit('.').next().unwrap_or("").to_string();
        if name.parse::<i64>().is_ok() {
            break;
        }
        out.push((s, name, dv_schema::default_status_for_state(t, s)));
    }
    out
}

/// `(status value, label, state value)`, in value order.
pub(crate) fn statuses(t: &Table) -> Vec<(i64, &'static str, i64)> {
    let states = states(t);
    let mut out = Vec::new();
    for (v, label) in status_labels(t) {
        // Tables without a documented model accept any pair; their statuses belong to the state of the same
        // rank (1 Active -> 0, 2 Inactive -> 1).
        // A status allowed in several states belongs to the one it is the default of (quote "In Progress" 2 is
        // state 1's default), else to the first that allows it.
        let allowed = |s: i64| dv_schema::status_allowed(t, s, *v) && (is_documented(t) || s == v - 1);
        let state = states
            .iter()
            .find(|(s, _, d)| d == v && allowed(*s))
            .or_else(|| states.iter().find(|(s, _, _)| allowed(*s)))
            .map(|(s, _, _)| *s);
        if let Some(s) = state {
            out.push((*v, *label, s));
        }
    }
    out
}

fn is_documented(t: &Table) -> bool {
    matches!(t.logical, "quote" | "salesorder" | "invoice" | "product")
}

/// Human labels of the state names `state_label` gives in code form.
pub(crate) fn state_display(name: &str) -> String {
    match name {
        "UnderRevision" => "Under Revision".into(),
        n => n.to_string(),
    }
}
