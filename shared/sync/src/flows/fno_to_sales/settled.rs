//! Settled documents: what a regular sweep leaves out of its F&O query (`$filter`, so they cost no request).
//! An order settles once F&O has Invoiced or Canceled it and it was created `P2C_SETTLED_AFTER_DAYS` ago (the
//! flow still brings the final status of a recent one); an invoice once it is dated that long ago (a posted
//! invoice does not change). A full sweep every `P2C_FULL_SWEEP_HOURS` reads them all again.
//!
//! Enum literals in F&O filters are `Microsoft.Dynamics.DataEntities.<Enum>'<Member>'`
//! (<https://learn.microsoft.com/en-us/dynamics365/fin-ops-core/dev-itpro/data-entities/odata>, "Filter on
//! enumeration values"); date-times are bare RFC 3339 literals.

use std::time::Duration;

use crate::{flow_name::FlowName, pipeline::source::sweep::Settled};

const FINAL_ORDER: &str = "SalesOrderProcessingStatus ne Microsoft.Dynamics.DataEntities.SalesOrderProcessingStatus'Invoiced' \
     and SalesOrderProcessingStatus ne Microsoft.Dynamics.DataEntities.SalesOrderProcessingStatus'Canceled'";

/// What regular sweeps of `flow` leave out, documents dated before now − `after`; `None` for products (any
/// product can change).
pub(super) fn settled(flow: FlowName, after: Duration) -> Option<Settled> {
    let cutoff = time::OffsetDateTime::now_utc() - after;
    let cutoff = cutoff
        .replace_nanosecond(0)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()?;
    match flow {
        FlowName::OrdersToSales => Some(Settled {
            headers: format!("({FINAL_ORDER}) or OrderCreationDateTime ge {cutoff}"),
            // Lines carry their order's processing status; a recent final order's lines are read by key.
            lines: FINAL_ORDER.to_string(),
        }),
        FlowName::InvoicesToSales => Some(Settled {
            headers: format!("InvoiceDate ge {cutoff}"),
            lines: format!("InvoiceDate ge {cutoff}"),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_invoices_settle_products_do_not() {
        let o = settled(FlowName::OrdersToSales, Duration::from_secs(86_400)).unwrap();
        assert!(
            o.headers.contains("SalesOrderProcessingStatus'Invoiced'"),
            "{}",
            o.headers
        );
        assert!(o.headers.contains(" or OrderCreationDateTime ge 20"), "{}", o.headers);
        let i = settled(FlowName::InvoicesToSales, Duration::from_secs(86_400)).unwrap();
        assert!(
            i.headers.starts_with("InvoiceDate ge 20") && i.headers.ends_with('Z'),
            "{}",
            i.headers
        );
        assert!(settled(FlowName::ProductsToSales, Duration::ZERO).is_none());
    }
}
