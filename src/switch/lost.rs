//! A lost advice credited: a reconciliation break of class `missing_at_switch` is a
//! transaction the bank approved that never reached the switch. Resubmitting it
//! decides it now as the `0220` advice the switch should have received, with the key,
//! account, amount and references of the bank's line, through the ordinary advice path
//! (so it is credited once, and a late copy of it is recognised), and closes the break
//! with the confirmation number.

use super::advise::{ResubmitError, Resubmitted};
use super::decide::{Decider, Link, SwitchError};
use crate::durable::record::{BreakResolution, LostAdvice, Record};
use crate::wire::iso8583::{Message, Mti};

impl Decider {
    /// Resubmits exception-queue item `id` as `by`: an advice that could not be
    /// credited, or a reconciliation break that is a lost advice. Blocks until durable.
    pub fn resubmit_item(&self, id: u64, by: &str) -> Result<Resubmitted, ResubmitError> {
        if self
            .store
            .break_item(id)
            .map_err(SwitchError::from)?
            .is_some()
        {
            return self.credit_lost_advice(id, by);
        }
        let done = self.resubmit(id, by)?;
        self.journal
            .wait_durable_blocking(done.seq)
            .map_err(SwitchError::from)?;
        Ok(done)
    }

    /// Credits break `id` (a lost advice) as `by`.
    pub fn credit_lost_advice(&self, id: u64, by: &str) -> Result<Resubmitted, ResubmitError> {
        let item = (self.store.break_item(id))
            .map_err(SwitchError::from)?
            .ok_or(ResubmitError::NotFound(id))?;
        if let Some(done) = &item.resolved {
            return Err(ResubmitError::Done {
                id,
                by: done.by.clone(),
                confirmation: done
                    .confirmation
                    .clone()
                    .unwrap_or_else(|| done.note.clone()),
            });
        }
        let lost = item
            .found
            .lost
            .as_ref()
            .ok_or_else(|| ResubmitError::Unroutable {
                id,
                reason: format!(
                    "a {} break is not an approved payment lost on its way: resolve it with a note",
                    item.found.class
                ),
            })?;
        let link = Link {
            name: lost.link.clone(),
            acquirer_id: lost.acquirer_id.clone(),
        };
        let Some(message) = advice(lost) else {
            return Err(ResubmitError::NotFound(id));
        };
        let outcome = self.decide(&message, &link)?;
        let Some(confirmation) = outcome.confirmation else {
            return Err(ResubmitError::Unroutable {
                id,
                reason: format!(
                    "the advice was answered {} but not credited (see the exception queue)",
                    outcome.code.as_str()
                ),
            });
        };
        let resolution = BreakResolution {
            id,
            by: by.to_owned(),
            at_ms: (self.clock)().timestamp_millis(),
            note: "lost advice credited".into(),
            confirmation: Some(confirmation.clone()),
        };
        let seqs = self.journal_records(&[Record::BreakResolved(resolution)])?;
        Ok(Resubmitted {
            confirmation,
            seq: seqs.last().copied().unwrap_or(outcome.seq),
        })
    }
}

/// The `0220` the bank's line describes.
fn advice(lost: &LostAdvice) -> Option<Message> {
    let mut message = Message::new(Mti::new(b"0220")?);
    let transfer = lost.processing_code.starts_with("40");
    message.set(2, lost.account.clone());
    if transfer {
        message.set(103, lost.account.clone());
    }
    message.set(3, lost.processing_code.clone());
    message.set(4, format!("{:012}", lost.amount));
    message.set(7, lost.transmission.clone());
    message.set(11, lost.stan.clone());
    message.set(32, lost.acquirer_id.clone());
    if !lost.rrn.is_empty() {
        message.set(37, lost.rrn.clone());
    }
    message.set(41, lost.terminal.clone());
    message.set(49, lost.currency.clone());
    Some(message)
}
