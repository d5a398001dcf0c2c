//! Rollback on the docker runtime: the previous revision runs the image id it ran, even after
//! its tag moved or wakeway restarted.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_runs_the_previous_image_again() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let v2 = t.own_tag(&format!("wakeway-test-{}:v2", t.scope)).await;
    let w = Wakeway::start_config(&config(
        &t,
        &docker_service("web", &t.image, "[service.scaling]\nmin_instances = 1"),
    ))
    .await;
    let first = ids_of(&w.wait_ready_revision("web", "web-00001", 1).await);

    let d = w.deploy("web", json!({ "image": v2 })).await;
    let v2_id = d["id"].as_str().unwrap().to_string();
    assert_eq!(w.wait_deployment("web", &v2_id).await["state"], "succeeded");
    let second = ids_of(&w.wait_ready_revision("web", "web-00002", 1).await);
    t.wait_container_instances("web", &second).await;
    assert_eq!(
        container_images(&t, "web").await,
        BTreeSet::from([v2.clone()])
    );

    let rb = w.rollback_ok("web").await;
    assert_eq!(rb["trigger"], "rollback", "{rb}");
    assert_eq!(rb["revision"], "web-00001", "{rb}");
    assert_eq!(rb["previous_revision"], "web-00002", "{rb}");

    let resp = w.get_ok(WEB, "/").await;
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00001"));
    let third = ids_of(&w.wait_ready_revision("web", "web-00001", 1).await);
    assert!(
        third.is_disjoint(&first),
        "a new container: {first:?} {third:?}"
    );
    t.wait_container_instances("web", &third).await;
    assert_eq!(
        container_images(&t, "web").await,
        BTreeSet::from([t.image.clone()]),
        "the first image runs again"
    );
    let instance = third.iter().next().unwrap();
    let env = container_env(&t, "web", instance).await;
    assert!(
        env.contains(&"WAKEWAY_REVISION=web-00001".to_string()),
        "{env:?}"
    );

    assert_rolled_back_then_rollback(&w, "web", &v2_id).await;
}

/// A revision pins the image id its tag named when it first ran: after the tag moved, a
/// rollback to it runs that id, not what the tag names now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_after_the_tag_moved_runs_the_image_id_the_old_revision_ran() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let tag = t.own_tag(&format!("wakeway-test-{}:moving", t.scope)).await;
    let old_id = image_id(&t, &tag).await;
    let w = Wakeway::start_config(&config(
        &t,
        &docker_service("web", &tag, "[service.scaling]\nmin_instances = 1"),
    ))
    .await;
    let first = ids_of(&w.wait_ready_revision("web", "web-00001", 1).await);
    t.wait_container_instances("web", &first).await;
    assert_web_runs(&t, &old_id, "").await;

    // The tag moves to another image; web-00002 is deployed from it.
    let new_id = move_tag(&t, &tag, &old_id).await;
    deploy_one(&t, &w, json!({ "env": { "V": "2" } }), "web-00002").await;
    assert_web_runs(&t, &new_id, "a new revision runs what the tag names now").await;

    let rb = w.rollback_ok("web").await;
    assert_eq!(rb["revision"], "web-00001", "{rb}");
    let third = ids_of(&w.wait_ready_revision("web", "web-00001", 1).await);
    assert!(third.is_disjoint(&first), "a new container: {third:?}");
    t.wait_container_instances("web", &third).await;
    assert_web_runs(
        &t,
        &old_id,
        &format!("the rollback runs the image id web-00001 ran, not what {tag} names now"),
    )
    .await;
    assert_eq!(
        container_images(&t, "web").await,
        BTreeSet::from([tag]),
        "deployed from the tag, as `wakeway.image` says"
    );
    let resp = w.get_ok(WEB, "/").await;
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00001"));
}

/// The pins persist in the state file: after a restart, a rollback to a revision whose
/// containers are gone runs the image id it ran, not what its tag names by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_after_a_restart_runs_the_image_id_the_old_revision_ran() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let state = StateFile::temp();
    let config = state.config(&config(
        &t,
        &docker_service("web", &t.image, "[service.scaling]\nmin_instances = 1"),
    ));
    let w = Wakeway::start_config(&config).await;
    w.wait_ready_revision("web", "web-00001", 1).await;

    // web-00002 runs the tag while it names the first image.
    let tag = t.own_tag(&format!("wakeway-test-{}:moving", t.scope)).await;
    let old_id = image_id(&t, &tag).await;
    deploy_one(&t, &w, json!({ "image": tag }), "web-00002").await;
    assert_web_runs(&t, &old_id, "").await;

    // The tag moves; web-00003 runs what it names now.
    let new_id = move_tag(&t, &tag, &old_id).await;
    deploy_one(&t, &w, json!({ "env": { "V": "3" } }), "web-00003").await;
    assert_web_runs(&t, &new_id, "").await;

    // A restart: no container outlives the first wakeway, so nothing of web-00002 is left
    // to remember its image but the state file.
    w.stop().await;
    t.wait_container_instances("web", &BTreeSet::new()).await;
    let saved = state.saved();
    assert_eq!(
        saved["services"]["web"]["pins"]["web-00002"],
        old_id.as_str(),
        "{saved:#}"
    );
    let w = Wakeway::start_config(&config).await;
    let live = ids_of(&w.wait_ready_revision("web", "web-00003", 1).await);
    t.wait_container_instances("web", &live).await;
    assert_web_runs(&t, &new_id, "").await;

    let rb = w.rollback_ok("web").await;
    assert_eq!(rb["revision"], "web-00002", "{rb}");
    let back = ids_of(&w.wait_ready_revision("web", "web-00002", 1).await);
    t.wait_container_instances("web", &back).await;
    let why = format!(
        "after the restart the rollback runs the image id web-00002 ran, not what {tag} names now"
    );
    assert_web_runs(&t, &old_id, &why).await;
    let resp = w.get_ok(WEB, "/").await;
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00002"));

    w.stop().await;
    t.wait_container_instances("web", &BTreeSet::new()).await;
}
