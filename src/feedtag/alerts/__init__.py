"""Alert delivery: which events go where (routes), signed webhooks, and the outbox
dispatcher that sends what the store writer queued."""
