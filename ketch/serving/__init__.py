"""The components' HTTPS side port (--metrics-listen): /metrics, /livez, /readyz, /healthz.

http.py is a small asyncio HTTP/1.1 server (one request per connection, bounded and timed out);
healthz.py answers the health paths as Kubernetes' healthz package does; metrics.py renders
prometheus_client's default registry. Who may read what is the component's business
(controlplane/observe.py, nodeagent/observe.py).
"""
