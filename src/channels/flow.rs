//! One self-service replenishment from request to end (BACKOFFICE.md §6, the seed's
//! figure 4): the idempotency key looked up, the subscriber and their enrolment found,
//! the PIN checked (one request per account at a time), the rules of step 303 asked,
//! the request journaled as `pending`, the subscriber's bank debited, and only after its
//! `00` the credit decided by the decider (which puts it in the engine's outbox: exactly
//! once). No answer from the bank in time: declined `bank_unavailable` and the debit
//! reversed (`0420`, `0421`s until the bank answers). Every step is a journal record of
//! the whole request before anything depends on it, so a restart finishes what was open:
//! a pending request whose credit was decided is completed, any other is declined and
//! reversed. The SMS (receipt or failure) goes through the notification outbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::bank::{self, Bank};
use super::pin::{self, Verdict};
use super::request::{Asked, Subscriber};
use crate::config::Config;
use crate::durable::record::{ChannelRequest, ChannelStatus, DebitReversal, Enrolment, Record};
use crate::durable::vault::Vault;
use crate::engine::advice::transmission_time;
use crate::engine::link::LinkHandle;
use crate::notify::sms;
use crate::operate::self_service::ChannelTally;
use crate::switch::decide::{Decider, Link};
use crate::vocab::codes::ResponseCode;
use crate::vocab::key::TransactionKey;
use crate::wire::iso8583::Message;

/// How much longer than the slowest bank's `response_timeout` `POST` waits for the end
/// before it answers `202 pending`: a bank that does not answer in time is a `402`
/// `bank_unavailable` at once; a `202` is a request that waited its turn behind another
/// of the same account, or a journal that was slow.
pub const GRACE: Duration = Duration::from_secs(1);

/// The acquirer link name the channels' credits are decided under.
pub const LINK: &str = "channels";

/// What a request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Journaled: pending, completed or declined.
    Request(Box<ChannelRequest>),
    /// Refused before anything happened (`422 {"error", "reason"}`): nothing journaled.
    Refused {
        /// `key_reused`, `unknown_subscriber`, `not_enrolled`, ...
        error: &'static str,
        /// Why, in words.
        reason: String,
    },
}

impl Reply {
    fn refused(error: &'static str, reason: impl Into<String>) -> Reply {
        Reply::Refused {
            error,
            reason: reason.into(),
        }
    }

    /// What the metrics count it as: `completed`, `declined` or `refused`, and why.
    fn outcome(&self) -> (&'static str, &str) {
        match self {
            Reply::Refused { error, .. } => ("refused", error),
            Reply::Request(request) => match request.status {
                ChannelStatus::Completed => ("completed", ""),
                ChannelStatus::Declined => ("declined", request.reason.as_deref().unwrap_or("")),
                ChannelStatus::Pending => ("pending", ""),
            },
        }
    }

    /// Whether nothing more will change its answer.
    pub fn is_final(&self) -> bool {
        match self {
            Reply::Request(request) => request.status != ChannelStatus::Pending,
            Reply::Refused { .. } => true,
        }
    }
}

/// Why the flow could not go on: the journal or the indexes failed (answered `500`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FlowError(String);

fn failed(e: impl std::fmt::Display) -> FlowError {
    FlowError(e.to_string())
}

/// The channels: shared by the API's handlers (cheap to clone).
#[derive(Clone)]
pub struct Channels {
    inner: Arc<Inner>,
}

struct Inner {
    decider: Arc<Decider>,
    config: Arc<Config>,
    vault: Vault,
    banks: HashMap<String, Arc<Bank>>,
    requests: Mutex<HashMap<String, Tracked>>,
    accounts: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    stan: AtomicU64,
    /// What the metrics count of the answers.
    tally: ChannelTally,
    stop: CancellationToken,
    /// How long `POST` waits before `202`.
    wait: Duration,
}

/// A request this run has seen: its fingerprint and where it stands.
struct Tracked {
    fingerprint: String,
    reply: watch::Receiver<Option<Reply>>,
    /// The journal position of its final record (it may be forgotten once indexed).
    indexed_at: Option<u64>,
}

/// Requests kept in memory before the ones already indexed are dropped.
const KEEP: usize = 4096;

impl Channels {
    /// Starts the debit banks' links and finishes what a previous run left open; runs
    /// until `stop`.
    pub fn start(
        decider: Arc<Decider>,
        config: Arc<Config>,
        tally: ChannelTally,
        stop: CancellationToken,
    ) -> Result<Channels, String> {
        let vault = Vault::open_or_create(&config.channel_key_file())
            .map_err(|e| format!("channels: {e}"))?;
        let mut banks = HashMap::new();
        for bank in &config.debit_bank {
            banks.insert(bank.name.clone(), Bank::start(bank, &stop)?);
        }
        let seed = decider.journal().last_seq() + 1;
        let slowest = config.debit_bank.iter().map(|b| b.response_timeout).max();
        let wait = slowest.unwrap_or_default() + GRACE;
        let channels = Channels {
            inner: Arc::new(Inner {
                decider,
                config,
                vault,
                banks,
                requests: Mutex::new(HashMap::new()),
                accounts: Mutex::new(HashMap::new()),
                stan: AtomicU64::new(seed),
                tally,
                stop,
                wait,
            }),
        };
        channels.warn_unless_located();
        Ok(channels)
    }

    /// The debit banks' links by bank, primary first (for the metrics).
    pub fn bank_links(&self) -> Vec<(String, Vec<LinkHandle>)> {
        let mut banks: Vec<_> = (self.inner.banks.values())
            .map(|bank| (bank.name.clone(), bank.links().to_vec()))
            .collect();
        banks.sort_by(|a, b| a.0.cmp(&b.0));
        banks
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The decider (for the API's client check).
    pub fn decider(&self) -> &Decider {
        &self.inner.decider
    }

    fn warn_unless_located(&self) {
        let store = self.inner.decider.store();
        if !matches!(store.location(bank::LOCATION), Ok(Some(l)) if l.authorized) {
            warn!(
                "channels: location {} is not an authorized location: every channel request will be declined location_not_authorized until it is imported",
                bank::LOCATION
            );
        }
    }

    /// Finishes the requests a previous run left open (blocking: call at start, off the
    /// runtime's threads): a pending one whose credit was decided is completed, any
    /// other declined `bank_unavailable` with its debit reversed; reversals still due are
    /// sent again.
    pub fn recover(&self) -> Result<usize, FlowError> {
        let decider = &self.inner.decider;
        decider.wait_indexed(decider.journal().last_seq());
        let open = decider.store().open_channel_requests().map_err(failed)?;
        for request in &open {
            let mut request = request.clone();
            if request.status == ChannelStatus::Pending {
                request = self.settle_lost(request)?;
            }
            if request.reversal == DebitReversal::Due {
                // The last run may have sent the 0420 already: a repeat from the start.
                self.spawn_reversal(request, true);
            }
        }
        Ok(open.len())
    }

    /// A request left pending by a crash: completed when its credit was decided (the
    /// bank had said `00`), else declined and reversed.
    fn settle_lost(&self, mut request: ChannelRequest) -> Result<ChannelRequest, FlowError> {
        let decided = match self.inner.banks.get(&request.bank) {
            Some(bank) => {
                let message = bank::credit_request(&request, &bank.acquirer_id);
                let key = TransactionKey::of(&message, &bank.acquirer_id);
                self.inner
                    .decider
                    .store()
                    .transaction(&key)
                    .map_err(failed)?
            }
            None => None,
        };
        let mut records = Vec::new();
        match decided.filter(|d| d.code == ResponseCode::Approved) {
            Some(decision) => {
                request.status = ChannelStatus::Completed;
                request.confirmation = decision.confirmation;
                records.extend(self.receipt(&request));
            }
            None => {
                request.status = ChannelStatus::Declined;
                request.reason = Some("bank_unavailable".into());
                request.reversal = DebitReversal::Due;
                records.extend(self.failure(&request));
            }
        }
        info!(
            request = %request.id,
            "channels: request left pending at a restart: {:?}",
            request.status
        );
        records.insert(0, Record::ChannelRequested(Box::new(request.clone())));
        crate::durable::datadir::append(self.inner.decider.journal(), &records).map_err(failed)?;
        Ok(request)
    }

    /// Takes a request under `client`'s idempotency `key` and waits for its end at most
    /// the slowest bank's `response_timeout` and [`GRACE`]; returns where it stands and whether it is a replay of an earlier
    /// request with the same key.
    pub async fn submit(
        &self,
        client: &str,
        key: &str,
        asked: Asked,
    ) -> Result<(Reply, bool), FlowError> {
        let id = format!("{client}/{key}");
        let fingerprint = self.fingerprint(&asked);
        let (mut reply, replayed) = match self.find(&id, &fingerprint)? {
            Found::Other => {
                let reason = "this Idempotency-Key was used with another request";
                return Ok((Reply::refused("key_reused", reason), true));
            }
            Found::Done(request) => return Ok((Reply::Request(request), true)),
            Found::Running(reply) => (reply, true),
            Found::New(sender, reply) => {
                let flow = self.clone();
                let (id, key) = (id.clone(), key.to_owned());
                tokio::spawn(async move { flow.run(id, key, fingerprint, asked, sender).await });
                (reply, false)
            }
        };
        let _ = tokio::time::timeout(
            self.inner.wait,
            reply.wait_for(|r| r.as_ref().is_some_and(Reply::is_final)),
        )
        .await;
        let now = reply.borrow().clone();
        let now = now.unwrap_or_else(|| Reply::Request(Box::new(self.placeholder(&id))));
        Ok((now, replayed))
    }

    /// A request still before its first record (waiting for its account's turn).
    fn placeholder(&self, id: &str) -> ChannelRequest {
        ChannelRequest {
            id: id.to_owned(),
            ..ChannelRequest::default()
        }
    }

    /// Where request `id` (`CLIENT/KEY`) stands, if it was ever taken.
    pub fn status(&self, id: &str) -> Result<Option<Reply>, FlowError> {
        if let Some(tracked) = self.tracked().get(id) {
            let reply = tracked.reply.borrow().clone();
            // Taken, still before its first record (waiting for its account's turn).
            let waiting = || Reply::Request(Box::new(self.placeholder(id)));
            return Ok(Some(reply.unwrap_or_else(waiting)));
        }
        let found = self
            .inner
            .decider
            .store()
            .channel_request(id)
            .map_err(failed)?;
        Ok(found.map(|r| Reply::Request(Box::new(r))))
    }

    /// HMAC-SHA256 under the channel key of the request as read: the same key with
    /// another body is refused, and no PIN can be found from the print.
    fn fingerprint(&self, asked: &Asked) -> String {
        let who = match &asked.subscriber {
            Subscriber::Min(min) => format!("min:{min}"),
            Subscriber::Account(account) => format!("account:{account}"),
        };
        let canonical = format!(
            "{}|{who}|{}|{}",
            asked.channel.as_str(),
            asked.amount,
            asked.pin
        );
        self.inner.vault.digest(&canonical)
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        (self.inner.requests.lock()).unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Looks `id` up in this run's requests, then in the index; enters it when new.
    fn find(&self, id: &str, fingerprint: &str) -> Result<Found, FlowError> {
        let mut tracked = self.tracked();
        if let Some(seen) = tracked.get(id) {
            return Ok(match seen.fingerprint == fingerprint {
                true => Found::Running(seen.reply.clone()),
                false => Found::Other,
            });
        }
        let stored = self
            .inner
            .decider
            .store()
            .channel_request(id)
            .map_err(failed)?;
        if let Some(stored) = stored {
            return Ok(match stored.fingerprint == fingerprint {
                true => Found::Done(Box::new(stored)),
                false => Found::Other,
            });
        }
        if tracked.len() >= KEEP {
            let indexed = self.inner.decider.indexed();
            tracked.retain(|_, t| t.indexed_at.is_none_or(|seq| seq > indexed));
        }
        let (sender, reply) = watch::channel(None);
        let entry = Tracked {
            fingerprint: fingerprint.to_owned(),
            reply: reply.clone(),
            indexed_at: None,
        };
        tracked.insert(id.to_owned(), entry);
        Ok(Found::New(sender, reply))
    }

    /// Runs one request to its end, publishing each step on `sender`.
    async fn run(
        self,
        id: String,
        key: String,
        fingerprint: String,
        asked: Asked,
        sender: watch::Sender<Option<Reply>>,
    ) {
        let (started, channel) = (Instant::now(), asked.channel.as_str());
        let outcome = self.steps(&id, &key, fingerprint, asked, &sender).await;
        let reply = match outcome {
            Ok((reply, seq)) => {
                if let Some(tracked) = self.tracked().get_mut(&id) {
                    tracked.indexed_at = Some(seq);
                }
                reply
            }
            Err(e) => {
                tracing::error!(request = %id, "channels: {e}");
                self.tracked().remove(&id);
                Reply::refused("internal", "the switch could not take the request")
            }
        };
        if matches!(reply, Reply::Refused { .. }) {
            // Nothing journaled: the same request again is read afresh.
            self.tracked().remove(&id);
        }
        let (outcome, reason) = reply.outcome();
        (self.inner.tally).answered(channel, outcome, reason, started.elapsed());
        sender.send_replace(Some(reply));
    }

    /// The steps; returns the end and the journal position of its record (0 when
    /// nothing was journaled).
    async fn steps(
        &self,
        id: &str,
        _key: &str,
        fingerprint: String,
        asked: Asked,
        sender: &watch::Sender<Option<Reply>>,
    ) -> Result<(Reply, u64), FlowError> {
        let found = self
            .blocking({
                let subscriber = asked.subscriber.clone();
                move |flow| flow.subscriber(&subscriber)
            })
            .await?;
        let (account, min) = match found {
            Ok(found) => found,
            Err(refusal) => return Ok((refusal, 0)),
        };
        let turn = self.account_turn(&account);
        let _turn = turn.lock().await;
        let enrolment = self
            .blocking({
                let account = account.clone();
                move |flow| {
                    flow.inner
                        .decider
                        .store()
                        .enrolment(&account)
                        .map_err(failed)
                }
            })
            .await?;
        let Some(enrolment) = enrolment else {
            let reason = "the subscriber is not enrolled for the self-service channels";
            return Ok((Reply::refused("not_enrolled", reason), 0));
        };
        let mut request = self.new_request(id, fingerprint, &asked, &account, &min, &enrolment);
        let (verdict, counted) = self
            .blocking({
                let (enrolment, pin) = (enrolment.clone(), asked.pin.clone());
                let channel = asked.channel.as_str();
                move |_| Ok(pin::check(&enrolment, &pin, channel))
            })
            .await?;
        let records: Vec<Record> = counted.into_iter().collect();
        if let Some(refused) = refused_pin(verdict) {
            request.status = ChannelStatus::Declined;
            (request.reason, request.attempts_left) = refused;
            return self.end(request, records).await;
        }
        self.debit_and_credit(request, &enrolment, records, sender)
            .await
    }

    /// After the right PIN: the rules, the pending record, the debit, the credit.
    async fn debit_and_credit(
        &self,
        mut request: ChannelRequest,
        enrolment: &Enrolment,
        mut records: Vec<Record>,
        sender: &watch::Sender<Option<Reply>>,
    ) -> Result<(Reply, u64), FlowError> {
        let Some(bank) = self.inner.banks.get(&enrolment.debit_bank).cloned() else {
            return self.decline(request, "bank_not_configured", records).await;
        };
        let debit_account = match self
            .inner
            .vault
            .open(&request.account, &enrolment.debit_account)
        {
            Ok(account) => account,
            Err(e) => {
                warn!(request = %request.id, "channels: the debit account does not open: {e}");
                return self.decline(request, "enrolment_unreadable", records).await;
            }
        };
        let credit = bank::credit_request(&request, &bank.acquirer_id);
        let decline = self
            .blocking(move |flow| flow.inner.decider.precheck(&credit).map_err(failed))
            .await?;
        if let Some(decline) = decline {
            return self
                .decline(request, &decline_name(&decline), records)
                .await;
        }
        records.push(Record::ChannelRequested(Box::new(request.clone())));
        self.journal(records).await?;
        sender.send_replace(Some(Reply::Request(Box::new(request.clone()))));
        let answer = bank
            .debit(bank::debit(&request, &debit_account, &bank.acquirer_id))
            .await;
        match answer {
            Ok(reply) if reply.text(39) == Some("00") => self.credit(request, &bank).await,
            Ok(reply) => {
                let code = reply.text(39).unwrap_or("").to_owned();
                request.bank_code = Some(code.clone());
                self.decline(request, bank_reason(&code), Vec::new()).await
            }
            Err(bank::Unanswered) => {
                warn!(request = %request.id, bank = %bank.name, "channels: no answer to the debit in time: reversing it");
                request.reversal = DebitReversal::Due;
                self.decline(request, "bank_unavailable", Vec::new()).await
            }
        }
    }

    /// After the bank's `00`: the credit decided (into the engine's outbox), then the
    /// request completed. A credit the rules now refuse (the day's limit reached since
    /// the check) is declined and its debit reversed.
    async fn credit(
        &self,
        mut request: ChannelRequest,
        bank: &Bank,
    ) -> Result<(Reply, u64), FlowError> {
        request.bank_code = Some("00".into());
        let message = bank::credit_request(&request, &bank.acquirer_id);
        let link = Link {
            name: LINK.into(),
            acquirer_id: bank.acquirer_id.clone(),
        };
        let outcome = self
            .blocking(move |flow| flow.decide(&message, &link))
            .await?;
        match outcome {
            Ok(confirmation) => {
                request.status = ChannelStatus::Completed;
                request.confirmation = Some(confirmation);
                let records = self.receipt(&request).into_iter().collect();
                self.end(request, records).await
            }
            Err(reason) => {
                warn!(request = %request.id, "channels: the bank debited but the credit was declined ({reason}): reversing the debit");
                request.reversal = DebitReversal::Due;
                self.decline(request, &reason, Vec::new()).await
            }
        }
    }

    /// Decides the credit and waits until it is durable: its confirmation number, or
    /// why it was declined.
    fn decide(&self, message: &Message, link: &Link) -> Result<Result<String, String>, FlowError> {
        let decider = &self.inner.decider;
        let outcome = decider.decide(message, link).map_err(failed)?;
        decider
            .journal()
            .wait_durable_blocking(outcome.seq)
            .map_err(failed)?;
        match (outcome.code, outcome.confirmation) {
            (ResponseCode::Approved, Some(confirmation)) => Ok(Ok(confirmation)),
            (code, _) => {
                let why = decider.precheck(message).map_err(failed)?;
                Ok(Err(why.map_or_else(
                    || format!("declined_{}", code.as_str()),
                    |d| decline_name(&d),
                )))
            }
        }
    }

    /// Declines `request` for `reason` with the failure SMS.
    async fn decline(
        &self,
        mut request: ChannelRequest,
        reason: &str,
        mut records: Vec<Record>,
    ) -> Result<(Reply, u64), FlowError> {
        request.status = ChannelStatus::Declined;
        request.reason = Some(reason.to_owned());
        records.extend(self.failure(&request));
        self.end(request, records).await
    }

    /// Journals the request's end (after `records`), starts its reversal when one is due.
    async fn end(
        &self,
        request: ChannelRequest,
        mut records: Vec<Record>,
    ) -> Result<(Reply, u64), FlowError> {
        records.push(Record::ChannelRequested(Box::new(request.clone())));
        let seq = self.journal(records).await?;
        info!(
            request = %request.id,
            channel = %request.channel,
            status = ?request.status,
            reason = request.reason.as_deref().unwrap_or(""),
            "channels: request answered"
        );
        if request.reversal == DebitReversal::Due {
            self.spawn_reversal(request.clone(), false);
        }
        Ok((Reply::Request(Box::new(request)), seq))
    }

    /// Sends the debit's reversal until the bank answers, then journals it acknowledged:
    /// a `0420` first, or a `0421` when `resumed` after a restart (what the last run sent
    /// is not known).
    fn spawn_reversal(&self, request: ChannelRequest, resumed: bool) {
        let Some(bank) = self.inner.banks.get(&request.bank).cloned() else {
            warn!(request = %request.id, bank = %request.bank, "channels: a reversal is due to a bank no longer configured");
            return;
        };
        let flow = self.clone();
        tokio::spawn(async move {
            let account = flow.debit_account(&request).await;
            let first = bank::reversal(&request, account.as_deref(), &bank.acquirer_id, resumed);
            let again = || bank::reversal(&request, account.as_deref(), &bank.acquirer_id, true);
            let Some(code) = bank.reverse(first, again, &flow.inner.stop).await else {
                return;
            };
            info!(request = %request.id, bank = %bank.name, code = %code, "channels: debit reversal acknowledged");
            let mut acked = request.clone();
            acked.reversal = DebitReversal::Acked;
            if let Err(e) = flow
                .journal(vec![Record::ChannelRequested(Box::new(acked))])
                .await
            {
                tracing::error!(request = %request.id, "channels: {e}");
            }
        });
    }

    /// The debit account of `request`'s enrolment, for the reversal's DE2 (none when it
    /// no longer opens: DE90 names the debit all the same).
    async fn debit_account(&self, request: &ChannelRequest) -> Option<String> {
        let account = request.account.clone();
        let enrolment = self
            .blocking(move |flow| {
                flow.inner
                    .decider
                    .store()
                    .enrolment(&account)
                    .map_err(failed)
            })
            .await
            .ok()
            .flatten()?;
        self.inner
            .vault
            .open(&request.account, &enrolment.debit_account)
            .ok()
    }

    /// The prepaid account and MIN of `subscriber`, or the refusal.
    fn subscriber(
        &self,
        subscriber: &Subscriber,
    ) -> Result<Result<(String, String), Reply>, FlowError> {
        let store = self.inner.decider.store();
        let account = match subscriber {
            Subscriber::Min(min) => store.account_of_min(min).map_err(failed)?,
            Subscriber::Account(account) => Some(account.clone()),
        };
        let found = match account {
            Some(account) => store.account(&account).map_err(failed)?,
            None => None,
        };
        Ok(match found.filter(|a| !a.min.is_empty()) {
            Some(account) => Ok((account.number.clone(), account.min)),
            None => Err(Reply::refused(
                "unknown_subscriber",
                "no active prepaid account has this MIN or number",
            )),
        })
    }

    fn account_turn(&self, account: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns =
            (self.inner.accounts.lock()).unwrap_or_else(std::sync::PoisonError::into_inner);
        if turns.len() >= KEEP {
            turns.retain(|_, turn| Arc::strong_count(turn) > 1);
        }
        turns.entry(account.to_owned()).or_default().clone()
    }

    fn new_request(
        &self,
        id: &str,
        fingerprint: String,
        asked: &Asked,
        account: &str,
        min: &str,
        enrolment: &Enrolment,
    ) -> ChannelRequest {
        let number = self.inner.stan.fetch_add(1, Ordering::Relaxed);
        let now = chrono::Utc::now();
        let currency = self
            .inner
            .decider
            .rules()
            .currencies
            .first()
            .cloned()
            .unwrap_or_default();
        ChannelRequest {
            id: id.to_owned(),
            fingerprint,
            channel: asked.channel.as_str().to_owned(),
            account: account.to_owned(),
            min: min.to_owned(),
            amount: asked.amount,
            currency,
            bank: enrolment.debit_bank.clone(),
            debit_masked: enrolment.debit_masked.clone(),
            stan: format!("{:06}", number % 1_000_000),
            rrn: format!("{:012}", number % 1_000_000_000_000),
            terminal: terminal(asked.channel.as_str()).to_owned(),
            transmitted: transmission_time(now),
            at_ms: now.timestamp_millis(),
            ..ChannelRequest::default()
        }
    }

    /// The receipt SMS (seed step 407), when SMS is configured.
    fn receipt(&self, request: &ChannelRequest) -> Option<Record> {
        let confirmation = request.confirmation.as_deref().unwrap_or("");
        self.sms(request, "receipt", |identity| {
            sms::receipt(
                identity,
                &request.min,
                confirmation,
                request.amount,
                &request.currency,
            )
        })
    }

    /// The failure SMS (seed step 406), when SMS is configured; none for a wrong PIN
    /// (whoever typed it may not be the subscriber).
    fn failure(&self, request: &ChannelRequest) -> Option<Record> {
        let reason = request.reason.as_deref().unwrap_or("declined");
        if matches!(reason, "wrong_pin" | "locked") {
            return None;
        }
        self.sms(request, "failure", |identity| {
            sms::failure(
                identity,
                &request.min,
                request.amount,
                &request.currency,
                reason,
            )
        })
    }

    /// The SMS `make` writes, queued in the notification outbox (its identity: the
    /// request and `kind`, so a restart queues it once).
    fn sms(
        &self,
        request: &ChannelRequest,
        kind: &str,
        make: impl FnOnce(&str) -> Result<crate::durable::record::Notification, String>,
    ) -> Option<Record> {
        self.inner.config.notify.sms.as_ref()?;
        match make(&format!("channel/{}/{kind}", request.id)) {
            Ok(notification) => Some(Record::NotificationQueued(Box::new(notification))),
            Err(e) => {
                warn!(request = %request.id, "channels: no SMS {kind}: {e}");
                None
            }
        }
    }

    /// Journals `records` and waits until they are durable; the last one's position.
    async fn journal(&self, records: Vec<Record>) -> Result<u64, FlowError> {
        let journal = self.inner.decider.journal();
        let bodies: Vec<Vec<u8>> = records.iter().map(Record::to_bytes).collect();
        let slices: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let range = journal.append_all(&slices).map_err(failed)?;
        let seq = *range.end();
        journal.wait_durable(seq).await.map_err(failed)?;
        if records.iter().any(|r| matches!(r, Record::Enrolled(_))) {
            // The next request of the account (waiting for its turn) reads the PIN count
            // from the index.
            self.blocking(move |flow| {
                flow.inner.decider.wait_indexed(seq);
                Ok(())
            })
            .await?;
        }
        Ok(seq)
    }

    /// Runs `work` on a blocking thread (index reads, argon2, the decider's lock).
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Channels) -> Result<T, FlowError> + Send + 'static,
    ) -> Result<T, FlowError> {
        let flow = self.clone();
        tokio::task::spawn_blocking(move || work(&flow))
            .await
            .map_err(failed)?
    }
}

enum Found {
    /// The key was used with another request.
    Other,
    /// An earlier run's request, from the index.
    Done(Box<ChannelRequest>),
    /// This run's request.
    Running(watch::Receiver<Option<Reply>>),
    /// New: the flow publishes on the sender.
    New(watch::Sender<Option<Reply>>, watch::Receiver<Option<Reply>>),
}

/// DE41 of a channel's debits.
pub fn terminal(channel: &str) -> &'static str {
    match channel {
        "web" => "WEB00001",
        "wireless" => "WLS00001",
        _ => "IVR00001",
    }
}

/// The reason and tries left of a PIN that does not let the request on.
fn refused_pin(verdict: Verdict) -> Option<(Option<String>, Option<u32>)> {
    match verdict {
        Verdict::Right => None,
        Verdict::Wrong { attempts_left } => Some((Some("wrong_pin".into()), Some(attempts_left))),
        Verdict::Locked => Some((Some("locked".into()), None)),
    }
}

/// A decline of the rules as the API says it: its snake-case name.
fn decline_name(decline: &crate::vocab::codes::Decline) -> String {
    (serde_json::to_value(decline).ok())
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "declined".into())
}

/// The reason of a bank's decline code.
pub fn bank_reason(code: &str) -> &'static str {
    match code {
        "51" => "insufficient_funds",
        "61" | "65" => "bank_limit_exceeded",
        "14" | "12" => "debit_account_refused",
        "54" => "debit_card_expired",
        "57" | "62" => "debit_not_permitted",
        "91" | "96" => "bank_unavailable",
        _ => "bank_declined",
    }
}
