"""RBAC in the API server: the index of RBAC objects (index.py), rule matching (rules.py), the
authorizer (authorizer.py) and its decision cache (cache.py)."""
