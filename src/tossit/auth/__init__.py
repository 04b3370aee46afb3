"""Authentication shared by every TossIt process.

- ``keys``: user API keys (ids, secrets derived from a master key, hashes, roles).
- ``mac``: the HMAC that authenticates every brain<->node and node<->node request.
- ``secretfile``: secrets on disk, readable by their owner only.
- ``binding``: the refusal to listen on a network without authentication.

See docs/security.md for what is authenticated and what is not.
"""
