"""Ingest: open cameras with timeouts, reconnect with backoff, watch for stalls, decode by
policy (keyframes only or sampled), and hand analysed frames on."""
