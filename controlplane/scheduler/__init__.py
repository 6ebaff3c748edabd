"""The scheduler: binds unbound pods to Ready, schedulable nodes that fit them.

`scheduler.py` is the controller (queue of unbound pods → filter → score → bind in bulk);
`predicates.py` and `scoring.py` are pure and table-tested.
"""
