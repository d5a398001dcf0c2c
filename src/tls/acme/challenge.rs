//! Challenge responders. HTTP-01: the plain listener answers
//! `/.well-known/acme-challenge/TOKEN` with the key authorization, for tokens of orders in
//! flight only, before any routing (an ACME check never wakes a service). TLS-ALPN-01: a
//! self-signed certificate carrying the `acmeIdentifier` extension (RFC 8737 §3), served by
//! the certificate store to `acme-tls/1` handshakes for names with an order in flight.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;

/// The path prefix of HTTP-01 (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// HTTP-01 token -> key authorization. Read by the workers (one `load`), written by the ACME
/// manager only.
#[derive(Default)]
pub struct Http01 {
    tokens: ArcSwap<HashMap<String, Arc<str>>>,
}

impl Http01 {
    pub fn insert(&self, token: &str, key_authorization: &str) {
        let auth: Arc<str> = Arc::from(key_authorization);
        self.tokens.rcu(|old| {
            let mut new = HashMap::clone(old);
            new.insert(token.to_string(), auth.clone());
            new
        });
    }

    pub fn remove(&self, token: &str) {
        self.tokens.rcu(|old| {
            let mut new = HashMap::clone(old);
            new.remove(token);
            new
        });
    }

    /// The answer to a plain-HTTP request for `path`: `None` if it is not a challenge path
    /// (the request goes on to routing), else the status and body.
    pub fn answer(&self, path: &[u8]) -> Option<(u16, Bytes)> {
        let token = path.strip_prefix(HTTP01_PREFIX.as_bytes())?;
        let token = std::str::from_utf8(token).unwrap_or_default();
        match self.tokens.load().get(token) {
            Some(auth) => Some((200, Bytes::copy_from_slice(auth.as_bytes()))),
            None => Some((
                404,
                Bytes::from_static(b"no ACME challenge in flight for this token\n"),
            )),
        }
    }

    /// As `answer`, written as a whole HTTP/1.1 response into `out` (replacing what it
    /// held; the connection closes after it: a validator sends one request).
    pub fn answer_h1(&self, path: &[u8], out: &mut Vec<u8>) -> bool {
        let Some((status, body)) = self.answer(path) else {
            return false;
        };
        out.clear();
        let reason = if status == 200 { "OK" } else { "Not Found" };
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&body);
        true
    }
}

/// The TLS-ALPN-01 certificate for `name`: self-signed, for `name` only, with the SHA-256
/// digest of the key authorization in the critical `acmeIdentifier` extension. PEM (chain, key).
pub fn alpn_certificate(name: &str, digest: &[u8]) -> Result<(String, String), rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject;

    use super::*;

    #[test]
    fn only_tokens_in_flight_are_answered() {
        let h = Http01::default();
        assert_eq!(h.answer(b"/index.html"), None);
        assert_eq!(h.answer(b"/.well-known/acme-challenge/abc").unwrap().0, 404);
        h.insert("abc", "abc.thumb");
        let (status, body) = h.answer(b"/.well-known/acme-challenge/abc").unwrap();
        assert_eq!((status, &body[..]), (200, &b"abc.thumb"[..]));
        let mut out = Vec::new();
        assert!(h.answer_h1(b"/.well-known/acme-challenge/abc", &mut out));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nabc.thumb"), "{text}");
        h.remove("abc");
        assert_eq!(h.answer(b"/.well-known/acme-challenge/abc").unwrap().0, 404);
    }

    #[test]
    fn the_alpn_certificate_names_the_host_and_carries_the_digest() {
        let digest = [7u8; 32];
        let (pem, _key) = alpn_certificate("a.test", &digest).unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // An OCTET STRING of the 32-byte digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
    }
}
