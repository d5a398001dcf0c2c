//! Let's Encrypt's test CA, `pebble` (Debian's package, with `pebble-challtestsrv` as its DNS),
//! run on loopback for one test: its validation ports point at wakeway's listeners, every name
//! resolves to 127.0.0.1, and its own HTTPS uses a certificate from a throwaway [`TestCa`].
//!
//! ```ignore
//! let ports = Ports::reserve();                     // wakeway's plain and TLS ports
//! let pebble = Pebble::start(&ports, &[], None).await.expect("pebble");
//! let root = pebble.root().await;                   // the root pebble issues under
//! let site = Site::start(&site_config(&pebble, &ports, "hosts = [\"a.test\"]", "", "")).await;
//! site.wait_issued("a.test", &root).await;          // a real TLS client, trusting `root`
//! assert_eq!(pebble.orders(), 1);                   // orders in pebble's log
//! ```
//! Without pebble installed a test is skipped, except under `CI=true`, where it fails.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::tls::{TestCa, TlsResp, https_get};
use super::{DEADLINE, Proc, wait_for};

/// Whether pebble is installed; under `CI=true` its absence fails the test.
pub fn available() -> bool {
    let found = Command::new("pebble")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
        && Command::new("pebble-challtestsrv")
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "pebble is not installed (CI=true): .ci/needs/30-acme.sh installs Debian's `pebble`"
        );
        eprintln!("skipped: pebble is not installed (apt-get install pebble)");
    }
    found
}

/// `n` distinct free loopback TCP ports: all held until all are picked, so no two are the same.
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("its address").port())
}

/// A free loopback port for both TCP and UDP (the DNS server listens on both).
fn free_dns_port() -> u16 {
    loop {
        let [port] = free_ports::<1>();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// wakeway's plain and TLS ports, picked before pebble starts (pebble validates on them).
#[derive(Clone, Copy)]
pub struct Ports {
    pub http: u16,
    pub tls: u16,
}

impl Ports {
    pub fn reserve() -> Ports {
        let [http, tls] = free_ports::<2>();
        Ports { http, tls }
    }
}

pub struct Pebble {
    dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory: String,
    pub listen: SocketAddr,
    pub management: SocketAddr,
    dns_port: u16,
    /// The CA file that signed pebble's own HTTPS certificate (for `ca_roots`).
    pub wfe_ca: PathBuf,
    wfe_client: Arc<ClientConfig>,
    env: Vec<(String, String)>,
    pebble: Option<Child>,
    dns: Option<Child>,
    /// Log lines of the pebbles that ran before (a restart starts a new log).
    earlier_log: String,
}

impl Pebble {
    /// Starts pebble (and its DNS) validating on `ports`, with extra environment `env` and
    /// certificates valid for `validity` seconds (pebble's default: five years). `None` when
    /// pebble is not installed (outside CI).
    pub async fn start(
        ports: &Ports,
        env: &[(&str, &str)],
        validity: Option<u64>,
    ) -> Option<Pebble> {
        let mut pebble = Pebble::prepare(ports, env, validity)?;
        pebble.run().await;
        Some(pebble)
    }

    /// Everything but the processes: a test that starts wakeway while the CA is down calls
    /// [`Pebble::run`] later.
    pub fn prepare(ports: &Ports, env: &[(&str, &str)], validity: Option<u64>) -> Option<Pebble> {
        if !available() {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new();
        let leaf = ca.leaf(&["127.0.0.1", "localhost"]);
        let (cert, key) = leaf.write(dir.path(), "pebble-wfe");
        let wfe_ca = ca.write_ca(dir.path());
        let [listen, management] =
            free_ports::<2>().map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": cert,
            "privateKey": key,
            "httpPort": ports.http,
            "tlsPort": ports.tls,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(v) = validity {
            config["pebble"]["certificateValidityPeriod"] = v.into();
        }
        std::fs::write(dir.path().join("pebble.json"), config.to_string())
            .expect("write pebble.json");
        Some(Pebble {
            directory: format!("https://{listen}/dir"),
            listen,
            management,
            dns_port: free_dns_port(),
            wfe_ca,
            wfe_client: ca.client(&["http/1.1"]),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pebble: None,
            dns: None,
            earlier_log: String::new(),
            dir,
        })
    }

    /// Starts the processes and waits until the directory answers.
    pub async fn run(&mut self) {
        let log = |name: &str| {
            std::fs::File::create(self.dir.path().join(name)).expect("create a log file")
        };
        let dns = format!("127.0.0.1:{}", self.dns_port);
        if self.dns.is_none() {
            let dns_log = log("challtestsrv.log");
            self.dns = Some(
                Command::new("pebble-challtestsrv")
                    .args([
                        "-dns01",
                        &dns,
                        "-http01",
                        "",
                        "-https01",
                        "",
                        "-tlsalpn01",
                        "",
                    ])
                    .args([
                        "-management",
                        &format!("127.0.0.1:{}", free_ports::<1>()[0]),
                    ])
                    .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                    .stdin(Stdio::null())
                    .stdout(dns_log.try_clone().unwrap())
                    .stderr(dns_log)
                    .spawn()
                    .expect("spawn pebble-challtestsrv"),
            );
        }
        let pebble_log = log("pebble.log");
        let mut cmd = Command::new("pebble");
        cmd.args([
            "-config",
            self.dir.path().join("pebble.json").to_str().unwrap(),
        ])
        .args(["-dnsserver", &dns, "-strict=false"])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .stdin(Stdio::null())
        .stdout(pebble_log.try_clone().unwrap())
        .stderr(pebble_log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.pebble = Some(cmd.spawn().expect("spawn pebble"));
        let client = self.wfe_client.clone();
        let listen = self.listen;
        wait_for("pebble's ACME directory", DEADLINE, || {
            let client = client.clone();
            async move {
                let r = https_get(listen, "127.0.0.1", "/dir", &client).await.ok()?;
                (r.resp.status == 200).then_some(())
            }
        })
        .await;
    }

    /// Stops pebble (its DNS stays): the CA is down.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.earlier_log.push_str(&self.current_log());
        }
    }

    fn current_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// Everything pebble logged, over its restarts.
    pub fn log(&self) -> String {
        let mut all = self.earlier_log.clone();
        if self.pebble.is_some() {
            all.push_str(&self.current_log());
        }
        all
    }

    /// Orders pebble created (`Added order ... to the db`; a `POST /order-plz` refused for its
    /// nonce and retried is one order).
    pub fn orders(&self) -> usize {
        self.log().matches("Added order").count()
    }

    /// The root pebble issues under (it makes a new one at each start).
    pub async fn root(&self) -> CertificateDer<'static> {
        let r = https_get(self.management, "127.0.0.1", "/roots/0", &self.wfe_client)
            .await
            .expect("GET /roots/0 on pebble's management port");
        assert_eq!(r.resp.status, 200, "{}", r.resp.text());
        CertificateDer::from_pem_slice(&r.resp.body).expect("a PEM root")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- pebble's log ---\n{}", self.log());
        }
        for child in [self.pebble.take(), self.dns.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A rustls client that trusts only `root` (pebble's issuing root).
pub fn trusting(root: &CertificateDer<'static>, alpn: &[&str]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("pebble's root");
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// wakeway with `[proxy.tls.acme]` pointed at a pebble, in a directory that outlives a restart.
pub struct Site {
    pub proc: Proc,
    pub admin: SocketAddr,
    pub proxy: SocketAddr,
    pub tls: SocketAddr,
    pub dir: PathBuf,
    _keep: Option<tempfile::TempDir>,
}

/// The config: whoami service `web` with `hosts_line`, `acme_extra` in `[proxy.tls.acme]`
/// and `tls_extra` (certificate entries) after it.
pub fn site_config(
    pebble: &Pebble,
    ports: &Ports,
    hosts_line: &str,
    acme_extra: &str,
    tls_extra: &str,
) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:{}\"\n\n[proxy.tls]\nlisten = \"127.0.0.1:{}\"\n\n\
         [proxy.tls.acme]\ndirectory = \"{}\"\nemail = \"ops@example.com\"\nca_roots = [{:?}]\n{acme_extra}\n\
         {tls_extra}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[service]]\nname = \"web\"\n{hosts_line}\ncommand = [\"wakeway\", \"whoami\"]\n",
        ports.http,
        ports.tls,
        pebble.directory,
        pebble.wfe_ca.to_str().unwrap(),
    )
}

impl Site {
    /// Writes `config` into a new directory and runs wakeway on it.
    pub async fn start(config: &str) -> Site {
        let keep = tempfile::tempdir().expect("tempdir");
        let dir = keep.path().to_path_buf();
        let mut site = Site::run_in(&dir, Some(config)).await;
        site._keep = Some(keep);
        site
    }

    /// Runs wakeway on `dir/wakeway.toml` (written first when `config` is given).
    pub async fn run_in(dir: &Path, config: Option<&str>) -> Site {
        let path = dir.join("wakeway.toml");
        if let Some(config) = config {
            std::fs::write(&path, config).expect("write the config");
        }
        let (mut proc, proxy, admin) = super::run_listening(&path, None).await;
        let tls = proc.listening_addr("https").await;
        Site {
            proc,
            admin,
            proxy,
            tls,
            dir: dir.to_path_buf(),
            _keep: None,
        }
    }

    /// Stops wakeway (SIGTERM) and hands over the directory, for a restart in it.
    pub async fn stop(mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        self.proc.signal(libc::SIGTERM);
        self.proc.wait_exit(DEADLINE).await;
        (self.dir.clone(), self._keep.take())
    }

    /// An HTTPS GET of `/` as `name`, trusting only `root`.
    pub async fn https(
        &self,
        name: &str,
        root: &CertificateDer<'static>,
    ) -> Result<TlsResp, String> {
        https_get(self.tls, name, "/", &trusting(root, &["http/1.1"])).await
    }

    /// Waits until `name` is served a certificate that chains to `root`, valid for `name`.
    pub async fn wait_issued(&self, name: &str, root: &CertificateDer<'static>) -> TlsResp {
        wait_for(
            &format!("a certificate for {name} from pebble"),
            Duration::from_secs(60),
            || async move { self.https(name, root).await.ok() },
        )
        .await
    }

    /// The wakeway events of `kind`.
    pub async fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        let all = super::admin_json(self.admin, "/v1/events?service=wakeway").await;
        all.as_array()
            .map(|a| a.iter().filter(|e| e["kind"] == kind).cloned().collect())
            .unwrap_or_default()
    }

    /// Waits for the first wakeway event of `kind`; returns all of that kind so far.
    pub async fn wait_event(&self, kind: &str) -> Vec<serde_json::Value> {
        wait_for(
            &format!("a {kind} event"),
            Duration::from_secs(60),
            || async move {
                let e = self.events(kind).await;
                (!e.is_empty()).then_some(e)
            },
        )
        .await
    }

    /// `GET /v1/certificates`, the row of `name`.
    pub async fn certificate(&self, name: &str) -> serde_json::Value {
        let all = super::admin_json(self.admin, "/v1/certificates").await;
        all.as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no row for {name} in /v1/certificates: {all}"))
    }
}
