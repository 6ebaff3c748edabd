"""Node certificates: who may ask for one, and the signing (Kubernetes' CSR signer with the
node-client auto-approval of kubeadm and the kubelet's certificate rotation, as one call).

- A bootstrap token (group system:bootstrappers) may do this and nothing else: the
  BootstrapTokenRestriction authorizer comes first in the chain and denies it every other
  request (a join token cannot list pods), whatever the later authorizers say.
- A node renews its own certificate with the one it has (user system:node:NAME).
- The client certificate is CN system:node:NAME, O system:nodes; the serving certificate (the
  agent's own server) has the SANs the agent asks for (its addresses), for the control plane
  to verify when it dials the agent.
- One key per node name: the public key's sha256 is kept in the Node's annotation
  ketch.io/client-key-sha256 (the Node is made here if it does not exist yet, claiming the
  name). Another key for a name whose Node exists is refused; once the Node is deleted (the
  agent left with --drain-on-exit, or `ketch delete node`) the name is free again.
"""

from __future__ import annotations

from ketch.api import errors
from ketch.api.validation import field
from ketch.client.clientset import Client
from ketch.security import certs, jointoken
from ketch.v1 import api_pb2, core_pb2

from .authz import ALLOW, DENY, NO_OPINION, Decision
from .request import Attributes, UserInfo

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
MASTERS_GROUP = "system:masters"
KEY_ANNOTATION = "ketch.io/client-key-sha256"
CSR_GROUP, CSR_RESOURCE, CSR_SUBRESOURCE = "certificates.k8s.io", "certificatesigningrequests", "nodeclient"
BOOTSTRAP_ONLY = "a bootstrap token may only be used to join a node (ask for its certificate)"


def is_node_certificate_request(attrs: Attributes) -> bool:
    return attrs.api_group == CSR_GROUP and attrs.resource == CSR_RESOURCE and attrs.verb == "create"


class BootstrapTokenRestriction:
    """First in the authorizer chain: system:bootstrappers may ask for a node certificate and
    nothing else; nodes may ask to renew theirs. No opinion on anyone else."""

    def authorize(self, attrs: Attributes) -> Decision:
        groups = attrs.user.groups
        if is_node_certificate_request(attrs):
            if jointoken.BOOTSTRAPPERS in groups or NODES_GROUP in groups:
                return Decision(ALLOW)
            return Decision(NO_OPINION)
        if jointoken.BOOTSTRAPPERS in groups:
            return Decision(DENY, BOOTSTRAP_ONLY)
        return Decision(NO_OPINION)


def _forbidden(user: UserInfo, name: str, why: str) -> errors.Forbidden:
    return errors.Forbidden(f'User "{user.name}" cannot create resource "{CSR_RESOURCE}/{CSR_SUBRESOURCE}" in API '
                            f'group "{CSR_GROUP}" at the cluster scope for node "{name}": {why}')


class NodeCertificateSigner:
    def __init__(self, ca: certs.Authority, client: Client, validity: float = certs.CERT_VALIDITY) -> None:
        self.ca = ca
        self.client = client  # the loopback client: reads and claims Nodes
        self.validity = validity

    async def sign(self, req: api_pb2.NodeCertificateRequest, attrs: Attributes) -> api_pb2.NodeCertificateResponse:
        user, name = attrs.user, req.node_name
        if not name:
            raise errors.Invalid("nodeName: Required value", [errors.required("nodeName")])
        bad = field.name_is_dns_subdomain(name, False)
        if bad:
            raise errors.Invalid(f"nodeName: Invalid value: {name!r}: {'; '.join(bad)}",
                                 [errors.invalid("nodeName", name, "; ".join(bad))])
        renewing = NODES_GROUP in user.groups and user.name == NODE_USER_PREFIX + name
        if not renewing and jointoken.BOOTSTRAPPERS not in user.groups and MASTERS_GROUP not in user.groups:
            raise _forbidden(user, name, "only a bootstrap token or the node itself may ask for its certificate")
        client_csr = self._csr(req.client_csr, name, "clientCSR")
        serving_csr = self._csr(req.serving_csr, name, "servingCSR") if req.serving_csr else None
        key = certs.public_key_sha256(client_csr)
        await self._claim(name, key, renewing, user)
        cn, orgs = NODE_USER_PREFIX + name, [NODES_GROUP]
        out = api_pb2.NodeCertificateResponse(ca=self.ca.cert_pem)
        out.client_certificate = certs.cert_pem(self.ca.sign(client_csr.public_key(), cn, orgs, client=True,  # type: ignore[arg-type]
                                                             validity=self.validity))
        if serving_csr is not None:
            serving_key = serving_csr.public_key()
            out.serving_certificate = certs.cert_pem(self.ca.sign(
                serving_key, cn, orgs, server=True, sans=certs.csr_sans(serving_csr),  # type: ignore[arg-type]
                validity=self.validity))
        return out

    @staticmethod
    def _csr(pem: bytes, name: str, path: str) -> certs.x509.CertificateSigningRequest:
        try:
            csr = certs.read_csr(pem)
        except ValueError as err:
            raise errors.Invalid(f"{path}: Invalid value: {err}", [errors.invalid(path, "<csr>", str(err))]) from None
        cn, orgs = certs.user_of(csr)  # type: ignore[arg-type]
        if cn != NODE_USER_PREFIX + name or orgs != (NODES_GROUP,):
            why = f'the subject must be CN "{NODE_USER_PREFIX}{name}", O "{NODES_GROUP}"'
            raise errors.Invalid(f"{path}: Invalid value: {why}", [errors.invalid(path, "<csr>", why)])
        return csr

    async def _claim(self, name: str, key: str, renewing: bool, user: UserInfo) -> None:
        """Record which key holds the name, refusing another key while the Node exists."""
        try:
            node = await self.client.get("Node", name)
        except errors.NotFound:
            node = None
        if node is None:
            claim = core_pb2.Node(api_version="v1", kind="Node")
            claim.metadata.name = name
            claim.metadata.annotations[KEY_ANNOTATION] = key
            try:
                await self.client.create(claim)
                return
            except errors.AlreadyExists:
                node = await self.client.get("Node", name)
        holder = node.metadata.annotations.get(KEY_ANNOTATION, "")
        if holder == key:
            return
        if holder and not renewing:
            raise _forbidden(user, name, "the node name is held by another agent's key; a second agent cannot "
                                         "join under the same --node-name while that Node exists (delete the "
                                         "Node to free it)")
        await self.client.patch("Node", name, {"metadata": {
            "annotations": {KEY_ANNOTATION: key}, "resourceVersion": node.metadata.resource_version}})
