//! The docker side of the harness, for the test files that run against the real local engine.
//! There is no registry: the tests build their own image, `FROM scratch` holding the `wakeway`
//! binary under test (stripped) and the shared libraries `ldd` lists for it, whose command is
//! `wakeway whoami`.
//!
//! Each test runs in its own `[docker] scope` ([`DockerTest`]), so tests in parallel never see
//! (or sweep away) each other's containers, and removes whatever its scope left when it ends.
//! Without an engine [`DockerTest::new`] skips with a loud message, except under `CI=true`,
//! where that fails.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{
    BuildImageOptions, ListContainersOptions, RemoveContainerOptions, RemoveImageOptions,
    TagImageOptions,
};
use futures_util::StreamExt;
use tokio::time::Instant;

use super::engine_scenarios::{EngineTest, GHOST};
use super::{DEADLINE, LISTEN_ANY, WAKEWAY, Wakeway, wait_for};

// ---------------------------------------------------------------------------------------------
// Engine, image and per-test scope

pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn connect() -> Result<Docker, String> {
    let docker = Docker::connect_with_defaults().map_err(|e| e.to_string())?;
    match tokio::time::timeout(ENGINE_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {ENGINE_TIMEOUT:?}")),
    }
}

/// The image every test of this run shares: built by the first test that needs it, removed by
/// the last one to finish.
struct SharedImage {
    built: bool,
    users: usize,
}

static IMAGE: tokio::sync::Mutex<SharedImage> = tokio::sync::Mutex::const_new(SharedImage {
    built: false,
    users: 0,
});

pub fn image_tag() -> String {
    format!("wakeway-test-whoami:{}", std::process::id())
}

pub const DOCKERFILE: &str =
    "FROM scratch\nCOPY rootfs/ /\nCMD [\"/wakeway\", \"whoami\", \"--bind\", \"0.0.0.0\"]\n";

/// The absolute paths `ldd` lists for `bin` (none for a static binary).
fn shared_libraries(bin: &Path) -> Vec<PathBuf> {
    let Ok(out) = std::process::Command::new("ldd").arg(bin).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let target = line.split_once("=>").map_or(line, |(_, t)| t);
            let path = target.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The build context: `dockerfile` and a root filesystem with the binary and its libraries.
fn image_context(dockerfile: &str) -> Result<Vec<u8>, String> {
    let bin = Path::new(WAKEWAY);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let stripped = dir.path().join("wakeway");
    // The debug binary is ~100 MB, mostly debug info the container does not need.
    let did_strip = std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(bin)
        .status()
        .is_ok_and(|s| s.success());
    let binary = std::fs::read(if did_strip { stripped.as_path() } else { bin })
        .map_err(|e| format!("read {}: {e}", bin.display()))?;
    let mut ar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        ar.append_data(&mut header, path, data)
            .map_err(|e| format!("tar {path}: {e}"))
    };
    add("Dockerfile", dockerfile.as_bytes(), 0o644)?;
    add("rootfs/wakeway", &binary, 0o755)?;
    for lib in shared_libraries(bin) {
        // Symlinks (the loader) are read through: the image gets the file itself.
        let data = std::fs::read(&lib).map_err(|e| format!("read {}: {e}", lib.display()))?;
        add(&format!("rootfs{}", lib.display()), &data, 0o755)?;
    }
    ar.into_inner().map_err(|e| e.to_string())
}

pub async fn build_image(docker: &Docker, tag: &str, dockerfile: &str) -> Result<(), String> {
    let started = Instant::now();
    let context = image_context(dockerfile)?;
    let opts = BuildImageOptions {
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut progress = docker.build_image(opts, None, Some(bollard::body_full(context.into())));
    while let Some(step) = progress.next().await {
        let step = step.map_err(|e| format!("docker build: {e}"))?;
        if let Some(message) = step.error_detail.and_then(|d| d.message) {
            return Err(format!("docker build: {message}"));
        }
    }
    eprintln!(
        "built test image {tag} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

static SCOPES: AtomicU32 = AtomicU32::new(0);

/// One test's view of the engine: its scope, the shared image, and cleanup on drop.
pub struct DockerTest {
    pub docker: Docker,
    pub scope: String,
    pub image: String,
    /// Tags this test made, removed (with the images only they name) on drop.
    own_tags: std::sync::Mutex<Vec<String>>,
}

impl DockerTest {
    /// `None` (after a loud message) when no engine answers, unless `CI=true`.
    pub async fn new() -> Option<DockerTest> {
        let docker = match connect().await {
            Ok(d) => d,
            Err(e) => {
                let host = std::env::var("DOCKER_HOST")
                    .unwrap_or_else(|_| "unix:///var/run/docker.sock (DOCKER_HOST unset)".into());
                return skip(
                    "docker",
                    &format!("no docker engine answers at {host}: {e}"),
                );
            }
        };
        let image = image_tag();
        {
            let mut shared = IMAGE.lock().await;
            if !shared.built {
                build_image(&docker, &image, DOCKERFILE)
                    .await
                    .unwrap_or_else(|e| panic!("cannot build the test image: {e}"));
                shared.built = true;
            }
            shared.users += 1;
        }
        let n = SCOPES.fetch_add(1, Ordering::SeqCst);
        Some(DockerTest {
            docker,
            scope: format!("t{}-{n}", std::process::id()),
            image,
            own_tags: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A complete config: listeners on free ports, `[docker]` with this test's scope and
    /// `docker_keys`, then `services`.
    pub fn config(&self, docker_keys: &str, services: &str) -> String {
        format!(
            "{LISTEN_ANY}\n[docker]\nscope = \"{}\"\n{docker_keys}\n{services}",
            self.scope
        )
    }

    /// The list filter of what wakeway made in this scope, optionally for one service.
    pub fn scope_filter(&self, service: Option<&str>) -> HashMap<String, Vec<String>> {
        let mut labels = vec![
            "wakeway.managed=true".to_string(),
            format!("wakeway.scope={}", self.scope),
        ];
        if let Some(s) = service {
            labels.push(format!("wakeway.service={s}"));
        }
        HashMap::from([("label".to_string(), labels)])
    }

    /// Waits until `now()` (the `what` of `service` in this scope) is exactly `instances`.
    pub async fn wait_exactly<F, Fut>(
        &self,
        what: &str,
        service: &str,
        instances: &BTreeSet<String>,
        mut now: F,
    ) -> BTreeSet<String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = BTreeSet<String>>,
    {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let now = now().await;
            if now == *instances {
                return now;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {DEADLINE:?} waiting for the {what} of {service} in scope {} to be exactly {instances:?}; they are {now:?}",
                    self.scope
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// This scope's containers (`all`: stopped ones too), optionally of one service.
    pub async fn containers(&self, service: Option<&str>, all: bool) -> Vec<ContainerSummary> {
        let opts = ListContainersOptions {
            all,
            filters: Some(self.scope_filter(service)),
            ..Default::default()
        };
        self.docker
            .list_containers(Some(opts))
            .await
            .expect("list containers")
    }

    pub async fn container_ids(&self, all: bool) -> BTreeSet<String> {
        self.containers(None, all)
            .await
            .into_iter()
            .filter_map(|c| c.id)
            .collect()
    }

    /// The `wakeway.instance` labels of `service`'s containers in this scope, stopped ones too:
    /// what `docker ps -a` shows of it.
    pub async fn container_instances(&self, service: &str) -> BTreeSet<String> {
        self.containers(Some(service), true)
            .await
            .into_iter()
            .filter_map(|c| c.labels?.remove("wakeway.instance"))
            .collect()
    }

    /// Waits until `service`'s containers (stopped ones too) are exactly those of `instances`.
    pub async fn wait_container_instances(
        &self,
        service: &str,
        instances: &BTreeSet<String>,
    ) -> BTreeSet<String> {
        self.wait_exactly("containers", service, instances, || {
            self.container_instances(service)
        })
        .await
    }

    pub async fn inspect(&self, id: &str) -> ContainerInspectResponse {
        self.docker
            .inspect_container(id, None)
            .await
            .expect("inspect container")
    }

    /// Waits until this scope has exactly `n` containers (stopped ones included).
    pub async fn wait_containers(&self, n: usize) -> BTreeSet<String> {
        wait_for(
            &format!("exactly {n} containers in scope {}", self.scope),
            DEADLINE,
            || async move {
                let ids = self.container_ids(true).await;
                (ids.len() == n).then_some(ids)
            },
        )
        .await
    }

    /// A tag of this test's own for the shared image (removed on drop).
    pub async fn own_tag(&self, name: &str) -> String {
        let (repo, tag) = name.split_once(':').unwrap();
        let opts = TagImageOptions {
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
        };
        self.docker
            .tag_image(&self.image, Some(opts))
            .await
            .expect("tag image");
        self.own_tags.lock().unwrap().push(name.to_string());
        name.to_string()
    }

    /// An image of this test's own built from `dockerfile` (a variant of [`DOCKERFILE`]), tagged
    /// `name` (removed on drop).
    pub async fn own_build(&self, name: &str, dockerfile: &str) -> String {
        self.own_tags.lock().unwrap().push(name.to_string());
        build_image(&self.docker, name, dockerfile)
            .await
            .unwrap_or_else(|e| panic!("cannot build {name}: {e}"));
        name.to_string()
    }

    /// `labels` plus the ones that put something in this scope, as wakeway labels what it
    /// makes.
    pub fn scope_labels(&self, labels: &[(&str, &str)]) -> HashMap<String, String> {
        let mut all: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.insert("wakeway.managed".into(), "true".into());
        all.insert("wakeway.scope".into(), self.scope.clone());
        all
    }

    /// Runs a container of this scope by hand, as a previous wakeway might have left it.
    pub async fn leftover(&self, name: &str, labels: &[(&str, &str)], running: bool) -> String {
        let all = self.scope_labels(labels);
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            labels: Some(all),
            ..Default::default()
        };
        let opts = bollard::query_parameters::CreateContainerOptions {
            name: Some(name.to_string()),
            platform: String::new(),
        };
        let id = self
            .docker
            .create_container(Some(opts), body)
            .await
            .expect("create leftover container")
            .id;
        if running {
            self.docker
                .start_container(&id, None)
                .await
                .expect("start leftover container");
        }
        id
    }
}

impl Drop for DockerTest {
    fn drop(&mut self) {
        let scope = self.scope.clone();
        let image = self.image.clone();
        let own_tags = std::mem::take(&mut *self.own_tags.lock().unwrap());
        clean_up(move |docker| async move {
            let opts = ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "label".to_string(),
                    vec![format!("wakeway.scope={scope}")],
                )])),
                ..Default::default()
            };
            for c in docker.list_containers(Some(opts)).await.unwrap_or_default() {
                let Some(id) = c.id else { continue };
                let force = RemoveContainerOptions {
                    force: true,
                    v: true,
                    link: false,
                };
                let _ = docker.remove_container(&id, Some(force)).await;
            }
            for tag in own_tags {
                let opts = RemoveImageOptions {
                    force: true,
                    ..Default::default()
                };
                let _ = docker.remove_image(&tag, Some(opts), None).await;
            }
            let mut shared = IMAGE.lock().await;
            shared.users -= 1;
            if shared.users == 0 && shared.built {
                shared.built = false;
                let opts = RemoveImageOptions {
                    force: true,
                    ..Default::default()
                };
                if let Err(e) = docker.remove_image(&image, Some(opts), None).await {
                    eprintln!("cannot remove test image {image}: {e}");
                }
            }
        });
    }
}

/// The `runtime`'s tests cannot run, for `why`: under `CI=true` that fails the test; otherwise
/// it skips, after a loud message (once per runtime) straight to the stream, past the test
/// harness's capture: a skip must be seen.
pub fn skip<T>(runtime: &'static str, why: &str) -> Option<T> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {why}");
    }
    static WARNED: std::sync::Mutex<BTreeSet<&str>> = std::sync::Mutex::new(BTreeSet::new());
    if WARNED.lock().unwrap().insert(runtime) {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!! SKIPPING the {runtime} tests: {why} !!!!!!!!\n"
        );
    }
    None
}

/// Runs `cleanup` with a client of the engine on a thread with its own runtime, and waits for
/// it: `Drop` cannot await, and the test's runtime may be gone.
pub fn clean_up<F, Fut>(cleanup: F)
where
    F: FnOnce(Docker) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cleanup runtime");
        rt.block_on(async move {
            if let Ok(docker) = connect().await {
                cleanup(docker).await;
            }
        });
    });
    let _ = thread.join();
}

/// A docker `[[service]]` on host `NAME.localhost`, with `extra` TOML appended.
pub fn docker_service(name: &str, image: &str, extra: &str) -> String {
    format!(
        r#"
[[service]]
name = "{name}"
hosts = ["{name}.localhost"]
image = "{image}"
port = 8080
{extra}
"#
    )
}

pub fn events_of_kind<'a>(
    events: &'a [serde_json::Value],
    kind: &str,
) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

pub async fn ready_ids(w: &Wakeway, service: &str) -> BTreeSet<String> {
    w.instances(service)
        .await
        .into_iter()
        .filter(|i| i.state == "ready")
        .map(|i| i.id)
        .collect()
}

pub async fn wait_ready_count(w: &Wakeway, service: &str, n: usize) -> BTreeSet<String> {
    wait_for(
        &format!("{n} ready instances of {service}"),
        DEADLINE,
        || async move {
            let ids = ready_ids(w, service).await;
            (ids.len() == n).then_some(ids)
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// The docker side of the scenarios swarm shares

impl EngineTest for DockerTest {
    const RUNTIME: &'static str = "docker";
    const INSTANCES: &'static str = "containers";
    const IMAGE_MISSING: (&'static str, &'static str) = (
        "NOT found locally; build or pull it",
        "not found locally; build or pull it",
    );

    fn service(name: &str, image: &str, extra: &str) -> String {
        docker_service(name, image, extra)
    }

    fn test(&self) -> &DockerTest {
        self
    }

    fn engine_config(&self, keys: &str, services: &str) -> String {
        self.config(keys, services)
    }

    async fn instance_ids(&self, all: bool) -> BTreeSet<String> {
        self.container_ids(all).await
    }

    async fn wait_engine_instances(&self, service: &str, instances: &BTreeSet<String>) {
        self.wait_container_instances(service, instances).await;
    }

    async fn wait_nothing_left(&self) {
        self.wait_containers(0).await;
    }

    async fn container_of(&self, service: &str, instance: &str) -> String {
        format!("wakeway-{}-{service}-{instance}", self.scope)
    }

    async fn envs(&self, service: &str) -> Vec<Vec<String>> {
        let mut envs = Vec::new();
        for c in self.containers(Some(service), true).await {
            let info = self.inspect(c.id.as_deref().unwrap()).await;
            envs.push(info.config.unwrap().env.unwrap());
        }
        envs
    }

    /// A running container of a service no longer in the config, and a stopped one of `keep`.
    async fn leftovers(&self) -> Vec<String> {
        let ghost = format!("{}-ghost", self.scope);
        let ghost = self.leftover(&ghost, &GHOST, true).await;
        let stopped = self
            .leftover(
                &format!("{}-stopped", self.scope),
                &[
                    ("wakeway.service", "keep"),
                    ("wakeway.revision", "keep-00001"),
                    ("wakeway.instance", "keep-00001-z"),
                ],
                false,
            )
            .await;
        vec![ghost, stopped]
    }
}

/// Swarm mode on the same engine: a scope and an overlay network per test.
#[path = "swarm.rs"]
pub mod swarm;
