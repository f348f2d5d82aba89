-- Where the outcome of a done asynchronous invocation was sent (its
-- on-success or on-failure destination: function:NAME or topic:NAME) and
-- whether it got there (delivered, failed); empty otherwise.
ALTER TABLE async_invocations ADD COLUMN destination TEXT NOT NULL DEFAULT '';
ALTER TABLE async_invocations ADD COLUMN destination_state TEXT NOT NULL DEFAULT '';
