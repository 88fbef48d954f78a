// A real SMSC for the tests: the npm `smpp` package's server. Usage:
//   node server.js PORT SYSTEM_ID PASSWORD OUT_FILE
// PORT 0 picks a free port; the first line on stdout is "listening PORT". Binds as a
// transmitter with SYSTEM_ID and PASSWORD (anything else: ESME_RBINDFAIL, then closes),
// refuses submit_sm before a bind (ESME_RINVBNDSTS), answers enquire_link and unbind,
// and writes every submit_sm as one JSON line to OUT_FILE before answering it with a
// message_id. What happens on the sessions (binds, enquire_link, unbind, answers to the
// server's own requests) goes to OUT_FILE.events, one JSON line each. Knobs (environment):
//   SMSC_CLOSE_AFTER=N  close the connection after every N-th submit_sm (answered first)
//   SMSC_FAIL_FIRST=N   answer the first N submit_sm with ESME_RSYSERR (nothing written)
//   SMSC_PROBE=1        after each answered submit_sm, send the client an enquire_link,
//                       and once it is answered an unbind (closing when that is answered)
'use strict';
const fs = require('fs');
const smpp = require('smpp');

const [port, systemId, password, outFile] = process.argv.slice(2);
const eventsFile = `${outFile}.events`;
const closeAfter = parseInt(process.env.SMSC_CLOSE_AFTER || '0', 10);
const probe = process.env.SMSC_PROBE === '1';
let failFirst = parseInt(process.env.SMSC_FAIL_FIRST || '0', 10);
let received = 0;

function text(message) {
  const body = message && message.message !== undefined ? message.message : message;
  return Buffer.isBuffer(body) ? body.toString('latin1') : String(body);
}

function event(name, fields) {
  fs.appendFileSync(eventsFile, JSON.stringify({ event: name, ...fields }) + '\n');
}

// The server's own enquire_link, then its unbind, each recorded when answered.
function probeClient(session) {
  session.enquire_link({}, (resp) => {
    event('enquire_link_resp', { command_status: resp.command_status });
    session.unbind({}, (unbound) => {
      event('unbind_resp', { command_status: unbound.command_status });
      session.close();
    });
  });
}

const server = smpp.createServer({}, (session) => {
  let bound = false;
  session.on('error', () => {});
  session.on('bind_transmitter', (pdu) => {
    event('bind_transmitter', {
      system_id: pdu.system_id,
      system_type: pdu.system_type,
      interface_version: pdu.interface_version,
    });
    if (pdu.system_id !== systemId || pdu.password !== password) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    bound = true;
    session.send(pdu.response({ system_id: 'test-smsc' }));
  });
  session.on('submit_sm', (pdu) => {
    if (!bound) {
      session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
      return;
    }
    if (failFirst > 0) {
      failFirst -= 1;
      session.send(pdu.response({ command_status: smpp.ESME_RSYSERR }));
      return;
    }
    received += 1;
    const line = {
      source_addr: pdu.source_addr,
      source_addr_ton: pdu.source_addr_ton,
      destination_addr: pdu.destination_addr,
      dest_addr_ton: pdu.dest_addr_ton,
      dest_addr_npi: pdu.dest_addr_npi,
      short_message: text(pdu.short_message),
      esm_class: pdu.esm_class,
      data_coding: pdu.data_coding,
      registered_delivery: pdu.registered_delivery,
    };
    fs.appendFileSync(outFile, JSON.stringify(line) + '\n');
    session.send(pdu.response({ message_id: String(received) }));
    if (closeAfter > 0 && received % closeAfter === 0) {
      setTimeout(() => session.close(), 20);
    } else if (probe) {
      setTimeout(() => probeClient(session), 20);
    }
  });
  session.on('enquire_link', (pdu) => {
    event('enquire_link', {});
    session.send(pdu.response());
  });
  session.on('unbind', (pdu) => {
    event('unbind', {});
    session.send(pdu.response());
    session.close();
  });
});

server.listen(parseInt(port, 10), '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
