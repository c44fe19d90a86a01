//! A cookie-keeping HTTP client of the console, as a browser would be (no JavaScript).

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use std::collections::HashMap;
use std::net::SocketAddr;

pub struct Page {
    pub status: StatusCode,
    pub body: String,
}

pub struct Browser {
    addr: SocketAddr,
    cookies: HashMap<String, String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Browser {
    pub fn new(addr: SocketAddr) -> Browser {
        Browser {
            addr,
            cookies: HashMap::new(),
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        }
    }

    async fn send(&mut self, method: Method, path: &str, headers: &[(&str, &str)], body: String) -> Page {
        let mut req = Request::builder().method(method).uri(format!("http://{}{path}", self.addr));
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header(header::COOKIE, jar.join("; "));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self.client.request(req.body(Full::new(Bytes::from(body))).expect("request")).await.expect("send");
        let status = resp.status();
        for v in resp.headers().get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()) {
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            if let Some((k, val)) = pair.split_once('=') {
                if attrs.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), val.to_owned());
                }
            }
        }
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Page { status, body: String::from_utf8_lossy(&body).into_owned() }
    }

    /// A GET with the session cookies.
    pub async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, &[], String::new()).await
    }

    /// An admin API GET with the token, as JSON.
    pub async fn admin_json(&mut self, path: &str) -> serde_json::Value {
        let auth = format!("Bearer {}", dasher_tests::TOKEN);
        let p = self.send(Method::GET, path, &[("authorization", &auth)], String::new()).await;
        assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.body);
        serde_json::from_str(&p.body).expect("JSON")
    }

    /// Signs in with an admin token through the sign-in form.
    pub async fn sign_in(&mut self, token: &str) {
        let form = self.get("/ui/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = self.cookies.get("dasher_csrf").cloned().expect("a CSRF cookie");
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("csrf_token", &csrf)
            .append_pair("next", "/ui/")
            .finish();
        let p =
            self.send(Method::POST, "/ui/login", &[("content-type", "application/x-www-form-urlencoded")], body).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "sign-in: {}", p.body);
        assert!(self.cookies.contains_key("dasher_session"), "no session cookie after sign-in");
    }

    /// The first link on `path` whose href contains `needle` (HTML-unescaped).
    pub async fn link(&mut self, path: &str, needle: &str) -> String {
        let p = self.get(path).await;
        p.body
            .split("href=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(|h| h.replace("&amp;", "&"))
            .find(|h| h.contains(needle))
            .unwrap_or_else(|| panic!("no link with {needle} on {path}"))
    }
}
