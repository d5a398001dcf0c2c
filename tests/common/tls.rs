//! Certificates and an HTTPS client for tests: a throwaway CA (rcgen) that signs leaf
//! certificates for given names, writes them as PEM files for `[[proxy.tls.certificate]]`, and a
//! rustls client that trusts it and reports which certificate and protocol a server chose.
//!
//! ```ignore
//! let ca = TestCa::new();
//! let (cert, key) = ca.leaf(&["a.test", "*.a.test"]).write(dir, "a");
//! let resp = https_get(proxy_tls, "a.test", "/", &ca.client(&["h2", "http/1.1"])).await?;
//! assert_eq!(resp.served, leaf.der);     // SNI picked the right certificate
//! assert_eq!(resp.alpn.as_deref(), Some("h2"));
//! ```
//! `curl --cacert` works too: [`TestCa::write_ca`] writes the CA certificate and [`curl_https`]
//! runs curl against a listener with SNI and `Host` set to a name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{REQUEST_TIMEOUT, Resp, buffer};

/// A certificate authority that exists only for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
    pub pem: String,
}

/// A leaf certificate and its key.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// What a client sees as the server's certificate when this one is served.
    pub der: CertificateDer<'static>,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "wakeway test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (DNS names, `*.x` wildcards, or IP addresses), signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// Writes the CA certificate as `ca.pem` in `dir` (for `curl --cacert`).
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).expect("write CA");
        path
    }

    /// A client that trusts only this CA and offers `alpn` (e.g. `["h2", "http/1.1"]`).
    pub fn client(&self, alpn: &[&str]) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("CA into roots");
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        // Every connection a full handshake, as each curl run is: a resumed session does not
        // send the certificate again, so it would not show which one the server now serves.
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }
}

impl Leaf {
    /// Writes `NAME.crt` (chain: leaf) and `NAME.key` in `dir`, each by write-then-rename as
    /// renewal tools do, so a watcher never reads half a file. Returns (cert, key).
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        replace_file(&cert, self.cert_pem.as_bytes());
        replace_file(&key, self.key_pem.as_bytes());
        (cert, key)
    }
}

/// Replaces `path` with `bytes` atomically (write a sibling, rename over).
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// A `[[proxy.tls.certificate]]` table for `hosts` and the files from [`Leaf::write`].
pub fn certificate_toml(hosts: &[&str], (cert, key): &(PathBuf, PathBuf), default: bool) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    format!(
        "\n[[proxy.tls.certificate]]\nhosts = [{}]\ncert = {:?}\nkey = {:?}\ndefault = {default}\n",
        hosts.join(", "),
        cert.display().to_string(),
        key.display().to_string(),
    )
}

/// A TLS connection to `addr` sending `server_name` as SNI.
pub async fn connect(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("server name {server_name:?}: {e}"))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr} as {server_name}: {e}"))
}

/// The leaf certificate the server sent.
pub fn served_certificate(stream: &TlsStream<TcpStream>) -> Option<CertificateDer<'static>> {
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
}

/// The protocol agreed by ALPN (`"h2"`, `"http/1.1"`), if any.
pub fn alpn(stream: &TlsStream<TcpStream>) -> Option<String> {
    let (_, conn) = stream.get_ref();
    conn.alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

/// An HTTPS response with what the handshake chose.
pub struct TlsResp {
    pub resp: Resp,
    pub served: CertificateDer<'static>,
    pub alpn: Option<String>,
}

/// `GET path` over TLS with SNI and `Host` both `server_name`, speaking h2 when ALPN picks it
/// and HTTP/1.1 otherwise.
pub async fn https_get(
    addr: SocketAddr,
    server_name: &str,
    path: &str,
    config: &Arc<ClientConfig>,
) -> Result<TlsResp, String> {
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        https_exchange(addr, server_name, path, config.clone()),
    )
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "no HTTPS response from {addr} within {REQUEST_TIMEOUT:?}"
        ))
    })
}

async fn https_exchange(
    addr: SocketAddr,
    server_name: &str,
    path: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsResp, String> {
    let stream = connect(addr, server_name, config).await?;
    let served = served_certificate(&stream).ok_or("the server sent no certificate")?;
    let alpn = alpn(&stream);
    let io = TokioIo::new(stream);
    let response = if alpn.as_deref() == Some("h2") {
        let req = Request::get(format!("https://{server_name}{path}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        sender.send_request(req).await
    } else {
        let req = Request::get(path)
            .header(http::header::HOST, server_name)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("http/1.1 handshake: {e}"))?;
        tokio::spawn(conn);
        sender.send_request(req).await
    }
    .map_err(|e| format!("request to https://{server_name}{path}: {e}"))?;
    Ok(TlsResp {
        resp: buffer(response, "response body").await?,
        served,
        alpn,
    })
}

/// What `curl` printed: the body, then ` HTTP_VERSION STATUS` (from `-w`), and its stderr.
pub struct CurlOut {
    pub ok: bool,
    pub body: String,
    /// `"2"` or `"1.1"`.
    pub http_version: String,
    pub status: u16,
    pub stderr: String,
}

/// `curl https://NAME:PORT/PATH` against `addr` (`--resolve`, so SNI and Host are `name`),
/// trusting `ca_file`, with `extra` arguments (e.g. `["--http2"]`). Runs on tokio's process
/// support, so the server under test keeps running on the same runtime.
pub async fn curl_https(
    addr: SocketAddr,
    name: &str,
    path: &str,
    ca_file: &Path,
    extra: &[&str],
) -> CurlOut {
    let url = format!("https://{name}:{}{path}", addr.port());
    let resolve = format!("{name}:{}:{}", addr.port(), addr.ip());
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-m", "20", "--cacert"])
        .arg(ca_file)
        .args(["--resolve", &resolve, "-w", " %{http_version} %{http_code}"])
        .args(extra)
        .arg(&url)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run curl (is it installed?): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut tail = stdout.rsplitn(3, ' ');
    let status = tail.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let http_version = tail.next().unwrap_or("").to_string();
    let body = tail.next().unwrap_or("").to_string();
    CurlOut {
        ok: out.status.success(),
        body,
        http_version,
        status,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
