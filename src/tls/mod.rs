//! TLS termination: the certificates of `[proxy.tls]`, picked per handshake by the server name the
//! client sends (SNI), and reloaded when their files change.
//!
//! The handshake path reads one `ArcSwap` (no lock); the control plane (reload, the file watcher)
//! builds a new lookup table and stores it. A certificate whose new files are broken keeps serving
//! the old pair: a bad renewal must not take a site down. Names no file covers can get their
//! certificate from an ACME CA (`acme/`); picking one per handshake is `resolve.rs`.

pub mod acme;
mod report;
mod resolve;

pub use report::Reloaded;

pub use resolve::ACME_TLS_ALPN;
use resolve::Table;

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_util::sync::CancellationToken;

use crate::events::EventLog;

/// One `[[proxy.tls.certificate]]`: a PEM chain and key, served to the names in `hosts`.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateConfig {
    /// Lower-case server names; `*.example.com` matches exactly one label below `example.com`.
    pub hosts: Vec<String>,
    /// PEM certificate chain, leaf first. Relative paths are resolved against the config
    /// file's directory when the file is parsed.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Served to clients whose server name matches no entry (or who send none).
    pub default: bool,
}

/// How often [`CertStore::watch`] looks at the certificate files by default.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The certificates in force, shared by every TLS listener (cheap to clone).
#[derive(Clone)]
pub struct CertStore {
    inner: Arc<Inner>,
}

struct Inner {
    provider: Arc<CryptoProvider>,
    /// Read on every handshake.
    table: ArcSwap<Table>,
    /// What the table was built from; control plane only (reload, watch).
    entries: Mutex<Vec<Entry>>,
    /// Certificates issued by the ACME CA, by name (written by the ACME manager only).
    issued: ArcSwap<resolve::NameMap>,
    /// TLS-ALPN-01 challenge certificates of the orders in flight, by name.
    challenges: ArcSwap<resolve::NameMap>,
    /// A reloaded config's certificate list was rejected (the old one kept serving) and no list
    /// has applied since.
    list_rejected: std::sync::atomic::AtomicBool,
}

pub(crate) struct Entry {
    config: CertificateConfig,
    key: Arc<CertifiedKey>,
    /// The files as last read (or last tried): a change is a new stamp.
    stamp: Stamp,
    /// Its files were rejected since they last read well: a good read is news.
    rejected: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    cert: Option<FileStamp>,
    key: Option<FileStamp>,
}

/// mtime alone misses a same-second rewrite and an atomic rename of a file with an old mtime
/// (`cp -p`, certbot's symlink swap); with the length and inode those show too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(config: &CertificateConfig) -> Stamp {
        let file = |p: &Path| {
            std::fs::metadata(p).ok().map(|m| FileStamp {
                modified: m.modified().ok(),
                len: m.len(),
                inode: m.ino(),
            })
        };
        Stamp {
            cert: file(&config.cert),
            key: file(&config.key),
        }
    }
}

/// Which file of a certificate entry an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemFile {
    Cert,
    Key,
}

impl PemFile {
    /// The config key that names the file.
    pub fn key_name(self) -> &'static str {
        match self {
            PemFile::Cert => "cert",
            PemFile::Key => "key",
        }
    }
}

/// A certificate entry that cannot be served: which entry, which file, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError {
    /// Index into `[[proxy.tls.certificate]]`.
    pub index: usize,
    pub which: PemFile,
    pub path: PathBuf,
    pub reason: String,
}

impl CertError {
    /// The config key path of the file (`proxy.tls.certificate[0].key`).
    pub fn key_path(&self) -> String {
        format!(
            "proxy.tls.certificate[{}].{}",
            self.index,
            self.which.key_name()
        )
    }
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.key_path(),
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for CertError {}

impl CertStore {
    /// Reads every certificate (`[[proxy.tls.certificate]]`, in order); any bad file fails the
    /// whole load.
    pub fn load(certificates: &[CertificateConfig]) -> Result<CertStore, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let entries = read_all(&provider, certificates)?;
        Ok(CertStore {
            inner: Arc::new(Inner {
                table: ArcSwap::from_pointee(Table::build(&entries)),
                entries: Mutex::new(entries),
                provider,
                issued: Default::default(),
                challenges: Default::default(),
                list_rejected: Default::default(),
            }),
        })
    }

    /// Replaces the whole certificate list (a config reload); on any bad file nothing changes.
    pub fn apply(&self, certificates: &[CertificateConfig]) -> Result<(), CertError> {
        let fresh = read_all(&self.inner.provider, certificates)?;
        let mut entries = self.entries();
        *entries = fresh;
        self.inner.table.store(Arc::new(Table::build(&entries)));
        Ok(())
    }

    /// Applies a reloaded config: a changed certificate list replaces the old one (all or
    /// nothing); the same list re-reads every file, keeping the old pair of a broken entry.
    pub fn update(&self, certificates: &[CertificateConfig]) -> Result<Reloaded, CertError> {
        use std::sync::atomic::Ordering::SeqCst;
        let same = self
            .entries()
            .iter()
            .map(|e| &e.config)
            .eq(certificates.iter());
        let mut outcome = if same {
            self.reload()
        } else {
            if let Err(e) = self.apply(certificates) {
                self.inner.list_rejected.store(true, SeqCst);
                return Err(e);
            }
            Reloaded {
                replaced: (0..certificates.len()).collect(),
                ..Reloaded::default()
            }
        };
        if self.inner.list_rejected.swap(false, SeqCst) {
            outcome.fixed = (0..certificates.len()).collect();
        }
        Ok(outcome)
    }

    /// Re-reads every certificate's files (SIGHUP). An entry whose files are broken keeps
    /// serving its old pair and is reported in `failed`.
    pub fn reload(&self) -> Reloaded {
        self.refresh(true)
    }

    /// Re-reads only the entries whose files changed since they were last read or tried.
    pub fn reload_changed(&self) -> Reloaded {
        self.refresh(false)
    }

    fn refresh(&self, all: bool) -> Reloaded {
        let mut entries = self.entries();
        let mut outcome = Reloaded::default();
        for (index, entry) in entries.iter_mut().enumerate() {
            let stamp = Stamp::of(&entry.config);
            if !all && stamp == entry.stamp {
                continue;
            }
            // Remembered even when the read fails, so a broken file is reported once, not on
            // every poll, and the next change to either file is tried again.
            entry.stamp = stamp;
            match read_pair(&self.inner.provider, index, &entry.config) {
                Ok(key) => {
                    if !same_pair(&key, &entry.key) {
                        entry.key = Arc::new(key);
                        outcome.replaced.push(index);
                    }
                    if std::mem::take(&mut entry.rejected) {
                        outcome.fixed.push(index);
                    }
                }
                Err(e) => {
                    entry.rejected = true;
                    outcome.failed.push(e);
                }
            }
        }
        if !outcome.replaced.is_empty() {
            self.inner.table.store(Arc::new(Table::build(&entries)));
        }
        outcome
    }

    /// Polls the certificate files every `every` and reloads the ones that changed, recording
    /// each outcome in `events`, until `cancel`.
    pub async fn watch(self, events: Arc<EventLog>, every: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            // A few stat calls, and a few KiB read when something changed: not worth a thread.
            let outcome = self.reload_changed();
            self.report(&outcome, &events);
        }
    }

    /// The configured certificates: which names, which file, and the leaf now served.
    pub fn files(&self) -> Vec<(CertificateConfig, CertificateDer<'static>)> {
        self.entries()
            .iter()
            .filter_map(|e| Some((e.config.clone(), e.key.cert.first()?.clone())))
            .collect()
    }

    /// Serves `key` to `name` from the next handshake on (`None`: stop serving it).
    pub fn set_issued(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        set(&self.inner.issued, name, key);
    }

    /// Answers TLS-ALPN-01 validations of `name` with `key` (`None`: the order is over).
    pub fn set_challenge(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        set(&self.inner.challenges, name, key);
    }

    /// A certificate chain (PEM, leaf first) and its private key, ready to serve. A
    /// TLS-ALPN-01 certificate (`challenge`) skips the check that the key matches: its critical
    /// `acmeIdentifier` extension is unknown to the certificate parser, and wakeway made both.
    pub fn certified_key(
        &self,
        chain_pem: &[u8],
        key_pem: &[u8],
        challenge: bool,
    ) -> Result<CertifiedKey, String> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("certificate chain: {}", pem_reason(&e)))?;
        if chain.is_empty() {
            return Err("certificate chain: no `BEGIN CERTIFICATE` block".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| format!("private key: {}", pem_reason(&e)))?;
        let signing = self
            .inner
            .provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| format!("private key: {e}"))?;
        let pair = CertifiedKey::new(chain, signing);
        if challenge {
            return Ok(pair);
        }
        match pair.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(pair)
            }
            Err(e) => Err(format!("the key does not belong to the certificate: {e}")),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.inner.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn set(map: &ArcSwap<resolve::NameMap>, name: &str, key: Option<Arc<CertifiedKey>>) {
    map.rcu(|old| {
        let mut new = resolve::NameMap::clone(old);
        match &key {
            Some(k) => new.insert(name.to_string(), k.clone()),
            None => new.remove(name),
        };
        new
    });
}

fn same_pair(a: &CertifiedKey, b: &CertifiedKey) -> bool {
    a.cert == b.cert
}

/// The rustls configuration of the TLS listeners: certificates from `store`, ALPN `h2` then
/// `http/1.1` (and `acme-tls/1` for validations), TLS 1.3 and 1.2 only, stateless session tickets.
pub fn server_config(store: &CertStore) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(store.inner.provider.clone())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(store.clone()));
    // Last: rustls picks the server's first protocol the client offers, and only an ACME
    // validation offers `acme-tls/1` (and nothing else).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    // Resumption without per-worker session caches: each worker runs its own runtime, and a
    // ticket any worker can decrypt keeps resumption working across them.
    if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
        config.ticketer = ticketer;
    }
    Arc::new(config)
}

/// The protocol a TLS client agreed to by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    H2,
    /// `http/1.1`, or no ALPN at all (HTTP/1.1 is what such a client speaks).
    Http1,
}

/// Accepts TLS connections for a listener: one per worker, cheap to clone (the configuration
/// behind it is shared and follows certificate reloads).
#[derive(Clone)]
pub struct Acceptor {
    config: Arc<ServerConfig>,
    /// For a client that offers ALPN but none of the protocols above: rustls would refuse it
    /// (`no_application_protocol`); like nginx, wakeway continues without ALPN (HTTP/1.1).
    without_alpn: Arc<ServerConfig>,
}

impl Acceptor {
    pub fn new(store: &CertStore) -> Acceptor {
        let config = server_config(store);
        let mut without_alpn = config.as_ref().clone();
        without_alpn.alpn_protocols.clear();
        Acceptor {
            config,
            without_alpn: Arc::new(without_alpn),
        }
    }

    /// Completes the handshake within `timeout`: a client that connects and stalls in the
    /// handshake holds a socket like one that never sends its head, so the same deadline
    /// (`proxy.header_read_timeout`) applies.
    pub async fn accept<IO>(
        &self,
        io: IO,
        timeout: Duration,
    ) -> std::io::Result<(tokio_rustls::server::TlsStream<IO>, Alpn)>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let handshake = async {
            let acceptor = rustls::server::Acceptor::default();
            let start = tokio_rustls::LazyConfigAcceptor::new(acceptor, io).await?;
            let known = start.client_hello().alpn().is_none_or(|mut offered| {
                offered.any(|p| self.config.alpn_protocols.iter().any(|ours| ours == p))
            });
            let config = if known {
                &self.config
            } else {
                &self.without_alpn
            };
            start.into_stream(config.clone()).await
        };
        let stream = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "TLS handshake not finished within the header read timeout",
                )
            })??;
        let alpn = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Alpn::H2,
            // The validation ends with the handshake: no request follows (RFC 8737 §3).
            Some(ACME_TLS_ALPN) => {
                return Err(std::io::Error::other(
                    "TLS-ALPN-01 validation: handshake done",
                ));
            }
            _ => Alpn::Http1,
        };
        Ok((stream, alpn))
    }
}

fn read_all(
    provider: &CryptoProvider,
    certificates: &[CertificateConfig],
) -> Result<Vec<Entry>, CertError> {
    certificates
        .iter()
        .enumerate()
        .map(|(index, config)| {
            let stamp = Stamp::of(config);
            let key = read_pair(provider, index, config)?;
            Ok(Entry {
                config: config.clone(),
                key: Arc::new(key),
                stamp,
                rejected: false,
            })
        })
        .collect()
}

/// Reads and checks one entry's certificate chain and private key.
fn read_pair(
    provider: &CryptoProvider,
    index: usize,
    config: &CertificateConfig,
) -> Result<CertifiedKey, CertError> {
    let err = |which: PemFile, reason: String| CertError {
        index,
        which,
        path: match which {
            PemFile::Cert => config.cert.clone(),
            PemFile::Key => config.key.clone(),
        },
        reason,
    };
    let read = |which: PemFile, path: &Path| {
        std::fs::read(path).map_err(|e| err(which, format!("cannot read the file: {e}")))
    };
    let cert_pem = read(PemFile::Cert, &config.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(PemFile::Cert, format!("not valid PEM: {}", pem_reason(&e))))?;
    if chain.is_empty() {
        return Err(err(
            PemFile::Cert,
            "no `BEGIN CERTIFICATE` block: expected a PEM certificate chain, leaf first (certbot's fullchain.pem)".into(),
        ));
    }
    let key_pem = read(PemFile::Key, &config.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let why = match e {
            pem::Error::NoItemsFound => "no private key block (`BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`)".to_string(),
            other => format!("not valid PEM: {}", pem_reason(&other)),
        };
        err(PemFile::Key, why)
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| err(PemFile::Key, format!("unusable private key: {e}")))?;
    let leaf = chain[0].clone();
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            covers_hosts(&leaf, config).map_err(|why| err(PemFile::Cert, why))?;
            Ok(pair)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(err(
            PemFile::Key,
            format!(
                "this private key does not belong to the certificate in {}",
                config.cert.display()
            ),
        )),
        Err(e) => Err(err(
            PemFile::Cert,
            format!("the first certificate cannot be read: {e}"),
        )),
    }
}

/// The leaf must be valid for every name it is listed for, or clients of that name would get a
/// certificate they refuse. A wildcard entry is checked with a name one label under it.
fn covers_hosts(leaf: &CertificateDer<'_>, config: &CertificateConfig) -> Result<(), String> {
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("the first certificate cannot be parsed: {e:?}"))?;
    for host in &config.hosts {
        let probe = match host.strip_prefix("*.") {
            Some(parent) => format!("wakeway-probe.{parent}"),
            None => host.clone(),
        };
        let Ok(name) = ServerName::try_from(probe.as_str()) else {
            continue;
        };
        if cert.verify_is_valid_for_subject_name(&name).is_err() {
            return Err(format!(
                "the certificate is not valid for `{host}`, which this entry lists in `hosts`; list only names among its subject alternative names"
            ));
        }
    }
    Ok(())
}

fn pem_reason(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a block has no END line (truncated file?)".into(),
        pem::Error::IllegalSectionStart { .. } => "a malformed BEGIN line".into(),
        pem::Error::Base64Decode(why) => format!("bad base64 ({why})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
