//! One outbound link (to a prepaid engine, or to a subscriber's bank the channels
//! debit): a task that keeps a connection to one address open,
//! signs on with `0800`/`001`, sends echo tests when the link is idle, and reconnects
//! with exponential backoff and jitter. Requests are exchanged like a jPOS MUX: each
//! outgoing message is entered in a pending table under its match key (class, DE11 and
//! DE62 towards an engine, class, DE11 and DE41 towards a bank), and a reply
//! (`0230`, `0430`, `0210`, `0810`) is handed to whoever waits for that key. A reply nobody
//! waits for any more (late, after a timeout) or never did is logged and dropped. A link
//! whose echo goes unanswered within the ack timeout, or whose peer closes, is marked
//! down and every exchange waiting on it fails at once, so the caller can retransmit on
//! the other link.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::advice::{self, ECHO, MatchKey, SIGN_OFF, SIGN_ON};
use super::backoff::Backoff;
use crate::config::BackoffConfig;
use crate::wire::framing::{Frame, FrameCodec, FramingError};
use crate::wire::iso8583::{self, Message, Spec};

/// What a link needs to know.
pub struct LinkSettings {
    /// The peer's name (engine or bank), for logs.
    pub peer: String,
    /// What a reply is matched to its request by.
    pub match_key: fn(&Message) -> MatchKey,
    /// The address.
    pub address: SocketAddr,
    /// Message spec.
    pub spec: Arc<Spec>,
    /// Framing.
    pub codec: FrameCodec,
    /// How long a sign-on, echo or exchange may wait for its reply.
    pub ack_timeout: Duration,
    /// Echo when nothing was received for this long.
    pub echo_interval: Duration,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
    /// TLS towards the peer.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// Why an exchange got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The link is down (or went down while waiting).
    #[error("link down")]
    Down,
    /// No reply within the ack timeout.
    #[error("no reply within the ack timeout")]
    Timeout,
}

/// A request and where its reply goes.
struct Exchange {
    message: Message,
    reply: oneshot::Sender<Message>,
}

/// The handle the forwarder uses; cheap to clone.
#[derive(Clone)]
pub struct LinkHandle {
    settings: Arc<LinkSettings>,
    up: watch::Receiver<bool>,
    requests: mpsc::Sender<Exchange>,
    probe: Arc<Notify>,
}

impl LinkHandle {
    /// The address, for logs and journal records.
    pub fn address(&self) -> SocketAddr {
        self.settings.address
    }

    /// Whether the link is signed on.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// A receiver that changes when the link goes up or down from now on (a clone
    /// of the handle's receiver, which never reads, would report every change since
    /// the link started as new).
    pub fn watch(&self) -> watch::Receiver<bool> {
        let mut up = self.up.clone();
        up.mark_unchanged();
        up
    }

    /// Sends `message` and waits up to the ack timeout for the reply with its match
    /// key.
    pub async fn exchange(&self, message: Message) -> Result<Message, ExchangeError> {
        if !self.is_up() {
            return Err(ExchangeError::Down);
        }
        let (reply, answer) = oneshot::channel();
        let exchange = Exchange { message, reply };
        if self.requests.send(exchange).await.is_err() {
            return Err(ExchangeError::Down);
        }
        match tokio::time::timeout(self.settings.ack_timeout, answer).await {
            Ok(Ok(message)) => Ok(message),
            Ok(Err(_)) => Err(ExchangeError::Down),
            Err(_) => Err(ExchangeError::Timeout),
        }
    }

    /// Asks the link to check itself with an echo now (after an ack timeout).
    pub fn probe(&self) {
        self.probe.notify_one();
    }
}

/// Returns when one of `links` goes up or down, or after a second (to look again). A
/// link whose task has ended (at shutdown) never changes again: its watch must not end
/// the wait at once, or every credit waiting for a link would spin until the shutdown
/// reached it.
pub async fn any_change(links: &[LinkHandle]) {
    let mut watches: Vec<_> = links.iter().map(LinkHandle::watch).collect();
    let changes = futures::future::select_all(watches.iter_mut().map(|w| {
        Box::pin(async move {
            if w.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }));
    let _ = tokio::time::timeout(Duration::from_secs(1), changes).await;
}

/// Starts the link task; it runs until `shutdown`.
pub fn spawn(settings: LinkSettings, shutdown: CancellationToken) -> LinkHandle {
    let settings = Arc::new(settings);
    let (up_tx, up) = watch::channel(false);
    let (requests, incoming) = mpsc::channel(1024);
    let probe = Arc::new(Notify::new());
    let task = Task {
        settings: settings.clone(),
        up: up_tx,
        incoming,
        probe: probe.clone(),
        shutdown,
        stan: Arc::new(AtomicU32::new(seed() % 900_000)),
    };
    tokio::spawn(task.run());
    LinkHandle {
        settings,
        up,
        requests,
        probe,
    }
}

fn seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(1);
    nanos.wrapping_mul(2_654_435_761)
}

/// A byte stream to the peer: TCP or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Reader = FramedRead<tokio::io::ReadHalf<Box<dyn Stream>>, FrameCodec>;
type Writer = FramedWrite<tokio::io::WriteHalf<Box<dyn Stream>>, FrameCodec>;

struct Task {
    settings: Arc<LinkSettings>,
    up: watch::Sender<bool>,
    incoming: mpsc::Receiver<Exchange>,
    probe: Arc<Notify>,
    shutdown: CancellationToken,
    stan: Arc<AtomicU32>,
}

impl Task {
    async fn run(mut self) {
        let seed = u64::from(seed()) ^ u64::from(self.settings.address.port());
        let mut backoff = Backoff::new(self.settings.backoff.clone(), seed);
        while !self.shutdown.is_cancelled() {
            match self.connect().await {
                Ok((reader, writer)) => {
                    let reason = self.session(reader, writer, &mut backoff).await;
                    let _ = self.up.send(false);
                    match reason {
                        Ok(()) => break,
                        Err(reason) => warn!(
                            peer = %self.settings.peer,
                            link = %self.settings.address,
                            "link down: {reason}"
                        ),
                    }
                }
                Err(reason) => debug!(
                    peer = %self.settings.peer,
                    link = %self.settings.address,
                    "connect failed: {reason}"
                ),
            }
            self.refuse_for(backoff.next_delay()).await;
        }
    }

    /// Waits out a backoff delay, failing every request that arrives meanwhile.
    async fn refuse_for(&mut self, delay: Duration) {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep_until(until) => return,
                request = self.incoming.recv() => match request {
                    Some(exchange) => drop(exchange),
                    None => return,
                },
            }
        }
    }

    async fn connect(&self) -> Result<(Reader, Writer), String> {
        let settings = &self.settings;
        let tcp = tokio::time::timeout(settings.ack_timeout, TcpStream::connect(settings.address))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match &settings.tls {
            None => Box::new(tcp),
            Some((connector, name)) => {
                let tls = tokio::time::timeout(
                    settings.ack_timeout,
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| "TLS handshake timed out".to_owned())?
                .map_err(|e| format!("TLS handshake: {e}"))?;
                Box::new(tls)
            }
        };
        let (reader, writer) = tokio::io::split(stream);
        Ok((
            FramedRead::new(reader, settings.codec),
            FramedWrite::new(writer, settings.codec),
        ))
    }

    fn next_stan(&self) -> u32 {
        self.stan.fetch_add(1, Ordering::Relaxed) % 1_000_000
    }

    /// Signs on, then serves exchanges until the connection fails (`Err`) or shutdown.
    async fn session(
        &mut self,
        mut reader: Reader,
        mut writer: Writer,
        backoff: &mut Backoff,
    ) -> Result<(), String> {
        let settings = self.settings.clone();
        let sign_on = advice::network(SIGN_ON, self.next_stan(), chrono::Utc::now());
        let key = (settings.match_key)(&sign_on);
        send(&settings, &mut writer, &sign_on).await?;
        let deadline = Instant::now() + settings.ack_timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, reader.next())
                .await
                .map_err(|_| "sign-on not answered".to_owned())?;
            let reply = read(&settings, frame)?;
            if let Some(reply) = reply.filter(|r| (settings.match_key)(r) == key) {
                if reply.text(39) != Some("00") {
                    return Err(format!("sign-on refused: {:?}", reply.text(39)));
                }
                break;
            }
        }
        info!(peer = %settings.peer, link = %settings.address, "link up (signed on)");
        let _ = self.up.send(true);
        backoff.reset();
        self.serve(reader, writer).await
    }

    async fn serve(&mut self, mut reader: Reader, mut writer: Writer) -> Result<(), String> {
        let settings = self.settings.clone();
        let mut pending: HashMap<MatchKey, oneshot::Sender<Message>> = HashMap::new();
        let mut last_heard = Instant::now();
        let mut echo: Option<(MatchKey, Instant)> = None;
        loop {
            let echo_at = match &echo {
                Some((_, deadline)) => *deadline,
                None => last_heard + settings.echo_interval,
            };
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    let off = advice::network(SIGN_OFF, self.next_stan(), chrono::Utc::now());
                    let _ = send(&settings, &mut writer, &off).await;
                    return Ok(());
                }
                request = self.incoming.recv() => {
                    let Some(first) = request else { return Ok(()) };
                    self.forward(first, &mut pending, &mut writer).await?;
                }
                frame = reader.next() => {
                    last_heard = Instant::now();
                    if let Some(reply) = read(&settings, frame)? {
                        if reply.mti().as_str() == "0800" {
                            // The peer's own echo test or sign-on: answer it.
                            send(&settings, &mut writer, &network_answer(&reply)).await?;
                            continue;
                        }
                        let key = (settings.match_key)(&reply);
                        if echo.as_ref().is_some_and(|(k, _)| *k == key) {
                            echo = None;
                        } else {
                            deliver(&settings, &mut pending, key, reply);
                        }
                    }
                }
                () = self.probe.notified(), if echo.is_none() => {
                    echo = Some(self.send_echo(&mut writer).await?);
                }
                () = tokio::time::sleep_until(echo_at) => {
                    if echo.is_some() {
                        return Err("echo not answered within the ack timeout".into());
                    }
                    echo = Some(self.send_echo(&mut writer).await?);
                }
            }
        }
    }

    /// Enters `first` and every request already queued in the pending table and writes
    /// them with one flush.
    async fn forward(
        &mut self,
        first: Exchange,
        pending: &mut HashMap<MatchKey, oneshot::Sender<Message>>,
        writer: &mut Writer,
    ) -> Result<(), String> {
        if pending.len() > 4096 {
            pending.retain(|_, waiter| !waiter.is_closed());
        }
        let mut next = Some(first);
        let mut count = 0;
        while let Some(exchange) = next.take() {
            let body = iso8583::encode_to_bytes(&self.settings.spec, &exchange.message)
                .map_err(|e| format!("encode: {e}"))?;
            pending.insert((self.settings.match_key)(&exchange.message), exchange.reply);
            let frame = Frame {
                header: Bytes::new(),
                body,
            };
            writer.feed(frame).await.map_err(|e| e.to_string())?;
            count += 1;
            if count < 64 {
                next = self.incoming.try_recv().ok();
            }
        }
        SinkExt::<Frame>::flush(writer)
            .await
            .map_err(|e| e.to_string())
    }

    async fn send_echo(&mut self, writer: &mut Writer) -> Result<(MatchKey, Instant), String> {
        let message = advice::network(ECHO, self.next_stan(), chrono::Utc::now());
        send(&self.settings, writer, &message).await?;
        Ok((
            (self.settings.match_key)(&message),
            Instant::now() + self.settings.ack_timeout,
        ))
    }
}

async fn send(
    settings: &LinkSettings,
    writer: &mut Writer,
    message: &Message,
) -> Result<(), String> {
    let body =
        iso8583::encode_to_bytes(&settings.spec, message).map_err(|e| format!("encode: {e}"))?;
    let frame = Frame {
        header: Bytes::new(),
        body,
    };
    writer.send(frame).await.map_err(|e| e.to_string())
}

/// A frame read from the peer: `Ok(None)` for one that does not decode (logged).
fn read(
    settings: &LinkSettings,
    frame: Option<Result<Frame, FramingError>>,
) -> Result<Option<Message>, String> {
    let frame = match frame {
        None => return Err("closed by the peer".into()),
        Some(Err(e)) => return Err(e.to_string()),
        Some(Ok(frame)) => frame,
    };
    match iso8583::decode(&settings.spec, &frame.body) {
        Ok(message) => Ok(Some(message)),
        Err(e) => {
            warn!(peer = %settings.peer, link = %settings.address, "undecodable reply: {e}");
            Ok(None)
        }
    }
}

/// The `0810` to a peer's `0800`: DE7, DE11 and DE70 echoed, DE39 `00`.
fn network_answer(request: &Message) -> Message {
    let mut answer = Message::new(request.mti().response().unwrap_or(request.mti()));
    for number in [7u8, 11, 70] {
        if let Some(value) = request.get_bytes(number) {
            answer.set(number, value);
        }
    }
    answer.set(39, "00");
    answer
}

fn deliver(
    settings: &LinkSettings,
    pending: &mut HashMap<MatchKey, oneshot::Sender<Message>>,
    key: MatchKey,
    reply: Message,
) {
    let mti = reply.mti();
    let reply_code = reply.text(39).map(str::to_owned);
    match pending.remove(&key) {
        Some(waiter) => {
            if waiter.send(reply).is_err() {
                warn!(peer = %settings.peer, link = %settings.address, code = reply_code.as_deref().unwrap_or(""),
                      "late reply {} for DE11 {} ({}): its exchange had timed out; nothing changes", mti.as_str(), key.1, key.2);
            }
        }
        None => info!(peer = %settings.peer, link = %settings.address,
                      "unmatched reply {} for DE11 {} ({})", mti.as_str(), key.1, key.2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link_to(address: SocketAddr, shutdown: &CancellationToken) -> LinkHandle {
        let settings = LinkSettings {
            peer: "test".into(),
            match_key: advice::match_key,
            address,
            spec: Arc::new(Spec::resolve("iso87ascii").expect("built-in spec")),
            codec: FrameCodec::new(crate::wire::framing::LengthHeader::Binary2),
            ack_timeout: Duration::from_millis(500),
            echo_interval: Duration::from_secs(30),
            backoff: BackoffConfig::default(),
            tls: None,
        };
        spawn(settings, shutdown.clone())
    }

    /// An engine that accepts one connection, answers its sign-on, then hangs up and
    /// listens no more: the link goes up, then down for good.
    async fn engine_that_hangs_up() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let spec = Spec::resolve("iso87ascii").expect("built-in spec");
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            drop(listener);
            let codec = FrameCodec::new(crate::wire::framing::LengthHeader::Binary2);
            let mut framed = tokio_util::codec::Framed::new(stream, codec);
            let frame = framed.next().await.expect("a frame").expect("framed");
            let sign_on = iso8583::decode(&spec, &frame.body).expect("sign-on");
            let body = iso8583::encode_to_bytes(&spec, &network_answer(&sign_on)).expect("0810");
            let answer = Frame {
                header: Bytes::new(),
                body,
            };
            framed.send(answer).await.expect("send");
        });
        address
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what} never happened");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_on_links_whose_tasks_ended_takes_the_full_second() {
        let shutdown = CancellationToken::new();
        // The discard port: nothing listens, the links never come up.
        let nowhere = SocketAddr::from(([127, 0, 0, 1], 9));
        let links = [link_to(nowhere, &shutdown), link_to(nowhere, &shutdown)];
        shutdown.cancel();
        for link in &links {
            let mut watch = link.watch();
            assert!(watch.changed().await.is_err(), "the link task has ended");
        }
        let started = Instant::now();
        any_change(&links).await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_link_that_was_up_once_is_not_seen_changing_again_and_again() {
        let shutdown = CancellationToken::new();
        let links = [link_to(engine_that_hangs_up().await, &shutdown)];
        let watch = links[0].watch();
        until("sign-on", || watch.has_changed().unwrap_or(false)).await;
        until("hang-up", || !links[0].is_up()).await;
        // Down for good (nothing listens any more): a wait for a change lasts its
        // whole second instead of ending at once on the old up and down.
        let started = Instant::now();
        any_change(&links).await;
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "returned after {:?}",
            started.elapsed()
        );
        shutdown.cancel();
    }
}
