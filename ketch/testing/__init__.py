"""Fakes and builders shared by every test tier (shipped, so downstream tests can use them)."""
