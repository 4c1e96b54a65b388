//! `$filter` and `$orderby`: lexer, parser, type checks and evaluation over wire-shaped rows.
//!
//! One engine, two dialects, because the services accept different subsets:
//! * Dataverse: `eq ne gt ge lt le and or not ()`, `contains/startswith/endswith` (SQL LIKE wildcards),
//!   `Microsoft.Dynamics.CRM.In/NotIn` with JSON-quoted values, bare GUID/number/bool/null/date-time literals,
//!   parameter aliases. String compares are case-insensitive.
//! * F&O: the comparison and logical operators only, `*` wildcards inside `eq`/`ne` string literals, enum
//!   literals `Microsoft.Dynamics.DataEntities.<Enum>'<Member>'` with `eq`/`ne` only; `in`, `has` and string
//!   functions are refused. String compares are case-insensitive (SQL collation).
//!
//! Null semantics follow SQL: any comparison other than `eq null`/`ne null` with a null side is false.

use std::cmp::Ordering;

use serde_json::Value;
use time::OffsetDateTime;

use crate::http::{is_guid, parse_date, parse_datetime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Dataverse,
    Fno,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PType {
    Str,
    Int,
    Dec,
    Float,
    Bool,
    DateTime,
    Date,
    Guid,
    Enum(String),
}

impl PType {
    fn edm(&self) -> String {
        match self {
            PType::Str => "Edm.String".into(),
            PType::Int => "Edm.Int32".into(),
            PType::Dec => "Edm.Decimal".into(),
            PType::Float => "Edm.Double".into(),
            PType::Bool => "Edm.Boolean".into(),
            PType::DateTime => "Edm.DateTimeOffset".into(),
            PType::Date => "Edm.Date".into(),
            PType::Guid => "Edm.Guid".into(),
            PType::Enum(t) => format!("Microsoft.Dynamics.DataEntities.{t}"),
        }
    }

    fn numeric(&self) -> bool {
        matches!(self, PType::Int | PType::Dec | PType::Float)
    }
}

/// What the parser needs to know about the entity being queried.
pub(crate) trait Schema {
    fn prop_type(&self, name: &str) -> Option<PType>;
    fn enum_members(&self, _ty: &str) -> Option<Vec<String>> {
        None
    }
    /// Qualified type name for error messages (`Microsoft.Dynamics.CRM.account`).
    fn type_name(&self) -> String;
}

#[derive(Debug, Clone)]
pub(crate) struct QueryError(pub String);

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Guid(String),
    DateTime(OffsetDateTime),
    Date(time::Date),
    Enum { ty: String, member: String },
}

impl Lit {
    fn edm(&self) -> String {
        match self {
            Lit::Null => "null".into(),
            Lit::Bool(_) => "Edm.Boolean".into(),
            Lit::Num(n) if n.fract() == 0.0 => "Edm.Int32".into(),
            Lit::Num(_) => "Edm.Decimal".into(),
            Lit::Str(_) => "Edm.String".into(),
            Lit::Guid(_) => "Edm.Guid".into(),
            Lit::DateTime(_) => "Edm.DateTimeOffset".into(),
            Lit::Date(_) => "Edm.Date".into(),
            Lit::Enum { ty, .. } => format!("Microsoft.Dynamics.DataEntities.{ty}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    fn from_word(w: &str) -> Option<CmpOp> {
        Some(match w {
            "eq" => CmpOp::Eq,
            "ne" => CmpOp::Ne,
            "gt" => CmpOp::Gt,
            "ge" => CmpOp::Ge,
            "lt" => CmpOp::Lt,
            "le" => CmpOp::Le,
            _ => return None,
        })
    }

    fn kind(self) -> &'static str {
        match self {
            CmpOp::Eq => "Equal",
            CmpOp::Ne => "NotEqual",
            CmpOp::Gt => "GreaterThan",
            CmpOp::Ge => "GreaterThanOrEqual",
            CmpOp::Lt => "LessThan",
            CmpOp::Le => "LessThanOrEqual",
        }
    }

    fn flip(self) -> CmpOp {
        match self {
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            o => o,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrFn {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Prop(String, PType),
    Lit(Lit),
}

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(CmpOp, Operand, Operand),
    StrFn(StrFn, String, String),
    In {
        prop: String,
        ty: PType,
        values: Vec<Lit>,
        negate: bool,
    },
    BoolProp(String),
    Const(bool),
}

// ------------------------------------------------------------------------------------------------
// Lexer
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    LBracket,
    RBracket,
    Assign,
    Str(String),
    /// A double-quoted JSON string (array-valued function parameters).
    DStr(String),
    Word(String),
    /// `Namespace.Type'value'`
    Typed(String, String),
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let unterminated = || {
        QueryError(format!(
            "There is an unterminated literal at position {} in '{}'.",
            chars.len(),
            text
        ))
    };
    let read_quoted = |i: &mut usize| -> Option<String> {
        // at opening quote
        let mut s = String::new();
        *i += 1;
        loop {
            let c = *chars.get(*i)?;
            if c == '\'' {
                if chars.get(*i + 1) == Some(&'\'') {
                    s.push('\'');
                    *i += 2;
                    continue;
                }
                *i += 1;
                return Some(s);
            }
            s.push(c);
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            ' ' | '\t' | '\r' | '\n' => i += 1,
            '(' => {
                out.push((Tok::LParen, start));
                i += 1
            }
            ')' => {
                out.push((Tok::RParen, start));
                i += 1
            }
            ',' => {
                out.push((Tok::Comma, start));
                i += 1
            }
            '[' => {
                out.push((Tok::LBracket, start));
                i += 1
            }
            ']' => {
                out.push((Tok::RBracket, start));
                i += 1
            }
            '=' => {
                out.push((Tok::Assign, start));
                i += 1
            }
            '\'' => {
                let s = read_quoted(&mut i).ok_or_else(unterminated)?;
                out.push((Tok::Str(s), start));
            }
            '"' => {
                let mut j = i + 1;
                let mut esc = false;
                loop {
                    let Some(&d) = chars.get(j) else {
                        return Err(unterminated());
                    };
                    if esc {
                        esc = false;
                    } else if d == '\\' {
                        esc = true;
                    } else if d == '"' {
                        break;
                    }
                    j += 1;
                }
                let raw: String = chars[i..=j].iter().collect();
                let s: String = serde_json::from_str(&raw)
                    .map_err(|_| QueryError(format!("Invalid JSON string {raw} at position {start} in '{text}'.")))?;
                out.push((Tok::DStr(s), start));
                i = j + 1;
            }
            _ => {
                let mut w = String::new();
                while i < chars.len() && !" \t\r\n(),[]='\"".contains(chars[i]) {
                    w.push(chars[i]);
                    i += 1;
                }
                if i < chars.len() && chars[i] == '\'' && w.contains('.') {
                    let s = read_quoted(&mut i).ok_or_else(unterminated)?;
                    out.push((Tok::Typed(w, s), start));
                } else {
                    out.push((Tok::Word(w), start));
                }
            }
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------------
// Parser
// ------------------------------------------------------------------------------------------------

/// Nesting limit: the parser recurses per parenthesis and `not`, and a client must not be able to exhaust the
/// server's stack.
const MAX_DEPTH: usize = 100;

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
    text: &'a str,
    dialect: Dialect,
    schema: &'a dyn Schema,
    aliases: &'a [(String, String)],
}

enum Node {
    E(Expr),
    O(Operand),
}

fn syntax(text: &str, pos: usize) -> QueryError {
    QueryError(format!("Syntax error at position {pos} in '{text}'."))
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(_, p)| *p).unwrap_or(self.text.len())
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, t: Tok) -> Result<(), QueryError> {
        let at = self.at();
        if self.next().as_ref() == Some(&t) {
            Ok(())
        } else {
            Err(syntax(self.text, at))
        }
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut l = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            let r = self.and()?;
            l = Expr::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut l = self.unary()?;
        while self.peek_word("and") {
            self.pos += 1;
            let r = self.unary()?;
            l = Expr::And(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError(format!(
                "The limit of '{MAX_DEPTH}' for the recursion depth has been exceeded."
            )));
        }
        let r = if self.peek_word("not") {
            self.pos += 1;
            self.unary().map(|e| Expr::Not(Box::new(e)))
        } else {
            self.comparison()
        };
        self.depth -= 1;
        r
    }

    fn comparison(&mut self) -> Result<Expr, QueryError> {
        let left = self.primary()?;
        if let Some(Tok::Word(w)) = self.peek().cloned() {
            if let Some(op) = CmpOp::from_word(&w) {
                self.pos += 1;
                let right = self.primary()?;
                let (Node::O(l), Node::O(r)) = (left, right) else {
                    return Err(QueryError(format!(
                        "A binary operator with incompatible types was detected in '{}'.",
                        self.text
                    )));
                };
                return self.make_cmp(op, l, r);
            }
            match w.as_str() {
                "in" => {
                    return Err(QueryError(match self.dialect {
                        Dialect::Fno => format!(
                            "The query specified in the URI is not valid. The 'in' operator is not supported: \
                             use 'or' of 'eq' comparisons ('{}').",
                            self.text
                        ),
                        Dialect::Dataverse => format!(
                            "The 'in' operator is not supported; use Microsoft.Dynamics.CRM.In ('{}').",
                            self.text
                        ),
                    }));
                }
                "has" => {
                    return Err(QueryError(format!(
                        "The query specified in the URI is not valid. The 'has' operator is not supported ('{}').",
                        self.text
                    )));
                }
                "add" | "sub" | "mul" | "div" | "divby" | "mod" => {
                    return Err(QueryError(format!(
                        "Arithmetic operator '{w}' is not supported by this service emulator ('{}').",
                        self.text
                    )));
                }
                _ => {}
            }
        }
        match left {
            Node::E(e) => Ok(e),
            Node::O(Operand::Prop(p, PType::Bool)) => Ok(Expr::BoolProp(p)),
            Node::O(Operand::Lit(Lit::Bool(b))) => Ok(Expr::Const(b)),
            Node::O(_) => Err(QueryError(format!(
                "The $filter expression must evaluate to a single boolean value ('{}').",
                self.text
            ))),
        }
    }

    fn make_cmp(&self, op: CmpOp, l: Operand, r: Operand) -> Result<Expr, QueryError> {
        let incompatible = |a: String, b: String| {
            QueryError(format!(
                "A binary operator with incompatible types was detected. Found operand types '{a}' and '{b}' for \
                 operator kind '{}'.",
                op.kind()
            ))
        };
        match (&l, &r) {
            (Operand::Lit(_), Operand::Prop(..)) => return self.make_cmp(op.flip(), r, l),
            (Operand::Prop(_, ty), Operand::Lit(lit)) => {
                let ok = match (ty, lit) {
                    (_, Lit::Null) => true,
                    (PType::Str, Lit::Str(_)) => true,
                    (t, Lit::Num(_)) if t.numeric() => true,
                    (PType::Bool, Lit::Bool(_)) => true,
                    (PType::DateTime | PType::Date, Lit::DateTime(_) | Lit::Date(_)) => true,
                    (PType::Guid, Lit::Guid(_)) => true,
                    (PType::Enum(t), Lit::Enum { ty, member }) => {
                        if t != ty {
                            return Err(incompatible(PType::Enum(t.clone()).edm(), lit.edm()));
                        }
                        if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                            return Err(QueryError(format!(
                                "The query specified in the URI is not valid. Enum values can only be compared \
                                 with 'eq' and 'ne' ('{}').",
                                self.text
                            )));
                        }
                        if let Some(m) = self.schema.enum_members(ty)
                            && !m.iter().any(|x| x == member)
                        {
                            return Err(QueryError(format!(
                                "The query specified in the URI is not valid. The string '{member}' is not a valid \
                                 enumeration type constant."
                            )));
                        }
                        true
                    }
                    _ => false,
                };
                if !ok {
                    return Err(incompatible(ty.edm(), lit.edm()));
                }
                if let (PType::Enum(_), Lit::Null) = (ty, lit)
                    && !matches!(op, CmpOp::Eq | CmpOp::Ne)
                {
                    return Err(incompatible(ty.edm(), lit.edm()));
                }
            }
            (Operand::Prop(_, a), Operand::Prop(_, b)) => {
                let same = a == b
                    || (a.numeric() && b.numeric())
                    || matches!((a, b), (PType::DateTime | PType::Date, PType::DateTime | PType::Date));
                if !same {
                    return Err(incompatible(a.edm(), b.edm()));
                }
            }
            (Operand::Lit(_), Operand::Lit(_)) => {}
        }
        Ok(Expr::Cmp(op, l, r))
    }

    fn prop(&self, name: &str) -> Result<Operand, QueryError> {
        if name.contains('/') {
            return Err(QueryError(format!(
                "Navigation paths such as '{name}' in $filter are not supported by this service emulator."
            )));
        }
        match self.schema.prop_type(name) {
            Some(t) => Ok(Operand::Prop(name.to_string(), t)),
            None => Err(QueryError(format!(
                "Could not find a property named '{name}' on type '{}'.",
                self.schema.type_name()
            ))),
        }
    }

    fn primary(&mut self) -> Result<Node, QueryError> {
        let at = self.at();
        let Some(t) = self.next() else {
            return Err(syntax(self.text, at));
        };
        match t {
            Tok::LParen => {
                let e = self.or()?;
                self.expect(Tok::RParen)?;
                Ok(Node::E(e))
            }
            Tok::Str(s) => Ok(Node::O(Operand::Lit(Lit::Str(s)))),
            Tok::Typed(prefix, v) => self.typed(&prefix, v).map(|l| Node::O(Operand::Lit(l))),
            Tok::Word(w) => {
                if self.peek() == Some(&Tok::LParen) {
                    return self.call(&w, at).map(Node::E);
                }
                if let Some(alias) = w.strip_prefix('@') {
                    let v = self
                        .aliases
                        .iter()
                        .find(|(k, _)| k.strip_prefix('@') == Some(alias))
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| QueryError(format!("The parameter alias '@{alias}' is not defined.")))?;
                    let toks = lex(&v)?;
                    return match toks.as_slice() {
                        [(Tok::Str(s), _)] => Ok(Node::O(Operand::Lit(Lit::Str(s.clone())))),
                        [(Tok::Typed(p, s), _)] => self.typed(p, s.clone()).map(|l| Node::O(Operand::Lit(l))),
                        [(Tok::Word(x), _)] => match word_literal(x) {
                            Some(l) => Ok(Node::O(Operand::Lit(l))),
                            None => Err(QueryError(format!("Invalid value for parameter alias '@{alias}'."))),
                        },
                        _ => Err(QueryError(format!("Invalid value for parameter alias '@{alias}'."))),
                    };
                }
                if let Some(l) = word_literal(&w) {
                    return Ok(Node::O(Operand::Lit(l)));
                }
                if w.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') {
                    return self.prop(&w).map(Node::O);
                }
                Err(syntax(self.text, at))
            }
            _ => Err(syntax(self.text, at)),
        }
    }

    fn typed(&self, prefix: &str, v: String) -> Result<Lit, QueryError> {
        if self.dialect == Dialect::Fno
            && let Some(ty) = prefix.strip_prefix("Microsoft.Dynamics.DataEntities.")
        {
            if self.schema.enum_members(ty).is_none() {
                return Err(QueryError(format!(
                    "The query specified in the URI is not valid. The type '{prefix}' is not an enumeration type."
                )));
            }
            return Ok(Lit::Enum {
                ty: ty.to_string(),
                member: v,
            });
        }
        Err(QueryError(format!(
            "Unrecognized literal {prefix}'{v}' in '{}'.",
            self.text
        )))
    }

    fn call(&mut self, name: &str, at: usize) -> Result<Expr, QueryError> {
        self.expect(Tok::LParen)?;
        match (self.dialect, name) {
            (Dialect::Dataverse, "contains" | "startswith" | "endswith") => {
                let f = match name {
                    "contains" => StrFn::Contains,
                    "startswith" => StrFn::StartsWith,
                    _ => StrFn::EndsWith,
                };
                let at_p = self.at();
                let Some(Tok::Word(p)) = self.next() else {
                    return Err(syntax(self.text, at_p));
                };
                let prop = self.prop(&p)?;
                self.expect(Tok::Comma)?;
                let at_v = self.at();
                let Some(Tok::Str(v)) = self.next() else {
                    return Err(syntax(self.text, at_v));
                };
                self.expect(Tok::RParen)?;
                let Operand::Prop(p, ty) = prop else {
                    return Err(syntax(self.text, at_p));
                };
                if ty != PType::Str {
                    return Err(QueryError(format!(
                        "No function signature for the function with name '{name}' matches the specified arguments. \
                         The function signatures considered are: {name}(Edm.String Nullable=true, Edm.String \
                         Nullable=true)."
                    )));
                }
                Ok(Expr::StrFn(f, p, v))
            }
            (Dialect::Dataverse, "Microsoft.Dynamics.CRM.In" | "Microsoft.Dynamics.CRM.NotIn") => {
                let mut prop_name = None;
                let mut values = None;
                loop {
                    let at_p = self.at();
                    let Some(Tok::Word(pn)) = self.next() else {
                        return Err(syntax(self.text, at_p));
                    };
                    self.expect(Tok::Assign)?;
                    match pn.as_str() {
                        "PropertyName" => {
                            let at_v = self.at();
                            let Some(Tok::Str(v)) = self.next() else {
                                return Err(syntax(self.text, at_v));
                            };
                            prop_name = Some(v);
                        }
                        "PropertyValues" => {
                            self.expect(Tok::LBracket)?;
                            let mut vals = Vec::new();
                            loop {
                                let at_v = self.at();
                                match self.next() {
                                    Some(Tok::DStr(s)) => vals.push(s),
                                    Some(Tok::RBracket) if vals.is_empty() => break,
                                    _ => return Err(syntax(self.text, at_v)),
                                }
                                let at_s = self.at();
                                match self.next() {
                                    Some(Tok::Comma) => continue,
                                    Some(Tok::RBracket) => break,
                                    _ => return Err(syntax(self.text, at_s)),
                                }
                            }
                            values = Some(vals);
                        }
                        _ => {
                            return Err(QueryError(format!(
                                "The parameter '{pn}' is not valid for the function '{name}'."
                            )));
                        }
                    }
                    let at_s = self.at();
                    match self.next() {
                        Some(Tok::Comma) => continue,
                        Some(Tok::RParen) => break,
                        _ => return Err(syntax(self.text, at_s)),
                    }
                }
                let (Some(pn), Some(vals)) = (prop_name, values) else {
                    return Err(QueryError(format!(
                        "The function '{name}' requires the parameters PropertyName and PropertyValues."
                    )));
                };
                let Operand::Prop(p, ty) = self.prop(&pn)? else {
                    return Err(syntax(self.text, at));
                };
                let mut lits = Vec::new();
                for v in vals {
                    let lit = match &ty {
                        PType::Str => Some(Lit::Str(v.clone())),
                        PType::Guid if is_guid(&v) => Some(Lit::Guid(v.to_ascii_lowercase())),
                        t if t.numeric() => v.parse::<f64>().ok().map(Lit::Num),
                        PType::Bool => v.parse::<bool>().ok().map(Lit::Bool),
                        PType::DateTime => parse_datetime(&v).map(Lit::DateTime),
                        PType::Date => parse_date(&v).map(Lit::Date),
                        _ => None,
                    };
                    lits.push(lit.ok_or_else(|| {
                        QueryError(format!(
                            "The value '{v}' is not valid for the property '{p}' of type {}.",
                            ty.edm()
                        ))
                    })?);
                }
                Ok(Expr::In {
                    prop: p,
                    ty,
                    values: lits,
                    negate: name.ends_with("NotIn"),
                })
            }
            (Dialect::Fno, "contains" | "startswith" | "endswith") => Err(QueryError(format!(
                "The query specified in the URI is not valid. The function '{name}' is not supported; use '*' \
                 wildcards inside an 'eq' string literal."
            ))),
            _ => Err(QueryError(format!(
                "The function '{name}' at position {at} is not supported by this service emulator ('{}').",
                self.text
            ))),
        }
    }
}

/// Bare literal words: null, booleans, GUIDs, date-times, dates, numbers.
fn word_literal(w: &str) -> Option<Lit> {
    match w {
        "null" => return Some(Lit::Null),
        "true" => return Some(Lit::Bool(true)),
        "false" => return Some(Lit::Bool(false)),
        _ => {}
    }
    if is_guid(w) {
        return Some(Lit::Guid(w.to_ascii_lowercase()));
    }
    if w.len() >= 11 && w.as_bytes()[4] == b'-' && w.contains('T') {
        return parse_datetime(w).map(Lit::DateTime);
    }
    if let Some(d) = parse_date(w) {
        return Some(Lit::Date(d));
    }
    let first = w.chars().next()?;
    if first.is_ascii_digit() || first == '-' || first == '.' {
        let n = w.trim_end_matches(['M', 'm', 'L', 'l', 'd', 'D', 'f', 'F']);
        return n.parse::<f64>().ok().map(Lit::Num);
    }
    None
}

/// Parse a `$filter` value.
pub(crate) fn parse(
    text: &str,
    dialect: Dialect,
    schema: &dyn Schema,
    aliases: &[(String, String)],
) -> Result<Expr, QueryError> {
    let toks = lex(text)?;
    if toks.is_empty() {
        return Err(QueryError(format!("The $filter expression '{text}' is empty.")));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        text,
        dialect,
        schema,
        aliases,
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(syntax(text, p.at()));
    }
    Ok(e)
}

// ------------------------------------------------------------------------------------------------
// Evaluation
// ------------------------------------------------------------------------------------------------

/// A value reduced to something totally ordered, per property type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SortVal {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
}

impl SortVal {
    pub fn cmp(&self, o: &SortVal) -> Ordering {
        use SortVal::*;
        match (self, o) {
            (Null, Null) => Ordering::Equal,
            (Null, _) => Ordering::Less,
            (_, Null) => Ordering::Greater,
            (Bool(a), Bool(b)) => a.cmp(b),
            (Num(a), Num(b)) => a.total_cmp(b),
            (Str(a), Str(b)) => a.cmp(b),
            (Bool(_), _) => Ordering::Less,
            (_, Bool(_)) => Ordering::Greater,
            (Num(_), _) => Ordering::Less,
            (_, Num(_)) => Ordering::Greater,
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            SortVal::Null => Value::Null,
            SortVal::Bool(b) => Value::Bool(*b),
            SortVal::Num(n) => serde_json::Number::from_f64(*n)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            SortVal::Str(s) => Value::String(s.clone()),
        }
    }

    pub fn from_json(v: &Value) -> SortVal {
        match v {
            Value::Bool(b) => SortVal::Bool(*b),
            Value::Number(n) => SortVal::Num(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => SortVal::Str(s.clone()),
            _ => SortVal::Null,
        }
    }
}

fn ts(t: OffsetDateTime) -> f64 {
    t.unix_timestamp() as f64 + f64::from(t.nanosecond()) / 1e9
}

fn date_ts(d: time::Date) -> f64 {
    ts(d.midnight().assume_utc())
}

/// Reduce a wire value of the given type for comparison (strings fold case like the services' collation).
pub(crate) fn sort_val(v: Option<&Value>, ty: &PType) -> SortVal {
    let Some(v) = v else { return SortVal::Null };
    match (ty, v) {
        (_, Value::Null) => SortVal::Null,
        (PType::Bool, Value::Bool(b)) => SortVal::Bool(*b),
        (t, Value::Number(n)) if t.numeric() => SortVal::Num(n.as_f64().unwrap_or(0.0)),
        (PType::DateTime | PType::Date, Value::String(s)) => match parse_datetime(s) {
            Some(t) => SortVal::Num(ts(t)),
            None => parse_date(s).map(|d| SortVal::Num(date_ts(d))).unwrap_or(SortVal::Null),
        },
        (PType::Enum(_), Value::String(s)) => SortVal::Str(s.clone()),
        (_, Value::String(s)) => SortVal::Str(s.to_lowercase()),
        (_, Value::Bool(b)) => SortVal::Bool(*b),
        (_, Value::Number(n)) => SortVal::Num(n.as_f64().unwrap_or(0.0)),
        _ => SortVal::Null,
    }
}

fn lit_val(l: &Lit) -> SortVal {
    match l {
        Lit::Null => SortVal::Null,
        Lit::Bool(b) => SortVal::Bool(*b),
        Lit::Num(n) => SortVal::Num(*n),
        Lit::Str(s) => SortVal::Str(s.to_lowercase()),
        Lit::Guid(g) => SortVal::Str(g.to_lowercase()),
        Lit::DateTime(t) => SortVal::Num(ts(*t)),
        Lit::Date(d) => SortVal::Num(date_ts(*d)),
        Lit::Enum { member, .. } => SortVal::Str(member.clone()),
    }
}

fn operand_val(o: &Operand, row: &serde_json::Map<String, Value>) -> (SortVal, Option<String>) {
    match o {
        Operand::Prop(p, ty) => (sort_val(row.get(p), ty), None),
        Operand::Lit(Lit::Str(s)) => (SortVal::Str(s.to_lowercase()), Some(s.clone())),
        Operand::Lit(l) => (lit_val(l), None),
    }
}

/// `*` wildcard match (F&O), case-insensitive.
fn wildcard(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let s: Vec<char> = s.to_lowercase().chars().collect();
    glob(&p, &s)
}

/// Iterative `*` matcher with backtracking on the last star.
fn glob(p: &[char], s: &[char]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let (mut star_p, mut star_s) = (None, 0);
    while si < s.len() {
        if pi < p.len() {
            if p[pi] == '*' {
                star_p = Some(pi);
                star_s = si;
                pi += 1;
                continue;
            }
            if p[pi] == s[si] {
                pi += 1;
                si += 1;
                continue;
            }
        }
        match star_p {
            Some(sp) => {
                pi = sp + 1;
                star_s += 1;
                si = star_s;
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// SQL LIKE as Dataverse applies it inside `contains/startswith/endswith`: `%` any run, `_` one character,
/// `[abc]`, `[a-z]`, `[^abc]` one character of (or not of) a class. Case-insensitive. Iterative, so a long
/// client pattern cannot exhaust the stack.
fn like(pattern: &str, s: &str) -> bool {
    enum T {
        Any,
        One,
        Class(Vec<(char, char)>, bool),
        Lit(char),
    }
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let s: Vec<char> = s.to_lowercase().chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '%' => toks.push(T::Any),
            '_' => toks.push(T::One),
            '[' if p[i..].contains(&']') => {
                let end = i + p[i..].iter().position(|c| *c == ']').unwrap_or(0);
                let mut class = &p[i + 1..end];
                let neg = class.first() == Some(&'^');
                if neg {
                    class = &class[1..];
                }
                let mut ranges = Vec::new();
                let mut k = 0;
                while k < class.len() {
                    if k + 2 < class.len() && class[k + 1] == '-' {
                        ranges.push((class[k], class[k + 2]));
                        k += 3;
                    } else {
                        ranges.push((class[k], class[k]));
                        k += 1;
                    }
                }
                toks.push(T::Class(ranges, neg));
                i = end;
            }
            c => toks.push(T::Lit(c)),
        }
        i += 1;
    }
    let one = |t: &T, c: char| match t {
        T::Any => true,
        T::One => true,
        T::Class(r, neg) => r.iter().any(|(a, b)| *a <= c && c <= *b) != *neg,
        T::Lit(l) => *l == c,
    };
    // Greedy match with backtracking to the last `%` (every other token consumes exactly one character).
    let (mut ti, mut si) = (0, 0);
    let (mut star_t, mut star_s) = (None, 0);
    while si < s.len() {
        if ti < toks.len() {
            if matches!(toks[ti], T::Any) {
                star_t = Some(ti);
                star_s = si;
                ti += 1;
                continue;
            }
            if one(&toks[ti], s[si]) {
                ti += 1;
                si += 1;
                continue;
            }
        }
        match star_t {
            Some(st) => {
                ti = st + 1;
                star_s += 1;
                si = star_s;
            }
            None => return false,
        }
    }
    while ti < toks.len() && matches!(toks[ti], T::Any) {
        ti += 1;
    }
    ti == toks.len()
}

pub(crate) fn eval(e: &Expr, row: &serde_json::Map<String, Value>, dialect: Dialect) -> bool {
    match e {
        Expr::And(a, b) => eval(a, row, dialect) && eval(b, row, dialect),
        Expr::Or(a, b) => eval(a, row, dialect) || eval(b, row, dialect),
        Expr::Not(a) => !eval(a, row, dialect),
        Expr::Const(b) => *b,
        Expr::BoolProp(p) => row.get(p).and_then(Value::as_bool).unwrap_or(false),
        Expr::StrFn(f, p, pat) => {
            let Some(Value::String(v)) = row.get(p) else {
                return false;
            };
            let pat = match f {
                StrFn::Contains => format!("%{pat}%"),
                StrFn::StartsWith => format!("{pat}%"),
                StrFn::EndsWith => format!("%{pat}"),
            };
            like(&pat, v)
        }
        Expr::In {
            prop,
            ty,
            values,
            negate,
        } => {
            let v = sort_val(row.get(prop), ty);
            if v == SortVal::Null {
                return false;
            }
            let hit = values.iter().any(|l| lit_val(l).cmp(&v) == Ordering::Equal);
            hit != *negate
        }
        Expr::Cmp(op, l, r) => {
            let (lv, _) = operand_val(l, row);
            let (rv, raw) = operand_val(r, row);
            // F&O: `*` inside an eq/ne string literal is a wildcard.
            if dialect == Dialect::Fno
                && let Some(raw) = raw.as_ref().filter(|s| s.contains('*'))
                && matches!(op, CmpOp::Eq | CmpOp::Ne)
            {
                let SortVal::Str(s) = &lv else { return false };
                return wildcard(raw, s) == (*op == CmpOp::Eq);
            }
            match (&lv, &rv) {
                (SortVal::Null, SortVal::Null) => *op == CmpOp::Eq,
                // `x ne null`
                (_, SortVal::Null) => *op == CmpOp::Ne,
                // SQL: a null compared with a value is unknown, so the row is not returned.
                (SortVal::Null, _) => false,
                _ => {
                    let o = lv.cmp(&rv);
                    match op {
                        CmpOp::Eq => o == Ordering::Equal,
                        CmpOp::Ne => o != Ordering::Equal,
                        CmpOp::Gt => o == Ordering::Greater,
                        CmpOp::Ge => o != Ordering::Less,
                        CmpOp::Lt => o == Ordering::Less,
                        CmpOp::Le => o != Ordering::Greater,
                    }
                }
            }
        }
    }
}

/// Every property an expression reads (the F&O side projects only these before evaluating).
pub(crate) fn props(e: &Expr, out: &mut Vec<String>) {
    let mut add = |p: &String| {
        if !out.contains(p) {
            out.push(p.clone());
        }
    };
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            props(a, out);
            props(b, out);
        }
        Expr::Not(a) => props(a, out),
        Expr::Cmp(_, l, r) => {
            for o in [l, r] {
                if let Operand::Prop(p, _) = o {
                    add(p);
                }
            }
        }
        Expr::StrFn(_, p, _) | Expr::In { prop: p, .. } | Expr::BoolProp(p) => add(p),
        Expr::Const(_) => {}
    }
}

// ------------------------------------------------------------------------------------------------
// $orderby
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) struct OrderItem {
    pub prop: String,
    pub ty: PType,
    pub desc: bool,
}

pub(crate) fn parse_orderby(text: &str, schema: &dyn Schema) -> Result<Vec<OrderItem>, QueryError> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let mut it = part.split_whitespace();
        let Some(prop) = it.next() else {
            return Err(QueryError(format!("Syntax error in $orderby '{text}'.")));
        };
        let desc = match it.next() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(QueryError(format!("Syntax error in $orderby '{text}'."))),
        };
        if it.next().is_some() {
            return Err(QueryError(format!("Syntax error in $orderby '{text}'.")));
        }
        let ty = schema.prop_type(prop).ok_or_else(|| {
            QueryError(format!(
                "Could not find a property named '{prop}' on type '{}'.",
                schema.type_name()
            ))
        })?;
        out.push(OrderItem {
            prop: prop.to_string(),
            ty,
            desc,
        });
    }
    Ok(out)
}

pub(crate) fn cmp_keys(a: &[SortVal], b: &[SortVal], desc: &[bool]) -> Ordering {
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        let mut o = x.cmp(y);
        if desc.get(i).copied().unwrap_or(false) {
            o = o.reverse();
        }
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// The keys a filter limits `pk` to (`pk eq x`, `In(pk, [...])`, an `or` of those, an `and` with anything), in
/// lower case, so the sandbox can look rows up by key the way the real services use their primary index instead
/// of scanning the table. `None` when the filter does not pin the key. The full filter still decides each row.
pub(crate) fn key_candidates(e: &Expr, pk: &str) -> Option<Vec<String>> {
    let key = |l: &Lit| match l {
        Lit::Str(s) | Lit::Guid(s) => Some(s.to_lowercase()),
        _ => None,
    };
    match e {
        Expr::Cmp(CmpOp::Eq, Operand::Prop(p, _), Operand::Lit(l))
        | Expr::Cmp(CmpOp::Eq, Operand::Lit(l), Operand::Prop(p, _))
            if p == pk =>
        {
            key(l).map(|k| vec![k])
        }
        Expr::In {
            prop,
            values,
            negate: false,
            ..
        } if prop == pk => values.iter().map(key).collect(),
        Expr::Or(a, b) => {
            let mut ks = key_candidates(a, pk)?;
            ks.extend(key_candidates(b, pk)?);
            Some(ks)
        }
        Expr::And(a, b) => match (key_candidates(a, pk), key_candidates(b, pk)) {
            (Some(x), Some(y)) => Some(if x.len() <= y.len() { x } else { y }),
            (x, y) => x.or(y),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct S;
    impl Schema for S {
        fn prop_type(&self, name: &str) -> Option<PType> {
            Some(match name {
                "name" => PType::Str,
                "n" => PType::Int,
                "id" => PType::Guid,
                "flag" => PType::Bool,
                "e" => PType::Enum("NoYes".into()),
                "d" => PType::DateTime,
                _ => return None,
            })
        }
        fn enum_members(&self, ty: &str) -> Option<Vec<String>> {
            (ty == "NoYes").then(|| vec!["No".into(), "Yes".into()])
        }
        fn type_name(&self) -> String {
            "T".into()
        }
    }

    fn row(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_filter_on_the_key_is_a_lookup_only_when_every_branch_pins_the_key() {
        let a = "0000000a-0000-0000-0000-000000000000";
        let b = "0000000B-0000-0000-0000-000000000000";
        let ks = |f: &str| key_candidates(&parse(f, Dialect::Dataverse, &S, &[]).unwrap(), "id");
        assert_eq!(ks(&format!("id eq {a}")), Some(vec![a.to_string()]));
        assert_eq!(
            ks(&format!("(id eq {a} or id eq {b}) and n gt 1")),
            Some(vec![a.to_string(), b.to_lowercase()])
        );
        assert_eq!(
            ks(&format!(
                "Microsoft.Dynamics.CRM.In(PropertyName='id',PropertyValues=[\"{a}\",\"{b}\"])"
            )),
            Some(vec![a.to_string(), b.to_lowercase()])
        );
        assert_eq!(ks(&format!("id eq {a} or n gt 1")), None);
        assert_eq!(ks(&format!("id ne {a}")), None);
        assert_eq!(ks(&format!("not (id eq {a})")), None);
        assert_eq!(ks("n gt 1"), None);
    }

    fn dv(f: &str, r: &Value) -> bool {
        eval(
            &parse(f, Dialect::Dataverse, &S, &[]).unwrap(),
            &row(r.clone()),
            Dialect::Dataverse,
        )
    }

    #[test]
    fn quotes_and_case() {
        let r = serde_json::json!({"name": "O'Bryan", "n": 5});
        assert!(dv("name eq 'o''bryan'", &r));
        assert!(dv("(name eq 'x' or n gt 4) and not (n eq 6)", &r));
        let e = parse("name eq 'O'Bryan'", Dialect::Dataverse, &S, &[]).unwrap_err();
        assert_eq!(
            e.0,
            "There is an unterminated literal at position 17 in 'name eq 'O'Bryan''."
        );
    }

    #[test]
    fn functions_and_in() {
        let r = serde_json::json!({"name": "Contoso Ltd", "id": "0f8fad5b-d9cb-469f-a165-70867728950e"});
        assert!(dv("contains(name,'TOSO')", &r));
        assert!(dv("startswith(name,'con') and endswith(name,'ltd')", &r));
        assert!(dv(
            "Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[\"x\",\"contoso ltd\"])",
            &r
        ));
        assert!(dv("id eq 0F8FAD5B-D9CB-469F-A165-70867728950E", &r));
        assert!(
            parse(
                "id eq '0f8fad5b-d9cb-469f-a165-70867728950e'",
                Dialect::Dataverse,
                &S,
                &[]
            )
            .is_err()
        );
        assert!(parse("name eq 5", Dialect::Dataverse, &S, &[]).is_err());
        assert!(parse("nope eq 5", Dialect::Dataverse, &S, &[]).is_err());
    }

    #[test]
    fn fno_dialect() {
        let r = row(serde_json::json!({"name": "Big Retail Store", "e": "Yes"}));
        let f = |s: &str| parse(s, Dialect::Fno, &S, &[]);
        assert!(eval(&f("name eq '*retail*'").unwrap(), &r, Dialect::Fno));
        assert!(eval(
            &f("e eq Microsoft.Dynamics.DataEntities.NoYes'Yes'").unwrap(),
            &r,
            Dialect::Fno
        ));
        assert!(f("e gt Microsoft.Dynamics.DataEntities.NoYes'No'").is_err());
        assert!(f("e eq 'Yes'").is_err());
        assert!(f("e eq Microsoft.Dynamics.DataEntities.NoYes'Maybe'").is_err());
        assert!(f("name in ('a','b')").is_err());
        assert!(f("contains(name,'x')").is_err());
    }

    #[test]
    fn nulls_and_dates() {
        let r = serde_json::json!({"name": null, "d": "2024-05-02T10:00:00Z"});
        assert!(dv("name eq null", &r));
        assert!(!dv("name ne 'x'", &r));
        assert!(dv("d ge 2024-05-01T00:00:00Z and d lt 2024-05-03", &r));
    }

    #[test]
    fn like_classes() {
        assert!(like("%a[bc]d%", "xxacdyy"));
        assert!(!like("%a[^bc]d%", "xxacdyy"));
        assert!(like("50%", "50 percent"));
        assert!(like("%b_d", "abcd"));
        assert!(!like("%b_d", "abd"));
        assert!(like(&"%a".repeat(5000), &"a".repeat(6000)));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}name eq 'x'{}", "(".repeat(5000), ")".repeat(5000));
        assert!(parse(&deep, Dialect::Dataverse, &S, &[]).is_err());
        let nots = format!("{}name eq 'x'", "not ".repeat(5000));
        assert!(parse(&nots, Dialect::Dataverse, &S, &[]).is_err());
    }
}
