"""The DaemonSet controller: one pod per eligible node, rolling updates, revision history.

controller.py holds the wiring and the sync; predicates.py, update.py and history.py are pure.
"""
