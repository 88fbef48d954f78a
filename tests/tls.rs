//! Mutual TLS on an acquirer listener: a client with a certificate from the configured
//! CA is served; a client with a certificate from another CA, or without one, is
//! refused during the handshake and never reaches the switch. Certificates come from
//! `certs/make-dev-certs.sh` (needs `openssl`), made into a temporary directory.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use replenish::config::Config;
use rustls_pki_types::ServerName;
use support::{ACTIVE, Client, Switch, config_text, free_port, import_samples, request, root};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn make_certs(dir: &Path) {
    let status = Command::new("bash")
        .arg(root().join("certs/make-dev-certs.sh"))
        .arg(dir)
        .status()
        .expect("run make-dev-certs.sh");
    assert!(status.success(), "make-dev-certs.sh failed: {status}");
}

fn tls_config(data: &Path, certs: &Path) -> Config {
    let mut text = config_text(data, free_port());
    text = text.replacen(
        "acquirer_id = \"00012345\"\n",
        &format!(
            "acquirer_id = \"00012345\"\n\n[acquirer.tls]\ncert = \"{c}/server.pem\"\nkey = \"{c}/server.key\"\nclient_ca = \"{c}/ca.pem\"\n",
            c = certs.display()
        ),
        1,
    );
    Config::from_toml(&text, "tls.toml").expect("config")
}

async fn handshake(
    addr: std::net::SocketAddr,
    certs: &Path,
    client: Option<&str>,
) -> std::io::Result<Client> {
    let ca = certs.join("ca.pem");
    let (cert, key) = match client {
        Some(name) => (
            certs.join(format!("{name}.pem")),
            certs.join(format!("{name}.key")),
        ),
        None => (Default::default(), Default::default()),
    };
    let pair = client.map(|_| (cert.as_path(), key.as_path()));
    let config = replenish::wire::tls::client_config(&ca, pair).expect("client config");
    let connector = TlsConnector::from(Arc::clone(&config));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    let stream = connector.connect(name, tcp).await?;
    Ok(Client::over(stream))
}

#[tokio::test]
async fn only_clients_of_the_configured_ca_are_served() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(certs.path());
    let data = tempfile::tempdir().expect("tempdir");
    let config = tls_config(data.path(), certs.path());
    import_samples(&config);
    let switch = Switch::start(config).await;

    let mut good = handshake(switch.addr, certs.path(), Some("client"))
        .await
        .expect("a client of the dev CA completes the handshake");
    let answer = good.exchange(&request(1, 2500, ACTIVE)).await;
    assert_eq!(answer.text(39), Some("00"));

    for refused in [Some("rogue-client"), None] {
        // TLS 1.3 clients finish their side before the server checks the certificate:
        // the refusal shows as a failed handshake or as a closed connection.
        if let Ok(mut client) = handshake(switch.addr, certs.path(), refused).await {
            assert!(
                client
                    .try_exchange(&request(2, 2500, ACTIVE))
                    .await
                    .is_none(),
                "{refused:?} must not be served"
            );
        }
    }
    assert_eq!(
        good.exchange(&request(3, 2500, ACTIVE)).await.text(39),
        Some("00"),
        "the served session is unaffected"
    );
    switch.stop().await;
}

/// One HTTP/1.1 request over `stream`; returns the whole answer as text.
async fn http_over(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    request: &str,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.expect("sent");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn the_console_over_https_sets_a_secure_cookie_and_refuses_plain_http() {
    use replenish::console::secrets;
    use replenish::durable::datadir::DataDir;
    use replenish::durable::record::{Record, Saved};
    use replenish::vocab::people::{Role, User};
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(certs.path());
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let text = format!(
        "{}\n[console]\nlisten = \"127.0.0.1:{port}\"\n[console.tls]\ncert = \"{c}/server.pem\"\nkey = \"{c}/server.key\"\n",
        config_text(data.path(), free_port()),
        c = certs.path().display()
    );
    let config = Config::from_toml(&text, "console-tls.toml").expect("config");
    let user = User {
        name: "ana".into(),
        role: Role::Auditor,
        carriers: Vec::new(),
        bank: None,
        password_hash: secrets::hash_password("correct horse battery").expect("hash"),
        disabled: false,
    };
    let audit = replenish::console::users::audit("test", "user.add", "ana", "ok");
    let data_dir = DataDir::open(&config).expect("data dir");
    data_dir
        .commit(&[Record::UserSaved(Box::new(Saved { item: user, audit }))])
        .expect("user");
    data_dir.close().expect("closed");
    let switch = Switch::start(config).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut tcp = None;
    for _ in 0..100 {
        if let Ok(stream) = TcpStream::connect(addr).await {
            tcp = Some(stream);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let tcp = tcp.expect("the console listens");
    let ca = certs.path().join("ca.pem");
    let client = replenish::wire::tls::client_config(&ca, None).expect("client config");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .expect("the console's certificate is the dev CA's");
    let body = r#"{"username":"ana","password":"correct horse battery"}"#;
    let request = format!(
        "POST /api/v1/session HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = http_over(tls, &request).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let cookie = (answer.lines())
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    let plain = TcpStream::connect(addr).await.expect("connects");
    let answer = http_over(plain, "GET /login HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        !answer.contains("HTTP/1.1 200"),
        "plain HTTP is not served: {answer}"
    );
    switch.stop().await;
}

/// The channel API over HTTPS (`[channels.tls]`): a gateway's request is answered over
/// TLS with the dev CA's certificate (here `401`: no token), the OpenAPI document too,
/// and plain HTTP is not served.
#[tokio::test]
async fn the_channel_api_serves_https_only_when_configured_so() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(certs.path());
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let text = format!(
        "{}\n[channels]\nlisten = \"127.0.0.1:{port}\"\n[channels.tls]\ncert = \"{c}/server.pem\"\nkey = \"{c}/server.key\"\n\
         [[debit_bank]]\nname = \"first-bank\"\nlinks = [\"127.0.0.1:9\"]\nacquirer_id = \"00099999\"\n",
        config_text(data.path(), free_port()),
        c = certs.path().display()
    );
    let config = Config::from_toml(&text, "channels-tls.toml").expect("config");
    let switch = Switch::start(config).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut tcp = None;
    for _ in 0..100 {
        if let Ok(stream) = TcpStream::connect(addr).await {
            tcp = Some(stream);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let connect = |tcp: TcpStream| async {
        let ca = certs.path().join("ca.pem");
        let client = replenish::wire::tls::client_config(&ca, None).expect("client config");
        let name = ServerName::try_from("localhost").expect("name");
        (TlsConnector::from(client).connect(name, tcp).await)
            .expect("the channel API's certificate is the dev CA's")
    };
    let tls = connect(tcp.expect("the channel API listens")).await;
    let body = r#"{"channel":"web","min":"2065550101","pin":"4321","amount":100}"#;
    let request = format!(
        "POST /api/v1/replenishments HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nIdempotency-Key: k1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = http_over(tls, &request).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains(r#"{"error":"unauthorized"}"#), "{answer}");
    let tls = connect(TcpStream::connect(addr).await.expect("connects")).await;
    let get = "GET /api/v1/openapi.json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let answer = http_over(tls, get).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"openapi\""),
        "{answer}"
    );
    let plain = TcpStream::connect(addr).await.expect("connects");
    let answer = http_over(
        plain,
        "GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(
        !answer.contains("HTTP/1.1 200"),
        "plain HTTP is not served: {answer}"
    );
    switch.stop().await;
}
