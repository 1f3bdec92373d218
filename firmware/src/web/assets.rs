//! The page's files, compiled into the binary from `firmware/web/` (single-file deploy, no
//! CDN: the page works on a network without internet). Requests name an asset by a key in
//! this table, never a path on disk.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// (name, content type, bytes).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../web/app.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../../web/icon.svg"),
    ),
    (
        "manifest.webmanifest",
        "application/manifest+json",
        include_str!("../../web/manifest.webmanifest"),
    ),
];

/// The asset called `name`, or 404.
pub async fn serve(name: &'static str) -> Response {
    lookup(name)
}

/// [`serve`] for a name taken from the URL.
pub async fn serve_owned(name: String) -> Response {
    lookup(&name)
}

fn lookup(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, body)) => (
            [
                (header::CONTENT_TYPE, *ct),
                // Revalidated on every load: a firmware update must not leave an old app.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// Names of the embedded files.
pub fn names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|(n, _, _)| *n)
}
