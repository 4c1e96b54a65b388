//! `$metadata` (CSDL XML) for both services, generated from the schemas the sandbox enforces.

use std::fmt::Write;
use std::sync::OnceLock;

use crate::dv_schema::{self, ColType};
use crate::fno_schema::schema;
use crate::http::Resp;

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<edmx:Edmx Version=\"4.0\" \
                    xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\"><edmx:DataServices>";
const TAIL: &str = "</Schema></edmx:DataServices></edmx:Edmx>";

fn xml(body: &str) -> Resp {
    Resp::new(200)
        .header("Content-Type", "application/xml")
        .header("OData-Version", "4.0")
        .with_body(body.as_bytes().to_vec())
}

pub(crate) fn dataverse() -> Resp {
    static DOC: OnceLock<String> = OnceLock::new();
    xml(DOC.get_or_init(|| {
        let mut s = String::from(HEAD);
        s.push_str(
            "<Schema Namespace=\"Microsoft.Dynamics.CRM\" Alias=\"mscrm\" \
             xmlns=\"http://docs.oasis-open.org/odata/ns/edm\">",
        );
        // The abstract base type of systemuser and team: what an owner lookup (`ownerid`) points to.
        s.push_str(
            "<EntityType Name=\"principal\" Abstract=\"true\"><Key><PropertyRef Name=\"ownerid\"/></Key>\
             <Property Name=\"ownerid\" Type=\"Edm.Guid\"/></EntityType>",
        );
        let sets = dv_schema::all_sets();
        for set in &sets {
            let Some(t) = dv_schema::table(set) else { continue };
            let _ = write!(
                s,
                "<EntityType Name=\"{}\"><Key><PropertyRef Name=\"{}\"/></Key>",
                t.logical, t.pk
            );
            for (c, ty) in &t.columns {
                let max = if let ColType::Str(n) = ty {
                    format!(" MaxLength=\"{n}\"")
                } else {
                    String::new()
                };
                let _ = write!(s, "<Property Name=\"{c}\" Type=\"{}\"{max}/>", ty.edm());
            }
            for l in &t.lookups {
                if l.principal {
                    let _ = write!(s, "<NavigationProperty Name=\"{}\" Type=\"mscrm.principal\"/>", l.name);
                    continue;
                }
                for target in &l.targets {
                    let Some(tt) = dv_schema::table(target) else { continue };
                    let nav = l.nav_name(tt.logical);
                    let _ = write!(s, "<NavigationProperty Name=\"{nav}\" Type=\"mscrm.{}\"/>", tt.logical);
                }
            }
            s.push_str("</EntityType>");
        }
        s.push_str("<EntityContainer Name=\"System\">");
        for set in &sets {
            if let Some(t) = dv_schema::table(set) {
                let _ = write!(
                    s,
                    "<EntitySet Name=\"{set}\" EntityType=\"Microsoft.Dynamics.CRM.{}\"/>",
                    t.logical
                );
            }
        }
        s.push_str("</EntityContainer>");
        s.push_str(TAIL);
        s
    }))
}

pub(crate) fn fno() -> Resp {
    static DOC: OnceLock<String> = OnceLock::new();
    xml(DOC.get_or_init(|| {
        let sch = schema();
        let mut s = String::from(HEAD);
        s.push_str(
            "<Schema Namespace=\"Microsoft.Dynamics.DataEntities\" xmlns=\"http://docs.oasis-open.org/odata/ns/edm\">",
        );
        let mut enums: Vec<_> = sch.enums.iter().collect();
        enums.sort();
        for (name, members) in enums {
            let _ = write!(s, "<EnumType Name=\"{name}\">");
            for (i, m) in members.iter().enumerate() {
                let _ = write!(s, "<Member Name=\"{m}\" Value=\"{i}\"/>");
            }
            s.push_str("</EnumType>");
        }
        let mut sets: Vec<_> = sch.entities.values().collect();
        sets.sort_by(|a, b| a.set.cmp(&b.set));
        for e in &sets {
            let _ = write!(s, "<EntityType Name=\"{}\"><Key>", e.type_name);
            for k in &e.keys {
                let _ = write!(s, "<PropertyRef Name=\"{k}\"/>");
            }
            s.push_str("</Key>");
            for p in &e.props {
                let null = if p.nullable { "" } else { " Nullable=\"false\"" };
                let _ = write!(s, "<Property Name=\"{}\" Type=\"{}\"{null}/>", p.name, p.ty.edm());
            }
            s.push_str("</EntityType>");
        }
        s.push_str("<EntityContainer Name=\"Resources\">");
        for e in &sets {
            let _ = write!(s, "<EntitySet Name=\"{}\" EntityType=\"{}\"/>", e.set, e.qualified());
        }
        s.push_str("</EntityContainer>");
        s.push_str(TAIL);
        s
    }))
}
