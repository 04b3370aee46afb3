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
