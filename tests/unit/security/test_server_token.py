"""Server tokens and agent join tokens: which Secret is which, who the shared PKI's authorizer
lets through, and how `ketch token create --server` parses."""

from __future__ import annotations

from controlplane.apiserver.authn import BootstrapTokenAuthenticator, Credentials
from controlplane.apiserver.authz import ALLOW, DENY, NO_OPINION
from controlplane.apiserver.request import SERVER_PKI_PATH, Attributes, UserInfo, attributes_of
from controlplane.apiserver.serverpki import ServerPKIRestriction
from ketch.cli.main import build_parser
from ketch.security import jointoken
from ketch.v1 import api_pb2


def test_a_server_token_secret_says_so_and_an_agent_token_secret_does_not() -> None:
    server = jointoken.bootstrap_secret("abcdef", "0123456789abcdef", server=True)
    agent = jointoken.bootstrap_secret("ghijkl", "0123456789abcdef")
    assert server.data[jointoken.SERVER_USAGE] == b"true" and jointoken.is_server_token(server)
    assert jointoken.SERVER_USAGE not in agent.data and not jointoken.is_server_token(agent)
    # Both still authenticate as bootstrap tokens (a server token may also join an agent, as k3s's).
    for secret in (server, agent):
        token_id = secret.data["token-id"].decode()
        authn = BootstrapTokenAuthenticator(lambda key, s=secret, i=token_id: s if key.endswith(i) else None)
        user = authn.authenticate(Credentials(metadata={"authorization": f"Bearer {token_id}.0123456789abcdef"}))
        assert user is not None and user.name == f"system:bootstrap:{token_id}"


def test_the_shared_pki_path_is_for_bootstrap_tokens_alone() -> None:
    restriction = ServerPKIRestriction()
    bootstrap = UserInfo("system:bootstrap:abcdef", ("system:bootstrappers", "system:authenticated"))
    admin = UserInfo("admin", ("system:masters", "system:authenticated"))
    node = UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))
    fake = UserInfo("system:bootstrap:abcdef", ("system:masters",))  # the name without the group
    assert attributes_of(bootstrap, "FetchServerPKI", api_pb2.ServerPKIRequest()).path == SERVER_PKI_PATH
    assert restriction.authorize(Attributes(bootstrap, "get", path=SERVER_PKI_PATH)).verdict == ALLOW
    for user in (admin, node, fake):
        decision = restriction.authorize(Attributes(user, "get", path=SERVER_PKI_PATH))
        assert decision.verdict == DENY and "only a server token" in decision.reason
    # No opinion on anything else: the other authorizers decide.
    assert restriction.authorize(Attributes(admin, "get", path="/version")).verdict == NO_OPINION
    assert restriction.authorize(Attributes(bootstrap, "list", "", "pods")).verdict == NO_OPINION


def test_token_create_server_keeps_the_global_server_address() -> None:
    args = build_parser().parse_args(["--server", "10.0.0.1:6443", "token", "create", "--server"])
    assert args.server_token is True and args.server == "10.0.0.1:6443" and args.ttl is None
    args = build_parser().parse_args(["token", "create", "--ttl", "1h"])
    assert args.server_token is False and args.ttl == "1h"
    args = build_parser().parse_args(["token", "list", "--server", "10.0.0.1:6443"])
    assert args.server == "10.0.0.1:6443"
