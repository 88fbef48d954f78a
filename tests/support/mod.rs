//! Shared test support: a switch running in-process on loopback with a temporary data
//! directory and the sample accounts and locations, and a framed ISO 8583 client.
#![allow(dead_code)]

pub mod console;
pub mod engine;
pub mod python;
pub mod smsc;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use replenish::config::Config;
use replenish::durable::datadir::DataDir;
use replenish::durable::record::Record;
use replenish::server;
use replenish::vocab::accounts;
use replenish::wire::framing::{Frame, FrameCodec, LengthHeader};
use replenish::wire::iso8583::{self, Message, Spec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port (bound and released: good enough on a test machine).
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free loopback ports: all are held until every one is picked, so two
/// calls in a row cannot return the same port.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<StdListener> = (0..N)
        .map(|_| StdListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("bound").port())
}

/// A config for a test switch: one acquirer on `port`, data in `dir`, engines for
/// carrier-a and carrier-b only (carrier-unrouted has none), small daily limits.
pub fn config_text(dir: &Path, port: u16) -> String {
    format!(
        r#"
data_dir = "{dir}"

[[acquirer]]
name = "bank-a"
listen = "127.0.0.1:{port}"
acquirer_id = "00012345"

[[engine]]
name = "engine-a"
carriers = ["carrier-a"]
links = ["127.0.0.1:1", "127.0.0.1:2"]

[[engine]]
name = "engine-b"
carriers = ["carrier-b"]
links = ["127.0.0.1:3", "127.0.0.1:4"]

[limits]
daily_count = 5
daily_amount = 100000
max_amount = 50000
"#,
        dir = dir.display()
    )
}

/// Loads the sample accounts and locations into the data directory of `config`.
pub fn import_samples(config: &Config) {
    let read = |name: &str| {
        std::fs::read(root().join("fixtures/reference").join(name)).expect("sample file")
    };
    let accounts =
        accounts::parse_accounts(read("accounts.csv").as_slice()).expect("valid accounts");
    let locations =
        accounts::parse_locations(read("locations.csv").as_slice()).expect("valid locations");
    let data = DataDir::open(config).expect("data dir");
    data.commit(&[
        Record::AccountsImported { accounts },
        Record::LocationsImported { locations },
    ])
    .expect("import");
    data.close().expect("close");
}

/// A switch running in this process.
pub struct Switch {
    pub addr: SocketAddr,
    pub config: Config,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), server::ServeError>>,
}

impl Switch {
    /// Starts a switch on `config` (its first acquirer on a port the OS picks) and
    /// waits until it listens.
    pub async fn start(mut config: Config) -> Switch {
        config.acquirer[0].listen.set_port(0);
        let shutdown = CancellationToken::new();
        let (ready, bound) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(server::run_reporting(
            config.clone(),
            shutdown.clone(),
            Some(ready),
        ));
        let addr = match tokio::time::timeout(Duration::from_secs(30), bound).await {
            Ok(Ok(addrs)) => addrs[0],
            Ok(Err(_)) => match task.await {
                Ok(Err(e)) => panic!("switch did not start: {e}"),
                other => panic!("switch did not start: {other:?}"),
            },
            Err(_) => panic!("switch did not listen within 30 s"),
        };
        Switch {
            addr,
            config,
            shutdown,
            task,
        }
    }

    /// Stops it as SIGTERM would and waits for the drain.
    pub async fn stop(self) -> Config {
        self.shutdown.cancel();
        self.task.await.expect("server task").expect("clean stop");
        self.config
    }
}

/// A fresh switch with sample data in a temporary directory.
pub async fn fresh() -> (tempfile::TempDir, Switch) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path(), free_port());
    let config = Config::from_toml(&text, "test.toml").expect("config");
    import_samples(&config);
    (dir, Switch::start(config).await)
}

/// A PIN product (BACKOFFICE.md §5) for test configs: `CARD-A-25` of carrier-a,
/// cards `6034567…`, value 25.00, stock from `fixtures/pins/card-a-25.csv`.
pub const PIN_PRODUCT: &str = r#"
[[product]]
sku = "CARD-A-25"
carrier = "carrier-a"
value = 2500
currency = "840"
card_prefix = "6034567"
"#;

/// A generated-PIN product (`CARD-B-10` of carrier-b, cards `6034568…`, value 10.00,
/// 14-digit PINs ending in a Luhn digit).
pub const GENERATED_PRODUCT: &str = r#"
[[product]]
sku = "CARD-B-10"
carrier = "carrier-b"
value = 1000
currency = "840"
card_prefix = "6034568"
mode = "generated"
pin_length = 14
check_digit = "luhn"
"#;

/// A card of [`PIN_PRODUCT`].
pub const PIN_CARD: &str = "6034567000000017";

/// [`fresh`], selling [`PIN_PRODUCT`] with the fixture's 25 PINs in stock.
pub async fn fresh_selling() -> (tempfile::TempDir, Switch) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path(), free_port()) + PIN_PRODUCT;
    let config = Config::from_toml(&text, "test.toml").expect("config");
    import_samples(&config);
    let batch = root().join("fixtures/pins/card-a-25.csv");
    replenish::pins::import(&config, &batch, "CARD-A-25", "test").expect("PINs");
    (dir, Switch::start(config).await)
}

/// A PIN sale of [`PIN_CARD`] with STAN `stan` at till `TILL0001`.
pub fn pin_sale(stan: u32) -> Message {
    let mut message = request(stan, 2500, PIN_CARD);
    message.set(3, "000000");
    message.set(41, "TILL0001");
    message
}

/// A byte stream a client can speak over: TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A framed client speaking iso87ascii over binary2.
pub struct Client {
    framed: Framed<Box<dyn Stream>, FrameCodec>,
    spec: Spec,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Client::over(stream)
    }

    /// A client over an established stream.
    pub fn over(stream: impl Stream + 'static) -> Client {
        Client {
            framed: Framed::new(Box::new(stream), FrameCodec::new(LengthHeader::Binary2)),
            spec: Spec::resolve("iso87ascii").expect("spec"),
        }
    }

    pub async fn send(&mut self, message: &Message) {
        let body = iso8583::encode_to_bytes(&self.spec, message).expect("encodes");
        self.send_raw(body).await;
    }

    pub async fn send_raw(&mut self, body: Bytes) {
        self.framed
            .send(Frame {
                header: Bytes::new(),
                body,
            })
            .await
            .expect("send");
    }

    /// The next message, or `None` when the switch closed the connection.
    pub async fn receive(&mut self) -> Option<Message> {
        let frame = tokio::time::timeout(Duration::from_secs(10), self.framed.next())
            .await
            .expect("an answer within 10 s")?
            .expect("a frame");
        Some(iso8583::decode(&self.spec, &frame.body).expect("answer decodes"))
    }

    /// Sends without waiting; false when the connection is gone.
    pub async fn try_send(&mut self, message: &Message) -> bool {
        let body = iso8583::encode_to_bytes(&self.spec, message).expect("encodes");
        let frame = Frame {
            header: Bytes::new(),
            body,
        };
        self.framed.send(frame).await.is_ok()
    }

    /// The next answer; `None` when the connection closes or errs.
    pub async fn try_receive(&mut self) -> Option<Message> {
        let next = tokio::time::timeout(Duration::from_secs(10), self.framed.next());
        let frame = next
            .await
            .expect("an answer or a close within 10 s")?
            .ok()?;
        iso8583::decode(&self.spec, &frame.body).ok()
    }

    /// An exchange that may fail: `None` when sending fails or the connection closes
    /// (or errs) before an answer.
    pub async fn try_exchange(&mut self, message: &Message) -> Option<Message> {
        if !self.try_send(message).await {
            return None;
        }
        self.try_receive().await
    }

    pub async fn exchange(&mut self, message: &Message) -> Message {
        self.send(message).await;
        self.receive().await.expect("an answer")
    }
}

/// The reference 0200 with STAN `stan`, amount `amount` (minor units) and account `pan`.
pub fn request(stan: u32, amount: u64, pan: &str) -> Message {
    let text = std::fs::read_to_string(root().join("fixtures/messages/reference-0200.json"))
        .expect("fixture");
    let spec = Spec::resolve("iso87ascii").expect("spec");
    let mut m = iso8583::from_json_str(&spec, &text).expect("fixture valid");
    m.set(11, format!("{stan:06}"));
    m.set(4, format!("{amount:012}"));
    m.set(2, pan.to_owned());
    m
}

/// The first valid sample account (active, carrier-a, MIN assigned).
pub const ACTIVE: &str = "4761739001010010";

/// Sample accounts that approve: active, unexpired, with a MIN and a routed carrier.
pub fn approving_accounts() -> Vec<String> {
    let text =
        std::fs::read_to_string(root().join("fixtures/reference/accounts.csv")).expect("accounts");
    text.lines()
        .skip(1)
        .filter(|l| l.contains(",active,") && !l.contains(",,") && !l.contains("unrouted"))
        .filter(|l| !l.ends_with("2024-01"))
        .filter_map(|l| l.split(',').next().map(str::to_owned))
        .collect()
}

/// Sends `count` requests on each of `connections` connections, `window` in flight
/// each, terminal `LD<tag><connection>`; returns every answer.
pub async fn load(
    addr: SocketAddr,
    connections: usize,
    count: u32,
    window: u32,
    tag: &str,
) -> Vec<Message> {
    let accounts = approving_accounts();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (accounts, terminal) = (accounts.clone(), format!("LD{tag}{c:02}"));
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let (mut sent, mut answers) = (0u32, Vec::new());
                while (answers.len() as u32) < count {
                    while sent < count && sent < answers.len() as u32 + window {
                        sent += 1;
                        let account = &accounts[(sent as usize + c) % accounts.len()];
                        let mut message = request(sent, 1000 + u64::from(sent % 90), account);
                        message.set(41, terminal.clone());
                        assert!(client.try_send(&message).await, "switch closed the link");
                    }
                    answers.push(client.try_receive().await.expect("an answer"));
                }
                answers
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("load task"));
    }
    all
}
