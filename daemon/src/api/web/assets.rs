//! The dashboard's stylesheet and script, embedded in the binary and served
//! under names that carry their content hash, so a browser may cache them
//! for good and a new Coach is never shown old ones.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;

pub struct Asset {
    /// `/assets/coach.<hash>.css`
    pub path: String,
    pub body: &'static str,
    pub content_type: &'static str,
}

fn asset(name: &str, ext: &str, body: &'static str, content_type: &'static str) -> Asset {
    let hash = crate::core::hash::sha256_hex(body.as_bytes());
    Asset {
        path: format!("/assets/{name}.{}.{ext}", &hash[..12]),
        body,
        content_type,
    }
}

pub static CSS: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        "coach",
        "css",
        include_str!("../../../assets/web/coach.css"),
        "text/css; charset=utf-8",
    )
});

pub static JS: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        "coach",
        "js",
        include_str!("../../../assets/web/coach.js"),
        "text/javascript; charset=utf-8",
    )
});

/// `GET /assets/{file}`: only the current names exist.
pub async fn serve(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let path = format!("/assets/{file}");
    for a in [&*CSS, &*JS] {
        if a.path == path {
            return (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(a.content_type),
                    ),
                    (
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("public, max-age=31536000, immutable"),
                    ),
                    (
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    ),
                ],
                a.body,
            )
                .into_response();
        }
    }
    (StatusCode::NOT_FOUND, "no such asset").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash_and_the_weight_stays_small() {
        assert!(CSS.path.starts_with("/assets/coach.") && CSS.path.ends_with(".css"));
        assert_ne!(CSS.path, JS.path);
        // The page weight target: at most 100 KB of script and style.
        assert!(CSS.body.len() + JS.body.len() <= 100_000);
    }
}
