//! Which Sales records belong to a company, and who owns what p2c creates there (spec/templates.md 3 and 4).
//!
//! - **Scope.** A company's Sales records are those owned (`_owningbusinessunit_value`) by its business unit and,
//!   unless P2C_COMPANIES says `;exact`, by every business unit below it: a record belongs to its owner's unit,
//!   and the people of a company often sit in child units. [`BusinessUnitScope`] is read once per run from the
//!   whole hierarchy (`businessunits` with their `_parentbusinessunitid_value`).
//! - **Owner.** A record p2c creates in Sales is owned by the default team of the company's business unit
//!   (`ownerid@odata.bind` to `/teams(<id>)`); Dataverse then puts it in that unit. `owningbusinessunit` is never
//!   bound: it is read-only unless the organization allows record ownership across business units. An invoice is
//!   owned by its order's owner, as the P2C solution does.

use std::collections::{HashMap, HashSet};

use p2c_dynamics::Record;
use serde_json::Value;

/// Units at most in a server-side `_owningbusinessunit_value` filter (URL length); a larger scope is read
/// whole and filtered here.
const MAX_FILTERED_UNITS: usize = 50;

/// The business units whose Sales records belong to a company (lowercase ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessUnitScope {
    unit: String,
    units: HashSet<String>,
}

impl BusinessUnitScope {
    /// Only `unit` itself.
    pub fn exact(unit: &str) -> BusinessUnitScope {
        let unit = unit.to_ascii_lowercase();
        BusinessUnitScope {
            units: HashSet::from([unit.clone()]),
            unit,
        }
    }

    /// `unit` and every unit below it, from the whole hierarchy as (unit, parent) pairs.
    pub fn with_descendants(unit: &str, hierarchy: &[(String, Option<String>)]) -> BusinessUnitScope {
        let mut children: HashMap<String, Vec<String>> = HashMap::new();
        for (id, parent) in hierarchy {
            if let Some(p) = parent {
                children
                    .entry(p.to_ascii_lowercase())
                    .or_default()
                    .push(id.to_ascii_lowercase());
            }
        }
        let mut scope = BusinessUnitScope::exact(unit);
        let mut todo = vec![scope.unit.clone()];
        while let Some(u) = todo.pop() {
            for c in children.get(&u).into_iter().flatten() {
                // A unit seen twice (a loop Dataverse would never allow) is not walked again.
                if scope.units.insert(c.clone()) {
                    todo.push(c.clone());
                }
            }
        }
        scope
    }

    /// The company's own business unit.
    pub fn unit(&self) -> &str {
        &self.unit
    }

    /// Whether a record owned by `unit` belongs to the company.
    pub fn contains(&self, unit: &str) -> bool {
        self.units.contains(&unit.to_ascii_lowercase())
    }

    pub fn len(&self) -> usize {
        self.units.len()
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Whether a Sales row belongs to the company (a row read without its unit is given the benefit).
    pub fn owns(&self, row: &Record) -> bool {
        row.get("_owningbusinessunit_value")
            .and_then(Value::as_str)
            .is_none_or(|u| self.contains(u))
    }

    /// An OData filter for the scope's records, or `None` when it has too many units for a URL (then read
    /// everything and keep what [`BusinessUnitScope::owns`]).
    pub fn filter(&self) -> Option<String> {
        if self.units.len() > MAX_FILTERED_UNITS {
            return None;
        }
        let mut units: Vec<&String> = self.units.iter().collect();
        units.sort();
        let terms: Vec<String> = units
            .iter()
            .map(|u| format!("_owningbusinessunit_value eq {u}"))
            .collect();
        Some(match terms.as_slice() {
            [one] => one.clone(),
            _ => format!("({})", terms.join(" or ")),
        })
    }
}

/// The owner of a record p2c creates in Sales: a team or a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Team(String),
    User(String),
}

impl Owner {
    /// The value of `ownerid@odata.bind`.
    pub fn bind(&self) -> String {
        match self {
            Owner::Team(id) => format!("/teams({id})"),
            Owner::User(id) => format!("/systemusers({id})"),
        }
    }

    /// The owner of a Sales row read with `_owningteam_value` and `_owninguser_value` (one of them is set).
    pub fn of_row(row: &Record) -> Option<Owner> {
        let id = |c: &str| row.get(c).and_then(Value::as_str).map(str::to_string);
        id("_owningteam_value")
            .map(Owner::Team)
            .or_else(|| id("_owninguser_value").map(Owner::User))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn h(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(u, p)| (u.to_string(), p.map(str::to_string)))
            .collect()
    }

    #[test]
    fn a_scope_takes_every_unit_below_and_nothing_beside() {
        let tree = h(&[
            ("root", None),
            ("US", Some("root")),
            ("east", Some("us")),
            ("ny", Some("EAST")),
            ("eu", Some("root")),
        ]);
        let s = BusinessUnitScope::with_descendants("us", &tree);
        assert!(["US", "east", "ny"].iter().all(|u| s.contains(u)));
        assert!(!s.contains("root") && !s.contains("eu"));
        assert_eq!(s.unit(), "us");
        let exact = BusinessUnitScope::exact("US");
        assert!(exact.contains("us") && !exact.contains("east"));
        assert_eq!(exact.filter().unwrap(), "_owningbusinessunit_value eq us");
        assert_eq!(
            s.filter().unwrap(),
            "(_owningbusinessunit_value eq east or _owningbusinessunit_value eq ny or _owningbusinessunit_value eq us)"
        );
        let row = |u: &str| json!({"_owningbusinessunit_value": u}).as_object().unwrap().clone();
        assert!(s.owns(&row("NY")) && !s.owns(&row("eu")));
    }

    #[test]
    fn owners_bind_and_read_back() {
        assert_eq!(Owner::Team("t1".into()).bind(), "/teams(t1)");
        assert_eq!(Owner::User("u1".into()).bind(), "/systemusers(u1)");
        let row = json!({"_owningteam_value": null, "_owninguser_value": "u1"});
        assert_eq!(Owner::of_row(row.as_object().unwrap()), Some(Owner::User("u1".into())));
        assert_eq!(Owner::of_row(&Record::new()), None);
    }
}
