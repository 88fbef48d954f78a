//! A small SMSC for the demo (SMPP 3.4 over rusmpp's framing): it accepts transmitter
//! binds with one system id and password, answers `submit_sm` with a message id and
//! keeps each SMS (the MIN and the text), answers `enquire_link` and `unbind`. The tests
//! use a real, independent SMSC (the npm `smpp` package) instead; this one lets `demo`
//! show the texts the subscribers got without Node.js.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindTransmitterResp, SubmitSmResp};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// One SMS the SMSC took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// `destination_addr`.
    pub to: String,
    /// The text.
    pub text: String,
}

/// A running SMSC: where it listens and what it received.
pub struct SmscSim {
    /// Its address.
    pub address: SocketAddr,
    /// Every SMS taken, in order.
    pub received: Arc<Mutex<Vec<Received>>>,
}

/// Starts the SMSC on `listen` for `system_id` / `password`; it runs until `stop`.
pub async fn start(
    listen: SocketAddr,
    system_id: &str,
    password: &str,
    stop: CancellationToken,
) -> std::io::Result<SmscSim> {
    let listener = TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let received = Arc::new(Mutex::new(Vec::new()));
    let credentials = Arc::new((system_id.to_owned(), password.to_owned()));
    let kept = received.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            if let Ok((stream, _)) = accepted {
                tokio::spawn(session(
                    stream,
                    credentials.clone(),
                    kept.clone(),
                    stop.clone(),
                ));
            }
        }
    });
    Ok(SmscSim { address, received })
}

async fn session(
    stream: TcpStream,
    credentials: Arc<(String, String)>,
    received: Arc<Mutex<Vec<Received>>>,
    stop: CancellationToken,
) {
    let mut framed = Framed::new(stream, CommandCodec::new());
    let mut bound = false;
    loop {
        let command = tokio::select! {
            () = stop.cancelled() => return,
            command = framed.next() => match command {
                Some(Ok(command)) => command,
                _ => return,
            },
        };
        let sequence = command.sequence_number();
        let answer = |status, pdu: Pdu| Command::new(status, sequence, pdu);
        let reply = match command.pdu() {
            Some(Pdu::BindTransmitter(bind)) => {
                bound = bind.system_id.as_str() == credentials.0
                    && bind.password.as_str() == credentials.1;
                let status = match bound {
                    true => CommandStatus::EsmeRok,
                    false => CommandStatus::EsmeRbindfail,
                };
                let id = COctetString::from_slice(b"demo-smsc").unwrap_or_default();
                answer(
                    status,
                    Pdu::BindTransmitterResp(BindTransmitterResp::new(id, None)),
                )
            }
            Some(Pdu::SubmitSm(submit)) if bound => {
                let sms = Received {
                    to: submit.destination_addr.as_str().to_owned(),
                    text: String::from_utf8_lossy(submit.short_message().as_ref()).into_owned(),
                };
                let mut taken = received.lock().unwrap_or_else(|p| p.into_inner());
                taken.push(sms);
                let id = format!("{}", taken.len());
                let id = COctetString::from_slice(id.as_bytes()).unwrap_or_default();
                answer(
                    CommandStatus::EsmeRok,
                    Pdu::SubmitSmResp(SubmitSmResp::builder().message_id(id).build()),
                )
            }
            Some(Pdu::SubmitSm(_)) => answer(CommandStatus::EsmeRinvbndsts, Pdu::GenericNack),
            Some(Pdu::EnquireLink) => answer(CommandStatus::EsmeRok, Pdu::EnquireLinkResp),
            Some(Pdu::Unbind) => {
                let _ = framed
                    .send(answer(CommandStatus::EsmeRok, Pdu::UnbindResp))
                    .await;
                return;
            }
            _ => continue,
        };
        if framed.send(reply).await.is_err() {
            return;
        }
    }
}
