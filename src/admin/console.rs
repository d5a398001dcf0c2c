//! The console page at `/`: HTML, CSS and JS compiled into the binary (no external assets), served
//! under a strict Content-Security-Policy. The page reads and acts through the same JSON API as
//! the CLI, so it passes the same token and cross-site checks.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

const INDEX: &str = include_str!("console/index.html");
const CSS: &str = include_str!("console/console.css");
/// JavaScript modules, by the path the page imports them from.
const MODULES: [(&str, &str); 6] = [
    ("/console.js", include_str!("console/console.js")),
    ("/page.js", include_str!("console/page.js")),
    ("/format.js", include_str!("console/format.js")),
    ("/chart.js", include_str!("console/chart.js")),
    ("/card.js", include_str!("console/card.js")),
    ("/panels.js", include_str!("console/panels.js")),
];
/// The SVG namespace the charts are made in: a name, never fetched.
#[cfg(test)]
const SVG_NAMESPACE: &str = "http://www.w3.org/2000/svg";

/// Only this origin's own files and API; never framed (a framed console could be clickjacked
/// into pressing its buttons).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// The console's files by path, or `None` for any other request.
pub fn asset(method: &Method, path: &str) -> Option<Response<Full<Bytes>>> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    let (body, content_type) = match path {
        "/" | "/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/console.css" => (CSS, "text/css; charset=utf-8"),
        _ => (
            MODULES.iter().find(|(p, _)| *p == path)?.1,
            "text/javascript; charset=utf-8",
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_its_files_with_a_strict_policy() {
        let modules = MODULES.iter().map(|(p, _)| (*p, "text/javascript"));
        for (path, ty) in [("/", "text/html"), ("/console.css", "text/css")]
            .into_iter()
            .chain(modules)
        {
            let r = asset(&Method::GET, path).expect(path);
            let got = r.headers()[header::CONTENT_TYPE].to_str().unwrap();
            assert!(got.starts_with(ty), "{path}: {got}");
            assert!(
                r.headers()[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .unwrap()
                    .contains("frame-ancestors 'none'")
            );
        }
        assert!(asset(&Method::POST, "/").is_none());
        assert!(asset(&Method::GET, "/v1/services").is_none());
        // Nothing is fetched from elsewhere.
        for text in [INDEX, CSS]
            .into_iter()
            .chain(MODULES.iter().map(|(_, t)| *t))
        {
            let text = text.replace(SVG_NAMESPACE, "");
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        // Text goes in as text: no markup is ever parsed from data.
        for (path, text) in MODULES {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!text.contains(sink), "{path} uses {sink}");
            }
        }
    }
}
