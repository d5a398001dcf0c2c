//! Reload against a live controller: the window between reading a service's live config and
//! acting on it is held open while a deploy switches, the interleaving that once lost the deploy.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{ReloadReport, reload_service};
use crate::config::{ServiceConfig, Source};
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::service::Service;
use crate::service::command::Command;
use crate::service::controller::{Controller, SourceFactory};

type Hook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

tokio::task_local! {
    static AFTER_READ: Hook;
}

/// Runs the test's hook, if the reload runs inside one.
pub(super) async fn after_read(_: &Service) {
    if let Ok(hook) = AFTER_READ.try_with(|h| h.clone()) {
        hook().await;
    }
}

fn upstreams(addr: std::net::SocketAddr) -> Source {
    Source::Upstreams(vec![addr.to_string()])
}

#[tokio::test]
async fn a_deploy_switching_during_a_reload_stays_deployed() {
    // Two static upstreams that accept, so their health checks pass.
    let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let file = ServiceConfig::new(
        "web",
        vec!["web.localhost".into()],
        upstreams(a.local_addr().unwrap()),
    );
    let svc = Service::new(
        file.clone(),
        Metrics::new().service("web"),
        Arc::new(EventLog::default()),
    );
    let factory: SourceFactory =
        Arc::new(|sc: &ServiceConfig| crate::app::factory::make_source(None, None, sc));
    let controller = Controller::new(svc.clone(), factory(&file).unwrap(), factory.clone());
    let stop = CancellationToken::new();
    let task = tokio::spawn(controller.run(stop.clone()));

    // The file gains a host; its source is the one applied, so the reload deploys nothing.
    let mut new_file = file.clone();
    new_file.hosts.push("www.localhost".into());
    // While the reload holds what it read, the API deploys upstream `b` and it goes live.
    let deployed = upstreams(b.local_addr().unwrap());
    let hook: Hook = {
        let (svc, deployed) = (svc.clone(), deployed.clone());
        Arc::new(move || {
            let (svc, deployed) = (svc.clone(), deployed.clone());
            Box::pin(async move {
                let mut config = svc.config.load().as_ref().clone();
                config.source = deployed;
                svc.ask(|reply| Command::Deploy {
                    config: Box::new(config),
                    trigger: crate::service::command::Trigger::Api,
                    options: Default::default(),
                    reply,
                })
                .await
                .expect("the deploy begins");
                let switched = async {
                    while svc.revision() != "web-00002" {
                        tokio::task::yield_now().await;
                    }
                };
                tokio::time::timeout(std::time::Duration::from_secs(10), switched)
                    .await
                    .expect("the deploy switches");
            })
        })
    };
    let mut report = ReloadReport::default();
    AFTER_READ
        .scope(
            hook,
            reload_service(&svc, Some(&file), &new_file, &mut report),
        )
        .await;

    let live = svc.config.load();
    assert_eq!(live.source, deployed, "the deployed source stands");
    assert_eq!(live.hosts, new_file.hosts, "the file's new hosts apply");
    assert_eq!(report.updated, vec!["web".to_string()]);
    assert!(report.deployed.is_empty(), "{:?}", report.deployed);
    assert_eq!(svc.revision(), "web-00002");

    stop.cancel();
    task.await.unwrap();
}
