//! `Browser`: a headless Chromium driven over the W3C WebDriver protocol, for
//! tests that need a real page (the webchat widget).
//!
//! A small client of our own over reqwest rather than `fantoccini`, whose
//! `webdriver` dependency would bring second copies of http, cookie, thiserror
//! and icu. It speaks to Debian's `/usr/bin/chromedriver` (installed by
//! `scripts/tools.sh`), started on a free port for each `Browser` and stopped
//! with it; the session is deleted and the profile directory removed on drop.
//!
//! Waiting is a bounded poll (`wait_for`), never a fixed sleep.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C key of an element reference in WebDriver JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How often `wait_for` looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A headless Chromium with one WebDriver session (one tab).
pub struct Browser {
    http: reqwest::Client,
    driver: Child,
    port: u16,
    session: String,
    profile: PathBuf,
}

/// An element of the current page, as WebDriver refers to it.
#[derive(Debug, Clone)]
pub struct Element {
    id: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub async fn launch() -> Self {
        assert!(
            std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMIUM} and {CHROMEDRIVER} are needed: run scripts/tools.sh"
        );
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        busflow_activities::http::install_crypto_provider();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("WebDriver HTTP client");
        let profile =
            std::env::temp_dir().join(format!("busflow-chromium-{}", uuid::Uuid::new_v4()));
        let mut browser = Self {
            http,
            driver,
            port,
            session: String::new(),
            profile,
        };
        browser.until_driver_ready().await;
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ]
        .map(str::to_owned)
        .into_iter()
        .chain([format!("--user-data-dir={}", browser.profile.display())])
        .collect::<Vec<_>>();
        let created = browser
            .command(
                reqwest::Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
                }}})),
            )
            .await
            .unwrap_or_else(|e| panic!("new WebDriver session: {e}"));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {created}"))
            .to_owned();
        browser
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.session_command(reqwest::Method::POST, "/url", json!({"url": url}))
            .await
            .unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
    }

    /// The first element matching `css`, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        match self
            .session_command(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await
        {
            Ok(value) => Some(Element::from_json(&value)),
            Err(WebDriverError { error, .. }) if error == "no such element" => None,
            Err(e) => panic!("find {css}: {e}"),
        }
    }

    /// Every element matching `css`, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let value = self
            .session_command(
                reqwest::Method::POST,
                "/elements",
                json!({"using": "css selector", "value": css}),
            )
            .await
            .unwrap_or_else(|e| panic!("find all {css}: {e}"));
        value
            .as_array()
            .map(|all| all.iter().map(Element::from_json).collect())
            .unwrap_or_default()
    }

    /// The first element matching `css`, once there is one (panics after `timeout`).
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        self.wait_until(&format!("an element {css}"), timeout, || async {
            self.find(css).await
        })
        .await
    }

    /// Polls `check` until it gives a value; panics naming `what` after `timeout`.
    pub async fn wait_until<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    pub async fn click(&self, element: &Element) {
        self.element_command(reqwest::Method::POST, element, "/click", Some(json!({})))
            .await
            .unwrap_or_else(|e| panic!("click: {e}"));
    }

    /// Types `text` into `element` as key presses.
    pub async fn send_keys(&self, element: &Element, text: &str) {
        self.element_command(
            reqwest::Method::POST,
            element,
            "/value",
            Some(json!({"text": text})),
        )
        .await
        .unwrap_or_else(|e| panic!("send keys: {e}"));
    }

    /// The element's rendered text.
    pub async fn text(&self, element: &Element) -> String {
        let value = self
            .element_command(reqwest::Method::GET, element, "/text", None)
            .await
            .unwrap_or_else(|e| panic!("get text: {e}"));
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The element's attribute `name`, if set.
    pub async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let value = self
            .element_command(
                reqwest::Method::GET,
                element,
                &format!("/attribute/{name}"),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("get attribute {name}: {e}"));
        value.as_str().map(str::to_owned)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page
    /// and returns what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.session_command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
        .unwrap_or_else(|e| panic!("execute script: {e}"))
    }

    async fn until_driver_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(status) = self.command(reqwest::Method::GET, "/status", None).await
                && status["ready"] == true
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not come up on port {}",
                self.port
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn element_command(
        &self,
        method: reqwest::Method,
        element: &Element,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        self.command(
            method,
            &format!("/session/{}/element/{}{path}", self.session, element.id),
            body,
        )
        .await
    }

    async fn session_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, WebDriverError> {
        self.command(
            method,
            &format!("/session/{}{path}", self.session),
            Some(body),
        )
        .await
    }

    /// One WebDriver command; its `value`, or the error it reports.
    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        let mut request = self
            .http
            .request(method, format!("http://127.0.0.1:{}{path}", self.port));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(WebDriverError::transport)?;
        let status = response.status();
        let mut answer: Value = response.json().await.map_err(WebDriverError::transport)?;
        let value = answer["value"].take();
        if status.is_success() {
            Ok(value)
        } else {
            Err(WebDriverError {
                error: value["error"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_owned(),
                message: value["message"].as_str().unwrap_or_default().to_owned(),
            })
        }
    }

    /// Deletes the session (Chromium quits) without a runtime: `Drop` may run
    /// while a test panics, so this is a plain blocking request.
    fn delete_session_blocking(&self) {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.session, self.port
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            self.delete_session_blocking();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Element {
    fn from_json(value: &Value) -> Self {
        Self {
            id: value[ELEMENT_KEY]
                .as_str()
                .unwrap_or_else(|| panic!("not an element reference: {value}"))
                .to_owned(),
        }
    }
}

/// What a WebDriver command refused, as the protocol names it.
#[derive(Debug)]
pub struct WebDriverError {
    pub error: String,
    pub message: String,
}

impl WebDriverError {
    fn transport(err: reqwest::Error) -> Self {
        Self {
            error: "transport".to_owned(),
            message: format!("{err:#}"),
        }
    }
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

/// A port nobody listens on now (chromedriver takes it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free local port")
}
