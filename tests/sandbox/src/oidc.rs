//! OpenID Connect discovery of the token authority: `GET /{tenant}/v2.0/.well-known/openid-configuration` (and the
//! v1 `/{tenant}/.well-known/openid-configuration`).
//!
//! MSAL (and so azure-identity's `ClientSecretCredential`) reads this document before its first token request and
//! takes the token endpoint from it ("tenant discovery"). The shape follows OpenID Connect Discovery 1.0 §3 and
//! Microsoft Entra's document ("OpenID Connect on the Microsoft identity platform", section "Find your app's
//! OpenID configuration document URI", learn.microsoft.com/entra/identity-platform/v2-protocols-oidc): the
//! endpoints live under the authority and the tenant; `issuer` is `<authority>/<tenant>/v2.0` (v1: the
//! `sts.windows.net` form the tokens carry).

use serde_json::json;

use crate::State;
use crate::http::Resp;

pub(crate) fn document(state: &State, v2: bool) -> Resp {
    let base = format!("{}/{}", state.authority_url, state.cfg.tenant);
    let (oauth, issuer) = if v2 {
        (format!("{base}/oauth2/v2.0"), format!("{base}/v2.0"))
    } else {
        (
            format!("{base}/oauth2"),
            format!("https://sts.windows.net/{}/", state.cfg.tenant),
        )
    };
    let keys = if v2 {
        format!("{base}/discovery/v2.0/keys")
    } else {
        format!("{base}/discovery/keys")
    };
    let body = json!({
        "token_endpoint": format!("{oauth}/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": keys,
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": false,
        "authorization_endpoint": format!("{oauth}/authorize"),
        "device_authorization_endpoint": format!("{oauth}/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{oauth}/logout"),
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
    });
    Resp::plain_json(200, &body)
}
