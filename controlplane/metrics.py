"""The control plane's Prometheus metrics, with Kubernetes' names, types, labels and buckets, in
prometheus_client's default REGISTRY (what `--metrics-listen` serves).

As kube-apiserver and kube-controller-manager export them (1.31):
- the API server: apiserver_request_total, apiserver_request_duration_seconds (recorded once
  per request by the request chain, once per operation of a Batch),
  apiserver_current_inflight_requests, apiserver_storage_objects,
  apiserver_terminated_watchers_total, and
  etcd_request_duration_seconds for the store's backend writes (SQLite and etcd alike);
- the controllers: client-go's workqueue_* per queue name, the Job controller's job_controller_*
  and the CronJob controller's creation skew.

Cheap on the hot paths: the metrics updated per request, per backend write and per queued key
are plain counters a collector turns into Prometheus families when scraped (prometheus_client's
own take a lock and walk the buckets on every observation: measured 5 us a request, 11 us a
queued key); a labelled child is looked up once per label tuple and kept; and what can be read
when scraped (objects stored, requests in flight) is computed then, not updated on every write.
Updates happen on the event loop only; a scrape on another thread reads them as they are.
"""

from __future__ import annotations

import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ketch import memtrim
from ketch.api import errors
from ketch.api.kinds import KINDS, kind_info
from ketch.client import workqueue

if TYPE_CHECKING:
    from controlplane.apiserver.inflight import MaxInFlight
    from controlplane.apiserver.request import Attributes
    from controlplane.storage.store import Store

# Kubernetes' components export no *_created series beside their counters and histograms.
disable_created_metrics()

COMPONENT = "apiserver"
# kube-apiserver's request and etcd latency buckets (the API call latency SLO's).
REQUEST_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
                   30, 45, 60)
# component-base's workqueue buckets: ExponentialBuckets(10e-9, 10, 10), 10 ns to 10 s.
WORKQUEUE_BUCKETS = tuple(10e-9 * 10**i for i in range(10))
# The Job controller's sync buckets: ExponentialBuckets(0.004, 2, 15).
JOB_SYNC_BUCKETS = tuple(0.004 * 2**i for i in range(15))
# The CronJob controller's creation skew buckets: ExponentialBuckets(1, 2, 10).
CRONJOB_SKEW_BUCKETS = tuple(float(2**i) for i in range(10))


class _Value:
    """One counter or gauge child: a number the event loop adds to."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, n: float = 1.0) -> None:
        self.value += n

    def dec(self, n: float = 1.0) -> None:
        self.value -= n


class _Observations:
    """One histogram child: a count per bucket (not cumulative; the last is +Inf) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(self.bounds, v)] += 1  # the first bound >= v: Prometheus' "le"
        self.sum += v


class _Vec(Collector):
    """A labelled family whose children are updated without locks and read when scraped."""

    def __init__(self, kind: str, name: str, documentation: str, labelnames: tuple[str, ...],
                 buckets: tuple[float, ...] = ()) -> None:
        self.kind, self.name, self.documentation, self.labelnames = kind, name, documentation, labelnames
        self.bounds = tuple(float(b) for b in buckets)
        self._les = [*(floatToGoString(b) for b in self.bounds), "+Inf"]
        self.children: dict[tuple[str, ...], Any] = {}
        REGISTRY.register(self)

    def labels(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = _Observations(self.bounds) if self.kind == "histogram" else _Value()
            self.children[values] = child
        return child

    def collect(self) -> Iterator[Metric]:
        labels = list(self.labelnames)
        family: Any
        if self.kind == "counter":
            family = CounterMetricFamily(self.name, self.documentation, labels=labels)
        elif self.kind == "gauge":
            family = GaugeMetricFamily(self.name, self.documentation, labels=labels)
        else:
            family = HistogramMetricFamily(self.name, self.documentation, labels=labels)
        for values, child in list(self.children.items()):
            if self.kind != "histogram":
                family.add_metric(list(values), child.value)
                continue
            total, buckets = 0, []
            for le, n in zip(self._les, list(child.counts), strict=True):
                total += n
                buckets.append((le, total))
            family.add_metric(list(values), buckets, child.sum)
        yield family


REQUEST_TOTAL = _Vec(
    "counter", "apiserver_request_total",
    "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, "
    "component, and HTTP response code.",
    ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component", "code"))
REQUEST_DURATION = _Vec(
    "histogram", "apiserver_request_duration_seconds",
    "Response latency distribution in seconds for each verb, dry run value, group, version, resource, "
    "subresource, scope and component.",
    ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"),
    buckets=REQUEST_BUCKETS)
ETCD_REQUEST_DURATION = _Vec(
    "histogram", "etcd_request_duration_seconds",
    "Etcd request latency in seconds for each operation and object type.",
    ("operation", "type"), buckets=REQUEST_BUCKETS)

TERMINATED_WATCHERS = _Vec(
    "counter", "apiserver_terminated_watchers",
    "Counter of watchers closed due to unresponsiveness broken by resource type.", ("group", "resource"))

WORKQUEUE_DEPTH = _Vec("gauge", "workqueue_depth", "Current depth of workqueue", ("name",))
WORKQUEUE_ADDS = _Vec("counter", "workqueue_adds", "Total number of adds handled by workqueue", ("name",))
WORKQUEUE_QUEUE_DURATION = _Vec(
    "histogram", "workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested.", ("name",), buckets=WORKQUEUE_BUCKETS)
WORKQUEUE_WORK_DURATION = _Vec(
    "histogram", "workqueue_work_duration_seconds",
    "How long in seconds processing an item from workqueue takes.", ("name",), buckets=WORKQUEUE_BUCKETS)
WORKQUEUE_RETRIES = _Vec("counter", "workqueue_retries", "Total number of retries handled by workqueue", ("name",))

JOB_SYNC_DURATION = _Vec(
    "histogram", "job_controller_job_sync_duration_seconds", "The time it took to sync a job",
    ("completion_mode", "result", "action"), buckets=JOB_SYNC_BUCKETS)
JOB_SYNCS = _Vec("counter", "job_controller_job_syncs", "The number of job syncs",
                 ("completion_mode", "result", "action"))
JOBS_FINISHED = _Vec("counter", "job_controller_jobs_finished", "The number of finished jobs",
                     ("completion_mode", "result", "reason"))
JOB_PODS_FINISHED = _Vec("counter", "job_controller_job_pods_finished",
                         "The number of finished Pods that are fully tracked", ("completion_mode", "result"))
TERMINATED_PODS_TRACKING_FINALIZER = _Vec(
    "counter", "job_controller_terminated_pods_tracking_finalizer",
    "The number of terminated pods (phase=Failed|Succeeded) that have the finalizer "
    'batch.kubernetes.io/job-tracking. The event label can be "add" or "delete".', ("event",))
CRONJOB_CREATION_SKEW = Histogram(
    "cronjob_controller_job_creation_skew_duration_seconds",
    "Time between when a cronjob is scheduled to be run, and when the corresponding job is created",
    buckets=CRONJOB_SKEW_BUCKETS)

# -- the API server's requests ------------------------------------------------------------------

# Kubernetes' HTTP status for each reason (a StatusError carries gRPC's code, not HTTP's).
HTTP_CODES = {"BadRequest": "400", "Unauthorized": "401", "Forbidden": "403", "NotFound": "404",
              "MethodNotAllowed": "405", "AlreadyExists": "409", "Conflict": "409", "Gone": "410",
              "Expired": "410", "RequestEntityTooLarge": "413", "Invalid": "422", "TooManyRequests": "429",
              "InternalError": "500", "ServiceUnavailable": "503", "Timeout": "504"}
# The HTTP verb kube-apiserver reports for each API method (CleanVerb's: LIST apart from GET,
# WATCH, CONNECT for the connect subresources log, exec and attach).
VERBS = {"Create": "POST", "Update": "PUT", "Patch": "PATCH", "Delete": "DELETE", "Get": "GET", "List": "LIST",
         "Watch": "WATCH", "WatchBatched": "WATCH", "PodLogs": "CONNECT", "Exec": "CONNECT", "Attach": "CONNECT",
         "NodeStats": "GET", "Version": "GET", "SignNodeCertificate": "POST", "FetchServerPKI": "GET"}
CONNECT_SUBRESOURCES = frozenset({"log", "exec", "portforward", "attach", "proxy"})
# A subresource is the client's string: one the server does not serve is reported as "other",
# so no client can make a label value (and a child kept for it) of any string it likes.
SUBRESOURCES = frozenset({"status", "binding", "finalize", "stats", "nodeclient", *CONNECT_SUBRESOURCES})


def http_code(err: BaseException) -> str:
    """The HTTP status code Kubernetes answers an error with (500 for anything unexpected)."""
    if isinstance(err, errors.StatusError):
        return HTTP_CODES.get(err.reason, "500")
    return "500"


def success_code(method: str) -> str:
    return "201" if VERBS.get(method) == "POST" else "200"


def _version_of(kind: str) -> str:
    try:
        return kind_info(kind).api_version.rpartition("/")[2]
    except KeyError:
        return "v1"


def _scope(attrs: Attributes) -> str:
    """kube-apiserver's CleanScope."""
    if attrs.name or attrs.verb == "create":
        return "resource"
    if attrs.namespace:
        return "namespace"
    return "cluster" if attrs.resource_request else ""


def watcher_terminated(kind: str) -> None:
    """Count a watcher of kind dropped for falling behind (apiserver_terminated_watchers_total)."""
    try:
        info = kind_info(kind)
        group, resource = info.group, info.plural
    except KeyError:
        group, resource = "", kind
    TERMINATED_WATCHERS.labels(group, resource).inc()


_Children = tuple[Any, Any]
_request_children: dict[Hashable, _Children] = {}
_versions: dict[str, str] = {}


def record_request(method: str, attrs: Attributes | None, dry_run: bool, code: str, seconds: float) -> None:
    """Count one request and observe its latency. attrs None: refused before its attributes were
    read (unauthenticated, over the in-flight limit, malformed): only the verb is known."""
    verb = VERBS.get(method, "")
    if attrs is None:
        key: Hashable = (verb, dry_run, code)
        children = _request_children.get(key)
        if children is None:
            children = _children(verb, "All" if dry_run else "", "", "", "", "", "", code)
            _request_children[key] = children
    else:
        sub = attrs.subresource
        key = (verb, dry_run, code, attrs.kind, attrs.api_group, attrs.resource,
               sub if not sub or sub in SUBRESOURCES else "other", attrs.path, attrs.verb, bool(attrs.name),
               bool(attrs.namespace))
        children = _request_children.get(key)
        if children is None:
            if attrs.subresource in CONNECT_SUBRESOURCES:
                verb = "CONNECT"
            elif verb == "PUT" and attrs.verb == "create":
                verb = "POST"  # pods/binding is a POST in Kubernetes
            if attrs.resource_request:
                version = _versions.get(attrs.kind)
                if version is None:
                    version = _versions[attrs.kind] = _version_of(attrs.kind)
                subresource = attrs.subresource if not attrs.subresource or attrs.subresource in SUBRESOURCES \
                    else "other"
                children = _children(verb, "All" if dry_run else "", attrs.api_group, version, attrs.resource,
                                     subresource, _scope(attrs), code)
            else:
                children = _children(verb, "All" if dry_run else "", "", "", "", attrs.path, "", code)
            _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def _children(verb: str, dry_run: str, group: str, version: str, resource: str, subresource: str, scope: str,
              code: str) -> _Children:
    return (REQUEST_TOTAL.labels(verb, dry_run, group, version, resource, subresource, scope, COMPONENT, code),
            REQUEST_DURATION.labels(verb, dry_run, group, version, resource, subresource, scope, COMPONENT))


class _InFlightCollector(Collector):
    """apiserver_current_inflight_requests: the most requests in flight during the last second
    (kube-apiserver's pre-aggregated watermark), over every limiter of this process."""

    def __init__(self) -> None:
        self.limiters: weakref.WeakSet[MaxInFlight] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per request kind in last "
            "second.", labels=["request_kind"])
        readonly = mutating = 0
        for limiter in list(self.limiters):
            r, m = limiter.watermarks()
            readonly += r
            mutating += m
        family.add_metric(["readOnly"], readonly)
        family.add_metric(["mutating"], mutating)
        yield family


class _StorageCollector(Collector):
    """apiserver_storage_objects{resource}: the running store's object counts, read when scraped
    (summed if a process runs several, as tests do)."""

    def __init__(self) -> None:
        self.stores: weakref.WeakSet[Store] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("apiserver_storage_objects",
                                   "Number of stored objects at the time of last check split by kind.",
                                   labels=["resource"])
        stores = list(self.stores)
        if stores:
            for info in KINDS:
                family.add_metric([info.qualified_plural], sum(s.count(info.kind) for s in stores))
        yield family


_inflight = _InFlightCollector()
_storage = _StorageCollector()
REGISTRY.register(_inflight)
REGISTRY.register(_storage)


def track_inflight(limiter: MaxInFlight) -> None:
    _inflight.limiters.add(limiter)


def track_store(store: Store) -> None:
    _storage.stores.add(store)


def untrack_store(store: Store) -> None:
    _storage.stores.discard(store)


# -- the store's backend -------------------------------------------------------------------------

_etcd_children: dict[tuple[str, str], Any] = {}


def _resource_of(kind: str) -> str:
    try:
        return kind_info(kind).qualified_plural
    except KeyError:
        return kind


def observe_commit(writes: Iterable[tuple[str, str]], seconds: float) -> None:
    """etcd_request_duration_seconds: every write of one backend transaction, (operation, kind)
    each, took the transaction's time (as each of kube-apiserver's writes waits for its own)."""
    for write in writes:
        child = _etcd_children.get(write)
        if child is None:
            child = _etcd_children[write] = ETCD_REQUEST_DURATION.labels(write[0], _resource_of(write[1]))
        child.observe(seconds)


# -- the controllers' work queues (client-go's MetricsProvider) ------------------------------------

class QueueMetrics:
    """client-go's queueMetrics for one named queue: depth, adds, time queued, time worked, retries."""

    __slots__ = ("_add_times", "_adds", "_depth", "_latency", "_now", "_retries", "_work", "_work_times")

    def __init__(self, name: str, now: Callable[[], float] = time.monotonic) -> None:
        self._depth = WORKQUEUE_DEPTH.labels(name)
        self._adds = WORKQUEUE_ADDS.labels(name)
        self._latency = WORKQUEUE_QUEUE_DURATION.labels(name)
        self._work = WORKQUEUE_WORK_DURATION.labels(name)
        self._retries = WORKQUEUE_RETRIES.labels(name)
        self._now = now
        self._add_times: dict[Hashable, float] = {}
        self._work_times: dict[Hashable, float] = {}

    def add(self, item: Hashable) -> None:
        self._adds.inc()
        self._depth.inc()
        if item not in self._add_times:
            self._add_times[item] = self._now()

    def get(self, item: Hashable) -> None:
        self._depth.dec()
        now = self._now()
        self._work_times[item] = now
        added = self._add_times.pop(item, None)
        if added is not None:
            self._latency.observe(now - added)
        memtrim.release_if_emptied(self._add_times)

    def done(self, item: Hashable) -> None:
        started = self._work_times.pop(item, None)
        if started is not None:
            self._work.observe(self._now() - started)
        memtrim.release_if_emptied(self._work_times)

    def retry(self) -> None:
        self._retries.inc()

    def shutdown(self, left: int) -> None:
        """The queue goes with `left` items never taken: they leave the depth."""
        if left:
            self._depth.dec(left)
        self._add_times.clear()
        self._work_times.clear()


workqueue.set_metrics_provider(QueueMetrics)

# -- the Job and CronJob controllers -----------------------------------------------------------------

_job_children: dict[tuple[str, ...], _Children] = {}


def observe_job_sync(completion_mode: str, result: str, action: str, seconds: float) -> None:
    key = (completion_mode, result, action)
    children = _job_children.get(key)
    if children is None:
        children = _job_children[key] = (JOB_SYNC_DURATION.labels(*key), JOB_SYNCS.labels(*key))
    children[0].observe(seconds)
    children[1].inc()


def job_pods_finished(completion_mode: str, succeeded: int, failed: int) -> None:
    if succeeded > 0:
        JOB_PODS_FINISHED.labels(completion_mode, "succeeded").inc(succeeded)
    if failed > 0:
        JOB_PODS_FINISHED.labels(completion_mode, "failed").inc(failed)


def job_finished(completion_mode: str, result: str, reason: str) -> None:
    JOBS_FINISHED.labels(completion_mode, result, reason).inc()


_FINALIZER_ADD = TERMINATED_PODS_TRACKING_FINALIZER.labels("add")
_FINALIZER_DELETE = TERMINATED_PODS_TRACKING_FINALIZER.labels("delete")


def terminated_pod_tracking_finalizer(was: bool, now: bool) -> None:
    """A pod event: count a terminated pod gaining ("add") or losing ("delete") the finalizer."""
    if was != now:
        (_FINALIZER_ADD if now else _FINALIZER_DELETE).inc()


def cronjob_creation_skew(seconds: float) -> None:
    CRONJOB_CREATION_SKEW.observe(seconds)
