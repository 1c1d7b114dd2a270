//! The `/ui` dashboard in a real browser: headless Chromium driven over WebDriver
//! (`chromedriver`, Debian `chromium` and `chromium-driver`; `.ci/run` installs them) against a
//! three-node cluster. A wrong token gets the unauthorized state and no data; the operator's
//! token shows the current leader; a failover the test triggers through the API appears in the
//! page's timeline, step by step, without a reload.
//!
//! The browser trusts exactly the test nodes' keys (`--ignore-certificate-errors-spki-list`
//! with their SPKI hashes), not every certificate. `chromedriver --port=0` picks its own port
//! and prints it, so no port is probed and released. Chromedriver runs in a process group of
//! its own with Chromium inside; the session is closed at the end and the group killed by its
//! id if the test fails before that.
//!
//! `ARBITER_UI_SCREENSHOT=path.png` saves the page after the failover (how
//! `docs/dashboard.png` is made).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(20);
/// The old headless mode, as Debian's `chromium-headless-shell`: the new one (`chromium
/// --headless`) answers a server's request for an optional client certificate, which every
/// node's HTTPS port makes, with an invisible certificate picker and never loads the page; the
/// headless shell continues without a certificate, as a browser without one does. It opens no
/// tab by itself, so [`Browser::launch`] opens the first one over DevTools.
const CHROMIUM: &str = "/usr/lib/chromium/chromium-headless-shell";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One Chromium session behind its own chromedriver.
struct Browser {
    driver: Child,
    /// The process group chromedriver leads (and Chromium, its child, belongs to).
    group: i32,
    port: u16,
    /// Empty once the session is closed.
    session: String,
    /// Chromium's profile and chromedriver's log.
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (1280x800) that accepts the certificates
    /// of `trusted` (PEM files) and no other untrusted ones.
    async fn launch(trusted: &[PathBuf]) -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} not found: this test needs Debian's `chromium-headless-shell` and \
                 `chromium-driver` (apt-get install chromium-headless-shell chromium-driver; \
                 .ci/run installs them)"
            );
        }
        let dir = tempfile::tempdir().expect("browser temp dir");
        let log = dir.path().join("chromedriver.log");
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .arg(format!("--log-path={}", log.display()))
            // Chromium writes its settings and caches under $HOME: keep them in the temp dir.
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let group = driver.id().expect("chromedriver pid") as i32;
        let stdout = driver.stdout.take().expect("chromedriver stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                // "ChromeDriver was started successfully on port 41235."
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("chromedriver announces its port");
        // Keep draining its stdout so it can never block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let profile = dir.path().join("profile");
        let pins: Vec<String> = trusted.iter().map(|pem| spki_pin(pem)).collect();
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            // No crash handler: it would outlive the browser, outside its process group.
            "--disable-crashpad-for-testing".into(),
            "--window-size=1280,800".into(),
            format!("--user-data-dir={}", profile.display()),
            format!("--ignore-certificate-errors-spki-list={}", pins.join(",")),
        ];
        let mut browser = Browser {
            driver,
            group,
            port,
            session: String::new(),
            dir,
        };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "timeouts": {"script": 5_000, "pageLoad": 20_000},
        }}});
        let (created, ()) = tokio::join!(
            browser.call("POST", "/session", capabilities),
            open_first_tab(&profile)
        );
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        browser
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test with the log's tail.
    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        // GET and DELETE carry no body.
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let exchange = local_exchange(self.port, method, path, &body);
        let (status, answer) = tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .unwrap_or_else(|_| Err("no answer within 30 s".into()))
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}\n{}", self.log_tail()));
        assert!(
            (200..300).contains(&status),
            "WebDriver {method} {path}: {status} {answer}\n{}",
            self.log_tail()
        );
        answer["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    async fn goto(&self, url: &str) {
        self.call("POST", &self.session_path("/url"), json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body) in the page with `args`; its return value.
    async fn run(&self, script: &str, args: Value) -> Value {
        let body = json!({ "script": script, "args": args });
        self.call("POST", &self.session_path("/execute/sync"), body)
            .await
    }

    /// Polls `script` until it returns something truthy (not null, false or ""); that value.
    async fn until(&self, what: &str, script: &str, args: Value) -> Value {
        eventually(what, WAIT, || async {
            let value = self.run(script, args.clone()).await;
            let truthy = !(value.is_null() || value == json!(false) || value == json!(""));
            truthy.then_some(value)
        })
        .await
    }

    /// Types `text` into the element matching `css` and submits its form.
    async fn submit(&self, css: &str, text: &str) {
        let found = self
            .call(
                "POST",
                &self.session_path("/element"),
                json!({"using": "css selector", "value": css}),
            )
            .await;
        let element = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string();
        let value = self.session_path(&format!("/element/{element}/value"));
        self.call("POST", &value, json!({ "text": format!("{text}\u{E007}") }))
            .await;
    }

    async fn screenshot(&self, path: &Path) {
        let png = self
            .call("GET", &self.session_path("/screenshot"), Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 screenshot"))
            .expect("screenshot decodes");
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Closes the session (Chromium exits), then stops chromedriver.
    async fn quit(mut self) {
        let path = self.session_path("");
        self.call("DELETE", &path, Value::Null).await;
        self.session.clear();
        self.driver.start_kill().expect("stop chromedriver");
        let _ = tokio::time::timeout(WAIT, self.driver.wait()).await;
    }

    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("chromedriver log (last lines):\n{tail}")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After `quit` only chromedriver's group id is left, and nothing in it. Otherwise the
        // test failed with the browser up: chromedriver, Chromium and Chromium's helpers, all in
        // the group this test created.
        // SAFETY: kill(2) with a negative pid signals that process group only.
        unsafe { libc::kill(-self.group, libc::SIGKILL) };
    }
}

/// Chromedriver waits for the browser's first tab, which the headless shell does not open:
/// open it over DevTools, on the port the browser wrote into its profile.
async fn open_first_tab(profile: &Path) {
    let port_file = profile.join("DevToolsActivePort");
    eventually("the browser's DevTools port", WAIT, || async {
        let text = std::fs::read_to_string(&port_file).ok()?;
        let port = text.lines().next()?.trim().parse().ok()?;
        local_exchange(port, "PUT", "/json/new?about:blank", "")
            .await
            .ok()
            .filter(|(status, _)| *status == 200)
    })
    .await;
}

/// One HTTP/1.1 exchange with chromedriver or the browser's DevTools on loopback: chromedriver
/// keeps connections open whatever the client asks, so the answer is read by its
/// Content-Length, not until the connection closes.
async fn local_exchange(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, Value), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut received = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    // (head length, body length) once the head is in.
    let mut expected: Option<(usize, usize)> = None;
    loop {
        if let Some((head_len, body_len)) = expected {
            if received.len() >= head_len + body_len {
                let head = String::from_utf8_lossy(&received[..head_len]);
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or(format!("no status line: {head}"))?;
                let body = &received[head_len..head_len + body_len];
                let value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
                return Ok((status, value));
            }
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the whole answer".into());
        }
        received.extend_from_slice(&chunk[..n]);
        if expected.is_none() {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or(format!("no Content-Length in {head}"))?;
                expected = Some((end + 4, length));
            }
        }
    }
}

/// Chromium's pin for a certificate: base64 of the SHA-256 of its SubjectPublicKeyInfo.
fn spki_pin(pem: &Path) -> String {
    let text = std::fs::read(pem).expect("read a node certificate");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).expect("PEM certificate");
    let cert = pem.parse_x509().expect("X.509 certificate");
    let digest = Sha256::digest(cert.tbs_certificate.subject_pki.raw);
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// `GET` over TLS with the operator's token, or with no token; status and JSON body.
async fn get(addr: &str, path: &str, with_token: bool) -> (u16, Value) {
    let client = if with_token {
        http()
    } else {
        let ca_only = arbiter::tls::ClientCredentials {
            token_file: None,
            ..certs().operator()
        };
        ca_only.http_client().expect("CA-only client")
    };
    let url = format!("{}{path}", client.base_url(addr));
    let response = client
        .request("GET", &url, None, Duration::from_secs(5))
        .await
        .expect("GET");
    let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, body)
}

/// A write with the operator's token; status and JSON body.
async fn send(addr: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let client = http();
    let url = format!("{}{path}", client.base_url(addr));
    let body = body.to_string();
    let response = client
        .request(method, &url, Some(body.as_bytes()), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let answer = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_leader_and_a_failover_live() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    dr_bootstrapped(&leader.http_addr, WAIT).await;
    let leader_region = leader.region.clone();

    tracing::info!("phase 1: the page is public, its data is not; a follower says who leads");
    let (status, _) = get(&leader.http_addr, "/ui", false).await;
    assert_eq!(status, 200, "the page needs no token");
    let (status, _) = get(&leader.http_addr, "/v1/dashboard", false).await;
    assert_eq!(status, 401, "the data needs one");
    let follower = cluster.follower(leader.node_id);
    let (status, view) = get(&follower.ready.http_addr, "/v1/dashboard", true).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["isLeader"], json!(false), "{view}");
    assert_eq!(view["verdicts"], Value::Null, "{view}");
    assert_eq!(view["leaderHttpAddr"], json!(leader.http_addr), "{view}");

    // Something in every table: a lease, a link within its RPO and one past it.
    for (method, path, body) in [
        (
            "POST",
            "/v1/leases/orders-db/acquire",
            json!({"holder": "proxy-west", "ttlMs": 60_000}),
        ),
        (
            "PUT",
            "/v1/replication/links",
            json!({"sourceRegion": "us-east-1", "targetRegion": "us-west-2",
                   "replicationMode": "ASYNC"}),
        ),
        (
            "PUT",
            "/v1/replication/links",
            json!({"sourceRegion": "us-west-2", "targetRegion": "eu-central-1",
                   "replicationMode": "ASYNC"}),
        ),
        (
            "POST",
            "/v1/replication/links/heartbeat",
            json!({"sourceRegion": "us-east-1", "targetRegion": "us-west-2",
                   "lastSentEpochId": 120, "lastReceivedEpochId": 112,
                   "replicationLagMs": 7_400, "isLinkActive": true}),
        ),
        (
            "POST",
            "/v1/replication/links/heartbeat",
            json!({"sourceRegion": "us-west-2", "targetRegion": "eu-central-1",
                   "lastSentEpochId": 120, "lastReceivedEpochId": 119,
                   "replicationLagMs": 1_800, "isLinkActive": true}),
        ),
    ] {
        let (status, answer) = send(&leader.http_addr, method, path, body).await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }

    tracing::info!("phase 2: a wrong token gets the unauthorized state and no data");
    let trusted: Vec<PathBuf> = (1..=3).map(|id| certs().node_tls(id).cert).collect();
    let browser = Browser::launch(&trusted).await;
    let page = format!("https://{}/ui", leader.http_addr);
    browser.goto(&page).await;
    browser.submit("#token", "not-a-token").await;
    let shown = browser
        .until(
            "the unauthorized state",
            "const badge = document.getElementById('connection');
             return badge.dataset.state === 'unauthorized'
               && !document.getElementById('login').hidden
               && document.getElementById('dashboard').hidden
               && document.getElementById('login-error').textContent;",
            json!([]),
        )
        .await;
    assert!(
        shown.as_str().unwrap_or_default().contains("401"),
        "{shown}"
    );
    assert_eq!(
        browser
            .run(
                "return sessionStorage.length + localStorage.length;",
                json!([])
            )
            .await,
        json!(0),
        "a refused token is not kept"
    );

    tracing::info!("phase 3: the operator's token shows the current leader");
    browser.submit("#token", &operator_token()).await;
    let header = browser
        .until(
            "the page to show the leader",
            "const leader = document.getElementById('leader');
             return leader.dataset.leaderId === arguments[0] ? leader.textContent : null;",
            json!([leader.node_id.to_string()]),
        )
        .await;
    let header = header.as_str().unwrap_or_default();
    assert!(
        header.contains(&format!("node {}", leader.node_id)) && header.contains(&leader_region),
        "{header}"
    );
    let state = browser
        .run(
            "return [document.getElementById('connection').dataset.state,
                     document.querySelectorAll('#members tr').length,
                     document.querySelectorAll('#regions .card').length,
                     location.href,
                     sessionStorage.length, localStorage.length];",
            json!([]),
        )
        .await;
    assert_eq!(state, json!(["live", 3, 3, page, 1, 0]), "{state}");
    let tables = browser
        .run(
            "return [document.getElementById('leases').textContent,
                     document.querySelectorAll('#links .link.lag-over').length,
                     document.querySelectorAll('#links .link.lag-ok').length];",
            json!([]),
        )
        .await;
    assert!(
        tables[0].as_str().unwrap_or_default().contains("orders-db"),
        "{tables}"
    );
    assert_eq!((&tables[1], &tables[2]), (&json!(1), &json!(1)), "{tables}");
    // Set once; a reload would lose it.
    browser
        .run(
            "window.uiTestMarker = arguments[0];",
            json!(["loaded once"]),
        )
        .await;

    tracing::info!("phase 4: a failover triggered through the API appears without a reload");
    // Break-glass: the link was left past its RPO above, which the promotion gate refuses.
    let body = json!({"failedRegion": "us-east-1", "reason": "dashboard test",
                      "breakGlass": true});
    let (status, accepted) = send(&leader.http_addr, "POST", "/v1/dr/failover", body).await;
    assert_eq!(status, 202, "{accepted}");
    let failover_id = accepted["failoverId"].as_str().expect("failoverId");
    let event = browser
        .until(
            "the failover in the timeline with its traffic shift",
            "const event = document.querySelector(
               `#timeline [data-failover-id=\"${arguments[0]}\"]`);
             return event && event.textContent.includes('SHIFT_TRAFFIC')
               ? event.textContent : null;",
            json!([failover_id]),
        )
        .await;
    let event = event.as_str().unwrap_or_default();
    assert!(event.contains("us-east-1 →"), "{event}");
    assert!(event.contains("DECIDE"), "{event}");
    assert_eq!(
        browser.run("return window.uiTestMarker;", json!([])).await,
        json!("loaded once"),
        "the page was reloaded"
    );
    // us-east-1's traffic moved away, and the card says so.
    browser
        .until(
            "us-east-1's traffic weight to drop to 0%",
            "const weight = document.querySelector(
               '#regions [data-region=\"us-east-1\"] .weight-row .num');
             return weight && weight.textContent === '0%';",
            json!([]),
        )
        .await;

    if let Some(path) = std::env::var_os("ARBITER_UI_SCREENSHOT") {
        browser.screenshot(Path::new(&path)).await;
    }
    browser.quit().await;
}
