"""ACLs as they are in TossIt: every bucket and object belongs to the cluster
(``bucket.OWNER_ID``) and every key of the cluster may read it; nobody else.

GetBucketAcl and GetObjectAcl tell that truth as AWS shows a private object:
the owner and one FULL_CONTROL grant to it. PutBucketAcl and PutObjectAcl
accept only what would change nothing (the canned ACL ``private``, or a policy
granting FULL_CONTROL to the owner alone) and answer 501 to anything else:
TossIt cannot grant others, nor take the cluster's keys' access away, and a
success would say it had. Many tools read ACLs (s3cmd info, backup tools) or
set ``private`` while setting up; that is why these are not simply 501.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from starlette.responses import Response

from tossit.brain.models import Object
from tossit.brain.s3.bucket import OWNER_ID, xml_response
from tossit.brain.s3.context import S3Context
from tossit.brain.s3.errors import S3Error, not_implemented
from tossit.brain.s3.xml import document, el, local_name, owner, parse_body

XSI = "http://www.w3.org/2001/XMLSchema-instance"
# The canned ACLs that are what everything has: ``bucket-owner-full-control``
# gives the bucket's owner, the cluster, what it has already.
PRIVATE_CANNED = frozenset({"private", "bucket-owner-full-control"})
MAX_ACL_BODY = 64 * 1024  # a policy of the owner's grant is a few hundred bytes
_CANNOT_GRANT = "(everything belongs to the cluster and is readable by its keys only)"


def policy_document() -> bytes:
    """The AccessControlPolicy of every bucket and object: private to the owner."""
    grantee = (f'<Grantee xmlns:xsi="{XSI}" xsi:type="CanonicalUser">'
               f"{el('ID', OWNER_ID)}{el('DisplayName', OWNER_ID)}</Grantee>")
    grant = f"<Grant>{grantee}{el('Permission', 'FULL_CONTROL')}</Grant>"
    return document("AccessControlPolicy", [
        owner(OWNER_ID, OWNER_ID), f"<AccessControlList>{grant}</AccessControlList>"])


def _text(parent: ET.Element, name: str) -> str | None:
    """The stripped text of ``parent``'s child ``name`` (any namespace); None without one."""
    child = next((c for c in parent if local_name(c.tag) == name), None)
    return None if child is None else (child.text or "").strip()


def _is_owners_full_control(grant: ET.Element) -> bool:
    """Whether a Grant is FULL_CONTROL to the owner, by its canonical id."""
    grantee = next((c for c in grant if local_name(c.tag) == "Grantee"), None)
    permission = _text(grant, "Permission")
    if grantee is None or permission is None:
        raise S3Error("MalformedXML", "every Grant needs a Grantee and a Permission")
    kind = grantee.get(f"{{{XSI}}}type", "CanonicalUser")
    return kind == "CanonicalUser" and _text(grantee, "ID") == OWNER_ID \
        and permission == "FULL_CONTROL"


def check_policy(body: bytes) -> None:
    """Accept an AccessControlPolicy that is the one everything has (the owner
    kept, FULL_CONTROL to it and to nobody else); 501 for any other, which
    TossIt could not make true. An empty list of grants is refused too: it
    would take the cluster's keys' access away."""
    root = parse_body(body)
    if local_name(root.tag) != "AccessControlPolicy":
        raise S3Error("MalformedXML", "the body's root element must be AccessControlPolicy")
    owner_elem = next((c for c in root if local_name(c.tag) == "Owner"), None)
    if owner_elem is not None and _text(owner_elem, "ID") not in (None, OWNER_ID):
        raise not_implemented(f"changing the owner {_CANNOT_GRANT}")
    acl = next((c for c in root if local_name(c.tag) == "AccessControlList"), None)
    grants = [] if acl is None else [g for g in acl if local_name(g.tag) == "Grant"]
    if not grants or not all(_is_owners_full_control(g) for g in grants):
        raise not_implemented(f"an ACL other than the owner's FULL_CONTROL {_CANNOT_GRANT}")


def check_unchanged(canned: str | None, body: bytes) -> None:
    """A PUT ?acl that changes nothing passes: ``x-amz-acl: private``, a policy
    that is the private one, or neither (nothing asked). Anything else is 501.
    (The router already refuses other canned ACLs and x-amz-grant-* headers.)"""
    if canned is not None:
        if body.strip():
            raise S3Error("InvalidRequest", "give either the x-amz-acl header or an "
                                            "AccessControlPolicy body, not both")
        if canned not in PRIVATE_CANNED:
            raise not_implemented(f"the canned ACL {canned!r} {_CANNOT_GRANT}")
        return
    if body.strip():
        check_policy(body)


async def _existing_object(ctx: S3Context) -> Object:
    """The request's object: NoSuchBucket or NoSuchKey (a versionId other than
    null is 501 before: ``router.check_version``)."""
    bucket = await ctx.existing_bucket()
    found = await ctx.brain.store.object_by_key(bucket.id, ctx.key or "", chunks=False)
    if found is None:
        raise S3Error("NoSuchKey")
    return found[0]


async def get_bucket_acl(ctx: S3Context) -> Response:
    await ctx.existing_bucket()
    return xml_response(policy_document())


async def get_object_acl(ctx: S3Context) -> Response:
    await _existing_object(ctx)
    return xml_response(policy_document())


async def put_bucket_acl(ctx: S3Context) -> Response:
    """200 and nothing changed, for an ACL that is what the bucket has."""
    # Read first: an error answer then leaves no body unread on the connection.
    body = await ctx.small_body(MAX_ACL_BODY)
    await ctx.existing_bucket()
    check_unchanged(ctx.headers.get("x-amz-acl"), body)
    return Response(status_code=200)


async def put_object_acl(ctx: S3Context) -> Response:
    """200 and nothing changed, for an ACL that is what the object has."""
    body = await ctx.small_body(MAX_ACL_BODY)
    await _existing_object(ctx)
    check_unchanged(ctx.headers.get("x-amz-acl"), body)
    return Response(status_code=200)
