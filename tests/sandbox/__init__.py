"""Tests of the Retell API sandbox."""
