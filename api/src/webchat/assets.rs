//! The widget's static files, compiled into the binary:
//!
//! - `GET /webchat/{tenant_id}/widget.js`: the embeddable script
//!   (`widget.js`; it reads its base URL and tenant from its own `src`).
//! - `GET /webchat/{tenant_id}/demo`: a bus operator's booking page that
//!   embeds it (`demo.html`, with `{{tenant_id}}` replaced by the tenant).
//!
//! Both answer 404 (the API's JSON error) when the path's tenant is not a
//! UUID; whether the tenant has a webchat account is for the widget's calls to
//! say.

use crate::error::ApiError;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

const WIDGET_JS: &str = include_str!("widget.js");
const DEMO_HTML: &str = include_str!("demo.html");

/// Browsers may keep the script this long before asking again; a new release
/// reaches every visitor within it.
const WIDGET_CACHE_CONTROL: &str = "public, max-age=300";

/// The embeddable widget script.
#[utoipa::path(
    get,
    path = "/webchat/{tenant_id}/widget.js",
    tag = "webchat",
    params(("tenant_id" = uuid::Uuid, Path, description = "The tenant whose widget it is")),
    responses(
        (status = 200, description = "The widget (JavaScript)", content_type = "text/javascript", body = String),
        (status = 400, description = "UNKNOWN_TENANT: not a tenant id", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn widget_js(Path(tenant): Path<String>) -> Response {
    if let Err(err) = tenant_id(&tenant) {
        return err.into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(WIDGET_CACHE_CONTROL),
            ),
        ],
        WIDGET_JS,
    )
        .into_response()
}

/// The demo booking page of `tenant`, embedding the widget.
#[utoipa::path(
    get,
    path = "/webchat/{tenant_id}/demo",
    tag = "webchat",
    params(("tenant_id" = uuid::Uuid, Path, description = "The tenant whose widget it is")),
    responses(
        (status = 200, description = "A demo booking page with the widget", content_type = "text/html", body = String),
        (status = 400, description = "UNKNOWN_TENANT: not a tenant id", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn demo_page(Path(tenant): Path<String>) -> Response {
    match tenant_id(&tenant) {
        Ok(tenant) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            // A parsed UUID: nothing of the request's own text reaches the page.
            DEMO_HTML.replace("{{tenant_id}}", &tenant.to_string()),
        )
            .into_response(),
        Err(err) => err.into_response(),
    }
}

fn tenant_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::client(
            StatusCode::NOT_FOUND,
            "UNKNOWN_TENANT",
            "no webchat here: the tenant is not a UUID",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    #[tokio::test]
    async fn the_demo_page_embeds_the_widget_of_its_tenant() {
        let tenant = "00000000-0000-4000-8000-000000000001";
        let response = demo_page(Path(tenant.to_owned())).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let page = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(page.contains(&format!(r#"src="/webchat/{tenant}/widget.js""#)));
        assert!(!page.contains("{{"));
    }

    #[tokio::test]
    async fn a_tenant_that_is_not_a_uuid_is_not_found() {
        for response in [
            demo_page(Path("<script>".to_owned())).await,
            widget_js(Path("acme".to_owned())).await,
        ] {
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
        }
    }
}
