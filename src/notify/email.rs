//! One email over SMTP with lettre: plain, or upgraded with STARTTLS (rustls with the
//! `ring` provider), with authentication when configured, and an optional text
//! attachment. The password is read from its file at each send and never logged.

use std::time::Duration;

use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use crate::config::EmailConfig;
use crate::durable::record::Notification;

/// How long one SMTP conversation may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Sends `notification` as `config` says; the error says what failed.
pub fn send(config: &EmailConfig, notification: &Notification) -> Result<(), String> {
    let message = message(config, notification)?;
    transport(config)?
        .send(&message)
        .map(drop)
        .map_err(|e| format!("{}: {e}", config.smtp))
}

fn message(config: &EmailConfig, notification: &Notification) -> Result<Message, String> {
    let mailbox = |text: &str| {
        text.parse::<Mailbox>()
            .map_err(|e| format!("{text:?}: {e}"))
    };
    let mut builder = Message::builder()
        .from(mailbox(&config.from)?)
        .subject(notification.subject.clone());
    for to in &notification.to {
        builder = builder.to(mailbox(to)?);
    }
    let text = SinglePart::plain(notification.body.clone());
    let built = match &notification.attachment {
        None => builder.singlepart(text),
        Some(attachment) => {
            let kind = ContentType::parse(&attachment.content_type).map_err(|e| e.to_string())?;
            let file = Attachment::new(attachment.name.clone()).body(attachment.text.clone(), kind);
            builder.multipart(MultiPart::mixed().singlepart(text).singlepart(file))
        }
    };
    built.map_err(|e| e.to_string())
}

fn transport(config: &EmailConfig) -> Result<SmtpTransport, String> {
    let (host, port) = config.server();
    let mut builder = SmtpTransport::builder_dangerous(&host)
        .port(port)
        .timeout(Some(TIMEOUT));
    if config.starttls {
        let mut parameters = TlsParameters::builder(host.clone());
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            let certificate =
                Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", ca.display()))?;
            parameters = parameters.add_root_certificate(certificate);
        }
        let parameters = parameters.build_rustls().map_err(|e| e.to_string())?;
        builder = builder.tls(Tls::Required(parameters));
    }
    if let (Some(user), Some(file)) = (&config.username, &config.password_file) {
        let password =
            std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        builder = builder.credentials(Credentials::new(user.clone(), password.trim().to_owned()));
    }
    Ok(builder.build())
}
