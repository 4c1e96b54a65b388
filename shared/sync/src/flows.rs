//! The flows p2c runs, and what each one reads and writes.

use std::fmt;

use p2c_mapping::Template;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum FlowName {
    AccountsToFno,
    ContactsToFno,
    ProductsToSales,
    QuotesToFno,
    OrdersToFno,
    OrdersToSales,
    InvoicesToSales,
}

impl FlowName {
    /// Every flow, parents first: a run of all flows in this order meets no missing parent.
    pub const ALL: [FlowName; 7] = [
        FlowName::AccountsToFno,
        FlowName::ProductsToSales,
        FlowName::ContactsToFno,
        FlowName::QuotesToFno,
        FlowName::OrdersToFno,
        FlowName::OrdersToSales,
        FlowName::InvoicesToSales,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FlowName::AccountsToFno => "accounts-to-fno",
            FlowName::ContactsToFno => "contacts-to-fno",
            FlowName::ProductsToSales => "products-to-sales",
            FlowName::QuotesToFno => "quotes-to-fno",
            FlowName::OrdersToFno => "orders-to-fno",
            FlowName::OrdersToSales => "orders-to-sales",
            FlowName::InvoicesToSales => "invoices-to-sales",
        }
    }

    pub fn parse(s: &str) -> Option<FlowName> {
        FlowName::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub fn known() -> String {
        FlowName::ALL.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for FlowName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Sales → F&O flow driven by change tracking on one Sales table.
#[derive(Clone, Debug)]
pub struct SalesToFno {
    pub flow: FlowName,
    /// Entity name used in link items (`LINK#<entity>#...`).
    pub link_entity: &'static str,
    /// Singular noun for messages ("account ACC-1: ...").
    pub noun: &'static str,
    pub template: Template,
}

impl SalesToFno {
    pub fn source_set(&self) -> &str {
        &self.template.source_entity
    }
    pub fn source_id(&self) -> &str {
        &self.template.source_id
    }
    pub fn target_set(&self) -> &str {
        &self.template.target_entity
    }
    /// Columns to read: the template's, plus the pipeline's own bookkeeping (owner business unit, row version).
    pub fn select(&self) -> Vec<String> {
        let mut cols = self.template.source_select();
        for extra in ["_owningbusinessunit_value", "versionnumber"] {
            if !cols.iter().any(|c| c == extra) {
                cols.push(extra.to_string());
            }
        }
        cols
    }

    /// The target key field other than `dataAreaId` (e.g. `CustomerAccount`).
    pub fn target_key_field(&self) -> &str {
        self.template
            .target_key
            .iter()
            .find(|k| *k != "dataAreaId")
            .map(String::as_str)
            .unwrap_or("")
    }
}
