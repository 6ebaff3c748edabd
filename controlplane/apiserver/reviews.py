"""The questions the API answers and never stores (pkg/registry/authorization/*,
pkg/registry/authentication/selfsubjectreview): a create of one of these kinds is answered with
the object and its status.

- SelfSubjectAccessReview: may I do this? (any authenticated user: system:basic-user)
- SubjectAccessReview: may this user? (whoever may create subjectaccessreviews)
- LocalSubjectAccessReview: the same within its own namespace (namespace admins)
- SelfSubjectReview: who am I? (after impersonation: `--as bob` answers bob)

The question is put to the same authorizers as real requests. Being asked is authorized like any
create, before this module sees the request.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2

from ketch.api import errors
from ketch.api.errors import FieldError, invalid
from ketch.api.validation.field import as_json
from ketch.v1 import api_pb2, authorization_pb2

from .authz import ALLOW, DENY, Authorizers
from .request import Attributes, UserInfo
from .service import unpack


def _attributes(user: UserInfo, spec: Any) -> Attributes:
    if spec.HasField("resource_attributes"):
        r = spec.resource_attributes
        return Attributes(user, r.verb, r.group, r.resource, r.subresource, r.namespace, r.name)
    n = spec.non_resource_attributes
    return Attributes(user, n.verb, path=n.path)


def _spec_errors(spec: Any) -> list[FieldError]:
    """ValidateSelfSubjectAccessReviewSpec / ValidateSubjectAccessReviewSpec's shared rule."""
    has_resource, has_path = spec.HasField("resource_attributes"), spec.HasField("non_resource_attributes")
    if has_resource and has_path:
        return [invalid("spec.nonResourceAttributes", as_json(spec.non_resource_attributes),
                        "cannot be specified in combination with resourceAttributes")]
    if not has_resource and not has_path:
        return [invalid("spec.resourceAttributes", None,
                        "exactly one of nonResourceAttributes or resourceAttributes must be specified")]
    return []


def _metadata_errors(obj: Any, keep_namespace: bool = False) -> list[FieldError]:
    """An access review's metadata must be empty (but a LocalSubjectAccessReview's namespace)."""
    md = type(obj.metadata)()
    md.CopyFrom(obj.metadata)
    del md.managed_fields[:]
    if keep_namespace:
        md.namespace = ""
    if md.ByteSize():
        what = "must be empty except for namespace" if keep_namespace else "must be empty"
        return [invalid("metadata", as_json(obj.metadata), what)]
    return []


class Reviews:
    def __init__(self, authorizers: Authorizers) -> None:
        self.authorizers = authorizers

    def create(self, req: api_pb2.CreateRequest, attrs: Attributes) -> api_pb2.ObjectResponse:
        info, obj = unpack(req.object)
        answer = getattr(self, "_" + info.kind, None)
        if answer is None:
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        answer(obj, attrs)
        return api_pb2.ObjectResponse(object=any_pb2.Any(type_url=info.type_url, value=obj.SerializeToString()))

    def _decide(self, obj: Any, question: Attributes) -> None:
        decision = self.authorizers.authorize(question)
        obj.status.CopyFrom(authorization_pb2.SubjectAccessReviewStatus(
            allowed=decision.verdict == ALLOW, denied=decision.verdict == DENY, reason=decision.reason))

    @staticmethod
    def _refuse(kind: str, errs: list[FieldError]) -> None:
        if errs:
            raise errors.invalid_error(kind, "", errs)

    def _SelfSubjectAccessReview(self, obj: authorization_pb2.SelfSubjectAccessReview, attrs: Attributes) -> None:
        self._refuse(obj.DESCRIPTOR.name, _spec_errors(obj.spec) + _metadata_errors(obj))
        self._decide(obj, _attributes(attrs.user, obj.spec))

    def _subject(self, obj: Any) -> UserInfo:
        spec = obj.spec
        return UserInfo(spec.user, tuple(spec.groups), spec.uid)

    def _SubjectAccessReview(self, obj: authorization_pb2.SubjectAccessReview, attrs: Attributes) -> None:
        errs = _spec_errors(obj.spec)
        if not obj.spec.user and not obj.spec.groups:
            errs.append(invalid("spec.user", obj.spec.user, "at least one of user or group must be specified"))
        self._refuse(obj.DESCRIPTOR.name, errs + _metadata_errors(obj))
        self._decide(obj, _attributes(self._subject(obj), obj.spec))

    def _LocalSubjectAccessReview(self, obj: authorization_pb2.LocalSubjectAccessReview, attrs: Attributes) -> None:
        spec = obj.spec
        errs = _spec_errors(spec)
        if not spec.user and not spec.groups:
            errs.append(invalid("spec.user", spec.user, "at least one of user or group must be specified"))
        if spec.HasField("non_resource_attributes"):
            errs.append(invalid("spec.nonResourceAttributes", as_json(spec.non_resource_attributes),
                                "disallowed on this kind of request"))
        namespace = attrs.namespace
        if spec.HasField("resource_attributes") and spec.resource_attributes.namespace != namespace:
            errs.append(invalid("spec.resourceAttributes.namespace", spec.resource_attributes.namespace,
                                "must match metadata.namespace"))
        self._refuse(obj.DESCRIPTOR.name, errs + _metadata_errors(obj, keep_namespace=True))
        obj.metadata.namespace = namespace
        self._decide(obj, _attributes(self._subject(obj), spec))

    def _SelfSubjectReview(self, obj: authorization_pb2.SelfSubjectReview, attrs: Attributes) -> None:
        self._refuse(obj.DESCRIPTOR.name, _metadata_errors(obj))
        user = attrs.user
        obj.status.user_info.CopyFrom(authorization_pb2.UserInfo(username=user.name, uid=user.uid,
                                                                 groups=list(user.groups)))

