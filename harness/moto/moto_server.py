"""moto's server with two faults of its SQS backend worked around, for the harness.

Started by `harness/src/moto.rs` with the Python of the venv that holds `moto_server`
(arguments as `moto_server`'s). Nothing else differs from `moto_server`.

1. Its queue's requests are not safe against each other: `Queue.delete_message`
   replaces the message list with a new one (a message sent meanwhile is lost),
   `receive_message` moving a message at the redrive's `maxReceiveCount` to the
   dead-letter queue removes it from the list another receive may already have removed
   it from (`ValueError: list.remove(x): x not in list`, HTTP 500), and iterates the
   pending set while another request changes it (`RuntimeError: Set changed size during
   iteration`, HTTP 500). Ten pollers receiving at once, with records reaching the
   redrive, met these on every poll. Here every SQS request that reads or changes
   messages holds one lock, released while a long poll waits.
2. `send_message` reads `queue.attributes` (every attribute, three of them counting
   the whole queue) for one flag, and `receive_message` reads every attribute twice for
   each message it returns (for the retention period), so each message sent or received
   costs time in proportion to the queue's length: 10,000 messages took about 18 minutes
   to queue, and with 13,000 queued each receive took about 13 s. `Queue.delete_message`
   goes through the whole queue twice a message. Here a send reads only the flag, a
   receive only the retention period, and a delete looks among the messages in flight
   first and goes through the queue once. `Queue.messages` (the visible ones, read by
   every receive) reads the clock twice a message, through `datetime`: here once.
"""

import sys
import threading

from moto.sqs import models

_lock = threading.RLock()
_sending = threading.local()


def _locked(method):
    def wrapper(*args, **kwargs):
        with _lock:
            return method(*args, **kwargs)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def _sends(method):
    def wrapper(*args, **kwargs):
        depth = getattr(_sending, "depth", 0)
        _sending.depth = depth + 1
        try:
            with _lock:
                return method(*args, **kwargs)
        finally:
            _sending.depth = depth

    wrapper.__name__ = method.__name__
    return wrapper


for name in (
    "receive_message",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "purge_queue",
    "get_queue_attributes",
):
    if hasattr(models.SQSBackend, name):
        setattr(models.SQSBackend, name, _locked(getattr(models.SQSBackend, name)))
for name in ("send_message", "send_message_batch"):
    setattr(models.SQSBackend, name, _sends(getattr(models.SQSBackend, name)))

_attributes = models.Queue.attributes.fget


def _attributes_while_sending(self):
    if getattr(_sending, "depth", 0) == 0:
        return _attributes(self)
    # What a send reads: only whether the queue deduplicates by content.
    if self.fifo_queue and str(getattr(self, "content_based_deduplication", False)).lower() == "true":
        return {"ContentBasedDeduplication": "true"}
    return {}


models.Queue.attributes = property(_attributes_while_sending)


def _retained(self, queue_name, message):
    queue = self.get_queue(queue_name)
    retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000
    return retain_until > models.unix_time()


models.SQSBackend.is_message_valid_based_on_retention_period = _retained


def _delete(self, receipt_handle):
    if receipt_handle in self.deleted_messages:
        return
    found = [m for m in self.pending_messages if m.had_receipt_handle(receipt_handle)]
    if not found:
        found = [m for m in self._messages if m.had_receipt_handle(receipt_handle)]
    if not found:
        raise models.ReceiptHandleIsInvalid()
    for message in found:
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)
    gone = {id(m) for m in found}
    self._messages = [m for m in self._messages if id(m) not in gone]


models.Queue.delete_message = _delete


def _visible(self):
    now = models.unix_time_millis()
    return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]


models.Queue.messages = property(_visible)

_wait = models.Queue.wait_for_messages


def _wait_unlocked(self, timeout):
    # A long poll waits without the lock, so that sends and other receives go on.
    state = _lock._release_save()
    try:
        _wait(self, timeout)
    finally:
        _lock._acquire_restore(state)


models.Queue.wait_for_messages = _wait_unlocked

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
