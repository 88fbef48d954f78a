//! Acquirer links: the listener and one session task per connection from a bank,
//! processor or ATM network. A session reads frames, decodes them, answers network
//! management itself, and hands every other message to the decider on a task of its own,
//! so many requests are in flight per connection and responses go out in completion
//! order. A response leaves only after the journal record that decided it is durable.
//! A message that frames but does not decode is answered `30` when its MTI and DE11
//! could be read; otherwise the connection is closed with a log line. Nothing a session
//! does touches another session. Responses are counted per link, MTI and code
//! ([`Responses`]).
//!
//! May import: [`crate::switch`], [`crate::vocab`], [`crate::wire`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

mod responses;

pub use responses::Responses;

use crate::switch::classify::{Kind, NetworkAction, classify};
use crate::switch::decide::{Decider, Link, Outcome, SwitchError};
use crate::switch::respond::{response, with_pin};
use crate::vocab::codes::ResponseCode;
use crate::wire::framing::{Frame, FrameCodec};
use crate::wire::iso8583::{self, DecodeError, Message, Spec};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One acquirer listener's settings.
pub struct Settings {
    /// The link's identity (config name, acquirer id for keys).
    pub link: Link,
    /// The field spec of its messages.
    pub spec: Arc<Spec>,
    /// Its framing.
    pub codec: FrameCodec,
    /// A connection with no frame for this long is closed.
    pub idle_timeout: Duration,
    /// Requests in flight per connection before reading pauses.
    pub max_in_flight: usize,
    /// Mutual TLS, when configured.
    pub tls: Option<TlsAcceptor>,
    /// Where responses are counted.
    pub responses: Responses,
}

/// What every session of a listener shares.
#[derive(Clone)]
pub struct Context {
    /// The listener's settings.
    pub settings: Arc<Settings>,
    /// The decider.
    pub decider: Arc<Decider>,
    /// Cancelled on SIGTERM: stop reading, answer what is in flight, close.
    pub shutdown: CancellationToken,
    /// Cancelled when the switch cannot go on (the journal failed).
    pub fatal: CancellationToken,
    /// Tracks every task so shutdown can wait for in-flight answers.
    pub tracker: TaskTracker,
}

/// Accepts connections until shutdown, one session task each.
pub async fn serve(listener: TcpListener, context: Context) {
    let name = context.settings.link.name.clone();
    loop {
        let accepted = tokio::select! {
            () = context.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let span = info_span!("session", link.name = %name, peer.addr = %peer);
                context
                    .tracker
                    .spawn(connect(stream, peer, context.clone()).instrument(span));
            }
            Err(e) => {
                warn!(link.name = %name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    info!(link.name = %name, "listener closed");
}

async fn connect(stream: tokio::net::TcpStream, peer: SocketAddr, context: Context) {
    let Some(acceptor) = context.settings.tls.clone() else {
        info!("connected");
        return session(stream, context).await;
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            info!("connected (mutual TLS)");
            session(tls, context).await;
        }
        Ok(Err(e)) => warn!("TLS handshake with {peer} refused: {e}"),
        Err(_) => warn!("TLS handshake with {peer} timed out"),
    }
}

/// Reads, dispatches and answers one connection's messages.
async fn session<S>(stream: S, context: Context)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let settings = context.settings.clone();
    let (reader, writer) = tokio::io::split(stream);
    let mut frames = FramedRead::new(reader, settings.codec);
    let (answers, outgoing) = mpsc::channel::<Frame>(settings.max_in_flight.max(1));
    let writing = context
        .tracker
        .spawn(write_frames(FramedWrite::new(writer, settings.codec), outgoing).in_current_span());
    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
    loop {
        let next = tokio::select! {
            () = context.shutdown.cancelled() => break,
            () = context.fatal.cancelled() => break,
            next = tokio::time::timeout(settings.idle_timeout, frames.next()) => next,
        };
        let frame = match next {
            Err(_) => {
                info!("idle for {:?}: closing", settings.idle_timeout);
                break;
            }
            Ok(None) => {
                info!("closed by peer");
                break;
            }
            Ok(Some(Err(e))) => {
                warn!("framing error, closing: {e}");
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if frame.body.is_empty() {
            continue;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        if !dispatch(frame, &context, &answers, permit) {
            break;
        }
    }
    drop(answers);
    let _ = writing.await;
}

/// Decodes one frame and starts its answer; false when the connection must close.
fn dispatch(
    frame: Frame,
    context: &Context,
    answers: &mpsc::Sender<Frame>,
    permit: OwnedSemaphorePermit,
) -> bool {
    let settings = &context.settings;
    let message = match iso8583::decode(&settings.spec, &frame.body) {
        Ok(message) => message,
        Err(e) => match answerable(&e) {
            Some(partial) => {
                warn!(mti = %partial.mti(), stan = partial.text(11).unwrap_or(""), "format error, answering 30: {e}");
                let (context, answers, header) = (context.clone(), answers.clone(), frame.header);
                let reason = e.to_string();
                context.tracker.clone().spawn(
                    async move {
                        let outcome = context.decider.reject(
                            Some(&partial),
                            &settings_link(&context),
                            ResponseCode::FormatError,
                            &reason,
                        );
                        answer(&context, &answers, header, &partial, outcome).await;
                        drop(permit);
                    }
                    .in_current_span(),
                );
                return true;
            }
            None => {
                warn!("undecodable message without MTI and STAN, closing: {e}");
                return false;
            }
        },
    };
    if let Kind::NetworkManagement(action) = classify(&message) {
        network(action, &message);
        let (settings, answers) = (settings.clone(), answers.clone());
        let reply = response(&message, ResponseCode::Approved, None);
        context.tracker.spawn(async move {
            send_response(&settings, &answers, frame.header, reply).await;
            drop(permit);
        });
        return true;
    }
    if classify(&message) == Kind::NoAnswer {
        debug!(mti = %message.mti(), "unsolicited response ignored");
        return true;
    }
    let (context, answers) = (context.clone(), answers.clone());
    context.tracker.clone().spawn(
        async move {
            let outcome = context.decider.decide(&message, &settings_link(&context));
            answer(&context, &answers, frame.header, &message, outcome).await;
            drop(permit);
        }
        .in_current_span(),
    );
    true
}

fn settings_link(context: &Context) -> Link {
    context.settings.link.clone()
}

/// The partial message of a decode error, when it can be answered (MTI with a
/// response type, and DE11).
fn answerable(error: &DecodeError) -> Option<Message> {
    let partial = error.partial()?;
    (partial.mti().response().is_some() && error.stan().is_some()).then(|| partial.clone())
}

fn network(action: NetworkAction, message: &Message) {
    match action {
        NetworkAction::SignOn => info!("sign-on"),
        NetworkAction::SignOff => info!("sign-off"),
        NetworkAction::Echo => debug!("echo"),
        NetworkAction::Other => info!(de70 = message.text(70).unwrap_or(""), "network management"),
    }
}

/// Waits for the decision's record to be durable, then sends the response.
async fn answer(
    context: &Context,
    answers: &mpsc::Sender<Frame>,
    header: Bytes,
    request: &Message,
    outcome: Result<Outcome, SwitchError>,
) {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return stop(context, &e),
    };
    if let Err(e) = context.decider.journal().wait_durable(outcome.seq).await {
        return stop(context, &SwitchError::Journal(e));
    }
    debug!(
        mti = %request.mti(),
        stan = request.text(11).unwrap_or(""),
        rrn = request.text(37).unwrap_or(""),
        code = %outcome.code,
        repeat = outcome.repeat,
        "answered"
    );
    let mut answer = response(request, outcome.code, outcome.confirmation.as_deref());
    if let (Some(voucher), Some(answer)) = (&outcome.voucher, answer.as_mut()) {
        match context.decider.catalog().open(voucher) {
            Ok(pin) => with_pin(answer, &pin, voucher.expiry.as_deref()),
            Err(e) => {
                // Sold and journaled, but the PIN cannot be given: the till is told the
                // sale failed and reverses it, which voids the PIN.
                error!(
                    sku = voucher.sku,
                    serial = voucher.serial,
                    "PIN not answered: {e}"
                );
                answer.set(39, ResponseCode::Malfunction.as_str());
                answer.remove(38);
                answer.remove(62);
            }
        }
    }
    send_response(&context.settings, answers, header, answer).await;
}

/// A decision that cannot be made durable is never answered: the acquirer times out
/// and reverses, which is safe. The switch stops.
fn stop(context: &Context, error: &SwitchError) {
    error!("cannot decide durably, stopping the switch: {error}");
    context.fatal.cancel();
}

async fn send_response(
    settings: &Settings,
    answers: &mpsc::Sender<Frame>,
    header: Bytes,
    message: Option<Message>,
) {
    let Some(message) = message else { return };
    let code = message.text(39).unwrap_or("");
    (settings.responses).count(&settings.link.name, message.mti().as_str(), code);
    match iso8583::encode_to_bytes(&settings.spec, &message) {
        Ok(body) => {
            let frame = Frame {
                header: reply_header(header),
                body,
            };
            if answers.send(frame).await.is_err() {
                warn!("connection closed before the answer could be sent");
            }
        }
        Err(e) => error!(mti = %message.mti(), "response does not encode: {e}"),
    }
}

/// The header of a reply: a TPDU (`60` + destination + source) with its addresses
/// swapped, any other header echoed.
fn reply_header(header: Bytes) -> Bytes {
    match header.as_ref() {
        [0x60, d1, d2, s1, s2] => Bytes::from(vec![0x60, *s1, *s2, *d1, *d2]),
        _ => header,
    }
}

async fn write_frames<W>(mut sink: FramedWrite<W, FrameCodec>, mut outgoing: mpsc::Receiver<Frame>)
where
    W: AsyncWrite + Unpin,
{
    // Everything already queued goes out with one flush (one write system call in the
    // common case) instead of one per answer.
    let mut batch = Vec::with_capacity(64);
    while outgoing.recv_many(&mut batch, 64).await > 0 {
        for frame in batch.drain(..) {
            if let Err(e) = sink.feed(frame).await {
                warn!("write failed: {e}");
                return;
            }
        }
        if let Err(e) = SinkExt::<Frame>::flush(&mut sink).await {
            warn!("write failed: {e}");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpdu_addresses_are_swapped_in_replies() {
        let tpdu = Bytes::from_static(&[0x60, 0x00, 0x01, 0x00, 0x02]);
        assert_eq!(&reply_header(tpdu)[..], &[0x60, 0x00, 0x02, 0x00, 0x01]);
        let other = Bytes::from_static(b"HDR");
        assert_eq!(&reply_header(other)[..], b"HDR");
    }
}
