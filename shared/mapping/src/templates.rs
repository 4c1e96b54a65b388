//! The built-in templates, one function per Data Integrator task, each a transcription of its table in
//! `spec/templates.md` section 5 (same rows, same order; F&O fields by their case-sensitive wire names).

use serde_json::Value;

use crate::template::build::{bool_map, copy, copy_or, country, country_code, default, truncate, value_map};
use crate::template::{Filter, Role, Template};

/// Every flow p2c has or will have (DESIGN.md); the sections a P2C_MAPPING file may contain.
pub const KNOWN_FLOWS: &[&str] = &[
    "accounts-to-fno",
    "contacts-to-fno",
    "products-to-sales",
    "quotes-to-fno",
    "orders-to-fno",
    "orders-to-sales",
    "invoices-to-sales",
];

/// F&O unit symbol -> Sales unit name, for every unit row: products, price list items, order and invoice lines
/// (and read backwards, Sales unit name -> F&O symbol, on quote and order lines to F&O).
///
/// Built in: no entries, so a Sales unit is found by the F&O symbol itself (matched ignoring case). That is the
/// docs' prerequisite ("every F&O selling UoM must exist in Sales") and how the demo data is set up (units `ea`,
/// `pcs`, `hr` in the unit group "Default unit"). Where Sales names units differently, add entries in
/// P2C_MAPPING on each unit row, e.g. `"ea" = "Each"` on `defaultuomid.name` and `"Each" = "ea"` on
/// `SalesUnitSymbol` (see the README).
pub const UNIT_NAMES: &[(&str, &str)] = &[];

/// Currency (ISO code) -> Sales price list name: a product's default price list and its price list item, and an
/// invoice's price list. The P2C plug-in took the first price list of the currency by name; p2c names it, so it
/// is predictable. A currency without an entry is refused with a value-map error (the docs: without a price list
/// per currency, product sync fails). Orders take the constant of table 5.5c instead.
pub const PRICE_LISTS: &[(&str, &str)] = &[("USD", DEMO_PRICE_LIST)];

/// The price list of the docs and the demo data.
const DEMO_PRICE_LIST: &str = "CRM Service USA (sample)";

/// F&O `SalesOrderProcessingStatus` -> Sales `msdynce_processingstatus` (spec/templates.md section 4). The docs do not
/// show the map; these are the nearest P2C options. Unused P2C options: Packing Slip, Partially Picked,
/// Partially Packed (F&O has no such processing status) and Draft (Sales-only).
pub const PROCESSING_STATUS: &[(&str, i64)] = &[
    ("Active", 647_390_000),                     // Active
    ("Confirmed", 647_390_001),                  // Confirmed
    ("Picked", 647_390_004),                     // Picked
    ("PartiallyDelivered", 647_390_008),         // Partially Shipped
    ("Delivered", 647_390_007),                  // Shipped (packing slip posted)
    ("Invoiced", 647_390_003),                   // Invoiced
    ("PartiallyInvoiced", 647_390_009),          // Partially Invoiced
    ("Canceled", 647_390_010),                   // Cancelled
    ("DeliveredPartiallyInvoiced", 647_390_009), // Partially Invoiced: invoicing is the later step
];

/// F&O processing statuses that count as "Confirmed or further along" (5.5): every one but Active. Canceled
/// is included so that an order cancelled after confirmation reaches Sales as Cancelled.
const CONFIRMED_OR_LATER: &[&str] = &[
    "Confirmed",
    "Picked",
    "PartiallyDelivered",
    "Delivered",
    "Invoiced",
    "PartiallyInvoiced",
    "Canceled",
    "DeliveredPartiallyInvoiced",
];

/// Sales `msdynce_processingstatus` Active: an order activated in Sales (no longer Draft), not yet confirmed.
const P2C_ACTIVE: i64 = 647_390_000;
/// Sales quote `statecode` Active.
const QUOTE_ACTIVE: i64 = 1;
/// Sales sales order `statecode` Active.
const ORDER_ACTIVE: i64 = 0;

/// The Customer lookup of quotes, orders and invoices, by the Data Integrator's path: the account's number when
/// the customer is an account, the contact's number when it is a contact.
const CUSTOMER: &str = "customerid.Account(accountnumber).Contact(msdynce_contactnumber)";

/// All built-in templates: accounts first, then flow by flow (in `KNOWN_FLOWS` order), each flow in run order.
pub fn builtin_templates() -> Vec<Template> {
    vec![
        accounts_to_customers(),
        contacts_to_contact_persons(),
        contacts_to_customers(),
        products_to_sales(),
        products_to_price_list_items(),
        quote_headers_to_fno(),
        quote_lines_to_fno(),
        order_headers_to_fno(),
        order_lines_to_fno(),
        order_headers_to_sales(),
        order_lines_to_sales(),
        invoice_headers_to_sales(),
        invoice_lines_to_sales(),
    ]
}

/// The built-in templates of one flow, in the order they run: single or header first, then lines or
/// companions (see [`Template::role`]).
pub fn templates_for(flow: &str) -> Vec<Template> {
    builtin_templates().into_iter().filter(|t| t.flow == flow).collect()
}

/// The built-in template of `flow` named `task` (e.g. "quotes-to-fno", "QuoteLine").
pub fn template(flow: &str, task: &str) -> Option<Template> {
    builtin_templates()
        .into_iter()
        .find(|t| t.flow == flow && t.name == task)
}

/// Value-map entries as `&str -> &str` pairs.
fn names(entries: &[(&'static str, &'static str)]) -> Vec<(&'static str, Value)> {
    entries.iter().map(|(k, v)| (*k, Value::from(*v))).collect()
}

/// The same entries read backwards (Sales unit name -> F&O unit symbol).
fn reversed(entries: &[(&'static str, &'static str)]) -> Vec<(&'static str, Value)> {
    entries.iter().map(|(k, v)| (*v, Value::from(*k))).collect()
}

/// 5.1 Accounts (Sales to Fin and Ops) - Direct, task `Accounts - Customers`: Sales `account` -> F&O `CustomersV2`.
///
/// Choices where the table says "(not shown)":
/// - SalesCurrencyCode: a plain copy of the currency's ISO code; F&O currency codes are ISO 4217 codes.
/// - AddressCountryRegionISOCode / DeliveryAddressCountryRegionISOCode: the built-in country table, blank = "US"
///   (the CDS-era default was USA; the quote and order templates document "blank = US").
/// - PartyType: "Organization", the doc's own Default example; accounts are organisations.
/// - AddressLocationRoles: "Business", the role F&O gives a party's main address; address2 goes to the delivery
///   fields, which make their own delivery address. Change it in P2C_MAPPING (e.g. "Business;Invoice").
/// - AddressDescription / DeliveryAddressDescription: the name cut to F&O's 60 characters (Data Integrator's
///   Truncate), so a 61–100 character account name, valid as OrganizationName, does not fail the customer.
pub fn accounts_to_customers() -> Template {
    Template {
        name: "Accounts - Customers".into(),
        flow: "accounts-to-fno".into(),
        source_entity: "accounts".into(),
        target_entity: "CustomersV2".into(),
        source_key: "accountnumber".into(),
        source_id: "accountid".into(),
        target_key: vec!["dataAreaId".into(), "CustomerAccount".into()],
        role: Role::Single,
        parent_key: None,
        // No funnel icon in the screenshot: no source filter (so no customertypecode filter either). Accounts
        // without an accountnumber are refused by `key_of` (MissingKey), which is a key check, not a filter.
        filter: None,
        fields: vec![
            copy("creditlimit", "CreditLimit"),
            default("CustomerGroupId", "10"), // docs: change to a valid customer group
            copy("fax", "PrimaryContactFax"),
            copy("numberofemployees", "OrganizationNumberOfEmployees"),
            copy("transactioncurrencyid.isocurrencycode", "SalesCurrencyCode"),
            copy("accountnumber", "CustomerAccount"), // key
            copy("address1_city", "AddressCity"),
            country("address1_country", "AddressCountryRegionISOCode", "US"),
            copy("description", "SalesMemo"),
            copy("emailaddress1", "PrimaryContactEmail"),
            copy("address1_line1", "AddressStreet"),
            default("PartyType", "Organization"),
            copy("telephone1", "PrimaryContactPhone"),
            copy("address1_postalcode", "AddressZipCode"),
            copy("address1_stateorprovince", "AddressState"),
            copy("websiteurl", "PrimaryContactURL"),
            default("AddressLocationRoles", "Business"),
            copy("name", "OrganizationName"),
            default("SiteId", "1"),
            default("WarehouseId", "13"),
            default("LanguageId", "en-us"),
            copy("accountnumber", "PartyNumber"),
            truncate("name", "AddressDescription", 60), // F&O keeps 60; a long name must not fail the customer
            default("IsExternallyMaintained", "Yes"),   // orders and invoices are later filtered on this flag
            copy("address2_line1", "DeliveryAddressStreet"),
            copy("address2_city", "DeliveryAddressCity"),
            country("address2_country", "DeliveryAddressCountryRegionISOCode", "US"),
            copy("address2_postalcode", "DeliveryAddressZipCode"),
            copy("address2_stateorprovince", "DeliveryAddressState"),
            truncate("name", "DeliveryAddressDescription", 60),
        ],
    }
}

/// 5.3a Contacts (Sales to Fin and Ops) - Direct, task `Contacts`: Sales `contact` -> F&O `CDSContactPersons`,
/// for contacts that are not active customers and whose company is an account.
///
/// Choices where the table says "(not shown)" or "(inferred)":
/// - Source filter: `msdynce_isactivecustomer ne true and msdynce_iscompanyanaccount eq true` (the docs' routing
///   rule; `ne true` so a contact from before P2C, with no flag, counts as not active).
/// - Gender: option set 1 Male -> `Male`, 2 Female -> `Female`; other values are refused with a value-map error.
/// - PrimaryAddressCountryRegionISOCode: the built-in country table, blank = "US" (CDS-era default USA).
/// - ContactPersonPartyType: "Person"; a contact person is a person party.
/// - MaritalStatus: 1 Single, 2 Married, 3 Divorced, 4 Widowed -> `Single`, `Married`, `Divorced`, `Widowhood`.
/// - IsReceivingDirectMail: `donotemail` inverted (do not allow e-mails = Yes -> `No`).
/// - IsInactive: statecode 0 Active -> `No`, 1 Inactive -> `Yes`.
pub fn contacts_to_contact_persons() -> Template {
    Template {
        name: "Contacts".into(),
        flow: "contacts-to-fno".into(),
        source_entity: "contacts".into(),
        target_entity: "CDSContactPersons".into(),
        source_key: "msdynce_contactnumber".into(),
        source_id: "contactid".into(),
        target_key: vec![
            "dataAreaId".into(),
            "ContactPersonPartyNumber".into(),
            "AssociatedPartyNumber".into(),
        ],
        role: Role::Single,
        parent_key: None,
        filter: Some(Filter::And(vec![
            Filter::ne("msdynce_isactivecustomer", true),
            Filter::eq("msdynce_iscompanyanaccount", true),
        ])),
        fields: vec![
            copy("department", "EmploymentDepartment"),
            copy("description", "Notes"),
            copy("emailaddress1", "PrimaryEmailAddress"),
            value_map("gendercode", "Gender", &[("1", "Male"), ("2", "Female")]),
            copy("governmentid", "GovernmentIdentificationNumber"),
            copy("firstname", "FirstName"),
            copy("lastname", "LastName"),
            copy("msdynce_contactnumber", "ContactPersonPartyNumber"), // key
            copy("address1_city", "PrimaryAddressCity"),
            country("address1_country", "PrimaryAddressCountryRegionISOCode", "US"),
            copy("middlename", "MiddleName"),
            copy("address1_line1", "PrimaryAddressStreet"),
            default("ContactPersonPartyType", "Person"),
            copy("telephone1", "PrimaryPhoneNumber"),
            copy("address1_postalcode", "PrimaryAddressZipCode"),
            copy("address1_stateorprovince", "PrimaryAddressStateId"),
            copy("websiteurl", "PrimaryURL"),
            value_map(
                "familystatuscode",
                "MaritalStatus",
                &[("1", "Single"), ("2", "Married"), ("3", "Divorced"), ("4", "Widowhood")],
            ),
            bool_map("donotemail", "IsReceivingDirectMail", "No", "Yes"), // inverted
            copy("jobtitle", "EmploymentProfession"),
            value_map("statecode", "IsInactive", &[("0", "No"), ("1", "Yes")]),
            copy(
                "parentcustomerid.Account(accountnumber).Contact(msdynce_contactnumber)",
                "AssociatedPartyNumber",
            ), // key: the parent account's number, which is its F&O party number
            default("IsContactPersonExternallyMaintained", "Yes"),
        ],
    }
}

/// 5.3b Contacts to Customer (Sales to Fin and Ops) - Direct, task `ContactToCustomer`: Sales `contact` -> F&O
/// `CustomersV2`, for contacts that are active customers (they have quotes, orders or invoices).
///
/// Choices where the table says "(not shown)" or "(inferred)":
/// - Source filter: `msdynce_isactivecustomer eq true`.
/// - SalesCurrencyCode: a plain copy of the currency's ISO code, as for accounts.
/// - AddressCountryRegionISOCode: the built-in country table, blank = "US".
/// - PartyType: "Person".
/// - AddressDescription: the full name cut to F&O's 60 characters, as for accounts.
pub fn contacts_to_customers() -> Template {
    Template {
        name: "ContactToCustomer".into(),
        flow: "contacts-to-fno".into(),
        source_entity: "contacts".into(),
        target_entity: "CustomersV2".into(),
        source_key: "msdynce_contactnumber".into(),
        source_id: "contactid".into(),
        target_key: vec!["dataAreaId".into(), "CustomerAccount".into()],
        role: Role::Single,
        parent_key: None,
        filter: Some(Filter::eq("msdynce_isactivecustomer", true)),
        fields: vec![
            copy("firstname", "PersonFirstName"),
            copy("middlename", "PersonMiddleName"),
            copy("lastname", "PersonLastName"),
            copy("creditlimit", "CreditLimit"),
            default("CustomerGroupId", "10"), // docs: change to a valid customer group
            copy("fax", "PrimaryContactFax"),
            copy("transactioncurrencyid.isocurrencycode", "SalesCurrencyCode"),
            copy("msdynce_contactnumber", "CustomerAccount"), // key
            copy("address1_city", "AddressCity"),
            country("address1_country", "AddressCountryRegionISOCode", "US"),
            copy("description", "SalesMemo"),
            copy("emailaddress1", "PrimaryContactEmail"),
            copy("address1_line1", "AddressStreet"),
            default("PartyType", "Person"),
            copy("telephone1", "PrimaryContactPhone"),
            copy("address1_postalcode", "AddressZipCode"),
            copy("address1_stateorprovince", "AddressState"),
            copy("websiteurl", "PrimaryContactURL"),
            truncate("fullname", "AddressDescription", 60),
            default("LanguageId", "en-us"),
            copy("msdynce_contactnumber", "PartyNumber"),
            default("IsExternallyMaintained", "Yes"),
        ],
    }
}

/// 5.2 Products (Fin and Ops to Sales) - Direct, task `Products`: F&O `SellableReleasedProducts` -> Sales
/// `product`. No source filter: the entity returns only sellable products.
///
/// Lookups are written under their paths and bound by the pipeline (see `Template`): the currency by ISO code,
/// the unit by name in `uoms`, the unit group by name in `uomschedules`, the price list by name in `pricelevels`.
///
/// Choices where the table says "(not shown)":
/// - defaultuomid.name: [`UNIT_NAMES`], ignoring case; symbols not listed are looked up as they are.
/// - isstockitem: IsStockedProduct `Yes` -> true, `No` -> false.
/// - producttypecode: `Item` -> 1 (Sales Inventory), `Service` -> 3 (Services). Miscellaneous Charges (2) and
///   Flat Fees (4) have no F&O product type.
/// - quantitydecimal: SalesUnitDecimalPrecision copied; 0 when blank (the CDS-era template default). Sales
///   allows 0-5.
/// - pricelevelid.name (the docs' optional row): [`PRICE_LISTS`] by currency; a currency without a price list
///   is refused.
pub fn products_to_sales() -> Template {
    Template {
        name: "Products".into(),
        flow: "products-to-sales".into(),
        source_entity: "SellableReleasedProducts".into(),
        target_entity: "products".into(),
        source_key: "ProductNumber".into(),
        source_id: "ProductNumber".into(),
        target_key: vec!["productnumber".into()],
        role: Role::Single,
        parent_key: None,
        filter: None,
        fields: vec![
            copy("CurrencyCode", "transactioncurrencyid.isocurrencycode"),
            copy("ProductDescription", "description"),
            copy("ProductName", "name"),
            copy("ProductNumber", "productnumber"), // key
            value_map("SalesUnitSymbol", "defaultuomid.name", &names(UNIT_NAMES))
                .ignore_case()
                .keep_unmapped(),
            copy("SalesPrice", "price"),
            copy("UnitCost", "currentcost"),
            value_map("IsStockedProduct", "isstockitem", &[("Yes", true), ("No", false)]),
            value_map("ProductType", "producttypecode", &[("Item", 1), ("Service", 3)]),
            default("defaultuomscheduleid.name", "Default unit"), // change to match your Sales unit groups
            default("msdynce_ismaintainedexternally", true),
            copy_or("SalesUnitDecimalPrecision", "quantitydecimal", 0),
            value_map("CurrencyCode", "pricelevelid.name", &names(PRICE_LISTS)), // optional row of the docs
        ],
    }
}

/// The price list item of a product (task `ProductPriceListItem`, a companion of `Products`): F&O
/// `SellableReleasedProducts` -> Sales `productpricelevel`, written after the product. Not a Data Integrator
/// task: the P2C plug-in in Sales made this record (section 4, "Products"); p2c has no plug-in, so the
/// products flow writes it, from the same F&O record.
///
/// Key in Sales: price list, product and unit (`pricelevelid`, `productid`, `uomid`), which Sales keeps unique.
///
/// Choices (the docs show no such table):
/// - pricelevelid.name: [`PRICE_LISTS`] by currency, the same as the product's default price list.
/// - uomid.name: the product's unit, by [`UNIT_NAMES`].
/// - amount: the F&O sales price.
/// - pricingmethodcode 1 (Currency Amount) and quantitysellingcode 1 (No Control): the Sales defaults for a
///   fixed price.
pub fn products_to_price_list_items() -> Template {
    Template {
        name: "ProductPriceListItem".into(),
        flow: "products-to-sales".into(),
        source_entity: "SellableReleasedProducts".into(),
        target_entity: "productpricelevels".into(),
        source_key: "ProductNumber".into(),
        source_id: "ProductNumber".into(),
        target_key: vec![
            "pricelevelid.name".into(),
            "productid.productnumber".into(),
            "uomid.name".into(),
        ],
        role: Role::Companion,
        parent_key: None,
        filter: None,
        fields: vec![
            value_map("CurrencyCode", "pricelevelid.name", &names(PRICE_LISTS)),
            copy("ProductNumber", "productid.productnumber"),
            value_map("SalesUnitSymbol", "uomid.name", &names(UNIT_NAMES))
                .ignore_case()
                .keep_unmapped(),
            copy("SalesPrice", "amount"),
            default("pricingmethodcode", 1),   // Currency Amount
            default("quantitysellingcode", 1), // No Control
        ],
    }
}

/// 5.4 Sales Quotes (Sales to Fin and Ops) - Direct, task `QuoteHeader`: Sales `quote` -> F&O
/// `CDSSalesQuotationHeaders`, for active quotes made only of externally maintained products.
///
/// Rows 6 and 7 are kept as the screenshot shows them: `billto_line2` and `billto_postalcode` feed the *delivery*
/// street number and ZIP code (a quirk of Microsoft's template). Replace them in P2C_MAPPING to send the ship-to
/// values (see the README).
///
/// Choices where the table says "(not shown)" or "(inferred)":
/// - Source filter: `msdynce_hasexternallymaintainedproductsonly eq true and statecode eq 1` (Active).
/// - DeliveryAddressCountryRegionISOCode: the built-in country table, blank = "US" (the docs' "blank -> US").
/// - DeliveryAddressName: the quote's `shipto_name` (the screenshot shows no source): a constant would print as
///   the addressee on every delivery; blank leaves F&O's default (the customer's name).
/// - IsDeliveryAddressOrderSpecific: "Yes", so F&O keeps the Sales ship-to as the quotation's own address instead
///   of changing the customer's addresses.
/// - DeliveryAddressDescription: "Sales ship-to address", the label of that address in F&O.
pub fn quote_headers_to_fno() -> Template {
    Template {
        name: "QuoteHeader".into(),
        flow: "quotes-to-fno".into(),
        source_entity: "quotes".into(),
        target_entity: "CDSSalesQuotationHeaders".into(),
        source_key: "quotenumber".into(),
        source_id: "quoteid".into(),
        target_key: vec!["dataAreaId".into(), "SalesQuotationNumber".into()],
        role: Role::Header,
        parent_key: None,
        filter: Some(Filter::And(vec![
            Filter::eq("msdynce_hasexternallymaintainedproductsonly", true),
            Filter::eq("statecode", QUOTE_ACTIVE),
        ])),
        fields: vec![
            copy(CUSTOMER, "RequestingCustomerAccountNumber"),
            copy("shipto_city", "DeliveryAddressCity"),
            country("shipto_country", "DeliveryAddressCountryRegionISOCode", "US"),
            copy("transactioncurrencyid.isocurrencycode", "CurrencyCode"),
            copy("shipto_line1", "DeliveryAddressStreet"),
            copy("billto_line2", "DeliveryAddressStreetNumber"), // as in the screenshot
            copy("billto_postalcode", "DeliveryAddressZipCode"), // as in the screenshot
            copy("quotenumber", "SalesQuotationNumber"),         // key
            copy("shipto_stateorprovince", "DeliveryAddressStateId"),
            copy("totalamount", "QuotationTotalAmount"),
            copy("name", "SalesQuotationName"),
            copy("shipto_name", "DeliveryAddressName"), // not shown
            default("IsDeliveryAddressOrderSpecific", "Yes"),
            default("DeliveryAddressDescription", "Sales ship-to address"),
        ],
    }
}

/// 5.4 Sales Quotes (Sales to Fin and Ops) - Direct, task `QuoteLine`: Sales `quotedetail` -> F&O
/// `CDSSalesQuotationLines`, keyed by the quote number and `sequencenumber` <-> `LineCreationSequenceNumber`.
///
/// The line discount is sent whole (`manualdiscountamount` -> `TotalDiscountAmount`); F&O splits it into a
/// per-unit discount and a charge (see [`crate::money`]).
///
/// Choices where the table says "(not shown)" or "(inferred)":
/// - Source filter: `msdynce_quotehasexternalmaintainedproductsonly eq true and quoteid.statecode eq 1`: the
///   line's own copy of the header flag, and its quote Active (read through the `quoteid` lookup, so a line of a
///   draft quote is filtered like its header).
/// - SalesUnitSymbol: [`UNIT_NAMES`] read backwards, ignoring case; names not listed are sent as they are.
pub fn quote_lines_to_fno() -> Template {
    Template {
        name: "QuoteLine".into(),
        flow: "quotes-to-fno".into(),
        source_entity: "quotedetails".into(),
        target_entity: "CDSSalesQuotationLines".into(),
        source_key: "sequencenumber".into(),
        source_id: "quotedetailid".into(),
        target_key: vec![
            "dataAreaId".into(),
            "LineCreationSequenceNumber".into(),
            "SalesQuotationNumber".into(),
        ],
        role: Role::Line,
        parent_key: Some("quoteid.quotenumber".into()),
        filter: Some(Filter::And(vec![
            Filter::eq("msdynce_quotehasexternalmaintainedproductsonly", true),
            Filter::eq("quoteid.statecode", QUOTE_ACTIVE),
        ])),
        fields: vec![
            copy("productid.productnumber", "ProductNumber"),
            copy("quantity", "RequestedSalesQuantity"),
            copy("quoteid.quotenumber", "SalesQuotationNumber"), // key part
            copy("sequencenumber", "LineCreationSequenceNumber"), // key part
            value_map("uomid.name", "SalesUnitSymbol", &reversed(UNIT_NAMES))
                .ignore_case()
                .keep_unmapped(),
            copy("manualdiscountamount", "TotalDiscountAmount"),
            copy("priceperunit", "SalesPrice"),
        ],
    }
}

/// 5.5a Sales Orders (Sales to Fin and Ops) - Direct, task `OrderHeader`: Sales `salesorder` -> F&O
/// `CDSSalesOrderHeaders`, for orders activated in Sales and made only of externally maintained products.
///
/// Choices where the table says "(not shown)" or "(inferred)":
/// - Source filter: `msdynce_hasexternallymaintainedproductsonly eq true and statecode eq 0 and
///   msdynce_processingstatus eq 647390000`: an Active order whose P2C processing status is Active, i.e.
///   activated (no longer Draft) and not yet confirmed in F&O. Once F&O reports Confirmed or later, F&O owns the
///   order and Sales stops sending it, so F&O's updates never echo back.
/// - DeliveryAddressCountryRegionISOCode: the built-in country table, blank = "US".
/// - DeliveryAddressName, IsDeliveryAddressOrderSpecific, DeliveryAddressDescription: as for quotes
///   (`shipto_name`, "Yes", "Sales ship-to address").
pub fn order_headers_to_fno() -> Template {
    Template {
        name: "OrderHeader".into(),
        flow: "orders-to-fno".into(),
        source_entity: "salesorders".into(),
        target_entity: "CDSSalesOrderHeaders".into(),
        source_key: "ordernumber".into(),
        source_id: "salesorderid".into(),
        target_key: vec!["dataAreaId".into(), "SalesOrderNumber".into()],
        role: Role::Header,
        parent_key: None,
        filter: Some(Filter::And(vec![
            Filter::eq("msdynce_hasexternallymaintainedproductsonly", true),
            Filter::eq("statecode", ORDER_ACTIVE),
            Filter::eq("msdynce_processingstatus", P2C_ACTIVE),
        ])),
        fields: vec![
            copy(CUSTOMER, "OrderingCustomerAccountNumber"),
            copy("shipto_city", "DeliveryAddressCity"),
            country("shipto_country", "DeliveryAddressCountryRegionISOCode", "US"),
            copy("transactioncurrencyid.isocurrencycode", "CurrencyCode"),
            copy("shipto_line1", "DeliveryAddressStreet"),
            copy("shipto_postalcode", "DeliveryAddressZipCode"),
            copy("ordernumber", "SalesOrderNumber"), // key
            copy("shipto_line2", "DeliveryAddressStreetNumber"),
            copy("shipto_stateorprovince", "DeliveryAddressStateId"),
            copy("totalamount", "OrderTotalAmount"),
            copy("name", "CustomersOrderReference"),
            copy("shipto_name", "DeliveryAddressName"), // not shown
            default("IsDeliveryAddressOrderSpecific", "Yes"),
            default("DeliveryAddressDescription", "Sales ship-to address"),
        ],
    }
}

/// 5.5b Sales Orders (Sales to Fin and Ops) - Direct, task `OrderLine`: Sales `salesorderdetail` -> F&O
/// `CDSSalesOrderLines`, keyed by the order number and `sequencenumber` <-> `LineCreationSequenceNumber`.
///
/// Choices where the table says "(not shown)" or "(inferred)":
/// - Source filter: `msdynce_orderhasexternalmaintainedproductsonly eq true and
///   salesorderid.msdynce_processingstatus eq 647390000`: the line's copy of the header flag, and its order
///   activated and not yet confirmed (read through the `salesorderid` lookup), like the header.
/// - SalesUnitSymbol: [`UNIT_NAMES`] read backwards, ignoring case; names not listed are sent as they are.
pub fn order_lines_to_fno() -> Template {
    Template {
        name: "OrderLine".into(),
        flow: "orders-to-fno".into(),
        source_entity: "salesorderdetails".into(),
        target_entity: "CDSSalesOrderLines".into(),
        source_key: "sequencenumber".into(),
        source_id: "salesorderdetailid".into(),
        target_key: vec![
            "dataAreaId".into(),
            "SalesOrderNumber".into(),
            "LineCreationSequenceNumber".into(),
        ],
        role: Role::Line,
        parent_key: Some("salesorderid.ordernumber".into()),
        filter: Some(Filter::And(vec![
            Filter::eq("msdynce_orderhasexternalmaintainedproductsonly", true),
            Filter::eq("salesorderid.msdynce_processingstatus", P2C_ACTIVE),
        ])),
        fields: vec![
            copy("productid.productnumber", "ProductNumber"),
            copy("quantity", "OrderedSalesQuantity"),
            copy("salesorderid.ordernumber", "SalesOrderNumber"), // key part
            copy("sequencenumber", "LineCreationSequenceNumber"), // key part
            value_map("uomid.name", "SalesUnitSymbol", &reversed(UNIT_NAMES))
                .ignore_case()
                .keep_unmapped(),
            copy("manualdiscountamount", "TotalDiscountAmount"),
            copy("priceperunit", "SalesPrice"),
        ],
    }
}

/// The F&O -> Sales order filter of 5.5, on a header (`AreTotalsUpdated`) or a line (`AreSalesOrderTotalsUpdated`):
/// confirmed or later, both customers from Sales, totals calculated, and not a Field Service work order.
fn confirmed_orders(totals_flag: &str) -> Filter {
    Filter::And(vec![
        Filter::is_in("SalesOrderProcessingStatus", CONFIRMED_OR_LATER.iter().copied()),
        Filter::eq("OrderingCustomerIsExternallyMaintained", "Yes"),
        Filter::eq("InvoiceCustomerIsExternallyMaintained", "Yes"),
        Filter::eq(totals_flag, "Yes"),
        Filter::ne("SalesOrderOriginType", "WorkOrderIntegration"),
    ])
}

/// 5.5c Sales Orders (Fin and Ops to Sales) - Direct, task `OrderHeader`: F&O `CDSSalesOrderHeaders` -> Sales
/// `salesorder`, for confirmed orders of customers that came from Sales, once their totals are calculated.
///
/// Dataverse refuses `statecode` on create: send the body without it and set the state right after
/// (`split_state`).
///
/// Choices where the table says "(not shown)" or "(inferred)":
/// - Source filter: SalesOrderProcessingStatus Confirmed or later (every status but Active; Canceled included, so
///   a cancellation reaches Sales), OrderingCustomerIsExternallyMaintained and
///   InvoiceCustomerIsExternallyMaintained `Yes`, AreTotalsUpdated `Yes`, and SalesOrderOriginType not
///   `WorkOrderIntegration` (the docs' Field Service exclusion; harmless without Field Service).
/// - billto_country: the built-in country table on InvoiceAddressCountryRegionId (F&O's region ids, e.g. "USA"),
///   giving ISO codes like the copied `shipto_country`; blank writes nothing.
/// - msdynce_processingstatus: [`PROCESSING_STATUS`].
/// - statuscode: 1 (New), the default status of Active (dual-write uses the same).
/// - pricelevelid.name: the docs' Default; the flow picks the first valid price list of the order's currency
///   instead (the products rule, spec/templates.md 4 and 6: "a value map per currency if several currencies"),
///   unless P2C_MAPPING sets the row.
/// - The row cut off at the bottom of the screenshot is unknown and left out.
///
/// Added from spec/templates.md 4 (the P2C solution, not the screenshot): `OrderHeaderTaxAmount` ->
/// `msdynce_misctax`, the header tax that the flow brings in as the write-in "Freight Tax" line.
pub fn order_headers_to_sales() -> Template {
    Template {
        name: "OrderHeader".into(),
        flow: "orders-to-sales".into(),
        source_entity: "CDSSalesOrderHeaders".into(),
        target_entity: "salesorders".into(),
        source_key: "SalesOrderNumber".into(),
        source_id: "SalesOrderNumber".into(),
        target_key: vec!["ordernumber".into()],
        role: Role::Header,
        parent_key: None,
        filter: Some(confirmed_orders("AreTotalsUpdated")),
        fields: vec![
            copy("DeliveryAddressCity", "shipto_city"),
            copy("InvoiceAddressCity", "billto_city"),
            copy("DeliveryAddressCountryRegionISOCode", "shipto_country"),
            country_code("InvoiceAddressCountryRegionId", "billto_country"),
            copy("CustomersOrderReference", "description"),
            copy("DeliveryAddressStreetNumber", "shipto_line2"),
            copy("InvoiceAddressStreetNumber", "billto_line2"),
            value_map(
                "SalesOrderProcessingStatus",
                "msdynce_processingstatus",
                PROCESSING_STATUS,
            ),
            copy("DeliveryAddressZipCode", "shipto_postalcode"),
            copy("InvoiceAddressZipCode", "billto_postalcode"),
            copy("DeliveryAddressStreet", "shipto_line1"),
            copy("InvoiceAddressStreet", "billto_line1"),
            copy("DeliveryAddressStateId", "shipto_stateorprovince"),
            copy("InvoiceAddressStateId", "billto_stateorprovince"),
            copy("SalesOrderName", "name"),
            copy("CurrencyCode", "transactioncurrencyid.isocurrencycode"),
            copy("OrderTotalAmount", "totalamount"),
            copy("TotalDiscountAmount", "discountamount"),
            copy("OrderTotalTaxAmount", "totaltax"),
            copy("OrderTotalChargesAmount", "freightamount"),
            copy("SalesOrderNumber", "ordernumber"), // key
            copy("OrderingCustomerAccountNumber", CUSTOMER),
            default("statecode", ORDER_ACTIVE), // keeps the order open for later updates
            default("statuscode", 1),
            default("msdynce_ismaintainedexternally", true),
            default("pricelevelid.name", DEMO_PRICE_LIST), // a value map per currency if several currencies
            copy("OrderHeaderTaxAmount", "msdynce_misctax"), // spec 4: header tax, the "Freight Tax" line
        ],
    }
}

/// 5.5d Sales Orders (Fin and Ops to Sales) - Direct, task `OrderLine`: F&O `CDSSalesOrderLines` -> Sales
/// `salesorderdetail`, keyed by the order number and `LineCreationSequenceNumber` <-> `sequencenumber`.
///
/// Choices where the table says "(not shown)" or "(inferred)":
/// - Source filter: as the header's, with the line's AreSalesOrderTotalsUpdated.
/// - extendedamount: a plain copy of LineAmount. Sales' system pricing recalculates it (price × quantity -
///   discount + tax) anyway.
/// - uomid.name: [`UNIT_NAMES`], ignoring case; symbols not listed are looked up as they are.
/// - ispriceoverridden: true, so Sales keeps F&O's price.
pub fn order_lines_to_sales() -> Template {
    Template {
        name: "OrderLine".into(),
        flow: "orders-to-sales".into(),
        source_entity: "CDSSalesOrderLines".into(),
        target_entity: "salesorderdetails".into(),
        source_key: "LineCreationSequenceNumber".into(),
        source_id: "SalesOrderNumber".into(),
        target_key: vec!["salesorderid.ordernumber".into(), "sequencenumber".into()],
        role: Role::Line,
        parent_key: Some("SalesOrderNumber".into()),
        filter: Some(confirmed_orders("AreSalesOrderTotalsUpdated")),
        fields: vec![
            copy("CurrencyCode", "transactioncurrencyid.isocurrencycode"),
            copy("DeliveryAddressCity", "shipto_city"),
            copy("DeliveryAddressCountryRegionISOCode", "shipto_country"),
            copy("DeliveryAddressStateId", "shipto_stateorprovince"),
            copy("DeliveryAddressStreet", "shipto_line1"),
            copy("DeliveryAddressStreetNumber", "shipto_line2"),
            copy("DeliveryAddressZipCode", "shipto_postalcode"),
            copy("LineAmount", "extendedamount"),                 // not shown
            copy("LineCreationSequenceNumber", "sequencenumber"), // key part
            copy("OrderedSalesQuantity", "quantity"),
            copy("ProductName", "description"),
            copy("ProductNumber", "productid.productnumber"),
            copy("SalesOrderNumber", "salesorderid.ordernumber"), // key part
            copy("SalesOrderNumber", "msdynce_ordernumber"),
            value_map("SalesUnitSymbol", "uomid.name", &names(UNIT_NAMES))
                .ignore_case()
                .keep_unmapped(),
            copy("TotalDiscountAmount", "manualdiscountamount"),
            copy("TotalTaxAmount", "tax"),
            copy("SalesPrice", "priceperunit"),
            default("ispriceoverridden", true),
            default("msdynce_ismaintainedexternally", true),
        ],
    }
}

/// 5.6 Sales Invoices (Fin and Ops to Sales) - Direct, task `SalesInvoiceHeader`: F&O
/// `ExternallyMaintainedCustomerSalesInvoiceHeaders` -> Sales `invoice`, keyed by `InvoiceNumber` <->
/// `invoicenumber` (F&O's own key adds InvoiceDate and LedgerVoucher; Sales matches on the number).
///
/// Row 9 is kept as shown: `TotalDiscountCustomerGroupCode` (a decimal on the entity) -> `discountamount`.
///
/// Choices where the table says "(not shown)" or "(inferred)":
/// - Source filter: `SalesOrderNumber` not blank (dual-write's filter for the same entity): invoices of sales
///   orders, which the order flow has brought to Sales. The entity itself only returns invoices of customers
///   that came from Sales.
/// - pricelevelid.name: [`PRICE_LISTS`] by currency (the docs: USD = "CRM Service USA (sample)"); the flow picks
///   the first valid price list of the invoice's currency instead, as for products (spec/templates.md 4), so
///   every currency with a price list works, unless P2C_MAPPING sets the row.
/// - ispricelocked: true, so Sales does not reprice the invoice (the docs' "presumably true").
/// - statuscode: 4 (Billed): an F&O invoice is posted.
/// - The rows cut off at the bottom of the screenshot are unknown and left out.
///
/// Added from spec/templates.md 4 (the P2C solution, not the screenshot): `InvoiceHeaderTaxAmount` ->
/// `msdynce_misctax`, the header tax that the flow brings in as the write-in "Freight Tax" line.
pub fn invoice_headers_to_sales() -> Template {
    Template {
        name: "SalesInvoiceHeader".into(),
        flow: "invoices-to-sales".into(),
        source_entity: "ExternallyMaintainedCustomerSalesInvoiceHeaders".into(),
        target_entity: "invoices".into(),
        source_key: "InvoiceNumber".into(),
        source_id: "InvoiceNumber".into(),
        target_key: vec!["invoicenumber".into()],
        role: Role::Header,
        parent_key: None,
        filter: Some(Filter::not_blank("SalesOrderNumber")),
        fields: vec![
            copy("InvoiceCustomerAccountNumber", CUSTOMER),
            copy("InvoiceAddressStreet", "billto_line1"),
            copy("InvoiceAddressStreetNumber", "billto_line2"),
            copy("InvoiceAddressCity", "billto_city"),
            copy("InvoiceAddressCountryRegionISOCode", "billto_country"),
            copy("InvoiceAddressZipCode", "billto_postalcode"),
            copy("InvoiceAddressState", "billto_stateorprovince"),
            copy("CustomersOrderReference", "description"),
            copy("TotalDiscountCustomerGroupCode", "discountamount"), // as shown
            copy("CurrencyCode", "transactioncurrencyid.isocurrencycode"),
            copy("InvoiceDate", "msdynce_invoicedate"),
            copy("InvoiceNumber", "name"),
            copy("InvoiceNumber", "invoicenumber"), // key
            copy("SalesOrderNumber", "salesorderid.ordernumber"),
            copy("TotalInvoiceAmount", "totalamount"),
            value_map("CurrencyCode", "pricelevelid.name", &names(PRICE_LISTS)),
            copy("TotalChargeAmount", "freightamount"),
            copy("TotalDiscountAmount", "totaldiscountamount"),
            copy("TotalTaxAmount", "totaltax"),
            default("ispricelocked", true),
            default("statuscode", 4),                          // Billed
            copy("InvoiceHeaderTaxAmount", "msdynce_misctax"), // spec 4: header tax, the "Freight Tax" line
        ],
    }
}

/// 5.6 Sales Invoices (Fin and Ops to Sales) - Direct, task `SalesInvoiceLine`: F&O
/// `ExternallyMaintainedCustomerSalesInvoiceLines` -> Sales `invoicedetail`, keyed by the invoice number and
/// `LineCreationSequenceNumber` <-> `sequencenumber`. No filter of its own: a line goes with its header.
///
/// Choices where the table says "(not shown)":
/// - uomid.name: [`UNIT_NAMES`], ignoring case; symbols not listed are looked up as they are.
/// - producttypecode: 1 (Product); propertyconfigurationstatus: 2 (Not Configured); ispriceoverridden: true
///   (dual-write's defaults for the same lines).
pub fn invoice_lines_to_sales() -> Template {
    Template {
        name: "SalesInvoiceLine".into(),
        flow: "invoices-to-sales".into(),
        source_entity: "ExternallyMaintainedCustomerSalesInvoiceLines".into(),
        target_entity: "invoicedetails".into(),
        source_key: "LineCreationSequenceNumber".into(),
        source_id: "InvoiceNumber".into(),
        target_key: vec!["invoiceid.invoicenumber".into(), "sequencenumber".into()],
        role: Role::Line,
        parent_key: Some("InvoiceNumber".into()),
        filter: None,
        fields: vec![
            copy("LineCreationSequenceNumber", "sequencenumber"), // key part
            copy("InvoicedQuantity", "quantity"),
            value_map("SalesUnitSymbol", "uomid.name", &names(UNIT_NAMES))
                .ignore_case()
                .keep_unmapped(),
            copy("SalesPrice", "priceperunit"),
            copy("CurrencyCode", "transactioncurrencyid.isocurrencycode"),
            copy("LineTotalDiscountAmount", "manualdiscountamount"),
            copy("LineAmount", "extendedamount"),
            copy("LineTotalTaxAmount", "tax"),
            copy("ProductNumber", "productid.productnumber"),
            copy("InvoiceNumber", "msdynce_invoicenumber"),
            copy("InvoiceNumber", "invoiceid.invoicenumber"), // key part
            copy("ProductName", "description"),
            default("producttypecode", 1),             // Product
            default("propertyconfigurationstatus", 2), // Not Configured
            default("ispriceoverridden", true),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{FnoType, conform, fno_enum_members, fno_has_entity, fno_property};
    use crate::template::{Source, Transform, select_column};

    /// The values a filter compares `field` with (Eq, Ne, In), for each field it reads.
    fn filter_values(f: &Filter, out: &mut Vec<(String, Value)>) {
        match f {
            Filter::Eq { field, value } | Filter::Ne { field, value } => out.push((field.clone(), value.clone())),
            Filter::In { field, values } => out.extend(values.iter().map(|v| (field.clone(), v.clone()))),
            Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|f| filter_values(f, out)),
            Filter::Not(f) => filter_values(f, out),
            _ => {}
        }
    }

    /// F&O sources (F&O -> Sales) name real properties, and whatever is compared with or mapped from an F&O enum
    /// is one of its members; values written to F&O (value maps, booleans) fit their fields.
    #[test]
    fn fno_names_and_enum_values_match_metadata() {
        for t in builtin_templates() {
            let src_fno = fno_has_entity(&t.source_entity);
            let member = |field: &str, v: &str| -> bool {
                match fno_property(&t.source_entity, field).map(|p| &p.ty) {
                    Some(FnoType::Enum(e)) => fno_enum_members(e).is_some_and(|m| m.iter().any(|x| x == v)),
                    _ => true,
                }
            };
            if src_fno {
                let mut names: Vec<&str> = vec![&t.source_key, &t.source_id];
                names.extend(t.parent_key.as_deref());
                names.extend(t.fields.iter().filter_map(|f| f.source.path()));
                names.extend(t.filter.iter().flat_map(|f| f.fields()));
                for n in names {
                    assert!(
                        fno_property(&t.source_entity, n).is_some(),
                        "{}: {} has no {n}",
                        t.name,
                        t.source_entity
                    );
                }
                let mut compared = Vec::new();
                if let Some(f) = &t.filter {
                    filter_values(f, &mut compared);
                }
                for (field, v) in compared {
                    let v = v.as_str().unwrap_or_default().to_string();
                    assert!(member(&field, &v), "{}: filter {field} = {v} is no enum member", t.name);
                }
            }
            for fm in &t.fields {
                if let (true, Some(p), Transform::ValueMap { map, .. }) = (src_fno, fm.source.path(), &fm.transform) {
                    for k in map.keys() {
                        assert!(member(p, k), "{}: {p} = {k} is no enum member", t.name);
                    }
                }
                if !t.writes_fno() {
                    continue;
                }
                let outputs: Vec<&Value> = match &fm.transform {
                    Transform::ValueMap { map, .. } => map.values().collect(),
                    Transform::Bool { yes, no } => vec![yes, no],
                    _ => vec![],
                };
                for v in outputs {
                    assert!(
                        conform(&t.target_entity, &fm.target, v).is_ok(),
                        "{}.{} = {v}",
                        t.name,
                        fm.target
                    );
                }
            }
        }
    }

    #[test]
    fn every_builtin_target_and_constant_fits_fno() {
        for t in builtin_templates() {
            assert!(KNOWN_FLOWS.contains(&t.flow.as_str()), "{}", t.flow);
            if !fno_has_entity(&t.target_entity) {
                continue;
            }
            for fm in &t.fields {
                assert!(
                    fno_property(&t.target_entity, &fm.target).is_some(),
                    "{}.{}",
                    t.name,
                    fm.target
                );
                if let Transform::Default(v) = &fm.transform {
                    assert!(
                        conform(&t.target_entity, &fm.target, v).is_ok(),
                        "{}.{} = {v}",
                        t.name,
                        fm.target
                    );
                }
            }
            let mut targets: Vec<_> = t.fields.iter().map(|f| &f.target).collect();
            targets.sort();
            targets.dedup();
            assert_eq!(targets.len(), t.fields.len(), "{}: a target is mapped twice", t.name);
        }
    }

    #[test]
    fn accounts_select_and_lookups() {
        let t = accounts_to_customers();
        let sel = t.source_select();
        assert_eq!(&sel[..3], ["accountid", "accountnumber", "creditlimit"]);
        assert!(sel.contains(&"_transactioncurrencyid_value".to_string()));
        assert!(!sel.iter().any(|c| c.contains('.')));
        assert_eq!(sel.iter().filter(|c| *c == "name").count(), 1);
        let l = t.lookups();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].column, select_column(&l[0].path));
        assert_eq!(l[0].field, "isocurrencycode");
        assert!(t.fields.iter().all(|f| f.enabled));
        assert_eq!(t.fields.iter().filter(|f| f.source == Source::None).count(), 7);
        assert_eq!(t.fields.len(), 30, "table 5.1 has 30 rows");
    }
}
