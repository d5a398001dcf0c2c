//! The HTTPS client instant-acme talks to the CA with: one TLS connection per request (an
//! order makes a handful), rustls on ring, trusting the webpki roots and `ca_roots`, every
//! request bounded by a deadline so a CA that stops answering cannot hold an order forever.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// Connect, handshake, request and response head, together.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads a PEM file of root certificates (`ca_roots`); at least one must be there.
pub fn read_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let roots = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if roots.is_empty() {
        return Err("no `BEGIN CERTIFICATE` block".into());
    }
    let mut store = RootCertStore::empty();
    for root in &roots {
        store
            .add(root.clone())
            .map_err(|e| format!("not a usable root certificate: {e}"))?;
    }
    Ok(roots)
}

pub struct Client {
    tls: tokio_rustls::TlsConnector,
}

impl Client {
    pub fn new(extra_roots: Vec<CertificateDer<'static>>) -> Client {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for root in extra_roots {
            let _ = roots.add(root);
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Client {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }
}

type Reply = Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>>;

impl HttpClient for Client {
    fn request(&self, req: Request<BodyWrapper<Bytes>>) -> Reply {
        let tls = self.tls.clone();
        Box::pin(async move {
            tokio::time::timeout(REQUEST_TIMEOUT, send(tls, req))
                .await
                .map_err(|_| other(format!("no answer within {REQUEST_TIMEOUT:?}")))?
        })
    }
}

async fn send(
    tls: tokio_rustls::TlsConnector,
    mut req: Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, Error> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(other(format!("{uri}: the CA is reached over HTTPS only")));
    }
    let host = uri.host().ok_or_else(|| other(format!("{uri}: no host")))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((bare, port))
        .await
        .map_err(|e| other(format!("cannot connect to {host}:{port}: {e}")))?;
    let name = ServerName::try_from(bare.to_string())
        .map_err(|e| other(format!("{host}: not a server name: {e}")))?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| other(format!("TLS with {host}:{port}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| other(format!("HTTP with {host}:{port}: {e}")))?;
    tokio::spawn(conn);
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
    let host_header = http::HeaderValue::from_str(authority).map_err(|e| other(e.to_string()))?;
    req.headers_mut().insert(http::header::HOST, host_header);
    let origin_form = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .map_err(|e: http::uri::InvalidUri| other(e.to_string()))?;
    *req.uri_mut() = origin_form;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| other(format!("{uri}: {e}")))?;
    Ok(BytesResponse::from(resp))
}

fn other(message: String) -> Error {
    Error::Other(message.into())
}
