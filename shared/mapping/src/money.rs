//! The money rules of spec/templates.md 5.4, 5.5 ("Discount rounding") and 6: how a Sales line discount becomes an
//! F&O per-unit line discount plus a sales charge, and back, to the cent.
//!
//! Sales keeps one discount amount per line (`manualdiscountamount`, with "Discount calculation method = Line
//! item"). F&O keeps a discount *per unit* (`LineDiscountAmount`) in the currency's decimals, so a discount that
//! does not divide by the quantity leaves a remainder, which F&O books as a sales charge:
//!
//! > Sales qty 3, line discount $10.00 -> F&O line discount $3.33, sales charge -$0.01 -> back to Sales as
//! > 3 × 3.33 + 0.01 = $10.00.
//!
//! The templates themselves copy `manualdiscountamount` <-> `TotalDiscountAmount`, and F&O's CDS line entities
//! do the split on their side. These functions are the rule written down, for whatever has to reproduce or check
//! it: the sandbox's emulation of those entities, and reconciliation of totals. They work in exact decimals
//! ([`Decimal`]), never binary floating point, and never panic.

use rust_decimal::RoundingStrategy;
use serde_json::Value;

pub use rust_decimal::Decimal;

/// A line discount split the F&O way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscountSplit {
    /// F&O `LineDiscountAmount`: the discount per unit, cut (towards zero) to the currency's decimals.
    pub per_unit_discount: Decimal,
    /// The discount that `quantity × per_unit_discount` (rounded to the currency) leaves over, in the currency's
    /// decimals. Same sign as the discount: never negative for a non-negative discount. F&O books it as a sales
    /// charge of `-remainder` (see [`DiscountSplit::charge`]).
    pub remainder: Decimal,
}

impl DiscountSplit {
    /// The F&O sales charge that carries the remainder: `-remainder` (a charge of -$0.01 gives $0.01 more
    /// discount).
    pub fn charge(&self) -> Decimal {
        -self.remainder
    }
}

fn round_currency(x: Decimal, decimals: u32) -> Decimal {
    x.round_dp_with_strategy(decimals, RoundingStrategy::MidpointAwayFromZero)
}

/// Sales -> F&O: split a line's whole discount into a per-unit discount and the remainder for sales charges.
///
/// The discount is first rounded to `currency_decimals` (half away from zero). Then
/// `per_unit_discount = (discount / quantity)` cut towards zero to `currency_decimals`, and
/// `remainder = discount - round(quantity × per_unit_discount)`.
///
/// - [`combine_line_discount`] of the result gives the rounded discount back exactly.
/// - For a non-negative discount and quantity both parts are non-negative, and the remainder is less than
///   `quantity` smallest currency units.
/// - A quantity of zero or less, or numbers too large to divide, put the whole discount in the remainder.
pub fn split_line_discount(line_discount_amount: Decimal, quantity: Decimal, currency_decimals: u32) -> DiscountSplit {
    let decimals = currency_decimals.min(10);
    let discount = round_currency(line_discount_amount, decimals);
    let whole = DiscountSplit {
        per_unit_discount: Decimal::ZERO,
        remainder: discount,
    };
    if quantity <= Decimal::ZERO {
        return whole;
    }
    let Some(per_unit) = discount.checked_div(quantity) else {
        return whole;
    };
    let per_unit = per_unit.round_dp_with_strategy(decimals, RoundingStrategy::ToZero);
    let Some(covered) = quantity.checked_mul(per_unit) else {
        return whole;
    };
    let covered = round_currency(covered, decimals);
    match discount.checked_sub(covered) {
        Some(remainder) => DiscountSplit {
            per_unit_discount: per_unit.normalize(),
            remainder: remainder.normalize(),
        },
        None => whole,
    }
}

/// F&O -> Sales: the whole line discount, `round(quantity × per_unit_discount) + remainder`, in the currency's
/// decimals. `remainder` is the discount-side remainder of [`split_line_discount`], i.e. minus F&O's sales charge
/// (`3 × 3.33 + 0.01 = 10.00` for a charge of -0.01). Saturates instead of overflowing.
pub fn combine_line_discount(
    per_unit_discount: Decimal,
    quantity: Decimal,
    remainder: Decimal,
    currency_decimals: u32,
) -> Decimal {
    let decimals = currency_decimals.min(10);
    let covered = round_currency(quantity.saturating_mul(per_unit_discount), decimals);
    round_currency(covered.saturating_add(remainder), decimals).normalize()
}

/// The exact decimal a JSON number stands for (by its shortest text, so `3.33` is 3.33, not the nearest binary
/// fraction). `None` for anything but a number, or a number out of `Decimal`'s range.
pub fn decimal_from_json(v: &Value) -> Option<Decimal> {
    let Value::Number(n) = v else { return None };
    let text = n.to_string();
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(&text).ok()
    } else {
        text.parse::<Decimal>().ok()
    }
}

/// A decimal as a JSON number: whole numbers as integers, others as the nearest `f64` (exact for amounts of up to
/// 15 significant digits, which is what both services store).
pub fn decimal_to_json(d: Decimal) -> Value {
    let d = d.normalize();
    if d.scale() == 0
        && let Ok(i) = i64::try_from(d.mantissa())
    {
        return Value::from(i);
    }
    d.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn the_documented_example() {
        let s = split_line_discount(d("10.00"), d("3"), 2);
        assert_eq!(s.per_unit_discount, d("3.33"));
        assert_eq!(s.remainder, d("0.01"));
        assert_eq!(s.charge(), d("-0.01"));
        assert_eq!(combine_line_discount(d("3.33"), d("3"), d("0.01"), 2), d("10"));
    }

    #[test]
    fn exact_divisions_leave_nothing() {
        let s = split_line_discount(d("12.00"), d("4"), 2);
        assert_eq!((s.per_unit_discount, s.remainder), (d("3"), d("0")));
        let s = split_line_discount(d("10.01"), d("2.5"), 2);
        assert_eq!((s.per_unit_discount, s.remainder), (d("4"), d("0.01")));
    }

    #[test]
    fn fractional_quantities_keep_the_remainder_in_cents() {
        // 10.00 / 3.3 = 3.0303.. -> 3.03 per unit; 3.3 × 3.03 = 9.999 -> 10.00 in cents: nothing left.
        let s = split_line_discount(d("10.00"), d("3.3"), 2);
        assert_eq!(s.per_unit_discount, d("3.03"));
        assert_eq!(s.remainder, d("0"));
        assert_eq!(
            combine_line_discount(s.per_unit_discount, d("3.3"), s.remainder, 2),
            d("10")
        );
    }

    #[test]
    fn zero_and_negative_quantities_put_everything_in_the_remainder() {
        for q in ["0", "-2"] {
            let s = split_line_discount(d("5.555"), d(q), 2);
            assert_eq!((s.per_unit_discount, s.remainder), (d("0"), d("5.56")));
        }
    }

    #[test]
    fn currency_without_decimals() {
        let s = split_line_discount(d("1000"), d("3"), 0);
        assert_eq!((s.per_unit_discount, s.remainder), (d("333"), d("1")));
        assert_eq!(combine_line_discount(d("333"), d("3"), d("1"), 0), d("1000"));
    }

    #[test]
    fn extremes_do_not_panic() {
        let _ = split_line_discount(Decimal::MAX, d("0.0000000000000000000000001"), 2);
        let _ = split_line_discount(Decimal::MIN, Decimal::MAX, 28);
        let _ = combine_line_discount(Decimal::MAX, Decimal::MAX, Decimal::MAX, 2);
        let _ = combine_line_discount(Decimal::MIN, Decimal::MAX, Decimal::MIN, 99);
    }

    #[test]
    fn json_numbers_convert_exactly() {
        assert_eq!(decimal_from_json(&json!(3.33)), Some(d("3.33")));
        assert_eq!(decimal_from_json(&json!(10)), Some(d("10")));
        assert_eq!(decimal_from_json(&json!(1e-7)), Some(d("0.0000001")));
        assert_eq!(decimal_from_json(&json!(1e40)), None);
        assert_eq!(decimal_from_json(&json!("3.33")), None);
        assert_eq!(decimal_to_json(d("10.00")), json!(10));
        assert_eq!(decimal_to_json(d("3.330")), json!(3.33));
        assert_eq!(decimal_to_json(d("-0.01")), json!(-0.01));
    }

    /// Amounts of up to 10^10 with 0-4 decimals, quantities of up to 10^6 with 0-3 decimals.
    fn amount() -> impl Strategy<Value = Decimal> {
        (0i64..10_000_000_000_000, 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s))
    }
    fn quantity() -> impl Strategy<Value = Decimal> {
        (1i64..1_000_000_000, 0u32..=3).prop_map(|(m, s)| Decimal::new(m, s))
    }

    proptest! {
        #[test]
        fn combine_undoes_split_to_the_cent(x in amount(), q in quantity(), dec in 0u32..=4) {
            let s = split_line_discount(x, q, dec);
            let back = combine_line_discount(s.per_unit_discount, q, s.remainder, dec);
            prop_assert_eq!(back, round_currency(x, dec).normalize());
        }

        #[test]
        fn non_negative_in_non_negative_out(x in amount(), q in quantity(), dec in 0u32..=4) {
            let s = split_line_discount(x, q, dec);
            prop_assert!(s.per_unit_discount >= Decimal::ZERO);
            prop_assert!(s.remainder >= Decimal::ZERO);
            prop_assert!(s.charge() <= Decimal::ZERO);
            // Per-unit amounts and the remainder are in the currency's decimals.
            prop_assert!(s.per_unit_discount.scale() <= dec);
            prop_assert!(s.remainder.scale() <= dec);
            // The remainder is less than one smallest unit per unit of quantity (plus rounding of the line).
            let unit = Decimal::new(1, dec);
            prop_assert!(s.remainder <= q * unit + unit, "{} for q {}", s.remainder, q);
        }

        #[test]
        fn negative_discounts_mirror_positive_ones(x in amount(), q in quantity(), dec in 0u32..=4) {
            let pos = split_line_discount(x, q, dec);
            let neg = split_line_discount(-x, q, dec);
            prop_assert_eq!(neg.per_unit_discount, -pos.per_unit_discount);
            prop_assert_eq!(neg.remainder, -pos.remainder);
        }
    }
}
