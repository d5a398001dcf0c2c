//! The console as it first paints, read from headless Chromium's DOM (`--dump-dom`): on a
//! wakeway with a 90/10 split between two tagged revisions, a failed deployment and some
//! traffic, the page opened once shows full charts (the history wakeway kept, not what the tab
//! gathered), both revisions with their shares and tags, the failed deployment with its reason
//! and what the app printed, an instance's last output lines and the request tail.
//!
//! The admin token goes in the address's fragment (`#token=...`), as a script would link it.
//! Set `WAKEWAY_CONSOLE_SCREENSHOTS=DIR` to keep the screenshots (docs/img/ holds README's).

mod common;

use common::chromium::{attribute, chromium, dump_dom, element, screenshot};
use common::split::{Admin, FAILED_OUTPUT, failed_deploy_and_split, traffic_until_history};
use common::{Wakeway, whoami_service};

const TOKEN: &str = "console-s3cret";
/// Seconds of history with answers before the page opens: more than the tab could gather in
/// its virtual-time budget.
const STEPS: usize = 8;
const BUDGET_MS: u32 = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_opens_with_full_charts_the_split_the_failed_deploy_and_output() {
    let Some(exe) = chromium() else { return };
    let logs = tempfile::tempdir().unwrap();
    let wk = Wakeway::start_config(&format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n\
         [log]\naccess = \"{}\"\n{}",
        logs.path().join("access.log").display(),
        whoami_service("web", "web.localhost", "[service.scaling]\nmin_instances = 1\n")
    ))
    .await;
    let admin = Admin {
        addr: wk.admin,
        token: Some(TOKEN.into()),
    };
    let split = failed_deploy_and_split(&admin, "web").await;
    let traffic = traffic_until_history(wk.proxy, &admin, "web", "web.localhost", STEPS).await;
    let failed_id = split.failed["id"].as_str().unwrap().to_string();
    let reason = split.failed["reason"].as_str().unwrap().to_string();

    let url = format!("http://{}/#token={TOKEN}", wk.admin);
    let html = dump_dom(&exe, &url, BUDGET_MS).await;
    let show = |what: &str| format!("{what}; the page:\n{html}");

    // Signed in by the fragment: the services are there, the token form is not shown.
    let login = element(&html, "id=\"login\"").expect("the token form");
    assert!(
        attribute(login, "hidden").is_some(),
        "{}",
        show("the token form is shown")
    );
    // Alone (no `[cluster]`): no cluster panel.
    let cluster = element(&html, "id=\"cluster\"").expect("the cluster panel");
    assert!(
        attribute(cluster, "hidden").is_some(),
        "{}",
        show("a cluster panel without [cluster]")
    );
    let card =
        element(&html, "data-service=\"web\"").unwrap_or_else(|| panic!("{}", show("no card")));
    assert!(card.contains("web.localhost"), "{}", show("hosts"));

    // Full charts: every chart holds the kept steps, more than the tab's own polls could make.
    for chart in [
        "requests",
        "errors",
        "latency",
        "in_flight",
        "instances",
        "cold_starts",
    ] {
        let svg = element(&html, &format!("data-chart=\"{chart}\""))
            .unwrap_or_else(|| panic!("{}", show(&format!("no {chart} chart"))));
        let points: usize = attribute(svg, "data-points").unwrap().parse().unwrap();
        assert!(
            points >= STEPS,
            "{}",
            show(&format!("{chart}: {points} points"))
        );
    }
    let requests = element(&html, "data-chart=\"requests\"").unwrap();
    let line = element(requests, "class=\"line a\"").unwrap();
    // Steps with answers stand above the baseline (y = 62 in the chart's 64-high box).
    let drawn = attribute(line, "d").unwrap_or_default();
    let above = drawn
        .split(['M', 'L'])
        .filter_map(|xy| xy.split_whitespace().nth(1)?.parse::<f64>().ok())
        .filter(|y| *y < 61.5)
        .count();
    assert!(
        above >= STEPS,
        "{}",
        show(&format!("{above} busy steps drawn: {drawn}"))
    );

    // Both revisions, their shares and tags, the canary's tag URL.
    let stable = element(&html, &format!("data-revision=\"{}\"", split.stable))
        .unwrap_or_else(|| panic!("{}", show("no stable row")));
    assert_eq!(attribute(stable, "data-percent"), Some("90"));
    assert!(
        stable.contains("90%") && stable.contains("data-tag=\"stable\""),
        "{}",
        show("stable")
    );
    let canary = element(&html, &format!("data-revision=\"{}\"", split.canary))
        .unwrap_or_else(|| panic!("{}", show("no canary row")));
    assert_eq!(attribute(canary, "data-percent"), Some("10"));
    assert!(
        canary.contains("10%") && canary.contains("data-tag=\"canary\""),
        "{}",
        show("canary")
    );
    assert!(
        canary.contains("canary--web.localhost"),
        "{}",
        show("the tag URL")
    );

    // The failed deployment, its reason, and the last thing its app printed.
    let row = element(&html, &format!("data-deployment=\"{failed_id}\""))
        .unwrap_or_else(|| panic!("{}", show("no failed deployment")));
    assert_eq!(attribute(row, "data-state"), Some("failed"));
    let detail = element(&html, &format!("data-detail-of=\"{failed_id}\""))
        .unwrap_or_else(|| panic!("{}", show("no reason row")));
    assert!(
        detail.contains(&reason),
        "{}",
        show(&format!("reason {reason:?}"))
    );
    assert!(
        detail.contains(FAILED_OUTPUT),
        "{}",
        show("the failed app's output")
    );

    // An instance's last output lines, and the request tail.
    let live = admin.get("/v1/services/web").await["instances"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let output = element(&html, "data-lines=\"output\"").unwrap();
    let mine = element(output, &format!("data-instance=\"{live}\""))
        .unwrap_or_else(|| panic!("{}", show(&format!("no output line of {live}"))));
    assert!(
        mine.contains("whoami listening on"),
        "{}",
        show("the instance's line")
    );
    let access = element(&html, "data-lines=\"access\"").unwrap();
    assert!(
        access.contains("data-status=\"200\"") && access.contains("GET /hello"),
        "{}",
        show("requests")
    );

    // Pictures for README: a wide window and a phone's.
    let dir = tempfile::tempdir().unwrap();
    for (name, size) in [
        ("console.png", (1400, 1200)),
        ("console-phone.png", (390, 1800)),
    ] {
        let path = dir.path().join(name);
        screenshot(&exe, &url, &path, size, BUDGET_MS).await;
        if let Ok(keep) = std::env::var("WAKEWAY_CONSOLE_SCREENSHOTS") {
            std::fs::create_dir_all(&keep).unwrap();
            std::fs::copy(&path, std::path::Path::new(&keep).join(name)).unwrap();
        }
    }
    traffic.abort();
}
