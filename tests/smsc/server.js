// A real SMSC for the tests: the npm `smpp` package's server. Usage:
//   node server.js PORT SYSTEM_ID PASSWORD OUT_FILE
// PORT 0 picks a free port; the first line on stdout is "listening PORT". Binds as a
// transmitter with SYSTEM_ID and PASSWORD (anything else: ESME_RBINDFAIL), answers
// enquire_link and unbind, and writes every submit_sm as one JSON line to OUT_FILE
// before answering it with a message_id. Knobs (environment):
//   SMSC_CLOSE_AFTER=N  close the connection after every N-th submit_sm (answered first)
//   SMSC_FAIL_FIRST=N   answer the first N submit_sm with ESME_RSYSERR (nothing written)
'use strict';
const fs = require('fs');
const smpp = require('smpp');

const [port, systemId, password, outFile] = process.argv.slice(2);
const closeAfter = parseInt(process.env.SMSC_CLOSE_AFTER || '0', 10);
let failFirst = parseInt(process.env.SMSC_FAIL_FIRST || '0', 10);
let received = 0;

function text(message) {
  const body = message && message.message !== undefined ? message.message : message;
  return Buffer.isBuffer(body) ? body.toString('latin1') : String(body);
}

const server = smpp.createServer({}, (session) => {
  session.on('error', () => {});
  session.on('bind_transmitter', (pdu) => {
    if (pdu.system_id !== systemId || pdu.password !== password) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    session.send(pdu.response({ system_id: 'test-smsc' }));
  });
  session.on('submit_sm', (pdu) => {
    if (failFirst > 0) {
      failFirst -= 1;
      session.send(pdu.response({ command_status: smpp.ESME_RSYSERR }));
      return;
    }
    received += 1;
    const line = {
      source_addr: pdu.source_addr,
      destination_addr: pdu.destination_addr,
      short_message: text(pdu.short_message),
      esm_class: pdu.esm_class,
      data_coding: pdu.data_coding,
      registered_delivery: pdu.registered_delivery,
    };
    fs.appendFileSync(outFile, JSON.stringify(line) + '\n');
    session.send(pdu.response({ message_id: String(received) }));
    if (closeAfter > 0 && received % closeAfter === 0) {
      setTimeout(() => session.close(), 20);
    }
  });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.close();
  });
});

server.listen(parseInt(port, 10), '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
