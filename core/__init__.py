"""Shared foundation of unicomm: configuration, storage, bus, auth, web, CLI.

Nothing here imports a service package; services are found through the
``unicomm.services`` entry-point group (see :mod:`core.services`).
"""
