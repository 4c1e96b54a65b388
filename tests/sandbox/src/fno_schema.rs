//! F&O entity shapes, loaded from `data/fno_schema.json` (a real `$metadata` snapshot), plus the
//! `CustomerGroups` entity the customer validation reads (it exists on every F&O, the snapshot just omits it).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::odata_filter::PType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FType {
    Str,
    Int32,
    Int64,
    Decimal,
    DateTime,
    Enum(String),
}

impl FType {
    pub fn ptype(&self) -> PType {
        match self {
            FType::Str => PType::Str,
            FType::Int32 | FType::Int64 => PType::Int,
            FType::Decimal => PType::Dec,
            FType::DateTime => PType::DateTime,
            FType::Enum(e) => PType::Enum(e.clone()),
        }
    }

    pub fn edm(&self) -> String {
        match self {
            FType::Str => "Edm.String".into(),
            FType::Int32 => "Edm.Int32".into(),
            FType::Int64 => "Edm.Int64".into(),
            FType::Decimal => "Edm.Decimal".into(),
            FType::DateTime => "Edm.DateTimeOffset".into(),
            FType::Enum(e) => format!("Microsoft.Dynamics.DataEntities.{e}"),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Prop {
    pub name: String,
    pub ty: FType,
    pub nullable: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Entity {
    pub set: String,
    pub type_name: String,
    pub keys: Vec<String>,
    pub props: Vec<Prop>,
    /// Entity sets over the same table share rows (a customer created through V2 is visible through V3).
    pub storage: String,
    index: HashMap<String, usize>,
}

impl Entity {
    pub fn prop(&self, name: &str) -> Option<&Prop> {
        self.index.get(name).map(|i| &self.props[*i])
    }

    pub fn qualified(&self) -> String {
        format!("Microsoft.Dynamics.DataEntities.{}", self.type_name)
    }

    /// The AOT entity named in `Write failed for table row of type '...'`.
    pub fn aot_name(&self) -> String {
        match self.set.as_str() {
            "CustomersV2" => "CustCustomerV2Entity".into(),
            "CustomersV3" => "CustCustomerV3Entity".into(),
            "CustomerGroups" => "CustCustomerGroupEntity".into(),
            "CDSSalesOrderHeaders" => "SalesOrderHeaderCDSEntity".into(),
            "CDSSalesOrderLines" | "CDSSalesOrderLinesV2" => "SalesOrderLineCDSEntity".into(),
            "CDSSalesQuotationHeaders" => "SalesQuotationHeaderCDSEntity".into(),
            "CDSSalesQuotationLines" => "SalesQuotationLineCDSEntity".into(),
            "CDSContactPersons" | "CDSContactPersonsV2" => "SmmContactPersonCDSEntity".into(),
            _ => format!("{}Entity", self.type_name),
        }
    }

    /// The table named in Infolog texts (`Cannot create a record in Customers (CustTable).`).
    pub fn table_label(&self) -> &'static str {
        match self.storage.as_str() {
            "CustomersV2" => "Customers (CustTable)",
            "CustomerGroups" => "Customer groups (CustGroup)",
            "CDSSalesOrderHeaders" => "Sales orders (SalesTable)",
            "CDSSalesOrderLines" => "Order lines (SalesLine)",
            "CDSSalesQuotationHeaders" => "Sales quotation (SalesQuotationTable)",
            "CDSSalesQuotationLines" => "Quotation lines (SalesQuotationLine)",
            "CDSContactPersons" | "CDSContactPersonsV2" => "Contact persons (ContactPerson)",
            "SellableReleasedProducts" => "Items (InventTable)",
            "ExternallyMaintainedCustomerSalesInvoiceHeaders" => "Customer invoice journal (CustInvoiceJour)",
            _ => "Customer invoice lines (CustInvoiceTrans)",
        }
    }
}

/// Field labels used in Infolog messages; falls back to the property name.
pub(crate) fn label(prop: &str) -> String {
    match prop {
        "CustomerAccount" => "Customer account".into(),
        "CustomerGroupId" => "Customer group".into(),
        "OrganizationName" => "Name".into(),
        "SalesOrderNumber" => "Sales order".into(),
        "SalesQuotationNumber" => "Quotation".into(),
        "ProductNumber" => "Product number".into(),
        "OrderingCustomerAccountNumber" => "Customer account".into(),
        "InvoiceCustomerAccountNumber" => "Invoice account".into(),
        "RequestingCustomerAccountNumber" => "Customer account".into(),
        "LineCreationSequenceNumber" => "Line creation sequence number".into(),
        _ => prop.to_string(),
    }
}

pub(crate) struct FnoSchema {
    pub entities: HashMap<String, Entity>,
    pub enums: HashMap<String, Vec<String>>,
}

impl FnoSchema {
    pub fn entity(&self, set: &str) -> Option<&Entity> {
        self.entities.get(set)
    }
}

fn parse_type(s: &str) -> FType {
    if let Some(e) = s.strip_prefix("enum:") {
        return FType::Enum(e.to_string());
    }
    match s {
        "Edm.Int32" => FType::Int32,
        "Edm.Int64" => FType::Int64,
        "Edm.Decimal" | "Edm.Double" => FType::Decimal,
        "Edm.DateTimeOffset" | "Edm.Date" => FType::DateTime,
        _ => FType::Str,
    }
}

fn storage_of(set: &str) -> String {
    match set {
        "CustomersV3" => "CustomersV2".into(),
        "CDSSalesOrderLinesV2" => "CDSSalesOrderLines".into(),
        "ExternallyMaintainedCustomerSalesInvoiceLinesV2" => "ExternallyMaintainedCustomerSalesInvoiceLines".into(),
        s => s.to_string(),
    }
}

fn make_entity(set: &str, type_name: &str, keys: Vec<String>, props: Vec<Prop>) -> Entity {
    let index = props.iter().enumerate().map(|(i, p)| (p.name.clone(), i)).collect();
    Entity {
        set: set.to_string(),
        type_name: type_name.to_string(),
        keys,
        props,
        storage: storage_of(set),
        index,
    }
}

fn load() -> FnoSchema {
    let raw: Value = serde_json::from_str(include_str!("../data/fno_schema.json")).unwrap_or(Value::Null);
    let mut entities = HashMap::new();
    if let Some(ents) = raw.get("entities").and_then(Value::as_object) {
        for (set, e) in ents {
            let type_name = e.get("type").and_then(Value::as_str).unwrap_or(set).to_string();
            let keys: Vec<String> = e
                .get("keys")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let props: Vec<Prop> = e
                .get("props")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|p| {
                            let p = p.as_array()?;
                            Some(Prop {
                                name: p.first()?.as_str()?.to_string(),
                                ty: parse_type(p.get(1)?.as_str()?),
                                nullable: p.get(2).and_then(Value::as_bool).unwrap_or(true),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            entities.insert(set.clone(), make_entity(set, &type_name, keys, props));
        }
    }
    let mut enums: HashMap<String, Vec<String>> = HashMap::new();
    if let Some(en) = raw.get("enums").and_then(Value::as_object) {
        for (k, v) in en {
            let members = v
                .as_array()
                .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_string)).collect());
            enums.insert(k.clone(), members.unwrap_or_default());
        }
    }
    enums
        .entry("NoYes".into())
        .or_insert_with(|| vec!["No".into(), "Yes".into()]);
    let s = |n: &str, nullable: bool| Prop {
        name: n.into(),
        ty: FType::Str,
        nullable,
    };
    entities.insert(
        "CustomerGroups".into(),
        make_entity(
            "CustomerGroups",
            "CustomerGroup",
            vec!["dataAreaId".into(), "CustomerGroupId".into()],
            vec![
                s("dataAreaId", false),
                s("CustomerGroupId", false),
                s("Description", true),
                s("PaymentTermId", true),
                s("DefaultDimensionDisplayValue", true),
                Prop {
                    name: "IsSalesTaxIncludedInPrice".into(),
                    ty: FType::Enum("NoYes".into()),
                    nullable: true,
                },
                s("ClearingPeriodPaymentTermName", true),
            ],
        ),
    );
    FnoSchema { entities, enums }
}

static SCHEMA: OnceLock<FnoSchema> = OnceLock::new();

pub(crate) fn schema() -> &'static FnoSchema {
    SCHEMA.get_or_init(load)
}
