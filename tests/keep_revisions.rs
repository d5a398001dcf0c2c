//! `deploy.keep_revisions`: however many deploys come, a service remembers its newest revisions
//! and those the traffic names (a tag), in memory and in the state file, so the file stops
//! growing.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_revisions_are_forgotten_but_the_newest_and_the_tagged_stay() {
    let state = StateFile::temp();
    let config = state.config(&Wakeway::config(&whoami_service(
        "web",
        "web.localhost",
        "[service.scaling]\nmin_instances = 1\n[service.deploy]\nkeep_revisions = 2\n",
    )));
    let wk = Wakeway::start_config(&config).await;
    wk.wait_ready("web").await;
    // web-00002 is tagged (it takes no traffic but has a host of its own); then four more.
    wk.deploy_ok(
        "web",
        json!({ "env": { "V": "2" }, "no_traffic": true, "tag": "keep" }),
    )
    .await;
    for v in 3..=6 {
        wk.deploy_ok("web", json!({ "env": { "V": v.to_string() } }))
            .await;
    }

    let listed: Vec<String> = wk
        .admin_json("/v1/services/web/revisions")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ["web-00002", "web-00005", "web-00006"]);

    let file = state.saved();
    let numbers: Vec<u64> = file["services"]["web"]["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_u64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        [2, 5, 6],
        "the state file holds what is remembered"
    );
    assert_eq!(wk.get("keep--web.localhost", "/").await.status, 200);
}
