"""The dashboard's fixtures, from dashboard_support (a module of its own name, so that test
modules import its helpers without reaching another folder's conftest)."""

from dashboard_support import browser, empty_store, sample_store, served  # noqa: F401
