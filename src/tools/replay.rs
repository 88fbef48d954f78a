//! Replay: sends a capture's requests to a switch and checks its answers against the
//! responses the capture recorded. Requests are the frames sent towards the server
//! (or, without directions, the frames whose MTI is not a response); each recorded
//! response is paired with its request by response MTI plus DE11 and DE41 (then MTI plus
//! DE11, then MTI alone), and each live response is matched to a request in flight the
//! same way. Each answer is compared field by field with the recorded one, except the
//! fields named in [`ReplayPlan::ignore`]; a [`Diff`] shows values as people may see
//! them (account numbers masked, track data, PIN blocks and EMV data redacted to their
//! length). [`Rewrite`] gives DE7, DE11 and DE37 fresh values per run, the same new value
//! for each original value, so a capture replays twice against a deduplicating switch
//! with its repeats still repeats and its reversals still naming their originals in
//! DE90; echoed values in the recorded responses are rewritten alike. Requests go out as fast as the window allows, at a fixed rate, or with the
//! capture's own timing ([`ReplayPace`]). Undecodable requests (format-error scenarios)
//! are sent as captured, byte for byte.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

pub use crate::tools::capture::CommandError;
use crate::tools::capture::{self, Capture, Captured, Direction, LinkOptions, Location};
use crate::wire::framing::{Frame, FrameCodec, LengthHeader};
use crate::wire::iso8583::{self, FieldSet, Masking, Message, Mti, Spec};

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplayPace {
    /// As fast as the window of requests in flight allows.
    Fast,
    /// This many requests per second.
    Rate(f64),
    /// The capture's own gaps between requests (frames without times go at once).
    Original,
}

impl FromStr for ReplayPace {
    type Err = String;

    /// `fast`, `original`, or a rate in requests per second (`50`, `50/s`).
    fn from_str(text: &str) -> Result<ReplayPace, String> {
        match text {
            "fast" => Ok(ReplayPace::Fast),
            "original" => Ok(ReplayPace::Original),
            _ => text
                .trim_end_matches("/s")
                .parse::<f64>()
                .ok()
                .filter(|r| *r > 0.0 && r.is_finite())
                .map(ReplayPace::Rate)
                .ok_or_else(|| format!("pace {text:?}: fast, original or requests per second")),
        }
    }
}

/// Which key fields get fresh values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// DE7, transmission date and time: now (UTC), per original value.
    pub de7: bool,
    /// DE11, STAN: a run-unique sequence, per original DE7+DE11+DE41.
    pub de11: bool,
    /// DE37, retrieval reference number: a run-unique sequence, per original value.
    pub de37: bool,
}

impl Rewrite {
    /// Whether any field is rewritten.
    pub fn any(&self) -> bool {
        self.de7 || self.de11 || self.de37
    }
}

/// What to replay, where, and how.
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    /// The switch.
    pub target: SocketAddr,
    /// Its spec.
    pub spec: Arc<Spec>,
    /// Its framing.
    pub codec: FrameCodec,
    /// Pacing.
    pub pace: ReplayPace,
    /// Requests in flight at most (1: one exchange at a time).
    pub window: usize,
    /// Fields expected to differ between runs.
    pub ignore: FieldSet,
    /// Fields given fresh values.
    pub rewrite: Rewrite,
    /// How long to wait for an answer.
    pub timeout: Duration,
}

/// One field that differs, as shown to people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diff {
    /// The message types differ.
    Mti {
        /// Recorded.
        expected: String,
        /// Received.
        got: String,
    },
    /// A field differs, or is present in only one of the two.
    Field {
        /// The field number.
        number: u8,
        /// Recorded (masked), `None` when absent.
        expected: Option<String>,
        /// Received (masked), `None` when absent.
        got: Option<String>,
    },
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| v.as_ref().map_or("(absent)".into(), |v| format!("{v:?}"));
        match self {
            Diff::Mti { expected, got } => write!(f, "MTI   expected {expected}, got {got}"),
            Diff::Field {
                number,
                expected,
                got,
            } => write!(
                f,
                "DE{number:<3} expected {}, got {}",
                show(expected),
                show(got)
            ),
        }
    }
}

/// How one request fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answered as recorded (ignored fields aside).
    Same,
    /// Answered, and the capture recorded no response to compare with.
    Unrecorded,
    /// Answered differently.
    Differs(Vec<Diff>),
    /// Not answered within the timeout (the capture recorded an answer).
    Unanswered,
    /// Not answered, and none was recorded either.
    NoneExpected,
}

impl Verdict {
    /// Whether this counts against the run.
    pub fn is_mismatch(&self) -> bool {
        matches!(self, Verdict::Differs(_) | Verdict::Unanswered)
    }
}

/// One request of the run and its verdict.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Position among the requests, from 1.
    pub number: usize,
    /// Where the request was in the capture.
    pub at: Location,
    /// The request's MTI and STAN as sent (`????` and `?` when undecodable).
    pub label: String,
    /// The answer's MTI and DE39, when answered.
    pub answer: Option<String>,
    /// The verdict.
    pub verdict: Verdict,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let answer = self.answer.as_deref().unwrap_or("no answer");
        let verdict = match &self.verdict {
            Verdict::Same => "same",
            Verdict::Unrecorded => "not recorded",
            Verdict::Differs(_) => "DIFFERS",
            Verdict::Unanswered => "UNANSWERED",
            Verdict::NoneExpected => "no answer, none recorded",
        };
        write!(
            f,
            "#{} ({}) {} -> {answer}: {verdict}",
            self.number, self.at, self.label
        )?;
        if let Verdict::Differs(diffs) = &self.verdict {
            for diff in diffs {
                write!(f, "\n    {diff}")?;
            }
        }
        Ok(())
    }
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// One per request, in capture order.
    pub outcomes: Vec<Outcome>,
    /// The traffic of the run (requests as sent, responses as received), for `--record`.
    pub traffic: Capture,
    /// Sending and receiving time.
    pub elapsed: Duration,
}

impl ReplayReport {
    /// Requests with a mismatch.
    pub fn mismatches(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.verdict.is_mismatch())
            .count()
    }

    /// A summary line.
    pub fn summary(&self) -> String {
        let count =
            |f: fn(&Verdict) -> bool| self.outcomes.iter().filter(|o| f(&o.verdict)).count();
        format!(
            "{} request(s) in {:.2} s: {} same, {} differ, {} unanswered, {} not recorded",
            self.outcomes.len(),
            self.elapsed.as_secs_f64(),
            count(|v| *v == Verdict::Same),
            count(|v| matches!(v, Verdict::Differs(_))),
            count(|v| *v == Verdict::Unanswered),
            count(|v| matches!(v, Verdict::Unrecorded | Verdict::NoneExpected)),
        )
    }
}

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Connecting failed or the connection broke.
    #[error("{target}: {reason}")]
    Link {
        /// The switch.
        target: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A rewritten request does not encode.
    #[error("request #{number} ({at}): {reason}")]
    Request {
        /// Its position.
        number: usize,
        /// Where it was in the capture.
        at: Location,
        /// Why.
        reason: String,
    },
}

/// A request of the capture, prepared.
struct Request {
    captured: Captured,
    /// Decoded (or the partial decode of a malformed one).
    message: Option<Message>,
    decoded: bool,
    /// The recorded response, decoded.
    expected: Option<Message>,
}

/// The fields a response is matched on: response MTI, DE11, DE41.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MatchKey {
    mti: Option<Mti>,
    stan: Option<String>,
    terminal: Option<String>,
}

impl MatchKey {
    /// The key the answer to `request` will carry.
    fn answer_to(request: Option<&Message>) -> MatchKey {
        MatchKey {
            mti: request.and_then(|m| m.mti().response()),
            stan: request.and_then(|m| m.text(11)).map(str::to_owned),
            terminal: request.and_then(|m| m.text(41)).map(str::to_owned),
        }
    }

    /// The key of a response.
    fn of(response: Option<&Message>) -> MatchKey {
        MatchKey {
            mti: response.map(Message::mti),
            stan: response.and_then(|m| m.text(11)).map(str::to_owned),
            terminal: response.and_then(|m| m.text(41)).map(str::to_owned),
        }
    }

    /// How well a response key fits a request's: 3 all, 2 MTI and STAN, 1 MTI, 0 not.
    fn fit(&self, response: &MatchKey) -> u8 {
        if self.mti.is_none() || self.mti != response.mti {
            return 0;
        }
        if self.stan != response.stan {
            return 1;
        }
        if self.terminal != response.terminal {
            return 2;
        }
        3
    }
}

fn decode_any(spec: &Spec, body: &Bytes) -> (Option<Message>, bool) {
    match iso8583::decode(spec, body) {
        Ok(m) => (Some(m), true),
        Err(e) => (e.partial().cloned(), false),
    }
}

/// Splits a capture into requests, each with its recorded response (if any).
fn prepare(capture: &Capture, spec: &Spec, header_len: usize) -> Vec<Request> {
    let mut requests: Vec<(usize, Request)> = Vec::new();
    let mut responses: Vec<(usize, Message)> = Vec::new();
    for (position, captured) in capture.frames.iter().enumerate() {
        let (message, decoded) = decode_any(spec, &captured.body(header_len));
        let is_request = match captured.direction {
            Some(d) => d == Direction::ToServer,
            None => message
                .as_ref()
                .is_none_or(|m| m.mti().response().is_some()),
        };
        if is_request {
            requests.push((
                position,
                Request {
                    captured: captured.clone(),
                    message,
                    decoded,
                    expected: None,
                },
            ));
        } else if let Some(message) = message.filter(|_| decoded) {
            responses.push((position, message));
        }
    }
    let mut taken = vec![false; responses.len()];
    for (position, request) in &mut requests {
        let key = MatchKey::answer_to(request.message.as_ref());
        let best = responses
            .iter()
            .enumerate()
            .filter(|(i, (at, _))| !taken[*i] && at > position)
            .map(|(i, (_, m))| (key.fit(&MatchKey::of(Some(m))), i))
            .filter(|(fit, _)| *fit > 0)
            .max_by_key(|(fit, i)| (*fit, std::cmp::Reverse(*i)));
        if let Some((_, i)) = best {
            taken[i] = true;
            request.expected = Some(responses[i].1.clone());
        }
    }
    requests.into_iter().map(|(_, r)| r).collect()
}

/// Fresh key values for one run, the same new value for each original value.
struct Rewriter {
    rewrite: Rewrite,
    now: String,
    seed: u64,
    de7: HashMap<String, String>,
    de11: HashMap<(String, String, String), String>,
    de37: HashMap<String, String>,
}

impl Rewriter {
    fn new(rewrite: Rewrite) -> Rewriter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rewriter {
            rewrite,
            now: String::new(),
            seed: (nanos / 1000) ^ u64::from(std::process::id()),
            de7: HashMap::new(),
            de11: HashMap::new(),
            de37: HashMap::new(),
        }
    }

    /// Rewrites `message` in place. A reversal's DE90 names its original's DE11 and
    /// DE7: they are rewritten as the original's own (whichever of the two comes first).
    fn apply(&mut self, message: &mut Message) {
        let text = |m: &Message, n| m.text(n).unwrap_or("").to_owned();
        let (orig7, orig11, orig41) = (text(message, 7), text(message, 11), text(message, 41));
        if let Some(data) = message.text(90).map(str::to_owned) {
            if let Some(rewritten) = self.original_data(&data, &orig41) {
                message.set(90, rewritten);
            }
        }
        if self.rewrite.de11 && message.get(11).is_some() {
            let value = self.stan(&orig7, &orig11, &orig41);
            message.set(11, value);
        }
        if self.rewrite.de7 && message.get(7).is_some() {
            let value = self.time(&orig7);
            message.set(7, value);
        }
        if self.rewrite.de37
            && let Some(orig) = message.text(37).map(str::to_owned)
        {
            let next = self.de37.len() as u64;
            let prefix = (self.seed / 7) % 1_000_000;
            let value = self
                .de37
                .entry(orig)
                .or_insert_with(|| format!("{prefix:06}{:06}", (next + 1) % 1_000_000));
            message.set(37, value.clone());
        }
    }

    /// The new DE11 of an original (DE7, DE11, DE41).
    fn stan(&mut self, de7: &str, de11: &str, de41: &str) -> String {
        let next = self.de11.len() as u64;
        let base = self.seed % 900_000;
        self.de11
            .entry((de7.to_owned(), de11.to_owned(), de41.to_owned()))
            .or_insert_with(|| format!("{:06}", (base + next) % 999_999 + 1))
            .clone()
    }

    /// The new DE7 of an original DE7 (this run's time).
    fn time(&mut self, de7: &str) -> String {
        if self.now.is_empty() {
            self.now = chrono::Utc::now().format("%m%d%H%M%S").to_string();
        }
        let now = self.now.clone();
        self.de7.entry(de7.to_owned()).or_insert(now).clone()
    }

    /// DE90 with the original's DE11 (digits 5-10) and DE7 (11-20) rewritten.
    fn original_data(&mut self, data: &str, de41: &str) -> Option<String> {
        let (stan, time) = (data.get(4..10)?, data.get(10..20)?);
        let mut out = data.get(..4)?.to_owned();
        out += &match self.rewrite.de11 {
            true => self.stan(time, stan, de41),
            false => stan.to_owned(),
        };
        out += &match self.rewrite.de7 {
            true => self.time(time),
            false => time.to_owned(),
        };
        out += data.get(20..)?;
        Some(out)
    }
}

/// The recorded response as it should look after rewriting: echoed key fields that
/// equal the original request's take the rewritten request's values.
fn expected_after_rewrite(expected: &Message, original: &Message, sent: &Message) -> Message {
    let mut adjusted = expected.clone();
    for number in [7, 11, 37, 90] {
        if let (Some(value), Some(was), Some(now)) = (
            expected.get(number),
            original.get(number),
            sent.get_bytes(number),
        ) && value == was
        {
            adjusted.set(number, now);
        }
    }
    adjusted
}

/// The field-level differences between a recorded and a received response, fields in
/// `ignore` left out.
pub fn diff(expected: &Message, got: &Message, ignore: FieldSet, masking: &Masking) -> Vec<Diff> {
    let mut diffs = Vec::new();
    if expected.mti() != got.mti() {
        diffs.push(Diff::Mti {
            expected: expected.mti().to_string(),
            got: got.mti().to_string(),
        });
    }
    let mut numbers: Vec<u8> = expected
        .fields()
        .map(|(n, _)| n)
        .chain(got.fields().map(|(n, _)| n))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    for number in numbers {
        if ignore.contains(number) {
            continue;
        }
        let (a, b) = (expected.get(number), got.get(number));
        if a != b && !capture::pin_withheld(expected, number) {
            diffs.push(Diff::Field {
                number,
                expected: a.map(|v| masking.at_least_default().show_in(expected, number, v)),
                got: b.map(|v| masking.at_least_default().show_in(got, number, v)),
            });
        }
    }
    diffs
}

/// A request in flight.
struct InFlight {
    index: usize,
    key: MatchKey,
    since: Instant,
}

/// Runs the plan over `capture`, calling `progress` after each request's verdict.
pub async fn run(
    plan: &ReplayPlan,
    capture: &Capture,
    mut progress: impl FnMut(&Outcome),
) -> Result<ReplayReport, ReplayError> {
    let header_len = plan.codec.header_len();
    let requests = prepare(capture, &plan.spec, header_len);
    let link_error = |reason: String| ReplayError::Link {
        target: plan.target,
        reason,
    };
    let stream = TcpStream::connect(plan.target)
        .await
        .map_err(|e| link_error(format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, plan.codec);
    let mut rewriter = Rewriter::new(plan.rewrite);
    let mut report = ReplayReport::default();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; requests.len()];
    let mut sent_messages: Vec<Option<Message>> = vec![None; requests.len()];
    let mut in_flight: Vec<InFlight> = Vec::new();
    let started = Instant::now();
    let first_time = requests.iter().find_map(|r| r.captured.time_us);
    let mut next = 0;
    let mut done = 0;
    while done < requests.len() {
        let can_send = next < requests.len() && in_flight.len() < plan.window.max(1);
        let due = if can_send {
            started
                + match plan.pace {
                    ReplayPace::Fast => Duration::ZERO,
                    ReplayPace::Rate(rate) => Duration::from_secs_f64(next as f64 / rate),
                    ReplayPace::Original => match (requests[next].captured.time_us, first_time) {
                        (Some(t), Some(first)) => {
                            Duration::from_micros(t.saturating_sub(first).max(0) as u64)
                        }
                        _ => Duration::ZERO,
                    },
                }
        } else {
            started
        };
        let deadline = in_flight
            .iter()
            .map(|f| f.since + plan.timeout)
            .min()
            .unwrap_or_else(|| Instant::now() + plan.timeout);
        tokio::select! {
            () = tokio::time::sleep_until(due.into()), if can_send => {
                let request = &requests[next];
                let number = next + 1;
                let (body, sent) = match (&request.message, request.decoded) {
                    (Some(message), true) if plan.rewrite.any() => {
                        let mut message = message.clone();
                        rewriter.apply(&mut message);
                        let body = iso8583::encode_to_bytes(&plan.spec, &message).map_err(|e| {
                            ReplayError::Request { number, at: request.captured.at, reason: e.to_string() }
                        })?;
                        (body, Some(message))
                    }
                    (message, _) => (request.captured.body(header_len), message.clone()),
                };
                let header = request.captured.header(header_len);
                let mut whole = BytesMut::from(&header[..]);
                whole.extend_from_slice(&body);
                report.traffic.frames.push(Captured {
                    time_us: Some(chrono::Utc::now().timestamp_micros()),
                    direction: Some(Direction::ToServer),
                    stream: 0,
                    frame: whole.freeze(),
                    at: request.captured.at,
                });
                framed.send(Frame { header, body }).await.map_err(|e| link_error(format!("send: {e}")))?;
                in_flight.push(InFlight { index: next, key: MatchKey::answer_to(sent.as_ref()), since: Instant::now() });
                sent_messages[next] = sent;
                next += 1;
            }
            frame = framed.next() => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => return Err(link_error(format!("receive: {e}"))),
                    None => {
                        // The switch closed: whatever is in flight stays unanswered.
                        for flight in in_flight.drain(..) {
                            let request = &requests[flight.index];
                            outcomes[flight.index] = Some(unanswered(flight.index, request, sent_messages[flight.index].as_ref()));
                            done += 1;
                            progress(outcomes[flight.index].as_ref().expect("just set"));
                        }
                        if next < requests.len() {
                            return Err(link_error("the switch closed the connection".into()));
                        }
                        continue;
                    }
                };
                if frame.is_keep_alive() {
                    continue;
                }
                let (answer, decoded) = decode_any(&plan.spec, &frame.body);
                let mut whole = BytesMut::from(&frame.header[..]);
                let recorded = answer.as_ref().and_then(|a| capture::without_pin(&plan.spec, a));
                whole.extend_from_slice(recorded.as_ref().unwrap_or(&frame.body));
                report.traffic.frames.push(Captured {
                    time_us: Some(chrono::Utc::now().timestamp_micros()),
                    direction: Some(Direction::FromServer),
                    stream: 0,
                    frame: whole.freeze(),
                    at: Location::File,
                });
                let key = MatchKey::of(answer.as_ref());
                let best = in_flight
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (f.key.fit(&key), std::cmp::Reverse(i)))
                    .max();
                let Some((_, std::cmp::Reverse(slot))) = best else {
                    continue; // unsolicited
                };
                let flight = in_flight.remove(slot);
                let request = &requests[flight.index];
                let outcome = judge(plan, flight.index, request, sent_messages[flight.index].as_ref(), answer.filter(|_| decoded), &frame.body);
                progress(&outcome);
                outcomes[flight.index] = Some(outcome);
                done += 1;
            }
            () = tokio::time::sleep_until(deadline.into()), if !in_flight.is_empty() => {
                let now = Instant::now();
                let (late, waiting): (Vec<_>, Vec<_>) = in_flight.drain(..).partition(|f| now >= f.since + plan.timeout);
                in_flight = waiting;
                for flight in late {
                    let outcome = unanswered(flight.index, &requests[flight.index], sent_messages[flight.index].as_ref());
                    progress(&outcome);
                    outcomes[flight.index] = Some(outcome);
                    done += 1;
                }
            }
        }
    }
    report.elapsed = started.elapsed();
    report.outcomes = outcomes.into_iter().flatten().collect();
    Ok(report)
}

fn label(request: &Request, sent: Option<&Message>) -> String {
    let message = sent.or(request.message.as_ref());
    let mti = message.map_or("????".to_owned(), |m| m.mti().to_string());
    let stan = message.and_then(|m| m.text(11)).unwrap_or("?");
    let malformed = if request.decoded { "" } else { " (malformed)" };
    format!("{mti} STAN {stan}{malformed}")
}

fn unanswered(index: usize, request: &Request, sent: Option<&Message>) -> Outcome {
    Outcome {
        number: index + 1,
        at: request.captured.at,
        label: label(request, sent),
        answer: None,
        verdict: if request.expected.is_some() {
            Verdict::Unanswered
        } else {
            Verdict::NoneExpected
        },
    }
}

fn judge(
    plan: &ReplayPlan,
    index: usize,
    request: &Request,
    sent: Option<&Message>,
    answer: Option<Message>,
    raw: &Bytes,
) -> Outcome {
    let masking = plan.spec.masking();
    let shown_answer = answer.as_ref().map_or_else(
        || format!("undecodable ({} bytes)", raw.len()),
        |m| {
            format!(
                "{} {}",
                m.mti(),
                m.text(39)
                    .map_or("(no DE39)".into(), |c| format!("DE39 {c}"))
            )
        },
    );
    let verdict = match (&request.expected, answer) {
        (None, _) => Verdict::Unrecorded,
        (Some(expected), Some(got)) => {
            let expected = match (&request.message, sent) {
                (Some(original), Some(sent)) if request.decoded => {
                    expected_after_rewrite(expected, original, sent)
                }
                _ => expected.clone(),
            };
            let diffs = diff(&expected, &got, plan.ignore, &masking);
            if diffs.is_empty() {
                Verdict::Same
            } else {
                Verdict::Differs(diffs)
            }
        }
        (Some(expected), None) => Verdict::Differs(vec![Diff::Mti {
            expected: expected.mti().to_string(),
            got: format!("an undecodable message of {} bytes", raw.len()),
        }]),
    };
    Outcome {
        number: index + 1,
        at: request.captured.at,
        label: label(request, sent),
        answer: Some(shown_answer),
        verdict,
    }
}

/// Parses a field list such as `38,62`.
pub fn parse_fields(text: &str) -> Result<FieldSet, String> {
    let mut set = FieldSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let number: u8 = part
            .parse()
            .ok()
            .filter(|n| (2..=iso8583::MAX_FIELD).contains(n))
            .ok_or_else(|| format!("field {part:?}: a number from 2 to {}", iso8583::MAX_FIELD))?;
        set.insert(number);
    }
    Ok(set)
}

/// `replenish replay`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The capture: text, pcap or pcapng.
    pub capture: PathBuf,
    /// The switch's acquirer listener.
    #[arg(long, default_value = "127.0.0.1:8583")]
    pub to: SocketAddr,
    /// Spec of the link.
    #[arg(long, default_value = "iso87ascii")]
    pub spec: String,
    /// Framing of the link.
    #[arg(long, default_value = "binary2")]
    pub framing: LengthHeader,
    /// Fixed header length (e.g. 5 for a TPDU) inside each frame.
    #[arg(long, default_value_t = 0)]
    pub header_len: usize,
    /// Server port of the streams in a pcap capture (default: guessed from the first SYN).
    #[arg(long)]
    pub port: Option<u16>,
    /// Fields expected to differ between runs, e.g. 38,62.
    #[arg(long, value_parser = parse_fields, default_value = "")]
    pub ignore: FieldSet,
    /// Give DE7, DE11 and DE37 fresh values (same new value per original value).
    #[arg(long)]
    pub rewrite: bool,
    /// Give DE7 (transmission time) fresh values.
    #[arg(long)]
    pub rewrite_7: bool,
    /// Give DE11 (STAN) fresh values.
    #[arg(long)]
    pub rewrite_11: bool,
    /// Give DE37 (retrieval reference) fresh values.
    #[arg(long)]
    pub rewrite_37: bool,
    /// Pacing: fast, original (the capture's timing), or requests per second.
    #[arg(long, default_value = "fast")]
    pub pace: ReplayPace,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Write the run's traffic (requests as sent, answers as received) as a capture;
    /// .pcap, .pcapng or text by extension.
    #[arg(long)]
    pub record: Option<PathBuf>,
}

impl ReplayArgs {
    /// The plan these arguments describe.
    pub fn plan(&self) -> Result<ReplayPlan, CommandError> {
        let spec = Spec::resolve(&self.spec).map_err(|e| CommandError::Input(e.to_string()))?;
        Ok(ReplayPlan {
            target: self.to,
            spec: Arc::new(spec),
            codec: FrameCodec::new(self.framing).with_header_len(self.header_len),
            pace: self.pace,
            window: self.window.max(1),
            ignore: self.ignore,
            rewrite: Rewrite {
                de7: self.rewrite || self.rewrite_7,
                de11: self.rewrite || self.rewrite_11,
                de37: self.rewrite || self.rewrite_37,
            },
            timeout: Duration::from_secs_f64(self.timeout.max(0.001)),
        })
    }
}

/// `replenish replay`: runs, prints a line per request (a progress bar instead on a
/// terminal, with the differences printed above it), the differences and a summary.
/// Mismatches are an error (exit 1); bad capture input exits 2.
pub fn command(args: &ReplayArgs) -> Result<(), CommandError> {
    let plan = args.plan()?;
    let link = LinkOptions {
        port: args.port,
        codec: plan.codec,
    };
    let capture =
        capture::read(&args.capture, &link).map_err(|e| CommandError::Input(e.to_string()))?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CommandError::Other(format!("tokio runtime: {e}")))?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(capture.frames.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} requests {msg} [{elapsed}]",
        ) {
            bar.set_style(style);
        }
        bar
    });
    let mut total = 0;
    let report = runtime
        .block_on(run(&plan, &capture, |outcome| {
            total += 1;
            match &bar {
                Some(bar) => {
                    bar.inc(1);
                    if outcome.verdict.is_mismatch() {
                        bar.println(outcome.to_string());
                    }
                }
                None => println!("{outcome}"),
            }
        }))
        .map_err(|e| CommandError::Other(e.to_string()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(path) = &args.record {
        let link = LinkOptions {
            port: Some(args.to.port()),
            codec: plan.codec,
        };
        capture::write(path, &report.traffic, &link)
            .map_err(|e| CommandError::Other(format!("{}: {e}", path.display())))?;
    }
    println!("{}", report.summary());
    match report.mismatches() {
        0 => Ok(()),
        n => Err(CommandError::Other(format!(
            "{n} of {total} request(s) did not match the capture"
        ))),
    }
}

/// A report of every difference, one block per request that differs.
pub fn diff_report(report: &ReplayReport) -> String {
    let mut out = String::new();
    for outcome in report.outcomes.iter().filter(|o| o.verdict.is_mismatch()) {
        let _ = writeln!(out, "{outcome}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec::resolve("iso87ascii").expect("spec")
    }

    fn message(mti: &str, fields: &[(u8, &str)]) -> Message {
        let mut m = Message::new(Mti::new(mti.as_bytes()).expect("mti"));
        for (n, v) in fields {
            m.set(*n, v.to_string());
        }
        m
    }

    #[test]
    fn the_diff_names_fields_masks_pans_and_never_shows_secrets() {
        let masking = spec().masking();
        let expected = message(
            "0210",
            &[
                (2, "4761739001010010"),
                (11, "000001"),
                (38, "123456"),
                (39, "00"),
                (52, "AAAA"),
            ],
        );
        let got = message(
            "0210",
            &[
                (2, "4761739001010028"),
                (11, "000001"),
                (38, "654321"),
                (39, "14"),
                (52, "BBBB"),
            ],
        );
        let diffs = diff(&expected, &got, parse_fields("38").expect("list"), &masking);
        let text: Vec<String> = diffs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                r#"DE2   expected "476173******0010", got "476173******0028""#,
                r#"DE39  expected "00", got "14""#,
                r#"DE52  expected "[redacted, 4 bytes]", got "[redacted, 4 bytes]""#,
            ]
        );
        let mut fewer = got.clone();
        fewer.remove(39);
        fewer.set_mti(Mti::new(b"0230").expect("mti"));
        let diffs = diff(
            &expected,
            &fewer,
            parse_fields("2,38,52").expect("list"),
            &masking,
        );
        assert_eq!(
            diffs,
            vec![
                Diff::Mti {
                    expected: "0210".into(),
                    got: "0230".into()
                },
                Diff::Field {
                    number: 39,
                    expected: Some("00".into()),
                    got: None
                },
            ]
        );
        assert_eq!(diffs[1].to_string(), r#"DE39  expected "00", got (absent)"#);
    }

    #[test]
    fn an_outcome_prints_its_diffs_under_it() {
        let outcome = Outcome {
            number: 3,
            at: Location::Line(7),
            label: "0200 STAN 000417".into(),
            answer: Some("0210 DE39 14".into()),
            verdict: Verdict::Differs(vec![Diff::Field {
                number: 39,
                expected: Some("00".into()),
                got: Some("14".into()),
            }]),
        };
        assert_eq!(
            outcome.to_string(),
            "#3 (line 7) 0200 STAN 000417 -> 0210 DE39 14: DIFFERS\n    DE39  expected \"00\", got \"14\""
        );
        let report = ReplayReport {
            outcomes: vec![outcome],
            ..ReplayReport::default()
        };
        assert_eq!(report.mismatches(), 1);
        assert!(diff_report(&report).starts_with("#3 (line 7)"));
        assert!(
            report.summary().contains("0 same, 1 differ"),
            "{}",
            report.summary()
        );
    }

    #[test]
    fn recorded_responses_pair_by_key_then_mti() {
        let spec = spec();
        let frame = |dir: Direction, m: &Message| Captured {
            time_us: None,
            direction: Some(dir),
            stream: 0,
            frame: iso8583::encode_to_bytes(&spec, m).expect("encodes"),
            at: Location::File,
        };
        let a = message("0200", &[(11, "000001"), (41, "T1")]);
        let b = message("0200", &[(11, "000002"), (41, "T1")]);
        let echo = message("0800", &[(11, "000003"), (70, "301")]);
        let ra = message("0210", &[(11, "000001"), (41, "T1"), (39, "00")]);
        let rb = message("0210", &[(11, "000002"), (41, "T1"), (39, "14")]);
        let recho = message("0810", &[(11, "000009"), (39, "00")]);
        let capture = Capture {
            frames: vec![
                frame(Direction::ToServer, &a),
                frame(Direction::ToServer, &b),
                frame(Direction::ToServer, &echo),
                frame(Direction::FromServer, &recho),
                frame(Direction::FromServer, &rb),
                frame(Direction::FromServer, &ra),
            ],
        };
        let requests = prepare(&capture, &spec, 0);
        let expected: Vec<Option<&str>> = requests
            .iter()
            .map(|r| r.expected.as_ref().and_then(|m| m.text(39)))
            .collect();
        assert_eq!(expected, vec![Some("00"), Some("14"), Some("00")]);
        assert_eq!(
            requests[2].expected.as_ref().map(|m| m.mti().to_string()),
            Some("0810".into())
        );
    }

    #[test]
    fn rewriting_is_consistent_per_original_value_and_follows_into_echoes() {
        let mut rewriter = Rewriter::new(Rewrite {
            de7: true,
            de11: true,
            de37: true,
        });
        let original = message(
            "0200",
            &[
                (7, "1123095500"),
                (11, "000417"),
                (37, "532709000417"),
                (41, "T1"),
            ],
        );
        let mut first = original.clone();
        let mut repeat = original.clone();
        repeat.set_mti(Mti::new(b"0201").expect("mti"));
        let mut other = original.clone();
        other.set(11, "000418");
        other.set(37, "532709000418");
        rewriter.apply(&mut first);
        rewriter.apply(&mut repeat);
        rewriter.apply(&mut other);
        for n in [7, 11, 37] {
            assert_ne!(first.get(n), original.get(n), "DE{n} rewritten");
            assert_eq!(
                first.get(n),
                repeat.get(n),
                "a repeat keeps its original's DE{n}"
            );
        }
        assert_ne!(first.get(11), other.get(11));
        assert_ne!(first.get(37), other.get(37));
        assert_eq!(first.text(11).map(str::len), Some(6));
        assert_eq!(first.text(37).map(str::len), Some(12));
        let recorded = message(
            "0210",
            &[
                (7, "1123095500"),
                (11, "000417"),
                (37, "532709000417"),
                (39, "00"),
            ],
        );
        let adjusted = expected_after_rewrite(&recorded, &original, &first);
        for n in [7, 11, 37] {
            assert_eq!(adjusted.get(n), first.get(n));
        }
    }

    #[test]
    fn pace_and_field_lists_parse() {
        assert_eq!("fast".parse::<ReplayPace>(), Ok(ReplayPace::Fast));
        assert_eq!("original".parse::<ReplayPace>(), Ok(ReplayPace::Original));
        assert_eq!("50/s".parse::<ReplayPace>(), Ok(ReplayPace::Rate(50.0)));
        assert!("slow".parse::<ReplayPace>().is_err());
        let set = parse_fields("38, 62").expect("list");
        assert!(set.contains(38) && set.contains(62) && !set.contains(39));
        assert!(parse_fields("1").is_err() && parse_fields("x").is_err());
    }
}
