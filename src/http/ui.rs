//! The `/ui` dashboard's static files, compiled into the binary: a page, its script and its
//! style sheet (`src/http/ui/`). No build step, no CDN, nothing fetched from elsewhere.
//!
//! The files hold no cluster data, so they are served without credentials (see
//! [`crate::auth::permissions`]); the page asks for a bearer token and reads everything it shows
//! from `GET /v1/dashboard` ([`super::dashboard`]) with it.
//!
//! Invariant: every answer carries a Content-Security-Policy that allows scripts, styles and
//! requests from this origin only and no inline script, so text from the API that reached the
//! DOM as markup still could not run; the script inserts data as text only.

use axum::http::header::{self, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// Same origin only; no inline script or style, no plugins, no framing, no `<base>` tricks,
/// and no form submission (the token form is handled by the script, so a page whose script
/// failed cannot send the token anywhere, not even into a URL).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard page
///
/// Static HTML; it asks for a bearer token and polls `GET /v1/dashboard` with it.
#[utoipa::path(
    get,
    path = "/ui",
    operation_id = "getDashboardPage",
    tag = "ops",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)),
)]
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// The dashboard's script
#[utoipa::path(
    get,
    path = "/ui/app.js",
    operation_id = "getDashboardScript",
    tag = "ops",
    responses((status = 200, description = "The script", content_type = "text/javascript", body = String)),
)]
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The dashboard's style sheet
#[utoipa::path(
    get,
    path = "/ui/app.css",
    operation_id = "getDashboardStyle",
    tag = "ops",
    responses((status = 200, description = "The style sheet", content_type = "text/css", body = String)),
)]
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        // Revalidated on every load, so a node upgraded in place serves its own page.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ),
    ];
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(response: &'a Response, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    #[tokio::test]
    async fn each_file_has_its_type_no_cache_and_the_strict_policy() {
        for (response, content_type) in [
            (page().await, "text/html; charset=utf-8"),
            (script().await, "text/javascript; charset=utf-8"),
            (style().await, "text/css; charset=utf-8"),
        ] {
            assert_eq!(header(&response, "content-type"), content_type);
            assert_eq!(header(&response, "cache-control"), "no-cache");
            let policy = header(&response, "content-security-policy");
            assert!(policy.starts_with("default-src 'self';"), "{policy}");
            assert!(!policy.contains("unsafe"), "{policy}");
            assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        }
    }

    /// The policy forbids inline script and style, so the page must not need any; and it
    /// loads nothing from another origin.
    #[test]
    fn the_page_has_no_inline_script_or_style_and_no_external_resource() {
        let lower = PAGE.to_ascii_lowercase();
        assert!(lower.contains(r#"<script src="/ui/app.js""#));
        assert_eq!(lower.matches("<script").count(), 1, "one script, by URL");
        assert!(!lower.contains("<style"), "inline style sheet");
        assert!(!lower.contains(" style="), "inline style attribute");
        let handler = lower.split(" on").skip(1).find(|rest| {
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert_eq!(handler, None, "inline event handler");
        for text in [PAGE, SCRIPT, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn") && !text.contains("@import"));
        }
    }

    /// Data reaches the DOM as text: the script never parses strings as markup.
    #[test]
    fn the_script_never_parses_strings_as_markup() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!SCRIPT.contains(sink), "app.js uses {sink}");
        }
        assert!(
            !SCRIPT.contains("localStorage"),
            "the token belongs in sessionStorage"
        );
    }
}
