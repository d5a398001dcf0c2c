use super::*;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A test CA that signs leaf certificates for given names.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn client(&self) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Writes `leaf` as `NAME.crt` and `NAME.key` in `dir` by rename, as renewal tools replace files.
fn write(dir: &Path, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    replace(&cert, leaf.cert_pem.as_bytes());
    replace(&key, leaf.key_pem.as_bytes());
    (cert, key)
}

fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn entry(hosts: &[&str], (cert, key): (PathBuf, PathBuf), default: bool) -> CertificateConfig {
    CertificateConfig {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        cert,
        key,
        default,
    }
}

/// The certificate list of a `[proxy.tls]`, as the store takes it.
/// A store serving `a.example` from `files`.
fn serving_a(files: (PathBuf, PathBuf)) -> CertStore {
    CertStore::load(&tls(vec![entry(&["a.example"], files, false)])).unwrap()
}

fn tls(certificates: Vec<CertificateConfig>) -> Vec<CertificateConfig> {
    certificates
}

/// A real handshake over an in-memory pipe; returns the leaf the server sent and the protocol
/// ALPN agreed on, or the client's error.
async fn handshake(
    store: &CertStore,
    client: Arc<ClientConfig>,
    name: &str,
) -> Result<(CertificateDer<'static>, Option<Vec<u8>>), String> {
    let (client_io, server_io) = tokio::io::duplex(64 << 10);
    let acceptor = TlsAcceptor::from(server_config(store));
    let server = tokio::spawn(async move { acceptor.accept(server_io).await.map(drop) });
    let name = ServerName::try_from(name.to_string()).unwrap();
    let result = TlsConnector::from(client)
        .connect(name, client_io)
        .await
        .map_err(|e| e.to_string())
        .map(|stream| {
            let (_, conn) = stream.get_ref();
            let leaf = conn.peer_certificates().unwrap()[0].clone().into_owned();
            (leaf, conn.alpn_protocol().map(<[u8]>::to_vec))
        });
    // The server side ends either way; a refused handshake is an error there, not a panic.
    let server_side = server.await.expect("server task");
    if result.is_err() {
        assert!(
            server_side.is_err(),
            "the server accepted a failed handshake"
        );
    }
    result
}

struct Site {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    ca: Ca,
}

impl Site {
    /// A new leaf for `hosts`, written as `name.crt` and `name.key`.
    fn files(&self, name: &str, hosts: &[&str]) -> (PathBuf, PathBuf) {
        write(&self.dir, name, &self.ca.leaf(hosts))
    }
}

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    Site {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        ca: Ca::new(),
    }
}

#[tokio::test]
async fn sni_picks_each_names_certificate() {
    let s = site();
    let a = s.ca.leaf(&["a.example"]);
    let b = s.ca.leaf(&["b.example"]);
    let wild = s.ca.leaf(&["*.wild.example"]);
    let store = CertStore::load(&tls(vec![
        entry(&["a.example"], write(&s.dir, "a", &a), false),
        entry(&["b.example"], write(&s.dir, "b", &b), false),
        entry(&["*.wild.example"], write(&s.dir, "w", &wild), false),
    ]))
    .unwrap();
    let client = s.ca.client();
    for (name, want) in [
        ("a.example", &a.der),
        ("b.example", &b.der),
        ("x.wild.example", &wild.der),
        ("A.EXAMPLE", &a.der),
    ] {
        let (served, alpn) = handshake(&store, client.clone(), name).await.unwrap();
        assert_eq!(&served, want, "{name}");
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "{name}");
    }
    // A wildcard covers one label only, and no default is configured: these fail.
    for name in ["deep.x.wild.example", "wild.example", "c.example"] {
        let e = handshake(&store, client.clone(), name).await.unwrap_err();
        assert!(!e.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn default_serves_unknown_names_and_http11_is_offered() {
    let s = site();
    let a = s.ca.leaf(&["a.example"]);
    let fallback = s.ca.leaf(&["fallback.example", "unknown.example"]);
    let store = CertStore::load(&tls(vec![
        entry(&["a.example"], write(&s.dir, "a", &a), false),
        entry(&[], write(&s.dir, "f", &fallback), true),
    ]))
    .unwrap();
    let (served, _) = handshake(&store, s.ca.client(), "unknown.example")
        .await
        .unwrap();
    assert_eq!(served, fallback.der);
    let (served, _) = handshake(&store, s.ca.client(), "a.example").await.unwrap();
    assert_eq!(served, a.der);

    let mut http11 = (*s.ca.client()).clone();
    http11.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (_, alpn) = handshake(&store, Arc::new(http11), "a.example")
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn tls_1_2_is_served_and_nothing_older_is_configured() {
    let s = site();
    let a = s.ca.leaf(&["a.example"]);
    let store = serving_a(write(&s.dir, "a", &a));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.ca.der.clone()).unwrap();
    let only12 =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let (served, _) = handshake(&store, Arc::new(only12), "a.example")
        .await
        .unwrap();
    assert_eq!(served, a.der);
    let config = server_config(&store);
    assert!(
        config
            .crypto_provider()
            .cipher_suites
            .iter()
            .all(|s| matches!(s.version(), v if *v == version::TLS12 || *v == version::TLS13))
    );
}

#[tokio::test]
async fn broken_replacement_keeps_the_old_certificate() {
    let s = site();
    let old = s.ca.leaf(&["a.example"]);
    let files = write(&s.dir, "a", &old);
    let store = serving_a(files.clone());
    let events = EventLog::default();

    // A truncated certificate.
    let new = s.ca.leaf(&["a.example"]);
    replace(&files.0, &new.cert_pem.as_bytes()[..new.cert_pem.len() / 2]);
    let outcome = store.reload_changed();
    assert!(outcome.replaced.is_empty());
    let [e] = &outcome.failed[..] else {
        panic!("{outcome:?}")
    };
    assert_eq!((e.index, e.which, &e.path), (0, PemFile::Cert, &files.0));
    assert!(e.reason.contains("not valid PEM"), "{e}");
    store.report(&outcome, &events);
    let logged = events.list(Some("wakeway"), 0);
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].kind, "certificate_rejected");
    assert!(
        logged[0].message.contains(&files.0.display().to_string())
            && logged[0]
                .message
                .contains("previous certificate keeps serving a.example"),
        "{}",
        logged[0].message
    );
    let (served, _) = handshake(&store, s.ca.client(), "a.example").await.unwrap();
    assert_eq!(served, old.der, "the old certificate keeps serving");
    assert_eq!(logged[0].level, "warn", "a rejection is a warning");
    // Reported once: the unchanged broken file is not tried again on the next poll.
    assert!(store.reload_changed().failed.is_empty());

    // The old certificate written back: nothing new serves, but the fix is news.
    replace(&files.0, old.cert_pem.as_bytes());
    let outcome = store.reload_changed();
    assert_eq!(
        (outcome.fixed.as_slice(), outcome.replaced.len()),
        (&[0][..], 0)
    );
    store.report(&outcome, &events);
    let fixed = events.list(Some("wakeway"), logged[0].seq);
    assert_eq!(fixed.len(), 1, "{fixed:?}");
    assert_eq!(
        (fixed[0].kind, fixed[0].level),
        ("certificate_fixed", "info")
    );
    assert!(
        fixed[0].message.contains("reads again"),
        "{}",
        fixed[0].message
    );
    replace(&files.0, &new.cert_pem.as_bytes()[..new.cert_pem.len() / 2]);
    assert_eq!(store.reload_changed().failed.len(), 1);

    // The new certificate with the old key: a mismatch names the key file.
    replace(&files.0, new.cert_pem.as_bytes());
    let outcome = store.reload_changed();
    let [e] = &outcome.failed[..] else {
        panic!("{outcome:?}")
    };
    assert_eq!((e.which, &e.path), (PemFile::Key, &files.1));
    assert!(e.reason.contains("does not belong"), "{e}");
    let (served, _) = handshake(&store, s.ca.client(), "a.example").await.unwrap();
    assert_eq!(served, old.der);

    // Its key arrives: the new pair serves.
    replace(&files.1, new.key_pem.as_bytes());
    let outcome = store.reload_changed();
    assert_eq!(
        (outcome.replaced.as_slice(), outcome.failed.len()),
        (&[0][..], 0)
    );
    let (served, _) = handshake(&store, s.ca.client(), "a.example").await.unwrap();
    assert_eq!(served, new.der);

    // A file that disappeared is reported by a full reload, and the pair keeps serving.
    std::fs::remove_file(&files.1).unwrap();
    let outcome = store.reload();
    assert!(
        outcome.failed[0].reason.contains("cannot read"),
        "{outcome:?}"
    );
    let (served, _) = handshake(&store, s.ca.client(), "a.example").await.unwrap();
    assert_eq!(served, new.der);
}

#[tokio::test(start_paused = true)]
async fn watcher_serves_a_renewed_certificate() {
    let s = site();
    let files = s.files("a", &["a.example"]);
    let store = serving_a(files.clone());
    let events = Arc::new(EventLog::default());
    let cancel = CancellationToken::new();
    let watcher = tokio::spawn(
        store
            .clone()
            .watch(events.clone(), WATCH_INTERVAL, cancel.clone()),
    );

    let new = s.ca.leaf(&["a.example"]);
    write(&s.dir, "a", &new);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while events.list(None, 0).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no reload event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logged = events.list(None, 0);
    assert_eq!(logged[0].kind, "certificate_reloaded", "{:?}", logged[0]);
    let (served, _) = handshake(&store, s.ca.client(), "a.example").await.unwrap();
    assert_eq!(served, new.der);

    cancel.cancel();
    watcher.await.unwrap();
}

#[test]
fn load_errors_name_entry_and_file() {
    let s = site();
    let a = s.ca.leaf(&["a.example"]);
    let b = s.ca.leaf(&["b.example"]);
    let good = write(&s.dir, "a", &a);
    let other = write(&s.dir, "b", &b);
    let garbage = s.dir.join("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let missing = s.dir.join("missing.pem");
    let cases = [
        (
            (missing.clone(), good.1.clone()),
            PemFile::Cert,
            "cannot read",
        ),
        (
            (garbage.clone(), good.1.clone()),
            PemFile::Cert,
            "BEGIN CERTIFICATE",
        ),
        (
            (good.0.clone(), garbage.clone()),
            PemFile::Key,
            "no private key",
        ),
        (
            (good.0.clone(), good.0.clone()),
            PemFile::Key,
            "no private key",
        ),
        (
            (good.0.clone(), other.1.clone()),
            PemFile::Key,
            "does not belong",
        ),
    ];
    for (files, which, says) in cases {
        let path = match which {
            PemFile::Cert => files.0.clone(),
            PemFile::Key => files.1.clone(),
        };
        let e = CertStore::load(&tls(vec![
            entry(&["b.example"], other.clone(), false),
            entry(&["a.example"], files, false),
        ]))
        .unwrap_err();
        assert_eq!((e.index, e.which, &e.path), (1, which, &path), "{e}");
        assert!(e.reason.contains(says), "{e}");
        assert!(
            e.to_string().starts_with(&format!(
                "proxy.tls.certificate[1].{}: {}",
                which.key_name(),
                path.display()
            )),
            "{e}"
        );
    }
}

#[tokio::test]
async fn apply_replaces_the_list_or_nothing() {
    let s = site();
    let a = s.ca.leaf(&["a.example"]);
    let b = s.ca.leaf(&["b.example"]);
    let fa = write(&s.dir, "a", &a);
    let fb = write(&s.dir, "b", &b);
    let store = serving_a(fa.clone());
    let broken = entry(&["b.example"], (fb.0.clone(), fa.1.clone()), false);
    assert!(
        store
            .apply(&tls(vec![entry(&["a.example"], fa.clone(), false), broken]))
            .is_err()
    );
    assert!(handshake(&store, s.ca.client(), "b.example").await.is_err());
    store
        .apply(&tls(vec![entry(&["b.example"], fb, true)]))
        .unwrap();
    let (served, _) = handshake(&store, s.ca.client(), "b.example").await.unwrap();
    assert_eq!(served, b.der);
    // a.example left the list: it now gets the default, which is b's.
    let e = handshake(&store, s.ca.client(), "a.example")
        .await
        .unwrap_err();
    assert!(e.contains("certificate") || e.contains("name"), "{e}");
}

#[test]
fn a_certificate_must_cover_its_hosts() {
    let s = site();
    let a = s.ca.leaf(&["a.example"]);
    let fa = write(&s.dir, "a", &a);
    let fw = s.files("w", &["*.w.example"]);
    for (hosts, files, host) in [
        (&["a.example", "b.example"][..], &fa, "b.example"),
        (&["*.a.example"][..], &fa, "*.a.example"),
        (&["w.example"][..], &fw, "w.example"),
    ] {
        let e = CertStore::load(&tls(vec![entry(hosts, files.clone(), false)])).unwrap_err();
        assert_eq!((e.which, &e.path), (PemFile::Cert, &files.0), "{e}");
        assert!(e.reason.contains(&format!("not valid for `{host}`")), "{e}");
    }
    CertStore::load(&tls(vec![
        entry(&["x.w.example", "*.w.example"], fw, false),
        entry(&[], fa, true),
    ]))
    .unwrap();
}

#[tokio::test]
async fn update_rereads_the_same_list_and_replaces_a_new_one() {
    let s = site();
    let a = s.ca.leaf(&["a.example"]);
    let fa = write(&s.dir, "a", &a);
    let config = tls(vec![entry(&["a.example"], fa.clone(), false)]);
    let store = CertStore::load(&config).unwrap();
    // Same list, same files: re-read, nothing new.
    let outcome = store.update(&config).unwrap();
    assert!(outcome.replaced.is_empty() && outcome.failed.is_empty());
    // Same list, renewed files: the new pair serves.
    let renewed = s.ca.leaf(&["a.example"]);
    write(&s.dir, "a", &renewed);
    assert_eq!(store.update(&config).unwrap().replaced, vec![0]);
    let (served, _) = handshake(&store, s.ca.client(), "a.example").await.unwrap();
    assert_eq!(served, renewed.der);
    // A new list.
    let b = s.ca.leaf(&["b.example"]);
    let fb = write(&s.dir, "b", &b);
    store
        .update(&tls(vec![entry(&["b.example"], fb, false)]))
        .unwrap();
    let (served, _) = handshake(&store, s.ca.client(), "b.example").await.unwrap();
    assert_eq!(served, b.der);
    assert!(handshake(&store, s.ca.client(), "a.example").await.is_err());
}

#[tokio::test(start_paused = true)]
async fn acceptor_reports_alpn_and_bounds_the_handshake() {
    let s = site();
    let a = s.ca.leaf(&["a.example"]);
    let store = serving_a(write(&s.dir, "a", &a));
    let acceptor = Acceptor::new(&store);
    for (offer, want) in [
        (vec![b"h2".to_vec(), b"http/1.1".to_vec()], Alpn::H2),
        (vec![b"http/1.1".to_vec()], Alpn::Http1),
        (vec![], Alpn::Http1),
    ] {
        let mut client = (*s.ca.client()).clone();
        client.alpn_protocols = offer;
        let (client_io, server_io) = tokio::io::duplex(64 << 10);
        let connect = TlsConnector::from(Arc::new(client))
            .connect(ServerName::try_from("a.example").unwrap(), client_io);
        let (accepted, connected) =
            tokio::join!(acceptor.accept(server_io, Duration::from_secs(10)), connect);
        connected.unwrap();
        assert_eq!(accepted.unwrap().1, want);
    }
    // A client that connects and says nothing is let go at the deadline.
    let (_silent, server_io) = tokio::io::duplex(1024);
    let e = acceptor
        .accept(server_io, Duration::from_secs(10))
        .await
        .map(drop)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
}
