"""What one request may cost the API server: Kubernetes' limits, and the errors that name them.

Shared by the server (which enforces them) and clients (which may check before sending). The
numbers are kube-apiserver's where it has one: a 3 MiB request body (MaxRequestBodyBytes), a
JSON patch that copies or adds at most 3 MiB (JSONPatchMaxCopyBytes) in at most 10,000
operations (maxJSONPatchOperations), and etcd's 1.5 MiB per stored object.
"""

from __future__ import annotations

from .errors import TooLarge, clip  # noqa: F401 - clip is read from here too

MAX_REQUEST_BYTES = 3 * 1024 * 1024
MAX_OBJECT_BYTES = 1_572_864
JSON_PATCH_MAX_COPY_BYTES = 3 * 1024 * 1024
MAX_JSON_PATCH_OPERATIONS = 10_000
# A Batch over the network: the bytes of objects its operations read (a patch's base) and store.
# Ten times what Ketch's own agents send in their largest batches; an op past it fails alone
# with 413 and can go in the next Batch. (Without it, 3 MiB of small patches to a large object
# made the server build and hold one large object per patch.)
MAX_BATCH_BYTES = 16 * 1024 * 1024
# Nesting of a patch document and of what patching makes: far beyond any Kubernetes object
# (a pod's deepest field is about ten levels down), far below Python's recursion limit.
MAX_JSON_DEPTH = 100
# Selectors travel in the URL in Kubernetes, where proxies and Go's server cap the whole request
# line (8-16 KiB behind most proxies, 1 MiB at most): 64 KiB is more than any of them passes.
MAX_SELECTOR_LENGTH = 64 * 1024
# Every requirement is checked against every object a list or watch looks at.
MAX_SELECTOR_REQUIREMENTS = 256


def request_too_large(limit: int = MAX_REQUEST_BYTES) -> TooLarge:
    """kube-apiserver's words for a body over the limit."""
    return TooLarge(f"Request entity too large: limit is {limit}")


def object_too_large(kind: str, name: str, size: int, limit: int = MAX_OBJECT_BYTES) -> TooLarge:
    what = f'the {kind} "{name}"' if name else f"the {kind}"
    return TooLarge(f"Request entity too large: {what} is {size} bytes, limit is {limit}")


