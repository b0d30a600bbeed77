-- The recipients an email or SMS still has to reach.
--
-- A message some recipients accepted was marked delivered, the others' refusals only
-- noted, so a recipient refused for the moment (SMTP 4xx: greylisting, a full mailbox;
-- an SMS gateway's 429 or 5xx, or no answer) never got it; retrying the whole message
-- would send it again to everyone who had it. Such a message now stays pending with the
-- recipients refused for now, and its retries go to them only. A permanent refusal
-- (SMTP 5xx, any other HTTP 4xx) is noted and not retried, as before.
ALTER TABLE perfmon.alert_outbox ADD COLUMN recipients_left text[];
COMMENT ON COLUMN perfmon.alert_outbox.recipients_left IS
    'Of a message other recipients accepted: the recipients that refused it for now, whom its '
    'next attempts are sent to (and no one else). NULL: every recipient of the channel.';
