//! TLS over loopback with certificates made here by rcgen: HTTPS sync, certificate reload
//! when the files change, required client certificates, and `bind_identity` (the client
//! certificate must name the machine in the URL).

use bytes::Bytes;
use dasher_server::config::TlsSettings;
use dasher_tests::TestServer;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;

/// A CA that signs server and client certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca { der: cert.der().clone(), pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A leaf with `cn` as common name and `sans` as DNS names (plus 127.0.0.1).
    fn leaf(&self, cn: &str, sans: &[&str]) -> (String, String, CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.pem(), key.serialize_pem(), cert.der().clone(), key_der)
    }
}

fn write_server_cert(dir: &Path, ca: &Ca) -> CertificateDer<'static> {
    let (cert, key, der, _) = ca.leaf("dasher test server", &["localhost"]);
    // Key first, then certificate, each by rename: the server never reads a torn file.
    for (name, content) in [("server.key", key), ("server.crt", cert)] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
    der
}

/// The server certificate seen and the response to one HTTPS request.
struct Exchange {
    server_cert: CertificateDer<'static>,
    status: StatusCode,
    body: Bytes,
}

async fn https(
    addr: SocketAddr,
    ca: &Ca,
    client_cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Exchange, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let server_cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| format!("http: {e}"))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    // With TLS 1.3 a refused client certificate surfaces after the handshake, on first use.
    let resp = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    Ok(Exchange { server_cert, status, body })
}

fn preflight(id: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"hostname": "h", "santa_version": "2026.7.1", "machine_id": id, "client_mode": "MONITOR"}),
    )
    .unwrap()
}

#[tokio::test]
async fn https_sync_and_certificate_reload() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new("dasher test CA");
    let first = write_server_cert(certs.path(), &ca);
    let dir = certs.path().to_owned();
    let s = TestServer::start_with(move |c| {
        c.tls = Some(TlsSettings {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            client_ca: None,
            require_client_cert: false,
            bind_identity: false,
        })
    })
    .await;
    let handle = s.handle.as_ref().unwrap();
    assert!(handle.sync_base_url().starts_with("https://"));
    let addr = handle.addr();
    let x = https(addr, &ca, None, Method::POST, "/santa/preflight/m1", preflight("m1")).await.unwrap();
    assert_eq!(x.status, StatusCode::OK, "{}", String::from_utf8_lossy(&x.body));
    assert_eq!(x.server_cert, first);

    // New files: the next handshake uses them.
    let second = write_server_cert(certs.path(), &ca);
    assert_ne!(first, second);
    let x = https(addr, &ca, None, Method::GET, "/healthz", vec![]).await.unwrap();
    assert_eq!(x.server_cert, second, "the new certificate is served without a restart");

    // A broken file keeps the last good certificate serving, and is counted.
    std::fs::write(certs.path().join("server.crt"), "not a certificate").unwrap();
    let x = https(addr, &ca, None, Method::GET, "/metrics", vec![]).await.unwrap();
    assert_eq!(x.server_cert, second);
    let m = String::from_utf8(x.body.to_vec()).unwrap();
    assert!(m.contains(r#"dasher_tls_reloads_total{reason="ok"} 1"#), "{m}");
    assert!(m.contains(r#"dasher_tls_reloads_total{reason="error"} 1"#), "{m}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>()
        .get(format!("http://{addr}/healthz").parse().unwrap())
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != StatusCode::OK);
}

#[tokio::test]
async fn client_certificates_are_required_and_bound_to_the_machine_id() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new("dasher server CA");
    write_server_cert(certs.path(), &ca);
    let client_ca = Ca::new("fleet device CA");
    std::fs::write(certs.path().join("clients.pem"), &client_ca.pem).unwrap();
    let dir = certs.path().to_owned();
    let s = TestServer::start_with(move |c| {
        c.tls = Some(TlsSettings {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            client_ca: Some(dir.join("clients.pem")),
            require_client_cert: true,
            bind_identity: true,
        })
    })
    .await;
    let addr = s.handle.as_ref().unwrap().addr();

    let refused = https(addr, &ca, None, Method::GET, "/healthz", vec![]).await;
    assert!(refused.is_err(), "no client certificate, no service");
    let rogue_ca = Ca::new("rogue CA");
    let (_, _, rogue, rogue_key) = rogue_ca.leaf("HOST-A", &[]);
    let refused = https(addr, &ca, Some((rogue, rogue_key)), Method::GET, "/healthz", vec![]).await;
    assert!(refused.is_err(), "a certificate from another CA is refused");

    // CN names the machine (Santa's hardware UUIDs are upper case; names match case-insensitively).
    let (_, _, a, a_key) = client_ca.leaf("HOST-A", &[]);
    let x = https(
        addr,
        &ca,
        Some((a.clone(), a_key.clone_key())),
        Method::POST,
        "/santa/preflight/host-a",
        preflight("host-a"),
    )
    .await
    .unwrap();
    assert_eq!(x.status, StatusCode::OK, "{}", String::from_utf8_lossy(&x.body));
    let x =
        https(addr, &ca, Some((a, a_key)), Method::POST, "/santa/preflight/host-b", preflight("host-b")).await.unwrap();
    assert_eq!(x.status, StatusCode::UNAUTHORIZED, "a stolen machine id without its certificate");
    let msg = String::from_utf8_lossy(&x.body).into_owned();
    assert!(msg.contains("not machine host-b") && msg.contains("bind_identity"), "{msg}");

    // A SAN names the machine.
    let (_, _, b, b_key) = client_ca.leaf("some device", &["host-b"]);
    let x =
        https(addr, &ca, Some((b, b_key)), Method::POST, "/santa/preflight/host-b", preflight("host-b")).await.unwrap();
    assert_eq!(x.status, StatusCode::OK);
}
