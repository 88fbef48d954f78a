//! Captures: recorded link traffic that test harnesses replay. A [`Capture`] is a list of
//! [`Captured`] frames, each the bytes that follow one length prefix on the wire (fixed
//! header, if the link has one, then the ISO 8583 message), with an optional timestamp,
//! direction and connection. Two file formats hold them. The *text* format has one frame
//! per line (`# connection N` starting the frames of connection N): an optional RFC 3339 timestamp (or seconds as a decimal number), an optional
//! direction (`>` towards the switch, `<` from it), then the frame in hex; blank lines
//! and `#` comments are skipped. *pcap* and *pcapng* files (read with `pcap-parser`,
//! packets sliced with `etherparse`) hold TCP traffic: the streams of one server port are
//! reassembled per connection and direction (duplicates and retransmissions dropped,
//! segments arriving out of order put back in sequence, a gap left at the end reported
//! with the packet after it) and split into frames with the link's [`FrameCodec`].
//! Written pcap files carry synthetic Ethernet/IPv4/TCP packets (a handshake per
//! connection, then one segment per frame), so Wireshark and tshark dissect them. Bad
//! input is a [`CaptureError`] naming the file and the line or packet at fault.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use pcap_parser::{
    Block, EnhancedPacketBlock, InterfaceDescriptionBlock, LegacyPcapBlock, LegacyPcapSlice,
    Linktype, PcapBlockOwned, PcapHeader, PcapNGSlice, SectionHeaderBlock, ToVec,
};
use tokio_util::codec::{Decoder, Encoder};

use crate::wire::framing::{Frame, FrameCodec, LengthHeader};
use crate::wire::iso8583::{self, Masking, Message, Spec};

/// Which way a frame travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Towards the server port (the switch): requests. `>` in the text format.
    ToServer,
    /// From the server port: responses. `<` in the text format.
    FromServer,
}

impl Direction {
    /// The text format's sign: `>` or `<`.
    pub fn sign(self) -> char {
        match self {
            Direction::ToServer => '>',
            Direction::FromServer => '<',
        }
    }
}

/// Where in its file a frame (or a fault) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A line of a text capture, from 1.
    Line(usize),
    /// A packet (pcap record or pcapng block) of a packet capture, from 1.
    Packet(usize),
    /// The file as a whole (its header, or its end).
    File,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Packet(n) => write!(f, "packet {n}"),
            Location::File => f.write_str("file"),
        }
    }
}

/// One frame of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// When it was seen, in microseconds since the Unix epoch.
    pub time_us: Option<i64>,
    /// Which way it went, when known.
    pub direction: Option<Direction>,
    /// The connection it belongs to, numbered from 0 in order of appearance.
    pub stream: u32,
    /// What followed the length prefix: the fixed header (if any), then the message.
    pub frame: Bytes,
    /// Where it was read from.
    pub at: Location,
}

impl Captured {
    /// The ISO 8583 message: the frame without a fixed header of `header_len` bytes.
    pub fn body(&self, header_len: usize) -> Bytes {
        self.frame.slice(header_len.min(self.frame.len())..)
    }

    /// The fixed header of `header_len` bytes (empty when there is none).
    pub fn header(&self, header_len: usize) -> Bytes {
        self.frame.slice(..header_len.min(self.frame.len()))
    }
}

/// A list of frames in the order they were seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// The frames.
    pub frames: Vec<Captured>,
}

/// A capture file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Hex lines.
    Text,
    /// Classic libpcap.
    Pcap,
    /// pcapng.
    PcapNg,
}

impl Format {
    /// The format a file name asks for: `.pcap`, `.pcapng`, anything else text.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("pcap") || e.eq_ignore_ascii_case("cap") => {
                Format::Pcap
            }
            Some(e) if e.eq_ignore_ascii_case("pcapng") => Format::PcapNg,
            _ => Format::Text,
        }
    }

    /// The format of file content, recognised by its magic number.
    pub fn sniff(content: &[u8]) -> Format {
        match content.get(..4) {
            Some([0x0A, 0x0D, 0x0D, 0x0A]) => Format::PcapNg,
            Some(
                [0xD4, 0xC3, 0xB2, 0xA1]
                | [0xA1, 0xB2, 0xC3, 0xD4]
                | [0x4D, 0x3C, 0xB2, 0xA1]
                | [0xA1, 0xB2, 0x3C, 0x4D],
            ) => Format::Pcap,
            _ => Format::Text,
        }
    }
}

/// How packet captures map to frames: the server port whose streams count (the first
/// SYN's destination port, or the lower port of the first TCP segment, when `None`) and
/// the link's framing. Writing uses the port (8583 when `None`) and the framing too.
#[derive(Debug, Clone, Copy)]
pub struct LinkOptions {
    /// The server (switch) port.
    pub port: Option<u16>,
    /// The framing of the link.
    pub codec: FrameCodec,
}

/// Bad capture input: the file, where in it, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {at}: {reason}")]
pub struct CaptureError {
    /// The file (or `-` for stdin).
    pub file: String,
    /// The line or packet at fault.
    pub at: Location,
    /// What is wrong.
    pub reason: String,
}

fn fault(file: &str, at: Location, reason: impl Into<String>) -> CaptureError {
    CaptureError {
        file: file.to_owned(),
        at,
        reason: reason.into(),
    }
}

/// Reads a capture file of any format (recognised by content).
pub fn read(path: &Path, link: &LinkOptions) -> Result<Capture, CaptureError> {
    let name = path.display().to_string();
    let content = std::fs::read(path).map_err(|e| fault(&name, Location::File, e.to_string()))?;
    parse(&content, &name, link)
}

/// Parses capture content of any format; `file` names it in errors.
pub fn parse(content: &[u8], file: &str, link: &LinkOptions) -> Result<Capture, CaptureError> {
    match Format::sniff(content) {
        Format::Text => {
            let text = std::str::from_utf8(content).map_err(|e| {
                let line = content[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                fault(file, Location::Line(line + 1), "not UTF-8 text")
            })?;
            parse_text(text, file)
        }
        Format::Pcap | Format::PcapNg => parse_packets(content, file, link),
    }
}

/// Parses the text format.
pub fn parse_text(text: &str, file: &str) -> Result<Capture, CaptureError> {
    let mut frames = Vec::new();
    let mut stream = 0;
    for (index, line) in text.lines().enumerate() {
        let at = Location::Line(index + 1);
        let line = line.trim();
        // `# connection N` (as written by `to_text`) starts connection N's frames.
        if let Some(n) = line
            .strip_prefix("# connection ")
            .and_then(|n| n.trim().parse().ok())
        {
            stream = n;
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut time_us = None;
        let mut direction = None;
        let mut hex_text = String::new();
        for token in line.split_whitespace() {
            if !hex_text.is_empty() {
                hex_text.push_str(token);
                continue;
            }
            match token {
                ">" if direction.is_none() => direction = Some(Direction::ToServer),
                "<" if direction.is_none() => direction = Some(Direction::FromServer),
                _ if time_us.is_none() && direction.is_none() && is_timestamp(token) => {
                    time_us = Some(
                        parse_time(token)
                            .ok_or_else(|| fault(file, at, format!("bad timestamp {token:?}")))?,
                    );
                }
                _ => hex_text.push_str(token),
            }
        }
        if hex_text.is_empty() {
            return Err(fault(file, at, "no message after the timestamp/direction"));
        }
        let frame = hex::decode(&hex_text).map_err(|e| fault(file, at, format!("not hex: {e}")))?;
        frames.push(Captured {
            time_us,
            direction,
            stream,
            frame: Bytes::from(frame),
            at,
        });
    }
    Ok(Capture { frames })
}

/// Whether a token is meant as a timestamp: RFC 3339 (has a `T` and `:`) or decimal
/// seconds with a point (hex never has a point).
fn is_timestamp(token: &str) -> bool {
    token.contains(':') || token.contains('.')
}

fn parse_time(token: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(token) {
        return Some(t.timestamp_micros());
    }
    let seconds: f64 = token.parse().ok()?;
    seconds
        .is_finite()
        .then(|| (seconds * 1_000_000.0).round() as i64)
}

fn format_time(time_us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(time_us).map_or_else(
        || format!("{:.6}", time_us as f64 / 1e6),
        |t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    )
}

/// The text format of a capture (what [`parse_text`] reads back).
pub fn to_text(capture: &Capture) -> String {
    let mut out =
        String::from("# replenish capture: [time] [> to the switch | < from it] frame in hex\n");
    let mut stream = 0;
    for c in &capture.frames {
        if c.stream != stream {
            stream = c.stream;
            out.push_str(&format!("# connection {stream}\n"));
        }
        if let Some(t) = c.time_us {
            out.push_str(&format_time(t));
            out.push(' ');
        }
        if let Some(d) = c.direction {
            out.push(d.sign());
            out.push(' ');
        }
        out.push_str(&hex::encode_upper(&c.frame));
        out.push('\n');
    }
    out
}

/// Writes `capture` to `path` in the format its extension names.
pub fn write(path: &Path, capture: &Capture, link: &LinkOptions) -> std::io::Result<()> {
    let content = match Format::from_path(path) {
        Format::Text => to_text(capture).into_bytes(),
        Format::Pcap => to_pcap(capture, link, false)?,
        Format::PcapNg => to_pcap(capture, link, true)?,
    };
    std::fs::write(path, content)
}

/// One TCP segment of a capture file, sliced.
struct Segment<'a> {
    packet: usize,
    time_us: Option<i64>,
    source: SocketAddr,
    destination: SocketAddr,
    sequence: u32,
    syn: bool,
    ack: bool,
    payload: &'a [u8],
}

/// Reassembly state of one direction of one connection.
struct Half {
    stream: u32,
    direction: Direction,
    /// Sequence number of the next byte expected; `None` until the first segment.
    next: Option<u32>,
    /// Segments ahead of `next`, by sequence number, with their packet numbers.
    ahead: BTreeMap<u32, (Vec<u8>, usize, Option<i64>)>,
    buffer: BytesMut,
    codec: FrameCodec,
}

impl Half {
    /// Takes one segment's payload, pushing the frames it completes onto `out` (each
    /// with the packet and time of the segment that completed it).
    fn take(
        &mut self,
        segment: &Segment<'_>,
        file: &str,
        out: &mut Vec<Captured>,
    ) -> Result<(), CaptureError> {
        let mut sequence = segment.sequence;
        if segment.syn {
            sequence = sequence.wrapping_add(1);
            self.next.get_or_insert(sequence);
        }
        if segment.payload.is_empty() {
            return Ok(());
        }
        let next = *self.next.get_or_insert(sequence);
        let offset = sequence.wrapping_sub(next) as i32;
        if offset > 0 {
            self.ahead.insert(
                sequence,
                (segment.payload.to_vec(), segment.packet, segment.time_us),
            );
            return Ok(());
        }
        // At or behind `next`: a retransmission keeps only bytes not seen yet.
        let skip = offset.unsigned_abs() as usize;
        if skip < segment.payload.len() {
            self.append(
                &segment.payload[skip..],
                segment.packet,
                segment.time_us,
                file,
                out,
            )?;
        }
        // Segments that were ahead may fit now.
        while let Some(seq) = self.ahead.keys().copied().find(|&seq| {
            let next = self.next.unwrap_or(seq);
            seq.wrapping_sub(next) as i32 <= 0
        }) {
            let (data, packet, time_us) = self.ahead.remove(&seq).unwrap_or_default();
            let next = self.next.unwrap_or(seq);
            let skip = next.wrapping_sub(seq) as usize;
            if skip < data.len() {
                self.append(&data[skip..], packet, time_us, file, out)?;
            }
        }
        Ok(())
    }

    fn append(
        &mut self,
        bytes: &[u8],
        packet: usize,
        time_us: Option<i64>,
        file: &str,
        out: &mut Vec<Captured>,
    ) -> Result<(), CaptureError> {
        self.next = self.next.map(|n| n.wrapping_add(bytes.len() as u32));
        self.buffer.extend_from_slice(bytes);
        loop {
            match self.codec.decode(&mut self.buffer) {
                Ok(Some(frame)) if frame.is_keep_alive() => continue,
                Ok(Some(frame)) => {
                    let mut whole = BytesMut::with_capacity(frame.header.len() + frame.body.len());
                    whole.extend_from_slice(&frame.header);
                    whole.extend_from_slice(&frame.body);
                    out.push(Captured {
                        time_us,
                        direction: Some(self.direction),
                        stream: self.stream,
                        frame: whole.freeze(),
                        at: Location::Packet(packet),
                    });
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(fault(
                        file,
                        Location::Packet(packet),
                        format!("framing ({}): {e}", self.codec.length_header()),
                    ));
                }
            }
        }
    }

    /// At the end of the file: a hole before buffered segments, or a partial frame, is
    /// an error.
    fn finish(&self, file: &str) -> Result<(), CaptureError> {
        if let Some((&seq, (_, packet, _))) = self.ahead.iter().next() {
            let missing = seq.wrapping_sub(self.next.unwrap_or(seq));
            return Err(fault(
                file,
                Location::Packet(*packet),
                format!(
                    "TCP stream {} ({}): {missing} byte(s) missing before this segment \
                     (lost segment not in the capture)",
                    self.stream,
                    match self.direction {
                        Direction::ToServer => "to the server",
                        Direction::FromServer => "from the server",
                    }
                ),
            ));
        }
        if !self.buffer.is_empty() {
            return Err(fault(
                file,
                Location::File,
                format!(
                    "TCP stream {}: the capture ends inside a frame ({} byte(s) buffered)",
                    self.stream,
                    self.buffer.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Parses a pcap or pcapng capture: reassembles the TCP streams of the server port and
/// splits them into frames.
pub fn parse_packets(
    content: &[u8],
    file: &str,
    link: &LinkOptions,
) -> Result<Capture, CaptureError> {
    let segments = segments(content, file)?;
    let port = match link.port {
        Some(port) => port,
        None => guess_port(&segments)
            .ok_or_else(|| fault(file, Location::File, "no TCP segment found (give the port)"))?,
    };
    let mut halves: HashMap<(SocketAddr, SocketAddr), Half> = HashMap::new();
    let mut streams: HashMap<(SocketAddr, SocketAddr), u32> = HashMap::new();
    let mut frames = Vec::new();
    for segment in &segments {
        let (direction, client, server) = if segment.destination.port() == port {
            (Direction::ToServer, segment.source, segment.destination)
        } else if segment.source.port() == port {
            (Direction::FromServer, segment.destination, segment.source)
        } else {
            continue;
        };
        let count = streams.len() as u32;
        let stream = *streams.entry((client, server)).or_insert(count);
        let half = halves
            .entry((segment.source, segment.destination))
            .or_insert_with(|| Half {
                stream,
                direction,
                next: None,
                ahead: BTreeMap::new(),
                buffer: BytesMut::new(),
                codec: link.codec,
            });
        if segment.syn && !segment.ack && half.next.is_some() {
            // A new connection on the same ports: start over.
            *half = Half {
                stream,
                direction,
                next: None,
                ahead: BTreeMap::new(),
                buffer: BytesMut::new(),
                codec: link.codec,
            };
        }
        half.take(segment, file, &mut frames)?;
    }
    let mut halves: Vec<&Half> = halves.values().collect();
    halves.sort_by_key(|h| (h.stream, h.direction == Direction::FromServer));
    for half in halves {
        half.finish(file)?;
    }
    Ok(Capture { frames })
}

fn guess_port(segments: &[Segment<'_>]) -> Option<u16> {
    segments
        .iter()
        .find(|s| s.syn && !s.ack)
        .map(|s| s.destination.port())
        .or_else(|| {
            segments
                .iter()
                .find(|s| !s.payload.is_empty())
                .map(|s| s.source.port().min(s.destination.port()))
        })
}

/// Every TCP segment of a pcap or pcapng file, in file order.
fn segments<'a>(content: &'a [u8], file: &str) -> Result<Vec<Segment<'a>>, CaptureError> {
    let header_fault =
        |e: &dyn fmt::Display| fault(file, Location::File, format!("not a pcap/pcapng file: {e}"));
    let blocks: Box<dyn Iterator<Item = _>> = match Format::sniff(content) {
        Format::PcapNg => Box::new(PcapNGSlice::from_slice(content).map_err(|e| header_fault(&e))?),
        _ => Box::new(LegacyPcapSlice::from_slice(content).map_err(|e| header_fault(&e))?),
    };
    let mut out = Vec::new();
    // Legacy: one link type and resolution; pcapng: per interface.
    let mut legacy: Option<(Linktype, bool)> = None;
    let mut interfaces: Vec<(Linktype, u64, i64)> = Vec::new();
    let mut packet = 0;
    for block in blocks {
        // Packets are numbered as Wireshark numbers frames: packet blocks only.
        let at = Location::Packet(packet + 1);
        let block =
            block.map_err(|e| fault(file, at, format!("corrupt or truncated record: {e}")))?;
        if matches!(
            block,
            PcapBlockOwned::Legacy(_)
                | PcapBlockOwned::NG(Block::EnhancedPacket(_) | Block::SimplePacket(_))
        ) {
            packet += 1;
        }
        let (linktype, data, time_us) = match block {
            PcapBlockOwned::LegacyHeader(h) => {
                legacy = Some((h.network, h.is_nanosecond_precision()));
                continue;
            }
            PcapBlockOwned::Legacy(b) => {
                let (linktype, nanos) = legacy.unwrap_or((Linktype::ETHERNET, false));
                let fraction = if nanos {
                    i64::from(b.ts_usec) / 1000
                } else {
                    i64::from(b.ts_usec)
                };
                let time = i64::from(b.ts_sec) * 1_000_000 + fraction;
                (linktype, b.data, Some(time))
            }
            PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                interfaces.clear();
                continue;
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                let resolution = idb.ts_resolution().unwrap_or(1_000_000);
                interfaces.push((idb.linktype, resolution, idb.ts_offset()));
                continue;
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let &(linktype, resolution, offset) =
                    interfaces.get(epb.if_id as usize).ok_or_else(|| {
                        fault(
                            file,
                            at,
                            format!(
                                "packet names interface {} which is not described",
                                epb.if_id
                            ),
                        )
                    })?;
                let (seconds, fraction) = epb.decode_ts(offset as u64, resolution);
                let micros = i64::from(fraction) * 1_000_000 / (resolution.max(1) as i64).max(1);
                let data = &epb.data[..(epb.caplen as usize).min(epb.data.len())];
                (
                    linktype,
                    data,
                    Some(i64::from(seconds) * 1_000_000 + micros),
                )
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                let linktype = interfaces.first().map_or(Linktype::ETHERNET, |i| i.0);
                (linktype, spb.data, None)
            }
            PcapBlockOwned::NG(_) => continue,
        };
        if let Some(segment) = slice(linktype, data, packet, time_us, file)? {
            out.push(segment);
        }
    }
    Ok(out)
}

/// The TCP segment in one packet, if it holds one.
fn slice<'a>(
    linktype: Linktype,
    data: &'a [u8],
    packet: usize,
    time_us: Option<i64>,
    file: &str,
) -> Result<Option<Segment<'a>>, CaptureError> {
    let at = Location::Packet(packet);
    let sliced = match linktype {
        Linktype::ETHERNET => SlicedPacket::from_ethernet(data),
        Linktype::LINUX_SLL => SlicedPacket::from_linux_sll(data),
        Linktype::RAW | Linktype::IPV4 | Linktype::IPV6 => SlicedPacket::from_ip(data),
        Linktype::NULL | Linktype::LOOP => match data.get(4..) {
            Some(rest) => SlicedPacket::from_ip(rest),
            None => return Err(fault(file, at, "loopback header truncated")),
        },
        other => {
            return Err(fault(
                file,
                at,
                format!(
                    "link type {other} is not supported (Ethernet, Linux SLL, raw IP, loopback are)"
                ),
            ));
        }
    };
    let sliced = match sliced {
        Ok(s) => s,
        // Not IP at all (ARP and the like) is no concern of ours; broken IP/TCP is.
        Err(etherparse::err::packet::SliceError::Len(e)) => {
            return Err(fault(file, at, format!("packet truncated: {e}")));
        }
        Err(e) => return Err(fault(file, at, format!("malformed packet: {e}"))),
    };
    let (Some(net), Some(TransportSlice::Tcp(tcp))) = (sliced.net.as_ref(), sliced.transport)
    else {
        return Ok(None);
    };
    let (source, destination): (IpAddr, IpAddr) = match net {
        etherparse::NetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        etherparse::NetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return Ok(None),
    };
    if tcp.rst() {
        return Ok(None);
    }
    Ok(Some(Segment {
        packet,
        time_us,
        source: SocketAddr::new(source, tcp.source_port()),
        destination: SocketAddr::new(destination, tcp.destination_port()),
        sequence: tcp.sequence_number(),
        syn: tcp.syn(),
        ack: tcp.ack(),
        payload: tcp.payload(),
    }))
}

/// Synthetic addresses of written captures: clients 10.0.0.1, the server 10.0.0.2.
const CLIENT_IP: [u8; 4] = [10, 0, 0, 1];
const SERVER_IP: [u8; 4] = [10, 0, 0, 2];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

/// A pcap (or pcapng) file of `capture`: Ethernet/IPv4/TCP, one connection per stream
/// (client port 40000 + stream), a handshake before its first frame, one PSH segment per
/// frame. Frames without a direction count as requests. Times missing are made up,
/// one millisecond apart.
pub fn to_pcap(capture: &Capture, link: &LinkOptions, ng: bool) -> std::io::Result<Vec<u8>> {
    let port = link.port.unwrap_or(8583);
    let mut packets: Vec<(i64, Vec<u8>)> = Vec::new();
    // Per stream: (client seq, server seq).
    let mut sequences: HashMap<u32, (u32, u32)> = HashMap::new();
    let mut last_time = 1_700_000_000_000_000_i64;
    let mut codec = link.codec;
    let invalid =
        |e: &dyn fmt::Display| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string());
    for c in &capture.frames {
        let time = c.time_us.unwrap_or(last_time + 1000).max(last_time);
        last_time = time;
        let client_port = 40000u16.wrapping_add(c.stream as u16);
        let build = |to_server: bool| {
            if to_server {
                PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC).ipv4(CLIENT_IP, SERVER_IP, 64)
            } else {
                PacketBuilder::ethernet2(SERVER_MAC, CLIENT_MAC).ipv4(SERVER_IP, CLIENT_IP, 64)
            }
        };
        let (client_port_s, server_port_s) = (client_port, port);
        let seqs = sequences.entry(c.stream).or_insert_with(|| {
            let (client_isn, server_isn) = (1000 + c.stream * 7919, 5000 + c.stream * 104_729);
            let mut handshake = |p: etherparse::PacketBuilderStep<etherparse::TcpHeader>| {
                let mut bytes = Vec::new();
                // Building into a Vec cannot fail for these sizes.
                let _ = p.write(&mut bytes, &[]);
                packets.push((time, bytes));
            };
            handshake(
                build(true)
                    .tcp(client_port_s, server_port_s, client_isn, 65535)
                    .syn(),
            );
            handshake(
                build(false)
                    .tcp(server_port_s, client_port_s, server_isn, 65535)
                    .syn()
                    .ack(client_isn + 1),
            );
            handshake(
                build(true)
                    .tcp(client_port_s, server_port_s, client_isn + 1, 65535)
                    .ack(server_isn + 1),
            );
            (client_isn + 1, server_isn + 1)
        });
        let header_len = codec.header_len().min(c.frame.len());
        let mut wire = BytesMut::new();
        codec
            .encode(
                Frame {
                    header: c.frame.slice(..header_len),
                    body: c.frame.slice(header_len..),
                },
                &mut wire,
            )
            .map_err(|e| invalid(&e))?;
        let to_server = c.direction != Some(Direction::FromServer);
        let (seq, ack) = if to_server { *seqs } else { (seqs.1, seqs.0) };
        let builder = if to_server {
            build(true).tcp(client_port, port, seq, 65535)
        } else {
            build(false).tcp(port, client_port, seq, 65535)
        };
        let mut bytes = Vec::new();
        builder
            .ack(ack)
            .psh()
            .write(&mut bytes, &wire)
            .map_err(|e| invalid(&e))?;
        packets.push((time, bytes));
        let advanced = seq.wrapping_add(wire.len() as u32);
        if to_server {
            seqs.0 = advanced;
        } else {
            seqs.1 = advanced;
        }
    }
    let serialize = |e| invalid(&format!("{e:?}"));
    let mut out = Vec::new();
    if ng {
        let mut shb = SectionHeaderBlock {
            block_type: 0,
            block_len1: 0,
            bom: pcap_parser::BOM_MAGIC,
            major_version: 1,
            minor_version: 0,
            section_len: -1,
            options: Vec::new(),
            block_len2: 0,
        };
        out.extend(shb.to_vec().map_err(serialize)?);
        let mut idb = InterfaceDescriptionBlock {
            block_type: 0,
            block_len1: 0,
            linktype: Linktype::ETHERNET,
            reserved: 0,
            snaplen: 65535,
            options: Vec::new(),
            block_len2: 0,
            if_tsresol: 6,
            if_tsoffset: 0,
        };
        out.extend(idb.to_vec().map_err(serialize)?);
        for (time, data) in &packets {
            let micros = *time as u64;
            let mut epb = EnhancedPacketBlock {
                block_type: 0,
                block_len1: 0,
                if_id: 0,
                ts_high: (micros >> 32) as u32,
                ts_low: micros as u32,
                caplen: data.len() as u32,
                origlen: data.len() as u32,
                data,
                options: Vec::new(),
                block_len2: 0,
            };
            out.extend(epb.to_vec().map_err(serialize)?);
        }
    } else {
        let mut header = PcapHeader::new();
        header.snaplen = 65535;
        header.network = Linktype::ETHERNET;
        out.extend(header.to_vec().map_err(serialize)?);
        for (time, data) in &packets {
            let mut record = LegacyPcapBlock {
                ts_sec: (time / 1_000_000) as u32,
                ts_usec: (time % 1_000_000) as u32,
                caplen: data.len() as u32,
                origlen: data.len() as u32,
                data,
            };
            out.extend(record.to_vec().map_err(serialize)?);
        }
    }
    Ok(out)
}

/// A failure of a tooling command and its exit code.
#[derive(Debug)]
pub enum CommandError {
    /// Bad usage or bad input (exit 2).
    Input(String),
    /// Anything else, replay mismatches included (exit 1).
    Other(String),
}

/// How the command line names a link for captures.
#[derive(Debug, Clone, clap::Args)]
pub struct LinkArgs {
    /// Framing of the link (binary2, binary2le, ascii4, bcd2).
    #[arg(long, default_value = "binary2")]
    pub framing: LengthHeader,
    /// Fixed header length (e.g. 5 for a TPDU) inside each frame.
    #[arg(long, default_value_t = 0)]
    pub header_len: usize,
    /// Server port of the streams in a pcap capture (default: guessed from the first SYN;
    /// 8583 when writing).
    #[arg(long)]
    pub port: Option<u16>,
}

impl LinkArgs {
    /// The options these arguments describe.
    pub fn options(&self) -> LinkOptions {
        LinkOptions {
            port: self.port,
            codec: FrameCodec::new(self.framing).with_header_len(self.header_len),
        }
    }
}

/// `replenish capture ...`.
#[derive(Debug, clap::Subcommand)]
pub enum CaptureCommand {
    /// Convert a capture between text, pcap and pcapng (the output's extension decides:
    /// .pcap, .pcapng, anything else text).
    Convert {
        /// The capture to read (any format).
        input: PathBuf,
        /// The capture to write.
        output: PathBuf,
        #[command(flatten)]
        link: LinkArgs,
    },
}

/// Runs a `capture` subcommand.
pub fn command(command: &CaptureCommand) -> Result<(), CommandError> {
    match command {
        CaptureCommand::Convert {
            input,
            output,
            link,
        } => {
            let link = link.options();
            let capture = read(input, &link).map_err(|e| CommandError::Input(e.to_string()))?;
            write(output, &capture, &link)
                .map_err(|e| CommandError::Other(format!("{}: {e}", output.display())))?;
            println!(
                "{}: {} frame(s) written to {}",
                input.display(),
                capture.frames.len(),
                output.display()
            );
            Ok(())
        }
    }
}

/// What a recorded capture holds in place of a sold PIN: one `*` per character, so the
/// frame keeps its length and decodes.
const WITHHELD: u8 = b'*';

/// `message` encoded with a sale's PIN (DE63) replaced by `*`s, for a capture that is
/// written to a file; `None` when it carries no PIN (or does not encode).
pub fn without_pin(spec: &Spec, message: &Message) -> Option<Bytes> {
    let pin = message
        .get(63)
        .filter(|_| iso8583::carries_pin(message, 63))?;
    let mut withheld = message.clone();
    withheld.set(63, vec![WITHHELD; pin.len()]);
    iso8583::encode_to_bytes(spec, &withheld).ok()
}

/// Whether field `number` of a recorded message is a PIN withheld by [`without_pin`]:
/// replay does not compare it (each sale draws its own PIN).
pub fn pin_withheld(recorded: &Message, number: u8) -> bool {
    iso8583::carries_pin(recorded, number)
        && recorded
            .get(number)
            .is_some_and(|v| !v.is_empty() && v.iter().all(|b| *b == WITHHELD))
}

/// A message's JSON form with account numbers masked and secrets redacted.
pub fn masked_json(spec: &Spec, message: &Message) -> serde_json::Value {
    let mut json = iso8583::to_json(spec, message);
    let masking = message.masking();
    if let Some(fields) = json.get_mut("fields").and_then(|f| f.as_object_mut()) {
        for (number, value) in message.fields() {
            let default = Masking::default();
            let hidden = masking.pan.contains(number)
                || masking.redact.contains(number)
                || default.pan.contains(number)
                || default.redact.contains(number)
                || iso8583::carries_pin(message, number);
            if hidden {
                let shown = masking.at_least_default().show_in(message, number, value);
                fields.insert(number.to_string(), shown.into());
            }
        }
    }
    json
}

/// `replenish decode --capture`: every frame of a capture, one JSON line each (or a
/// masked listing with `pretty`), with where and when it was seen and which way it went.
/// Account numbers are masked and secrets redacted in both forms. Returns how many
/// frames did not decode (each reported in place).
pub fn list(
    spec: &Spec,
    capture: &Capture,
    header_len: usize,
    pretty: bool,
    out: &mut impl std::io::Write,
) -> std::io::Result<usize> {
    let mut failures = 0;
    for (index, c) in capture.frames.iter().enumerate() {
        let time = c.time_us.map(format_time);
        let direction = c.direction.map(|d| d.sign().to_string());
        let decoded = crate::wire::iso8583::decode(spec, &c.body(header_len));
        if pretty {
            let mut head = format!("# {} ({})", index + 1, c.at);
            for part in [time.as_deref(), direction.as_deref()]
                .into_iter()
                .flatten()
            {
                head.push(' ');
                head.push_str(part);
            }
            head.push_str(&format!(" connection {}", c.stream));
            writeln!(out, "{head}")?;
            match &decoded {
                Ok(m) => writeln!(out, "{}", iso8583::pretty(spec, m))?,
                Err(e) => {
                    failures += 1;
                    writeln!(out, "error: {e}\n")?;
                }
            }
        } else {
            let mut line = serde_json::Map::new();
            line.insert("at".into(), c.at.to_string().into());
            if let Some(t) = time {
                line.insert("time".into(), t.into());
            }
            if let Some(d) = direction {
                line.insert("direction".into(), d.into());
            }
            line.insert("connection".into(), c.stream.into());
            match &decoded {
                Ok(m) => {
                    line.insert("message".into(), masked_json(spec, m));
                }
                Err(e) => {
                    failures += 1;
                    line.insert("error".into(), e.to_string().into());
                }
            }
            writeln!(out, "{}", serde_json::Value::Object(line))?;
        }
    }
    Ok(failures)
}

/// `replenish decode --capture FILE`: lists the capture; exit 2 when it cannot be read
/// or a frame does not decode.
pub fn decode_command(
    path: &Path,
    spec: &Spec,
    link: &LinkArgs,
    pretty: bool,
) -> Result<(), CommandError> {
    let options = link.options();
    let capture = read(path, &options).map_err(|e| CommandError::Input(e.to_string()))?;
    let failures = list(
        spec,
        &capture,
        options.codec.header_len(),
        pretty,
        &mut std::io::stdout().lock(),
    )
    .map_err(|e| CommandError::Other(e.to_string()))?;
    match failures {
        0 => Ok(()),
        n => Err(CommandError::Input(format!(
            "{}: {n} message(s) could not be decoded",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> LinkOptions {
        LinkOptions {
            port: Some(8583),
            codec: FrameCodec::new(LengthHeader::Binary2),
        }
    }

    /// A frame on the wire: 2-byte length, then `body`.
    fn wire(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    /// An Ethernet/IPv4/TCP packet from the client (port 40000) to the server or back.
    fn packet(to_server: bool, seq: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
        let step = if to_server {
            PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
                .ipv4(CLIENT_IP, SERVER_IP, 64)
                .tcp(40000, 8583, seq, 65535)
        } else {
            PacketBuilder::ethernet2(SERVER_MAC, CLIENT_MAC)
                .ipv4(SERVER_IP, CLIENT_IP, 64)
                .tcp(8583, 40000, seq, 65535)
        };
        let step = if syn { step.syn() } else { step.ack(1).psh() };
        let mut out = Vec::new();
        step.write(&mut out, payload).expect("packet");
        out
    }

    fn pcap_of(packets: &[Vec<u8>]) -> Vec<u8> {
        let mut header = PcapHeader::new();
        header.snaplen = 65535;
        let mut out = header.to_vec().expect("header");
        for (i, data) in packets.iter().enumerate() {
            let mut record = LegacyPcapBlock {
                ts_sec: 1_700_000_000,
                ts_usec: i as u32,
                caplen: data.len() as u32,
                origlen: data.len() as u32,
                data,
            };
            out.extend(record.to_vec().expect("record"));
        }
        out
    }

    fn bodies(capture: &Capture) -> Vec<(&[u8], Option<Direction>)> {
        capture
            .frames
            .iter()
            .map(|c| (&c.frame[..], c.direction))
            .collect()
    }

    #[test]
    fn text_lines_carry_comments_timestamps_and_directions() {
        let text = "# a capture\n\
                    \n\
                    2026-11-23T11:45:48.123456Z > 3038 3030\n\
                    1700000000.5 < 30383130\n\
                    \x20  # indented comment\n\
                    30383030\n";
        let capture = parse_text(text, "t.txt").expect("parses");
        assert_eq!(capture.frames.len(), 3);
        let [a, b, c] = &capture.frames[..] else {
            panic!("three frames")
        };
        assert_eq!(&a.frame[..], b"0800");
        assert_eq!(a.direction, Some(Direction::ToServer));
        assert_eq!(a.time_us, Some(1_795_434_348_123_456));
        assert_eq!(a.at, Location::Line(3));
        assert_eq!(b.direction, Some(Direction::FromServer));
        assert_eq!(b.time_us, Some(1_700_000_000_500_000));
        assert_eq!(
            (c.direction, c.time_us, c.at),
            (None, None, Location::Line(6))
        );
        let again = parse_text(&to_text(&capture), "again").expect("round trip");
        assert_eq!(bodies(&again), bodies(&capture));
        let mut two = capture.clone();
        two.frames[2].stream = 1;
        let text = to_text(&two);
        assert!(text.contains("\n# connection 1\n"), "{text}");
        let back = parse_text(&text, "two").expect("two connections");
        assert_eq!(
            back.frames.iter().map(|c| c.stream).collect::<Vec<_>>(),
            vec![0, 0, 1]
        );
        assert_eq!(again.frames[0].time_us, a.time_us);
    }

    #[test]
    fn bad_text_names_file_and_line() {
        let e = parse_text("# ok\n> 3038\n< 30XZ\n", "bad.txt").expect_err("bad hex");
        assert_eq!(e.at, Location::Line(3));
        assert!(e.to_string().starts_with("bad.txt: line 3: not hex"), "{e}");
        let e = parse_text("2026-13-45T00:00:00Z > 30\n", "bad.txt").expect_err("bad time");
        assert!(e.to_string().contains("line 1: bad timestamp"), "{e}");
        let e = parse_text("> \n", "bad.txt").expect_err("no message");
        assert_eq!(e.at, Location::Line(1));
    }

    #[test]
    fn written_pcap_and_pcapng_read_back() {
        let capture = parse_text(
            "1700000000.000001 > 30323030\n1700000000.000900 < 3032313000\n> 3038\n",
            "t",
        )
        .expect("text");
        for ng in [false, true] {
            let bytes = to_pcap(&capture, &link(), ng).expect("written");
            assert_eq!(
                Format::sniff(&bytes),
                if ng { Format::PcapNg } else { Format::Pcap }
            );
            let back = parse(&bytes, "w", &link()).expect("reads back");
            assert_eq!(
                bodies(&back),
                bodies(&parse_text("> 30323030\n< 3032313000\n> 3038\n", "t").expect("t"))
            );
            assert_eq!(back.frames[0].time_us, Some(1_700_000_000_000_001));
            assert_eq!(back.frames[1].time_us, Some(1_700_000_000_000_900));
            // The handshake takes packets 1-3; the first frame is packet 4.
            assert_eq!(back.frames[0].at, Location::Packet(4));
            let guessed = LinkOptions {
                port: None,
                ..link()
            };
            assert_eq!(parse(&bytes, "w", &guessed).expect("port guessed"), back);
        }
    }

    #[test]
    fn frames_split_across_segments_and_coalesced_in_one_are_reassembled() {
        let one = wire(b"0200AAAA");
        let two = wire(b"0200BBBBBB");
        let mut both = one.clone();
        both.extend_from_slice(&two);
        // Client ISN 100: data starts at 101. Split one frame over three segments, then
        // two frames in one segment.
        let packets = vec![
            packet(true, 100, true, &[]),
            packet(true, 101, false, &one[..1]),
            packet(true, 102, false, &one[1..5]),
            packet(true, 106, false, &one[5..]),
            packet(true, 101 + one.len() as u32, false, &both),
        ];
        let capture = parse(&pcap_of(&packets), "p.pcap", &link()).expect("reassembled");
        let got: Vec<&[u8]> = capture.frames.iter().map(|c| &c.frame[..]).collect();
        assert_eq!(got, vec![&b"0200AAAA"[..], b"0200AAAA", b"0200BBBBBB"]);
        assert_eq!(
            capture.frames[0].at,
            Location::Packet(4),
            "completed by packet 4"
        );
    }

    #[test]
    fn retransmissions_are_dropped_and_out_of_order_segments_put_in_order() {
        let one = wire(b"0200AAAA");
        let two = wire(b"0200BBBB");
        let base = 101u32;
        let second = base + one.len() as u32;
        let packets = vec![
            packet(true, 100, true, &[]),
            packet(true, second, false, &two), // arrives before the first
            packet(true, base, false, &one),
            packet(true, base, false, &one),          // retransmitted
            packet(true, base + 2, false, &one[2..]), // overlapping retransmission
            packet(false, 500, false, &wire(b"0210AAAA")),
        ];
        let capture = parse(&pcap_of(&packets), "p.pcap", &link()).expect("reassembled");
        assert_eq!(
            bodies(&capture),
            vec![
                (&b"0200AAAA"[..], Some(Direction::ToServer)),
                (&b"0200BBBB"[..], Some(Direction::ToServer)),
                (&b"0210AAAA"[..], Some(Direction::FromServer)),
            ]
        );
    }

    #[test]
    fn a_lost_segment_is_rejected_naming_the_packet_after_the_gap() {
        let one = wire(b"0200AAAA");
        let packets = vec![
            packet(true, 100, true, &[]),
            packet(true, 101, false, &one[..3]),
            packet(true, 101 + 5, false, &one[5..]),
        ];
        let e = parse(&pcap_of(&packets), "lost.pcap", &link()).expect_err("gap");
        assert_eq!(e.at, Location::Packet(3));
        assert!(
            e.to_string()
                .starts_with("lost.pcap: packet 3: TCP stream 0"),
            "{e}"
        );
        assert!(e.reason.contains("2 byte(s) missing"), "{e}");
    }

    #[test]
    fn broken_packet_files_name_the_packet() {
        let packets = vec![
            packet(true, 100, true, &[]),
            packet(true, 101, false, &wire(b"0800")),
        ];
        let mut bytes = pcap_of(&packets);
        bytes.truncate(bytes.len() - 3);
        let e = parse(&bytes, "cut.pcap", &link()).expect_err("truncated");
        assert_eq!(e.at, Location::Packet(2), "{e}");
        let framing = parse(
            &pcap_of(&[
                packets[0].clone(),
                packet(true, 101, false, &[0xFF, 0xFF, 1]),
            ]),
            "big.pcap",
            &link(),
        )
        .expect_err("frame too long");
        assert!(
            framing
                .to_string()
                .starts_with("big.pcap: packet 2: framing (binary2)"),
            "{framing}"
        );
        let ends = parse(
            &pcap_of(&[packets[0].clone(), packet(true, 101, false, &[0, 9, 1])]),
            "end.pcap",
            &link(),
        )
        .expect_err("ends inside a frame");
        assert!(ends.to_string().contains("ends inside a frame"), "{ends}");
    }
}
