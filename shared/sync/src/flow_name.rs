//! The names of the flows p2c runs: one type for messages, reports, schedules and the CLI.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_everywhere() {
        for f in FlowName::ALL {
            assert_eq!(FlowName::parse(f.as_str()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), serde_json::json!(f.as_str()));
            let back: FlowName = serde_json::from_value(serde_json::json!(f.as_str())).unwrap();
            assert_eq!(back, f);
        }
    }
}
