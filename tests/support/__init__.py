"""Helpers shared by the test suite: private servers, apps, clients."""
