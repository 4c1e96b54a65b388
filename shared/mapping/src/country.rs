//! Country names and codes -> ISO 3166-1 alpha-2, for the "Country region code" transform.
//!
//! Sales keeps countries as free text (`address1_country`), F&O wants an ISO code. The built-in table knows
//! every ISO 3166-1 alpha-2 and alpha-3 code, the ISO English names, and the aliases below. Matching ignores
//! case, accents, punctuation, extra spaces and a leading "the", so "U.S.A.", "usa" and "United States" all
//! give "US". Anything else needs an entry in the P2C_MAPPING file.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::country_table::ISO_3166_1;

/// Common names that are not ISO's own, as (alias, alpha-2). Matched after normalisation.
const ALIASES: &[(&str, &str)] = &[
    ("America", "US"),
    ("United States of America", "US"),
    ("U.S.", "US"),
    ("UK", "GB"),
    ("U.K.", "GB"),
    ("Great Britain", "GB"),
    ("Britain", "GB"),
    ("England", "GB"),
    ("Scotland", "GB"),
    ("Wales", "GB"),
    ("Northern Ireland", "GB"),
    ("Holland", "NL"),
    ("Deutschland", "DE"),
    ("Russia", "RU"),
    ("Turkey", "TR"),
    ("Czech Republic", "CZ"),
    ("Ivory Coast", "CI"),
    ("Macedonia", "MK"),
    ("Swaziland", "SZ"),
    ("Burma", "MM"),
    ("Cape Verde", "CV"),
    ("East Timor", "TL"),
    ("Vatican", "VA"),
    ("Vatican City", "VA"),
    ("Holy See", "VA"),
    ("Brunei", "BN"),
    ("Palestine", "PS"),
    ("UAE", "AE"),
    ("Emirates", "AE"),
    ("South Korea", "KR"),
    ("Republic of Korea", "KR"),
    ("North Korea", "KP"),
    ("Democratic Republic of the Congo", "CD"),
    ("DR Congo", "CD"),
    ("DRC", "CD"),
    ("Congo-Kinshasa", "CD"),
    ("Congo-Brazzaville", "CG"),
    ("Republic of the Congo", "CG"),
    ("Micronesia", "FM"),
    ("Moldova", "MD"),
    ("Tanzania", "TZ"),
    ("Venezuela", "VE"),
    ("Bolivia", "BO"),
    ("Iran", "IR"),
    ("Syria", "SY"),
    ("Laos", "LA"),
    ("Vietnam", "VN"),
    ("Taiwan", "TW"),
    ("Hong Kong", "HK"),
    ("Macau", "MO"),
    ("Macao", "MO"),
    ("Saint Martin", "MF"),
    ("St. Lucia", "LC"),
    ("St. Kitts and Nevis", "KN"),
    ("St. Vincent and the Grenadines", "VC"),
    ("Trinidad", "TT"),
    ("Bosnia", "BA"),
    ("Falkland Islands", "FK"),
    ("Reunion", "RE"),
    ("Curacao", "CW"),
];

/// Lower-case, fold common accents, drop `.` and apostrophes, turn other punctuation into spaces, collapse
/// spaces and drop a leading "the ". Used on both the table and the input, so they always agree.
pub fn normalize_country(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        match c {
            '.' | '\'' | '\u{2019}' | '`' => {}
            c if c.is_alphanumeric() => match fold(c) {
                Some(f) => out.push_str(f),
                None => out.push(c),
            },
            _ => out.push(' '),
        }
    }
    let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.strip_prefix("the ") {
        Some(rest) => rest.to_string(),
        None => collapsed,
    }
}

fn fold(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'č' | 'ć' => "c",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'ı' => "i",
        'ñ' | 'ń' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' => "o",
        'œ' => "oe",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' => "u",
        'ý' | 'ÿ' => "y",
        'ß' => "ss",
        'ł' => "l",
        'ř' => "r",
        'š' | 'ş' | 'ś' => "s",
        'ţ' | 'ť' => "t",
        'ž' | 'ź' | 'ż' => "z",
        'ğ' => "g",
        'đ' | 'ď' => "d",
        _ => return None,
    })
}

fn index() -> &'static HashMap<String, &'static str> {
    static INDEX: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut m = HashMap::new();
        for (a2, a3, names) in ISO_3166_1 {
            m.insert(normalize_country(a2), *a2);
            m.insert(normalize_country(a3), *a2);
            for n in *names {
                m.insert(normalize_country(n), *a2);
            }
        }
        for (alias, a2) in ALIASES {
            m.insert(normalize_country(alias), *a2);
        }
        m
    })
}

/// The ISO 3166-1 alpha-2 code for a country name or code, from the built-in table.
pub fn builtin_country_code(s: &str) -> Option<&'static str> {
    index().get(&normalize_country(s)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_spellings() {
        for (input, code) in [
            ("USA", "US"),
            ("United States", "US"),
            ("us", "US"),
            ("U.S.A.", "US"),
            ("united states of america", "US"),
            ("Germany", "DE"),
            ("DEU", "DE"),
            ("de", "DE"),
            ("Deutschland", "DE"),
            ("UK", "GB"),
            ("The Netherlands", "NL"),
            ("Cote d'Ivoire", "CI"),
            ("Côte d’Ivoire", "CI"),
            ("Korea, Republic of", "KR"),
            ("  france ", "FR"),
            ("Japan", "JP"),
            ("Turkey", "TR"),
            ("Türkiye", "TR"),
        ] {
            assert_eq!(builtin_country_code(input), Some(code), "{input}");
        }
        assert_eq!(builtin_country_code("Narnia"), None);
        assert_eq!(builtin_country_code(""), None);
    }

    #[test]
    fn table_has_no_conflicting_keys() {
        let mut seen: HashMap<String, &str> = HashMap::new();
        for (a2, a3, names) in ISO_3166_1 {
            for k in [*a2, *a3].into_iter().chain(names.iter().copied()) {
                if let Some(prev) = seen.insert(normalize_country(k), a2) {
                    assert_eq!(prev, *a2, "{k} maps to both {prev} and {a2}");
                }
            }
        }
        for (alias, a2) in ALIASES {
            assert!(
                ISO_3166_1.iter().any(|(c, _, _)| c == a2),
                "alias {alias} -> unknown code {a2}"
            );
            if let Some(prev) = seen.get(&normalize_country(alias)) {
                assert_eq!(prev, a2, "alias {alias} contradicts ISO");
            }
        }
    }
}
