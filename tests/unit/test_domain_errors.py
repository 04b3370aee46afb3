"""Domain errors carry no HTTP status: one table maps them for the REST API."""

from __future__ import annotations

from tossit import errors
from tossit.errors import HTTP_STATUS, NameTaken, NotEnoughNodes, TossitError, http_status


def test_every_domain_error_has_its_rest_status() -> None:
    """A new domain error must be added to the table (else it would answer 500)."""
    defined = {obj for obj in vars(errors).values()
               if isinstance(obj, type) and issubclass(obj, TossitError) and obj is not TossitError}
    assert defined and defined <= set(HTTP_STATUS), defined - set(HTTP_STATUS)
    assert not hasattr(TossitError("x"), "status")  # the core knows no HTTP


def test_status_and_body() -> None:
    exc = NotEnoughNodes(2, 1, "nodes that are online and not full")
    assert http_status(exc) == 503
    assert exc.body() == {
        "error": "not_enough_nodes", "needed": 2, "available": 1,
        "message": "not enough storage nodes to store the data safely: 2 needed, 1 available "
                   "(nodes that are online and not full)"}
    assert http_status(NameTaken("default", "a.txt")) == 409

    class Later(NotEnoughNodes):  # a subclass answers as its parent
        pass

    assert http_status(Later(1, 0)) == 503

    class Unmapped(TossitError):
        code = "unmapped"

    assert http_status(Unmapped("?")) == 500


def test_a_brain_that_lost_the_lead_and_a_full_metadata_disk_answer_clearly() -> None:
    """Neither is an internal error: the client is told to retry (503 with
    Retry-After), or that the brain's own disk is full (507); S3 clients get
    ServiceUnavailable, which they retry."""
    from tossit.brain.s3.errors import from_domain
    from tossit.errors import MetadataFull, NotLeader, json_error

    lost = NotLeader("this brain is not the leader any more: retry")
    answer = json_error(lost)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
    assert b'"error":"not_leader"' in answer.body
    full = MetadataFull("the disk of /srv/tossit/brain is full: 12 KiB free")
    assert http_status(full) == 507 and full.code == "metadata_disk_full"
    assert "12 KiB free" in full.message and "the change was not made" in full.message
    assert {from_domain(lost).code, from_domain(full).code} == {"ServiceUnavailable"}
