"""Calls a control plane as a stranger would, for the multi-host test to run from another host
(`python tests/e2e/tlsprobe.py SERVER CA_FILE` inside a network namespace): prints one JSON object
of {attempt: [gRPC status code name, details]} for

- "foreign-ca": a client that trusts another CA (a man in the middle's view, reversed): the TLS
  handshake fails, so the call never reaches the API (UNAVAILABLE);
- "no-identity": the cluster's CA but no credentials of its own (the public no-identity client
  certificate, as the CLI presents for a kubeconfig without one): UNAUTHENTICATED.

It imports only the client side (ketch), so it runs wherever the CLI runs.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import grpc

from ketch.security import anonymous, certs
from ketch.v1 import api_pb2, api_pb2_grpc


async def attempt(server: str, creds: grpc.ChannelCredentials) -> list[str]:
    async with grpc.aio.secure_channel(server, creds) as channel:
        try:
            await api_pb2_grpc.APIStub(channel).List(api_pb2.ListRequest(kind="Node"), timeout=10)
        except grpc.aio.AioRpcError as err:
            return [err.code().name, err.details() or ""]
    return ["OK", ""]


async def main(server: str, ca_file: str) -> dict[str, list[str]]:
    ca = Path(ca_file).read_bytes()
    foreign = certs.Authority.create().cert_pem
    return {
        "foreign-ca": await attempt(server, grpc.ssl_channel_credentials(foreign, anonymous.KEY, anonymous.CERT)),
        "no-identity": await attempt(server, grpc.ssl_channel_credentials(ca, anonymous.KEY, anonymous.CERT)),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
