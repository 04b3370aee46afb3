"""The S3 API: a thin translation of S3 requests onto the object store the REST
API uses (the same write path, ``tossit.brain.ingest``; the same read path,
``tossit.brain.reader``; the same deletes, ``tossit.brain.commits``).

One module per concern, as Garage lays its S3 layer out: ``router`` (which
operation a request is), ``signature`` (SigV4, presigned URLs, aws-chunked
bodies), ``errors`` and ``xml`` (the wire formats), ``checksums``, and one
module per operation family: ``bucket``, ``put``, ``get``, ``listing``,
``delete``, ``copy``. ``app`` assembles them into the ASGI app served on
``s3_port``.
"""
