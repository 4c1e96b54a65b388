//! The Dataverse tables the sandbox serves: columns with types, lookups (navigation properties) and keys.
//!
//! The real service rejects unknown columns in `$select`, `$filter` and bodies, so the sandbox needs a column list.
//! The lists cover the standard columns the prospect-to-cash flows touch plus the `msdynce_*` columns the P2C
//! solution adds (spec/templates.md section 4); they are not the full CRM schema.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColType {
    /// Single line of text with its maximum length.
    Str(usize),
    Int,
    BigInt,
    Money,
    Decimal,
    Float,
    Bool,
    /// Choice (option set) and state/status: compared as integers.
    Choice,
    DateTime,
    DateOnly,
    Guid,
}

impl ColType {
    pub fn edm(self) -> &'static str {
        match self {
            ColType::Str(_) => "Edm.String",
            ColType::Int | ColType::Choice => "Edm.Int32",
            ColType::BigInt => "Edm.Int64",
            ColType::Money | ColType::Decimal => "Edm.Decimal",
            ColType::Float => "Edm.Double",
            ColType::Bool => "Edm.Boolean",
            ColType::DateTime => "Edm.DateTimeOffset",
            ColType::DateOnly => "Edm.Date",
            ColType::Guid => "Edm.Guid",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    /// Lookup attribute name (`customerid`); the read-only property is `_customerid_value`.
    pub name: String,
    /// Target entity sets. More than one = polymorphic: navigation properties are `<name>_<logical>`, unless
    /// `principal`.
    pub targets: Vec<&'static str>,
    /// The owner lookup (`ownerid`): one navigation property typed `mscrm.principal`, bound to a user or a team
    /// (`"ownerid@odata.bind": "/teams(<id>)"`), not one navigation property per target.
    pub principal: bool,
}

impl Lookup {
    pub fn value_col(&self) -> String {
        format!("_{}_value", self.name)
    }

    /// Whether each target has its own navigation property (`customerid_account`, `customerid_contact`).
    pub fn per_target_navs(&self) -> bool {
        self.targets.len() > 1 && !self.principal
    }

    /// The navigation property that reaches `target_logical` through this lookup.
    pub fn nav_name(&self, target_logical: &str) -> String {
        if self.per_target_navs() {
            format!("{}_{target_logical}", self.name)
        } else {
            self.name.clone()
        }
    }
}

/// How a table's rows are owned (spec/templates.md 3; see `owner.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ownership {
    /// Organization- or business-owned: no owner columns.
    None,
    /// User- or team-owned: `ownerid` (a user or a team) decides `owningbusinessunit`.
    User,
    /// A document line: owned like its header, never on its own.
    Header,
}

#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub set: &'static str,
    pub logical: &'static str,
    pub pk: String,
    pub primary_name: &'static str,
    /// Every structural property (pk, columns, `_x_value` lookup properties), in output order.
    pub columns: Vec<(String, ColType)>,
    pub lookups: Vec<Lookup>,
    /// Alternate keys defined in the org (column lists).
    pub alt_keys: Vec<Vec<&'static str>>,
    pub has_state: bool,
    /// Set by the platform, never by a client body.
    pub read_only: Vec<String>,
    /// System autonumber column filled on create when absent (`quotenumber`...), with its prefix.
    pub autonumber: Option<(&'static str, &'static str)>,
    /// Columns system pricing calculates (`extendedamount`, `totalamount`...): `IsValidForCreate` is false in the
    /// real metadata, so a create ignores them; an update is accepted and then recalculated (see `sales.rs`).
    pub computed: Vec<&'static str>,
    /// Other columns with `IsValidForCreate = false` in the real metadata that a create ignores (set them with an
    /// update): `ispricelocked` of orders and invoices (DCE `salesorder.md`, `invoice.md`).
    pub not_valid_for_create: Vec<&'static str>,
    pub ownership: Ownership,
    /// Columns a client may write but never read back (`IsValidForRead` false: `serviceendpoint.authvalue`).
    pub write_only: Vec<&'static str>,
    /// System metadata the Web API only reads (`sdkmessage`, `sdkmessagefilter`: Retrieve/RetrieveMultiple only).
    pub system: bool,
}

impl Table {
    pub fn col(&self, name: &str) -> Option<ColType> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }

    /// Lookup reachable through this navigation property name (`transactioncurrencyid`,
    /// `customerid_account`), with the target set the name implies.
    pub fn nav(&self, nav: &str) -> Option<(&Lookup, &'static str)> {
        for l in &self.lookups {
            if !l.per_target_navs() && l.name == nav {
                return Some((l, l.targets[0]));
            }
            if l.per_target_navs() {
                for t in &l.targets {
                    if let Some(tt) = table(t)
                        && format!("{}_{}", l.name, tt.logical) == nav
                    {
                        return Some((l, t));
                    }
                }
            }
        }
        None
    }

    pub fn lookup_by_value_col(&self, col: &str) -> Option<&Lookup> {
        self.lookups.iter().find(|l| l.value_col() == col)
    }

    pub fn type_name(&self) -> String {
        format!("Microsoft.Dynamics.CRM.{}", self.logical)
    }
}

struct Builder {
    t: Table,
}

const ADDRESS: &str = "name:s200 line1:s250 line2:s250 line3:s250 city:s80 county:s50 stateorprovince:s50 \
                       postalcode:s20 country:s80 telephone1:s50 fax:s50 latitude:f longitude:f \
                       shippingmethodcode:c freighttermscode:c";
const SHIP_BILL: &str = "name:s200 line1:s250 line2:s250 line3:s250 city:s80 stateorprovince:s50 postalcode:s20 \
                         country:s80 telephone:s50 fax:s50";
const DOC_TOTALS: &str = "totalamount:m totalamountlessfreight:m totallineitemamount:m totaltax:m \
                          totaldiscountamount:m discountamount:m discountpercentage:d freightamount:m \
                          totallineitemdiscountamount:m";
/// Header columns system pricing calculates (not valid for create).
const DOC_COMPUTED: &str = "totalamount totalamountlessfreight totallineitemamount totaltax totaldiscountamount \
                            totallineitemdiscountamount";
/// Line columns system pricing calculates (not valid for create).
const LINE_COMPUTED: &str = "baseamount extendedamount";
const LINE: &str = "productdescription:s500 description:s2000 quantity:d priceperunit:m baseamount:m \
                    extendedamount:m manualdiscountamount:m volumediscountamount:m tax:m ispriceoverridden:b \
                    isproductoverridden:b lineitemnumber:i sequencenumber:i";

fn parse_type(t: &str) -> ColType {
    match t {
        "i" => ColType::Int,
        "I" => ColType::BigInt,
        "m" => ColType::Money,
        "d" => ColType::Decimal,
        "f" => ColType::Float,
        "b" => ColType::Bool,
        "c" => ColType::Choice,
        "t" => ColType::DateTime,
        "D" => ColType::DateOnly,
        "g" => ColType::Guid,
        s if s.starts_with('s') => ColType::Str(s[1..].parse().unwrap_or(100)),
        _ => ColType::Str(100),
    }
}

impl Builder {
    fn new(set: &'static str, logical: &'static str, primary_name: &'static str) -> Builder {
        let pk = format!("{logical}id");
        Builder {
            t: Table {
                set,
                logical,
                pk: pk.clone(),
                primary_name,
                columns: vec![(pk, ColType::Guid)],
                lookups: Vec::new(),
                alt_keys: Vec::new(),
                has_state: false,
                read_only: vec!["versionnumber".into(), "createdon".into(), "modifiedon".into()],
                autonumber: None,
                computed: Vec::new(),
                not_valid_for_create: Vec::new(),
                ownership: Ownership::None,
                write_only: Vec::new(),
                system: false,
            },
        }
    }

    fn cols(mut self, spec: &str) -> Builder {
        for item in spec.split_whitespace() {
            let (n, t) = item.split_once(':').unwrap_or((item, "s100"));
            self.t.columns.push((n.to_string(), parse_type(t)));
        }
        self
    }

    fn prefixed(mut self, prefix: &str, spec: &str) -> Builder {
        for item in spec.split_whitespace() {
            let (n, t) = item.split_once(':').unwrap_or((item, "s100"));
            self.t.columns.push((format!("{prefix}_{n}"), parse_type(t)));
        }
        self
    }

    fn lookup(mut self, name: &str, targets: &[&'static str]) -> Builder {
        let l = Lookup {
            name: name.to_string(),
            targets: targets.to_vec(),
            principal: false,
        };
        self.t.columns.push((l.value_col(), ColType::Guid));
        self.t.read_only.push(l.value_col());
        self.t.lookups.push(l);
        self
    }

    fn state(mut self) -> Builder {
        self.t.has_state = true;
        self.t.columns.push(("statecode".into(), ColType::Choice));
        self.t.columns.push(("statuscode".into(), ColType::Choice));
        self
    }

    /// User/team-owned tables: the owner (a user or a team), the business unit that follows it, and which of
    /// the two kinds of principal owns the row (`_owninguser_value` / `_owningteam_value`, set by the platform).
    fn owned(mut self) -> Builder {
        self = self
            .lookup("ownerid", &["systemusers", "teams"])
            .lookup("owningbusinessunit", &["businessunits"])
            .lookup("owninguser", &["systemusers"])
            .lookup("owningteam", &["teams"]);
        if let Some(l) = self.t.lookups.iter_mut().find(|l| l.name == "ownerid") {
            l.principal = true;
        }
        self.t.ownership = Ownership::User;
        self
    }

    /// Document lines: the same owner columns, always their header's.
    fn owned_by_header(mut self) -> Builder {
        self = self.owned();
        self.t.ownership = Ownership::Header;
        self
    }

    fn alt_key(mut self, cols: &[&'static str]) -> Builder {
        self.t.alt_keys.push(cols.to_vec());
        self
    }

    fn autonumber(mut self, col: &'static str, prefix: &'static str) -> Builder {
        self.t.autonumber = Some((col, prefix));
        self
    }

    fn computed(mut self, cols: &'static str) -> Builder {
        self.t.computed.extend(cols.split_whitespace());
        self
    }

    fn not_valid_for_create(mut self, cols: &'static str) -> Builder {
        self.t.not_valid_for_create.extend(cols.split_whitespace());
        self
    }

    fn read_only(mut self, col: &str) -> Builder {
        self.t.read_only.push(col.to_string());
        self
    }

    fn write_only(mut self, col: &'static str) -> Builder {
        self.t.write_only.push(col);
        self
    }

    fn system(mut self) -> Builder {
        self.t.system = true;
        self
    }

    fn done(mut self) -> Table {
        self.t.columns.push(("createdon".into(), ColType::DateTime));
        self.t.columns.push(("modifiedon".into(), ColType::DateTime));
        self.t.columns.push(("versionnumber".into(), ColType::BigInt));
        self.t
    }
}

fn build() -> Vec<Table> {
    vec![
        Builder::new("accounts", "account", "name")
            .cols(
                "name:s160 accountnumber:s20 telephone1:s50 telephone2:s50 telephone3:s50 fax:s50 \
                 emailaddress1:s100 emailaddress2:s100 websiteurl:s200 description:s2000 creditlimit:m \
                 creditonhold:b numberofemployees:i revenue:m customertypecode:c industrycode:c \
                 accountcategorycode:c paymenttermscode:c shippingmethodcode:c tickersymbol:s10 sic:s20 \
                 exchangerate:d",
            )
            .prefixed("address1", ADDRESS)
            .prefixed("address2", ADDRESS)
            .lookup("transactioncurrencyid", &["transactioncurrencies"])
            .lookup("primarycontactid", &["contacts"])
            .lookup("parentaccountid", &["accounts"])
            .lookup("defaultpricelevelid", &["pricelevels"])
            .owned()
            .state()
            .done(),
        Builder::new("contacts", "contact", "fullname")
            .cols(
                "firstname:s50 middlename:s50 lastname:s50 fullname:s160 jobtitle:s100 department:s100 \
                 emailaddress1:s100 telephone1:s50 telephone2:s50 mobilephone:s50 fax:s50 websiteurl:s200 \
                 description:s2000 gendercode:c familystatuscode:c donotemail:b governmentid:s50 birthdate:D \
                 creditlimit:m msdynce_contactnumber:s20 msdynce_isactivecustomer:b \
                 msdynce_iscompanyanaccount:b",
            )
            .prefixed("address1", ADDRESS)
            .lookup("parentcustomerid", &["accounts", "contacts"])
            .lookup("transactioncurrencyid", &["transactioncurrencies"])
            .owned()
            .state()
            .alt_key(&["msdynce_contactnumber"])
            .read_only("fullname")
            .done(),
        Builder::new("transactioncurrencies", "transactioncurrency", "currencyname")
            .cols("currencyname:s100 isocurrencycode:s5 currencysymbol:s10 exchangerate:d currencyprecision:i")
            .state()
            .done(),
        Builder::new("businessunits", "businessunit", "name")
            .cols("name:s160 divisionname:s100 description:s2000 isdisabled:b")
            .lookup("parentbusinessunitid", &["businessunits"])
            .done(),
        // Business-owned: a team belongs to one business unit; every unit has exactly one default team.
        Builder::new("teams", "team", "name")
            .cols("name:s160 description:s2000 isdefault:b teamtype:c emailaddress:s100")
            .lookup("businessunitid", &["businessunits"])
            .read_only("isdefault")
            .done(),
        Builder::new("systemusers", "systemuser", "fullname")
            .cols(
                "fullname:s200 firstname:s64 lastname:s64 domainname:s1024 internalemailaddress:s100 \
                 isdisabled:b",
            )
            .lookup("businessunitid", &["businessunits"])
            .read_only("fullname")
            .done(),
        Builder::new("uomschedules", "uomschedule", "name")
            .cols("name:s200 baseuomname:s100 description:s2000")
            .state()
            .done(),
        Builder::new("uoms", "uom", "name")
            .cols("name:s100 quantity:d isschedulebaseuom:b")
            .lookup("uomscheduleid", &["uomschedules"])
            .lookup("baseuom", &["uoms"])
            .done(),
        Builder::new("products", "product", "name")
            .cols(
                "name:s100 productnumber:s100 description:s2000 price:m currentcost:m standardcost:m \
                 quantitydecimal:i producttypecode:c productstructure:c isstockitem:b \
                 msdynce_ismaintainedexternally:b",
            )
            .lookup("defaultuomid", &["uoms"])
            .lookup("defaultuomscheduleid", &["uomschedules"])
            .lookup("pricelevelid", &["pricelevels"])
            .lookup("transactioncurrencyid", &["transactioncurrencies"])
            .state()
            .done(),
        // The organization (one row): its Sales setting "Use system pricing calculation" is
        // `oobpricecalculationenabled` (PAD/Sales "Use custom pricing for products"; see `sales.rs`); "Create
        // products without parent in active state" is `createproductswithoutparentinactivestate` (`catalog.rs`).
        Builder::new("organizations", "organization", "name")
            .cols("name:s160 oobpricecalculationenabled:b createproductswithoutparentinactivestate:b")
            .done(),
        Builder::new("pricelevels", "pricelevel", "name")
            .cols("name:s100 description:s2000 begindate:t enddate:t")
            .lookup("transactioncurrencyid", &["transactioncurrencies"])
            .state()
            .done(),
        Builder::new("productpricelevels", "productpricelevel", "productidname")
            .cols(
                "amount:m percentage:d pricingmethodcode:c quantitysellingcode:c roundingoptioncode:c \
                 roundingoptionamount:m",
            )
            .lookup("pricelevelid", &["pricelevels"])
            .lookup("productid", &["products"])
            .lookup("uomid", &["uoms"])
            .lookup("uomscheduleid", &["uomschedules"])
            .lookup("transactioncurrencyid", &["transactioncurrencies"])
            .done(),
        Builder::new("quotes", "quote", "name")
            .cols(
                "name:s300 quotenumber:s100 revisionnumber:i description:s2000 effectivefrom:t effectiveto:t \
                 closedon:D requestdeliveryby:D ispricelocked:b msdynce_hasexternallymaintainedproductsonly:b \
                 msdynce_ismaintainedexternally:b",
            )
            .cols(DOC_TOTALS)
            .computed(DOC_COMPUTED)
            .prefixed("shipto", SHIP_BILL)
            .prefixed("billto", SHIP_BILL)
            .lookup("customerid", &["accounts", "contacts"])
            .lookup("pricelevelid", &["pricelevels"])
            .lookup("transactioncurrencyid", &["transactioncurrencies"])
            .owned()
            .state()
            .autonumber("quotenumber", "QUO")
            .done(),
        Builder::new("quotedetails", "quotedetail", "quotedetailname")
            .cols(LINE)
            .computed(LINE_COMPUTED)
            .cols(
                "quotedetailname:s500 msdynce_quotehasexternalmaintainedproductsonly:b \
                 msdynce_ismaintainedexternally:b msdynce_quoterevisionnumber:i",
            )
            .prefixed("shipto", SHIP_BILL)
            .lookup("quoteid", &["quotes"])
            .lookup("productid", &["products"])
            .lookup("uomid", &["uoms"])
            .lookup("transactioncurrencyid", &["transactioncurrencies"])
            .owned_by_header()
            .done(),
        Builder::new("salesorders", "salesorder", "name")
            .cols(
                "name:s300 ordernumber:s100 description:s2000 requestdeliveryby:D submitdate:D \
                 ispricelocked:b msdynce_ismaintainedexternally:b \
                 msdynce_hasexternallymaintainedproductsonly:b msdynce_misctax:m msdynce_processingstatus:c",
            )
            .cols(DOC_TOTALS)
            .computed(DOC_COMPUTED)
            .not_valid_for_create("ispricelocked")
            .prefixed("shipto", SHIP_BILL)
            .prefixed("billto", SHIP_BILL)
            .lookup("customerid", &["accounts", "contacts"])
            .lookup("pricelevelid", &["pricelevels"])
            .lookup("transactioncurrencyid", &["transactioncurrencies"])
            .lookup("quoteid", &["quotes"])
            .owned()
            .state()
            .autonumber("ordernumber", "ORD")
            .done(),
        Builder::new("salesorderdetails", "salesorderdetail", "salesorderdetailname")
            .cols(LINE)
            .computed(LINE_COMPUTED)
            .cols(
                "salesorderdetailname:s500 msdynce_ismaintainedexternally:b msdynce_ismisctax:b \
                 msdynce_orderhasexternalmaintainedproductsonly:b msdynce_orderissubmitted:b \
                 msdynce_ordernumber:s100",
            )
            .prefixed("shipto", SHIP_BILL)
            .lookup("salesorderid", &["salesorders"])
            .lookup("productid", &["products"])
            .lookup("uomid", &["uoms"])
            .lookup("transactioncurrencyid", &["transactioncurrencies"])
            .owned_by_header()
            .done(),
        Builder::new("invoices", "invoice", "name")
            .cols(
                "name:s300 invoicenumber:s100 description:s2000 ispricelocked:b msdynce_invoicedate:t \
                 msdynce_ismaintainedexternally:b msdynce_hasexternallymaintainedproductsonly:b \
                 msdynce_misctax:m",
            )
            .cols(DOC_TOTALS)
            .computed(DOC_COMPUTED)
            .not_valid_for_create("ispricelocked")
            .prefixed("shipto", SHIP_BILL)
            .prefixed("billto", SHIP_BILL)
            .lookup("customerid", &["accounts", "contacts"])
            .lookup("salesorderid", &["salesorders"])
            .lookup("pricelevelid", &["pricelevels"])
            .lookup("transactioncurrencyid", &["transactioncurrencies"])
            .owned()
            .state()
            .autonumber("invoicenumber", "INV")
            .done(),
        Builder::new("invoicedetails", "invoicedetail", "invoicedetailname")
            .cols(LINE)
            .computed(LINE_COMPUTED)
            .cols(
                "invoicedetailname:s500 producttypecode:c propertyconfigurationstatus:c \
                 msdynce_invoicenumber:s100 msdynce_invoicedate:t msdynce_ismaintainedexternally:b \
                 msdynce_ismisctax:b",
            )
            .prefixed("shipto", SHIP_BILL)
            .lookup("invoiceid", &["invoices"])
            .lookup("productid", &["products"])
            .lookup("uomid", &["uoms"])
            .lookup("transactioncurrencyid", &["transactioncurrencies"])
            .owned_by_header()
            .done(),
    ]
    .into_iter()
    .chain(registration_tables())
    .collect()
}

/// Where event handlers are registered (PAD `reference/entities/serviceendpoint.md`, `sdkmessageprocessingstep.md`,
/// `sdkmessage.md`, `sdkmessagefilter.md`): the columns p2c and the Plug-in Registration Tool use. Webhooks are
/// service endpoints with `contract` 8; a step ties a message (`sdkmessageid`) on a table (`sdkmessagefilterid`)
/// to an event handler (`eventhandler`: a plug-in type or a service endpoint).
fn registration_tables() -> Vec<Table> {
    vec![
        Builder::new("serviceendpoints", "serviceendpoint", "name")
            .cols(
                "name:s256 description:s2000 url:s2000 contract:c authtype:c authvalue:s2048 messageformat:c \
                 connectionmode:c namespaceaddress:s255 path:s160 solutionnamespace:s160 userclaim:c \
                 isauthvalueset:b",
            )
            .write_only("authvalue")
            .read_only("isauthvalueset")
            .done(),
        Builder::new("plugintypes", "plugintype", "name")
            .cols("name:s256 typename:s256 friendlyname:s256")
            .system()
            .done(),
        Builder::new("sdkmessages", "sdkmessage", "name")
            .cols("name:s256 categoryname:s25 isprivate:b")
            .system()
            .done(),
        Builder::new("sdkmessagefilters", "sdkmessagefilter", "name")
            .cols("name:s256 primaryobjecttypecode:s64 secondaryobjecttypecode:s64 iscustomprocessingstepallowed:b")
            .lookup("sdkmessageid", &["sdkmessages"])
            .system()
            .done(),
        Builder::new("sdkmessageprocessingsteps", "sdkmessageprocessingstep", "name")
            .cols(
                "name:s256 description:s256 stage:c mode:c rank:i supporteddeployment:c \
                 filteringattributes:s100000 asyncautodelete:b configuration:s1000000",
            )
            .lookup("eventhandler", &["plugintypes", "serviceendpoints"])
            .lookup("sdkmessageid", &["sdkmessages"])
            .lookup("sdkmessagefilterid", &["sdkmessagefilters"])
            .state()
            .done(),
    ]
}

static TABLES: OnceLock<HashMap<&'static str, Table>> = OnceLock::new();

fn tables() -> &'static HashMap<&'static str, Table> {
    TABLES.get_or_init(|| build().into_iter().map(|t| (t.set, t)).collect())
}

/// Table by entity set name (case-sensitive, like the real service).
pub(crate) fn table(set: &str) -> Option<&'static Table> {
    tables().get(set)
}

/// Table by logical name (`account`).
pub(crate) fn by_logical(logical: &str) -> Option<&'static Table> {
    tables().values().find(|t| t.logical == logical)
}

pub(crate) fn all_sets() -> Vec<&'static str> {
    let mut v: Vec<_> = tables().keys().copied().collect();
    v.sort_unstable();
    v
}

/// Default `statuscode` for a new row in state 0 (every P2C table uses 1 = Active/New/In progress).
pub(crate) fn default_status(_t: &Table) -> i64 {
    1
}

/// Allowed `statuscode` values per `statecode` for the tables with a documented state model
/// (spec/protocols.md A.10). Other tables have the platform's default model: Active (0) with status Active (1),
/// Inactive (1) with status Inactive (2) (the same pairs their `EntityDefinitions` status option sets list).
pub(crate) fn status_allowed(t: &Table, state: i64, status: i64) -> bool {
    let pairs: &[(i64, &[i64])] = match t.set {
        "quotes" => &[(0, &[1, 2]), (1, &[2, 3]), (2, &[4]), (3, &[5, 6, 7, 647_390_000])],
        "salesorders" => &[
            (0, &[1, 2, 700_970_000]),
            (1, &[3]),
            (2, &[4]),
            (3, &[100_001, 100_002]),
            (4, &[100_003]),
        ],
        "invoices" => &[
            (0, &[1, 2, 4, 5, 6]),
            (1, &[3, 7]),
            (2, &[100_001, 100_002]),
            (3, &[100_003]),
        ],
        "products" => &[(0, &[1]), (1, &[2]), (2, &[0]), (3, &[3])],
        "sdkmessageprocessingsteps" => &[(0, &[1]), (1, &[2])],
        _ => return matches!((state, status), (0, 1) | (1, 2)),
    };
    pairs.iter().any(|(s, st)| *s == state && st.contains(&status))
}

/// `QuoteState.Draft`: how the platform names a state in its error messages.
pub(crate) fn state_label(t: &Table, state: i64) -> String {
    let names: &[&str] = match t.set {
        "quotes" => &["Draft", "Active", "Won", "Closed"],
        "salesorders" => &["Active", "Submitted", "Canceled", "Fulfilled", "Invoiced"],
        "invoices" => &["Active", "Closed", "Paid", "Canceled"],
        "products" => &["Active", "Retired", "Draft", "UnderRevision"],
        _ => &["Active", "Inactive"],
    };
    let mut logical = t.logical.to_string();
    if let Some(f) = logical.get_mut(0..1) {
        f.make_ascii_uppercase();
    }
    if t.set == "salesorders" {
        logical = "SalesOrder".into();
    }
    match usize::try_from(state).ok().and_then(|i| names.get(i)) {
        Some(n) => format!("{logical}State.{n}"),
        None => format!("{logical}State.{state}"),
    }
}

/// The default status a state change to `state` gets when the client leaves `statuscode` out (`-1` in SetState).
pub(crate) fn default_status_for_state(t: &Table, state: i64) -> i64 {
    match (t.set, state) {
        ("quotes", 1) => 2,
        ("quotes", 2) => 4,
        ("quotes", 3) => 5,
        ("salesorders", 1) => 3,
        ("salesorders", 2) => 4,
        ("salesorders", 3) => 100_001,
        ("salesorders", 4) => 100_003,
        ("invoices", 1) => 3,
        ("invoices", 2) => 100_001,
        ("invoices", 3) => 100_003,
        ("products", 0) => 1,
        ("products", 1) => 2,
        ("products", 2) => 0,
        ("products", 3) => 3,
        (_, 0) => 1,
        (_, _) => 2,
    }
}
