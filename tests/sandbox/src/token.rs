//! Entra ID token endpoint (client credentials) and bearer-token checks on the APIs.
//!
//! v2 (`/{tenant}/oauth2/v2.0/token`, `scope=<resource>/.default`) and the older v1 form
//! (`/{tenant}/oauth2/token`, `resource=<resource>`) that F&O tooling still uses. Errors copy Entra's
//! codes: unknown app is `400 unauthorized_client` (AADSTS700016), a wrong secret `401 invalid_client`
//! (AADSTS7000215), a scope without `/.default` `400 invalid_scope`, an unknown resource `400 invalid_resource`
//! (AADSTS500011).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::Service;
use crate::State;
use crate::http::{Req, Resp, parse_query};

pub(crate) struct TokenInfo {
    pub aud: Service,
    pub client_id: String,
    pub expires: Instant,
}

#[derive(Default)]
pub(crate) struct TokenStore {
    pub tokens: HashMap<String, TokenInfo>,
}

impl TokenStore {
    pub fn expire_all(&mut self) {
        let past = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(Instant::now);
        for t in self.tokens.values_mut() {
            t.expires = past;
        }
    }
}

fn entra_error(state: &State, status: u16, error: &str, code: u32, text: &str) -> Resp {
    let trace = uuid::Uuid::new_v4();
    let corr = uuid::Uuid::new_v4();
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {corr} Timestamp: {stamp}"),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace.to_string(),
        "correlation_id": corr.to_string(),
        "error_uri": format!("{}/error?code={code}", state.authority_url),
    });
    Resp::plain_json(status, &body)
}

fn missing(state: &State, p: &str) -> Resp {
    entra_error(
        state,
        400,
        "invalid_request",
        900_144,
        &format!("The request body must contain the following parameter: '{p}'."),
    )
}

/// Which service a resource URL (scope without `/.default`, or v1 `resource`) names.
fn resource_service(state: &State, resource: &str) -> Option<Service> {
    let r = resource.trim_end_matches('/').to_ascii_lowercase();
    if r == state.sales_url.to_ascii_lowercase() {
        Some(Service::Sales)
    } else if r == state.fno_url.to_ascii_lowercase() {
        Some(Service::Fno)
    } else {
        None
    }
}

pub(crate) fn handle(state: &State, req: &Req) -> Resp {
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let v2 = match segs.as_slice() {
        [t, "v2.0", ".well-known", "openid-configuration"] | [t, ".well-known", "openid-configuration"]
            if req.method == "GET" =>
        {
            if !t.eq_ignore_ascii_case(&state.cfg.tenant) {
                return entra_error(
                    state,
                    400,
                    "invalid_tenant",
                    90_002,
                    &format!("Tenant '{t}' not found."),
                );
            }
            return crate::oidc::document(state, segs.len() == 4);
        }
        [_, "oauth2", "v2.0", "token"] => true,
        [_, "oauth2", "token"] => false,
        _ => {
            return entra_error(
                state,
                404,
                "invalid_request",
                900_561,
                "The endpoint is not a token endpoint of this authority.",
            );
        }
    };
    if req.method != "POST" {
        return entra_error(
            state,
            400,
            "invalid_request",
            900_561,
            &format!(
                "The endpoint only accepts POST, OPTIONS requests. Received a {} request.",
                req.method
            ),
        );
    }
    let tenant = segs[0];
    if !tenant.eq_ignore_ascii_case(&state.cfg.tenant) {
        return entra_error(
            state,
            400,
            "invalid_request",
            90_002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into \
                 the correct cloud."
            ),
        );
    }
    let form: HashMap<String, String> = parse_query(&String::from_utf8_lossy(&req.body)).into_iter().collect();
    // RFC 6749 2.3.1: client credentials may also come as HTTP Basic.
    let basic = req.header("authorization").and_then(|h| {
        let (scheme, rest) = h.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let dec = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
        let (id, secret) = dec.split_once(':')?;
        Some((
            crate::http::decode_query_part(id),
            crate::http::decode_query_part(secret),
        ))
    });
    let Some(grant) = form.get("grant_type") else {
        return missing(state, "grant_type");
    };
    if grant != "client_credentials" {
        return entra_error(
            state,
            400,
            "unsupported_grant_type",
            70_003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        );
    }
    let client_id = form
        .get("client_id")
        .cloned()
        .or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let Some(client_id) = client_id else {
        return missing(state, "client_id");
    };
    let registered = std::iter::once((&state.cfg.client_id, &state.cfg.client_secret))
        .chain(state.cfg.more_clients.iter().map(|(id, secret)| (id, secret)))
        .find(|(id, _)| **id == client_id)
        .map(|(_, secret)| secret.clone());
    let Some(registered_secret) = registered else {
        return entra_error(
            state,
            400,
            "unauthorized_client",
            700_016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if \
                 the application has not been installed by the administrator of the tenant or consented to by any \
                 user in the tenant. You may have sent your authentication request to the wrong tenant.",
                state.cfg.tenant
            ),
        );
    };
    let secret = form
        .get("client_secret")
        .cloned()
        .or_else(|| basic.as_ref().map(|b| b.1.clone()));
    let Some(secret) = secret else {
        return entra_error(
            state,
            401,
            "invalid_client",
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    };
    if secret != registered_secret {
        return entra_error(
            state,
            401,
            "invalid_client",
            7_000_215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret \
                 value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        );
    }
    let (resource, aud) = if v2 {
        let Some(scope) = form.get("scope") else {
            return missing(state, "scope");
        };
        let scopes: Vec<&str> = scope.split_whitespace().collect();
        let [one] = scopes.as_slice() else {
            return entra_error(
                state,
                400,
                "invalid_scope",
                70_011,
                &format!(
                    "The provided request must include a 'scope' input parameter. The provided value for the input \
                     parameter 'scope' is not valid. The scope {scope} is not valid. Client credential flows take a \
                     single resource's /.default scope."
                ),
            );
        };
        let Some(resource) = one.strip_suffix("/.default") else {
            return entra_error(
                state,
                400,
                "invalid_scope",
                1_002_012,
                &format!(
                    "The provided value for scope {one} is not valid. Client credential flows must have a scope \
                     value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            );
        };
        (resource.to_string(), resource_service(state, resource))
    } else {
        let Some(resource) = form.get("resource") else {
            return missing(state, "resource");
        };
        (resource.clone(), resource_service(state, resource))
    };
    let Some(aud) = aud else {
        return entra_error(
            state,
            400,
            "invalid_resource",
            500_011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named {}. This can happen if \
                 the application has not been installed by the administrator of the tenant or consented to by any \
                 user in the tenant. You might have sent your authentication request to the wrong tenant.",
                state.cfg.tenant
            ),
        );
    };
    let ttl = state.cfg.token_ttl;
    let token = mint(state, aud, &client_id, ttl);
    crate::lock(&state.tokens).tokens.insert(
        token.clone(),
        TokenInfo {
            aud,
            client_id,
            expires: Instant::now() + ttl,
        },
    );
    let secs = ttl.as_secs();
    let body: Value = if v2 {
        json!({"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": token})
    } else {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        // v1 returns numbers as strings.
        json!({
            "token_type": "Bearer", "expires_in": secs.to_string(), "ext_expires_in": secs.to_string(),
            "expires_on": (now + secs as i64).to_string(), "not_before": now.to_string(),
            "resource": resource, "access_token": token
        })
    };
    Resp::plain_json(200, &body)
        .header("Cache-Control", "no-store, no-cache")
        .header("Pragma", "no-cache")
}

/// A JWT-shaped but unsigned token: clients must treat it as opaque; the sandbox only looks it up.
fn mint(state: &State, aud: Service, client_id: &str, ttl: Duration) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let audience = if aud == Service::Sales {
        &state.sales_url
    } else {
        &state.fno_url
    };
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "p2c-sandbox"});
    let claims = json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{}/", state.cfg.tenant),
        "iat": now, "nbf": now, "exp": now + ttl.as_secs() as i64,
        "appid": client_id, "tid": state.cfg.tenant, "ver": "1.0",
        "oid": uuid::Uuid::new_v4().to_string(), "jti": uuid::Uuid::new_v4().to_string(),
    });
    let sig: [u8; 32] = rand::random();
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    Missing,
    Invalid,
    Expired,
    WrongAudience,
}

/// Check the bearer token of an API request; returns the client id for per-client limits.
pub(crate) fn authenticate(state: &State, req: &Req, svc: Service) -> Result<String, AuthError> {
    let Some(h) = req.header("authorization") else {
        return Err(AuthError::Missing);
    };
    let Some((scheme, tok)) = h.split_once(' ') else {
        return Err(AuthError::Missing);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let store = crate::lock(&state.tokens);
    let Some(info) = store.tokens.get(tok.trim()) else {
        return Err(AuthError::Invalid);
    };
    if info.aud != svc {
        return Err(AuthError::WrongAudience);
    }
    if Instant::now() >= info.expires {
        return Err(AuthError::Expired);
    }
    Ok(info.client_id.clone())
}

/// The 401 each API returns.
pub(crate) fn unauthorized(state: &State, svc: Service, err: AuthError) -> Resp {
    match svc {
        Service::Sales => {
            let (code_msg, www) = match err {
                AuthError::Missing => ("Bearer token is missing from the Authorization header.", String::new()),
                AuthError::Invalid => (
                    "The access token is invalid.",
                    ", error=\"invalid_token\", error_description=\"The access token is invalid\"".to_string(),
                ),
                AuthError::Expired => (
                    "The access token has expired. Acquire a new token and retry.",
                    ", error=\"invalid_token\", error_description=\"The access token is expired\"".to_string(),
                ),
                AuthError::WrongAudience => (
                    "The access token was issued for a different audience.",
                    ", error=\"invalid_token\", error_description=\"The audience is invalid\"".to_string(),
                ),
            };
            Resp::odata_json(401, &json!({"error": {"code": "0x80072243", "message": code_msg}})).header(
                "WWW-Authenticate",
                format!(
                    "Bearer authorization_uri={}/{}/oauth2/authorize, resource_id={}/{www}",
                    state.authority_url, state.cfg.tenant, state.sales_url
                ),
            )
        }
        // F&O answers a bad or missing token with a bare 401.
        _ => Resp::new(401).header("WWW-Authenticate", "Bearer"),
    }
}
