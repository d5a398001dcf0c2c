//! The console page in a real headless Chromium, driven over the DevTools protocol: it loads
//! without console errors, shows the services, shows a cold-started instance within 2 s, its
//! pause button pauses the service, and it fits a phone-width screen.
//!
//! Needs `chromium` on PATH (or `CHROMIUM`); `.ci/needs/50-chromium.sh` installs it (missing, the
//! tests fail under CI=true and are skipped elsewhere). Set `WAKEWAY_CONSOLE_SCREENSHOT=path.png`
//! to save what the browser shows.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Phone width (an iPhone 12-14 in CSS pixels).
const PHONE: (u32, u32) = (390, 844);

struct Browser {
    _child: Child,
    _profile: tempfile::TempDir,
    ws: WebSocketStream<TcpStream>,
    next_id: u64,
    /// Protocol events received while waiting for replies, oldest first.
    events: Vec<Value>,
    session: String,
}

impl Browser {
    async fn launch(exe: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(exe)
            .arg("--headless=new")
            .args(common::chromium::QUIET)
            .args([
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                &format!("--user-data-dir={}", profile.path().display()),
                &format!("--window-size={},{}", PHONE.0, PHONE.1),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `{exe}` ({e}): install it with `apt-get install chromium`")
            });
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_string();
                }
            }
            panic!("chromium exited without a DevTools address");
        })
        .await
        .expect("chromium prints its DevTools address");
        // Keep draining its stderr so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let stream = TcpStream::connect(&addr).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
            .await
            .expect("DevTools websocket");
        let mut b = Browser {
            _child: child,
            _profile: profile,
            ws,
            next_id: 0,
            events: Vec::new(),
            session: String::new(),
        };
        let target = b
            .call_browser("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = b
            .call_browser(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            b.call(domain, json!({})).await;
        }
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": PHONE.0, "height": PHONE.1, "deviceScaleFactor": 1, "mobile": true }),
        )
        .await;
        b
    }

    async fn send(&mut self, session: Option<String>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("send to chromium");
        let reply = tokio::time::timeout(DEADLINE, async {
            loop {
                let m = self.ws.next().await.expect("chromium hung up").unwrap();
                let Ok(text) = m.to_text() else { continue };
                let v: Value = serde_json::from_str(text).unwrap();
                if v["id"] == json!(id) {
                    return v;
                }
                if v.get("method").is_some() {
                    self.events.push(v);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{method}: no reply from chromium"));
        assert!(reply.get("error").is_none(), "{method}: {reply}");
        reply["result"].clone()
    }

    async fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(None, method, params).await
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.send(Some(s), method, params).await
    }

    /// Evaluates a JS expression in the page; returns its value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "{expr}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is truthy, up to `timeout` (an expression that throws, say while the
    /// page is still loading, counts as false).
    async fn wait_true(&mut self, what: &str, timeout: Duration, expr: &str) {
        let deadline = tokio::time::Instant::now() + timeout;
        let guarded =
            format!("(() => {{ try {{ return !!({expr}); }} catch (_) {{ return false; }} }})()");
        loop {
            let v = self.eval(&guarded).await;
            if v.as_bool() == Some(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let page = self.eval("document.body.innerText").await;
                panic!("{what}: not within {timeout:?}; the page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A real mouse click in the middle of the element `selector`.
    async fn click(&mut self, selector: &str) {
        let rect = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({selector:?}); e.scrollIntoView(); \
                 const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
            ))
            .await;
        let (x, y) = (rect[0].as_f64().unwrap(), rect[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            )
            .await;
        }
    }

    /// Console errors, uncaught exceptions and failed loads seen so far.
    fn errors(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e["method"].as_str()? {
                "Runtime.exceptionThrown" => Some(e["params"]["exceptionDetails"].to_string()),
                "Runtime.consoleAPICalled"
                    if matches!(e["params"]["type"].as_str(), Some("error" | "assert")) =>
                {
                    Some(e["params"]["args"].to_string())
                }
                "Log.entryAdded" if e["params"]["entry"]["level"] == "error" => {
                    Some(e["params"]["entry"].to_string())
                }
                _ => None,
            })
            .collect()
    }

    async fn close(mut self) {
        let _ = self.call_browser("Browser.close", json!({})).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_services_live_and_its_pause_button_pauses() {
    let Some(exe) = common::chromium::chromium() else {
        return;
    };
    let wk = Wakeway::start(&format!(
        "{}\n{}",
        whoami_service("web", "web.localhost", ""),
        whoami_service("api", "api.localhost", "")
    ))
    .await;
    let mut b = Browser::launch(&exe).await;
    // By its address, as a user would type it.
    let url = format!("http://{}/", wk.admin);
    b.call("Page.navigate", json!({ "url": url })).await;

    b.wait_true(
        "both services shown",
        DEADLINE,
        "!!document.querySelector('[data-service=\"web\"]') && \
         !!document.querySelector('[data-service=\"api\"]')",
    )
    .await;
    let web = b
        .eval("document.querySelector('article[data-service=\"web\"]').innerText")
        .await;
    let web = web.as_str().unwrap();
    assert!(web.contains("web.localhost"), "hosts shown: {web}");
    assert!(web.contains("idle"), "at zero it is idle: {web}");
    assert!(web.contains("no instance running"), "{web}");
    let login_shown = b
        .eval("getComputedStyle(document.getElementById('login')).display !== 'none'")
        .await;
    assert_eq!(login_shown, json!(false), "no token form without a token");

    // A cold start: the new instance appears within 2 s of its first response.
    assert_eq!(wk.get("web.localhost", "/").await.status, 200);
    let instance = wk.wait_ready("web").await[0].id.clone();
    b.wait_true(
        "the cold-started instance shown",
        Duration::from_secs(2),
        &format!(
            "!!document.querySelector('tr[data-instance=\"{instance}\"][data-state=\"ready\"]')"
        ),
    )
    .await;
    b.wait_true(
        "the activity log shows the cold start",
        DEADLINE,
        "!!document.querySelector('#events li[data-kind=\"cold_start\"]')",
    )
    .await;

    // Usable at phone width: nothing wider than the screen.
    let fits = b
        .eval("document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(
        fits,
        json!(true),
        "the page scrolls sideways at phone width"
    );

    if let Ok(path) = std::env::var("WAKEWAY_CONSOLE_SCREENSHOT") {
        use base64::Engine;
        let shot = b
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(&path, png).unwrap();
    }

    // The pause button goes through the API (JSON, same origin) and pauses the service.
    b.click("button[data-service=\"web\"][data-action=\"pause\"]")
        .await;
    wait_for("web paused through the console", DEADLINE, || async {
        (wk.service("web").await["paused"] == json!(true)).then_some(())
    })
    .await;
    b.wait_true(
        "the console shows it paused",
        DEADLINE,
        "document.querySelector('article[data-service=\"web\"]').dataset.state === 'paused' && \
         !!document.querySelector('button[data-service=\"web\"][data-action=\"resume\"]')",
    )
    .await;
    assert_eq!(
        wk.service("api").await["paused"],
        json!(false),
        "only web was paused"
    );

    let errors = b.errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    b.close().await;
}

/// With a token the page asks for it, and works once given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_asks_for_the_token() {
    let Some(exe) = common::chromium::chromium() else {
        return;
    };
    let wk = Wakeway::start_config(&format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret\"\n{}",
        whoami_service("web", "web.localhost", "")
    ))
    .await;
    let mut b = Browser::launch(&exe).await;
    b.call(
        "Page.navigate",
        json!({ "url": format!("http://{}/", wk.admin) }),
    )
    .await;
    b.wait_true(
        "the token form shown",
        DEADLINE,
        "getComputedStyle(document.getElementById('login')).display !== 'none'",
    )
    .await;
    assert!(
        b.eval("document.querySelector('[data-service]') === null")
            .await
            .as_bool()
            .unwrap(),
        "nothing shown without the token"
    );
    b.eval("document.getElementById('token').value = 's3cret'")
        .await;
    b.click("#login button").await;
    b.wait_true(
        "services shown with the token",
        DEADLINE,
        "!!document.querySelector('[data-service=\"web\"]')",
    )
    .await;
    b.close().await;
}

/// The Traffic… and Promote… buttons open forms that set the split and start a rollout through
/// the API; the rollout's steps show on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sets_the_traffic_and_promotes() {
    let Some(exe) = common::chromium::chromium() else {
        return;
    };
    let wk = Wakeway::start(&whoami_service(
        "web",
        "web.localhost",
        "[service.scaling]\nmin_instances = 1\n",
    ))
    .await;
    let admin = common::split::Admin {
        addr: wk.admin,
        token: None,
    };
    let split = common::split::failed_deploy_and_split(&admin, "web").await;
    let mut b = Browser::launch(&exe).await;
    b.call(
        "Page.navigate",
        json!({ "url": format!("http://{}/", wk.admin) }),
    )
    .await;
    let stable_row = format!(
        "tr[data-revision=\"{}\"][data-percent=\"90\"]",
        split.stable
    );
    b.wait_true(
        "the split shown",
        DEADLINE,
        &format!("!!document.querySelector('{stable_row}')"),
    )
    .await;

    b.click("button[data-service=\"web\"][data-action=\"traffic\"]")
        .await;
    b.wait_true(
        "the traffic form",
        DEADLINE,
        &format!(
            "!!document.querySelector('input[data-share=\"{}\"]')",
            split.canary
        ),
    )
    .await;
    b.eval(&format!(
        "document.querySelector('input[data-share=\"{}\"]').value = '50'; \
         document.querySelector('input[data-share=\"{}\"]').value = '50'",
        split.stable, split.canary
    ))
    .await;
    b.click("article[data-service=\"web\"] form.form button[type=\"submit\"]")
        .await;
    wait_for("a 50/50 split", DEADLINE, || async {
        let t = wk.admin_json("/v1/services/web/traffic").await;
        let shares: Vec<(String, u64, String)> = t["traffic"]
            .as_array()?
            .iter()
            .map(|s| {
                let r = s["revision"].as_str().unwrap_or("").to_string();
                (
                    r,
                    s["percent"].as_u64().unwrap_or(0),
                    s["tag"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        (shares
            == [
                (split.stable.clone(), 50, "stable".into()),
                (split.canary.clone(), 50, "canary".into()),
            ])
        .then_some(())
    })
    .await;

    b.click("button[data-service=\"web\"][data-action=\"promote\"]")
        .await;
    b.eval(
        "document.querySelector('input[data-field=\"steps\"]').value = '75,100'; \
         document.querySelector('input[data-field=\"interval\"]').value = '1h'",
    )
    .await;
    b.click("article[data-service=\"web\"] form.form button[type=\"submit\"]")
        .await;
    b.wait_true(
        "the rollout's steps shown",
        DEADLINE,
        "document.querySelectorAll('.steps li').length === 2 && \
         document.querySelector('.steps li[data-step=\"current\"]').textContent === '75%'",
    )
    .await;
    let t = wk.admin_json("/v1/services/web/traffic").await;
    assert_eq!(t["rollout"]["revision"], split.canary.as_str(), "{t}");
    assert_eq!(t["rollout"]["state"], "running", "{t}");
    let errors = b.errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    b.close().await;
}
